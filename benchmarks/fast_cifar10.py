"""The fast CIFAR-10 recipe: balanced test accuracy and seconds per network, single and batched.

Trains on the full balanced training set of CIFAR-10 (JPEG copy) and evaluates on its test set
(eval mode, the recipe's mirror TTA). Prints one line per (layout, K): seconds per network (the job's
wall time / K, whitening fit included), each network's balanced test accuracy, their mean, and the
1-minute load average before and after (a shared machine). Usage, from the project root:
    PYTHONPATH=lib .venv/bin/python benchmarks/fast_cifar10.py --recipe fast-cifar10-cpu \
        --runs single:1,threads:2,grouped:2,vmap:2           # CPU (K = 2)
    PYTHONPATH=lib python benchmarks/fast_cifar10.py --recipe fast-cifar10 --device cuda \
        --runs single:5,vmap:8,vmap:32,grouped:8             # GPU (mean of 5 single seeds)
"single:N" trains N networks one after another (seeds 0..N-1); "<layout>:K" trains K at once.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from imbalance.data.datasets import load_dataset
from imbalance.training.batched import NetworkSpec
from imbalance.training.fast import FAST_RECIPES, fast_recipe_with, train_fast_networks
from imbalance.training.loop import resolve_device
from imbalance.training.single import evaluate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast-cifar10-cpu", choices=sorted(FAST_RECIPES))
    parser.add_argument("--runs", default="single:1,threads:2",
                        help="comma-separated layout:K (default single:1,threads:2)")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder holding cifar10-jpg.tar.gz (default: ../shared/data)")
    parser.add_argument("--iterations", type=int, default=None, help="override the recipe's")
    parser.add_argument("--widths", default=None, help="override the recipe's, e.g. 32,64,128")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's")
    parser.add_argument("--seed", type=int, default=0, help="first init seed (batch seeds: +1000)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch); default: torch's")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = []
    for item in args.runs.split(","):
        layout, _, k = item.partition(":")
        if layout not in ("single", "grouped", "vmap", "threads") or not k.isdigit() or int(k) < 1:
            raise ValueError(f"--runs: expected layout:K with layout single/grouped/vmap/threads, got {item!r}")
        runs.append((layout, int(k)))
    overrides = {}
    if args.iterations:
        overrides.update(iterations=args.iterations, eval_interval=args.iterations)
    if args.widths:
        overrides["widths"] = tuple(int(w) for w in args.widths.split(","))
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    recipe = fast_recipe_with(FAST_RECIPES[args.recipe], **overrides)
    # one curve point, at the end: the benchmark times training, then evaluates once
    recipe = fast_recipe_with(recipe, eval_interval=recipe.iterations)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{os.cpu_count()} cores")
    ds = load_dataset("cifar10-jpg", root=args.data_root)
    print(f"data: CIFAR-10 (JPEG copy), {len(ds.train_labels)} train / {len(ds.test_labels)} test, "
          f"from {ds.source}")
    print(f"recipe: {recipe}")
    everything = np.arange(len(ds.train_labels), dtype=np.int64)
    priors = np.bincount(ds.train_labels.numpy(), minlength=10) / len(ds.train_labels)
    rows = []
    for layout, k in runs:
        specs = [NetworkSpec(indices=everything, init_seed=args.seed + i, batch_seed=args.seed + 1000 + i)
                 for i in range(k)]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        if layout == "single":
            results = [train_fast_networks([s], ds.train_images, ds.train_labels, recipe, n_classes=10,
                                           device=device, layout="single")[0] for s in specs]
        else:
            results = train_fast_networks(specs, ds.train_images, ds.train_labels, recipe, n_classes=10,
                                          device=device, layout=layout)
        wall = time.perf_counter() - started
        evals = [evaluate(r.model, ds.test_images, ds.test_labels, priors=priors, device=device,
                          preprocessor=r.preprocessor) for r in results]
        accs = [e.balanced_accuracy for e in evals]
        row = dict(recipe=recipe.name, layout=layout, k=k, iterations=recipe.iterations,
                   widths=list(recipe.widths), batch_size=recipe.batch_size, device=str(device), device_name=name,
                   seconds_per_network=wall / k, eval_seconds=time.perf_counter() - started - wall,
                   balanced_accuracy=accs, mean_balanced_accuracy=float(np.mean(accs)),
                   diverged=[r.diverged for r in results], load_before=load_before,
                   load_after=os.getloadavg()[0])
        rows.append(row)
        spread = f" (min {min(accs):.4f}, max {max(accs):.4f})" if k > 1 else ""
        print(f"{layout:>8} K={k:<3} {row['seconds_per_network']:8.1f} s/network  balanced test accuracy "
              f"{row['mean_balanced_accuracy']:.4f}{spread}  eval {row['eval_seconds']:.1f} s  "
              f"load {load_before:.2f} -> {row['load_after']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
