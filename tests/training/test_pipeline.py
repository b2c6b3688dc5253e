"""The method registry and one grid point's networks: sharing, seeds, thresholding, two-phase."""
import numpy as np
import pytest
import torch
from imbalance.data.datasets import load_dataset
from imbalance.registry import PAPER_METHODS, TAU_GRID, get_method
from imbalance.seeds import derive_seed
from imbalance.training.batched import intra_op_threads
from imbalance.training.models import lenet5
from imbalance.training.pipeline import confusion_matrix, method_metrics, run_grid_point, tau_normalised
from imbalance.training.recipes import RECIPES, recipe_with

ALL = list(PAPER_METHODS)
MODERN = ["baseline", "ros", "weighted-ce", "cb-ce", "cb-focal", "focal", "la-loss", "balanced-softmax", "ldam-drw",
          "class-aware", "sqrt-sampling", "crt", "drw", "baseline-la", "baseline-tau-norm", "baseline-thresh",
          "crt-la"]
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


@pytest.mark.slow
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
    assert out["roc_auc"] is None and out["accuracy"] is None and out["confusion_matrix"] is None


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
    from imbalance.data.datasets import load_imagefolder
    from PIL import Image
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
    # 4 steps of ResNet-10 on noise can leave its outputs constant on the test images (a failed network, issue 23)
    assert all(r["iterations"] == 4 and (0 <= r["roc_auc"] <= 1 if r["failure"] is None else
                                         r["roc_auc"] is None and r["failure"] == "constant outputs")
               for r in res.records)


@pytest.fixture(scope="module")
def modern(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=30, eval_interval=15)
    return run_grid_point(digits, methods=MODERN, repeats=1, recipe=recipe, progress=False, **POINT)


def test_every_modern_method_trains_at_one_point_with_finite_metrics(modern):
    assert [r["method"] for r in modern.records] == MODERN
    for r in modern.records:
        # every network trains the recipe's 30 iterations; cRT's second stage its own tenth of ninety
        assert not r["diverged"] and r["iterations"] == (3 if r["method"].startswith("crt") else 30), r["method"]
        assert all(np.isfinite(r[k]) for k in ("roc_auc", "accuracy", "thresholded_accuracy", "balanced_accuracy"))
        assert np.array(r["confusion_matrix"]).sum(1).tolist() == [100] * 10   # mnist-sample's test set: 100 a class


def test_posthoc_logit_adjustment_predicts_what_thresholding_predicts(modern):
    by = {r["method"]: r for r in modern.records}
    assert by["baseline-la"]["confusion_matrix"] == by["baseline-thresh"]["confusion_matrix"]
    assert by["baseline-la"]["accuracy"] == by["baseline"]["thresholded_accuracy"]
    assert by["baseline-la"]["train_seconds"] == by["baseline"]["train_seconds"]     # no extra training
    assert by["crt-la"]["accuracy"] == by["crt"]["thresholded_accuracy"]


def test_balanced_softmax_and_la_loss_share_one_network(modern):
    by = {r["method"]: r for r in modern.records}
    keys = ("roc_auc", "accuracy", "confusion_matrix", "curve")
    assert [by["la-loss"][k] for k in keys] == [by["balanced-softmax"][k] for k in keys]
    assert [by["la-loss"][k] for k in keys] != [by["baseline"][k] for k in keys]


def test_loss_methods_see_the_baselines_subset_and_mini_batches(modern):
    # the same subset and batch order: at iteration 0 (same initial weights) only the loss differs
    by = {r["method"]: r for r in modern.records}
    assert {by[m]["n_train"] for m in ("baseline", "weighted-ce", "focal", "ldam-drw", "class-aware", "crt")} == {2200}
    assert by["ros"]["n_train"] == 4000
    # drw is cross-entropy until 80% of the iterations: the same batches give the same first losses (float32
    # round-off apart: class_loss is not F.cross_entropy's kernel); focal's differ
    assert by["drw"]["curve"][0]["train_loss"] == pytest.approx(by["baseline"]["curve"][0]["train_loss"], rel=1e-5)
    assert by["focal"]["curve"][0]["train_loss"] != pytest.approx(by["baseline"]["curve"][0]["train_loss"], rel=1e-2)


