"""Throughput: this project's batched trainer vs the training loop a typical user writes.

Measures, in one run on one machine:
  reference  Dataset + DataLoader(shuffle=True, batch_size=64) + nn.Module + torch.optim.SGD,
             one LeNet-5 at a time (the loop a typical PyTorch user writes);
  ours       imbalance.training.batched.train_networks on a grid point's worth of LeNet-5 networks
             (K networks, each its own seed, subset and lr), in the device's default layout and
             any other layouts asked for;
  peak       a float32 matrix multiply on the same device, as the physical limit;
  kernels    (CPU) only the convolution and matrix-multiply kernels of LeNet-5 training steps, in
             the threads layout: the ceiling of any eager PyTorch trainer on this CPU.
Prints model-iterations per second, the ratio to the reference, achieved GFLOP/s, the fraction
of the matmul peak, and (CUDA) the projected hours for the paper's full MNIST grid.

A shared machine's speed drifts by 10% or more within a minute, so everything is measured in
`--rounds` interleaved rounds (peak, reference, trainers, kernels; default 3 on CPU) and each
figure is the median over the rounds: model-it/s of the rates, "x reference" and "% peak" of
each round's own ratios (a round's peak is the better of a matmul before and after it), with the
range of the rounds' % peak beside it.

  python benchmarks/throughput.py                      # CPU here: K = 8 networks
  python benchmarks/throughput.py --device cuda --networks 64,256,1024 --layouts vmap,single
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from imbalance.training.batched import NetworkSpec, default_layout, intra_op_threads, train_networks  # noqa: E402
from imbalance.training.models import lenet5  # noqa: E402
from imbalance.training.recipes import RECIPES, recipe_with  # noqa: E402

BATCH = 64                      # the paper's LeNet-5 batch
MNIST_GRID_NETWORKS = 22_500    # the paper's MNIST grid (section 4.1)
MNIST_ITERATIONS = 10_000       # per network (Caffe's LeNet solver)


def lenet_train_flop(batch: int = BATCH) -> float:
    """FLOP of one training iteration: forward multiply-adds x 2 (FLOP) x 3 (forward + two backward GEMMs)."""
    macs = 24 * 24 * 20 * 1 * 25 + 8 * 8 * 50 * 20 * 25 + 800 * 500 + 500 * 10
    return 3 * 2 * macs * batch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, n: int, repeats: int = 10) -> float:
    """Best float32 GFLOP/s of an n x n x n matrix product (TF32 off: true float32)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        best = float("inf")
        for _ in range(repeats + 2):
            sync(device)
            t = time.perf_counter()
            a @ b
            sync(device)
            best = min(best, time.perf_counter() - t)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    return 2 * n ** 3 / best / 1e9


def kernels_only(device, *, workers: int, steps: int = 100) -> float:
    """Model-iterations per second of the convolution and matrix-multiply kernels of LeNet-5
    training steps alone (channels-last, as the threads layout runs them): conv1 forward and
    weight gradient, conv2 forward and both gradients, the two linear layers' three GEMMs each,
    on fixed tensors, with no pooling, activation, loss, update or Python work between them.
    `workers` threads of one intra-op thread each, like the threads layout. CPU only."""
    cl, cb = torch.channels_last, torch.ops.aten.convolution_backward

    def kernels():
        t = lambda *shape: torch.randn(*shape, device=device)
        x, w1, b1, g1 = (t(BATCH, 1, 28, 28).contiguous(memory_format=cl), t(20, 1, 5, 5).contiguous(memory_format=cl),
                         t(20), t(BATCH, 20, 24, 24).contiguous(memory_format=cl))
        h, w2, b2, g2 = (t(BATCH, 20, 12, 12).contiguous(memory_format=cl), t(50, 20, 5, 5).contiguous(memory_format=cl),
                         t(50), t(BATCH, 50, 8, 8).contiguous(memory_format=cl))
        linear = [(t(BATCH, 800), t(500, 800), t(500), t(BATCH, 500)), (t(BATCH, 500), t(10, 500), t(10), t(BATCH, 10))]

        def step():
            F.conv2d(x, w1, b1)
            cb(g1, x, w1, [20], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True])
            F.conv2d(h, w2, b2)
            cb(g2, h, w2, [50], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, True])
            for a, w, b, g in linear:
                torch.addmm(b, a, w.t()), g @ w, g.t() @ a
        return step

    with intra_op_threads(1):
        steps_of = [kernels() for _ in range(workers)]
        for step in steps_of:
            step()                                          # warm-up: oneDNN primitives created

        def run(step):
            for _ in range(steps):
                step()
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, steps_of))
        return workers * steps / (time.perf_counter() - start)


