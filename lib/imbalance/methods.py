"""One grid point's worth of networks: every registered method, trained in one batched job.

The methods are data (`imbalance.registry`, re-exported here): a phase-1 sampling, loss terms, an
optional second stage and an optional post-hoc adjustment.  The paper's methods (section 3.3):

| method            | training set (phase 1)  | phase 2                          | prediction          |
|-------------------|-------------------------|----------------------------------|---------------------|
| baseline          | imbalanced subset       | -                                | argmax              |
| ros / rus         | over/undersampled       | -                                | argmax              |
| two-phase-ros/rus | over/undersampled       | output layers on the imbalanced  | argmax              |
|                   |                         | subset, lr x 0.1, same recipe    |                     |
| *-thresh          | as baseline / ros / rus | -                                | argmax(p / priors)  |

and the ones in use today (README, "Methods"): loss-level methods (weighted-ce, cb-ce, cb-focal,
focal, la-loss, balanced-softmax, ldam-drw, drw) as per-network loss terms; class-aware and
sqrt-sampling as mini-batch streams; crt as a second stage (output layers re-initialised and
retrained with class-aware batches, lr x 1); '<m>-la' and '<m>-tau-norm' as post-hoc adjustments.

Graded over/undersampling is ros/rus at a grid point with a `level` (the target ratio after
sampling, the paper's Figure 7). Networks are shared wherever the paper allows: a repeat trains
one phase-1 network per (sampling, loss); post-hoc methods re-use it (no extra training) and
second stages train a copy of it (it is not trained twice).

Seeds derive from (study seed, grid point, repeat, purpose) through SHA-256, so any network can
be re-trained alone. Within a repeat all methods share the imbalanced subset and the initial
weights (a paired comparison), and methods with the same sampling share its mini-batch order.
"""
from __future__ import annotations

import copy
import hashlib
import platform
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .batched import NetworkSpec, predict_networks, search_base_lr, train_networks
from .losses import loss_terms
from .metrics import accuracy, balanced_accuracy, per_class_recall, roc_auc_ovr, threshold_scores
from .profiles import imbalanced_subset
from .registry import (CROSS_ENTROPY, METHODS, PAPER_METHODS, STREAMED, Loss, Method,  # noqa: F401 (re-exported)
                       get_method, logit_adjusted_scores, method_names, register_method)
from .sampling import (class_aware_indices, class_priors, oversample_indices, sqrt_indices,
                       undersample_indices)
from .images import Preprocessor, StreamedImages
from .train import Recipe, recipe_with, resolve_device


