"""Preprocessing: the GCN + ZCA whitening fitted on the full training set or on a subset only."""
import numpy as np
import pytest
import torch

from imbalance.images import Preprocessor
from imbalance.train import RECIPES

ALLCNN = RECIPES["allcnn-cifar10"]      # gcn_scale 55, zca_epsilon 0.1 (pylearn2's defaults)


def _images(n=300, seed=0, shape=(3, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    d = int(np.prod(shape))
    raw = torch.randn(n, d, generator=g) @ (torch.eye(d) + 0.5 * torch.randn(d, d, generator=g) / d ** 0.5)
    return (128 + 30 * raw).clamp(0, 255).round().to(torch.uint8).view(n, *shape)


def _numpy_gcn_zca(images: np.ndarray, scale=55.0, epsilon=0.1):
    """pylearn2's global_contrast_normalize(scale=55) then ZCA(filter_bias=0.1), by hand in numpy."""
    x = images.reshape(len(images), -1).astype(np.float64)
    x = x - x.mean(1, keepdims=True)
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) / scale)
    mean = x.mean(0)
    eigenvalues, vectors = np.linalg.eigh(np.cov(x - mean, rowvar=False, bias=True))
    return mean, vectors @ np.diag(1 / np.sqrt(eigenvalues + epsilon)) @ vectors.T


SUBSET = np.array([3, 5, 7, 11] + list(range(100, 180)))


def test_subset_fit_matches_a_hand_written_pylearn2_whitening_of_the_subset():
    images = _images()
    pre = Preprocessor(ALLCNN, zca_fit="subset").fit(images, subset=SUBSET)
    mean, whiten = _numpy_gcn_zca(images[SUBSET].numpy())
    assert np.allclose(pre.mean.numpy(), mean, atol=1e-4)
    assert np.allclose(pre.whiten.numpy(), whiten, rtol=1e-4, atol=1e-4)
    assert pre.zca_fit == "subset" and pre.n_fitted == len(SUBSET)


def test_subset_fit_uses_only_the_given_indices():
    images = _images()
    changed = images.clone()
    outside = np.setdiff1d(np.arange(len(images)), SUBSET)
    changed[outside] = _images(seed=1)[outside]
    a = Preprocessor(ALLCNN, zca_fit="subset").fit(images, subset=SUBSET)
    b = Preprocessor(ALLCNN, zca_fit="subset").fit(changed, subset=SUBSET)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.whiten, b.whiten)
    full_a, full_b = Preprocessor(ALLCNN).fit(images), Preprocessor(ALLCNN).fit(changed)
    assert not torch.equal(full_a.whiten, full_b.whiten)                # a full fit sees them
    assert full_a.zca_fit == "full" and full_a.n_fitted == len(images)


def test_subset_fit_counts_a_resampled_example_once_and_equals_a_full_fit_on_the_slice():
    images = _images()
    resampled = np.concatenate([SUBSET, SUBSET[:4], SUBSET[:4]])          # e.g. ros duplicates
    a = Preprocessor(ALLCNN, zca_fit="subset").fit(images, subset=torch.from_numpy(resampled))
    b = Preprocessor(ALLCNN).fit(images[np.unique(SUBSET)])
    assert torch.equal(a.mean, b.mean) and torch.equal(a.whiten, b.whiten) and a.n_fitted == len(SUBSET)


def test_full_fit_stays_the_default_and_other_preprocessings_ignore_the_fit():
    images = _images()
    assert Preprocessor(ALLCNN).zca_fit == "full"
    scale = Preprocessor(RECIPES["lenet5-mnist"], zca_fit="subset").fit(images, subset=SUBSET)
    assert torch.equal(scale.transform(images), images.float() / 256)


@pytest.mark.parametrize("zca_fit, subset, message", [
    ("full", SUBSET, "subset is given but zca_fit is 'full'"),
    ("subset", None, "zca_fit 'subset' needs subset="),
    ("subset", np.array([0, 300]), r"subset must be a non-empty 1-d array of integer positions in \[0, 300\)"),
    ("subset", np.array([0.5, 2.0]), "subset must be a non-empty 1-d array of integer positions"),
    ("subset", np.array([], dtype=np.int64), "subset must be a non-empty"),
])
def test_fit_rejects_a_subset_that_does_not_fit_zca_fit_naming_it(zca_fit, subset, message):
    with pytest.raises(ValueError, match=message):
        Preprocessor(ALLCNN, zca_fit=zca_fit).fit(_images(), subset=subset)


def test_unknown_zca_fit_is_rejected_listing_the_choices():
    with pytest.raises(ValueError, match=r"zca_fit must be one of \('full', 'subset'\), got 'train'"):
        Preprocessor(ALLCNN, zca_fit="train")
