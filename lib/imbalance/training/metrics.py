"""Metrics: multi-class ROC AUC (one-vs-rest, unweighted mean), accuracy, thresholding, recall,
and the metrics imbalanced-data users report (macro-F1, macro average precision, G-mean, ECE,
per-class precision); `all_metrics` gives every one of them in one dict.

`roc_auc_ovr` is the Mann-Whitney form of the AUC, vectorised over classes (and any leading
batch dimensions, e.g. K networks' scores at once): for class c,
    AUC_c = (sum of ranks of the positives - P (P + 1) / 2) / (P * Q)
with ties given their average rank, exactly as scikit-learn's `roc_auc_score(multi_class='ovr',
average='macro')` computes it from the ROC curve's trapezoids. Computed in float64.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch


def _tensor(x, dtype=None) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.cpu() if dtype is None else t.cpu().to(dtype)


def _check(y: torch.Tensor, scores: torch.Tensor) -> None:
    if scores.ndim < 2 or y.ndim != 1 or scores.shape[-2] != y.shape[0]:
        raise ValueError(f"scores must be shaped (..., n_samples, n_classes) with n_samples = len(y_true); "
                         f"got scores {tuple(scores.shape)} and y_true {tuple(y.shape)}")


@contextmanager
def _one_thread():
    """These ops are small (~1e5 elements): one thread avoids OpenMP hand-off costs (3x here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def roc_auc_ovr(y_true, scores) -> float | np.ndarray:
    """Mean over classes of the one-vs-rest ROC AUC. scores: (..., n, C); returns float or (...) array."""
    with _one_thread():
        return _roc_auc_ovr(y_true, scores)


def _roc_auc_ovr(y_true, scores):
    y = _tensor(y_true, torch.int64)
    s = _tensor(scores, torch.float64)
    _check(y, s)
    n, n_classes = s.shape[-2:]
    n_pos = torch.bincount(y, minlength=n_classes).to(torch.float64)
    if n_pos.shape[0] > n_classes:
        raise ValueError(f"y_true holds labels >= n_classes={n_classes} (the scores' last dimension)")
    if (n_pos == 0).any() or (n_pos == n).any():
        missing = torch.nonzero((n_pos == 0) | (n_pos == n)).flatten().tolist()
        raise ValueError(f"ROC AUC needs positives and negatives of every class; classes {missing} lack one")
    ordered, order = s.transpose(-1, -2).sort(dim=-1)                              # (..., C, n) per class
    pos = torch.arange(n)
    new_value = ordered[..., 1:] != ordered[..., :-1]                               # tie groups in sorted order
    ones = torch.ones(ordered.shape[:-1] + (1,), dtype=torch.bool)
    first = torch.where(torch.cat([ones, new_value], -1), pos, 0).cummax(-1).values  # group's first position
    last = torch.where(torch.cat([new_value, ones], -1), pos, n).flip(-1).cummin(-1).values.flip(-1)
    ranks = (first + last).to(torch.float64) / 2 + 1                                # average 1-based rank
    is_positive = y[order] == torch.arange(n_classes).unsqueeze(-1)                 # label at each sorted slot
    rank_sum = (ranks * is_positive).sum(-1)                                        # (..., C)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos))
    out = auc.mean(-1)
    return float(out) if out.ndim == 0 else out.numpy()


def predictions(scores) -> torch.Tensor:
    return _tensor(scores).argmax(-1)


def accuracy(y_true, scores) -> float | np.ndarray:
    """Fraction of argmax(scores) equal to y_true; scores (..., n, C)."""
    y = _tensor(y_true, torch.int64)
    s = _tensor(scores)
    _check(y, s)
    out = (s.argmax(-1) == y).to(torch.float64).mean(-1)
    return float(out) if out.ndim == 0 else out.numpy()


def threshold_scores(scores, priors):
    """Thresholding (the paper's section 3.3.4): divide each class output by its prior.

    Returns the same kind (numpy or torch) as `scores`. priors must be positive and one per class.
    """
    p = np.asarray(priors, dtype=np.float64)
    if p.ndim != 1 or p.shape[0] != np.shape(scores)[-1] or (p <= 0).any():
        raise ValueError(f"priors must be {np.shape(scores)[-1]} positive class frequencies, got {p.tolist()}")
    if isinstance(scores, torch.Tensor):
        return scores / torch.as_tensor(p, dtype=scores.dtype, device=scores.device)
    return np.asarray(scores) / p


def per_class_recall(y_true, y_pred, *, n_classes: int) -> np.ndarray:
    """Recall of each class (NaN for a class absent from y_true)."""
    y = _tensor(y_true, torch.int64).numpy()
    p = _tensor(y_pred, torch.int64).numpy()
    if y.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y.shape} and {p.shape}")
    support = np.bincount(y, minlength=n_classes).astype(np.float64)
    hits = np.bincount(y[y == p], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / support


def balanced_accuracy(y_true, y_pred, *, n_classes: int) -> float:
    """Mean per-class recall over the classes present in y_true."""
    return float(np.nanmean(per_class_recall(y_true, y_pred, n_classes=n_classes)))


# ---- the metrics imbalanced-data users report (issue 12); y_pred / scores (n, C), float out ----

ECE_BINS = 15          # equal-width confidence bins (Guo et al. 2017, "On calibration of modern neural networks")


def _confusion_counts(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: true positives, predicted count, true count (float64)."""
    y = _tensor(y_true, torch.int64).numpy()
    p = _tensor(y_pred, torch.int64).numpy()
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(f"y_true and y_pred must be 1-d of the same non-zero length, got {y.shape} and {p.shape}")
    if (min(y.min(), p.min()) < 0 or max(y.max(), p.max()) >= n_classes):
        raise ValueError(f"y_true and y_pred must hold labels in [0, {n_classes - 1}] (n_classes={n_classes})")
    tp = np.bincount(y[y == p], minlength=n_classes).astype(np.float64)
    return tp, np.bincount(p, minlength=n_classes).astype(np.float64), np.bincount(y, minlength=n_classes).astype(
        np.float64)


def per_class_precision(y_true, y_pred, *, n_classes: int) -> np.ndarray:
    """Precision of each class (NaN for a class never predicted), as sklearn's precision_score(average=None)."""
    tp, predicted, _ = _confusion_counts(y_true, y_pred, n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / predicted


def macro_f1(y_true, y_pred, *, n_classes: int) -> float:
    """Unweighted mean over all n_classes of F1_c = 2 TP / (2 TP + FP + FN); 0 for a class absent from both."""
    tp, predicted, true = _confusion_counts(y_true, y_pred, n_classes)
    denominator = predicted + true                     # 2 TP + FP + FN
    f1 = np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(f1.mean())


def g_mean(y_true, y_pred, *, n_classes: int) -> float:
    """Geometric mean of the per-class recalls over the classes present in y_true (0 if one recall is 0)."""
    tp, _, true = _confusion_counts(y_true, y_pred, n_classes)
    recall = tp[true > 0] / true[true > 0]
    return float(np.prod(recall) ** (1 / recall.size))


def _scores_2d(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = _tensor(y_true, torch.int64).numpy()
    s = _tensor(scores, torch.float64).numpy()
    if s.ndim != 2 or y.ndim != 1 or s.shape[0] != y.shape[0] or y.size == 0:
        raise ValueError(f"scores must be shaped (n_samples, n_classes) with n_samples = len(y_true) > 0; "
                         f"got scores {s.shape} and y_true {y.shape}")
    if y.min() < 0 or y.max() >= s.shape[1]:
        raise ValueError(f"y_true holds labels outside [0, {s.shape[1] - 1}] (the scores' last dimension)")
    return y, s


def per_class_average_precision(y_true, scores) -> np.ndarray:
    """One-vs-rest average precision of each class, sum over thresholds of (R_n - R_n-1) P_n, ties
    as one threshold (scikit-learn's average_precision_score); NaN for a class absent from y_true."""
    y, s = _scores_2d(y_true, scores)
    n, n_classes = s.shape
    order = np.argsort(-s, axis=0, kind="stable")                      # (n, C), descending score
    ordered = np.take_along_axis(s, order, 0)
    positive = y[order] == np.arange(n_classes)                        # label at each sorted slot
    tp = np.cumsum(positive, 0)
    # last slot of each slot's tie group: precision is read there (one threshold per distinct score)
    group_end = np.concatenate([ordered[1:] != ordered[:-1], np.ones((1, n_classes), bool)], 0)
    last = np.where(group_end, np.arange(n)[:, None], n)
    last = np.minimum.accumulate(last[::-1], 0)[::-1]
    precision_at_end = np.take_along_axis(tp, last, 0) / (last + 1)
    n_pos = positive.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (precision_at_end * positive).sum(0) / n_pos


def macro_average_precision(y_true, scores) -> float:
    """Mean one-vs-rest average precision (PR-AUC) over the classes present in y_true."""
    return float(np.nanmean(per_class_average_precision(y_true, scores)))


def expected_calibration_error(y_true, probabilities, *, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over equal-width bins (lo, hi] of confidence of |B|/n |accuracy(B) - confidence(B)|.

    probabilities: rows in [0, 1] summing to 1 (softmax outputs); confidence is the row maximum.
    """
    y, p = _scores_2d(y_true, probabilities)
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if (p < 0).any() or (p > 1).any() or not np.allclose(p.sum(1), 1, atol=1e-6):
        raise ValueError("probabilities must be rows in [0, 1] summing to 1 (e.g. softmax outputs)")
    confidence, correct = p.max(1), (p.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, confidence, n_bins))  # |B| |acc - conf|
    return float(gap.sum() / y.size)


def all_metrics(y_true, scores, *, priors=None, threshold: bool = False) -> dict:
    """Every test metric of one network's scores (softmax outputs, (n, C)) as name -> value.

    With priors, `thresholded_accuracy` is the accuracy of scores / priors; with threshold=True
    (a '-thresh' method) every metric is of scores / priors (renormalised for ECE). Per-class
    values are lists (JSON-ready).
    """
    y, s = _scores_2d(y_true, scores)
    n_classes = s.shape[1]
    if threshold and priors is None:
        raise ValueError("threshold=True needs priors (the training class frequencies)")
    used = threshold_scores(s, priors) if threshold else s
    pred = used.argmax(1)
    out = dict(roc_auc=roc_auc_ovr(y, used), accuracy=accuracy(y, used),
               balanced_accuracy=balanced_accuracy(y, pred, n_classes=n_classes),
               macro_f1=macro_f1(y, pred, n_classes=n_classes),
               macro_average_precision=macro_average_precision(y, used),
               g_mean=g_mean(y, pred, n_classes=n_classes),
               ece=expected_calibration_error(y, used / used.sum(1, keepdims=True)),
               per_class_recall=per_class_recall(y, pred, n_classes=n_classes).tolist(),
               per_class_precision=per_class_precision(y, pred, n_classes=n_classes).tolist())
    if priors is not None:
        out["thresholded_accuracy"] = accuracy(y, threshold_scores(s, priors))
    return out
