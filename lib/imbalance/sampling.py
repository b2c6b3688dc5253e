"""The public, torch-free face of resampling: `from imbalance.sampling import ...`.

The functions live in `imbalance.data.resampling` (numpy only); `ImbalancedSampler`, `make_imbalanced`
and `dataset_labels` live in `imbalance.data.sampler` (torch) and are imported on first use, so
`import imbalance.sampling` never loads torch.
"""
from __future__ import annotations

from imbalance.data.resampling import (
    class_aware_indices,
    class_priors,
    oversample_indices,
    sqrt_indices,
    undersample_indices,
)

__all__ = ["class_aware_indices", "class_priors", "oversample_indices", "sqrt_indices", "undersample_indices",
           "ImbalancedSampler", "make_imbalanced", "dataset_labels"]
_TORCH_NAMES = ("ImbalancedSampler", "make_imbalanced", "dataset_labels")


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from imbalance.data import sampler
        return getattr(sampler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
