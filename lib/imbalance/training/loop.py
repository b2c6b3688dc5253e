"""The training-loop scaffold the single, batched and fast trainers share: SGD as Caffe does it,
the mini-batch stream, devices, precision, per-layer lr multipliers, prediction."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from imbalance.checks import is_int
from imbalance.data.images import ImageSource, Preprocessor, ResidentImages
from imbalance.training.recipes import PRECISIONS, Recipe


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
        if not is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not is_int(seed) or seed < 0:
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
    diverged_at: int | None                 # the iteration it failed at (FAILURES: non-finite or exploded loss)
    curve: list[dict] = field(default_factory=list)  # one point per eval_interval
    seconds: float = 0.0
    preprocessor: Preprocessor | None = None  # to apply to test images (evaluate)
    group_size: int | None = None           # vmap/gemm layouts: networks trained in lockstep with it
    oom_halvings: int = 0                   # times its group was halved after a CUDA out-of-memory error
    failure: str | None = None              # which rule of FAILURES stopped it, None if none did

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


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


# A network fails, and is stopped with no scores, when (the first rule that fires is recorded):
NON_FINITE = "non-finite loss"        # a step's loss is NaN or inf
EXPLODED = "exploded loss"            # an interval's mean training loss > EXPLOSION x the run's first interval's
CONSTANT = "constant outputs"         # its scores do not vary over the test set (the pipeline checks, after training)
FAILURES = (NON_FINITE, EXPLODED, CONSTANT)
EXPLOSION = 100.0


class IntervalLog:
    """The scaffold every trainer shares (single, batched, fast): each step's loss and correct predictions
    of K networks trained together, and, at the end of each evaluation interval, one host sync that finds
    the networks that failed (a non-finite loss: stopped at that step; an exploded loss, EXPLOSION times the
    run's own first interval's mean: stopped at the interval's first step) and adds a curve point
    (iteration, lr, mean train loss and accuracy of the interval, test accuracy when given) to the others."""

    def __init__(self, k: int, *, iterations: int, device):
        self.losses = torch.zeros(iterations, k, device=device)
        self.hits = torch.zeros(iterations, k, device=device)
        self.curves: list[list[dict]] = [[] for _ in range(k)]
        self.diverged_at: list[int | None] = [None] * k
        self.failure: list[str | None] = [None] * k
        self.first_loss: list[float | None] = [None] * k
        self.done = [0] * k

    @property
    def stopped(self) -> list[bool]:
        return [d is not None for d in self.diverged_at]

    def close_interval(self, start: int, end: int, *, examples_per_step: int, lrs, test_accuracy=None) -> list[int]:
        """Close the interval [start, end): returns the networks that diverged in it.  `test_accuracy`: a
        function giving the K networks' test accuracies, called only when a network is still training."""
        bad = ~torch.isfinite(self.losses[start:end])                       # (n, K): the one host sync
        means = self.losses[start:end].mean(0).tolist()
        diverged = []
        alive = [d is None and not bad[:, j].any() and not self._exploded(j, means[j])
                 for j, d in enumerate(self.diverged_at)]
        test_accuracy = test_accuracy() if test_accuracy is not None and any(alive) else None
        for j, curve in enumerate(self.curves):
            if self.diverged_at[j] is not None:
                continue
            self.done[j] = end
            if bad[:, j].any():
                self.diverged_at[j], self.failure[j] = start + int(torch.nonzero(bad[:, j])[0]), NON_FINITE
                diverged.append(j)
                continue
            if self._exploded(j, means[j]):
                self.diverged_at[j], self.failure[j] = start, EXPLODED
                diverged.append(j)
                continue
            if self.first_loss[j] is None:
                self.first_loss[j] = means[j]
            point = {"iteration": end, "lr": float(lrs[j]), "train_loss": float(self.losses[start:end, j].mean()),
                     "train_accuracy": float(self.hits[start:end, j].sum()) / ((end - start) * examples_per_step)}
            if test_accuracy is not None:
                point["test_accuracy"] = float(test_accuracy[j])
            curve.append(point)
        return diverged

    def _exploded(self, j: int, mean: float) -> bool:
        first = self.first_loss[j]
        return first is not None and first > 0 and mean > EXPLOSION * first
