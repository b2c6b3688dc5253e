"""Preprocessing: the GCN + ZCA whitening fitted on the full training set or on a subset only."""
import numpy as np
import pytest
import torch
from imbalance.data.images import Preprocessor
from imbalance.training.recipes import RECIPES

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


def _toy_images_and_allcnn(*, seed: int):
    """300 random 16x16 colour images (200 train, 100 test, 10 classes) and All-CNN-C cut to 2 iterations
    of 4, whitened per repeat (zca_fit subset)."""
    from imbalance.data.datasets import ImageDataset
    from imbalance.training.recipes import recipe_with
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (300, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(300) % 10
    data = ImageDataset(name="toy", classes=tuple("abcdefghij"), train_images=images[:200], train_labels=labels[:200],
                        test_images=images[200:], test_labels=labels[200:], source="test")
    return data, recipe_with(RECIPES["allcnn-cifar10"], iterations=2, eval_interval=2, batch_size=4, lr_search=(),
                             zca_fit="subset")


def test_a_grid_point_with_zca_fit_subset_whitens_each_repeat_on_its_own_subset_only():
    """params recipe_overrides {zca_fit: subset}: each repeat's networks see a whitening fitted on that
    repeat's imbalanced subset (its unique images), and the records say which fit was used."""
    from imbalance.training.pipeline import run_grid_point
    from imbalance.training.recipes import recipe_with
    data, recipe = _toy_images_and_allcnn(seed=1)
    point = run_grid_point(data, imbalance="step", rho=4, mu=0.5, n_max=20, minority="random", methods=["baseline", "ros"],
                           repeats=2, seed=0, recipe=recipe, progress=False)
    fitted = {r: point.results[("none", r)].preprocessor for r in (0, 1)}
    assert [p.zca_fit for p in fitted.values()] == ["subset", "subset"]
    assert [p.n_fitted for p in fitted.values()] == [sum(point.class_counts[r]) for r in (0, 1)] == [125, 125]
    assert not torch.equal(fitted[0].whiten, fitted[1].whiten)                 # two subsets, two whitenings
    assert point.results[("ros", 0)].preprocessor is fitted[0]                 # a repeat's methods share it
    assert {r["zca_fit"] for r in point.records} == {"subset"}
    full = run_grid_point(data, imbalance="step", rho=4, mu=0.5, n_max=20, minority="random", methods=["baseline"],
                          repeats=1, seed=0, recipe=recipe_with(recipe, zca_fit="full"), progress=False)
    assert full.results[("none", 0)].preprocessor.n_fitted == 200 and full.records[0]["zca_fit"] == "full"


def test_per_repeat_whitening_with_a_validation_split_scores_every_repeat_on_its_own_held_out_images():
    """zca_fit subset gives each repeat its own test inputs; validation scores must still cover every
    repeat (they once took the networks of the last test input only: a KeyError for repeat 0)."""
    from imbalance.training.pipeline import run_grid_point
    data, recipe = _toy_images_and_allcnn(seed=2)
    point = run_grid_point(data, imbalance="step", rho=4, mu=0.5, n_max=20, minority="random",
                           methods=["baseline", "baseline-la"], repeats=2, seed=0, recipe=recipe, progress=False,
                           validation=0.2)
    by = {(r["method"], r["repeat"]): r for r in point.records}
    assert sorted(by) == [("baseline", 0), ("baseline", 1), ("baseline-la", 0), ("baseline-la", 1)]
    assert all(r["n_validation"] == 25 and r["val_roc_auc"] is not None for r in point.records)
    assert {by[("baseline-la", r)]["tau_source"] for r in (0, 1)} == {"validation"}
