"""The method registry and one grid point's networks: sharing, seeds, thresholding, two-phase."""
import numpy as np
import pytest
import torch

from imbalance.batched import intra_op_threads
from imbalance.data import load_dataset
from imbalance.methods import METHODS, derive_seed, get_method, method_metrics, run_grid_point
from imbalance.train import RECIPES, recipe_with

ALL = list(METHODS)
POINT = dict(imbalance="step", rho=10, mu=0.5, n_max=400, seed=0, point_id="step_rho=10_mu=0.5")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-sample")


@pytest.fixture(scope="module")
def point(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=40, eval_interval=20)
    return run_grid_point(digits, methods=ALL, repeats=2, recipe=recipe, progress=False, **POINT)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown method 'smote'; valid methods: baseline, ros, rus, two-phase-ros"):
        get_method("smote")


def test_seeds_are_stable_across_processes_and_differ_by_purpose():
    assert derive_seed(0, "step_rho=10_mu=0.5", 0, "subset") == 2435790516170131981
    assert derive_seed(0, "step_rho=10_mu=0.5", 1, "subset") != derive_seed(0, "step_rho=10_mu=0.5", 0, "subset")


def test_grid_point_gives_one_record_per_method_and_repeat(point):
    assert sorted((r["method"], r["repeat"]) for r in point.records) == sorted((m, r) for m in ALL for r in (0, 1))
    assert point.class_counts[0] == [40, 40, 400, 40, 40, 400, 400, 400, 40, 400]


def test_sampling_sizes_follow_the_imbalanced_subset(point):
    n = {(r["method"], r["repeat"]): r["n_train"] for r in point.records}
    assert n[("baseline", 0)] == 5 * 40 + 5 * 400
    assert n[("ros", 0)] == 10 * 400 and n[("rus", 0)] == 10 * 40
    assert n[("two-phase-ros", 0)] == n[("baseline", 0)]     # fine-tuned on the imbalanced subset


def test_thresholding_reuses_the_network_and_divides_by_the_priors(point):
    by = {(r["method"], r["repeat"]): r for r in point.records}
    for base in ("baseline", "ros", "rus"):
        plain, thresh = by[(base, 0)], by[(f"{base}-thresh", 0)]
        assert thresh["roc_auc"] == plain["roc_auc"]          # a per-class scale leaves every ranking alone
        assert thresh["accuracy"] == plain["thresholded_accuracy"]
        assert thresh["train_seconds"] == plain["train_seconds"]   # no extra training


def test_two_phase_fine_tunes_a_copy_of_the_pretrained_network(point):
    for kind in ("ros", "rus"):
        pre, tuned = point.results[(kind, 0)].model, point.results[(f"two-phase-{kind}", 0)].model
        for (name, p), q in zip(tuned.named_parameters(), pre.parameters()):
            assert torch.equal(p, q) != name.startswith("fc2"), name
        assert point.results[(f"two-phase-{kind}", 0)].curve[-1]["lr"] == pytest.approx(
            0.1 * recipe_with(RECIPES["lenet5-mnist"], iterations=40).base_lr * (1 + 1e-4 * 39) ** -0.75)


def test_batched_grid_point_gives_the_same_metrics_as_one_at_a_time(digits, point):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=40, eval_interval=20)
    with intra_op_threads(1):      # the batched CPU layout runs each network on one intra-op thread
        alone = run_grid_point(digits, methods=ALL, repeats=2, recipe=recipe, batched=False, progress=False, **POINT)
    keys = ("roc_auc", "accuracy", "thresholded_accuracy", "balanced_accuracy", "per_class_recall", "n_train")
    assert [[a[k] for k in keys] for a in alone.records] == [[b[k] for k in keys] for b in point.records]


def test_graded_level_sets_the_ratio_after_sampling(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=2, eval_interval=2)
    res = run_grid_point(digits, methods=["ros", "rus"], repeats=1, recipe=recipe, level=2, progress=False,
                         **POINT)
    n = {r["method"]: r["n_train"] for r in res.records}
    assert n == {"ros": 5 * 200 + 5 * 400, "rus": 5 * 40 + 5 * 80}


def test_diverged_network_reports_no_scores():
    scores = np.full((4, 2), np.nan)
    out = method_metrics(scores, np.array([0, 1, 0, 1]), priors=np.array([0.5, 0.5]), threshold=False,
                         diverged=True)
    assert out["roc_auc"] is None and out["accuracy"] is None


def test_short_training_on_mnist_sample_beats_chance(point):
    aucs = [r["roc_auc"] for r in point.records if r["method"] == "baseline"]
    assert min(aucs) > 0.9     # chance is 0.5; 40 iterations of LeNet-5 already rank digits well


def test_lr_search_picks_a_candidate_by_training_loss_and_trains_with_it(digits):
    # All-CNN-C's recipe searches its base lr (4 candidates x 2 runs); here with LeNet for speed: a
    # diverging candidate must lose, and the point's networks must then train at the winner
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=20, eval_interval=10, lr_search=(1e6, 0.01),
                         lr_search_runs=2)
    res = run_grid_point(digits, methods=["baseline"], repeats=1, recipe=recipe, progress=False, **POINT)
    assert res.base_lr == 0.01 and set(res.lr_search) == {1e6, 0.01}
    assert res.lr_search[1e6] == float("inf") and np.isfinite(res.lr_search[0.01])
    assert res.records[0]["curve"][-1]["lr"] == pytest.approx(0.01 * (1 + 1e-4 * 19) ** -0.75)


def test_grid_point_on_a_streamed_image_folder(tmp_path):
    # the ImageNet path (ILSVRC-2012 layout, images decoded on demand, ResNet-10), on a generated folder
    from PIL import Image
    from imbalance.data import load_imagefolder
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for c in range(3):
            (tmp_path / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) // (c + 1)
                Image.fromarray(pixels).save(tmp_path / split / f"class{c}" / f"{i}.png")
    folder = load_imagefolder(tmp_path)
    recipe = recipe_with(RECIPES["resnet10-imagenet"], iterations=4, eval_interval=2, batch_size=4, resize_size=36,
                         crop_size=32)
    res = run_grid_point(folder, imbalance="step", rho=4, mu=0.34, minority="scarcity", methods=["baseline", "ros"],
                         repeats=1, seed=0, recipe=recipe, device="cpu", progress=False)
    assert sorted(res.class_counts[0]) == [3, 12, 12]
    assert [r["method"] for r in res.records] == ["baseline", "ros"]
    assert [r["n_train"] for r in res.records] == [27, 36]
    assert all(0 <= r["roc_auc"] <= 1 and r["iterations"] == 4 for r in res.records)