def derive_seed(*parts) -> int:
    """A 63-bit seed from any printable parts, stable across processes and machines."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def sampled_positions(kind: str, y: np.ndarray, *, level: float | None, random_state,
                      size: int | None = None) -> np.ndarray:
    """Positions into the imbalanced subset's labels y for a sampling kind (level = graded target;
    size = draws of a streamed kind, 'class-aware' / 'sqrt': iterations x batch size)."""
    target = 1.0 if level is None else level
    if kind == "none":
        return np.arange(len(y), dtype=np.int64)
    if kind == "ros":
        return oversample_indices(y, target_rho=target, random_state=random_state)
    if kind == "rus":
        return undersample_indices(y, target_rho=target, random_state=random_state)
    if kind in STREAMED:
        draw = class_aware_indices if kind == "class-aware" else sqrt_indices
        return draw(y, size=size, random_state=random_state)
    raise ValueError(f"sampling kind must be 'none', 'ros', 'rus', 'class-aware' or 'sqrt', got {kind!r}")


def tau_normalised(model: nn.Module, *, tau: float = 1.0) -> nn.Module:
    """A copy of `model` whose last output layer's per-class weight vectors are divided by their norm^tau
    (Kang et al. 2020, tau-normalised classifier; biases are kept: LeNet-5's and All-CNN-C's have them)."""
    out = copy.deepcopy(model)
    weight = dict(out.named_parameters())[f"{out.output_layers[-1]}.weight"]     # (C, ...)
    with torch.no_grad():
        norms = weight.flatten(1).norm(dim=1).clamp_min(torch.finfo(weight.dtype).tiny)
        weight /= (norms ** tau).reshape((-1,) + (1,) * (weight.ndim - 1))
    return out


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
                   study: str = "", point_id: str | None = None, progress: bool = True,
                   progress_callback=None) -> PointResult:
    """Train and evaluate one grid point's networks (repeats x methods) and return their records.
    progress_callback(done_iterations, total_iterations): over all the point's networks (lr search included)."""
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
    stream_size = recipe.iterations * recipe.batch_size          # draws of a streamed sampler

    # the trained method behind each chosen one, and the key of its phase-1 network: one network per
    # (sampling, loss), named by the sampling kind for cross-entropy (as the paper's methods always were),
    # else by the first method that uses it (never a second stage's own key)
    trained_of = {m.name: get_method(m.base) if m.posthoc else m for m in chosen}
    trained_methods = list(dict.fromkeys(trained_of.values()))
    trunk_name: dict[tuple[str, Loss], str] = {}
    for t in trained_methods:
        trunk_name.setdefault((t.sampling, t.loss), t.sampling if t.loss.plain else
                              f"{t.name}:phase-1" if t.stage2 else t.name)
    trunk = {t.name: trunk_name[(t.sampling, t.loss)] for t in trained_methods}
    final = {t.name: t.name if t.stage2 else trunk[t.name] for t in trained_methods}   # the network it evaluates

    subsets, priors, phase1, n_train = {}, {}, [], {}
    for r in range(repeats):
        subset = imbalanced_subset(labels, profile=imbalance, rho=rho, mu=mu, n_max=n_max, minority=minority,
                                   n_classes=n_classes, random_state=derive_seed(seed, point_id, r, "subset"))
        subsets[r] = subset
        y = labels[subset.indices]
        priors[r] = class_priors(y, n_classes=n_classes)
        for (kind, loss), name in trunk_name.items():
            pos = sampled_positions(kind, y, level=level, random_state=derive_seed(seed, point_id, r, kind, "sample"),
                                    size=stream_size)
            streamed = kind in STREAMED
            counts = np.bincount(y if streamed else y[pos], minlength=n_classes)   # of the set it trains on
            phase1.append(((name, r), NetworkSpec(indices=subset.indices[pos],
                                                  init_seed=derive_seed(seed, point_id, r, "init"),
                                                  batch_seed=derive_seed(seed, point_id, r, kind, "batches"),
                                                  loss=loss_terms(loss, counts, iterations=recipe.iterations),
                                                  shuffle=not streamed)))
            n_train[(name, r)] = len(y) if streamed else len(pos)
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
    lr_scores, searched = {}, len(recipe.lr_search) * recipe.lr_search_runs if recipe.lr_search else 0
    job = _point_progress(progress_callback, recipe.iterations, searched + len(phase1) +
                          repeats * sum(bool(t.stage2) for t in trained_methods))
    if recipe.lr_search:   # All-CNN-C: pick the base lr once per grid point, on the imbalanced subsets
        best, lr_scores = search_base_lr([subsets[r].indices for r in range(repeats)], train_images,
                                         dataset.train_labels, recipe, seed=derive_seed(seed, point_id, "lr"),
                                         progress_callback=job(searched), **common)
        recipe = recipe_with(recipe, base_lr=best, lr_search=())
    trained = dict(zip([k for k, _ in phase1],
                       train_networks([s for _, s in phase1], train_images, dataset.train_labels, recipe,
                                      test=test, progress_callback=job(len(phase1)), **common)))
    # second stages, on a copy of the phase-1 network: two-phase fine-tunes the output layers on the
    # imbalanced subset at lr x 0.1; cRT re-initialises them and retrains them on class-aware batches
    phase2 = []
    for t in trained_methods:
        for r in range(repeats) if t.stage2 else ():
            pre = trained[(trunk[t.name], r)].model
            if t.stage2 == "two-phase":
                spec = NetworkSpec(indices=subsets[r].indices, init_seed=0, lr_scale=0.1, trainable="output",
                                   batch_seed=derive_seed(seed, point_id, r, t.name, "batches"), init_from=pre)
                n_train[(t.name, r)] = len(subsets[r].indices)
            else:
                y = labels[subsets[r].indices]
                pos = class_aware_indices(y, size=stream_size, random_state=derive_seed(seed, point_id, r, t.name,
                                                                                         "sample"))
                spec = NetworkSpec(indices=subsets[r].indices[pos], init_seed=derive_seed(seed, point_id, r, "init"),
                                   batch_seed=derive_seed(seed, point_id, r, t.name, "batches"), trainable="output",
                                   init_from=pre, reinit_output=True, shuffle=False)
                n_train[(t.name, r)] = len(y)
            phase2.append(((t.name, r), spec))
    if phase2:
        trained.update(zip([k for k, _ in phase2],
                           train_networks([s for _, s in phase2], train_images, dataset.train_labels, recipe,
                                          test=test, progress_callback=job(len(phase2)), **common)))

    # tau-norm: the output weights of a trained network, rescaled (no training)
    adjusted = {(m.name, r): tau_normalised(trained[(final[m.base], r)].model, tau=m.posthoc_tau)
                for m in chosen if m.posthoc == "tau-norm" for r in range(repeats)}
    models = {**{k: v.model for k, v in trained.items()}, **adjusted}
    networks = list(models)                        # evaluate every network once, batched
    logits = predict_networks([models[k] for k in networks], test_images if preprocessor is None
                              else preprocessor.transform(test_images.to(device)), device=device)
    scores = dict(zip(networks, torch.softmax(logits.double(), -1).cpu().numpy()))

    versions = {"imbalance": __version__, "torch": torch.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    git_rev, records = _git_rev(), []
    y_test = dataset.test_labels.numpy()
    for m in chosen:
        t = trained_of[m.name]
        for r in range(repeats):
            net = (final[t.name], r)
            result = trained[net]
            spent = sum(trained[k].seconds for k in {net, (trunk[t.name], r)})    # a second stage includes phase 1
            record = dict(study=study, point_id=point_id, dataset=dataset.name, imbalance=imbalance, rho=rho, mu=mu,
                          level=level, method=m.name, repeat=r, seed=seed, n_train=n_train[net],
                          class_counts=subsets[r].counts.tolist(), diverged=result.diverged,
                          diverged_at=result.diverged_at, iterations=result.iterations_done, train_seconds=spent,
                          device=str(device), versions=versions, git_rev=git_rev, curve=result.curve)
            record.update(method_metrics(scores[(m.name, r) if m.posthoc == "tau-norm" else net], y_test,
                                         priors=priors[r], diverged=result.diverged,
                                         posthoc=m.posthoc if m.posthoc in ("thresh", "la") else None,
                                         tau=m.posthoc_tau))
            records.append(record)
    return PointResult(records=records, class_counts={r: s.counts.tolist() for r, s in subsets.items()},
                       base_lr=recipe.base_lr, lr_search=lr_scores, results={**trained, **{
                           (name, r): replace(trained[(final[get_method(name).base], r)], model=model, seconds=0.0)
                           for (name, r), model in adjusted.items()}})


def _point_progress(callback, iterations: int, networks: int):
    """job(n): a train_networks progress callback for the point's next job of n networks, reporting
    to `callback` over all the point's networks x iterations (None without a callback)."""
    total, offset = iterations * networks, [0]

    def job(n: int):
        if callback is None:
            return None
        start, offset[0] = offset[0], offset[0] + n * iterations
        return lambda done, _job_total: callback(start + done, total)
    return job


def confusion_matrix(y_true, y_pred, *, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): row = true class, column = predicted class (as scikit-learn's)."""
    y, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def method_metrics(scores: np.ndarray, y_test: np.ndarray, *, priors: np.ndarray, diverged: bool,
                   threshold: bool = False, posthoc: str | None = None, tau: float = 1.0) -> dict:
    """A network's test metrics, after its method's post-hoc adjustment of the scores: 'thresh' divides
    them by the training priors (threshold=True says the same), 'la' subtracts tau log(prior) from
    their logits.  A diverged (or non-finite) network gets no metrics (None), never a score that looks fine."""
    n_classes = scores.shape[1]
    if diverged or not np.isfinite(scores).all():
        return dict(roc_auc=None, accuracy=None, thresholded_accuracy=None, balanced_accuracy=None,
                    per_class_recall=None, confusion_matrix=None)
    posthoc = "thresh" if threshold else posthoc
    if posthoc not in (None, "thresh", "la"):
        raise ValueError(f"posthoc must be None, 'thresh' or 'la' (tau-norm adjusts the network), got {posthoc!r}")
    used = threshold_scores(scores, priors) if posthoc == "thresh" else \
        logit_adjusted_scores(scores, priors, tau=tau) if posthoc == "la" else scores
    pred = used.argmax(1)
    return dict(roc_auc=roc_auc_ovr(y_test, used), accuracy=accuracy(y_test, used),
                thresholded_accuracy=accuracy(y_test, threshold_scores(scores, priors)),
                balanced_accuracy=balanced_accuracy(y_test, pred, n_classes=n_classes),
                per_class_recall=per_class_recall(y_test, pred, n_classes=n_classes).tolist(),
                confusion_matrix=confusion_matrix(y_test, pred, n_classes=n_classes).tolist())
