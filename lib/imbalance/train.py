"""Training one network: recipes, Caffe's learning-rate policies and SGD, mini-batch streams,
preprocessing, the training loop and evaluation.

Every method trains for the same number of *iterations* (weight updates), not epochs.  Resident
datasets (MNIST, CIFAR-10) are preprocessed once and kept on the training device, so a step is
one indexing op, a forward/backward pass and `sgd_step_`; ImageNet-style folders are streamed.
"""
from __future__ import annotations

import difflib
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import metrics
from .images import ZCA_FITS, ImageSource, Preprocessor, ResidentImages, check_uint8
from .losses import LossTerms, network_loss
from .models import MODELS

POLICIES = ("inv", "multistep", "linear")
PRECISIONS = ("fp32", "tf32", "bf16")
PREPROCESSING = ("scale", "gcn-zca", "imagenet")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    model: str                           # key of imbalance.models.MODELS
    batch_size: int                      # images per SGD step
    iterations: int                      # SGD steps: equal weight updates for every method
    base_lr: float                       # learning rate at iteration 0
    momentum: float                      # SGD momentum, in [0, 1)
    weight_decay: float                  # L2 coefficient, added to the gradient (Caffe)
    lr_policy: str                       # 'inv' | 'multistep' | 'linear' (see learning_rate)
    preprocessing: str                   # 'scale' | 'gcn-zca' | 'imagenet' (see Preprocessor)
    eval_interval: int                   # iterations between learning-curve points
    inv_gamma: float = 1e-4              # 'inv': lr = base (1 + gamma t)^-power
    inv_power: float = 0.75
    milestones: tuple[int, ...] = ()     # 'multistep': iterations where lr *= step_gamma
    step_gamma: float = 0.1
    bias_lr_mult: float = 1.0            # lr multiplier of every *.bias parameter
    lr_search: tuple[float, ...] = ()    # candidate base_lr values; empty = use base_lr
    lr_search_runs: int = 1              # networks trained per candidate
    resize_size: int = 256               # 'imagenet': shorter side after resizing, pixels
    crop_size: int = 224                 # 'imagenet': square crop side, pixels
    gcn_scale: float = 55.0              # 'gcn-zca': per-image L2 norm after GCN (pylearn2)
    zca_epsilon: float = 0.1             # 'gcn-zca': added to the covariance's eigenvalues
    zca_fit: str = "full"                # 'gcn-zca': fitted on the balanced training set ('full', shared by the
                                         # point's networks) or on each repeat's imbalanced subset ('subset': the
                                         # leak-free one); the paper does not say (images.Preprocessor)
    precision: str = "fp32"              # 'fp32' (paper fidelity) | 'tf32' (CUDA matmuls/convolutions in
                                         # TF32) | 'bf16' (autocast forward; fp32 weights, updates, loss)

    def __post_init__(self):
        for key in ("milestones", "lr_search"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))
        _check_recipe(self)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(v)


_RANGES = {"base_lr": (lambda v: v > 0, "> 0"), "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
           "weight_decay": (lambda v: v >= 0, ">= 0"), "inv_gamma": (lambda v: v >= 0, ">= 0"),
           "inv_power": (lambda v: v >= 0, ">= 0"), "step_gamma": (lambda v: v > 0, "> 0"),
           "bias_lr_mult": (lambda v: v >= 0, ">= 0"), "gcn_scale": (lambda v: v > 0, "> 0"),
           "zca_epsilon": (lambda v: v > 0, "> 0")}


