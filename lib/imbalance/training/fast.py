"""A fast CIFAR-10 recipe: the study's CIFAR grid at a scale people can run.

Written from the published descriptions of the CIFAR-10 speed records, not from their code:
K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU" (arXiv:2404.00498, airbench) and
D. Page, "How to train your ResNet" (Myrtle.ai blog, 2018-2019). The elements kept:

- a frozen first convolution that whitens 2x2 patches (eigenvectors of the patch covariance,
  scaled by 1/sqrt(eigenvalue + eps), with their negatives: 2 x 12 filters), fitted on the
  positions the network trains on (its imbalanced or resampled subset: leak-free), centred by
  its bias; then three conv-pool-BN blocks (two 3x3 convolutions each) and a linear head;
- batch norm without scale parameters (only the shift is learned: airbench, Page), GELU;
- label smoothing, random flip and 2-pixel translation (reflect padding) on tensors, the same for
  every method; a linear warm-up then linear decay; Nesterov SGD with L2 weight decay;
- mirror test-time augmentation in eval mode; channels-last; bfloat16 autocast only on CUDA.
Left out: lookahead/EMA, partial identity initialisation, alternating flip, Muon.

`train_fast_networks` trains a grid point's K networks in one job, shaped like
`batched.train_networks`. Layouts:
- "single":  one network after another (the reference semantics);
- "grouped": the K networks' channels side by side, every convolution with groups=K; batch norm
             is per channel, so per network; one backward for all;
- "vmap":    parameters stacked along a leading K dimension, `torch.func.vmap` of one network's
             functional forward/backward; batch norm is functional (running statistics returned,
             not mutated);
- "threads": "single"'s calls in parallel threads, the intra-op threads shared among them (the CPU
             default: at K=2 on 2 cores it beat "grouped" and "vmap", see the README).
Each network's mini-batches, flips, shifts and initial weights come from its own seeds only.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, vmap
from tqdm import tqdm

from imbalance.checks import (
    CLOSED_FRACTION,
    FRACTION,
    NON_NEGATIVE,
    OPEN_CLOSED_FRACTION,
    POSITIVE,
    first_bad_number,
    first_bad_positive_int,
    is_int,
    is_real,
)
from imbalance.data.images import check_uint8
from imbalance.training.batched import _Progress, intra_op_threads
from imbalance.training.loop import BatchStream, IntervalLog, TrainResult, resolve_device
from imbalance.training.losses import class_loss, neutral_terms

LAYOUTS = ("auto", "single", "grouped", "vmap", "threads")


@dataclass(frozen=True, kw_only=True)
class FastRecipe:
    name: str
    widths: tuple[int, int, int]     # channels of the three conv blocks (airbench94: 64, 256, 256)
    batch_size: int                  # images per step, per network
    iterations: int                  # SGD steps: the same for every method (the paper's rule), not epochs
    lr: float                        # peak learning rate, on the batch-mean loss
    momentum: float                  # Nesterov momentum, in [0, 1)
    weight_decay: float              # L2 coefficient added to every trained tensor's gradient
    warmup: float                    # fraction of iterations of linear warm-up from 0 to lr
    final_lr: float                  # lr at the last step as a fraction of lr (linear decay after warm-up)
    label_smoothing: float           # mass spread uniformly over the classes (airbench, Page: 0.2)
    eval_interval: int               # iterations between learning-curve points
    whiten_patch: int = 2            # side of the whitened patches, pixels (airbench: 2)
    whiten_epsilon: float = 5e-4     # added to the patch covariance's eigenvalues; pixels scaled to [0, 1]
    whiten_images: int = 5000        # at most this many distinct training images fit the whitening
    bn_momentum: float = 0.4         # weight of the batch statistic in the running statistics
    bn_epsilon: float = 1e-5         # added to the batch variance
    flip: bool = True                # mirror each training image with probability 1/2
    translate: int = 2               # shift each training image by up to this many pixels per axis
    tta: bool = True                 # eval mode: mean logits of the image and its mirror
    output_scale: float = 0.125      # logits multiplier (Page: 0.125; airbench: 1/9)
    half: bool = True                # bfloat16 autocast on CUDA; ignored on CPU
    model: str = "fastnet"           # the network's name in records (fast.FastNet)
    lr_policy: str = "piecewise-linear"   # Page's warm-up then linear decay, or 'cosine' from lr to 0 without
                                          # warm-up (a second stage's: Kang et al.'s cRT)

    def __post_init__(self):
        if isinstance(self.widths, list):
            object.__setattr__(self, "widths", tuple(self.widths))
        check_fast_recipe(self)


_POSITIVE_INTS = ("batch_size", "iterations", "eval_interval", "whiten_patch", "whiten_images")
FAST_POLICIES = ("piecewise-linear", "cosine")
_REALS = {"lr": POSITIVE, "momentum": FRACTION, "weight_decay": NON_NEGATIVE, "warmup": FRACTION,
          "final_lr": CLOSED_FRACTION, "label_smoothing": FRACTION, "whiten_epsilon": POSITIVE,
          "bn_momentum": OPEN_CLOSED_FRACTION, "bn_epsilon": POSITIVE, "output_scale": POSITIVE}


def check_fast_recipe(r: FastRecipe) -> None:
    """Raise ValueError naming the first bad field."""
    def fail(key, expected):
        raise ValueError(f"recipe {r.name!r}: {key} must be {expected}, got {getattr(r, key)!r}")
    if not isinstance(r.name, str) or not r.name:
        fail("name", "a non-empty string")
    if not (isinstance(r.widths, tuple) and len(r.widths) == 3 and all(is_int(w) and w > 0 for w in r.widths)):
        fail("widths", "a tuple of 3 positive ints")
    values = vars(r)
    if (key := first_bad_positive_int(values, _POSITIVE_INTS)) is not None:
        fail(key, "a positive int")
    if (bad := first_bad_number(values, _REALS)) is not None:
        fail(*bad)
    if not is_int(r.translate) or not 0 <= r.translate < 16:
        fail("translate", "an int in [0, 16) (pixels)")
    for key in ("flip", "tta", "half"):
        if not isinstance(getattr(r, key), bool):
            fail(key, "true or false")
    if r.lr_policy not in FAST_POLICIES:
        fail("lr_policy", f"one of {', '.join(FAST_POLICIES)}")


FAST_RECIPES = {r.name: r for r in (
    # For a GPU (target >= 93.5% on CIFAR-10 (JPEG copy), mean of 5 seeds; not yet measured:
    # benchmarks/fast_cifar10_gpu.sh). airbench94's widths; Page's optimiser (batch 512, peak lr 0.4,
    # wd 5e-4 on the mean loss, Nesterov 0.9) and label smoothing 0.2; 2,000 steps = 20.5 epochs of
    # 50,000 images, about twice airbench94's budget, standing in for lookahead and its other tricks.
    FastRecipe(name="fast-cifar10", widths=(64, 256, 256), batch_size=512, iterations=2_000, lr=0.4,
               momentum=0.9, weight_decay=5e-4, warmup=0.2, final_lr=0.0, label_smoothing=0.2,
               eval_interval=500),
    # For 2 CPU cores: narrower and shorter. 400 steps of 256 (2 epochs): 80.2% on CIFAR-10 (JPEG
    # copy) in 65 s of training on the quiet 2-core machine, 248-349 s under other jobs' load
    # (README, "Fast CIFAR-10"); 1,000 steps did not finish in 580 s under load.
    FastRecipe(name="fast-cifar10-cpu", widths=(32, 64, 128), batch_size=256, iterations=400, lr=0.4,
               momentum=0.9, weight_decay=5e-4, warmup=0.2, final_lr=0.0, label_smoothing=0.2,
               eval_interval=200),       # a test-curve point costs ~15-30 s here (10,000 images x 2 views)
)}


def fast_recipe_with(recipe: FastRecipe, **overrides) -> FastRecipe:
    """A copy of `recipe` with some fields replaced (checked like any recipe)."""
    valid = [f.name for f in fields(FastRecipe)]
    for key in overrides:
        if key not in valid:
            raise ValueError(f"unknown fast recipe field {key!r}; valid fields: {', '.join(valid)}")
    return replace(recipe, **overrides)


def learning_rate(recipe: FastRecipe, iteration: int) -> float:
    """The rate of update `iteration` (0-based): linear 0 -> lr over the warm-up, then linear to
    final_lr x lr at the last update (Page's piecewise-linear schedule)."""
    t, n = int(iteration), recipe.iterations
    if recipe.lr_policy == "cosine":     # PyTorch's CosineAnnealingLR to eta_min 0, stepped every update
        return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * t / n))
    w = int(round(recipe.warmup * n))
    if t < w:
        return recipe.lr * (t + 1) / w
    last = max(n - 1 - w, 1)
    return recipe.lr * (1.0 - (1.0 - recipe.final_lr) * (t - w) / last)


