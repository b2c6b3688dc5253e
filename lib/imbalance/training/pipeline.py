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
import itertools
import math
import platform
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imbalance import __version__
from imbalance.catalog import SELECTIONS, TEST_PRIORS
from imbalance.data.images import Preprocessor, StreamedImages
from imbalance.data.profiles import NATURAL, imbalanced_subset, natural_rho, prior_test_subset, validation_split
from imbalance.data.resampling import (
    class_aware_indices,
    class_priors,
    oversample_indices,
    sqrt_indices,
    undersample_indices,
)
from imbalance.registry import (
    STREAMED,
    TAU_GRID,
    TAU_SELECTED_BY,
    fingerprint,
    get_method,
    logit_adjusted_scores,
)
from imbalance.schema import PER_CLASS_METRICS, SCALAR_METRICS, VALIDATION_METRICS
from imbalance.seeds import batch_seed, batch_stream, derive_seed, init_seed, sample_seed, subset_seed
from imbalance.seeds import point_id as point_id_of
from imbalance.training.batched import NetworkSpec, predict_networks, search_base_lr, train_networks
from imbalance.training.fast import FAST_RECIPES, FastRecipe, ScaledImages, fast_recipe_with, train_fast_networks
from imbalance.training.loop import CONSTANT, resolve_device
from imbalance.training.losses import loss_terms
from imbalance.training.metrics import accuracy, all_metrics, roc_auc_ovr, threshold_scores
from imbalance.training.models import sized_model
from imbalance.training.recipes import RECIPES, Recipe, recipe_with


def study_recipe(name: str, overrides=None) -> Recipe | FastRecipe:
    """The training recipe a params file names: one of the paper's (train.RECIPES) or a fast CIFAR-10
    one (fast.FAST_RECIPES), with `overrides` (a params file's recipe_overrides) applied and checked."""
    overrides = dict(overrides or {})
    if name in RECIPES:
        return recipe_with(RECIPES[name], **overrides)
    if name in FAST_RECIPES:
        return fast_recipe_with(FAST_RECIPES[name], **overrides)
    raise ValueError(f"recipe must be one of {', '.join([*RECIPES, *FAST_RECIPES])}, got {name!r}")


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
    """A copy of `model` whose last output layer's per-class weight vectors are divided by their norm^tau and
    whose biases are zero, as Kang et al.'s tau_norm.py scores (`pnorm`, then a dot product without the bias)."""
    out = copy.deepcopy(model)
    named, layer = dict(out.named_parameters()), out.output_layers[-1]
    weight = named.get(f"{layer}.weight", named.get(layer))      # (C, ...): a module's, or a tensor (fast.FastNet)
    with torch.no_grad():
        norms = weight.flatten(1).norm(dim=1).clamp_min(torch.finfo(weight.dtype).tiny)
        weight /= (norms ** tau).reshape((-1,) + (1,) * (weight.ndim - 1))
        if f"{layer}.bias" in named:
            named[f"{layer}.bias"].zero_()
    return out


class AlreadyScaled:
    """The preprocessing of float32 images given already scaled (an .npz of floats): values left as they are."""

    def fit(self, images: torch.Tensor) -> "AlreadyScaled":
        return self

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        return images.float()


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


