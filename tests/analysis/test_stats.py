"""imbalance.analysis.stats on hand-made records: every interval, test and correction pinned against scipy
or a hand-worked example; the n rules, dropped diverged pairs and identical methods."""
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from imbalance.analysis import stats
from imbalance.analysis.frames import load_study
from scipy import stats as st

ROOT = Path(__file__).resolve().parents[2]


def records(values: dict, *, point="step_rho=100_mu=0.5", rho=100.0, mu=0.5, metric="roc_auc", diverged=()):
    """Records of one grid point: values = {method: [metric per repeat]} (None = no metric);
    diverged = {(method, repeat)} networks flagged diverged."""
    return [dict(study="s", point_id=point, dataset="mnist", imbalance="step", rho=rho, mu=mu, level=None,
                 method=m, repeat=r, **{metric: v}, diverged=int((m, r) in set(diverged)))
            for m, vs in values.items() for r, v in enumerate(vs)]


def shifted(n, shift, *, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    base = 0.9 + rng.normal(0, 0.02, n)
    return base, base + shift + rng.normal(0, noise, n)


def row(frame, method):
    return frame[frame["method"] == method].iloc[0]


def test_t_interval_and_paired_t_match_scipy_below_six_pairs():
    y, x = shifted(5, 0.02)
    c = stats.compare_paired(x, y)
    d = x - y
    low, high = st.t.interval(0.95, df=4, loc=d.mean(), scale=st.sem(d))    # textbook formula
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high), rel=1e-12)
    assert (c.interval_method, c.test) == ("student-t", "paired-t")
    assert c.p_value == pytest.approx(st.ttest_rel(x, y).pvalue, rel=1e-12)
    assert c.mean_difference == pytest.approx(d.mean()) and c.n_pairs == 5 and c.n_dropped == 0


def test_wilcoxon_p_value_matches_scipy_from_six_pairs():
    y, x = shifted(8, 0.01, seed=3)
    c = stats.compare_paired(x, y)
    assert (c.interval_method, c.test) == ("student-t", "wilcoxon")
    assert c.p_value == pytest.approx(st.wilcoxon(x - y).pvalue, rel=1e-12)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(st.ttest_1samp(x - y, 0).confidence_interval()), rel=1e-12)


def test_bca_interval_matches_scipy_with_fixed_seed_from_ten_pairs():
    y, x = shifted(12, 0.01, seed=5)
    c = stats.compare_paired(x, y, random_state=7)
    ref = st.bootstrap((x - y,), np.mean, method="BCa", n_resamples=9999,
                       rng=np.random.default_rng(7)).confidence_interval     # one-sample on the differences
    assert c.interval_method == "bca-bootstrap"
    assert (c.ci_low, c.ci_high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert stats.compare_paired(x, y, random_state=7) == c                   # seeded: the same again
    assert stats.compare_paired(x, y, random_state=8).ci_low != c.ci_low
    assert c.p_value == pytest.approx(st.wilcoxon(x, y).pvalue, rel=1e-12)


def test_holm_step_down_matches_hand_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 (m=4): 4*0.005=0.02, 3*0.01=0.03, 2*0.03=0.06, max(0.06, 1*0.04)=0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])                # capped at 1
    out = stats.holm([0.01, math.nan, 0.04])                                 # NaN is not a test
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)


def test_holm_correction_spans_the_methods_at_one_point():
    base, _ = shifted(4, 0)
    frame = stats.paired_differences(records({
        "baseline": base, "ros": base + [0.010, 0.012, 0.011, 0.0125],     # t-test p ~ 2e-4
        "rus": base + [0.01, 0.02, 0.005, 0.015],                           # p ~ 0.035
        "two-phase-ros": base + [0.01, -0.01, 0.002, 0.0]}))                # p large
    assert list(frame["method"]) == ["ros", "rus", "two-phase-ros"]
    assert list(frame["p_holm"]) == pytest.approx(list(stats.holm(frame["p_value"])))
    rus = row(frame, "rus")
    assert rus["p_value"] < 0.05 <= rus["p_holm"] and rus["ci_low"] > 0
    assert rus["verdict"] == "undecided"                                    # Holm decides here
    assert row(frame, "ros")["verdict"] == "better"
    assert row(frame, "two-phase-ros")["verdict"] == "undecided"             # nor shown within +-0.005
    assert list(frame["p_equivalent_holm"]) == pytest.approx(list(stats.holm(frame["p_equivalent"])))