# --- data: scaling, whitening, augmentation ----------------------------------------------------

class ScaledImages:
    """uint8 images -> float in [0, 1] (what FastNet models take; the whitening layer centres them)."""

    def __init__(self, dtype: torch.dtype = torch.float32):
        self.dtype = dtype

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.dtype) / 255.0


def fit_whitening(images: torch.Tensor, indices, *, patch: int = 2, epsilon: float = 5e-4,
                  max_images: int = 5000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch-whitening filters fitted on the images at `indices` only (each distinct position once;
    at most `max_images` of them, drawn by `seed`). Returns float64 (weight (2D, C, p, p), bias (2D,))
    with D = C p^2: rows W = V^T / sqrt(lambda + epsilon) of the covariance's eigen-decomposition,
    then -W; the bias centres the patches (-W mean)."""
    check_uint8(images, "images")
    pos = np.unique(np.asarray(indices))
    if pos.size == 0 or pos.min() < 0 or pos.max() >= len(images):
        raise ValueError(f"indices must be non-empty positions in [0, {len(images)}), got {pos.size} "
                         f"positions in [{pos.min() if pos.size else None}, {pos.max() if pos.size else None}]")
    if pos.size > max_images:
        pos = np.sort(np.random.default_rng(seed).choice(pos, size=max_images, replace=False))
    c = images.shape[1]
    d = c * patch * patch
    total, outer, count = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64), 0
    for chunk in np.array_split(pos, max(1, pos.size // 500)):
        x = images[torch.from_numpy(chunk)].cpu().to(torch.float64) / 255.0
        p = _patches(x, patch)
        total += p.sum(0)
        outer += p.T @ p
        count += len(p)
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    w = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + epsilon)[:, None]
    w = torch.cat([w, -w])
    return w.reshape(2 * d, c, patch, patch), -(w @ mean)


def _patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """Every p x p patch of x (N, C, H, W) as rows (N (H-p+1) (W-p+1), C p p), in conv-weight order."""
    n, c, h, w = x.shape
    cols = torch.stack([x[:, :, i:h - p + 1 + i, j:w - p + 1 + j] for i in range(p) for j in range(p)], 2)
    return cols.permute(0, 3, 4, 1, 2).reshape(-1, c * p * p)      # (N, H', W', C, p p)


def augment(x: torch.Tensor, *, flip: torch.Tensor | None, shift: torch.Tensor | None, pad: int) -> torch.Tensor:
    """Mirror the images where `flip` (N,) is true, then translate image i by shift[i] = (dy, dx)
    pixels (|dy|, |dx| <= pad): out[y, x] = in[y - dy, x - dx], reflect-padded at the borders."""
    if flip is not None:
        x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    if pad and shift is not None:
        n, _, h, w = x.shape
        shift = shift.to(x.device)
        padded = F.pad(x, (pad,) * 4, mode="reflect")
        rows = (pad - shift[:, 0])[:, None] + torch.arange(h, device=x.device)        # (N, H)
        cols = (pad - shift[:, 1])[:, None] + torch.arange(w, device=x.device)        # (N, W)
        x = padded[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        x = x.permute(0, 3, 1, 2)                                       # (N, C, H, W), channels-last memory
    return x


class AugmentStream:
    """One network's flips and shifts: a generator seeded by its batch seed (never the global RNG)."""

    def __init__(self, seed: int, recipe: FastRecipe):
        state = np.random.SeedSequence([int(seed), 0xF11B]).generate_state(1)[0]
        self.generator = torch.Generator().manual_seed(int(state))
        self.recipe = recipe

    def draw(self, n: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        r = self.recipe
        flip = torch.rand(n, generator=self.generator) < 0.5 if r.flip else None
        shift = torch.randint(-r.translate, r.translate + 1, (n, 2), generator=self.generator) \
            if r.translate else None
        return flip, shift


# --- the network, as functions of its tensors --------------------------------------------------

def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy against (1 - s) one-hot + s uniform, averaged over dim 0 (the batch).
    logits (B, ..., C), labels (B, ...) -> shape (...)."""
    logp = logits.float().log_softmax(-1) if logits.dtype in (torch.bfloat16, torch.float16) \
        else logits.log_softmax(-1)
    nll = -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return ((1.0 - smoothing) * nll - smoothing * logp.mean(-1)).mean(0)


def _layer_shapes(recipe: FastRecipe, n_classes: int, in_channels: int = 3) -> dict[str, tuple]:
    """Trained tensors of one network, in order."""
    shapes, c = {}, 2 * in_channels * recipe.whiten_patch ** 2
    for i, w in enumerate(recipe.widths, 1):
        shapes[f"block{i}_conv1"] = (w, c, 3, 3)
        shapes[f"block{i}_bn1"] = (w,)
        shapes[f"block{i}_conv2"] = (w, w, 3, 3)
        shapes[f"block{i}_bn2"] = (w,)
        c = w
    shapes["head"] = (n_classes, c, 1, 1)
    return shapes


def init_network(recipe: FastRecipe, whitening, *, n_classes: int, seed: int,
                 dtype: torch.dtype = torch.float32) -> tuple[dict, dict]:
    """(trained tensors, buffers) of one network: convolutions and head U(+-1/sqrt(fan_in)) (PyTorch's
    default) drawn from `seed` in float32, batch-norm shifts 0; buffers hold the frozen whitening and the
    running statistics."""
    g = torch.Generator().manual_seed(int(seed))
    params = {}
    for name, shape in _layer_shapes(recipe, n_classes, whitening[0].shape[1]).items():
        if len(shape) == 1:
            params[name] = torch.zeros(shape, dtype=dtype)
        else:
            bound = 1.0 / math.sqrt(math.prod(shape[1:]))
            params[name] = ((torch.rand(shape, generator=g) * 2 - 1) * bound).to(dtype)
    buffers = {"whiten_weight": whitening[0].to(dtype), "whiten_bias": whitening[1].to(dtype)}
    for name, t in params.items():
        if "_bn" in name:
            buffers[name + "_mean"] = torch.zeros_like(t)
            buffers[name + "_var"] = torch.ones_like(t)
    return params, buffers


def _batch_norm(x, shift, mean, var, *, train: bool, momentum: float, eps: float):
    """Batch norm without scale: (x - mean) / sqrt(var + eps) + shift per channel. Functional: the
    updated running statistics are returned, never written in place (so it runs under vmap)."""
    if x.dtype in (torch.bfloat16, torch.float16):      # statistics in float32 under autocast
        x = x.float()
    if not train:
        return F.batch_norm(x, mean.to(x.dtype), var.to(x.dtype), None, shift.to(x.dtype), False, 0.0, eps), \
            mean, var
    y, m, invstd = torch.native_batch_norm(x, None, shift.to(x.dtype), None, None, True, momentum, eps)
    n = x.numel() // x.shape[1]
    v = (invstd.detach() ** -2 - eps) * (n / (n - 1))                  # unbiased batch variance
    return y, (1 - momentum) * mean + momentum * m.detach().to(mean.dtype), \
        (1 - momentum) * var + momentum * v.to(var.dtype)


def forward(params: dict, buffers: dict, x: torch.Tensor, recipe: FastRecipe, *, groups: int = 1,
            train: bool, cosine: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Logits (B, groups, n_classes) and the updated running statistics.

    x: (B, groups x C, H, W), network j's images in channels [j C, (j+1) C); every tensor holds the
    groups' tensors concatenated along dim 0 (groups=1: one network; under vmap: one network each).
    cosine > 0: Cao et al.'s normalised head, cosine x `cosine` (ldam-drw), instead of the scaled head.
    """
    new = dict(buffers)
    bn = dict(train=train, momentum=recipe.bn_momentum, eps=recipe.bn_epsilon)
    x = F.gelu(F.conv2d(x, buffers["whiten_weight"].to(x.dtype), buffers["whiten_bias"].to(x.dtype),
                        groups=groups))
    for i in range(1, 4):
        for j in (1, 2):
            key = f"block{i}_bn{j}"
            x = F.conv2d(x, params[f"block{i}_conv{j}"].to(x.dtype), padding=1, groups=groups)
            if j == 1:
                x = F.max_pool2d(x, 2)
            x, new[key + "_mean"], new[key + "_var"] = _batch_norm(
                x, params[key], buffers[key + "_mean"], buffers[key + "_var"], **bn)
            x = F.gelu(x)
    x = F.adaptive_max_pool2d(x, 1)
    if cosine:                       # each network's features and each class's weights to unit length
        x = F.normalize(x.view(len(x), groups, -1), dim=-1).view_as(x)
        head = F.normalize(params["head"].flatten(1), dim=1).view_as(params["head"])
        logits = F.conv2d(x, head.to(x.dtype), groups=groups).flatten(1) * cosine
        return logits.view(len(x), groups, -1), new
    logits = F.conv2d(x, params["head"].to(x.dtype), groups=groups).flatten(1) * recipe.output_scale
    return logits.view(len(x), groups, -1), new


class FastNet(nn.Module):
    """One trained network: forward(images in [0, 1]) -> logits; eval mode uses the running statistics
    and, with recipe.tta, the mean of the image's and its mirror's logits."""

    def __init__(self, params: dict, buffers: dict, recipe: FastRecipe, *, cosine: float = 0.0):
        super().__init__()
        self.recipe, self.cosine = recipe, float(cosine)     # cosine > 0: a normalised head x cosine (ldam-drw)
        self.output_layers = ("head",)
        for name, t in params.items():
            self.register_parameter(name, nn.Parameter(t.detach().clone(), requires_grad=False))
        for name, t in buffers.items():
            self.register_buffer(name, t.detach().clone())
        self._param_names, self._buffer_names = tuple(params), tuple(buffers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = {n: getattr(self, n) for n in self._param_names}
        b = {n: getattr(self, n) for n in self._buffer_names}
        x = x.to(p["head"].dtype).contiguous(memory_format=torch.channels_last)    # oneDNN's fast layout
        logits = forward(p, b, x, self.recipe, train=self.training, cosine=self.cosine)[0][:, 0]
        if self.recipe.tta and not self.training:
            logits = (logits + forward(p, b, x.flip(-1), self.recipe, train=False, cosine=self.cosine)[0][:, 0]) / 2
        return logits


# --- training ----------------------------------------------------------------------------------

@torch.no_grad()
def nesterov_step_(params, grads, velocity, *, lr, momentum: float, weight_decay: float) -> None:
    """PyTorch's SGD(nesterov=True), in place: d = g + wd w; v = m v + d; w -= lr (d + m v).
    `lr` is a float or a list of per-tensor rates."""
    d = torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay else [g.clone() for g in grads]
    torch._foreach_mul_(velocity, momentum)
    torch._foreach_add_(velocity, d)
    torch._foreach_add_(d, velocity, alpha=momentum)
    if isinstance(lr, list):
        torch._foreach_mul_(d, lr)
        torch._foreach_sub_(params, d)
    else:
        torch._foreach_sub_(params, d, alpha=lr)


def _trained_names(spec, names: tuple[str, ...]) -> tuple[str, ...]:
    """The tensors a spec trains: all (trainable None), the head ("output": two-phase fine-tuning),
    or the named ones (a str or tuple of names of _layer_shapes)."""
    trainable = getattr(spec, "trainable", None)
    if trainable is None:
        return names
    if trainable == "output":
        return ("head",)
    chosen = (trainable,) if isinstance(trainable, str) else tuple(trainable)
    unknown = [t for t in chosen if t not in names]
    if unknown or not chosen:
        raise ValueError(f"spec trainable must be None, 'output' or names among {', '.join(names)}; "
                         f"got {trainable!r}")
    return tuple(n for n in names if n in chosen)


def _check_spec(spec, n: int, names: tuple[str, ...]) -> np.ndarray:
    lr_scale, init_from = getattr(spec, "lr_scale", 1.0), getattr(spec, "init_from", None)
    if not is_real(lr_scale) or lr_scale <= 0:
        raise ValueError(f"spec lr_scale must be a finite number > 0, got {lr_scale!r}")
    if init_from is not None and not isinstance(init_from, FastNet):
        raise ValueError(f"spec init_from must be a FastNet (a fast recipe's trained model), got "
                         f"{type(init_from).__name__}")
    _trained_names(spec, names)
    idx = np.asarray(spec.indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 \
            or idx.max() >= n:
        raise ValueError(f"spec indices must be a non-empty 1-D integer array of positions in [0, {n}), "
                         f"got shape {idx.shape}, dtype {idx.dtype}")
    return idx


def _cat(dicts: list[dict]) -> dict:
    return {n: torch.cat([d[n] for d in dicts]) for n in dicts[0]}


def _split(d: dict, k: int) -> list[dict]:
    parts = {n: t.chunk(k) for n, t in d.items()}
    return [{n: parts[n][j] for n in d} for j in range(k)]


def default_layout(device: torch.device) -> str:
    return "threads" if device.type == "cpu" else "vmap"


def train_fast_networks(specs, images: torch.Tensor, labels: torch.Tensor, recipe: FastRecipe, *,
                        n_classes: int, device=None, layout: str = "auto", test=None,
                        dtype: torch.dtype = torch.float32, workers: int | None = None,
                        progress: bool = False, progress_callback=None) -> list[TrainResult]:
    """Train each spec's network for recipe.iterations steps; results (train.TrainResult, model a
    FastNet in eval mode, preprocessor ScaledImages) in the order of `specs`.

    specs: batched.NetworkSpec-like (indices: positions into `images`, the resampled training set;
    init_seed: weights and the whitening's image draw; batch_seed: mini-batches, flips and shifts;
    lr_scale; trainable None | "output" | names; init_from a FastNet, whose whitening is kept: the
    two-phase methods). Networks sharing (trainable, lr_scale) are batched together; a network
    that trains no batch-norm shift keeps its batch norms in eval mode (as train.train_network).
    images: uint8 (N, C, H, W); labels int64 (N,). test=(uint8 images, labels) adds test accuracy
    (eval mode) to each curve point. dtype float64 serves exactness checks. layout: "auto" =
    "threads" on CPU, "vmap" on CUDA. A NaN/inf loss sets diverged_at (its first step) and
    iterations_done (the end of that interval); nothing is raised. progress_callback(done, total):
    network-iterations over all specs, after every step (as batched.train_networks).
    """
    specs = list(specs)
    if not isinstance(recipe, FastRecipe):
        raise ValueError(f"recipe must be a FastRecipe (one of {', '.join(FAST_RECIPES)}), got {recipe!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    check_uint8(images, "images")
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be (N, C, H, W) with N = len(labels) = {len(labels)}, got "
                         f"{tuple(images.shape)}")
    if not specs:
        return []
    names = tuple(_layer_shapes(recipe, n_classes, images.shape[1]))
    indices = [_check_spec(s, len(labels), names) for s in specs]
    device = resolve_device(device)
    layout = default_layout(device) if layout == "auto" else layout
    nets, fit_seconds = [], []
    for s, idx in zip(specs, indices):
        started = time.perf_counter()
        if getattr(s, "init_from", None) is not None:
            m = s.init_from
            p = {n: getattr(m, n).detach().to(dtype).clone() for n in m._param_names}
            b = {n: getattr(m, n).detach().to(dtype).clone() for n in m._buffer_names}
            if getattr(s, "reinit_output", False):      # cRT: the head drawn afresh from the spec's init seed
                fresh, _ = init_network(recipe, (b["whiten_weight"], b["whiten_bias"]), n_classes=n_classes,
                                        seed=s.init_seed, dtype=dtype)
                p["head"] = fresh["head"]
        else:
            whitening = fit_whitening(images, idx, patch=recipe.whiten_patch, epsilon=recipe.whiten_epsilon,
                                      max_images=recipe.whiten_images, seed=s.init_seed)
            p, b = init_network(recipe, whitening, n_classes=n_classes, seed=s.init_seed, dtype=dtype)
        nets.append(({n: t.to(device) for n, t in p.items()}, {n: t.to(device) for n, t in b.items()}))
        fit_seconds.append(time.perf_counter() - started)
    scale = ScaledImages(dtype)
    train_u8, ys = images.to(device), labels.to(device)
    test_set = None if test is None else (scale.transform(test[0].to(device)), test[1].to(device))
    bar = _Progress(tqdm(total=len(specs) * recipe.iterations, desc=f"{len(specs)} x {recipe.name} ({layout})",
                         unit="it", disable=not progress, leave=False), progress_callback)
    job = dict(recipe=recipe, train_u8=train_u8, ys=ys, scale=scale, test_set=test_set, device=device, bar=bar)
    # networks train together when they update the same tensors at the same lr, through the same head
    keys = [(_trained_names(s, names), float(getattr(s, "lr_scale", 1.0)), _cosine(s), _lr_drop(s)) for s in specs]
    if layout in ("grouped", "vmap"):
        groups = [[i for i, k in enumerate(keys) if k == key] for key in dict.fromkeys(keys)]
    else:
        groups = [[i] for i in range(len(specs))]

    def run(group):
        trained, lr_scale, cosine, lr_drop = keys[group[0]]
        return _train_group([nets[i] for i in group], [specs[i] for i in group], [indices[i] for i in group],
                            stacked=layout == "vmap", trained=trained, lr_scale=lr_scale, cosine=cosine,
                            lr_drop=lr_drop, n_classes=n_classes, **job)
    out = [None] * len(specs)
    try:
        if layout == "threads":
            budget = torch.get_num_threads()
            n = min(len(specs), workers or budget)
            with intra_op_threads(max(1, budget // n)), ThreadPoolExecutor(n) as pool:   # K=1: all threads
                done = list(pool.map(run, groups))
        else:
            done = [run(g) for g in groups]
    finally:
        bar.close()
    for group, results in zip(groups, done):
        for i, r in zip(group, results):
            r.preprocessor = scale
            r.seconds += fit_seconds[i]
            out[i] = r
    return out


def _cosine(spec) -> float:
    """The spec's cosine-head scale (ldam-drw), or 0: a second stage keeps its first stage's head."""
    init_from = getattr(spec, "init_from", None)
    return float(init_from.cosine) if init_from is not None else float(getattr(spec, "head_scale", 0.0) or 0.0)


def _lr_drop(spec) -> tuple[int, float] | None:
    """(switch iteration, lr factor from it on) of the spec's loss terms (Cao et al.'s DRW drop), or None."""
    terms = getattr(spec, "loss", None)
    return None if terms is None or terms.late_lr == 1.0 else (int(terms.switch), float(terms.late_lr))


def _terms_loss(logits, y, terms: dict, smoothing: float):
    """One network's loss with method terms (training.losses.class_loss) and the recipe's label smoothing
    as torch's: (1 - s) class_loss + s mean_j(-log p_j) over the batch.  Neutral terms give
    smoothed_cross_entropy exactly."""
    logits = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
    if not smoothing:       # no smoothing term to add (nor a second log-softmax, whose -inf x 0 would be NaN)
        return class_loss(logits, y, **terms)
    return (1.0 - smoothing) * class_loss(logits, y, **terms) - smoothing * logits.log_softmax(-1).mean(-1).mean(0)


def _train_group(nets, specs, indices, *, stacked: bool, trained: tuple[str, ...], lr_scale: float,
                 recipe: FastRecipe, train_u8, ys, scale, test_set, device, bar, cosine: float = 0.0,
                 lr_drop: tuple[int, float] | None = None, n_classes: int = 10) -> list[TrainResult]:
    """K networks as one job: concatenated channels with groups=K (stacked=False; K=1 is "single") or
    stacked tensors under vmap (stacked=True). `trained` names the tensors updated (the rest frozen).
    Networks with loss terms (loss-level methods) get their own loss, networks without them neutral terms."""
    k, b = len(nets), recipe.batch_size
    join = (lambda ds: {n: torch.stack([d[n] for d in ds]) for n in ds[0]}) if stacked else _cat
    params, buffers = join([p for p, _ in nets]), join([b_ for _, b_ in nets])
    names = list(trained)
    live = {n: params[n] for n in names}
    frozen = {n: t for n, t in params.items() if n not in live}
    bn_train = all(n in live for n in params if "_bn" in n)     # else batch norms stay in eval mode
    velocity = [torch.zeros_like(live[n]) for n in names]
    autocast = device.type == "cuda" and recipe.half
    channels_last = not stacked

    with_terms = any(getattr(s, "loss", None) is not None for s in specs)
    if with_terms:     # each network's terms, stacked (K, ...) on the device; plain ones neutral
        dtype = next(iter(params.values())).dtype       # the terms in the weights' precision (float64: exactness)
        per = [(s.loss if s.loss is not None else neutral_terms(n_classes)).to(device, dtype) for s in specs]
        early = torch.stack([t.weights for t in per])
        late = torch.stack([t.late_weights for t in per])
        switch = torch.tensor([t.switch for t in per], device=device)
        fixed_terms = {key: torch.stack([t.at(0)[key] for t in per]) for key in per[0].at(0) if key != "weights"}

    def loss_fn(p, fixed, buf, x, y, terms=None):   # one network (vmap) or K networks concatenated (groups=k)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits, new = forward({**p, **fixed}, buf, x, recipe, groups=1 if stacked else k, train=bn_train,
                                  cosine=cosine)
        if terms is None:
            loss = smoothed_cross_entropy(logits, y, recipe.label_smoothing)        # (groups,)
        elif stacked:
            loss = _terms_loss(logits[:, 0], y[:, 0], terms, recipe.label_smoothing)[None]
        else:
            loss = vmap(lambda z, t, terms: _terms_loss(z, t, terms, recipe.label_smoothing))(
                logits.transpose(0, 1), y.T, terms)
        return loss.sum(), (loss.detach(), logits.detach(), new)

    vstep = vmap(grad(loss_fn, has_aux=True), in_dims=(0, 0, 0, 0, 0, 0 if with_terms else None)) if stacked else None
    streams = [BatchStream(idx, batch_size=b, seed=s.batch_seed, shuffle=getattr(s, "shuffle", True))
               for s, idx in zip(specs, indices)]
    augments = [AugmentStream(s.batch_seed, recipe) for s in specs]
    log = IntervalLog(k, iterations=recipe.iterations, device=device)
    started = time.perf_counter()
    for start in range(0, recipe.iterations, recipe.eval_interval):
        n = min(recipe.eval_interval, recipe.iterations - start)
        batches = torch.stack([s.next_many(n) for s in streams], 1).to(device)      # (n, K, B)
        for t in range(start, start + n):
            idx = batches[t - start]
            draws = [a.draw(b) for a in augments]
            flip = torch.cat([f for f, _ in draws]) if recipe.flip else None
            shift = torch.cat([s for _, s in draws]) if recipe.translate else None
            x = augment(scale.transform(train_u8[idx.flatten()]), flip=flip, shift=shift, pad=recipe.translate)
            x = x.view(k, b, *x.shape[1:])                                           # (K, B, C, H, W)
            lr = learning_rate(recipe, t) * lr_scale * (lr_drop[1] if lr_drop and t >= lr_drop[0] else 1.0)
            terms = None if not with_terms else \
                {**fixed_terms, "weights": torch.where((t >= switch).unsqueeze(-1), late, early)}
            if stacked:
                y = ys[idx]                                                          # (K, B)
                grads, (loss, logits, new) = vstep(live, frozen, buffers, x.contiguous(), y[..., None], terms)
                grads = [grads[n] for n in names]
                loss, logits = loss[:, 0], logits[:, :, 0]                           # (K,), (K, B, n)
                pred = logits.argmax(-1)
            else:
                x = x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])       # (B, K C, H, W)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = ys[idx].T                                                        # (B, K)
                for p_ in live.values():
                    p_.requires_grad_()
                total, (loss, logits, new) = loss_fn(live, frozen, buffers, x, y, terms)
                grads = torch.autograd.grad(total, [live[n] for n in names])
                for p_ in live.values():
                    p_.requires_grad_(False)
                pred, y = logits.argmax(-1).T, y.T                                   # (K, B)
            if bn_train:
                buffers = new
            nesterov_step_([live[n] for n in names], list(grads), velocity, lr=lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)
            log.losses[t] = loss.float()
            log.hits[t] = (pred == y).sum(-1).float()
            bar.update(k)
        end = start + n
        params = {**live, **frozen}
        test = (lambda: _test_accuracy(params, buffers, test_set, recipe, k=k, stacked=stacked)) if test_set else None
        log.close_interval(start, end, examples_per_step=b, lrs=[learning_rate(recipe, end - 1) * lr_scale
                                                     * (lr_drop[1] if lr_drop and end - 1 >= lr_drop[0] else 1.0)] * k,
                           test_accuracy=test)
        if all(log.stopped):
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / k
    params = {n: params[n] for n in nets[0][0]}                                      # the layer order
    split = (lambda d: [{n: t[j] for n, t in d.items()} for j in range(k)]) if stacked else \
        (lambda d: _split(d, k))
    return [TrainResult(FastNet(p, bf, recipe, cosine=cosine).eval(), log.done[j], log.diverged_at[j], log.curves[j], seconds,
                        failure=log.failure[j])
            for j, (p, bf) in enumerate(zip(split(params), split(buffers)))]


@torch.no_grad()
def _test_accuracy(params, buffers, test_set, recipe, *, k: int, stacked: bool, batch_size: int = 1000):
    """Test accuracy (eval mode, with the recipe's TTA) of each of the K networks, (K,)."""
    if stacked:
        call = vmap(lambda p, bf, x: forward(p, bf, x, recipe, train=False)[0][:, 0], in_dims=(0, 0, None))
    else:
        def call(p, bf, x):
            xs = x.repeat(1, k, 1, 1).contiguous(memory_format=torch.channels_last)
            return forward(p, bf, xs, recipe, groups=k, train=False)[0].transpose(0, 1)   # (K, B, n)
    images, labels = test_set
    correct = torch.zeros(k, device=labels.device)
    for i in range(0, len(images), batch_size):
        x, y = images[i:i + batch_size], labels[i:i + batch_size]
        logits = call(params, buffers, x)
        if recipe.tta:
            logits = (logits + call(params, buffers, x.flip(-1))) / 2
        correct += (logits.argmax(-1) == y).sum(-1)
    return correct / len(images)




# --- cost: what a dry run can print ----------------------------------------------------------

# airbench94 (arXiv:2404.00498, table 1): 3.6e14 FLOPs in 3.83 s on one A100, i.e. a sustained
# 94 TFLOP/s; `flops_per_network` counts the same way (its network and budget give 3.5e14).
AIRBENCH94_A100_FLOPS_PER_SECOND = 3.6e14 / 3.83


def flops_per_network(recipe: FastRecipe, *, n_classes: int = 10, image_size: int = 32,
                      in_channels: int = 3) -> float:
    """Training FLOPs of one network: 2 x multiply-adds of the convolutions and head per image,
    x 3 (forward, and a backward pass of about twice its cost), x iterations x batch_size.
    Batch norm, activations, pooling and evaluation are left out (a few percent)."""
    side = image_size - recipe.whiten_patch + 1
    c = 2 * in_channels * recipe.whiten_patch ** 2
    macs = c * in_channels * recipe.whiten_patch ** 2 * side ** 2
    for w in recipe.widths:
        macs += c * w * 9 * side ** 2             # conv1 at the block's input resolution
        side //= 2                                # then 2x2 max-pooling
        macs += w * w * 9 * side ** 2             # conv2
        c = w
    macs += c * n_classes
    return 2.0 * macs * 3 * recipe.iterations * recipe.batch_size


def probe_seconds_per_iteration(recipe: FastRecipe, *, device=None, layout: str = "single", k: int = 1,
                                steps: int = 4, n_classes: int = 10, seed: int = 0) -> float:
    """Seconds per iteration per network, timed on random 32x32 images: the difference between a
    (1 + steps)-step and a 1-step job, over steps (a job's first step pays its memory and kernel
    set-up). What a dry run multiplies by iterations x networks."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * recipe.batch_size
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    specs = [type("Spec", (), dict(indices=np.arange(n), init_seed=seed + j, batch_seed=seed + j))()
             for j in range(k)]
    seconds = {1: [], 1 + steps: []}
    for it in (1, 1, 1 + steps, 1, 1 + steps):   # the first job warms up; then the best of two each
        short = fast_recipe_with(recipe, iterations=it, eval_interval=it, whiten_images=min(recipe.whiten_images, 64))
        started = time.perf_counter()
        train_fast_networks(specs, images, labels, short, n_classes=n_classes, device=device, layout=layout)
        seconds[it].append(time.perf_counter() - started)
    return max(min(seconds[1 + steps]) - min(seconds[1][1:]), 0.0) / steps / k


__all__ = ["FastRecipe", "FAST_RECIPES", "fast_recipe_with", "check_fast_recipe", "learning_rate",
           "ScaledImages", "fit_whitening", "augment", "AugmentStream", "smoothed_cross_entropy",
           "init_network", "forward", "FastNet", "nesterov_step_", "train_fast_networks", "LAYOUTS",
           "flops_per_network", "probe_seconds_per_iteration", "AIRBENCH94_A100_FLOPS_PER_SECOND"]
