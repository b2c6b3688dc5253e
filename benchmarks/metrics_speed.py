"""ROC AUC speed: imbalance.training.metrics.roc_auc_ovr vs sklearn's roc_auc_score(multi_class='ovr').

Prints the best of N timings for each on 10,000 x 10 scores with ties, their ratio, and the
largest difference between the two values. Target: ours is not slower than sklearn.
Usage: python benchmarks/metrics_speed.py [--n 10000] [--classes 10] [--repeats 20]
"""
import argparse
import time

import numpy as np
import torch
from imbalance.training.metrics import roc_auc_ovr
from sklearn.metrics import roc_auc_score


def best_of(f, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    s = rng.integers(1, 20, size=(a.n, a.classes)).astype(np.float64)
    s /= s.sum(1, keepdims=True)
    y = rng.integers(0, a.classes, size=a.n)
    ours = best_of(lambda: roc_auc_ovr(y, s), a.repeats)
    theirs = best_of(lambda: roc_auc_score(y, s, multi_class="ovr", average="macro"), a.repeats)
    diff = abs(roc_auc_ovr(y, s) - roc_auc_score(y, s, multi_class="ovr", average="macro"))
    print(f"scores {a.n} x {a.classes}, torch threads {torch.get_num_threads()}")
    print(f"imbalance.training.metrics.roc_auc_ovr  {ours * 1e3:8.2f} ms")
    print(f"sklearn roc_auc_score (ovr)    {theirs * 1e3:8.2f} ms")
    print(f"speed-up {theirs / ours:.2f}x  |difference| {diff:.2e}")


if __name__ == "__main__":
    main()
