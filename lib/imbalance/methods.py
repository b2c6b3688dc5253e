"""The method registry and one grid point's worth of networks.

A method says how its network's training set is sampled, whether it is fine-tuned in a second
phase, and whether its outputs are thresholded by the class priors (section 3.3 of the paper):

| method            | training set (phase 1)  | phase 2                          | prediction          |
|-------------------|-------------------------|----------------------------------|---------------------|
| baseline          | imbalanced subset       | -                                | argmax              |
| ros / rus         | over/undersampled       | -                                | argmax              |
| two-phase-ros/rus | over/undersampled       | output layers on the imbalanced  | argmax              |
|                   |                         | subset, lr x 0.1, same recipe    |                     |
| *-thresh          | as baseline / ros / rus | -                                | argmax(p / priors)  |

Graded over/undersampling is ros/rus at a grid point with a `level` (the target ratio after
sampling, the paper's Figure 7). Networks are shared wherever the paper allows: a repeat trains
one network per sampling kind; thresholding re-uses it (no extra training) and two-phase
fine-tunes a copy of it (it is not trained twice).

Seeds derive from (study seed, grid point, repeat, purpose) through SHA-256, so any network can
be re-trained alone. Within a repeat all methods share the imbalanced subset and the initial
weights (a paired comparison).
"""
from __future__ import annotations

import hashlib
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .batched import NetworkSpec, predict_networks, search_base_lr, train_networks
from .metrics import accuracy, balanced_accuracy, per_class_recall, roc_auc_ovr, threshold_scores
from .profiles import imbalanced_subset
from .sampling import class_priors, oversample_indices, undersample_indices
from .images import Preprocessor, StreamedImages
from .train import Recipe, recipe_with, resolve_device


@dataclass(frozen=True)
class Method:
    name: str
    sampling: str              # "none" | "ros" | "rus": phase-1 training set
    two_phase: bool = False    # fine-tune the output layers on the imbalanced subset afterwards
    threshold: bool = False    # divide outputs by the imbalanced training set's class priors


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("baseline", "none"),
    Method("ros", "ros"),
    Method("rus", "rus"),
    Method("two-phase-ros", "ros", two_phase=True),
    Method("two-phase-rus", "rus", two_phase=True),
    Method("baseline-thresh", "none", threshold=True),
    Method("ros-thresh", "ros", threshold=True),
    Method("rus-thresh", "rus", threshold=True),
]}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def derive_seed(*parts) -> int:
    """A 63-bit seed from any printable parts, stable across processes and machines."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def sampled_positions(kind: str, y: np.ndarray, *, level: float | None, random_state) -> np.ndarray:
    """Positions into the imbalanced subset's labels y for a sampling kind (level = graded target)."""
    target = 1.0 if level is None else level
    if kind == "none":
        return np.arange(len(y), dtype=np.int64)
    if kind == "ros":
        return oversample_indices(y, target_rho=target, random_state=random_state)
    if kind == "rus":
        return undersample_indices(y, target_rho=target, random_state=random_state)
    raise ValueError(f"sampling kind must be 'none', 'ros' or 'rus', got {kind!r}")


@dataclass
class PointResult:
    records: list[dict]                         # one per (method, repeat): see store.py for fields
    class_counts: dict[int, list[int]]          # repeat -> per-class counts of the imbalanced subset
    base_lr: float = 0.0                        # the recipe's, or the winner of its lr search
    lr_search: dict = field(default_factory=dict)   # candidate base lr -> score (mean final train loss)
    results: dict = field(default_factory=dict, repr=False)   # (kind-or-method, repeat) -> TrainResult


