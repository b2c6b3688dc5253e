"""imbalance.analysis.planning: repeats needed per open comparison, pinned against a hand computation
and scipy's noncentral t; the internal pilot design's error rates by simulation through the real
decision code (stats.compare_paired, stats.tost, stats.verdict)."""
import math
from pathlib import Path

import numpy as np
import pytest
from imbalance.analysis import planning, stats
from scipy import stats as st

ROOT = Path(__file__).resolve().parents[2]
ALPHA = 0.05


def test_repeats_needed_matches_the_formula_and_gives_the_power():
    sd, margin = 0.004, 0.005
    need = planning.repeats_needed(sd, margin=margin)
    n = int(need.equivalence)
    q = lambda k: st.t.ppf(0.95, k - 1) + st.t.ppf(0.9, k - 1)      # noqa: E731  (alpha 0.05, beta/2 = 0.1)
    assert n >= (q(n) * sd / margin) ** 2 and n - 1 < (q(n - 1) * sd / margin) ** 2   # the smallest such n
    # the TOST power at that n with a true difference of 0, from the noncentral t (scipy): at least ~80%
    se, df = sd / math.sqrt(n), n - 1
    crit = st.t.ppf(0.95, df)
    # both one-sided tests reject: T + margin/se > crit and T - margin/se < -crit, T ~ t(df) central
    power = 1 - st.nct.cdf(crit, df, margin / se) - st.nct.sf(-crit, df, -margin / se)
    assert power >= 0.75
    shown = planning.repeats_needed(sd, margin=margin, difference=0.003)
    k = int(shown.difference)
    assert k >= ((st.t.ppf(0.975, k - 1) + st.t.ppf(0.8, k - 1)) * sd / 0.003) ** 2
    assert planning.repeats_needed(sd, margin=margin, difference=0.0).difference == math.inf
    assert planning.repeats_needed(sd, margin=margin, m=10).equivalence > n            # Holm's family costs


def test_plan_repeats_runs_on_the_committed_quick_study_and_prices_it():
    from imbalance.analysis.frames import load_study
    records, _ = load_study("quick", ROOT / "outputs")
    plan = planning.plan_repeats(records)
    assert not plan.empty and set(plan["verdict"]) == {"undecided"}
    assert (plan["needed"] >= plan["n"]).all() or (plan["add"] == 0).any()
    assert (plan["seconds"].dropna() >= 0).all()
    text = planning.format_plan(plan, study="quick")
    assert "to decide them all:" in text and "repeats to show equivalence" in text


def _simulate(true_difference, *, n_sim=2000, sd=0.004, margin=0.005, max_repeats=9, seed=0):
    """n_sim comparisons with paired differences ~ N(true_difference, sd): a pilot of 3, then the
    internal pilot's final n (at most max_repeats: t intervals, paired t / Wilcoxon), decided once."""
    rng = np.random.default_rng(seed)
    draws = rng.normal(true_difference, sd, size=(n_sim, max_repeats))     # vectorised: all draws at once
    verdicts, ns = [], []
    for row in draws:
        v, n = planning.decide_after_pilot(row[:3], lambda k, row=row: row[3:3 + k], margin=margin,
                                           max_repeats=max_repeats)
        verdicts.append(v)
        ns.append(n)
    return np.array(verdicts, dtype=object), np.array(ns)


def test_internal_pilot_keeps_false_better_worse_at_most_alpha_under_the_null():
    verdicts, ns = _simulate(0.0)
    rate = np.isin(verdicts, ["better", "worse"]).mean()
    mc = math.sqrt(ALPHA * (1 - ALPHA) / len(verdicts))            # Monte-Carlo standard error at alpha
    assert rate <= ALPHA + 2 * mc, rate
    assert len(set(ns)) > 1 and ns.max() <= 9 and ns.min() >= 3     # the design did re-estimate n


def test_internal_pilot_keeps_false_equivalent_at_most_alpha_at_the_margin():
    verdicts, _ = _simulate(0.005)                                  # true difference exactly +delta
    rate = (verdicts == "equivalent").mean()
    mc = math.sqrt(ALPHA * (1 - ALPHA) / len(verdicts))
    assert rate <= ALPHA + 2 * mc, rate
    lower, _ = _simulate(-0.005, seed=1)
    assert (lower == "equivalent").mean() <= ALPHA + 2 * mc


