"""The loss-level methods as terms of one loss function: each pinned against cross-entropy, torch's
weighted cross-entropy or hand-worked numbers, in float64."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from imbalance.registry import METHODS, Loss, get_method, logit_adjusted_scores
from imbalance.sampling import class_aware_indices
from imbalance.training.losses import class_loss, class_weights, ldam_margins, loss_terms, network_loss
from scipy.stats import binomtest

COUNTS = np.array([400, 400, 40, 40, 4])     # a step-imbalanced subset: majority 400, minority 40 and 4


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (64,), generator=g)
    return logits, y


def _loss(loss: Loss, logits, y, iteration=0, counts=COUNTS, iterations=100):
    return network_loss(logits, y, loss_terms(loss, counts, iterations=iterations), iteration)


def _neutral(**terms):
    """class_loss's arguments for plain cross-entropy on 5 classes, with some replaced."""
    one = lambda v: torch.tensor(v, dtype=torch.float64)   # noqa: E731
    return {**dict(weights=torch.ones(5, dtype=torch.float64), offsets=torch.zeros(5, dtype=torch.float64),
                   margins=torch.zeros(5, dtype=torch.float64), scale=one(1.0), gamma=one(0.0)), **terms}


def test_focal_with_gamma_zero_equals_cross_entropy(batch):
    logits, y = batch
    assert abs(float(class_loss(logits, y, **_neutral(gamma=torch.tensor(0.0, dtype=torch.float64)))
                     - F.cross_entropy(logits, y))) < 1e-12


def test_focal_gamma_two_matches_the_hand_written_formula(batch):
    logits, y = batch
    p = torch.softmax(logits, -1)[torch.arange(64), y]
    expected = (-(1 - p) ** 2 * torch.log(p)).mean()
    assert abs(float(_loss(get_method("focal").loss, logits, y) - expected)) < 1e-12


def test_class_balanced_ce_with_beta_zero_equals_cross_entropy(batch):
    logits, y = batch
    assert abs(float(_loss(Loss(weights="class-balanced", beta=0.0), logits, y) - F.cross_entropy(logits, y))) < 1e-12


def test_logit_adjusted_loss_with_tau_zero_equals_cross_entropy(batch):
    logits, y = batch
    prior = torch.as_tensor(COUNTS / COUNTS.sum(), dtype=torch.float64)
    assert abs(float(class_loss(logits, y, **_neutral(offsets=0.0 * prior.log())) - F.cross_entropy(logits, y))) < 1e-12
    la = loss_terms(get_method("la-loss").loss, COUNTS, iterations=10)        # tau = 1: the offsets are log prior
    assert torch.allclose(la.offsets, prior.log(), rtol=0, atol=1e-15)


def test_balanced_softmax_equals_logit_adjusted_loss_at_tau_one_exactly(batch):
    logits, y = batch
    a = _loss(get_method("balanced-softmax").loss, logits, y)
    b = _loss(Loss(logit_tau=1.0), logits, y)
    assert get_method("la-loss").loss == Loss(logit_tau=1.0)
    assert torch.equal(a, b)
    # and both are Ren et al.'s form: -log(n_y exp z_y / sum_j n_j exp z_j)
    n = torch.as_tensor(COUNTS, dtype=torch.float64)
    ren = -torch.log(n[y] * logits.exp()[torch.arange(64), y] / (n * logits.exp()).sum(1)).mean()
    assert abs(float(a - ren)) < 1e-12


def test_weighted_ce_equals_torch_cross_entropy_with_weights(batch):
    logits, y = batch
    w = (1 / COUNTS) / (1 / COUNTS).mean()
    expected = F.cross_entropy(logits, y, weight=torch.as_tensor(w))
    assert abs(float(_loss(METHODS["weighted-ce"].loss, logits, y) - expected)) < 1e-12


def test_class_balanced_weights_follow_cui_et_al():
    w = class_weights(COUNTS, weights="class-balanced", beta=0.9999)
    raw = (1 - 0.9999) / (1 - 0.9999 ** COUNTS.astype(float))
    assert np.allclose(w, raw / raw.mean(), rtol=1e-14, atol=0) and abs(w.mean() - 1) < 1e-15
    assert w[4] / w[0] == pytest.approx((1 - 0.9999 ** 400) / (1 - 0.9999 ** 4), rel=1e-12)


def test_ldam_margins_on_hand_worked_counts():
    # n = 16, 1, 81: n^(-1/4) = 1/2, 1, 1/3; scaled so the largest (n = 1) is 0.5
    assert np.allclose(ldam_margins([16, 1, 81], max_margin=0.5), [0.25, 0.5, 1 / 6], rtol=0, atol=1e-15)


def test_ldam_loss_subtracts_the_margin_from_the_true_logit_then_scales():
    logits = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0])
    terms = loss_terms(Loss(max_margin=0.5, scale=2.0), [16, 1, 81], iterations=10)
    z = 2.0 * torch.tensor([2.0 - 0.25, 1.0, 0.0], dtype=torch.float64)
    assert abs(float(network_loss(logits, y, terms, 0) - (torch.logsumexp(z, 0) - z[0]))) < 1e-12


def test_deferred_reweighting_switches_to_class_balanced_weights_after_80_percent(batch):
    logits, y = batch
    terms = loss_terms(get_method("drw").loss, COUNTS, iterations=100)
    assert terms.switch == 80
    assert abs(float(network_loss(logits, y, terms, 79) - F.cross_entropy(logits, y))) < 1e-12
    w = torch.as_tensor(class_weights(COUNTS, weights="class-balanced", beta=0.9999))
    assert abs(float(network_loss(logits, y, terms, 80) - F.cross_entropy(logits, y, weight=w))) < 1e-12


def test_focal_gamma_zero_has_finite_gradients_on_a_confident_network():
    logits = torch.tensor([[800.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    terms = loss_terms(Loss(weights="inverse"), [5, 5], iterations=1)    # gamma = 0, p_y = 1
    (g,) = torch.autograd.grad(network_loss(logits, torch.tensor([0, 1]), terms, 0), logits)
    assert torch.isfinite(g).all()


def test_posthoc_logit_adjustment_at_tau_one_makes_the_thresholding_argmax():
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(10) * 0.3, size=5000)
    priors = rng.dirichlet(np.ones(10))
    la = logit_adjusted_scores(scores, priors, tau=1.0)
    assert np.array_equal(la.argmax(1), (scores / priors).argmax(1))
    assert np.allclose(la.sum(1), 1, atol=1e-12)
    assert np.allclose(logit_adjusted_scores(scores, priors, tau=0.0), scores, atol=1e-15)


def test_class_aware_batches_are_class_uniform_within_binomial_bounds():
    y = np.repeat(np.arange(10), [400] * 5 + [4] * 5)       # rho = 100
    drawn = y[class_aware_indices(y, size=10_000, random_state=0)]
    counts = np.bincount(drawn, minlength=10)
    for c in counts:    # each class's count against Binomial(10,000, 1/10), two-sided at 1%
        assert binomtest(int(c), 10_000, 0.1).pvalue > 0.01, counts


def test_plain_cross_entropy_has_no_terms():
    assert loss_terms(Loss(), COUNTS, iterations=10) is None
    assert all(loss_terms(METHODS[m].loss, COUNTS, iterations=10) is None for m in ("baseline", "ros", "crt"))