def test_crt_retrains_reinitialised_output_layers_of_the_baseline_network(modern):
    base, crt = modern.results[("none", 0)].model, modern.results[("crt", 0)].model
    init = lenet5(seed=derive_seed(0, POINT["point_id"], 0, "init"))
    for (name, p), q, p0 in zip(crt.named_parameters(), base.parameters(), init.parameters()):
        if name.startswith("fc2"):
            assert not torch.equal(p, q) and not torch.equal(p, p0), name     # retrained from a fresh start
        else:
            assert torch.equal(p, q), name
    by = {r["method"]: r for r in modern.records}
    assert by["crt"]["train_seconds"] > by["baseline"]["train_seconds"]     # includes the baseline's training


def test_crt_ib_retrains_the_same_head_on_instance_balanced_batches(digits):
    """cRT's compute control: the baseline's network, its head re-drawn from the same seed as cRT's and retrained
    as long, on the imbalanced subset itself (instance-balanced batches), not class-aware draws."""
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=20, eval_interval=10)
    res = run_grid_point(digits, methods=["baseline", "crt", "crt-ib"], repeats=1, recipe=recipe, progress=False,
                         **POINT)
    base, crt, ib = (res.results[(k, 0)].model for k in ("none", "crt", "crt-ib"))
    for (name, p), q, c in zip(ib.named_parameters(), base.parameters(), crt.parameters()):
        if name.startswith("fc2"):
            assert not torch.equal(p, q) and not torch.equal(p, c), name
        else:
            assert torch.equal(p, q), name
    by = {r["method"]: r for r in res.records}
    assert by["crt-ib"]["n_train"] == sum(by["baseline"]["class_counts"]) == by["crt"]["n_train"]
    assert by["crt-ib"]["failure"] is None and by["crt-ib"]["roc_auc"] is not None


def test_tau_norm_divides_each_class_weight_vector_by_its_norm():
    model = lenet5(seed=0)
    with torch.no_grad():
        model.fc2.bias.fill_(0.3)                                       # a trained network's bias, not Caffe's 0
    normed = tau_normalised(model, tau=1.0)
    w, v = model.fc2.weight.detach(), normed.fc2.weight.detach()
    assert torch.allclose(v.norm(dim=1), torch.ones(10), atol=1e-6)
    assert torch.allclose(tau_normalised(model, tau=0.5).fc2.weight, w / w.norm(dim=1, keepdim=True).sqrt())
    assert torch.equal(normed.fc2.bias, torch.zeros(10)) and torch.equal(normed.fc1.weight, model.fc1.weight)
    assert torch.equal(model.fc2.bias, torch.full((10,), 0.3))        # the model itself keeps its bias
    from imbalance import registry
    assert registry.fingerprint("baseline-tau-norm") != registry.legacy_fingerprint("baseline-tau-norm")
    assert registry.fingerprint("baseline-la") == registry.legacy_fingerprint("baseline-la")
    assert torch.equal(tau_normalised(model, tau=0.0).fc2.weight, w)


def test_tau_norm_scores_come_from_the_rescaled_network(modern):
    by = {r["method"]: r for r in modern.records}
    assert by["baseline-tau-norm"]["roc_auc"] != by["baseline"]["roc_auc"]
    assert by["baseline-tau-norm"]["curve"] == by["baseline"]["curve"]


@pytest.mark.slow
def test_modern_methods_batched_give_the_same_records_as_one_at_a_time(digits, modern):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=30, eval_interval=15)
    with intra_op_threads(1):
        alone = run_grid_point(digits, methods=MODERN, repeats=1, recipe=recipe, batched=False, progress=False,
                               **POINT)
    keys = ("roc_auc", "accuracy", "thresholded_accuracy", "balanced_accuracy", "confusion_matrix", "curve")
    assert [[a[k] for k in keys] for a in alone.records] == [[b[k] for k in keys] for b in modern.records]


