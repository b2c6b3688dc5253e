"""Where a trainer's images come from, and how raw uint8 pixels become network inputs.

- `Preprocessor`: the recipe's preprocessing ('scale', 'gcn-zca', 'imagenet'), fitted once.
- `ResidentImages`: preprocessed images held on the training device; a batch is one gather.
- `StreamedImages`: an image folder decoded on demand with the ImageNet crops (ILSVRC-2012).
Recipes are passed in (duck-typed: the fields named below), so this module imports no trainer.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import numpy as np
import torch

from imbalance.catalog import ZCA_FITS


class Recipe(Protocol):
    """The recipe fields preprocessing reads (`imbalance.training.recipes.Recipe` has them all)."""
    preprocessing: str
    gcn_scale: float
    zca_epsilon: float
    resize_size: int
    crop_size: int


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per RGB channel of [0, 1] pixels (torchvision's models)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _gcn(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Global contrast normalisation of flat images (pylearn2's global_contrast_normalize with
    subtract_mean, L2 norm, sqrt_bias 0): each image minus its mean, scaled to L2 norm `scale`."""
    x = x - x.mean(1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True) / scale
    return x / torch.where(norm < 1e-8, torch.ones_like(norm), norm)


class Preprocessor:
    """uint8 (N, C, H, W) images -> float32, as the recipe's `preprocessing` says:

    - 'scale': x / 256 (Caffe's `scale: 0.00390625`).
    - 'gcn-zca': GCN to L2 norm `gcn_scale`, then ZCA whitening (pylearn2, as in Goodfellow et
      al.'s maxout and Springenberg et al.): W = V diag(1 / sqrt(lambda + zca_epsilon)) V^T from
      the eigendecomposition of the GCN'd training images' covariance; fitted in float64 on the
      images given to `fit`, applied in float32 as (x - mean) W.
    - 'imagenet': x / 255, minus the ImageNet mean, divided by its std, per channel.

    zca_fit says which images 'gcn-zca' is fitted on: 'full' (all images given to `fit`, e.g. the
    dataset's balanced training set, shared by a study's networks) or 'subset' (only the
    positions `fit(images, subset=...)` names, e.g. a repeat's imbalanced training subset: the
    leak-free choice; the paper does not say which it used).  It is recorded in `zca_fit`, and
    `n_fitted` counts the images the whitening was fitted on.
    """

    def __init__(self, recipe: Recipe, *, zca_fit: str = "full"):
        if zca_fit not in ZCA_FITS:
            raise ValueError(f"zca_fit must be one of {ZCA_FITS}, got {zca_fit!r}")
        self.kind, self.gcn_scale, self.zca_epsilon = (recipe.preprocessing, recipe.gcn_scale,
                                                       recipe.zca_epsilon)
        self.zca_fit = zca_fit
        self.mean = self.whiten = None
        self.n_fitted = 0

    def fit(self, images: torch.Tensor, *, subset=None, chunk: int = 4096) -> Preprocessor:
        """Fit on `images` (zca_fit 'full') or on `images[subset]` (zca_fit 'subset'; `subset`:
        positions into images, duplicates counted once, e.g. a resampled set's indices)."""
        check_uint8(images, "images")
        if self.zca_fit == "full" and subset is not None:
            raise ValueError("subset is given but zca_fit is 'full': pass zca_fit='subset' to "
                             "fit on the subset, or drop subset to fit on all images")
        if self.zca_fit == "subset":
            if subset is None:
                raise ValueError("zca_fit 'subset' needs subset=: positions into images "
                                 "(e.g. the imbalanced training subset's indices)")
            subset = subset.cpu() if isinstance(subset, torch.Tensor) else torch.as_tensor(np.asarray(subset))
            if subset.ndim != 1 or subset.numel() == 0 or subset.is_floating_point() \
                    or subset.dtype == torch.bool or subset.min() < 0 or subset.max() >= len(images):
                raise ValueError(f"subset must be a non-empty 1-d array of integer positions in "
                                 f"[0, {len(images)}), got dtype {subset.dtype} and shape "
                                 f"{tuple(subset.shape)}")
            images = images[torch.unique(subset).to(images.device)]
        self.n_fitted = len(images)
        if self.kind == "gcn-zca":
            x = images.flatten(1)
            mean = sum(_gcn(c.double(), self.gcn_scale).sum(0) for c in x.split(chunk)) / len(x)
            cov = sum((y := _gcn(c.double(), self.gcn_scale) - mean).T @ y for c in x.split(chunk))
            eigenvalues, vectors = torch.linalg.eigh(cov / len(x))
            whiten = (vectors * (eigenvalues + self.zca_epsilon).rsqrt()) @ vectors.T
            self.mean, self.whiten = mean.float(), whiten.float()
        return self

    def transform(self, images: torch.Tensor, *, chunk: int = 4096) -> torch.Tensor:
        check_uint8(images, "images")
        if self.kind == "scale":
            return images.float() * (1 / 256)
        if self.kind == "imagenet":
            mean, std = (torch.tensor(v, device=images.device).view(-1, 1, 1)
                         for v in (IMAGENET_MEAN, IMAGENET_STD))
            return (images.float() / 255 - mean) / std
        if self.whiten is None:
            raise ValueError("gcn-zca preprocessing must be fitted first: call fit(train_images)")
        mean, whiten = self.mean.to(images.device), self.whiten.to(images.device)
        out = [(_gcn(c.flatten(1).float(), self.gcn_scale) - mean) @ whiten
               for c in images.split(chunk)]
        return torch.cat(out).view(images.shape)