def test_verdicts_better_worse_undecided():
    y, better = shifted(8, 0.03, seed=1)
    _, worse = shifted(8, -0.03, seed=2)
    _, same = shifted(8, 0.0, seed=3, noise=0.02)
    frame = stats.paired_differences(records({"baseline": y, "ros": better, "rus": worse, "two-phase-rus": same}))
    assert dict(zip(frame["method"], frame["verdict"])) == {"ros": "better", "rus": "worse", "two-phase-rus": "undecided"}
    assert set(frame["test"]) == {"wilcoxon"} and set(frame["interval_method"]) == {"student-t"}


def test_two_repeats_give_no_interval_no_test_and_say_so():
    frame = stats.paired_differences(records({"baseline": [0.95, 0.98], "ros": [0.96, 0.99]}))
    r = row(frame, "ros")
    assert r["n_pairs"] == 2 and r["note"] == "n=2: too few repeats"
    assert r["verdict"] is None and r["test"] is None and r["interval_method"] is None
    assert math.isnan(r["ci_low"]) and math.isnan(r["p_value"]) and math.isnan(r["p_holm"])
    assert r["mean_difference"] == pytest.approx(0.01)
    interval = stats.method_intervals(records({"baseline": [0.9520, 0.9833]}))
    assert math.isnan(interval["ci_low"].iloc[0]) and interval["note"].iloc[0] == "n=2: too few repeats"  # no range


def test_diverged_networks_drop_their_pairs_and_count_them():
    y, x = shifted(7, 0.02, seed=4)
    lost = [v if r not in (1, 4) else None for r, v in enumerate(x)]
    frame = stats.paired_differences(records({"baseline": y, "ros": lost}, diverged={("ros", 1), ("ros", 4)}))
    r = row(frame, "ros")
    keep = [0, 2, 3, 5, 6]
    assert (r["n_pairs"], r["n_dropped"]) == (5, 2)
    assert r["note"] == "2 pairs dropped: diverged"
    assert r["p_value"] == pytest.approx(st.ttest_rel(x[keep], y[keep]).pvalue, rel=1e-12)   # n=5: paired t
    assert r["mean_difference"] == pytest.approx((x[keep] - y[keep]).mean())
    missing = stats.paired_differences(records({"baseline": y, "ros": x[:6]}))     # repeat 6 never ran
    assert row(missing, "ros")["note"] == "1 pair dropped: missing"


