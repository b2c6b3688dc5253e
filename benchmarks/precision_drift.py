"""Reduced-precision drift (issue 14): the same seeds trained in fp32, tf32 and bf16 at 3 grid points.

For each grid point and method: the ROC AUC and accuracy of the reduced-precision networks minus the
fp32 ones (same subsets, initial weights and batches), as mean |difference| over repeats, beside the
between-repeat standard deviation of fp32 (the scale a precision change must stay well below).
LeNet-5 on MNIST ($IMBALANCE_DATA, else mnist-sample), the paper's recipe shortened to --iterations.

  python benchmarks/precision_drift.py --device cuda --iterations 2000
  python benchmarks/precision_drift.py --device cpu --iterations 20 --precisions bf16   # smoke run
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from imbalance.data.datasets import load_dataset  # noqa: E402
from imbalance.training.pipeline import run_grid_point  # noqa: E402
from imbalance.training.recipes import RECIPES, recipe_with  # noqa: E402

POINTS = ((10, 0.5), (100, 0.5), (1000, 0.9))   # step imbalance (rho, mu): mild, the paper's middle, extreme
METHODS = ("baseline", "ros", "rus")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precisions", default="tf32,bf16")
    ap.add_argument("--layout", default="auto")
    a = ap.parse_args(argv)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = load_dataset("mnist") if os.environ.get("IMBALANCE_DATA") else load_dataset("mnist-sample")
    base = recipe_with(RECIPES["lenet5-mnist"], iterations=a.iterations, eval_interval=a.iterations)
    print(f"precision drift on {device}, data {data.name}, LeNet-5 {a.iterations} iterations, "
          f"{a.repeats} repeats, methods {', '.join(METHODS)}")
    print(f"{'point':22s} {'method':9s} {'precision':9s} {'|dAUC| mean':>12s} {'AUC sd fp32':>12s} "
          f"{'|dacc| mean':>12s} {'acc sd fp32':>12s} {'seconds':>8s}")
    for rho, mu in POINTS:
        runs, seconds = {}, {}
        for precision in ["fp32"] + a.precisions.split(","):
            t = time.perf_counter()
            result = run_grid_point(data, imbalance="step", rho=rho, mu=mu, methods=list(METHODS),
                                    repeats=a.repeats, seed=0, recipe=recipe_with(base, precision=precision),
                                    device=device, layout=a.layout, progress=False)
            seconds[precision] = time.perf_counter() - t
            runs[precision] = {(r["method"], r["repeat"]): r for r in result.records}
        for method in METHODS:
            keys = [(method, r) for r in range(a.repeats)]
            ref = runs["fp32"]
            auc, acc = (np.array([ref[k][m] for k in keys], dtype=float) for m in ("roc_auc", "accuracy"))
            for precision in a.precisions.split(","):
                other = runs[precision]
                d_auc = np.abs(np.array([other[k]["roc_auc"] for k in keys], dtype=float) - auc)
                d_acc = np.abs(np.array([other[k]["accuracy"] for k in keys], dtype=float) - acc)
                print(f"step rho={rho} mu={mu:<8} {method:9s} {precision:9s} {np.nanmean(d_auc):12.5f} "
                      f"{np.std(auc, ddof=1) if len(auc) > 1 else float('nan'):12.5f} {np.nanmean(d_acc):12.4f} "
                      f"{np.std(acc, ddof=1) if len(acc) > 1 else float('nan'):12.4f} {seconds[precision]:8.1f}")


if __name__ == "__main__":
    main()
