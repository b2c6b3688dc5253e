"""Train many networks of one architecture at once: a grid point as one batched job.

A grid point holds repeats x methods networks sharing the dataset and recipe, each with its own
seed, training indices, lr scale and trainable layers. Training them one by one wastes small-model
hardware, so `train_networks` runs them in one of three layouts:

- "single":  one network after another with `train.train_network` (the reference semantics).
- "threads": the same `train_network` calls in parallel Python threads, one intra-op thread each,
             channels-last. Chosen on CPU: small convolutions thread poorly inside one op, while
             independent networks fill the cores (2-core CPU: ~1.9x the one-network rate). Each
             network does exactly the arithmetic of "single", so results are bit-identical.
- "vmap":    parameters stacked along a leading network dimension K and one `torch.func.vmap`-ed
             forward/backward per step (batched/grouped kernels); mini-batches for all K networks
             are gathered with one indexing op. Chosen on CUDA, where one small network cannot
             fill the GPU. Same update rule (`train.sgd_step_`), same batch streams; float32
             results differ from "single" only by round-off (which SGD amplifies: see the README).

- "vmap-graph", "gemm-graph": those steps (gather, forward, backward, SGD update) captured once
             as a CUDA graph with static buffers and replayed (launch overhead paid once, issue 14).
             On a CPU the same static-buffer step runs eagerly (what CPU tests check; no faster).
- "gemm":    the vmap layout's step with a hand-stacked forward instead of vmap: every convolution
             of the K networks is one batched GEMM (`torch.bmm`) over im2col patches (`F.unfold`),
             each network keeping its own mini-batch (the study's independent batches), every
             linear layer one `torch.baddbmm`; backward by autograd.  Dense GEMMs instead of the
             grouped convolutions vmap lowers to (issue 14); costs the patch copies.  Models built
             of Conv2d / Linear / ReLU / MaxPool2d / AdaptiveAvgPool2d / Flatten / SeededDropout
             (LeNet-5, All-CNN-C).

Models with batch norm (ResNet-10) are not vmapped (their running statistics are per-network
buffers); they use "threads" on CPU and "single" on CUDA.
"""
from __future__ import annotations

import copy
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from tqdm import tqdm

from imbalance.data.images import Preprocessor, ResidentImages
from imbalance.training.loop import (
    BatchStream,
    IntervalLog,
    TrainResult,
    _predict,
    lr_multipliers,
    precision_context,
    resolve_device,
    sgd_step_,
)
from imbalance.training.losses import LossTerms, class_loss, neutral_terms
from imbalance.training.models import (
    CosineHead,
    SeededDropout,
    build_model,
    dropout_masks,
    dropout_shapes,
    reseed_dropout,
    set_output_bias,
    with_cosine_head,
)
from imbalance.training.recipes import Recipe, learning_rate
from imbalance.training.single import train_network

LAYOUTS = ("auto", "single", "threads", "vmap", "gemm", "vmap-graph", "gemm-graph")
LOCKSTEP = ("vmap", "gemm", "vmap-graph", "gemm-graph")    # stacked parameters, one step for all K


@dataclass(frozen=True)
class NetworkSpec:
    indices: np.ndarray                  # positions into the training images (resampled set)
    init_seed: int                       # weights (ignored when init_from is given)
    batch_seed: int                      # mini-batch order
    lr_scale: float = 1.0                # two-phase fine-tuning: 0.1
    trainable: str | tuple[str, ...] | None = None   # None = all; "output" = model.output_layers
    init_from: nn.Module | None = None   # start from a copy of this (pre-trained) network
    reinit_output: bool = False          # cRT: with init_from, output layers re-drawn from init_seed
    loss: LossTerms | None = None        # the method's loss terms (imbalance.training.losses); None = cross-entropy
    shuffle: bool = True                 # False: stream `indices` in order (class-aware batches drawn already)
    head_scale: float = 0.0              # > 0: the last output layer becomes a cosine head x head_scale (Cao et al.)
    output_bias: float | None = None     # the last output layer's biases start at this (Cui et al.: -log(C - 1))