def check_uint8(images, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"{name} must be a uint8 tensor shaped (N, C, H, W), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} "
                         f"{tuple(getattr(images, 'shape', ()))}")


class ImageSource(Protocol):
    """Where a trainer gets batches: float32 (B, C, H, W) images at positions `idx`."""
    def __len__(self) -> int: ...
    def batch(self, idx: torch.Tensor) -> torch.Tensor: ...


class ResidentImages:
    """Preprocessed float images held on the training device; a batch is one indexing op."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx]


class StreamedImages:
    """Images decoded on demand from a map-style dataset of (image, label), e.g. an ImageFolder.

    Each image: shorter side resized to `resize_size`; in training a random `crop_size` square
    and a horizontal flip with probability 1/2, in test the centre crop; then 'imagenet'
    normalisation.  The crops and flips come from per-image seeds drawn from `seed`, so they do
    not depend on `num_workers` nor touch the global RNG.
    """

    def __init__(self, dataset, *, train: bool, recipe: Recipe, seed: int = 0,
                 num_workers: int = 0):
        self.dataset, self.train, self.num_workers = dataset, train, num_workers
        self.resize_size, self.crop_size = recipe.resize_size, recipe.crop_size
        self.preprocessor = Preprocessor(replace(recipe, preprocessing="imagenet"))
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx).cpu().tolist()
        seeds = (torch.randint(2**62, (len(idx),), generator=self._generator).tolist()
                 if self.train else [None] * len(idx))
        per_worker = -(-len(idx) // max(1, self.num_workers))  # split the batch among workers
        loader = torch.utils.data.DataLoader(list(zip(idx, seeds)), batch_size=per_worker,
                                             collate_fn=self._load, num_workers=self.num_workers)
        return self.preprocessor.transform(torch.cat(list(loader)))

    def _load(self, items) -> torch.Tensor:
        return torch.stack([self._crop(self.dataset[i][0], s) for i, s in items])

    def _crop(self, image, seed: int | None) -> torch.Tensor:
        import torchvision.transforms.functional as TF
        if not isinstance(image, torch.Tensor):  # PIL
            image = TF.pil_to_tensor(TF.resize(image.convert("RGB"), self.resize_size))
        else:
            image = TF.resize(image, [self.resize_size], antialias=True)
        size, (h, w) = self.crop_size, image.shape[-2:]
        if seed is None:
            return TF.center_crop(image, [size, size])
        u = torch.rand(3, generator=torch.Generator().manual_seed(seed)).tolist()
        top, left = int(u[0] * (h - size + 1)), int(u[1] * (w - size + 1))
        image = image[..., top:top + size, left:left + size]
        return image.flip(-1) if u[2] < 0.5 else image