@pytest.mark.parametrize("n", [4, 12])
def test_identical_methods_are_equivalent_cleanly_without_warnings(n):
    base, _ = shifted(n, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = stats.paired_differences(records({"baseline": base, "baseline-thresh": base.copy()}))
        winners = stats.point_winners(records({"baseline": base, "ros": base.copy()}))
    r = row(frame, "baseline-thresh")
    assert r["verdict"] == "equivalent" and r["p_value"] == 1.0 and r["p_equivalent"] == 0.0
    assert (r["ci_low"], r["ci_high"], r["mean_difference"]) == (0.0, 0.0, 0.0)
    assert r["note"] == f"all {n} differences equal 0"
    assert winners["equivalent"].iloc[0] == ("ros",) and winners["undecided"].iloc[0] == ()


def test_tost_matches_scipy_t_and_a_hand_computation():
    d = np.array([0.001, -0.002, 0.003, 0.0005, 0.0015])      # paired differences, n = 5
    mean, se = d.mean(), d.std(ddof=1) / np.sqrt(5)
    # by hand: mean 0.004 / 5 = 0.0008; squared deviations sum to 1.33e-5, so se = sqrt(1.33e-5 / 4 / 5)
    assert (mean, se) == pytest.approx((0.0008, math.sqrt(1.33e-5 / 20)), rel=1e-9)
    e = stats.tost(mean, se, 4, margin=0.005, alpha=0.05)
    # by hand: t_lower = (0.0008 + 0.005) / se, t_upper = (0.0008 - 0.005) / se; p = the larger one-sided p
    by_hand = max(st.t.sf((mean + 0.005) / se, 4), st.t.cdf((mean - 0.005) / se, 4))
    assert e.p_value == pytest.approx(by_hand, rel=1e-12)
    assert e.p_value == pytest.approx(st.ttest_1samp(d, 0.005, alternative="less").pvalue, rel=1e-12)
    low, high = st.t.interval(0.90, df=4, loc=mean, scale=se)  # the (1 - 2 alpha) interval
    assert (e.ci_low, e.ci_high) == pytest.approx((low, high), rel=1e-12)
    assert (e.p_value < 0.05) == (-0.005 < low and high < 0.005)
    # the upper test decides: t = (0.0008 - 0.005) / 0.00081548 = -5.150 on 4 df, P(T < -5.150) ~ 0.0034
    assert e.p_value == pytest.approx(st.t.cdf(-0.0042 / math.sqrt(1.33e-5 / 20), 4), rel=1e-9)
    assert 0.003 < e.p_value < 0.004
    outside = stats.tost(0.004, 0.002, 4, margin=0.005)        # interval reaches past +0.005: not shown
    assert outside.p_value == pytest.approx(st.t.cdf(-0.5, 4)) and outside.p_value > 0.05
    with pytest.raises(ValueError, match="margin"):
        stats.tost(0.0, 0.1, 3, margin=0)


def test_equivalent_needs_the_interval_inside_the_margin_and_takes_the_study_margin():
    y, x = shifted(8, 0.0005, seed=6, noise=0.001)
    tight = stats.paired_differences(records({"baseline": y, "ros": x}))
    r = row(tight, "ros")
    assert r["margin"] == 0.005 and r["verdict"] == "equivalent"
    assert -0.005 < r["eq_low"] and r["eq_high"] < 0.005
    narrow = row(stats.paired_differences(records({"baseline": y, "ros": x}), margin=0.0002), "ros")
    assert narrow["verdict"] == "undecided"
    acc = stats.paired_differences(records({"baseline": y, "ros": x}, metric="accuracy"), metric="accuracy")
    assert row(acc, "ros")["margin"] == 0.01


def test_method_intervals_follow_the_n_rules():
    four = [0.91, 0.93, 0.92, 0.95]
    twelve = list(np.random.default_rng(0).normal(0.9, 0.02, 12))
    frame = stats.method_intervals(records({"baseline": four, "ros": twelve, "rus": [0.8, None, 0.9]},
                                           diverged={("rus", 1)}), random_state=3)
    b, ros, rus = (row(frame, m) for m in ("baseline", "ros", "rus"))
    # ROC AUC lies in [0, 1]: below 10 repeats the t interval is taken on the logit scale of the mean
    u = np.mean(four)
    half = st.t.ppf(0.975, 3) * st.sem(four) / (u * (1 - u))
    low, high = (float(1 / (1 + np.exp(-(np.log(u / (1 - u)) + s * half)))) for s in (-1, 1))
    assert (b["ci_low"], b["ci_high"], b["interval_method"]) == (pytest.approx(low), pytest.approx(high), "logit-t")
    ref = st.bootstrap((np.array(twelve),), np.mean, method="BCa", rng=np.random.default_rng(3)).confidence_interval
    assert (ros["ci_low"], ros["ci_high"]) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert ros["interval_method"] == "bca-bootstrap" and ros["n"] == 12
    assert (rus["n"], rus["n_diverged"], rus["note"]) == (2, 1, "n=2: too few repeats; 1 diverged")


def test_point_winner_and_the_methods_equivalent_to_it():
    y, close = shifted(8, -0.001, seed=1, noise=0.005)
    _, far = shifted(8, -0.05, seed=2)
    winners = stats.point_winners(records({"baseline": close, "ros": y, "rus": far, "ros-thresh": y.copy()}))
    w = winners.iloc[0]
    assert w["winner"] == "ros" and w["mean"] == pytest.approx(np.mean(y))
    assert w["equivalent"] == ("baseline",) and w["untested"] == () and w["n"] == 8
    assert w["worse"] == ("rus",) and w["undecided"] == ()
    loose = stats.point_winners(records({"baseline": close, "ros": y}), margin=0.0001).iloc[0]
    assert loose["equivalent"] == () and loose["undecided"] == ("baseline",)    # within 0.0001: not shown
    # '-thresh' methods are left out of ROC AUC winners, kept for accuracy
    acc = stats.point_winners(records({"baseline": close, "ros": y, "ros-thresh": y + 0.01}, metric="accuracy"),
                              metric="accuracy")
    assert acc["winner"].iloc[0] == "ros-thresh"


def test_a_method_with_diverged_networks_cannot_win_on_its_survivors():
    y, _ = shifted(3, 0, seed=5)
    lucky = [y[0] + 0.05, None, None]          # 1 of 3 networks trained, and it scored highest
    winners = stats.point_winners(records({"ros": y, "cb-focal": lucky, "ldam-drw": [None] * 3},
                                          diverged={("cb-focal", 1), ("cb-focal", 2), *(("ldam-drw", r) for r in range(3))}))
    w = winners.iloc[0]
    assert (w["winner"], w["n"], w["diverged"]) == ("ros", 3, ("cb-focal 2 of 3", "ldam-drw 3 of 3"))
    assert w["mean"] == pytest.approx(np.mean(y))
    assert w["untested"] == ("cb-focal",) and w["note"] == "untested against the winner: cb-focal (1 pair)"
    every = stats.point_winners(records({"ros": [0.9, None, 0.91], "rus": [0.8, 0.85, None]},
                                        diverged={("ros", 1), ("rus", 2)})).iloc[0]
    assert every["winner"] == "ros" and every["note"].endswith("every method lost networks here")


def test_grid_tally_counts_verdicts_over_points():
    y, x = shifted(6, 0.05)
    recs = (records({"baseline": y, "ros": x}, point="a", rho=10)
            + records({"baseline": y, "ros": y - 0.05 + 0.001 * np.arange(6)}, point="b", rho=50)
            + records({"baseline": y[:2], "ros": x[:2]}, point="c", rho=100))
    tally = stats.grid_tally(stats.paired_differences(recs))
    assert tally.to_dict("records") == [dict(method="ros", reference="baseline", better=1, equivalent=0,
                                             undecided=0, worse=1,
                                             no_verdict=1, points=3)]


def test_any_method_can_be_the_reference_and_bad_input_is_named():
    y, x = shifted(5, 0.02)
    frame = stats.paired_differences(records({"baseline": y, "ros": x}), reference="ros")
    assert row(frame, "baseline")["mean_difference"] == pytest.approx(-(x - y).mean())
    with pytest.raises(ValueError, match="reference: method 'smote'"):
        stats.paired_differences(records({"baseline": y}), reference="smote")
    with pytest.raises(ValueError, match="metric 'auc'"):
        stats.paired_differences(records({"baseline": y}), metric="auc")
    with pytest.raises(ValueError, match="x and y must pair up"):
        stats.compare_paired([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="confidence"):
        stats.mean_interval([1, 2, 3], confidence=95)


def test_quick_study_has_three_repeats_so_t_intervals_and_verdicts():
    """The committed quick study: 3 repeats per point give a Student-t interval, a paired t-test and a
    verdict for every comparison, except where a diverged network leaves 2 pairs (the committed study:
    cb-focal's at rho=400, mu=0.5): no interval, and the row says why."""
    recs, _ = load_study("quick", ROOT / "outputs")
    frame = stats.paired_differences(recs)
    assert len(frame) == 6 * 11
    short = frame["n_pairs"] < 3
    assert frame.loc[~short, "interval_method"].eq("student-t").all() and frame.loc[~short, "test"].eq("paired-t").all()
    assert frame.loc[~short, "verdict"].isin(["better", "worse", "equivalent", "undecided"]).all()
    # a retrain elsewhere may diverge other networks (README, "How reproducible a retrain is"): the rows
    # without a verdict are exactly the (point, method) pairs that lost a network
    lone = frame[short]
    gone = recs[(recs["diverged"].fillna(0) > 0) & (recs["method"] != "baseline")]
    expected = sorted(gone.groupby(["point_id", "method"]).size().items())
    assert sorted(((p, m), 3 - n) for p, m, n in lone[["point_id", "method", "n_pairs"]].values.tolist()) == expected
    assert lone["n_dropped"].eq(3 - lone["n_pairs"]).all()
    assert lone["verdict"].isna().all() and lone["note"].str.contains("too few").all()


def test_stats_do_not_import_torch():
    code = "import imbalance.analysis.stats, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT / "lib")})


def test_welch_contrast_of_two_samples_is_scipys_ttest_ind():
    a, b = [0.91, 0.93, 0.92, 0.95, 0.90], [0.88, 0.90, 0.85, 0.91, 0.87, 0.86]
    c = stats.compare_independent(a, b)
    ref = st.ttest_ind(a, b, equal_var=False)
    assert c.estimate == pytest.approx(np.mean(a) - np.mean(b))
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-10) and (c.test, c.interval_method) == ("welch-t", "welch-t")
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(ref.confidence_interval(0.95)), rel=1e-10)
    assert c.n == (5, 6)