def test_confusion_matrix_matches_scikit_learn():
    from sklearn.metrics import confusion_matrix as sk
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    assert np.array_equal(confusion_matrix(y, p, n_classes=4), sk(y, p, labels=range(4)))


def test_records_keep_their_confusion_matrix_through_the_store(tmp_path, modern):
    import sqlite3

    from imbalance.study.store import SCHEMA, Store
    with Store(tmp_path / "r.sqlite") as store:
        store.insert_point("", POINT["point_id"], modern.records[:2], worker="w")
        frame = store.records_frame("")
    assert frame["confusion_matrix"].tolist() == [r["confusion_matrix"] for r in modern.records[:2]]
    old = sqlite3.connect(tmp_path / "old.sqlite")          # a database from before the column
    old.executescript(SCHEMA.replace("confusion_matrix TEXT,", ""))
    old.close()
    with Store(tmp_path / "old.sqlite") as store:
        assert store.records_frame("")["confusion_matrix"].tolist() == []       # read as it is, not altered
        store.insert_point("", POINT["point_id"], modern.records[:1], worker="w")
        assert store.records_frame("")["confusion_matrix"].tolist() == [modern.records[0]["confusion_matrix"]]


def test_a_users_two_stage_loss_method_keeps_its_phase_one_network_apart(digits):
    from imbalance import registry
    before = dict(registry.METHODS)
    try:
        loss = registry.Loss(focal_gamma=1.0)
        registry.register_method(registry.Method(name="tp-focal", loss=loss, stage2="two-phase"))
        registry.register_method(registry.Method(name="focal-1", loss=loss))
        recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=4, eval_interval=2)
        res = run_grid_point(digits, methods=["tp-focal", "focal-1"], repeats=1, recipe=recipe, progress=False,
                             **POINT)
    finally:
        registry.METHODS.clear()
        registry.METHODS.update(before)
    tuned, pre = res.results[("tp-focal", 0)].model, res.results[("tp-focal:phase-1", 0)].model
    assert not torch.equal(tuned.fc2.weight, pre.fc2.weight) and torch.equal(tuned.fc1.weight, pre.fc1.weight)
    by = {r["method"]: r for r in res.records}
    assert by["focal-1"]["curve"] == res.results[("tp-focal:phase-1", 0)].curve != by["tp-focal"]["curve"]
    assert by["tp-focal"]["train_seconds"] > by["focal-1"]["train_seconds"]


def test_record_metrics_match_scikit_learn_after_the_methods_adjustment():
    from imbalance.training.metrics import threshold_scores
    from sklearn.metrics import average_precision_score, f1_score, precision_score, roc_auc_score
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    scores = rng.dirichlet(np.ones(3), 60)
    priors = np.array([0.7, 0.2, 0.1])
    for posthoc in (None, "thresh"):
        out = method_metrics(scores, y, priors=priors, diverged=False, posthoc=posthoc)
        used = threshold_scores(scores, priors) if posthoc else scores
        pred = used.argmax(1)
        assert out["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
        assert out["roc_auc"] == pytest.approx(np.mean([roc_auc_score(y == c, used[:, c]) for c in range(3)]))
        assert out["macro_average_precision"] == pytest.approx(
            np.mean([average_precision_score(y == c, used[:, c]) for c in range(3)]))
        assert out["per_class_precision"] == pytest.approx(precision_score(y, pred, average=None, zero_division=0))
        assert out["thresholded_accuracy"] == pytest.approx(np.mean(threshold_scores(scores, priors).argmax(1) == y))


def test_diverged_network_has_none_for_every_metric_the_record_stores():
    from imbalance.schema import PER_CLASS_METRICS, SCALAR_METRICS
    out = method_metrics(np.full((4, 2), np.nan), np.array([0, 1, 0, 1]), priors=np.array([0.5, 0.5]),
                         diverged=False)
    assert set(out) == {*SCALAR_METRICS, *PER_CLASS_METRICS, "confusion_matrix"} and set(out.values()) == {None}


def test_records_carry_class_names_and_the_new_metrics(point, digits):
    record = point.records[0]
    assert record["classes"] == list(digits.classes)
    assert 0 <= record["macro_f1"] <= 1 and 0 <= record["g_mean"] <= 1 and 0 <= record["ece"] <= 1
    assert len(record["per_class_precision"]) == 10


@pytest.fixture(scope="module")
def skewed(digits):
    """Three digit classes at their natural (skewed) counts 300 / 120 / 15, named."""
    from imbalance.data.datasets import ImageDataset
    y, yt = digits.train_labels.numpy(), digits.test_labels.numpy()
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c, n in zip(range(3), (300, 120, 15))])
    test = np.flatnonzero(yt < 3)
    return ImageDataset("npz", ("zero", "one", "two"), digits.train_images[keep], digits.train_labels[keep],
                        digits.test_images[test], digits.test_labels[test], source="test")


