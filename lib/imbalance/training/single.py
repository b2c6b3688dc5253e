"""Training one network: recipes, Caffe's learning-rate policies and SGD, mini-batch streams,
preprocessing, the training loop and evaluation.

Every method trains for the same number of *iterations* (weight updates), not epochs.  Resident
datasets (MNIST, CIFAR-10) are preprocessed once and kept on the training device, so a step is
one indexing op, a forward/backward pass and `sgd_step_`; ImageNet-style folders are streamed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from imbalance.checks import is_real
from imbalance.data.images import Preprocessor, ResidentImages, check_uint8
from imbalance.training import metrics
from imbalance.training.loop import (
    BatchStream,
    IntervalLog,
    TrainResult,
    _as_source,
    _predict,
    lr_multipliers,
    precision_context,
    resolve_device,
    sgd_step_,
)
from imbalance.training.losses import LossTerms, network_loss
from imbalance.training.recipes import Recipe, learning_rate


def train_network(model: nn.Module, images, labels: torch.Tensor, indices, recipe: Recipe, *,
                  seed: int, device=None, lr_scale: float = 1.0, trainable=None, test=None,
                  preprocessor: Preprocessor | None = None, progress: bool = True,
                  loss_terms: LossTerms | None = None, shuffle: bool = True,
                  progress_callback=None) -> TrainResult:
    """Train `model` in place for recipe.iterations SGD steps on mini-batches of `indices`.

    images: uint8 (N, C, H, W) tensor (preprocessed once, resident on `device`; the preprocessor
    is fitted on all of `images` unless given) or a StreamedImages.  labels: int64 (N,).
    indices: positions into images (the resampled training set).  trainable: parameter-name
    prefixes to train (others frozen, their batch norms in eval mode); lr_scale multiplies every
    rate.  test=(images, labels) adds test accuracy to the curve.  A NaN/inf loss stops training
    at the next curve point and sets diverged_at; nothing is raised.  loss_terms: the method's
    loss (imbalance.training.losses; None = cross-entropy).  shuffle=False streams `indices` in order.
    progress_callback(done_iterations, total_iterations), if given, is called after every step.
    """
    device = resolve_device(device)
    if not is_real(lr_scale) or lr_scale <= 0:
        raise ValueError(f"lr_scale must be a finite number > 0, got {lr_scale!r}")
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer) \
            or indices.min() < 0 or indices.max() >= len(labels):
        raise ValueError(f"indices must be a non-empty 1-D integer array of positions in "
                         f"[0, {len(labels)}), got shape {indices.shape}, dtype {indices.dtype}")
    if hasattr(images, "batch"):  # an ImageSource, e.g. StreamedImages: used as it is
        source, preprocessor = images, getattr(images, "preprocessor", preprocessor)
    else:
        check_uint8(images, "images")
        if recipe.preprocessing == "imagenet":
            raise ValueError("recipe preprocessing 'imagenet' streams images: pass images="
                             "StreamedImages(dataset, train=True, recipe=recipe, seed=...)")
        images = images.to(device)
        preprocessor = preprocessor or Preprocessor(recipe).fit(images)
        source = ResidentImages(preprocessor.transform(images))
    if len(source) != len(labels):
        raise ValueError(f"images and labels must have equal lengths, got {len(source)} and "
                         f"{len(labels)}")
    ys = labels.to(device)
    test_source = None if test is None else (_as_source(test[0], preprocessor, device),
                                             test[1].to(device))

    model.to(device).train()
    named = list(model.named_parameters())
    mults = lr_multipliers(model, recipe, trainable)
    frozen = {n for (n, _), m in zip(named, mults) if m == 0}
    for name, module in model.named_modules():  # frozen batch norms keep their running stats
        own = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and own and frozen.issuperset(own):
            module.eval()
    params = [p for (_, p), m in zip(named, mults) if m != 0]
    mults = [m for m in mults if m != 0]
    velocity = [torch.zeros_like(p) for p in params]

    stream = BatchStream(indices, batch_size=recipe.batch_size, seed=seed, shuffle=shuffle)
    terms = None if loss_terms is None else loss_terms.to(device, params[0].dtype)
    log = IntervalLog(1, iterations=recipe.iterations, device=device)
    lr = 0.0
    started = time.perf_counter()
    bar = tqdm(total=recipe.iterations, desc=recipe.name, disable=not progress, leave=False)
    for start in range(0, recipe.iterations, recipe.eval_interval):
        n = min(recipe.eval_interval, recipe.iterations - start)
        batches = stream.next_many(n).to(device)
        for t in range(start, start + n):
            idx = batches[t - start]
            x, y = source.batch(idx).to(device, non_blocking=True), ys[idx]
            with precision_context(recipe.precision, device):
                logits = model(x)
                loss = network_loss(logits.to(params[0].dtype), y, terms, t)   # bf16: the loss in fp32
                grads = torch.autograd.grad(loss, params)
            lr = learning_rate(recipe, t) * lr_scale * (1.0 if terms is None else terms.lr_factor(t))
            sgd_step_(params, grads, velocity, lr=lr, momentum=recipe.momentum,
                      weight_decay=recipe.weight_decay, lr_mults=mults)
            log.losses[t, 0] = loss.detach()
            log.hits[t, 0] = (logits.detach().argmax(1) == y).sum()
            bar.update()
            if progress_callback is not None:
                progress_callback(t + 1, recipe.iterations)
        test = None if test_source is None else lambda: [
            (_predict(model, test_source[0], batch_size=1000, device=device).argmax(1) == test_source[1])
            .float().mean()]
        if log.close_interval(start, start + n, examples_per_step=recipe.batch_size, lrs=[lr], test_accuracy=test):
            break
        bar.set_postfix(loss=f"{log.curves[0][-1]['train_loss']:.4f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return TrainResult(model, log.done[0], log.diverged_at[0], log.curves[0], time.perf_counter() - started,
                       preprocessor, failure=log.failure[0])


@dataclass
class Evaluation:
    scores: np.ndarray                  # softmax outputs, float64 (N, C)
    roc_auc: float                      # one-vs-rest, mean over classes
    accuracy: float
    thresholded_accuracy: float         # argmax of scores / class priors
    per_class_recall: np.ndarray        # of the plain argmax
    balanced_accuracy: float


def evaluate(model: nn.Module, images, labels: torch.Tensor, *, priors, batch_size: int = 1000,
             device=None, preprocessor: Preprocessor | None = None) -> Evaluation:
    """Scores and metrics on a test set.  images: uint8 (with `preprocessor`), float
    (preprocessed) or an image source.  priors: the training set's class frequencies.
    A network with non-finite outputs gets NaN metrics, never a score that looks fine."""
    device = resolve_device(device)
    model.to(device)
    logits = _predict(model, _as_source(images, preprocessor, device), batch_size=batch_size,
                      device=device)
    scores = torch.softmax(logits.double(), 1).cpu().numpy()
    y = torch.as_tensor(labels).cpu().numpy()
    n_classes = scores.shape[1]
    if not np.isfinite(scores).all():
        nan = float("nan")
        return Evaluation(scores, nan, nan, nan, np.full(n_classes, nan), nan)
    predicted = scores.argmax(1)
    return Evaluation(
        scores, metrics.roc_auc_ovr(y, scores), metrics.accuracy(y, scores),
        metrics.accuracy(y, metrics.threshold_scores(scores, priors)),
        metrics.per_class_recall(y, predicted, n_classes=n_classes),
        metrics.balanced_accuracy(y, predicted, n_classes=n_classes))