# The layout "auto" picks for K >= 2 networks without batch norm, per device type (override: layout=...);
# on a CPU always threads (a lone network too: its arithmetic then does not depend on K).
# cpu: threads, measured ~1.9x one network on 2 cores (README); cuda: vmap, measured 20x the plain loop
# at K = 256 on an H200 (benchmarks/results/h200-gpu_check.log).  gemm and the CUDA graph are not
# measured on a GPU yet: benchmarks/gpu_check.sh prints the table that should set these.
AUTO_LAYOUT = {"cpu": "threads", "cuda": "vmap"}


def default_layout(device: torch.device, model: nn.Module, n_networks: int | None = None) -> str:
    """The layout "auto" means for `n_networks` networks of `model` on `device` (None: many)."""
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if device.type == "cpu":      # threads: one intra-op thread per network, the same arithmetic for any K
        return "threads"
    if n_networks == 1:           # nothing to stack
        return "single"
    if has_batch_norm:
        return "threads" if device.type == "cpu" else "single"
    return AUTO_LAYOUT.get(device.type, "single")


@contextmanager
def intra_op_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Progress:
    """A job's networks x iterations done, shown on a tqdm bar and passed to progress_callback(done,
    total); thread-safe (the threads layout reports from every worker thread)."""

    def __init__(self, bar, callback=None):
        self.bar, self.callback, self.done, self._lock = bar, callback, 0, threading.Lock()

    def update(self, n: int) -> None:
        if n == 0:
            return
        with self._lock:          # n < 0: a group given back (out of memory, retried smaller)
            self.done += n
            self.bar.update(n)
            if self.callback is not None:
                self.callback(self.done, self.bar.total)

    def close(self) -> None:
        self.bar.close()


def _head(spec: NetworkSpec) -> str:
    """The network's output-layer kind: stacked (vmap, gemm) groups hold one architecture each."""
    if spec.head_scale or (spec.init_from is not None and any(isinstance(m, CosineHead)
                                                               for m in spec.init_from.modules())):
        return "cosine"
    return "model"


def _trainable(spec: NetworkSpec, model: nn.Module):
    return tuple(model.output_layers) if spec.trainable == "output" else spec.trainable


