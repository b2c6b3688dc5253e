"""The study's samplers for your own PyTorch training loop.

`ImbalancedSampler` is a `torch.utils.data.Sampler` that yields positions into a labelled training
set, drawn by one of `imbalance.sampling`'s functions (no second copy of their logic):

| method        | one epoch                                                         | source          |
| ------------- | ----------------------------------------------------------------- | --------------- |
| `ros`         | every example once + duplicates of each small class, shuffled     | paper, 3.3.1    |
| `rus`         | each large class cut to the smallest (without replacement)        | paper, 3.3.2    |
| `class-aware` | `num_samples` draws: reshuffled class cycles, 4 per class draw    | Kang et al. 2020|
| `sqrt`        | `num_samples` i.i.d. draws: class c with p ∝ sqrt(n_c), an example| Mahajan 2018    |

`level` is graded sampling (the paper's Figure 7): the imbalance ratio left after ros/rus
(1 = full balance).

When an epoch is drawn (the convention of `WeightedRandomSampler` and `RandomSampler` unless
`set_epoch` is used, then `DistributedSampler`'s):

- without `set_epoch`, every `iter(sampler)` draws a new epoch: the n-th iteration (n = 0, 1, ...)
  from `np.random.default_rng([seed, n])`, or, with `generator=` (a `torch.Generator`), from one
  64-bit integer drawn from that generator per iteration, as `RandomSampler` draws its seed;
- after `set_epoch(e)`, every iteration draws epoch e, `np.random.default_rng([seed, e])` (with a
  generator: its `initial_seed()` as the seed), until the next `set_epoch`; every replica then
  draws the same epoch before taking its shard, exactly as `DistributedSampler` shards (padding by
  wrapping around, or `drop_last`).

`len(sampler)` is the positions one replica yields per epoch, fixed for the sampler's life: for
`ros` every class raised to round(n_largest / level) (full balance: n_classes x n_largest, more than
len(labels)), for `rus` every class cut to round(n_smallest x level) (full balance: n_classes x
n_smallest, usually far fewer than len(labels)), for `class-aware` and `sqrt` `num_samples`; then
divided among `num_replicas` as `DistributedSampler` divides (rounded up, or down with `drop_last`).
It is imported lazily as `imbalance.sampling.ImbalancedSampler`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, Subset

from imbalance.checks import is_int
from imbalance.data.profiles import imbalanced_subset
from imbalance.data.resampling import class_aware_indices, oversample_indices, sqrt_indices, undersample_indices

METHODS = ("ros", "rus", "class-aware", "sqrt")
_GRADED = ("ros", "rus")            # methods with a fixed epoch, for which `level` means a target ratio


def dataset_labels(labels, *, label_getter=None) -> np.ndarray:
    """int64 labels of a sequence, array, tensor or dataset.

    A dataset gives its labels through `label_getter(dataset)` if given, else its `.targets`
    (torchvision's convention); a `Subset` takes its parent's labels at its indices.
    """
    if label_getter is not None:
        if not callable(label_getter):
            raise ValueError(f"label_getter must be a callable dataset -> labels, got {label_getter!r}")
        return dataset_labels(label_getter(labels))
    if isinstance(labels, Subset):
        return dataset_labels(labels.dataset)[np.asarray(labels.indices, dtype=np.int64)]
    if isinstance(labels, Dataset):
        if not hasattr(labels, "targets"):
            raise ValueError(f"labels is a {type(labels).__name__} without .targets: pass label_getter="
                             f"(a callable dataset -> labels, e.g. lambda ds: [y for _, y in ds])")
        return dataset_labels(labels.targets)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or y.size == 0 or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        raise ValueError(f"labels must be a non-empty 1-d sequence of integer class labels, "
                         f"got shape {y.shape} and dtype {y.dtype}")
    return y.astype(np.int64)


def make_imbalanced(dataset_or_labels, *, profile: str = "step", rho: float, mu: float | None = None,
                    n_max: int | None = None, seed: int = 0, minority: str = "random",
                    label_getter=None) -> list[int]:
    """Positions of a skewed training subset by the study's profiles (`profiles.imbalanced_subset`).

    Returns a sorted list of ints, ready for `torch.utils.data.Subset(dataset, indices)`.
    """
    y = dataset_labels(dataset_or_labels, label_getter=label_getter)
    subset = imbalanced_subset(y, profile=profile, rho=rho, mu=mu, n_max=n_max, minority=minority,
                               random_state=seed)
    return subset.indices.tolist()


def _positive_int(name: str, value) -> int:
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _world(num_replicas, rank) -> tuple[int, int]:
    """Defaults from torch.distributed when it is initialised, else a single replica."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if num_replicas is None:
        num_replicas = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    num_replicas = _positive_int("num_replicas", num_replicas)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an integer in [0, {num_replicas - 1}] (num_replicas={num_replicas}), "
                         f"got {rank!r}")
    return num_replicas, int(rank)


