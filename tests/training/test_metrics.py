"""Metrics against scikit-learn and hand-worked examples."""
import numpy as np
import pytest
import torch
from imbalance.training.metrics import (
    accuracy,
    all_metrics,
    balanced_accuracy,
    expected_calibration_error,
    g_mean,
    macro_average_precision,
    macro_f1,
    per_class_average_precision,
    per_class_precision,
    per_class_recall,
    roc_auc_ovr,
    threshold_scores,
)
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)


def _scores_with_ties(n, c, seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(1, 20, size=(n, c)).astype(np.float64)      # few distinct values: many ties
    return rng.integers(0, c, size=n), s / s.sum(1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_ovr_macro_with_ties(seed):
    y, s = _scores_with_ties(2000, 10, seed)
    expected = roc_auc_score(y, s, multi_class="ovr", average="macro")
    assert abs(roc_auc_ovr(y, s) - expected) <= 1e-9
    assert abs(roc_auc_ovr(torch.as_tensor(y), torch.as_tensor(s, dtype=torch.float32)) - expected) <= 1e-6


def test_roc_auc_hand_worked_binary_like_example():
    # class 1 scores: positives {0.8, 0.4}, negatives {0.4, 0.1} -> pairs won 1 + 1 + 0.5 + 1 = 3.5 of 4
    y = np.array([1, 1, 0, 0])
    s1 = np.array([0.8, 0.4, 0.4, 0.1])
    s = np.stack([1 - s1, s1], 1)
    assert roc_auc_ovr(y, s) == pytest.approx(0.875, abs=1e-12)


def test_roc_auc_batches_over_leading_dimensions():
    y, s = _scores_with_ties(500, 4, 0)
    stack = np.stack([s, s[:, ::-1], np.roll(s, 1, axis=1)])
    batched = roc_auc_ovr(y, stack)
    assert batched.shape == (3,)
    assert np.allclose(batched, [roc_auc_score(y, k, multi_class="ovr") for k in stack], atol=1e-9)


def test_roc_auc_rejects_a_class_without_positives():
    with pytest.raises(ValueError, match=r"classes \[2\] lack one"):
        roc_auc_ovr(np.array([0, 1, 0, 1]), np.full((4, 3), 1 / 3))


def test_thresholding_divides_outputs_by_priors_hand_worked():
    # a network that favours the majority class: 0.6 vs 0.4; priors 0.9 / 0.1 flip the decision
    scores = np.array([[0.6, 0.4], [0.95, 0.05]])
    priors = np.array([0.9, 0.1])
    assert np.allclose(threshold_scores(scores, priors), [[0.6 / 0.9, 4.0], [0.95 / 0.9, 0.5]])
    assert threshold_scores(scores, priors).argmax(1).tolist() == [1, 0]
    assert torch.equal(threshold_scores(torch.tensor(scores), priors).argmax(1), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="priors must be 2 positive class frequencies"):
        threshold_scores(scores, [1.0, 0.0])


@pytest.mark.parametrize("seed", range(3))
def test_thresholding_leaves_roc_auc_unchanged(seed):
    """Dividing each class's scores by its prior keeps every class's ranking (ties included), so
    one-vs-rest ROC AUC is the base network's exactly: why ROC AUC figures leave '-thresh' out."""
    rng = np.random.default_rng(seed)
    priors = rng.integers(1, 5000, 10) / 1.0
    priors /= priors.sum()
    y = np.concatenate([np.arange(10), rng.integers(0, 10, 990)])
    softmax = torch.softmax(torch.as_tensor(rng.normal(size=(1000, 10)) * 5), -1).numpy()
    for labels, scores in ((y, softmax), _scores_with_ties(1000, 10, seed)):
        assert roc_auc_ovr(labels, threshold_scores(scores, priors)) == roc_auc_ovr(labels, scores)


def test_accuracy_recall_and_balanced_accuracy_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    s = rng.random((300, 5))
    pred = s.argmax(1)
    assert accuracy(y, s) == pytest.approx(np.mean(pred == y))
    assert np.allclose(per_class_recall(y, pred, n_classes=5), recall_score(y, pred, average=None))
    assert balanced_accuracy(y, pred, n_classes=5) == pytest.approx(balanced_accuracy_score(y, pred))


def _skewed_predictions(seed, n=400, c=5):
    """Labels and predictions where class c-1 is never predicted and class 0 is over-predicted."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, c - 1, n))
    return y, np.where(pred == c - 1, 0, pred)


@pytest.mark.parametrize("seed", range(3))
def test_macro_f1_and_per_class_precision_match_sklearn(seed):
    y, pred = _skewed_predictions(seed)
    labels = list(range(6))                           # class 5 in neither: F1 0 (sklearn's zero_division=0)
    assert macro_f1(y, pred, n_classes=6) == pytest.approx(
        f1_score(y, pred, average="macro", labels=labels, zero_division=0), abs=1e-12)
    ours = per_class_precision(y, pred, n_classes=6)
    theirs = precision_score(y, pred, average=None, labels=labels, zero_division=np.nan)
    assert np.isnan(ours[4]) and np.isnan(ours[5])      # never predicted
    assert np.allclose(ours, theirs, equal_nan=True, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_macro_average_precision_matches_sklearn_one_vs_rest_with_ties(seed):
    y, s = _scores_with_ties(600, 6, seed)
    per_class = [average_precision_score(y == c, s[:, c]) for c in range(6)]
    assert np.allclose(per_class_average_precision(y, s), per_class, atol=1e-12)
    assert macro_average_precision(y, s) == pytest.approx(np.mean(per_class), abs=1e-12)
    assert macro_average_precision(torch.as_tensor(y), torch.as_tensor(s)) == pytest.approx(np.mean(per_class))


def test_macro_average_precision_averages_over_the_classes_present():
    # class 2 absent from y_true: NaN per class, left out of the mean
    y = np.array([0, 1, 0, 1])
    s = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    ap = per_class_average_precision(y, s)
    assert np.isnan(ap[2])
    # class 0 scores 0.7 (+), 0.6 (-), 0.3 (-), 0.2 (+): AP = 1/2 (1/1 + 2/4) = 0.75
    # class 1 scores 0.6 (+), 0.3 (+, tied with a negative), 0.3 (-), 0.2 (-): AP = 1/2 (1 + 2/3)
    assert ap[:2].tolist() == pytest.approx([0.75, 5 / 6])
    assert macro_average_precision(y, s) == pytest.approx((0.75 + 5 / 6) / 2)


def test_g_mean_of_per_class_recalls_hand_worked():
    # recalls: class 0 4/4, class 1 1/2, class 2 1/4 (class 3 absent: left out) -> (1 * 0.5 * 0.25)^(1/3) = 0.5
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 0, 0, 1, 0, 2, 0, 1, 3])
    assert g_mean(y, pred, n_classes=4) == pytest.approx(0.5, abs=1e-12)
    assert g_mean(y, np.where(y == 1, 0, y), n_classes=4) == 0.0      # one class never recognised


def test_expected_calibration_error_hand_worked_15_bins():
    # confidences 0.9 (right), 0.9 (wrong) share bin (13/15, 14/15]: |0.5 - 0.9| x 2/4 = 0.2
    # 0.65 (right) alone in (9/15, 10/15]: 0.35 x 1/4; 0.52 (wrong) alone in (7/15, 8/15]: 0.52 x 1/4
    y = np.array([0, 1, 1, 1])
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.35, 0.65], [0.52, 0.48]])
    assert expected_calibration_error(y, p) == pytest.approx(0.2 + 0.35 / 4 + 0.52 / 4, abs=1e-12)
    # one bin: |mean accuracy - mean confidence| = |0.5 - 0.7425|
    assert expected_calibration_error(y, p, n_bins=1) == pytest.approx(0.2425, abs=1e-12)
    # a confidence of 1 falls in the last bin, and a perfectly right, certain network has ECE 0
    assert expected_calibration_error(np.array([0, 1]), np.eye(2)) == 0.0


def test_all_metrics_gives_every_metric_in_one_call():
    rng = np.random.default_rng(1)
    y = np.concatenate([np.arange(4), rng.integers(0, 4, 196)])
    probabilities = torch.softmax(torch.as_tensor(rng.normal(size=(200, 4)) * 2), -1).numpy()
    priors = np.array([0.7, 0.1, 0.1, 0.1])
    out = all_metrics(y, probabilities, priors=priors)
    pred = probabilities.argmax(1)
    assert set(out) == {"roc_auc", "accuracy", "thresholded_accuracy", "balanced_accuracy", "macro_f1",
                        "macro_average_precision", "g_mean", "ece", "per_class_recall", "per_class_precision"}
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y, probabilities, multi_class="ovr"))
    assert out["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert out["per_class_precision"] == pytest.approx(precision_score(y, pred, average=None).tolist())
    assert out["thresholded_accuracy"] == pytest.approx(np.mean((probabilities / priors).argmax(1) == y))
    assert out["ece"] == expected_calibration_error(y, probabilities)
    assert "thresholded_accuracy" not in all_metrics(y, probabilities)
    # a '-thresh' method: every metric is of scores / priors (renormalised for ECE)
    thresh = all_metrics(y, probabilities, priors=priors, threshold=True)
    adjusted = probabilities / priors
    assert thresh["accuracy"] == out["thresholded_accuracy"]
    assert thresh["macro_f1"] == pytest.approx(f1_score(y, adjusted.argmax(1), average="macro"))
    assert thresh["ece"] == pytest.approx(expected_calibration_error(y, adjusted / adjusted.sum(1, keepdims=True)))


@pytest.mark.parametrize("call, message", [
    (lambda: macro_f1([0, 1], [0], n_classes=2), "y_true and y_pred must be 1-d of the same non-zero"),
    (lambda: g_mean([], [], n_classes=2), "y_true and y_pred must be 1-d of the same non-zero length"),
    (lambda: per_class_precision([0, 2], [0, 1], n_classes=2), r"labels in \[0, 1\]"),
    (lambda: macro_average_precision([0, 1], np.ones((3, 2))), r"scores must be shaped \(n_samples, n_classes\)"),
    (lambda: expected_calibration_error([0, 1], np.array([[2.0, -1.0], [0.5, 0.5]])), "probabilities must be rows"),
    (lambda: expected_calibration_error([0, 1], np.eye(2), n_bins=0), "n_bins must be a positive integer"),
    (lambda: all_metrics([0, 1], np.eye(2), threshold=True), "threshold=True needs priors"),
])
def test_new_metrics_reject_bad_input_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