def test_natural_imbalance_keeps_the_datas_counts_and_validates_on_a_held_out_split(skewed):
    from imbalance.data.profiles import validation_split
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=4, eval_interval=2)
    res = run_grid_point(skewed, imbalance="natural", methods=["baseline", "baseline-la"], recipe=recipe,
                         validation=0.1, seed=3, progress=False, device="cpu")
    split = validation_split(skewed.train_labels.numpy(), fraction=0.1,
                             random_state=derive_seed(3, "natural", 0, "validation"))
    base, la = res.records
    assert base["point_id"] == "natural" and base["mu"] is None
    assert base["class_counts"] == [270, 108, 13] == np.bincount(skewed.train_labels.numpy()[split.train]).tolist()
    assert base["rho"] == pytest.approx(270 / 13) and base["n_validation"] == 44 and base["classes"] == ["zero", "one", "two"]
    assert all(0 <= r["val_roc_auc"] <= 1 and r["validation"] == 0.1 for r in res.records)
    assert la["tau_source"] == "validation" and la["posthoc_tau"] in TAU_GRID and base["tau_source"] is None


def test_tau_norm_takes_the_tau_that_validates_best_and_its_scores_are_that_networks(skewed):
    from imbalance.training.metrics import balanced_accuracy
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=6, eval_interval=3)
    res = run_grid_point(skewed, imbalance="natural", methods=["baseline", "baseline-tau-norm"], recipe=recipe,
                         validation=0.2, seed=1, progress=False, device="cpu")
    record = res.records[1]
    assert record["tau_source"] == "validation" and record["posthoc_tau"] in TAU_GRID
    # the test metrics are those of the baseline network normalised with the chosen tau (the single-network path)
    model = tau_normalised(res.results[("none", 0)].model, tau=record["posthoc_tau"])   # baseline's network
    from imbalance.data.images import Preprocessor
    x = Preprocessor(recipe).fit(skewed.train_images).transform(skewed.test_images)
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert record["balanced_accuracy"] == pytest.approx(balanced_accuracy(skewed.test_labels, pred, n_classes=3))


def test_the_tau_and_candidate_chooser_takes_the_first_best_and_a_missing_metric_loses():
    from imbalance.training.pipeline import _first_best
    assert _first_best([0.7, 0.9, 0.9, 0.1]) == 1          # ties: the first (the smaller tau, the earlier candidate)
    assert _first_best([None, 0.2, float("-inf")]) == 1    # a candidate without a metric never wins
    assert _first_best([None, None]) == 0                  # nothing scored: the first, as before


