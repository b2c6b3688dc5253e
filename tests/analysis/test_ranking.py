"""imbalance.analysis.ranking: average ranks, Friedman and Nemenyi's critical difference, pinned against
Demšar (2006)'s Table 5 and formula and a hand-computed Friedman statistic."""
import math

import numpy as np
import pandas as pd
import pytest
from imbalance.analysis import ranking


def grid(means: dict) -> pd.DataFrame:
    """One network per (point, method) with the given ROC AUC: {method: [value per point]}."""
    return pd.DataFrame([dict(study="s", point_id=f"p{i}", dataset="mnist", imbalance="step", rho=10.0 * (i + 1),
                              mu=0.5, level=None, method=m, repeat=0, roc_auc=v, diverged=0)
                         for m, vs in means.items() for i, v in enumerate(vs)])


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (10, 3.164)])
def test_nemenyi_critical_difference_is_demsars_table_and_formula(k, q):
    n = 12
    assert ranking.nemenyi_critical_difference(k, n) == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * n)), abs=2e-3)


def test_average_ranks_and_friedman_by_hand():
    # 4 points, 3 methods; ranks per point (1 = best): ros 1,1,2,1; baseline 2,3,1,2; rus 3,2,3,3
    records = grid({"baseline": [0.90, 0.80, 0.95, 0.85], "ros": [0.95, 0.90, 0.93, 0.90],
                    "rus": [0.85, 0.82, 0.70, 0.80]})
    r = ranking.rank_methods(records)
    assert dict(r.average_ranks) == {"ros": 1.25, "baseline": 2.0, "rus": 2.75}
    # Friedman: 12 N / (k (k+1)) * (sum R_j^2 - k (k+1)^2 / 4) = 12*4/12 * (1.5625 + 4 + 7.5625 - 12) = 4.5
    assert r.statistic == pytest.approx(4.5) and r.p_value == pytest.approx(math.exp(-4.5 / 2))   # chi2, 2 df
    assert r.n_points == 4 and r.n_left_out == 0
    assert r.critical_difference == pytest.approx(2.343 * math.sqrt(3 * 4 / 24), abs=2e-3)
    assert r.cliques == (("ros", "baseline", "rus"),)            # rus - ros = 1.5 < CD = 1.66: one group
    table = ranking.ranking_table(r)
    assert list(table["method"]) == ["ros", "baseline", "rus"]


def test_points_missing_a_method_are_left_out_and_counted():
    records = grid({"baseline": [0.9, 0.8, 0.7], "ros": [0.95, 0.85, 0.75], "rus": [0.8, 0.7, 0.6]})
    records = records[~((records["method"] == "rus") & (records["point_id"] == "p2"))]
    r = ranking.rank_methods(records)
    assert (r.n_points, r.n_left_out) == (2, 1)
    assert "; 1 point left out (a method has no mean there)" in ranking.ranking_text(r)
