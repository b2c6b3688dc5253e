"""Random over/undersampling (full and graded) and class priors.

Every function returns positions into `y`, the labels of the imbalanced training set, so no
pixels are copied: the trainer draws mini-batches from `subset.indices[positions]`.

Graded sampling (the paper's Figure 7) reduces the imbalance ratio to `target_rho` instead of 1:
- oversampling raises every class smaller than n_largest / target_rho to that size;
- undersampling cuts every class larger than n_smallest * target_rho to that size.
target_rho=1 is full balance. Targets are rounded half up.

Class-balanced draws (`size` of them) pick a class first, then examples of it:
- class-aware sampling (Shen, Lin & Huang 2016, "Relay backpropagation"), as Kang et al.'s
  ClassAwareSampler draws it (facebookresearch/classifier-balancing, data/ClassAwareSampler.py): classes
  come in cycles, each cycle a new shuffle of the classes present; each class draw takes
  `samples_per_class` consecutive examples (4 in their configs) from that class's own cycle, itself a new
  shuffle of the class's examples on every pass.  Every class gets the same number of draws, and no example
  of a class repeats before all of its examples have been drawn;
- square-root sampling (Mahajan et al. 2018; Kang et al. 2020): i.i.d. draws, class c with probability
  sqrt(n_c) / sum_k sqrt(n_k), then an example uniformly, halfway (on a log scale) between instance and
  class-aware sampling (Kang et al.'s MixedPrioritizedSampler with nroot 2 draws i.i.d. too).
"""
from __future__ import annotations

import math

import numpy as np


def _labels(y) -> np.ndarray:
    y = np.asarray(y, dtype=np.int64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y must be a non-empty 1-d array of class labels, got shape {y.shape}")
    return y


def _check_rho(target_rho) -> None:
    if not isinstance(target_rho, (int, float, np.number)) or not math.isfinite(target_rho) or target_rho < 1:
        raise ValueError(f"target_rho must be a number >= 1 (imbalance ratio after sampling), got {target_rho!r}")


def _present(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, counts = np.unique(y, return_counts=True)
    return classes, counts


def oversample_indices(y, *, target_rho: float = 1.0, random_state=None) -> np.ndarray:
    """All positions of y, plus random duplicates (with replacement) of each small class.

    A class of n_c examples below the target t = round(n_largest / target_rho) gets t - n_c extra
    draws from its own examples. Result is sorted.
    """
    y = _labels(y)
    _check_rho(target_rho)
    rng = np.random.default_rng(random_state)
    classes, counts = _present(y)
    target = max(1, int(math.floor(counts.max() / target_rho + 0.5)))
    extra = [rng.choice(np.flatnonzero(y == c), size=target - n, replace=True)
             for c, n in zip(classes, counts) if n < target]
    return np.sort(np.concatenate([np.arange(y.size)] + extra)).astype(np.int64)


def undersample_indices(y, *, target_rho: float = 1.0, random_state=None) -> np.ndarray:
    """Positions of y with each large class cut (without replacement) to round(n_smallest * target_rho)."""
    y = _labels(y)
    _check_rho(target_rho)
    rng = np.random.default_rng(random_state)
    classes, counts = _present(y)
    target = int(math.floor(counts.min() * target_rho + 0.5))
    kept = [np.flatnonzero(y == c) if n <= target else rng.choice(np.flatnonzero(y == c), size=target, replace=False)
            for c, n in zip(classes, counts)]
    return np.sort(np.concatenate(kept)).astype(np.int64)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer (number of draws), got {size!r}")
    return int(size)


def _class_then_example(y: np.ndarray, class_weights, size: int, random_state) -> np.ndarray:
    """Draw `size` classes with probability proportional to class_weights, then an example of each."""
    rng = np.random.default_rng(random_state)
    classes, counts = _present(y)
    weights = np.asarray(class_weights(counts), dtype=np.float64)
    by_class = np.argsort(y, kind="stable")                     # positions grouped by class, ascending
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = rng.choice(classes.size, size=size, p=weights / weights.sum())
    return by_class[starts[k] + rng.integers(0, counts[k])].astype(np.int64)


CLASS_AWARE_SAMPLES_PER_CLASS = 4   # examples per class draw: Kang et al.'s configs (num_samples_cls: 4)


def _cycles(rng: np.random.Generator, items: np.ndarray, length: int) -> np.ndarray:
    """The first `length` items of a cycle through `items`, each pass a new shuffle (RandomCycleIter)."""
    passes = -(-length // items.size)
    return np.concatenate([rng.permutation(items) for _ in range(passes)])[:length]


def class_aware_indices(y, *, size: int, samples_per_class: int = CLASS_AWARE_SAMPLES_PER_CLASS,
                        random_state=None) -> np.ndarray:
    """`size` positions of y, drawn as Kang et al.'s class-aware sampler does (module docstring): a cycle of
    reshuffled classes, `samples_per_class` consecutive examples from each drawn class's own reshuffled cycle."""
    y = _labels(y)
    size = _check_size(size)
    if isinstance(samples_per_class, bool) or not isinstance(samples_per_class, (int, np.integer)) \
            or samples_per_class < 1:
        raise ValueError(f"samples_per_class must be a positive integer, got {samples_per_class!r}")
    k = int(samples_per_class)
    rng = np.random.default_rng(random_state)
    classes, counts = _present(y)
    draws = _cycles(rng, np.arange(classes.size), -(-size // k))          # which class each draw takes
    by_class = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.empty((draws.size, k), dtype=np.int64)
    for c in range(classes.size):                                        # each class's examples, cycled
        where = np.flatnonzero(draws == c)
        if where.size:
            members = by_class[starts[c]:starts[c] + counts[c]]
            out[where] = _cycles(rng, members, where.size * k).reshape(where.size, k)
    return out.reshape(-1)[:size]


def sqrt_indices(y, *, size: int, random_state=None) -> np.ndarray:
    """`size` positions of y, i.i.d.: class c with probability proportional to sqrt(n_c), then an example
    uniformly."""
    y = _labels(y)
    return _class_then_example(y, np.sqrt, _check_size(size), random_state)


def class_priors(y, *, n_classes: int) -> np.ndarray:
    """Class frequencies of the imbalanced training set (before any resampling), for thresholding."""
    y = _labels(y)
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"y holds labels outside [0, {n_classes - 1}] (n_classes={n_classes})")
    return np.bincount(y, minlength=n_classes) / y.size