def test_tau_is_chosen_without_looking_at_the_test_set(skewed):
    from imbalance.data.datasets import ImageDataset
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=4, eval_interval=2)
    shuffled = ImageDataset("npz", skewed.classes, skewed.train_images, skewed.train_labels, skewed.test_images,
                            skewed.test_labels[torch.randperm(len(skewed.test_labels), generator=torch.Generator().manual_seed(0))],
                            source="test")
    taus = [run_grid_point(d, imbalance="natural", methods=["baseline-la"], recipe=recipe, validation=0.2,
                           progress=False, device="cpu").records[0] for d in (skewed, shuffled)]
    assert taus[0]["posthoc_tau"] == taus[1]["posthoc_tau"] and taus[0]["val_accuracy"] == taus[1]["val_accuracy"]
    assert taus[0]["accuracy"] != taus[1]["accuracy"]          # the test labels did change


def test_without_validation_la_keeps_its_fixed_tau_and_a_train_prior_test_set_is_measured(skewed):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=4, eval_interval=2)
    both = run_grid_point(skewed, imbalance="natural", methods=["baseline-la"], recipe=recipe, test_prior="both",
                          progress=False, device="cpu").records[0]
    train = run_grid_point(skewed, imbalance="natural", methods=["baseline-la"], recipe=recipe, test_prior="train",
                           progress=False, device="cpu").records[0]
    assert both["tau_source"] == "fixed" and both["posthoc_tau"] == 1.0 and both["val_roc_auc"] is None
    assert both["test_prior"] == "balanced" and train["test_prior"] == "train"
    assert train["accuracy"] == pytest.approx(both["prior_accuracy"]) and train["roc_auc"] == pytest.approx(both["prior_roc_auc"])
    with pytest.raises(ValueError, match="test_prior must be one of balanced, train, both"):
        run_grid_point(skewed, imbalance="natural", recipe=recipe, test_prior="skewed", progress=False)


# --- the paper's selection protocols (issue 13) ---------------------------------------------------

SEARCHED = dict(iterations=40, eval_interval=20, lr_search=(0.01, 0.001), lr_search_runs=2)   # 4 candidates


@pytest.mark.slow
def test_test_best_of_keeps_for_each_method_the_candidate_with_the_best_test_roc_auc(digits):
    methods = ["baseline", "ros", "two-phase-ros", "baseline-thresh"]
    best = run_grid_point(digits, methods=methods, repeats=1, progress=False, selection="test-best-of-8",
                          recipe=recipe_with(RECIPES["lenet5-mnist"], **SEARCHED), **POINT)
    alone = run_grid_point(digits, methods=methods, repeats=1, progress=False,
                           recipe=recipe_with(RECIPES["lenet5-mnist"], iterations=40, eval_interval=20), **POINT)
    by, plain = ({r["method"]: r for r in p.records} for p in (best, alone))
    for m in methods:
        assert by[m]["selection"] == "test-best-of-8" and by[m]["base_lr"] in (0.01, 0.001)
        assert by[m]["selection_score"] == pytest.approx(by[m]["roc_auc"], abs=1e-12)   # chosen by it
        # candidate 0 (base lr 0.01, run 0) is the network selection 'train-loss' trains without a search
        assert by[m]["roc_auc"] >= plain[m]["roc_auc"]
        assert plain[m]["selection"] == "train-loss" and plain[m]["selection_score"] is None
    assert by["baseline-thresh"]["base_lr"] == by["baseline"]["base_lr"]         # the same network
    assert by["baseline-thresh"]["accuracy"] == by["baseline"]["thresholded_accuracy"]


@pytest.mark.slow
def test_validation_best_of_chooses_on_the_validation_split_never_the_test_set(digits):
    point = run_grid_point(digits, methods=["baseline", "rus"], repeats=2, progress=False, validation=0.2,
                           selection="validation-best-of-8",
                           recipe=recipe_with(RECIPES["lenet5-mnist"], **SEARCHED), **POINT)
    for r in point.records:
        assert r["selection_score"] == pytest.approx(r["val_roc_auc"], abs=1e-12)