class ImbalancedSampler(Sampler[int]):
    """Resampled positions into `labels` for a `DataLoader(dataset, sampler=...)`.

    labels: a sequence/array/tensor of int labels, or a dataset (with `.targets` or `label_getter`).
    method: one of METHODS. level: for ros/rus, the imbalance ratio left after sampling (>= 1;
    None = 1, full balance). num_samples: draws per epoch for class-aware/sqrt (default len(labels)).
    seed (default 0) or generator (a torch.Generator, not both): where each epoch's draw comes from;
    a new epoch per iteration unless set_epoch(e) fixes it (module docstring).
    num_replicas, rank, drop_last: as DistributedSampler.
    len(sampler) is the number of positions this replica yields per epoch (module docstring).
    """

    def __init__(self, labels, *, method: str = "ros", level: float | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None, num_replicas: int | None = None, rank: int | None = None,
                 num_samples: int | None = None, drop_last: bool = False, label_getter=None):
        self.labels = dataset_labels(labels, label_getter=label_getter)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if level is not None and method not in _GRADED:
            raise ValueError(f"level applies to {_GRADED} only (a target imbalance ratio), got level={level!r} "
                             f"with method={method!r}")
        if level is not None and (isinstance(level, bool) or not isinstance(level, (int, float, np.number))
                                  or not math.isfinite(level) or level < 1):
            raise ValueError(f"level must be a number >= 1 (imbalance ratio left after sampling), got {level!r}")
        if num_samples is not None and method in _GRADED:
            raise ValueError(f"num_samples applies to 'class-aware' and 'sqrt' only; {method!r} has a fixed epoch")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if generator is not None and seed is not None:
            raise ValueError(f"pass seed or generator, not both (got seed={seed!r} and a generator)")
        seed = (generator.initial_seed() if generator is not None else 0) if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.method, self.level, self.seed, self.generator = method, level, int(seed), generator
        self.num_samples = (self.labels.size if num_samples is None
                            else _positive_int("num_samples", num_samples))
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.epoch_fixed = False     # set_epoch was called: iterate that epoch (DistributedSampler's convention)
        self.iterations = 0          # epochs drawn without set_epoch so far
        self.epoch_size = len(self.epoch_indices(0))           # the same for every epoch
        if self.drop_last and self.epoch_size < self.num_replicas:
            raise ValueError(f"drop_last=True leaves nothing: one epoch has {self.epoch_size} positions "
                             f"for num_replicas={self.num_replicas}")
        r = self.num_replicas
        self.shard_size = (self.epoch_size // r) if self.drop_last else math.ceil(self.epoch_size / r)

    def set_epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch, self.epoch_fixed = int(epoch), True

    def epoch_indices(self, epoch: int, *, key: list[int] | None = None) -> np.ndarray:
        """All replicas' positions for one epoch, in the order they are dealt out: drawn from
        `np.random.default_rng([seed, epoch])`, or from `key` when given (a generator's draw)."""
        rng = np.random.default_rng([self.seed, epoch] if key is None else key)
        target = 1.0 if self.level is None else self.level
        if self.method == "ros":
            return rng.permutation(oversample_indices(self.labels, target_rho=target, random_state=rng))
        if self.method == "rus":
            return rng.permutation(undersample_indices(self.labels, target_rho=target, random_state=rng))
        draw = class_aware_indices if self.method == "class-aware" else sqrt_indices
        return draw(self.labels, size=self.num_samples, random_state=rng)

    def _next_epoch(self) -> np.ndarray:
        """The positions of the epoch this iteration draws (module docstring)."""
        if self.epoch_fixed:
            return self.epoch_indices(self.epoch)
        n, self.iterations = self.iterations, self.iterations + 1
        if self.generator is None:
            return self.epoch_indices(n)
        drawn = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        return self.epoch_indices(n, key=[drawn])

    def __iter__(self):
        indices = self._next_epoch()
        total = self.shard_size * self.num_replicas
        if total > indices.size:                                 # pad by wrapping, as DistributedSampler
            indices = np.resize(indices, total)
        shard = indices[self.rank:total:self.num_replicas]
        return iter(shard.tolist())

    def __len__(self) -> int:
        return self.shard_size

    def __repr__(self) -> str:
        epoch = f"epoch={self.epoch}" if self.epoch_fixed else f"a new epoch per iteration ({self.iterations} drawn)"
        source = "generator" if self.generator is not None else f"seed={self.seed}"
        return (f"ImbalancedSampler(method={self.method!r}, level={self.level}, {source}, {epoch}, "
                f"len={len(self)}, rank={self.rank}/{self.num_replicas})")
