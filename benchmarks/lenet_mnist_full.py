"""LeNet-5 on full MNIST with the paper's recipe (Caffe's lenet_solver: 10,000 iterations of 64).

The study requires a test error below 1% from this baseline.  Usage, from the project root:
    PYTHONPATH=lib .venv/bin/python benchmarks/lenet_mnist_full.py [--data-root ../shared/data]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from imbalance.data.datasets import load_dataset
from imbalance.training.loop import resolve_device
from imbalance.training.models import lenet5
from imbalance.training.recipes import RECIPES, recipe_with
from imbalance.training.single import evaluate, train_network

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder holding mnist/ (default: ../shared/data)")
    parser.add_argument("--iterations", type=int, default=None, help="override the recipe's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recipe = RECIPES["lenet5-mnist"]
    if args.iterations is not None:
        recipe = recipe_with(recipe, iterations=args.iterations)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {device} ({name or 'cpu'}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")

    ds = load_dataset("mnist", root=args.data_root)
    train_x, train_y, test_x, test_y = ds.train_images, ds.train_labels, ds.test_images, ds.test_labels
    print(f"data: {len(train_y)} train / {len(test_y)} test images from {args.data_root}")
    started = time.perf_counter()
    result = train_network(lenet5(seed=args.seed), train_x, train_y,
                           np.arange(len(train_y), dtype=np.int64), recipe, seed=args.seed,
                           device=device)
    priors = np.bincount(train_y.numpy(), minlength=10) / len(train_y)
    ev = evaluate(result.model, test_x, test_y, priors=priors, device=device,
                  preprocessor=result.preprocessor)
    wall = time.perf_counter() - started
    for point in result.curve:
        print(f"  iteration {point['iteration']:>6}  lr {point['lr']:.6f}  "
              f"train loss {point['train_loss']:.4f}  train acc {point['train_accuracy']:.4f}")
    if result.diverged:
        print(f"DIVERGED at iteration {result.diverged_at}")
    print(f"recipe: {recipe.name}, {result.iterations_done} iterations of {recipe.batch_size}")
    print(f"test error: {100 * (1 - ev.accuracy):.2f}%")
    print(f"ROC AUC: {ev.roc_auc:.6f}")
    print(f"wall time: {wall:.1f} s (training {result.seconds:.1f} s, "
          f"{1000 * result.seconds / max(result.iterations_done, 1):.1f} ms/iteration)")
    print(f"study requirement (test error < 1%): {'met' if ev.accuracy > 0.99 else 'NOT met'}")


if __name__ == "__main__":
    main()