@pytest.mark.parametrize("knobs, message", [
    (dict(selection="test-best-of-8"), "recipe 'lenet5-mnist' has none"),
    (dict(selection="validation-best-of-8", recipe_lr_search=True), "needs a validation split"),
    (dict(selection="best"), "selection must be one of train-loss, test-best-of-8, validation-best-of-8"),
])
def test_a_selection_the_point_cannot_make_is_refused_before_training(digits, knobs, message):
    searched = knobs.pop("recipe_lr_search", False)
    recipe = recipe_with(RECIPES["lenet5-mnist"], **(SEARCHED if searched else dict(iterations=40)))
    with pytest.raises(ValueError, match=message):
        run_grid_point(digits, methods=["baseline"], repeats=1, progress=False, recipe=recipe, **knobs, **POINT)


def test_crt_and_its_control_retrain_the_head_for_a_ninth_of_the_iterations_on_a_cosine_schedule(digits,
                                                                                                   monkeypatch):
    """Kang et al.'s cRT: 10 epochs of head re-training after 90 of joint training (cls_crt.yaml), lr annealed
    by CosineAnnealingLR to 0, class-aware batches of 4 examples per class draw (num_samples_cls: 4)."""
    from imbalance.training import pipeline
    captured = {}
    real = pipeline._phase2_specs

    def keep(*args, **kwargs):
        specs = real(*args, **kwargs)
        captured.update((k[0], s) for k, s in specs)
        return specs
    monkeypatch.setattr(pipeline, "_phase2_specs", keep)
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=90, eval_interval=5)
    res = run_grid_point(digits, methods=["baseline", "crt", "crt-ib"], repeats=1, recipe=recipe, progress=False,
                         **POINT)
    by = {r["method"]: r for r in res.records}
    assert by["baseline"]["iterations"] == 90 and by["crt"]["iterations"] == by["crt-ib"]["iterations"] == 10
    # the head's lr: PyTorch's CosineAnnealingLR from the recipe's base lr to 0 over the 10 updates
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.base_lr)
    sched, expected = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.0), []
    for _ in range(10):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for method in ("crt", "crt-ib"):
        assert [p["lr"] for p in by[method]["curve"]] == pytest.approx([expected[4], expected[9]], rel=1e-12)
    # cRT's stream: 10 x 64 positions, in runs of 4 of one class, every class once per cycle of 10 draws
    y = digits.train_labels.numpy()[captured["crt"].indices]
    assert y.size == 10 * recipe.batch_size
    runs = y.reshape(-1, 4)
    assert (runs == runs[:, :1]).all()
    assert all(sorted(c.tolist()) == list(range(10)) for c in runs[:150, 0].reshape(-1, 10))
    assert captured["crt-ib"].shuffle and len(captured["crt-ib"].indices) == sum(by["baseline"]["class_counts"])


def test_every_network_is_scored_by_the_softmax_of_its_logits_a_sigmoid_loss_too(digits):
    """One scoring rule for every method (docs/methods.md, cb-focal): the recorded one-vs-rest ROC AUC of
    cb-focal's network is that of the softmax of its logits, not of its per-class sigmoids."""
    from sklearn.metrics import roc_auc_score
    from imbalance.training.batched import predict_networks
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=30, eval_interval=10)
    res = run_grid_point(digits, methods=["cb-focal"], repeats=1, recipe=recipe, progress=False, **POINT)
    record, model = res.records[0], res.results[("cb-focal", 0)].model
    from imbalance.data.images import Preprocessor
    images = Preprocessor(recipe).fit(digits.train_images).transform(digits.test_images)
    logits = predict_networks([model], images, device=torch.device("cpu"))[0].double()
    y = digits.test_labels.numpy()

    def ovr(scores):            # scikit-learn's one-vs-rest mean, per class (it refuses rows not summing to 1)
        return float(np.mean([roc_auc_score(y == c, scores[:, c]) for c in range(10)]))
    softmax, sigmoid = ovr(torch.softmax(logits, -1).numpy()), ovr(torch.sigmoid(logits).numpy())
    assert record["roc_auc"] == pytest.approx(softmax, abs=1e-9)
    assert abs(softmax - sigmoid) > 1e-6            # the two rules differ on this network (the test can fail)
