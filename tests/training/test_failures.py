"""Failed networks (issue 23): a non-finite loss, an exploded loss or constant outputs; each rule fires on a
hand-made case and not on a healthy one.  And the heads today's methods bring (cosine, output-bias init)."""
import math

import numpy as np
import torch

from imbalance.registry import logit_adjusted_scores
from imbalance.training.loop import CONSTANT, EXPLODED, EXPLOSION, NON_FINITE, IntervalLog
from imbalance.training.metrics import roc_auc_ovr, threshold_scores
from imbalance.training.models import CosineHead, lenet5, set_output_bias, with_cosine_head
from imbalance.training.pipeline import constant_outputs


def _log(losses: list[list[float]], interval: int = 2) -> IntervalLog:
    log = IntervalLog(len(losses[0]), iterations=len(losses), device="cpu")
    log.losses[:] = torch.tensor(losses)
    for start in range(0, len(losses), interval):
        log.close_interval(start, start + interval, examples_per_step=1, lrs=[0.1] * len(losses[0]))
    return log


def test_a_nan_loss_fails_its_network_at_that_step_and_only_it():
    log = _log([[2.0, 2.0], [1.5, 1.5], [1.0, math.nan], [0.9, 0.8]])
    assert log.failure == [None, NON_FINITE] and log.diverged_at == [None, 2]
    assert len(log.curves[0]) == 2 and len(log.curves[1]) == 1


def test_a_loss_above_explosion_times_the_first_interval_fails_and_a_merely_higher_one_does_not():
    first = 2.0
    log = _log([[first, first], [first, first], [first * EXPLOSION * 1.01, first * EXPLOSION * 0.99],
                [first * EXPLOSION * 1.01, first * EXPLOSION * 0.99]])
    assert log.failure == [EXPLODED, None] and log.diverged_at == [2, None]


def test_constant_scores_over_the_test_set_are_a_failure_and_varying_ones_are_not():
    constant = np.tile([0.1] * 10, (50, 1))
    assert constant_outputs(constant) and CONSTANT == "constant outputs"
    varying = constant.copy()
    varying[3, 2] += 1e-6
    assert not constant_outputs(varying)


def test_the_cosine_head_is_scale_times_the_cosine_of_features_and_class_weights():
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 3)
    head = CosineHead(layer, scale=30.0)
    x = torch.randn(4, 6)
    expected = 30.0 * (x / x.norm(dim=1, keepdim=True)) @ (layer.weight / layer.weight.norm(dim=1, keepdim=True)).T
    assert torch.allclose(head(x), expected, atol=1e-5) and head(x).abs().max() <= 30.0 + 1e-4


def test_a_cosine_lenet_keeps_the_paired_initial_weights_of_every_other_layer():
    plain, cosine = lenet5(seed=3), with_cosine_head(lenet5(seed=3), scale=30.0)
    for name, p in plain.named_parameters():
        if name != "fc2.bias":
            assert torch.equal(p, dict(cosine.named_parameters())[name]), name
    assert "fc2.bias" not in dict(cosine.named_parameters())


def test_cui_et_al_output_bias_starts_every_sigmoid_at_one_over_c():
    model = set_output_bias(lenet5(seed=0), -math.log(10 - 1))
    out = torch.sigmoid(model.fc2.bias)
    assert torch.allclose(out, torch.full((10,), 0.1), atol=1e-6)


def test_thresholding_cannot_change_one_vs_rest_roc_auc_but_posthoc_logit_adjustment_can():
    """Dividing each class's column by its prior keeps that column's order, so one-vs-rest ROC AUC is
    unchanged; logit adjustment renormalises each row (a softmax of log p - log prior), which reorders a
    column's scores across rows.  Fixed scores, hand-checkable: rows (0.5, 0.3, 0.2) and (0.2, 0.5, 0.3)..."""
    scores = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5], [0.6, 0.1, 0.3], [0.1, 0.6, 0.3]])
    y = np.array([0, 1, 2, 2, 1])
    priors = np.array([0.90, 0.09, 0.01])
    plain = roc_auc_ovr(y, scores)
    assert roc_auc_ovr(y, threshold_scores(scores, priors)) == plain
    adjusted = logit_adjusted_scores(scores, priors, tau=1.0)
    assert abs(roc_auc_ovr(y, adjusted) - plain) > 0.01
