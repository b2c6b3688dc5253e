"""Loss terms as per-network tensors, and the one loss function that consumes them.

A method's `registry.Loss` becomes `LossTerms` for one network: class weights (before and after a
deferred switch iteration), logit offsets, LDAM margins and scale, and a focal gamma.  The trainer
calls `class_loss(logits, y, **terms.at(t))` each step; the batched trainer stacks the terms of K
networks along dim 0 and vmaps the same function, so networks with different losses (and plain
cross-entropy ones) train in one job.

Weights, offsets and margins come from the class counts n_c of the network's imbalanced training
subset (a class absent from it counts as 1, so no weight or log-prior is infinite).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from imbalance.registry import Loss


def class_weights(counts, *, weights: str, beta: float = 0.9999) -> np.ndarray:
    """Per-class weights, normalised to mean 1 over classes (float64).

    'inverse': 1 / n_c.  'class-balanced' (Cui et al. 2019): (1 - beta) / (1 - beta^n_c), the
    inverse of the effective number of examples; beta = 0 gives 1 for every class.  'none': ones.
    """
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if weights == "none":
        w = np.ones_like(n)
    elif weights == "inverse":
        w = 1.0 / n
    elif weights == "class-balanced":
        w = (1.0 - beta) / (1.0 - beta ** n)
    else:
        raise ValueError(f"weights must be 'none', 'inverse' or 'class-balanced', got {weights!r}")
    return w / w.mean()


def ldam_margins(counts, *, max_margin: float) -> np.ndarray:
    """LDAM margins (Cao et al. 2019): delta_c proportional to n_c^(-1/4), the largest = max_margin."""
    m = np.maximum(np.asarray(counts, dtype=np.float64), 1.0) ** -0.25
    return m * (max_margin / m.max())


@dataclass(frozen=True)
class LossTerms:
    """One network's loss terms; all tensors are (C,) and of the training dtype."""
    weights: torch.Tensor        # before iteration `switch` (ones for deferred re-weighting)
    late_weights: torch.Tensor   # from iteration `switch` on
    switch: int                  # first iteration of late_weights (>= iterations: never)
    offsets: torch.Tensor        # added to the logits: tau * log(prior)
    margins: torch.Tensor        # subtracted from the true class's logit
    scale: float                 # multiplies the adjusted logits
    gamma: float                 # focal exponent
    sigmoid: float = 0.0         # 1: the focal loss over C one-vs-rest sigmoids (Cui et al.); 0: over the softmax
    per_batch: float = 0.0       # 1: the weighted sum over the batch size (Cui et al.); 0: over the summed weights
    late_lr: float = 1.0         # the learning rate's factor from iteration `switch` on (Cao et al.'s DRW drop)

    def at(self, iteration: int) -> dict:
        """Keyword arguments of `class_loss` for the update of `iteration`."""
        w = self.late_weights if iteration >= self.switch else self.weights
        scalar = lambda v: torch.tensor(v, dtype=w.dtype, device=w.device)   # noqa: E731
        return dict(weights=w, offsets=self.offsets, margins=self.margins, scale=scalar(self.scale),
                    gamma=scalar(self.gamma), sigmoid=scalar(self.sigmoid), per_batch=scalar(self.per_batch))

    def lr_factor(self, iteration: int) -> float:
        """The factor of the recipe's learning rate for the update of `iteration`."""
        return self.late_lr if iteration >= self.switch else 1.0

    def to(self, device=None, dtype=None) -> "LossTerms":
        move = lambda t: t.to(device=device, dtype=dtype)   # noqa: E731
        return LossTerms(move(self.weights), move(self.late_weights), self.switch, move(self.offsets),
                         move(self.margins), self.scale, self.gamma, self.sigmoid, self.per_batch, self.late_lr)