def _initial_model(spec: NetworkSpec, recipe: Recipe, *, n_classes: int, in_channels: int, device,
                   channels_last: bool, dtype: torch.dtype = torch.float32) -> nn.Module:
    fresh = lambda: build_model(recipe.model, n_classes=n_classes, in_channels=in_channels,  # noqa: E731
                                seed=spec.init_seed)
    model = copy.deepcopy(spec.init_from) if spec.init_from is not None else fresh()
    if spec.init_from is not None:     # a second stage's dropout streams restart from its own seed
        reseed_dropout(model, spec.init_seed)
    if spec.init_from is not None and spec.reinit_output:     # cRT: the output layers start afresh
        drawn = dict(fresh().named_parameters())
        with torch.no_grad():
            for name, p in model.named_parameters():
                if any(name == q or name.startswith(q + ".") for q in model.output_layers) and name in drawn:
                    p.copy_(drawn[name])
    if spec.init_from is None and spec.output_bias is not None:
        set_output_bias(model, spec.output_bias)
    if spec.init_from is None and spec.head_scale:
        model = with_cosine_head(model, scale=spec.head_scale)
    model = model.to(device, dtype)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def train_networks(specs, images: torch.Tensor, labels: torch.Tensor, recipe: Recipe, *, n_classes: int,
                   device=None, batched: bool = True, layout: str = "auto", workers: int | None = None,
                   group_size: int | None = None, dtype: torch.dtype = torch.float32, test=None,
                   preprocessor: Preprocessor | None = None, progress: bool = True,
                   progress_callback=None) -> list[TrainResult]:
    """Train every spec's network for recipe.iterations steps; results in the order of `specs`.

    images: uint8 (N, C, H, W), preprocessed once (by `preprocessor`, else one fitted on all of
    them) and kept resident on the device; or an image source such as images.StreamedImages
    (image folders: trained one network at a time). batched=False forces the "single" layout.
    workers: threads of the "threads" layout (default: torch's thread budget). group_size: networks per vmapped group (default:
    all; on a CUDA out-of-memory error a group is halved and retrained). dtype: of weights and
    preprocessed images (float64 serves exactness checks).  progress_callback(done_iterations,
    total_iterations), if given, is called as the job's networks x iterations advance (from any
    thread; a diverged network's skipped iterations count as done when it stops).
    """
    specs = list(specs)
    if not specs:
        return []
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    device = resolve_device(device)
    streamed = hasattr(images, "batch")      # an image source decoded on demand (an image folder)
    in_channels = 3 if streamed else images.shape[1]
    probe = _initial_model(specs[0], recipe, n_classes=n_classes, in_channels=in_channels, device="meta",
                           channels_last=False) if specs[0].init_from is None else specs[0].init_from
    layout = "single" if not batched else default_layout(device, probe, len(specs)) if layout == "auto" else layout
    if streamed:
        # one decoding stream (its crops) serves the networks in turn: one network at a time
        layout, channels_last = "single", False
        source, preprocessor = images, images.preprocessor
        test_set = None if test is None else (test[0], test[1].to(device))
    else:
        preprocessor = preprocessor or Preprocessor(recipe).fit(images.to(device))
        channels_last = device.type == "cpu" and layout in ("single", "threads")  # oneDNN: fastest channels-last
        train_x = preprocessor.transform(images.to(device)).to(dtype)
        if channels_last:
            train_x = train_x.contiguous(memory_format=torch.channels_last)
        source = ResidentImages(train_x)
        test_set = None if test is None else (ResidentImages(preprocessor.transform(test[0].to(device)).to(dtype)),
                                              test[1].to(device))
    ys = labels.to(device)
    bar = _Progress(tqdm(total=len(specs) * recipe.iterations, desc=f"{len(specs)} x {recipe.model} ({layout})",
                         unit="it", disable=not progress, leave=False), progress_callback)
    common = dict(n_classes=n_classes, in_channels=in_channels, device=device, dtype=dtype)
    try:
        if layout in LOCKSTEP:
            results = _train_vmap_groups(specs, source, ys, recipe, test_set=test_set, group_size=group_size,
                                         bar=bar, forward=layout.removesuffix("-graph"),
                                         graph=layout.endswith("-graph"), **common)
        else:
            def one(spec):
                model = _initial_model(spec, recipe, channels_last=channels_last, **common)
                reported = [0]

                def advance(done, _total):
                    bar.update(done - reported[0])
                    reported[0] = done
                r = train_network(model, source, ys, spec.indices, recipe, seed=spec.batch_seed, device=device,
                                  lr_scale=spec.lr_scale, trainable=_trainable(spec, model), test=test_set,
                                  preprocessor=preprocessor, progress=False, loss_terms=spec.loss,
                                  shuffle=spec.shuffle, progress_callback=advance)
                bar.update(recipe.iterations - reported[0])     # a diverged network's rest
                return r
            if layout == "single":
                results = [one(s) for s in specs]
            else:
                n = min(len(specs), workers or torch.get_num_threads())   # this process's thread budget
                with intra_op_threads(1), ThreadPoolExecutor(n) as pool:
                    results = list(pool.map(one, specs))
    finally:
        bar.close()
    for r in results:
        r.preprocessor = preprocessor
        r.model = r.model.to(memory_format=torch.contiguous_format)
    return results


def search_base_lr(indices: list[np.ndarray], images: torch.Tensor, labels: torch.Tensor, recipe: Recipe, *,
                   seed: int, **train_kw) -> tuple[float, dict[float, float]]:
    """The recipe's base-lr search (All-CNN-C: 4 candidates x 2 runs), as one batched job.

    Run r of every candidate trains on `indices[r % len(indices)]` (e.g. the imbalanced subsets of
    the first repeats) from the same initial weights; a candidate scores the mean training loss of
    its runs' last curve interval (a diverged run scores inf). The test set is never used.
    Returns (best base lr, {candidate: score}).
    """
    candidates = recipe.lr_search or (recipe.base_lr,)
    runs = recipe.lr_search_runs
    specs = [NetworkSpec(indices=indices[r % len(indices)], init_seed=seed + r, batch_seed=seed + 1000 + r,
                         lr_scale=lr / recipe.base_lr) for lr in candidates for r in range(runs)]
    results = train_networks(specs, images, labels, recipe, **train_kw)
    scores = {lr: float(np.mean([np.inf if res.diverged or not res.curve else res.curve[-1]["train_loss"]
                                 for res in results[i * runs:(i + 1) * runs]]))
              for i, lr in enumerate(candidates)}
    return min(scores, key=scores.get), scores