def _check_recipe(r: Recipe) -> None:
    def fail(key, expected):
        raise ValueError(f"recipe {r.name!r}: {key} must be {expected}, got {getattr(r, key)!r}")
    if not isinstance(r.name, str) or not r.name:
        fail("name", "a non-empty string")
    if r.model not in MODELS:
        fail("model", f"one of {', '.join(MODELS)}")
    for key in ("batch_size", "iterations", "eval_interval", "lr_search_runs", "resize_size",
                "crop_size"):
        if not _is_int(getattr(r, key)) or getattr(r, key) < 1:
            fail(key, "a positive int")
    for key, (ok, expected) in _RANGES.items():
        if not _is_real(getattr(r, key)) or not ok(getattr(r, key)):
            fail(key, f"a finite number {expected}")
    if r.lr_policy not in POLICIES:
        fail("lr_policy", f"one of {', '.join(POLICIES)}")
    if r.precision not in PRECISIONS:
        fail("precision", f"one of {', '.join(PRECISIONS)}")
    if r.preprocessing not in PREPROCESSING:
        fail("preprocessing", f"one of {', '.join(PREPROCESSING)}")
    if r.zca_fit not in ZCA_FITS:
        fail("zca_fit", f"one of {', '.join(ZCA_FITS)}")
    m = r.milestones
    if not isinstance(m, tuple) or not all(_is_int(x) and x > 0 for x in m) \
            or any(a >= b for a, b in zip(m, m[1:])):
        fail("milestones", "a tuple of increasing positive ints")
    if not isinstance(r.lr_search, tuple) or not all(_is_real(x) and x > 0 for x in r.lr_search):
        fail("lr_search", "a tuple of positive learning rates")
    if r.crop_size > r.resize_size:
        fail("crop_size", f"<= resize_size ({r.resize_size})")


RECIPES = {r.name: r for r in (
    # Caffe's examples/mnist/lenet_solver.prototxt and lenet_train_test.prototxt.
    Recipe(name="lenet5-mnist", model="lenet5", batch_size=64, iterations=10_000, base_lr=0.01,
           momentum=0.9, weight_decay=5e-4, lr_policy="inv", inv_gamma=1e-4, inv_power=0.75,
           bias_lr_mult=2.0,                 # the prototxt's biases: param { lr_mult: 2 }
           preprocessing="scale",            # data layer: scale 0.00390625 = 1/256
           eval_interval=500),               # the solver's test_interval
    # Springenberg et al. 2015 (350 epochs, lr x0.1 at 200/250/300) as 70k iterations of 256;
    # base_lr is the search's first candidate, replaced by the search's winner.
    Recipe(name="allcnn-cifar10", model="allcnn", batch_size=256, iterations=70_000, base_lr=0.05,
           momentum=0.9, weight_decay=1e-3, lr_policy="multistep",
           milestones=(40_000, 50_000, 60_000), step_gamma=0.1, preprocessing="gcn-zca",
           eval_interval=1_000, lr_search=(0.05, 0.005, 0.0005, 0.00005), lr_search_runs=2),
    # ResNet-10 on ImageNet: 320k iterations of 256 (64 epochs), lr decaying linearly to 0.
    Recipe(name="resnet10-imagenet", model="resnet10", batch_size=256, iterations=320_000,
           base_lr=0.1, momentum=0.9, weight_decay=1e-4, lr_policy="linear",
           preprocessing="imagenet", eval_interval=5_000),
)}


def recipe_with(recipe: Recipe, **overrides) -> Recipe:
    """A copy of `recipe` with some fields replaced (checked like any recipe)."""
    valid = [f.name for f in fields(Recipe)]
    for key in overrides:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
            raise ValueError(f"unknown recipe field {key!r}; did you mean {near[0]!r}? "
                             f"Valid fields: {', '.join(valid)}")
    return replace(recipe, **overrides)


def learning_rate(recipe: Recipe, iteration: int) -> float:
    """The rate used by the update of `iteration` (0-based), by Caffe's formulas."""
    if not _is_int(iteration) or iteration < 0:
        raise ValueError(f"iteration must be a non-negative int, got {iteration!r}")
    t, base = int(iteration), float(recipe.base_lr)
    if recipe.lr_policy == "inv":
        return base * (1.0 + recipe.inv_gamma * t) ** -recipe.inv_power
    if recipe.lr_policy == "multistep":
        return base * recipe.step_gamma ** sum(t >= m for m in recipe.milestones)
    return base * max(0.0, 1.0 - t / recipe.iterations)  # 'linear' = Caffe's 'poly', power 1