def loss_terms(loss: Loss, counts, *, iterations: int, dtype=torch.float64) -> LossTerms | None:
    """A network's terms from its method's `Loss` and its training subset's class counts;
    None for plain cross-entropy (the trainer then calls F.cross_entropy, as before)."""
    if loss.plain:
        return None
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size < 2 or (n < 0).any():
        raise ValueError(f"counts must be the training subset's per-class counts (>= 2 classes), got {n.tolist()}")
    as_t = lambda a: torch.as_tensor(a, dtype=dtype)   # noqa: E731
    w = class_weights(n, weights=loss.weights, beta=loss.beta)
    ones = np.ones_like(n)
    switch = int(round((1.0 - loss.deferred) * iterations)) if loss.deferred else 0
    prior = np.maximum(n, 1.0) / np.maximum(n, 1.0).sum()
    return LossTerms(weights=as_t(ones if loss.deferred else w), late_weights=as_t(w), switch=switch,
                     offsets=as_t(loss.logit_tau * np.log(prior)),
                     margins=as_t(ldam_margins(n, max_margin=loss.max_margin) if loss.max_margin else 0 * n),
                     scale=float(loss.scale), gamma=float(loss.focal_gamma),
                     sigmoid=float(loss.focal_form == "sigmoid"), per_batch=float(loss.reduction == "batch"),
                     late_lr=float(loss.deferred_lr))


def class_loss(logits: torch.Tensor, y: torch.Tensor, *, weights, offsets, margins, scale, gamma,
               sigmoid=0.0, per_batch=0.0) -> torch.Tensor:
    """The loss of a batch of logits (B, C) with labels y (B,):

        z' = scale * (logits + offsets - onehot(y) * margins[y])
        l_i = (1 - p'_y)^gamma * -log p'_y                                  (sigmoid = 0: softmax p')
        l_i = sum_j exp(-gamma (t_ij z'_ij + softplus(-z'_ij))) BCE(z'_ij, t_ij)   (sigmoid = 1; t = onehot(y))
        loss = sum_i weights[y_i] l_i / sum_i weights[y_i]                  (per_batch = 0)
        loss = sum_i weights[y_i] l_i / B                                   (per_batch = 1)

    The sigmoid form is Cui et al.'s focal loss (their `focal_loss`, with its numerically stable modulator
    (1 - q)^gamma, q the sigmoid of the right sign).  gamma = 0, zero offsets and margins, scale 1, equal
    weights and the softmax form give F.cross_entropy; any weights give F.cross_entropy(weight=weights).
    vmap-able over all arguments.
    """
    onehot = (y.unsqueeze(-1) == torch.arange(logits.shape[-1], device=logits.device)).to(logits.dtype)
    z = scale * (logits + offsets - onehot * margins)
    log_p = torch.log_softmax(z, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
    # (1 - p_y)^gamma via -expm1(log p_y); clamped so gamma = 0 at p_y = 1 has gradient 0, not 0 * inf
    soft = (-torch.expm1(log_p)).clamp_min(torch.finfo(logits.dtype).tiny) ** gamma * -log_p
    bce = F.softplus(z) - onehot * z                                   # BCE with logits, per class
    sig = (torch.exp(-gamma * (onehot * z + F.softplus(-z))) * bce).sum(-1)
    as_flag = lambda v: torch.as_tensor(v, device=logits.device) > 0   # noqa: E731  (a float or a 0-d tensor)
    per_example = torch.where(as_flag(sigmoid), sig, soft)
    w = weights.gather(-1, y)
    denominator = torch.where(as_flag(per_batch), torch.full_like(w.sum(-1), y.shape[-1]), w.sum(-1))
    return (w * per_example).sum(-1) / denominator


def network_loss(logits: torch.Tensor, y: torch.Tensor, terms: LossTerms | None, iteration: int) -> torch.Tensor:
    """The loss the single-network trainer minimises at `iteration`: plain cross-entropy without terms."""
    if terms is None:
        return F.cross_entropy(logits, y)
    return class_loss(logits, y, **terms.at(iteration))


def neutral_terms(n_classes: int) -> LossTerms:
    """Terms under which class_loss is cross-entropy (for a plain network in a group with loss-level ones)."""
    ones, zeros = torch.ones(n_classes, dtype=torch.float64), torch.zeros(n_classes, dtype=torch.float64)
    return LossTerms(ones, ones, 0, zeros, zeros, 1.0, 0.0)
