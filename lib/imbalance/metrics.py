"""Metrics: multi-class ROC AUC (one-vs-rest, unweighted mean), accuracy, thresholding, recall.

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
