"""Exactness of the batched trainer on CUDA (run by benchmarks/gpu_check.sh).

1. Every lockstep layout (vmap, gemm, vmap-graph, gemm-graph: CUDA-graph capture) vs one network at
   a time, float64, 200 steps: max relative difference <= 1e-5.
2. The same in float32 (TF32 off) after 1 and after 200 steps: printed, with the 1-step bound
   checked; after 200 steps float32 round-off differences have grown through SGD (see README).
3. All-CNN-C with dropout (16x16 images), vmap and gemm vs alone, float64, 5 steps.
4. One grid point's methods trained batched vs one at a time: the metrics side by side.
Data: MNIST from $IMBALANCE_DATA when set, else random images (the arithmetic is what is checked).
IMBALANCE_CHECK_DEVICE=cpu IMBALANCE_CHECK_SMOKE=1: a seconds-long CPU smoke run of this script.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from imbalance.training.batched import NetworkSpec, train_networks  # noqa: E402
from imbalance.training.pipeline import METHODS, run_grid_point  # noqa: E402
from imbalance.training.recipes import RECIPES, recipe_with  # noqa: E402

DEVICE = os.environ.get("IMBALANCE_CHECK_DEVICE", "cuda")   # "cpu" only to smoke-test this script
SMOKE = os.environ.get("IMBALANCE_CHECK_SMOKE") == "1"      # tiny sizes: the script's mechanics only
STEPS = 3 if SMOKE else 200
LAYOUTS = ("vmap", "gemm", "vmap-graph", "gemm-graph")


def dataset():
    if os.environ.get("IMBALANCE_DATA"):
        from imbalance.data.datasets import load_dataset
        return load_dataset("mnist")
    from imbalance.data.datasets import ImageDataset
    g = torch.Generator().manual_seed(0)
    img = lambda n: torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    lab = lambda n: torch.arange(n) % 10
    n, n_test = (600, 200) if SMOKE else (6000, 1000)
    return ImageDataset("random", tuple("0123456789"), img(n), lab(n), img(n_test), lab(n_test), "random")


def max_rel(a, b):
    return max(((p - q).abs().max() / p.abs().max()).item() for x, y in zip(a, b)
               for p, q in zip(x.model.parameters(), y.model.parameters()))


def compare(ds, *, dtype, iterations, layout="vmap", batch_size=64, k=4):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=iterations, eval_interval=iterations,
                         batch_size=batch_size)
    rng = np.random.default_rng(0)
    specs = [NetworkSpec(indices=np.sort(rng.choice(len(ds.train_labels), 2000)), init_seed=j, batch_seed=50 + j,
                         lr_scale=(1.0, 0.5)[j % 2]) for j in range(k - 1)]
    specs.append(NetworkSpec(indices=np.arange(500), init_seed=0, batch_seed=7, lr_scale=0.1, trainable="output"))
    kw = dict(n_classes=10, device=DEVICE, dtype=dtype, progress=False)
    single = train_networks(specs, ds.train_images, ds.train_labels, recipe, layout="single", **kw)
    stacked = train_networks(specs, ds.train_images, ds.train_labels, recipe, layout=layout, **kw)
    return max_rel(single, stacked)


def compare_dropout(layout, *, iterations=5):
    """All-CNN-C (dropout 0.2 / 0.5) on random 16x16 images: lockstep layout vs alone, float64."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(64) % 10
    recipe = recipe_with(RECIPES["allcnn-cifar10"], iterations=iterations, eval_interval=iterations, batch_size=8,
                         preprocessing="scale", lr_search=(), base_lr=0.01)
    specs = [NetworkSpec(indices=np.arange(64), init_seed=j, batch_seed=j) for j in range(3)]
    kw = dict(n_classes=10, device=DEVICE, dtype=torch.float64, progress=False)
    return max_rel(train_networks(specs, images, labels, recipe, layout="single", **kw),
                   train_networks(specs, images, labels, recipe, layout=layout, **kw))


def main():
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    ds = dataset()
    name = torch.cuda.get_device_name() if DEVICE.startswith("cuda") else DEVICE
    print(f"exactness on {name} (torch {torch.__version__}), data {ds.name}")
    failures = 0
    checks = [(layout, torch.float64, STEPS, 1e-5) for layout in LAYOUTS] + \
        [(layout, torch.float32, 1, 1e-5) for layout in LAYOUTS] + [("vmap", torch.float32, STEPS, None)]
    for layout, dtype, iterations, bound in checks:
        t = time.perf_counter()
        d = compare(ds, dtype=dtype, iterations=iterations, layout=layout)
        verdict = "" if bound is None else ("PASS" if d <= bound else "FAIL")
        failures += verdict == "FAIL"
        print(f"{layout:10s} vs single, {str(dtype):14s} {iterations:4d} steps: max rel diff {d:.2e} "
              f"{'(bound %.0e) ' % bound if bound else '(round-off grown by SGD; informative) '}{verdict} "
              f"[{time.perf_counter() - t:.1f} s]")
    for layout in ("vmap", "gemm"):
        t = time.perf_counter()
        d = compare_dropout(layout)
        failures += d > 1e-10
        print(f"All-CNN-C dropout, {layout:4s} vs single, float64, 5 steps: max rel diff {d:.2e} (bound 1e-10) "
              f"{'PASS' if d <= 1e-10 else 'FAIL'} [{time.perf_counter() - t:.1f} s]")
    torch.backends.cudnn.allow_tf32 = True
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=30 if SMOKE else 300, eval_interval=10 if SMOKE else 100)
    methods = ["baseline", "ros", "two-phase-ros", "baseline-thresh"] if SMOKE else list(METHODS)
    point = dict(imbalance="step", rho=10, mu=0.5, n_max=50 if SMOKE else 400, methods=methods, repeats=2, seed=0,
                 recipe=recipe, device=DEVICE, progress=False)
    t = time.perf_counter()
    batched = run_grid_point(ds, batched=True, **point)
    tb = time.perf_counter() - t
    t = time.perf_counter()
    alone = run_grid_point(ds, batched=False, **point)
    ta = time.perf_counter() - t
    print(f"\none grid point ({len(batched.records)} records): batched {tb:.1f} s, one at a time {ta:.1f} s")
    print(f"{'method':16s} {'rep':>3s} {'AUC batched':>12s} {'AUC alone':>10s} {'acc batched':>12s} {'acc alone':>10s}")
    worst = 0.0
    for b, a in zip(batched.records, alone.records):
        worst = max(worst, abs(b["roc_auc"] - a["roc_auc"]))
        print(f"{b['method']:16s} {b['repeat']:3d} {b['roc_auc']:12.5f} {a['roc_auc']:10.5f} "
              f"{b['accuracy']:12.4f} {a['accuracy']:10.4f}")
    print(f"largest ROC AUC difference: {worst:.2e}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