def _train_vmap_groups(specs, source, ys, recipe, *, test_set, group_size, bar, forward, graph,
                       **common) -> list[TrainResult]:
    """vmap groups of networks that share their trainable layers; a CUDA out-of-memory error halves
    the group and retrains it (warned, and recorded in each result's group_size / oom_halvings)."""
    results: list[TrainResult | None] = [None] * len(specs)
    keys = [(s.trainable if isinstance(s.trainable, (str, type(None))) else tuple(s.trainable), _head(s))
            for s in specs]
    for key in dict.fromkeys(keys):
        todo = [i for i, k in enumerate(keys) if k == key]
        size, halvings = group_size or len(todo), 0
        while todo:
            group, shown = todo[:size], bar.done
            try:
                out = _train_vmap([specs[i] for i in group], source, ys, recipe, test_set=test_set, bar=bar,
                                  forward=forward, graph=graph, **common)
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
                size, halvings = max(1, size // 2), halvings + 1
                bar.update(shown - bar.done)       # the group's progress is given back: retried in halves
                warnings.warn(f"CUDA out of memory training {len(group)} networks in lockstep: retrying in groups "
                              f"of {size}", RuntimeWarning, stacklevel=2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            for i, r in zip(group, out):
                r.group_size, r.oom_halvings = len(group), halvings
                results[i] = r
            todo = todo[len(group):]
    return results


def _train_vmap(specs, source: ResidentImages, ys, recipe: Recipe, *, n_classes, in_channels, device, dtype,
                test_set, bar, forward: str = "vmap", graph: bool = False) -> list[TrainResult]:
    """K networks in lockstep: stacked parameters, one gather, one step for all.  forward: "vmap"
    (torch.func.vmap of grad) or "gemm" (stacked_forward and autograd); graph: the whole step
    through static buffers (_StaticStep), captured once as a CUDA graph and replayed on CUDA."""
    models = [_initial_model(s, recipe, n_classes=n_classes, in_channels=in_channels, device=device,
                             channels_last=False, dtype=dtype) for s in specs]
    if any(buf.numel() for m in models for buf in m.buffers()):
        raise ValueError(f"layout {forward!r} needs models without buffers (batch norm); {recipe.model} has some: "
                         f"use layout='single' or 'threads'")
    k = len(models)
    base = copy.deepcopy(models[0]).to("meta").train()
    trainable = _trainable(specs[0], models[0])
    mults = lr_multipliers(models[0], recipe, trainable)        # same for the group (grouped by trainable)
    names = [n for n, _ in models[0].named_parameters()]
    stacked = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in names}
    train_names = [n for n, m in zip(names, mults) if m != 0]
    train_p = {n: stacked[n] for n in train_names}
    frozen_p = {n: stacked[n] for n in names if n not in train_p}
    mults = [m for m in mults if m != 0]
    velocity = [torch.zeros_like(train_p[n]) for n in train_names]
    lr_scale = torch.tensor([s.lr_scale for s in specs], dtype=dtype, device=device)

    # one loss function for the group: plain cross-entropy, or class_loss on per-network stacked terms
    # (a cross-entropy network in a mixed group gets neutral terms: weights 1, no offsets or margins)
    terms = None if all(s.loss is None for s in specs) else \
        [(s.loss or neutral_terms(n_classes)).to(device, dtype) for s in specs]

    # dropout (All-CNN-C): each step's masks drawn from every network's own streams, outside vmap,
    # and passed in with the frozen parameters (models.dropout_masks); evaluation runs in eval mode
    shapes = dropout_shapes(models[0], (recipe.batch_size,) + tuple(source.images.shape[1:]))

    def loss_fn(p, frozen, x, y, t):
        logits = functional_call(base, {**p, **frozen}, (x,)).to(dtype)      # bf16 autocast: the loss in fp32
        loss = F.cross_entropy(logits, y) if t is None else class_loss(logits, y, **t)
        return loss, (loss.detach(), logits.detach())
    step = vmap(grad(loss_fn, has_aux=True), in_dims=(0, 0, 0, 0, None if terms is None else 0))
    if forward == "gemm":
        if not gemm_supported(models[0]):
            raise ValueError(f"layout 'gemm' runs flat nn.Sequential models of {', '.join(t.__name__ for t in GEMM_MODULES)}; "
                             f"{recipe.model} is not one: use layout='vmap'")
        step = _gemm_step(base, terms is not None, dtype)

    if terms is not None:     # stacked once: (K, C) weights before / after each network's switch, (K,) scalars
        first = [lt.at(0) for lt in terms]
        fixed = {key: torch.stack([f[key] for f in first]) for key in first[0]}
        early, late = torch.stack([lt.weights for lt in terms]), torch.stack([lt.late_weights for lt in terms])
        switch = torch.tensor([lt.switch for lt in terms], device=device)

        late_factor = torch.tensor([lt.late_lr for lt in terms], dtype=dtype, device=device)

    def stacked_terms(t: int):
        if terms is None:
            return None
        return {**fixed, "weights": torch.where((t >= switch).unsqueeze(-1), late, early)}

    def late_lr(t: int):
        """Each network's learning-rate factor at step t (Cao et al.'s drop at the DRW switch); 1 without terms."""
        return 1.0 if terms is None else torch.where(t >= switch, late_factor, torch.ones_like(late_factor))

    def body(b: dict):
        """One step of the K networks from its inputs: the gather, forward, backward and SGD update."""
        x, y = source.batch(b["idx"]), ys[b["idx"]]                                  # one gather for K networks
        with precision_context(recipe.precision, device):
            grads, (loss, logits) = step(train_p, {**frozen_p, **b["masks"]}, x, y, b["terms"])
        sgd_step_([train_p[n] for n in train_names], [grads[n] for n in train_names], velocity, lr=b["lr"],
                  momentum=recipe.momentum, weight_decay=recipe.weight_decay, lr_mults=mults)
        return loss, (logits.argmax(-1) == y).sum(1)
    whole_step = _StaticStep(body, capture=device.type == "cuda") if graph else body

    streams = [BatchStream(s.indices, batch_size=recipe.batch_size, seed=s.batch_seed, shuffle=s.shuffle)
               for s in specs]
    log = IntervalLog(k, iterations=recipe.iterations, device=device)
    alive, n_alive = torch.ones(k, dtype=torch.bool, device=device), k     # n_alive: no device sync per step
    reported = 0                                                             # network-iterations shown
    started = time.perf_counter()
    for start in range(0, recipe.iterations, recipe.eval_interval):
        n = min(recipe.eval_interval, recipe.iterations - start)
        batches = torch.stack([s.next_many(n) for s in streams], 1).to(device)     # (n, K, B)
        for t in range(start, start + n):
            inputs = {"idx": batches[t - start], "lr": learning_rate(recipe, t) * lr_scale * alive * late_lr(t),
                      "masks": dropout_masks(models, shapes, device=device, dtype=dtype) if shapes else {},
                      "terms": stacked_terms(t)}
            log.losses[t], log.hits[t] = whole_step(inputs)
            bar.update(n_alive)
            reported += n_alive
        end = start + n
        test = (lambda: _vmap_test_accuracy(base, {**train_p, **frozen_p}, test_set)) if test_set else None
        for j in log.close_interval(start, end, examples_per_step=recipe.batch_size, test_accuracy=test,
                                    lrs=[learning_rate(recipe, end - 1) * float(s) for s in lr_scale * late_lr(end - 1)]):
            alive[j] = False
            n_alive -= 1
        if not n_alive:
            break
    bar.update(k * recipe.iterations - reported)                              # diverged networks' rest
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / k          # the group's time, shared equally
    results = []
    for j, model in enumerate(models):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(stacked[name][j])
        results.append(TrainResult(model, log.done[j], log.diverged_at[j], log.curves[j], seconds,
                                   failure=log.failure[j]))
    return results


class _StaticStep:
    """A step `body(inputs) -> outputs` run through static input buffers: each call copies its
    inputs in and the outputs out.  On CUDA (capture=True) the body is captured once as a CUDA
    graph (after warm-up calls with lr 0, which leave the weights and the still-zero velocity as
    they are) and every later call is one replay: launch overhead paid once.  Without capture (a
    CPU) the same buffers feed an eager call, so the plumbing is what a CPU test checks.

    The body must be capturable: device tensors only, no host sync (BatchStream and dropout masks
    are drawn outside, per step, and copied in)."""

    WARMUP = 3        # eager calls on a side stream before capture (PyTorch's CUDA-graph recipe)

    def __init__(self, body, *, capture: bool):
        self.body, self.capture, self.static, self.outputs, self.graph = body, capture, None, None, None

    def _copy_in(self, inputs):
        torch.utils._pytree.tree_map(lambda dst, src: dst.copy_(src) if isinstance(dst, torch.Tensor) else dst,
                                     self.static, inputs)

    def __call__(self, inputs: dict):
        if self.static is None:
            self.static = torch.utils._pytree.tree_map(
                lambda v: v.clone() if isinstance(v, torch.Tensor) else v, inputs)     # terms None: no loss terms
            if self.capture:
                self._record()
        else:
            self._copy_in(inputs)
        if self.graph is None:
            outputs = self.body(self.static)
        else:
            self.graph.replay()
            outputs = self.outputs
        return tuple(o.clone() for o in outputs)

    def _record(self) -> None:
        lr = self.static["lr"]
        real_lr = lr.clone()
        lr.zero_()                                   # warm-up steps change nothing (velocity is still 0)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.body(self.static)
        torch.cuda.current_stream().wait_stream(side)
        lr.copy_(real_lr)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = self.body(self.static)


def _gemm_step(base: nn.Module, with_terms: bool, dtype: torch.dtype):
    """The "gemm" layout's step, with the vmap step's signature and results: per-network gradients
    of each network's own loss (their sum's gradient: the networks share no parameter)."""
    per_network = vmap(F.cross_entropy) if not with_terms else \
        vmap(lambda logits, y, t: class_loss(logits, y, **t))

    def step(train_p, frozen, x, y, t):
        p = {n: v.detach().requires_grad_() for n, v in train_p.items()}
        with torch.enable_grad():
            logits = stacked_forward(base, {**p, **frozen}, x).to(dtype)
            loss = per_network(logits, y) if t is None else per_network(logits, y, t)
            grads = torch.autograd.grad(loss.sum(), list(p.values()))
        return dict(zip(p, grads)), (loss.detach(), logits.detach())
    return step


@torch.no_grad()
def _vmap_test_accuracy(base: nn.Module, params: dict, test_set, batch_size: int = 1000) -> torch.Tensor:
    """Test accuracy of each of the K stacked networks, (K,)."""
    logits = vmap_predict(base, params, test_set[0], batch_size=batch_size)
    return (logits.argmax(-1) == test_set[1]).float().mean(1)


@torch.no_grad()
def vmap_predict(base: nn.Module, params: dict, source, *, batch_size: int = 1000) -> torch.Tensor:
    """Logits (K, N, C) of K stacked networks on every image of `source` (shared across networks), in
    eval mode (no dropout; `base` itself is left as it is)."""
    base = copy.deepcopy(base).eval()          # a meta-device module: nothing is copied but its structure
    call = vmap(lambda p, x: functional_call(base, p, (x,)), in_dims=(0, None))
    device = next(iter(params.values())).device
    return torch.cat([call(params, source.batch(torch.arange(i, min(i + batch_size, len(source)), device=device)))
                      for i in range(0, len(source), batch_size)], 1)


def predict_networks(models: list[nn.Module], images, *, device=None, batch_size: int = 1000) -> torch.Tensor:
    """Logits (K, N, C) of K networks of one architecture on preprocessed test images, batched when
    the models have no buffers (one vmapped pass per test batch), else one model at a time."""
    device = resolve_device(device)
    kinds: dict[tuple, list[int]] = {}          # one stacked pass per architecture (a cosine head is another)
    for i, m in enumerate(models):
        kinds.setdefault(tuple((n, type(x).__name__) for n, x in m.named_modules()), []).append(i)
    if len(kinds) > 1:
        out: list = [None] * len(models)
        for where in kinds.values():
            for i, logits in zip(where, predict_networks([models[i] for i in where], images, device=device,
                                                         batch_size=batch_size)):
                out[i] = logits
        return torch.stack(out)
    source = images if hasattr(images, "batch") else ResidentImages(images.to(device))
    if any(b.numel() for m in models for b in m.buffers()):
        return torch.stack([_predict(m.to(device), source, batch_size=batch_size, device=device) for m in models])
    base = copy.deepcopy(models[0]).to("meta")
    params = {n: torch.stack([dict(m.named_parameters())[n].detach().to(device) for m in models])
              for n, _ in models[0].named_parameters()}
    return vmap_predict(base, params, source, batch_size=batch_size)


# --- the "gemm" layout: K networks' layers as batched GEMMs ---------------------------------------

GEMM_MODULES = (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, SeededDropout)


def gemm_supported(model: nn.Module) -> bool:
    """Whether `stacked_forward` can run the model: a flat nn.Sequential of GEMM_MODULES."""
    return isinstance(model, nn.Sequential) and all(isinstance(m, GEMM_MODULES) and not list(m.children())
                                                    for m in model.children())


def _stacked_conv2d(m: nn.Conv2d, weight, bias, x):
    """K convolutions, each on its own batch, as one batched GEMM over im2col patches.

    x (K, B, C, H, W), weight (K, O, C, kh, kw), bias (K, O) -> (K, B, O, H', W')."""
    k, b, c, h, w = x.shape
    kh, kw = m.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = m.stride, m.padding, m.dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    patches = F.unfold(x.reshape(k * b, c, h, w), m.kernel_size, dilation=m.dilation, padding=m.padding,
                       stride=m.stride)                                    # (K B, C kh kw, L)
    patches = patches.view(k, b, c * kh * kw, ho * wo).transpose(2, 3).reshape(k, b * ho * wo, c * kh * kw)
    w2 = weight.reshape(k, weight.shape[1], -1).transpose(1, 2)            # (K, C kh kw, O)
    out = torch.bmm(patches, w2) if bias is None else torch.baddbmm(bias.unsqueeze(1), patches, w2)
    return out.view(k, b, ho * wo, -1).transpose(2, 3).reshape(k, b, -1, ho, wo)


def _flat(fn, x):
    """Apply a per-image op to (K, B, ...) by folding K into the batch."""
    y = fn(x.reshape((-1,) + x.shape[2:]))
    return y.view(x.shape[:2] + y.shape[1:])


def stacked_forward(model: nn.Module, params: dict, x: torch.Tensor) -> torch.Tensor:
    """Logits (K, B, classes) of K networks of `model`'s architecture with stacked `params`
    ({name: (K, ...)}), each on its own batch x (K, B, C, H, W).  Dropout masks ride in `params`
    as "<layer>.mask": (K, B, ...) (models.dropout_masks); a layer without one is the identity (eval)."""
    for name, m in model.named_children():
        if isinstance(m, nn.Conv2d):
            x = _stacked_conv2d(m, params[f"{name}.weight"], params.get(f"{name}.bias"), x)
        elif isinstance(m, nn.Linear):
            w, bias = params[f"{name}.weight"].transpose(1, 2), params.get(f"{name}.bias")
            x = torch.bmm(x, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, w)
        elif isinstance(m, nn.ReLU):
            x = torch.relu(x)
        elif isinstance(m, nn.Flatten):
            x = x.flatten(2)
        elif isinstance(m, SeededDropout):
            mask = params.get(f"{name}.mask")
            x = x if mask is None else x * mask
        elif isinstance(m, (nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            x = _flat(m, x)
        else:
            raise ValueError(f"layout 'gemm' cannot run layer {name!r} ({type(m).__name__}); it runs "
                             f"{', '.join(t.__name__ for t in GEMM_MODULES)}: use layout='vmap'")
    return x