def _git_rev() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_grid_point(dataset, *, imbalance: str, rho: float, mu: float | None = None, level: float | None = None,
                   n_max: int | None = None, minority: str = "random", methods=("baseline",), repeats: int = 1,
                   seed: int = 0, recipe: Recipe, device=None, batched: bool = True, layout: str = "auto",
                   study: str = "", point_id: str | None = None, progress: bool = True) -> PointResult:
    """Train and evaluate one grid point's networks (repeats x methods) and return their records."""
    chosen = [get_method(m) for m in methods]
    if not chosen:
        raise ValueError("methods must name at least one method")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    point_id = point_id or f"{imbalance}_rho={rho}" + (f"_mu={mu}" if mu is not None else "") + \
        (f"_level={level}" if level is not None else "")
    labels = dataset.train_labels.numpy()
    n_classes = dataset.n_classes
    device = resolve_device(None if device in (None, "auto") else device)

    subsets, priors, phase1 = {}, {}, []
    kinds = sorted({m.sampling for m in chosen})
    for r in range(repeats):
        subset = imbalanced_subset(labels, profile=imbalance, rho=rho, mu=mu, n_max=n_max, minority=minority,
                                   n_classes=n_classes, random_state=derive_seed(seed, point_id, r, "subset"))
        subsets[r] = subset
        y = labels[subset.indices]
        priors[r] = class_priors(y, n_classes=n_classes)
        for kind in kinds:
            pos = sampled_positions(kind, y, level=level, random_state=derive_seed(seed, point_id, r, kind, "sample"))
            phase1.append(((kind, r), NetworkSpec(indices=subset.indices[pos],
                                                  init_seed=derive_seed(seed, point_id, r, "init"),
                                                  batch_seed=derive_seed(seed, point_id, r, kind, "batches"))))
    if hasattr(dataset, "train_images"):     # resident: preprocessed once for both phases
        preprocessor = Preprocessor(recipe).fit(dataset.train_images.to(device))
        train_images, test_images = dataset.train_images, dataset.test_images
    else:                                    # an image folder (ILSVRC-2012 layout), decoded on demand
        preprocessor = None
        train_images = StreamedImages(dataset.train, train=True, recipe=recipe,
                                      seed=derive_seed(seed, point_id, "crops"))
        test_images = StreamedImages(dataset.test, train=False, recipe=recipe)
    test = (test_images, dataset.test_labels)
    common = dict(n_classes=n_classes, device=device, batched=batched, layout=layout, progress=progress,
                  preprocessor=preprocessor)
    lr_scores = {}
    if recipe.lr_search:   # All-CNN-C: pick the base lr once per grid point, on the imbalanced subsets
        best, lr_scores = search_base_lr([subsets[r].indices for r in range(repeats)], train_images,
                                         dataset.train_labels, recipe, seed=derive_seed(seed, point_id, "lr"),
                                         **common)
        recipe = recipe_with(recipe, base_lr=best, lr_search=())
    trained = dict(zip([k for k, _ in phase1],
                       train_networks([s for _, s in phase1], train_images, dataset.train_labels, recipe,
                                      test=test, **common)))
    # two-phase: fine-tune the output layers of a copy of the pre-trained network, lr x 0.1
    phase2 = [((m.name, r), NetworkSpec(indices=subsets[r].indices, init_seed=0,
                                        batch_seed=derive_seed(seed, point_id, r, m.name, "batches"),
                                        lr_scale=0.1, trainable="output", init_from=trained[(m.sampling, r)].model))
              for m in chosen if m.two_phase for r in range(repeats)]
    if phase2:
        trained.update(zip([k for k, _ in phase2],
                           train_networks([s for _, s in phase2], train_images, dataset.train_labels, recipe,
                                          test=test, **common)))

    networks = list(trained)                       # evaluate every trained network once, batched
    logits = predict_networks([trained[k].model for k in networks], test_images if preprocessor is None
                              else preprocessor.transform(test_images.to(device)), device=device)
    scores = dict(zip(networks, torch.softmax(logits.double(), -1).cpu().numpy()))
    n_train = {key: len(spec.indices) for key, spec in phase1 + phase2}

    versions = {"imbalance": __version__, "torch": torch.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    git_rev, records = _git_rev(), []
    y_test = dataset.test_labels.numpy()
    for m in chosen:
        for r in range(repeats):
            key = (m.name, r) if m.two_phase else (m.sampling, r)
            result = trained[key]
            spent = sum(trained[k].seconds for k in {key, (m.sampling, r)})    # two-phase includes pre-training
            record = dict(study=study, point_id=point_id, dataset=dataset.name, imbalance=imbalance, rho=rho, mu=mu,
                          level=level, method=m.name, repeat=r, seed=seed, n_train=n_train[key],
                          class_counts=subsets[r].counts.tolist(), diverged=result.diverged,
                          diverged_at=result.diverged_at, iterations=result.iterations_done, train_seconds=spent,
                          device=str(device), versions=versions, git_rev=git_rev, curve=result.curve)
            record.update(method_metrics(scores[key], y_test, priors=priors[r], threshold=m.threshold,
                                         diverged=result.diverged))
            records.append(record)
    return PointResult(records=records, class_counts={r: s.counts.tolist() for r, s in subsets.items()},
                       base_lr=recipe.base_lr, lr_search=lr_scores, results=trained)


def method_metrics(scores: np.ndarray, y_test: np.ndarray, *, priors: np.ndarray, threshold: bool,
                   diverged: bool) -> dict:
    """A network's test metrics; thresholding divides its scores by the training priors first.
    A diverged (or non-finite) network gets no metrics (None), never a score that looks fine."""
    n_classes = scores.shape[1]
    if diverged or not np.isfinite(scores).all():
        return dict(roc_auc=None, accuracy=None, thresholded_accuracy=None, balanced_accuracy=None,
                    per_class_recall=None)
    used = threshold_scores(scores, priors) if threshold else scores
    pred = used.argmax(1)
    return dict(roc_auc=roc_auc_ovr(y_test, used), accuracy=accuracy(y_test, used),
                thresholded_accuracy=accuracy(y_test, threshold_scores(scores, priors)),
                balanced_accuracy=balanced_accuracy(y_test, pred, n_classes=n_classes),
                per_class_recall=per_class_recall(y_test, pred, n_classes=n_classes).tolist())