class Digits(torch.utils.data.Dataset):
    """What a typical user writes: float images in [0, 1), one sample per __getitem__."""

    def __init__(self, images, labels):
        self.images, self.labels = images.float() / 256, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def reference_loop(images, labels, device, iterations: int) -> float:
    """Iterations per second of one LeNet-5 trained the usual way (after a warm-up)."""
    loader = torch.utils.data.DataLoader(Digits(images, labels), batch_size=BATCH, shuffle=True, drop_last=True)
    model = lenet5(seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    done, warmup, start = 0, 10, None
    while done < iterations + warmup:
        for x, y in loader:
            if done == warmup:
                sync(device)
                start = time.perf_counter()
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == iterations + warmup:
                break
    sync(device)
    return iterations / (time.perf_counter() - start)


def ours(images, labels, device, *, networks: int, iterations: int, layout: str, precision: str = "fp32") -> float:
    """Model-iterations per second of train_networks on `networks` LeNet-5s (after a warm-up call);
    NaN if the K networks do not fit in the device's memory."""
    rng = np.random.default_rng(0)
    specs = [NetworkSpec(indices=np.sort(rng.choice(len(labels), len(labels) // 2, replace=False)),
                         init_seed=k, batch_seed=1000 + k, lr_scale=1.0) for k in range(networks)]
    run = lambda n: train_networks(specs, images, labels, recipe_with(RECIPES["lenet5-mnist"], iterations=n,
                                                                    eval_interval=n, precision=precision),
                                   n_classes=10, device=device, layout=layout, progress=False,
                                   group_size=networks)
    try:
        run(5)                                   # warm-up: kernels chosen, memory allocated, graphs captured
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return float("nan")
    sync(device)
    t = time.perf_counter()
    run(iterations)
    sync(device)
    return networks * iterations / (time.perf_counter() - t)


def load_digits(data_root):
    from imbalance.data.datasets import load_dataset
    if data_root or os.environ.get("IMBALANCE_DATA"):
        ds = load_dataset("mnist", root=data_root)
    else:
        ds = load_dataset("mnist-sample")
    return ds.train_images, ds.train_labels, ds.name


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    ap.add_argument("--networks", default=None, help="comma-separated K values (default: CPU 8, CUDA 256)")
    ap.add_argument("--layouts", default="auto",
                    help="comma-separated: auto, single, threads, vmap, gemm, vmap-graph, gemm-graph")
    ap.add_argument("--precisions", default="fp32", help="comma-separated recipe precisions: fp32, tf32, bf16")
    ap.add_argument("--iterations", type=int, default=None, help="timed iterations per network")
    ap.add_argument("--reference-iterations", type=int, default=None)
    ap.add_argument("--data-root", default=None, help="full MNIST here (default: $IMBALANCE_DATA, else mnist-sample)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds, medians reported (default: CPU 3, CUDA 1)")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False   # fp32 rows: true FP32
    ks = [int(k) for k in (a.networks or ("256" if cuda else "8")).split(",")]
    iters = a.iterations or (200 if cuda else 60)
    ref_iters = a.reference_iterations or (500 if cuda else 150)
    rounds = a.rounds or (1 if cuda else 3)
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    images, labels, dataset = load_digits(a.data_root)
    name = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()} CPU"
    print(f"device {device} ({name}); torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"usable cores {len(os.sched_getaffinity(0))}; data {dataset} ({len(labels)} train images); "
          f"{rounds} round(s); load average {os.getloadavg()[0]:.2f} (a shared machine: compare within a run)")
    flop = lenet_train_flop()
    trainers = [("reference DataLoader loop", 1, lambda: reference_loop(images, labels, device, ref_iters))]
    for precision in a.precisions.split(","):
        for layout in a.layouts.split(","):
            for k in ks:
                shown = default_layout(device, lenet5(seed=0), k) if layout == "auto" else layout
                label = f"imbalance {shown}" + ("" if precision == "fp32" else f" {precision}")
                trainers.append((label, k, lambda k=k, layout=layout, precision=precision: ours(
                    images, labels, device, networks=k, iterations=iters, layout=layout, precision=precision)))
    if not cuda:
        workers = torch.get_num_threads()
        trainers.append(("kernels only (ceiling)", workers, lambda: kernels_only(device, workers=workers)))
    peaks, rates = [], [[] for _ in trainers]
    for r in range(rounds):
        before = matmul_peak(device, 8192 if cuda else 2048)
        for i, (label, k, measure) in enumerate(trainers):
            rates[i].append(measure())
        peaks.append(max(before, matmul_peak(device, 8192 if cuda else 2048)))   # the round's best: its limit
        print(f"round {r + 1}: peak {peaks[-1]:,.0f} GFLOP/s; "
              + "; ".join(f"{label} K={k} {rate[-1]:.1f}" for (label, k, _), rate in zip(trainers, rates)))
    peak = float(np.median(peaks))
    print(f"float32 matmul peak: {peak:,.0f} GFLOP/s (median; rounds {min(peaks):,.0f}-{max(peaks):,.0f}); "
          f"LeNet-5 training: {flop / 1e9:.3f} GFLOP per iteration (batch {BATCH})")
    print(f"\n{'trainer':28s} {'K':>5s} {'model-it/s':>11s} {'x reference':>11s} {'GFLOP/s':>9s} {'% peak':>7s}"
          + f" {'(rounds)':>13s}" + "  full MNIST grid (h)")
    results = []
    for (label, k, _), rate_r in zip(trainers, rates):
        rate = float(np.median(rate_r))
        ratio = float(np.median([x / ref for x, ref in zip(rate_r, rates[0])]))      # each round's own ratio
        fractions = [x * flop / 1e9 / p for x, p in zip(rate_r, peaks)]
        fraction = float(np.median(fractions))
        gflops = rate * flop / 1e9
        hours = MNIST_GRID_NETWORKS * MNIST_ITERATIONS / rate / 3600
        spread = f"{100 * min(fractions):.0f}-{100 * max(fractions):.0f}%"
        print(f"{label:28s} {k:5d} {rate:11.1f} {ratio:11.2f} {gflops:9.1f} {100 * fraction:6.1f}% {spread:>13s}"
              + f"  {hours:10.1f}" + ("  (out of memory)" if rate != rate else ""))
        results.append(dict(trainer=label, networks=k, model_iterations_per_s=rate, ratio=ratio,
                            gflops=gflops, peak_fraction=fraction, peak_fraction_rounds=fractions,
                            rates_rounds=rate_r, grid_hours=hours))
    if a.json:
        Path(a.json).write_text(json.dumps(dict(device=str(device), name=name, peak_gflops=peak, peaks_rounds=peaks,
                                                rows=results), indent=1))


if __name__ == "__main__":
    main()