def test_difference_of_drops_uses_welch_satterthwaite_and_bca_from_ten():
    rng = np.random.default_rng(0)
    samples = [rng.normal(m, 0.01, k) for m, k in ((0.99, 4), (0.95, 5), (0.90, 6), (0.80, 7))]
    c = stats.compare_independent(*samples, weights=(1, -1, -1, 1))     # drop of the 1st minus drop of the 2nd
    v = [x.var(ddof=1) / len(x) for x in samples]
    se, df = math.sqrt(sum(v)), sum(v) ** 2 / sum(q ** 2 / (len(x) - 1) for q, x in zip(v, samples))
    estimate = (samples[0].mean() - samples[1].mean()) - (samples[2].mean() - samples[3].mean())
    assert c.estimate == pytest.approx(estimate)
    assert c.p_value == pytest.approx(2 * st.t.sf(abs(estimate) / se, df))
    assert c.ci_high - c.ci_low == pytest.approx(2 * st.t.ppf(0.975, df) * se)
    big = [rng.normal(m, 0.01, 12) for m in (0.99, 0.95)]
    boot = stats.compare_independent(*big, random_state=2)
    ref = st.bootstrap(tuple(big), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), method="BCa",
                       rng=np.random.default_rng(2)).confidence_interval
    assert boot.interval_method == "bca-bootstrap"
    assert (boot.ci_low, boot.ci_high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    few = stats.compare_independent([0.9, 0.91], [0.8, 0.82, 0.81])
    assert few.note == "n=2: too few repeats" and few.test is None and math.isnan(few.p_value)


def test_thresh_methods_do_not_inflate_holm_on_roc_auc():
    y, x = shifted(5, 0.02, seed=6)
    _, z = shifted(5, 0.01, seed=7)
    values = {"baseline": y, "ros": x, "rus": z, "baseline-thresh": y.copy(), "ros-thresh": x.copy()}
    auc = stats.paired_differences(records(values))
    family = stats.holm([row(auc, "ros")["p_value"], row(auc, "rus")["p_value"]])   # ros and rus only
    assert [row(auc, "ros")["p_holm"], row(auc, "rus")["p_holm"]] == pytest.approx(list(family))
    assert row(auc, "ros-thresh")["p_holm"] == row(auc, "ros")["p_holm"]
    assert row(auc, "baseline-thresh")["p_holm"] == 1.0
    acc = stats.paired_differences(records(values, metric="accuracy"), metric="accuracy")   # thresholding matters
    assert list(acc["p_holm"]) == pytest.approx(list(stats.holm(acc["p_value"])))
