"""Each built-in method's training loss against a formula written from its authors' code (numpy, float64,
independent of imbalance.training.losses), on fixed logits, labels and class counts, to 1e-6.  These are the
numerical checks of the method cards (docs/methods.md)."""
import math

import numpy as np
import pytest
import torch

from imbalance.registry import METHODS, get_method
from imbalance.training.losses import loss_terms, network_loss

COUNTS = np.array([5000, 5000, 5, 5000, 5, 5, 5000, 5, 5, 5])      # a step subset: rho 1000, mu 0.6
C = len(COUNTS)
ITERATIONS = 100
rng = np.random.default_rng(0)
LOGITS = rng.normal(scale=3.0, size=(64, C))
Y = rng.integers(0, C, size=64)
PRIOR = COUNTS / COUNTS.sum()


def ours(name: str, iteration: int = 0, logits=LOGITS) -> float:
    terms = loss_terms(get_method(name).loss, COUNTS, iterations=ITERATIONS)
    return float(network_loss(torch.tensor(logits), torch.tensor(Y), terms, iteration))


def log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def ce(z, y, weight=None):
    """torch.nn.functional.cross_entropy(z, y, weight=weight): the weighted mean over the summed weights."""
    nll = -log_softmax(z)[np.arange(len(y)), y]
    w = np.ones(C) if weight is None else weight
    return float((w[y] * nll).sum() / w[y].sum())


def cui_weights(beta=0.9999):
    """richardaecn/class-balanced-loss, src/cifar_main.py ~428-430: (1 - beta) / (1 - beta^n), summing to C."""
    w = (1.0 - beta) / (1.0 - np.power(beta, COUNTS))
    return w / w.sum() * C


def test_baseline_is_plain_cross_entropy():
    assert ours("baseline") == pytest.approx(ce(LOGITS, Y), abs=1e-6)


def test_cb_ce_is_cui_et_al_softmax_loss_over_the_batch_size():
    """cifar_main.py ~331-333: tf.losses.softmax_cross_entropy(weights=w_y), whose default reduction sums
    w_i ce_i and divides by the number of non-zero weights, the batch size."""
    w = cui_weights()
    nll = -log_softmax(LOGITS)[np.arange(64), Y]
    assert ours("cb-ce") == pytest.approx(float((w[Y] * nll).sum() / 64), abs=1e-6)


def test_cb_focal_is_cui_et_al_sigmoid_focal_loss_over_the_positives():
    """cifar_main.py ~226-266 and ~342: sum over all B x C sigmoid outputs of w_y * modulator * BCE, with
    modulator exp(-gamma t z - gamma log1p(exp(-z))), divided by the number of positive labels (B); gamma 1."""
    t = np.eye(C)[Y]
    z = LOGITS
    bce = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    modulator = np.exp(-1.0 * t * z - 1.0 * np.log1p(np.exp(-z)))
    alpha = cui_weights()[Y][:, None] * np.ones((1, C))
    assert ours("cb-focal") == pytest.approx(float((alpha * modulator * bce).sum() / t.sum()), abs=1e-6)
    m = get_method("cb-focal")
    assert m.bias_init == "sigmoid-uniform"


def test_ldam_drw_is_cao_et_al_ldam_on_a_cosine_head_with_deferred_weights():
    """kaidic/LDAM-DRW losses.py LDAMLoss: m_c = 1/n_c^(1/4) scaled to max 0.5, F.cross_entropy(s (x - m_y
    onehot), weight) with s = 30 on the cosine logits x; cifar_train.py ~199-206: weights 1 before the switch
    (epoch 160 of 200), class-balanced (beta 0.9999, summing to C) after.  Our head outputs s x."""
    cosine = np.tanh(LOGITS / 3)                     # cosine logits in [-1, 1]
    m = 1.0 / np.sqrt(np.sqrt(COUNTS))
    m = m * (0.5 / m.max())
    shifted = 30 * (cosine - m[Y][:, None] * np.eye(C)[Y])
    assert ours("ldam-drw", 0, logits=30 * cosine) == pytest.approx(ce(shifted, Y), abs=1e-6)
    assert ours("ldam-drw", ITERATIONS - 1, logits=30 * cosine) == pytest.approx(ce(shifted, Y, cui_weights()),
                                                                                 abs=1e-6)
    terms = loss_terms(get_method("ldam-drw").loss, COUNTS, iterations=ITERATIONS)
    assert terms.switch == 80 and terms.lr_factor(79) == 1.0 and terms.lr_factor(80) == 0.01
    assert get_method("ldam-drw").head == "cosine" and get_method("ldam-drw").head_scale == 30


def test_drw_switches_to_class_balanced_cross_entropy_with_the_lr_drop():
    assert ours("drw", 79) == pytest.approx(ce(LOGITS, Y), abs=1e-6)
    assert ours("drw", 80) == pytest.approx(ce(LOGITS, Y, cui_weights()), abs=1e-6)
    assert loss_terms(get_method("drw").loss, COUNTS, iterations=ITERATIONS).lr_factor(80) == 0.01


def test_focal_is_cao_et_al_focal_loss_formula_with_gamma_two():
    """kaidic/LDAM-DRW losses.py focal_loss: mean of (1 - p)^gamma * CE, p = exp(-CE); Lin et al.'s gamma 2."""
    nll = -log_softmax(LOGITS)[np.arange(64), Y]
    assert ours("focal") == pytest.approx(float(((1 - np.exp(-nll)) ** 2 * nll).mean()), abs=1e-6)


def test_la_loss_and_balanced_softmax_add_the_log_prior_to_the_logits():
    """Menon et al. (google-research logit_adjustment): CE(z + tau log pi), tau 1; Ren et al.'s balanced
    softmax: CE(z + log n_c), the same up to a constant shift of every logit."""
    assert ours("la-loss") == pytest.approx(ce(LOGITS + np.log(PRIOR), Y), abs=1e-6)
    assert ours("balanced-softmax") == pytest.approx(ce(LOGITS + np.log(COUNTS), Y), abs=1e-6)


def test_weighted_ce_weights_by_inverse_frequency():
    w = 1.0 / COUNTS
    assert ours("weighted-ce") == pytest.approx(ce(LOGITS, Y, w / w.mean()), abs=1e-6)


def test_every_trained_loss_method_has_a_pinned_check_here():
    pinned = {"baseline", "cb-ce", "cb-focal", "ldam-drw", "drw", "focal", "la-loss", "balanced-softmax",
              "weighted-ce"}
    loss_methods = {n for n, m in METHODS.items() if not m.loss.plain or n == "baseline"}
    assert loss_methods == pinned


def test_the_sigmoid_focal_loss_stays_finite_for_extreme_logits():
    big = np.where(np.eye(C)[Y] > 0, -80.0, 80.0)    # confidently wrong everywhere
    value = ours("cb-focal", logits=big)
    assert math.isfinite(value) and value > 0
