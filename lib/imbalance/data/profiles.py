"""Class-count profiles (step, linear, exponential) and subsampling by the study's rules.

Definitions (Buda, Maki & Mazurowski 2018, section 3.1), for N classes and a largest class of
n_max examples:
- step(mu, rho): round(mu * N) minority classes of n_max / rho examples, the rest n_max.
- linear(rho): sizes interpolated linearly from n_max / rho (smallest) to n_max (largest).
- exponential(rho) (long-tailed, not in the paper): n_i = n_max * rho^(-i / (N - 1)).
- natural (not in the paper): every example the data has; its rho is the data's own max/min ratio.
Rounding: every count is rounded half up (floor(x + 0.5)) and never drops below 1 example.
Profiles return counts in *rank order*: index 0 is the smallest class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SHAPED = ("step", "linear", "exponential")      # profiles with counts of their own (profile_counts)
PROFILES = (*SHAPED, "natural")
NATURAL = "natural"   # the data's own class counts: no subsampling, no rho/mu (your own skewed data, issue 12)
MINORITY_RULES = ("random", "lowest", "scarcity")
# random:   minority classes drawn at random per repeat (the paper's MNIST rule)
# lowest:   the lowest labels are minority, nested as mu grows (the paper's CIFAR-10 rule)
# scarcity: classes with fewer than n_max examples are always minority, the rest drawn at
#           random (the paper's ImageNet rule)


def _round(x: float) -> int:
    return max(1, int(math.floor(x + 0.5)))


def _check_common(n_classes: int, n_max: int, rho: float) -> None:
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise ValueError(f"n_max must be an integer >= 1, got {n_max!r}")
    if not isinstance(rho, (int, float, np.number)) or not math.isfinite(rho) or rho < 1:
        raise ValueError(f"rho must be a number >= 1 (majority/minority size ratio), got {rho!r}")


def n_minority_classes(*, n_classes: int, mu: float) -> int:
    """round(mu * N), checked to leave at least one minority and one majority class."""
    if not isinstance(mu, (int, float, np.number)) or not 0 < mu < 1:
        raise ValueError(f"mu must be in the open interval (0, 1) (fraction of minority classes), got {mu!r}")
    k = int(math.floor(mu * n_classes + 0.5 + 1e-9))
    if k == 0:
        raise ValueError(f"mu={mu} gives zero minority classes with {n_classes} classes "
                         f"(round(mu * n_classes) must be >= 1; use mu >= {0.5 / n_classes:g})")
    if k == n_classes:
        raise ValueError(f"mu={mu} makes all {n_classes} classes minority "
                         f"(round(mu * n_classes) must be <= {n_classes - 1})")
    return k


def step_profile(*, n_classes: int, n_max: int, mu: float, rho: float) -> np.ndarray:
    _check_common(n_classes, n_max, rho)
    k = n_minority_classes(n_classes=n_classes, mu=mu)
    counts = np.full(n_classes, n_max, dtype=np.int64)
    counts[:k] = _round(n_max / rho)
    return counts


def linear_profile(*, n_classes: int, n_max: int, rho: float) -> np.ndarray:
    _check_common(n_classes, n_max, rho)
    n_min = n_max / rho
    return np.array([_round(n_min + (n_max - n_min) * i / (n_classes - 1)) for i in range(n_classes)],
                    dtype=np.int64)


def exponential_profile(*, n_classes: int, n_max: int, rho: float) -> np.ndarray:
    _check_common(n_classes, n_max, rho)
    # written smallest first: rank i holds n_max * rho^(-(N-1-i)/(N-1))
    return np.array([_round(n_max * rho ** (-(n_classes - 1 - i) / (n_classes - 1))) for i in range(n_classes)],
                    dtype=np.int64)


def profile_counts(profile: str, *, n_classes: int, n_max: int, rho: float, mu: float | None = None) -> np.ndarray:
    """Counts in rank order for a profile named by string (as in params files)."""
    if profile == "step":
        if mu is None:
            raise ValueError("mu is required for the step profile (fraction of minority classes in (0, 1))")
        return step_profile(n_classes=n_classes, n_max=n_max, mu=mu, rho=rho)
    if mu is not None:
        raise ValueError(f"mu must be None for the {profile!r} profile (it applies to 'step' only), got {mu!r}")
    if profile == "linear":
        return linear_profile(n_classes=n_classes, n_max=n_max, rho=rho)
    if profile == "exponential":
        return exponential_profile(n_classes=n_classes, n_max=n_max, rho=rho)
    raise ValueError(f"profile must be one of {SHAPED}, got {profile!r}"
                     + (" ('natural' keeps the data's own counts: it has no profile of its own)"
                        if profile == NATURAL else ""))


@dataclass(frozen=True)
class SubsetCounts:
    counts: np.ndarray           # per label: examples kept
    minority_classes: tuple[int, ...]   # labels whose count is below the largest class, sorted
    class_order: np.ndarray      # labels in rank order (smallest class first)


@dataclass(frozen=True)
class Subset:
    indices: np.ndarray          # int64 positions into the full training set, sorted
    counts: np.ndarray           # per label: examples kept
    minority_classes: tuple[int, ...]   # labels whose count is below the largest class, sorted
    class_order: np.ndarray      # labels in rank order (smallest class first)


def _class_order(available: np.ndarray, *, minority: str, n_max: int, rng: np.random.Generator) -> np.ndarray:
    """Labels in rank order (the first gets the profile's smallest count)."""
    n = len(available)
    if minority == "random":
        return rng.permutation(n)
    if minority == "lowest":
        return np.arange(n)
    # scarcity: classes with fewer than n_max examples first (smallest first), so they are always
    # minority while the profile has that many minority ranks; the rest in random order
    scarce = np.flatnonzero(available < n_max)
    scarce = scarce[np.argsort(available[scarce], kind="stable")]
    rest = np.flatnonzero(available >= n_max)
    return np.concatenate([scarce, rng.permutation(rest)]).astype(np.int64)


def subset_counts(available, *, profile: str, rho: float | None = None, mu: float | None = None,
                  n_max: int | None = None, minority: str = "random", random_state=None) -> SubsetCounts:
    """Per-class counts of an imbalanced subset, from the available count per label alone.

    A dataset's count table (e.g. an image folder's files per class, ILSVRC-2012: 732-1,300)
    is enough to plan and print subsets without reading labels.  n_max, minority and
    random_state as in `imbalanced_subset` (which draws its examples after these counts, from
    the same random stream).  With minority='scarcity' a class keeps at most what it has.
    """
    available = np.asarray(available)
    if available.ndim != 1 or len(available) < 2 or not np.issubdtype(available.dtype, np.integer) \
            or (available < 0).any():
        raise ValueError(f"available must be a 1-d array of >= 2 non-negative per-class counts, "
                         f"got dtype {available.dtype} and shape {available.shape}")
    if minority not in MINORITY_RULES:
        raise ValueError(f"minority must be one of {MINORITY_RULES}, got {minority!r}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {SHAPED}, got {profile!r}"
                     + (" ('natural' keeps the data's own counts: it has no profile of its own)"
                        if profile == NATURAL else ""))
    available = available.astype(np.int64)
    n_classes = len(available)
    if profile == NATURAL:
        return _natural_counts(available, rho=rho, mu=mu, n_max=n_max)
    if n_max is None:
        n_max = int(available.max() if minority == "scarcity" else available.min())
    rng = np.random.default_rng(random_state)
    ranked = profile_counts(profile, n_classes=n_classes, n_max=n_max, rho=rho, mu=mu)
    order = _class_order(available, minority=minority, n_max=n_max, rng=rng)
    counts = np.empty(n_classes, dtype=np.int64)
    counts[order] = ranked
    if minority == "scarcity":
        counts = np.minimum(counts, available)
    elif (counts > available).any():
        c = int(np.flatnonzero(counts > available)[0])
        raise ValueError(f"n_max={n_max} is larger than class {c} has ({available[c]} examples); "
                         f"use n_max <= {int(available.min())} or minority='scarcity'")
    minority_classes = tuple(int(c) for c in np.flatnonzero(counts < counts.max()))
    return SubsetCounts(counts=counts, minority_classes=minority_classes, class_order=order)


def natural_rho(counts) -> float:
    """The data's own imbalance ratio: largest class over smallest (inf if a class has no example)."""
    counts = np.asarray(counts)
    return float(counts.max() / counts.min()) if counts.min() > 0 else math.inf


def _natural_counts(available: np.ndarray, *, rho, mu, n_max) -> SubsetCounts:
    for key, value in (("rho", rho), ("mu", mu), ("n_max", n_max)):
        if value is not None:
            raise ValueError(f"{key} must be None for the 'natural' profile (it keeps the data's own class counts: "
                             f"no subsampling, no rho/mu grid), got {value!r}")
    empty = np.flatnonzero(available == 0)
    if empty.size:
        raise ValueError(f"class {int(empty[0])} has no training example; the 'natural' profile needs every class")
    order = np.argsort(available, kind="stable").astype(np.int64)
    minority_classes = tuple(int(c) for c in np.flatnonzero(available < available.max()))
    return SubsetCounts(counts=available.copy(), minority_classes=minority_classes, class_order=order)


def imbalanced_subset(labels, *, profile: str, rho: float | None = None, mu: float | None = None,
                      n_max: int | None = None, minority: str = "random", n_classes: int | None = None,
                      random_state=None) -> Subset:
    """Subsample a (balanced) labelled training set to an imbalance profile.

    labels: int labels of the full training set (numpy or torch). n_max: examples of the largest
    class (default: the smallest class size, so every class can supply it; the paper caps MNIST at
    5,000). Examples within a class are drawn without replacement; the same random_state gives the
    same subset, different ones differ. With minority='scarcity' a class smaller than its target
    keeps all it has (ImageNet's natural scarcity); otherwise n_max larger than a class is an error.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-d array of class labels, got shape {labels.shape}")
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    available = np.bincount(labels, minlength=n_classes)
    rng = np.random.default_rng(random_state)
    planned = subset_counts(available, profile=profile, rho=rho, mu=mu, n_max=n_max, minority=minority,
                            random_state=rng)
    # positions grouped by label, each group in increasing order (= np.flatnonzero(labels == c))
    by_label = np.split(np.argsort(labels, kind="stable"), np.cumsum(available)[:-1])
    chosen = [rng.choice(by_label[c], size=planned.counts[c], replace=False) for c in range(n_classes)]
    indices = np.sort(np.concatenate(chosen)).astype(np.int64)
    return Subset(indices=indices, counts=planned.counts, minority_classes=planned.minority_classes,
                  class_order=planned.class_order)


# --- honest evaluation: a validation split, and a test set that follows the training prior ------

@dataclass(frozen=True)
class Split:
    train: np.ndarray            # positions into the labels given, sorted
    validation: np.ndarray       # positions into the labels given, sorted


def validation_split(labels, *, fraction: float, n_classes: int | None = None, random_state=None) -> Split:
    """A stratified hold-out: max(1, round(fraction x n_c)) examples of each class c go to validation,
    drawn without replacement, so every class is validated; at least one stays in training, or the split
    is an error naming the class."""
    labels = np.asarray(labels, dtype=np.int64)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"validation must be a fraction in the open interval (0, 1), got {fraction!r}")
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    rng = np.random.default_rng(random_state)
    held = []
    for c in range(n_classes):
        where = np.flatnonzero(labels == c)
        n_val = max(1, _round(fraction * len(where)) if len(where) else 0)
        if len(where) - n_val < 1:
            raise ValueError(f"validation={fraction}: class {c} has {len(where)} training example(s), too few to "
                             f"hold one out and keep one to train on; use fewer classes or more data")
        held.append(rng.choice(where, size=n_val, replace=False))
    validation = np.sort(np.concatenate(held)).astype(np.int64)
    return Split(train=np.setdiff1d(np.arange(len(labels)), validation).astype(np.int64), validation=validation)


def prior_test_subset(labels, *, priors, random_state=None) -> np.ndarray:
    """Positions of a test subsample whose class frequencies follow `priors` (the training prior): the
    largest test subsample with n_c proportional to prior_c that the classes' test examples allow, at
    least one per class, drawn without replacement; sorted."""
    labels = np.asarray(labels, dtype=np.int64)
    priors = np.asarray(priors, dtype=np.float64)
    available = np.bincount(labels, minlength=len(priors))
    if (priors <= 0).any() or (available == 0).any():
        raise ValueError("priors must be positive and every class must have a test example for a "
                         f"train-prior test set; test counts {available.tolist()}")
    scale = np.min(available / priors)
    counts = np.minimum(available, np.maximum(1, np.floor(scale * priors + 1e-9).astype(np.int64)))
    rng = np.random.default_rng(random_state)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=counts[c], replace=False) for c in range(len(priors))]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