@contextmanager
def precision_context(precision: str, device):
    """The recipe's arithmetic for a training step's forward and backward on `device`.

    fp32: as is (TF32 off, PyTorch's default for convolutions is set off too on CUDA).  tf32:
    CUDA matmuls and cuDNN convolutions in TF32 (10-bit mantissa products; no effect on a CPU).
    bf16: torch.autocast to bfloat16 (weights, gradients, SGD and the loss stay float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
        return
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@torch.no_grad()
def sgd_step_(params, grads, velocity, *, lr, momentum: float, weight_decay: float,
              lr_mults) -> None:
    """Caffe's SGD, in place, per tensor: v = momentum v + lr lr_mult (g + weight_decay w); w -= v.

    `lr` is a float, or a tensor aligned with the parameters' leading dimensions (e.g. shape (K,)
    for K networks stacked along dim 0; trailing singleton dims are added per tensor).  A tensor
    with lr_mult 0 is frozen: neither it nor its velocity changes, weight decay included.
    """
    params, grads, velocity, lr_mults = list(params), list(grads), list(velocity), list(lr_mults)
    if not len(params) == len(grads) == len(velocity) == len(lr_mults):
        raise ValueError(f"params, grads, velocity and lr_mults must have equal lengths, got "
                         f"{len(params)}, {len(grads)}, {len(velocity)}, {len(lr_mults)}")
    live = [i for i, mult in enumerate(lr_mults) if mult != 0]
    if not live:
        return
    params, grads, velocity = ([xs[i] for i in live] for xs in (params, grads, velocity))
    rates = []
    for i, w in zip(live, params):
        rate = lr * lr_mults[i]
        if isinstance(rate, torch.Tensor) and rate.ndim < w.ndim:
            rate = rate.reshape(rate.shape + (1,) * (w.ndim - rate.ndim))
        rates.append(rate)
    # One multi-tensor (foreach) call per arithmetic step instead of five ops per tensor: the
    # same elementwise operations in the same order (bit-identical), far fewer dispatches, which
    # matters for small networks on a CPU (LeNet-5: 8 tensors, 40 ops -> 5 calls per step).
    if weight_decay:
        d = torch._foreach_add(grads, params, alpha=weight_decay)
        torch._foreach_mul_(d, rates)
    else:
        d = torch._foreach_mul(grads, rates)
    torch._foreach_mul_(velocity, momentum)
    torch._foreach_add_(velocity, d)
    torch._foreach_sub_(params, velocity)


class BatchStream:
    """Mini-batches of entries of `indices` (duplicates kept), one seeded permutation per epoch.

    Epoch e visits `indices[torch.randperm(len(indices), generator=g)]`, g seeded once by `seed`;
    a batch that reaches an epoch's end continues into the next permutation, so every batch
    has exactly batch_size entries.  Batches are int64 CPU tensors.  shuffle=False streams
    `indices` in their order (cycling), for samplers that drew every batch already (class-aware).
    """

    def __init__(self, indices, *, batch_size: int, seed: int, shuffle: bool = True):
        indices = np.asarray(indices)
        if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"indices must be a non-empty 1-D integer array, got dtype "
                             f"{indices.dtype} and shape {indices.shape}")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.indices = torch.from_numpy(indices.astype(np.int64))
        self.batch_size = int(batch_size)
        self._generator = torch.Generator().manual_seed(seed)
        self._shuffle = bool(shuffle)
        self._rest = torch.empty(0, dtype=torch.int64)  # unvisited positions of the current epoch

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        return self.next_many(1)[0]

    def next_many(self, n: int) -> torch.Tensor:
        """The next n batches at once, shaped (n, batch_size)."""
        need = n * self.batch_size
        parts, have = [self._rest], len(self._rest)
        while have < need:
            parts.append(torch.randperm(len(self.indices), generator=self._generator) if self._shuffle
                         else torch.arange(len(self.indices)))
            have += len(self.indices)
        order = torch.cat(parts)
        self._rest = order[need:]
        return self.indices[order[:need]].view(n, self.batch_size)


def resolve_device(device=None) -> torch.device:
    """`device` if given, else cuda when available, else cpu."""
    return torch.device(device if device is not None else
                        ("cuda" if torch.cuda.is_available() else "cpu"))


def _as_source(images, preprocessor: Preprocessor | None, device) -> ImageSource:
    if hasattr(images, "batch"):
        return images
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        return ResidentImages(images.to(device))
    if preprocessor is None:
        raise ValueError("images are uint8: pass preprocessor= (e.g. TrainResult.preprocessor)")
    return ResidentImages(preprocessor.transform(images.to(device)))


def lr_multipliers(model: nn.Module, recipe: Recipe, trainable=None) -> list[float]:
    """One lr multiplier per named parameter: bias_lr_mult for biases, 1 otherwise, and 0 for
    parameters outside the `trainable` name prefixes (None = all trainable)."""
    names = [n for n, _ in model.named_parameters()]
    if trainable is not None:
        trainable = (trainable,) if isinstance(trainable, str) else tuple(trainable)
        for prefix in trainable:
            if not any(n == prefix or n.startswith(prefix + ".") for n in names):
                raise ValueError(f"trainable prefix {prefix!r} matches no parameter of "
                                 f"{type(model).__name__} (e.g. {names[0]!r}, {names[-1]!r})")
    return [0.0 if trainable is not None
            and not any(n == p or n.startswith(p + ".") for p in trainable)
            else float(recipe.bias_lr_mult) if n.endswith("bias") else 1.0 for n in names]


@dataclass
class TrainResult:
    model: nn.Module
    iterations_done: int                    # updates made (< recipe.iterations if diverged)
    diverged_at: int | None                 # first iteration with a NaN/inf loss
    curve: list[dict] = field(default_factory=list)  # one point per eval_interval
    seconds: float = 0.0
    preprocessor: Preprocessor | None = None  # to apply to test images (evaluate)
    group_size: int | None = None           # vmap/gemm layouts: networks trained in lockstep with it
    oom_halvings: int = 0                   # times its group was halved after a CUDA out-of-memory error

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


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
    loss (imbalance.losses; None = cross-entropy).  shuffle=False streams `indices` in order.
    progress_callback(done_iterations, total_iterations), if given, is called after every step.
    """
    device = resolve_device(device)
    if not _is_real(lr_scale) or lr_scale <= 0:
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
    losses = torch.zeros(recipe.iterations, device=device)
    hits = torch.zeros(recipe.iterations, device=device)
    curve, diverged_at, done, lr = [], None, 0, 0.0
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
            lr = learning_rate(recipe, t) * lr_scale
            sgd_step_(params, grads, velocity, lr=lr, momentum=recipe.momentum,
                      weight_decay=recipe.weight_decay, lr_mults=mults)
            losses[t] = loss.detach()
            hits[t] = (logits.detach().argmax(1) == y).sum()
            bar.update()
            if progress_callback is not None:
                progress_callback(t + 1, recipe.iterations)
        done = start + n
        bad = torch.nonzero(~torch.isfinite(losses[start:done])).flatten()
        if len(bad):  # the one host sync per interval
            diverged_at = start + int(bad[0])
            break
        point = {"iteration": done, "lr": lr, "train_loss": float(losses[start:done].mean()),
                 "train_accuracy": float(hits[start:done].sum()) / (n * recipe.batch_size)}
        if test_source is not None:
            logits = _predict(model, test_source[0], batch_size=1000, device=device)
            point["test_accuracy"] = float((logits.argmax(1) == test_source[1]).float().mean())
        curve.append(point)
        bar.set_postfix(loss=f"{point['train_loss']:.4f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return TrainResult(model, done, diverged_at, curve, time.perf_counter() - started,
                       preprocessor)


@torch.no_grad()
def _predict(model: nn.Module, source, *, batch_size: int, device) -> torch.Tensor:
    """Logits (float32, on device) of every image of `source`, in eval mode (modes restored)."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        return torch.cat([model(source.batch(torch.arange(i, min(i + batch_size, len(source)),
                                                          device=device)).to(device))
                          for i in range(0, len(source), batch_size)])
    finally:
        for m, mode in modes.items():
            m.train(mode)


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