def run_grid_point(dataset, *, imbalance: str, rho: float | None = None, mu: float | None = None,
                   level: float | None = None, n_max: int | None = None, minority: str = "random",
                   methods=("baseline",), repeats: int = 1,
                   seed: int = 0, recipe: Recipe, device=None, batched: bool = True, layout: str = "auto",
                   study: str = "", point_id: str | None = None, progress: bool = True,
                   validation: float | None = None, test_prior: str = "balanced",
                   selection: str = "train-loss", progress_callback=None) -> PointResult:
    """Train and evaluate one grid point's networks (repeats x methods) and return their records.

    validation: a fraction of each repeat's imbalanced subset held out, stratified (profiles.validation_split,
    seeded per repeat): records get `val_*` metrics and '-la' / '-tau-norm' methods their tau chosen on it
    (registry.TAU_GRID).
    test_prior: 'balanced' (the data's test set), 'train' (a seeded test subsample following each repeat's
    training prior) or 'both' (balanced, and the other as `prior_*` metrics).
    selection: one of SELECTIONS (best-of: every candidate lr x run trains the method's whole pipeline,
    a second stage at its candidate's lr x 0.1, and the records keep the selected one, with `base_lr`).
    progress_callback(done_iterations, total_iterations): over all the point's networks (lr search included)."""
    chosen = [get_method(m) for m in methods]
    _check_point_arguments(chosen, recipe=recipe, repeats=repeats, validation=validation, test_prior=test_prior,
                           selection=selection)
    natural = imbalance == NATURAL      # the data's own counts: records get rho = its max/min ratio, mu None
    point_id = point_id or point_id_of(imbalance, rho=None if natural else rho, mu=mu, level=level)
    labels = dataset.train_labels.numpy()
    n_classes = dataset.n_classes
    fast = isinstance(recipe, FastRecipe)      # imbalance.training.fast: uint8 images in, its own scaling and whitening
    if fast:
        _check_fast_point(dataset, recipe, methods)
    else:   # the recipe's model fitted to the images' size (LeNet-5's fc1; All-CNN-C and ResNet-10 pool globally)
        side = tuple(dataset.train_images.shape[-2:]) if hasattr(dataset, "train_images") else \
            (recipe.crop_size, recipe.crop_size)
        recipe = recipe_with(recipe, model=sized_model(recipe.model, side))
    device = resolve_device(None if device in (None, "auto") else device)
    stream_size = recipe.iterations * recipe.batch_size          # draws of a streamed sampler

    nets = _point_networks(chosen)
    trained_of, trained_methods, trunk, final = nets.trained_of, nets.trained_methods, nets.trunk, nets.final

    # the candidates each method's pipeline trains: (lr scale, run); run 0 keeps the paired seeds
    lr_candidates = [(1.0, 0)] if selection == "train-loss" else \
        [(lr / recipe.base_lr, run) for lr in recipe.lr_search for run in range(recipe.lr_search_runs)]
    subsets, held_out = {}, {}
    for r in range(repeats):
        subsets[r], held = _repeat_subset(labels, r, imbalance=imbalance, rho=rho, mu=mu, n_max=n_max,
                                          minority=minority, n_classes=n_classes, validation=validation,
                                          seed=seed, point_id=point_id)
        if held is not None:
            held_out[r] = held
    priors = {r: class_priors(labels[subsets[r].indices], n_classes=n_classes) for r in range(repeats)}
    phase1, n_train = _phase1_specs(nets, subsets, labels, lr_candidates, level=level, n_classes=n_classes,
                                    iterations=recipe.iterations, stream_size=stream_size, seed=seed,
                                    point_id=point_id)
    train_images, test_images, prep = _point_images(dataset, recipe, subsets, fast=fast, device=device, seed=seed,
                                                    point_id=point_id)
    test = (test_images, dataset.test_labels)
    common = dict(n_classes=n_classes, device=device, batched=batched, layout=layout, progress=progress)

    def train(keyed, progress_callback, stage_recipe=None):   # one job of networks (key, spec), key[1] its repeat
        recipe_ = stage_recipe or recipe                       # a second stage's own length and schedule
        if fast:
            return train_fast_networks([s for _, s in keyed], train_images, dataset.train_labels, recipe_,
                                       n_classes=n_classes, device=device, layout=layout if batched else "single",
                                       test=test, progress=progress, progress_callback=progress_callback)
        out, done = [None] * len(keyed), [0]        # networks of one preprocessing train together
        for pre in {id(prep[k[1]]): prep[k[1]] for k, _ in keyed}.values():
            where = [i for i, (k, _) in enumerate(keyed) if prep[k[1]] is pre]
            offset = done[0]
            report = None if progress_callback is None else \
                (lambda d, _t, offset=offset: progress_callback(offset + d, len(keyed) * recipe_.iterations))
            results = train_networks([keyed[i][1] for i in where], train_images, dataset.train_labels, recipe_,
                                     test=test, progress_callback=report, preprocessor=pre, **common)
            for i, res in zip(where, results):
                out[i] = res
            done[0] += len(where) * recipe_.iterations
        return out
    lr_search = getattr(recipe, "lr_search", ())     # the fast recipes have none
    searched = len(lr_search) * recipe.lr_search_runs if lr_search and selection == "train-loss" else 0
    lr_scores = {}
    stage2_iterations = {t.name: second_stage_recipe(recipe, t).iterations for t in trained_methods if t.stage2}
    job = _point_progress(progress_callback, recipe.iterations * (searched + len(phase1)) +
                          repeats * len(lr_candidates) * sum(stage2_iterations.values()))
    if lr_search and selection == "train-loss":   # All-CNN-C: one base lr per grid point, on the subsets
        best, lr_scores = search_base_lr([subsets[r].indices for r in range(repeats)], train_images,
                                         dataset.train_labels, recipe, seed=derive_seed(seed, point_id, "lr"),
                                         progress_callback=job(searched * recipe.iterations),
                                         preprocessor=prep[0], **common)
        recipe = recipe_with(recipe, base_lr=best, lr_search=())
    trained = dict(zip([k for k, _ in phase1], train(phase1, job(len(phase1) * recipe.iterations))))
    stage_recipes = {t.name: second_stage_recipe(recipe, t) for t in trained_methods if t.stage2}
    phase2 = _phase2_specs(nets, trained, subsets, labels, lr_candidates, n_train, batch_size=recipe.batch_size,
                           stage_recipes=stage_recipes, seed=seed, point_id=point_id)
    for stage_recipe in {id(r): r for r in stage_recipes.values()}.values():   # one job per stage length
        keyed = [(k, spec) for k, spec in phase2 if stage_recipes[k[0]] is stage_recipe]
        trained.update(zip([k for k, _ in keyed], train(keyed, job(len(keyed) * stage_recipe.iterations),
                                                        stage_recipe=stage_recipe)))

    # each repeat's held-out examples, as the networks take them (never the test set)
    val_images = {r: StreamedImages(torch.utils.data.Subset(dataset.train, where.tolist()), train=False, recipe=recipe)
                  if prep[r] is None else prep[r].transform(dataset.train_images[where].to(device))
                  for r, where in held_out.items()}
    test_inputs = {r: test_images if prep[r] is None else prep[r].transform(test_images.to(device))
                   for r in range(repeats)} if prep[0] is None or len({id(p) for p in prep.values()}) > 1 else \
        dict.fromkeys(range(repeats), prep[0].transform(test_images.to(device)))   # one transform when shared
    # the selected candidate of every network a method evaluates (one candidate: it), and its phase 1
    finals = list(dict.fromkeys(final[t.name] for t in trained_methods))
    picked, selection_scores = _select(trained, finals, repeats=repeats, n_candidates=len(lr_candidates),
                                       selection=selection, images=val_images if selection.startswith("validation")
                                       else test_inputs,
                                       labels={r: labels[held_out[r]] for r in held_out}
                                       if selection.startswith("validation") else
                                       {r: dataset.test_labels.numpy() for r in range(repeats)}, device=device)
    phase1_of = {(t.name, r): trained[(trunk[t.name], r, picked[(final[t.name], r)])]
                 for t in trained_methods for r in range(repeats)}
    trained = {(n, r): trained[(n, r, picked[(n, r)])] for n in finals for r in range(repeats)}
    adjusted, chosen_tau = _tau_norm_models(chosen, final, trained, repeats=repeats, val_images=val_images,
                                            val_labels={r: labels[w] for r, w in held_out.items()}, priors=priors,
                                            device=device)
    models = {**{k: v.model for k, v in trained.items()}, **adjusted}
    scores = {}                                    # every network once, batched per test input
    for inputs in {id(x): x for x in test_inputs.values()}.values():
        networks = [k for k in models if test_inputs[k[1]] is inputs]
        logits = predict_networks([models[k] for k in networks], inputs, device=device)
        scores.update((k, to_scores(x)) for k, x in zip(networks, logits))

    # validation scores: each repeat's networks on its own held-out examples (never the test set)
    val_scores = {}
    for r, images in val_images.items():
        keys = [k for k in models if k[1] == r]
        val_logits = predict_networks([models[k] for k in keys], images, device=device)
        val_scores.update((k, to_scores(x)) for k, x in zip(keys, val_logits))
    y_test = dataset.test_labels.numpy()
    prior_test = {r: prior_test_subset(y_test, priors=priors[r], random_state=derive_seed(seed, point_id, r,
                                                                                          "test-prior"))
                  for r in range(repeats)} if test_prior != "balanced" else {}

    versions = {"imbalance": __version__, "torch": torch.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    git_rev, records = _git_rev(), []
    for m in chosen:
        t = trained_of[m.name]
        for r in range(repeats):
            net = (final[t.name], r)
            result = trained[net]
            key = (m.name, r) if m.posthoc == "tau-norm" else net
            failure = result.failure or (CONSTANT if constant_outputs(scores[net]) or constant_outputs(scores[key])
                                         else None)
            failed = failure is not None
            spent = result.seconds + (phase1_of[(t.name, r)].seconds if t.stage2 else 0.0)  # with its phase 1
            record = dict(study=study, point_id=point_id, dataset=dataset.name, imbalance=imbalance,
                          rho=natural_rho(subsets[r].counts) if natural else rho, mu=mu,
                          level=level, method=m.name, repeat=r, seed=seed, n_train=n_train[net],
                          class_counts=subsets[r].counts.tolist(), classes=list(dataset.classes),
                          diverged=failed, failure=failure, method_fingerprint=fingerprint(m.name),
                          diverged_at=result.diverged_at, iterations=result.iterations_done, train_seconds=spent,
                          device=str(device), versions=versions, git_rev=git_rev, curve=result.curve)
            posthoc = m.posthoc if m.posthoc in ("thresh", "la") else None
            tau, tau_source = (m.posthoc_tau, "fixed") if m.posthoc in ("la", "tau-norm") else (None, None)
            y_val = labels[held_out[r]] if r in held_out else None
            if m.posthoc == "la" and y_val is not None and not failed:
                tau, tau_source = _tau_on_validation(val_scores[key], y_val, priors=priors[r]), "validation"
            if (m.name, r) in chosen_tau:
                tau, tau_source = chosen_tau[(m.name, r)], "validation"
            metric = dict(priors=priors[r], diverged=failed, posthoc=posthoc, tau=1.0 if tau is None else tau)
            main = prior_test[r] if test_prior == "train" else slice(None)
            record.update(method_metrics(scores[key][main], y_test[main], **metric))
            scale = lr_candidates[picked[net]][0]
            record.update(zca_fit=recipe.zca_fit if getattr(recipe, "preprocessing", None) == "gcn-zca" else None)
            record.update(selection=selection, base_lr=float(getattr(recipe, "base_lr", getattr(recipe, "lr", 0.0)))
                          * scale, selection_score=selection_scores.get(net))
            record.update(test_prior="train" if test_prior == "train" else "balanced", posthoc_tau=tau,
                          tau_source=tau_source, validation=validation,
                          n_validation=None if y_val is None else len(y_val))
            val = method_metrics(val_scores[key], y_val, **metric) if y_val is not None else {}
            record.update({f"val_{k}": val.get(k) for k in VALIDATION_METRICS})       # None without a split
            other = method_metrics(scores[key][prior_test[r]], y_test[prior_test[r]], **metric) \
                if test_prior == "both" else {}
            record.update({f"prior_{k}": other.get(k) for k in VALIDATION_METRICS})   # None unless 'both'
            records.append(record)
    return PointResult(records=records, class_counts={r: s.counts.tolist() for r, s in subsets.items()},
                       base_lr=recipe.lr if fast else recipe.base_lr, lr_search=lr_scores, results={**trained, **{
                           (name, r): replace(trained[(final[get_method(name).base], r)], model=model, seconds=0.0)
                           for (name, r), model in adjusted.items()}})


def _check_point_arguments(chosen, *, recipe, repeats, validation, test_prior, selection) -> None:
    """run_grid_point's knobs, checked before any data is touched: one-line ValueErrors."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    if selection != "train-loss" and not getattr(recipe, "lr_search", ()):
        raise ValueError(f"selection {selection!r} picks among a recipe's lr search candidates, and recipe "
                         f"{recipe.name!r} has none (lr_search is empty); use selection 'train-loss'")
    if selection == "validation-best-of-8" and validation is None:
        raise ValueError("selection 'validation-best-of-8' needs a validation split: set validation "
                         "(a fraction of each repeat's subset, e.g. 0.1)")
    if not chosen:
        raise ValueError("methods must name at least one method")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if test_prior not in TEST_PRIORS:
        raise ValueError(f"test_prior must be one of {', '.join(TEST_PRIORS)}, got {test_prior!r}")


def _check_fast_point(dataset, recipe, methods) -> None:
    """A fast recipe takes every method (issue 23) and resident uint8 images, or says why not."""
    images = getattr(dataset, "train_images", None)
    if images is None or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"recipe {recipe.name!r} needs resident uint8 images (N, C, H, W), e.g. CIFAR-10 "
                         f"or an image folder that fits in memory; dataset {dataset.name!r} has "
                         f"{'streamed images' if images is None else f'{images.dtype} {tuple(images.shape)}'}")


@dataclass(frozen=True)
class _PointNetworks:
    """Which network each chosen method trains and evaluates.  One phase-1 network per (sampling, loss,
    head), named by the sampling kind for cross-entropy with the model's head (as the paper's methods always
    were), else by the first method that uses it (never a second stage's own key)."""
    trained_of: dict          # chosen method's name -> the trained Method behind it (a post-hoc one's base)
    trained_methods: list     # the distinct trained Methods, in order
    trunk_name: dict          # _trunk_key(method) -> phase-1 network key
    trunk_method: dict        # phase-1 network key -> the first trained Method that uses it
    trunk: dict               # trained method's name -> its phase-1 network key
    final: dict               # trained method's name -> the network it evaluates (its own if it has a stage 2)


def _trunk_key(t) -> tuple:
    """What makes two trained methods' phase-1 networks the same network."""
    return t.sampling, t.loss, t.head, t.head_scale if t.head != "model" else None, t.bias_init


def _point_networks(chosen) -> _PointNetworks:
    trained_of = {m.name: get_method(m.base) if m.posthoc else m for m in chosen}
    trained_methods = list(dict.fromkeys(trained_of.values()))
    trunk_name: dict[tuple, str] = {}
    trunk_method: dict[str, object] = {}
    for t in trained_methods:
        plain = t.loss.plain and t.head == "model" and t.bias_init == "model"
        name = trunk_name.setdefault(_trunk_key(t), t.sampling if plain else f"{t.name}:phase-1" if t.stage2 else t.name)
        trunk_method.setdefault(name, t)
    trunk = {t.name: trunk_name[_trunk_key(t)] for t in trained_methods}
    final = {t.name: t.name if t.stage2 else trunk[t.name] for t in trained_methods}
    return _PointNetworks(trained_of, trained_methods, trunk_name, trunk_method, trunk, final)


def _repeat_subset(labels, r: int, *, imbalance, rho, mu, n_max, minority, n_classes, validation, seed, point_id):
    """Repeat r's imbalanced subset (its training part, when a validation split is held out of it) and the
    held-out indices (None without a split)."""
    subset = imbalanced_subset(labels, profile=imbalance, rho=rho, mu=mu, n_max=n_max, minority=minority,
                               n_classes=n_classes, random_state=subset_seed(seed, point_id, r))
    if validation is None:
        return subset, None
    split = validation_split(labels[subset.indices], fraction=validation, n_classes=n_classes,
                             random_state=derive_seed(seed, point_id, r, "validation"))
    kept = subset.indices[split.train]
    return (replace(subset, indices=kept, counts=np.bincount(labels[kept], minlength=n_classes)),
            subset.indices[split.validation])


def _point_images(dataset, recipe, subsets, *, fast: bool, device, seed, point_id):
    """(train images, test images, {repeat: preprocessor}) as the point's networks take them; a
    preprocessor None means streamed images, decoded and scaled on demand."""
    # 'gcn-zca' with zca_fit 'subset': each repeat's whitening fitted on its own imbalanced subset only
    zca_subset = getattr(recipe, "preprocessing", None) == "gcn-zca" and recipe.zca_fit == "subset" and \
        hasattr(dataset, "train_images") and not dataset.train_images.is_floating_point()
    if fast:                                 # scaled to [0, 1] batch by batch, whitened inside the network
        preprocessor = ScaledImages()
        train_images, test_images = dataset.train_images, dataset.test_images
    elif hasattr(dataset, "train_images"):   # resident: preprocessed once for both phases
        preprocessor = (AlreadyScaled() if dataset.train_images.is_floating_point() else
                        None if zca_subset else Preprocessor(recipe).fit(dataset.train_images.to(device)))
        train_images, test_images = dataset.train_images, dataset.test_images
    else:                                    # an image folder (ILSVRC-2012 layout), decoded on demand
        preprocessor = None
        train_images = StreamedImages(dataset.train, train=True, recipe=recipe,
                                      seed=derive_seed(seed, point_id, "crops"))
        test_images = StreamedImages(dataset.test, train=False, recipe=recipe)
    prep = {r: Preprocessor(recipe, zca_fit="subset").fit(train_images.to(device), subset=subset.indices)
            for r, subset in subsets.items()} if zca_subset else dict.fromkeys(subsets, preprocessor)
    return train_images, test_images, prep


def _phase1_specs(nets: _PointNetworks, subsets, labels, lr_candidates, *, level, n_classes, iterations,
                  stream_size, seed, point_id):
    """((network key, repeat, candidate), NetworkSpec) of every phase-1 network, and {(key, r): examples
    it trains on}.  Within a repeat every network starts from the same weights; networks of one sampling
    kind share its mini-batch order (the pairing)."""
    phase1, n_train = [], {}
    for r, subset in subsets.items():
        y = labels[subset.indices]
        for name, t in nets.trunk_method.items():
            kind = t.sampling
            pos = sampled_positions(kind, y, level=level, random_state=sample_seed(seed, point_id, r, kind),
                                    size=stream_size)
            streamed = kind in STREAMED
            counts = np.bincount(y if streamed else y[pos], minlength=n_classes)   # of the set it trains on
            for c, (scale, run) in enumerate(lr_candidates):
                phase1.append(((name, r, c), NetworkSpec(
                    indices=subset.indices[pos], init_seed=init_seed(seed, point_id, r, run),
                    batch_seed=batch_seed(seed, point_id, r, kind, run), lr_scale=scale,
                    loss=loss_terms(t.loss, counts, iterations=iterations), shuffle=not streamed,
                    head_scale=t.head_scale if t.head == "cosine" else 0.0,
                    output_bias=-math.log(n_classes - 1) if t.bias_init == "sigmoid-uniform" else None)))
            n_train[(name, r)] = len(y) if streamed else len(pos)
    return phase1, n_train


def second_stage_recipe(recipe, method):
    """The recipe a method's second stage trains with: the recipe itself, or (Kang et al.'s cRT and its
    control) `stage2_length` of its iterations with the lr annealed from the base lr to 0 by a cosine."""
    if not method.stage2 or (method.stage2_length == 1.0 and method.stage2_schedule == "recipe"):
        return recipe
    iterations = max(1, int(round(recipe.iterations * method.stage2_length)))
    changes = dict(iterations=iterations, eval_interval=min(recipe.eval_interval, iterations))
    if method.stage2_schedule == "cosine":
        changes["lr_policy"] = "cosine"
    return fast_recipe_with(recipe, **changes) if isinstance(recipe, FastRecipe) else recipe_with(recipe, **changes)


def _phase2_specs(nets: _PointNetworks, trained, subsets, labels, lr_candidates, n_train, *, batch_size,
                  stage_recipes, seed, point_id) -> list:
    """Second stages, on a copy of the phase-1 network: two-phase fine-tunes the output layers on the
    imbalanced subset at lr x 0.1; cRT re-initialises them and retrains them on class-aware batches
    (`stage_recipes[name]`: its own length and schedule).  Adds each one's training-set size to `n_train`."""
    phase2 = []
    for t in nets.trained_methods:
        for r, (c, (scale, run)) in itertools.product(subsets if t.stage2 else (), enumerate(lr_candidates)):
            pre = trained[(nets.trunk[t.name], r, c)].model
            batches = batch_seed(seed, point_id, r, batch_stream(method=t.name, sampling=t.sampling, second_stage=t.stage2),
                                 run)
            if t.stage2 == "two-phase":
                spec = NetworkSpec(indices=subsets[r].indices, init_seed=0, lr_scale=0.1 * scale, trainable="output",
                                   batch_seed=batches, init_from=pre)
                n_train[(t.name, r)] = len(subsets[r].indices)
            elif t.stage2 == "head-retrain":        # cRT's control: its head re-training, instance-balanced batches
                spec = NetworkSpec(indices=subsets[r].indices, init_seed=init_seed(seed, point_id, r, run),
                                   batch_seed=batches, trainable="output", lr_scale=scale, init_from=pre,
                                   reinit_output=True)
                n_train[(t.name, r)] = len(subsets[r].indices)
            else:
                y = labels[subsets[r].indices]
                pos = class_aware_indices(y, size=stage_recipes[t.name].iterations * batch_size,
                                          random_state=sample_seed(seed, point_id, r, t.name))
                spec = NetworkSpec(indices=subsets[r].indices[pos],
                                   init_seed=init_seed(seed, point_id, r, run), batch_seed=batches,
                                   trainable="output", lr_scale=scale, init_from=pre, reinit_output=True,
                                   shuffle=False)
                n_train[(t.name, r)] = len(y)
            phase2.append(((t.name, r, c), spec))
    return phase2


def _tau_norm_models(chosen, final, trained, *, repeats, val_images, val_labels, priors, device):
    """'-tau-norm' methods: their base network's output weights rescaled (no training), tau chosen on
    the repeat's validation split where there is one (as '-la's), else the method's fixed tau.
    Returns ({(method, r): model}, {(method, r): tau chosen on validation})."""
    adjusted, chosen_tau = {}, {}
    for m in chosen:
        for r in range(repeats) if m.posthoc == "tau-norm" else ():
            base = trained[(final[m.base], r)]
            if r in val_images and not base.diverged:
                candidates = [tau_normalised(base.model, tau=tau) for tau in TAU_GRID]
                val = torch.softmax(predict_networks(candidates, val_images[r], device=device).double(), -1).cpu()
                best = _first_best([method_metrics(v.numpy(), val_labels[r], priors=priors[r], diverged=False)[
                    TAU_SELECTED_BY] for v in val])
                adjusted[(m.name, r)], chosen_tau[(m.name, r)] = candidates[best], TAU_GRID[best]
            else:
                adjusted[(m.name, r)] = tau_normalised(base.model, tau=m.posthoc_tau)
    return adjusted, chosen_tau


def constant_outputs(scores: np.ndarray) -> bool:
    """Whether a network's scores (N, C) do not vary over the test set (every class's spread <= 1e-9): it
    cannot rank, so it has failed (FAILURES), whatever its loss did."""
    scores = np.asarray(scores, dtype=np.float64)
    return bool(np.isfinite(scores).all() and len(scores) > 1 and (np.ptp(scores, axis=0) <= 1e-9).all())


def to_scores(logits: torch.Tensor) -> np.ndarray:
    """A network's logits (N, C) as float64 scores: the softmax, for every network whatever its loss (the
    study's one scoring rule, so a difference in one-vs-rest ROC AUC is a difference in training, never in
    scoring; a sigmoid loss's own per-class sigmoids rank a class's examples differently: docs/methods.md,
    cb-focal)."""
    return torch.softmax(logits.double(), -1).cpu().numpy()


def _select(trained: dict, finals: list, *, repeats: int, n_candidates: int, selection: str, images: dict,
            labels: dict, device) -> tuple[dict, dict]:
    """The candidate kept for each (final network, repeat): the one with the best ROC AUC on `images[r]`
    (the test set, or the repeat's validation split), ties to the first, diverged or non-finite networks
    last; one candidate is kept as it is.  Returns ({(name, r): c}, {(name, r): its ROC AUC, or None})."""
    if n_candidates == 1:
        return {(n, r): 0 for n in finals for r in range(repeats)}, {}
    picked, scores = {}, {}
    for r in range(repeats):
        keys = [(n, r, c) for n in finals for c in range(n_candidates)]
        logits = predict_networks([trained[k].model for k in keys], images[r], device=device)
        probabilities = [to_scores(x) for k, x in zip(keys, logits)]
        auc = {}
        for k, p in zip(keys, probabilities):
            ok = not trained[k].diverged and np.isfinite(p).all()
            auc[k] = float(roc_auc_ovr(labels[r], p)) if ok else -math.inf
        for n in finals:
            best = _first_best([auc[(n, r, c)] for c in range(n_candidates)])
            picked[(n, r)], scores[(n, r)] = best, (auc[(n, r, best)] if math.isfinite(auc[(n, r, best)]) else None)
    return picked, scores


def _tau_on_validation(val_scores: np.ndarray, y_val: np.ndarray, *, priors: np.ndarray) -> float:
    """The '-la' tau of TAU_GRID with the best validation TAU_SELECTED_BY (ties: the first)."""
    if not np.isfinite(val_scores).all():
        return 1.0
    return TAU_GRID[_first_best([method_metrics(val_scores, y_val, priors=priors, diverged=False, posthoc="la",
                                                tau=tau)[TAU_SELECTED_BY] for tau in TAU_GRID])]


def _first_best(values: list) -> int:
    """Index of the largest of `values`, ties to the first; None (a metric a non-finite candidate has
    not got) and -inf lose.  The one chooser of tau (on validation) and of best-of candidates."""
    scored = [-math.inf if v is None else v for v in values]
    return max(range(len(scored)), key=lambda i: (scored[i], -i))


def _point_progress(callback, total: int):
    """job(n): a train_networks progress callback for the point's next job of n network-iterations,
    reporting to `callback` over all the point's `total` network-iterations (None without a callback)."""
    offset = [0]

    def job(n: int):
        if callback is None:
            return None
        start, offset[0] = offset[0], offset[0] + n
        return lambda done, _job_total: callback(start + done, total)
    return job


def confusion_matrix(y_true, y_pred, *, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): row = true class, column = predicted class (as scikit-learn's)."""
    y, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)




def method_metrics(scores: np.ndarray, y_test: np.ndarray, *, priors: np.ndarray, diverged: bool,
                   threshold: bool = False, posthoc: str | None = None, tau: float = 1.0) -> dict:
    """A network's test metrics (`metrics.all_metrics`, plus its confusion matrix), after its method's
    post-hoc adjustment of the scores: 'thresh' divides them by the training priors (threshold=True says
    the same), 'la' subtracts tau log(prior) from their logits; `thresholded_accuracy` always thresholds
    the unadjusted scores.  A diverged (or non-finite) network gets no metrics (None), never a score that
    looks fine.  A per-class precision of a class never predicted is None (JSON has no NaN)."""
    n_classes = scores.shape[1]
    if diverged or not np.isfinite(scores).all():
        return dict.fromkeys((*SCALAR_METRICS, *PER_CLASS_METRICS, "confusion_matrix"))
    posthoc = "thresh" if threshold else posthoc
    if posthoc not in (None, "thresh", "la"):
        raise ValueError(f"posthoc must be None, 'thresh' or 'la' (tau-norm adjusts the network), got {posthoc!r}")
    used = threshold_scores(scores, priors) if posthoc == "thresh" else \
        logit_adjusted_scores(scores, priors, tau=tau) if posthoc == "la" else scores
    out = all_metrics(y_test, used)
    out["thresholded_accuracy"] = accuracy(y_test, threshold_scores(scores, priors))
    out["per_class_precision"] = [None if v != v else v for v in out["per_class_precision"]]   # NaN -> None
    out["confusion_matrix"] = confusion_matrix(y_test, used.argmax(1), n_classes=n_classes).tolist()
    return out