def test_blinded_sd_is_the_second_moment_about_zero():
    assert planning.blinded_sd([0.003, -0.004, 0.0]) == pytest.approx(math.sqrt((9e-6 + 16e-6) / 2))
    assert planning.blinded_sd([0.003, -0.004, 0.0]) == planning.blinded_sd([-0.003, 0.004, 0.0])   # blind to sign


def test_internal_pilot_targets_depend_on_the_blinded_variance_only():
    def recs(shift):
        rng = np.random.default_rng(3)
        base = 0.9 + rng.normal(0, 0.01, 3)
        noise = rng.normal(0, 0.004, 3)
        return [dict(study="s", point_id="p", dataset="mnist", imbalance="step", rho=10.0, mu=0.5, level=None,
                     method=m, repeat=r, roc_auc=v, diverged=0)
                for m, vs in (("baseline", base), ("ros", base + shift + noise)) for r, v in enumerate(vs)]
    a = planning.internal_pilot_targets(recs(0.0), max_repeats=50)
    b = planning.internal_pilot_targets(recs(0.02), max_repeats=50)      # same variance, another difference
    assert 3 < a["p"] <= b["p"] <= 50       # the blinded sd grows with the difference: never fewer repeats
    assert planning.internal_pilot_targets(recs(0.0), max_repeats=4) == {"p": 4}


def test_a_repeat_costs_the_points_wall_time_over_its_repeats_and_post_hoc_records_cost_nothing():
    """Networks train batched and a post-hoc record carries its base network's seconds: summing every
    record's train_seconds counted the baseline once per re-scoring (issue 28's cost figures)."""
    import pandas as pd
    rows = [dict(point_id="p", level=None, method=m, repeat=r, train_seconds=s)
            for r in range(3) for m, s in (("baseline", 10.0), ("baseline-thresh", 10.0), ("baseline-la", 10.0),
                                            ("ros", 20.0))]
    records = pd.DataFrame(rows)
    assert planning.repeat_seconds(records).to_dict() == {"p": 30.0}          # baseline and ros, once each
    assert planning.repeat_seconds(records, point_seconds={"p": 45.0, "q": None}).to_dict() == {"p": 15.0}


def test_a_grown_points_wall_time_is_divided_by_the_repeats_its_params_file_trained_not_its_repeats_now():
    """--until-decided grows a point to 10 repeats, but its recorded wall time stays its first attempt's
    (3 repeats, as the params file gives them): 45 s over 3, not over 10."""
    import pandas as pd
    from imbalance.study.params import expand_grid, load_params
    params = load_params(ROOT / "params" / "real" / "mnist-step-v2.yaml")
    grid = expand_grid(params)
    attempt = planning.attempt_repeats(grid)
    assert len(attempt) == 12 and set(attempt.values()) == {3}
    grown = grid[0].point_id
    records = pd.DataFrame([dict(point_id=grown, level=None, method="baseline", repeat=r, train_seconds=1.0)
                            for r in range(10)])
    assert planning.repeat_seconds(records, point_seconds={grown: 45.0}).to_dict() == {grown: 4.5}
    assert planning.repeat_seconds(records, point_seconds={grown: 45.0},
                                   attempt_repeats=attempt).to_dict() == {grown: 15.0}


def test_the_time_to_decide_is_the_points_rerun_at_its_final_n_as_the_runner_spends_it():
    """extend_repeats re-trains repeats 0..n0-1 with the new ones: reaching n costs n repeats' time, not n - n0."""
    from imbalance.analysis.frames import load_study
    records, _ = load_study("quick", ROOT / "outputs")
    repeats = records.groupby("point_id")["repeat"].nunique()
    plan = planning.plan_repeats(records, point_seconds={p: 10.0 * n for p, n in repeats.items()})  # 10 s a repeat
    grown = plan[(plan["add"] > 0) & np.isfinite(plan["needed"])]
    assert len(grown) and (grown["seconds"] == grown["needed"] * 10.0).all()
    assert (grown["seconds"] > grown["add"] * 10.0).all()
    assert planning.rerun_seconds(0, 10.0) == 0.0 and planning.rerun_seconds(7, 10.0) == 70.0
