"""Metrics against scikit-learn and hand-worked examples."""
import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

from imbalance.metrics import (accuracy, balanced_accuracy, per_class_recall, roc_auc_ovr, threshold_scores)


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
