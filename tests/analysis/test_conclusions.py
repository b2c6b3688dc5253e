"""imbalance.analysis.conclusions on hand-made studies built to support, contradict or lack data for each
check, on the committed quick study, and through `imbalance conclusions`."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from imbalance.analysis import conclusions as C
from imbalance.analysis.frames import load_study
from imbalance.cli import main
from scipy import stats as st

ROOT = Path(__file__).resolve().parents[2]
NOISE = 0.002


def study(auc, *, dataset="mnist", imbalance="step", rhos=(10, 100, 1000), mus=(0.1, 0.5, 0.9), levels=(None,),
          methods=("baseline", "ros", "rus"), repeats=6, seed=0, name="s", thresh_gain=None):
    """Records of a grid: auc(method, rho, mu, level) is a network's mean ROC AUC (plus noise);
    accuracy = auc - 0.1, and thresholded accuracy adds thresh_gain(method) to it."""
    rng = np.random.default_rng(seed)
    rows = []
    for rho in rhos:
        for mu in (mus if imbalance == "step" else (None,)):
            for level in levels:
                point = f"{imbalance}_rho={rho}" + (f"_mu={mu}" if mu is not None else "") + \
                    (f"_level={level}" if level is not None else "")
                for method in methods:
                    for r in range(repeats):
                        value = auc(method, rho, mu, level) + rng.normal(0, NOISE)
                        gain = thresh_gain(method) if thresh_gain else 0.0
                        rows.append(dict(study=name, point_id=point, dataset=dataset, imbalance=imbalance, rho=rho,
                                         mu=mu, level=level, method=method, repeat=r, roc_auc=value,
                                         accuracy=value - 0.1, thresholded_accuracy=value - 0.1 + gain
                                         + rng.normal(0, NOISE), diverged=0))
    return pd.DataFrame(rows)


def hurts(scale=0.02):
    """Baseline ROC AUC falls with rho and mu; ros recovers most of it, rus less."""
    def auc(method, rho, mu, level):
        loss = scale * math.log10(rho) * (mu if mu is not None else 0.5)
        return 0.99 - loss * {"baseline": 1.0, "ros": 0.2, "rus": 1.5}.get(method, 1.0)
    return auc


def verdicts(parts: str) -> dict:
    return dict(p.split(": ", 1)[0:2] for p in parts.split("; "))


# --- C1 -----------------------------------------------------------------------------------------

def test_c1_supported_when_baseline_falls_with_rho_and_mu():
    result = C.check_c1(study(hurts()))
    assert result.verdict == "supported" and result.needs is None
    assert set(result.evidence["outcome"]) == {"as claimed"}
    assert (result.evidence["tau"] < 0).all()
    assert result.claim.startswith("As expected, the increasing ratio")


def test_c1_contradicted_when_auc_rises_with_imbalance():
    result = C.check_c1(study(lambda m, rho, mu, lv: 0.9 + 0.01 * math.log10(rho) + 0.02 * mu))
    assert result.verdict == "contradicted"
    assert set(result.evidence["outcome"]) == {"against"}


def test_c1_not_enough_data_with_two_repeats_names_the_params_file():
    result = C.check_c1(study(hurts(), repeats=2))
    assert result.verdict == "not enough data" and result.needs == C.STEP
    assert "fewer than 3 networks a side" in result.reason


def test_c1_trend_is_kendalls_tau_on_networks():
    from scipy.stats import kendalltau
    frame = study(hurts())
    row = C.check_c1(frame).evidence.iloc[0]          # rho at mu=0.1
    base = frame[(frame.method == "baseline") & np.isclose(frame.mu, 0.1)]
    assert row["tau"] == pytest.approx(kendalltau(base.rho, base.roc_auc).statistic)
    at_10, at_1000 = (base.loc[base.rho == r, "roc_auc"].mean() for r in (10, 1000))
    assert (f"mu 0.1: tau {row['tau']:+.2f} (Holm p {row['p_holm']:.2g}), mean {at_10:.4f} at rho 10 to "
            f"{at_1000:.4f} at 1000") in C.check_c1(frame).reason
    two = pd.concat([frame, study(hurts(), dataset="fashion-mnist")])
    assert "mnist, mu 0.1: tau" in C.check_c1(two).reason and "fashion-mnist, mu 0.1: tau" in C.check_c1(two).reason


# --- C2, C3 -------------------------------------------------------------------------------------

def test_c2_harder_task_drops_more_supported_and_reversed_contradicted():
    easy = study(hurts(0.005), dataset="mnist", name="mnist-step")
    hard = study(hurts(0.04), dataset="cifar10", name="cifar-step")
    supported = C.check_c2(easy, others=[hard])
    assert supported.verdict == "supported"
    assert (supported.evidence["harder"] == "cifar10").all()
    assert (supported.evidence["drop_harder"] > supported.evidence["drop_easier"]).all()
    first = supported.evidence.iloc[0]      # rho 100, mu 0.1: quoted with its Welch interval in the reason
    assert (f"cifar10 against mnist: rho 100, mu 0.1: {first['difference']:+.4f} "
            f"[{first['ci_low']:.4f}, {first['ci_high']:.4f}]") in supported.reason
    hard_but_robust = study(hurts(0.005), dataset="cifar10", name="cifar-step")
    assert C.check_c2(study(hurts(0.04), name="mnist-step"), others=[hard_but_robust]).verdict == "contradicted"
    alone = C.check_c2(easy)
    assert alone.verdict == "not enough data" and C.FASHION in alone.needs


def test_two_studies_of_one_grid_point_are_not_pooled_as_one():
    """mnist-step-v2 read --with mnist-step-paper-length (or two CIFAR-10 step studies) would count each shared
    point's networks twice: refused, naming both studies and the point, before any check runs."""
    v2 = study(hurts(), rhos=(100,), mus=(0.5,), name="mnist-step-v2")
    longer = study(hurts(), rhos=(100, 1000), mus=(0.5,), name="mnist-step-paper-length", seed=1)
    message = ("--with: studies 'mnist-step-v2' and 'mnist-step-paper-length' both hold grid point step_rho=100_mu=0.5 "
               "of mnist (step imbalance); pooled, its networks would count twice: read one of them with the other "
               "studies, not both")
    for call in (lambda: C.check_all(v2, others=[longer]), lambda: C.design_gaps(v2, others=[longer])):
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value) == message
    fashion = study(hurts(), rhos=(100,), mus=(0.5,), dataset="fashion-mnist", name="fashion-step-v2")
    assert C.check_c2(v2, others=[fashion]).verdict is not None       # another dataset at the same point pools


def test_c3_step_drops_more_than_linear_at_equal_rho():
    step = study(hurts(0.03), mus=(0.5,))
    linear = study(hurts(0.005), imbalance="linear", name="linear", seed=1)
    result = C.check_c3(step, others=[linear])
    assert result.verdict == "supported" and len(result.evidence) == 3
    assert (result.evidence["difference"] > 0).all()
    first = result.evidence.iloc[0]     # the reason quotes each rho's Welch contrast with its interval
    assert (f"linear minus step by rho: 10: {first['difference']:+.4f} [{first['ci_low']:.4f}, "
            f"{first['ci_high']:.4f}], 100: ") in result.reason
    reversed_ = C.check_c3(study(hurts(0.005), mus=(0.5,)), others=[study(hurts(0.03), imbalance="linear")])
    assert reversed_.verdict == "contradicted"
    missing = C.check_c3(step)
    assert missing.verdict == "not enough data" and C.LINEAR in missing.needs


def test_c3_reads_all_four_outcomes_and_says_undecided_where_power_lacks():
    """supported / contradicted by the opposite / contradicted by equivalence / undecided (too few repeats)."""
    step, linear = study(hurts(0.03), mus=(0.5,)), study(hurts(0.005), imbalance="linear", name="linear", seed=1)
    assert C.check_c3(step, others=[linear]).verdict == "supported"
    same = study(hurts(0.01), mus=(0.5,), repeats=10)
    flat = C.check_c3(same, others=[study(hurts(0.01), imbalance="linear", name="linear", seed=1, repeats=10)])
    assert flat.verdict == "contradicted" and set(flat.evidence["verdict"]) == {"equivalent"}   # shown the same
    assert flat.counts == {"against": 3}
    # a real but small effect (+0.004 linear - step) seen through 3 noisy repeats: not shown either way
    noisy = study(lambda m, rho, mu, lv: 0.95, mus=(0.5,), repeats=3, seed=4)
    noisy_linear = study(lambda m, rho, mu, lv: 0.954, imbalance="linear", name="linear", repeats=3, seed=5)
    undecided = C.check_c3(noisy, others=[noisy_linear])
    assert undecided.verdict == "undecided" and "undecided" in undecided.counts
    assert "lack power" in undecided.summary and "contradicted" not in undecided.reason


@pytest.mark.parametrize("outcomes, rule, expected", [
    (["as claimed"] * 3 + ["undecided"], "most", "supported"),
    (["against"] * 3 + ["as claimed"], "most", "contradicted"),
    (["as claimed", "undecided", "undecided", "undecided"], "most", "undecided"),    # C3 on mnist: 1 of 4 shown
    (["as claimed", "as claimed", "against", "against"], "most", "mixed"),
    (["undecided", "undecided"], "some", "undecided"),                              # C6: not shown is not contradicted
    (["against", "against"], "some", "contradicted"),
    (["against", "as claimed"], "some", "supported"),
    ([None, None], "most", "not enough data"),
])
def test_judging_rules_contradict_only_where_the_opposite_is_shown(outcomes, rule, expected):
    assert C._judge(outcomes, rule) == expected


def test_parts_combine_to_mixed_only_when_one_is_shown_each_way():
    assert C._combine({"a": "supported", "b": "supported"}) == "supported"
    assert C._combine({"a": "supported", "b": "contradicted"}) == "mixed"
    assert C._combine({"a": "supported", "b": "undecided"}) == "undecided"
    assert C._combine({"a": "not enough data", "b": "contradicted"}) == "contradicted"


# --- C4 -----------------------------------------------------------------------------------------

def test_c4_ros_best_and_rus_on_par_only_in_the_extreme_corner():
    def auc(method, rho, mu, level):
        corner = mu > 0.5 and rho >= 100
        return {"baseline": 0.95, "ros": 0.98, "ros-thresh": 0.98, "rus": 0.98 if corner else 0.93}[method]
    result = C.check_c4(study(auc, methods=("baseline", "ros", "rus", "ros-thresh")))
    assert result.verdict == "supported", result.reason
    parts = verdicts(result.reason)
    assert set(parts) == {"best", "on par in the corner", "only there"}
    assert all(v.startswith("supported (") for v in parts.values())
    corner = result.evidence[result.evidence["part"] == "on par in the corner"]
    assert set(corner["mu"]) == {0.9} and set(corner["rho"]) == {100, 1000}      # median of 10, 100, 1000
    assert "ros-thresh" not in set(result.evidence["winner"].dropna())


def test_c4_contradicted_when_baseline_wins_and_rus_ties_ros_only_away_from_the_corner():
    def auc(method, rho, mu, level):
        corner = mu > 0.5 and rho >= 100
        return {"baseline": 0.98, "ros": 0.95, "rus": 0.90 if corner else 0.95}[method]
    # 8 repeats: with 6, Wilcoxon's smallest p (2/64) times Holm's 2 is above 0.05, and all would tie
    result = C.check_c4(study(auc, repeats=8))
    assert result.verdict == "contradicted", result.reason
    best = result.evidence[result.evidence["part"] == "best"]
    assert set(best["winner"]) == {"baseline"} and set(best["outcome"]) == {"against"}
    everywhere = C.check_c4(study(lambda m, rho, mu, lv: {"baseline": 0.95, "ros": 0.98, "rus": 0.98}[m]))
    assert everywhere.verdict == "mixed"        # on par in the corner, but not only there
    assert verdicts(everywhere.reason)["only there"].startswith("contradicted")


# --- C5 -----------------------------------------------------------------------------------------

def test_c5_thresholding_helps_baseline_and_ros_but_not_rus():
    frame = study(hurts(), thresh_gain=lambda m: {"baseline": 0.05, "ros": 0.02, "rus": -0.04}[m])
    result = C.check_c5(frame)
    assert result.verdict == "supported", result.reason
    gains = result.evidence.groupby("method")["gain"].mean()
    assert gains["baseline"] > 0 and gains["ros"] > 0 and gains["rus"] < 0
    # the gain is the paired difference of each network's thresholded and plain accuracy
    base = frame[(frame.method == "baseline") & (frame.point_id == frame.point_id.iloc[0])]
    assert result.evidence.iloc[0]["gain"] == pytest.approx((base.thresholded_accuracy - base.accuracy).mean())


def test_c4_and_c5_quote_the_grid_pooled_paired_difference_as_scipy_gives_it():
    frame = study(hurts(), thresh_gain=lambda m: {"baseline": 0.05, "ros": 0.02, "rus": -0.04}[m])
    base = frame[frame.method == "baseline"]                # 9 points x 6 repeats = 54 pairs
    gain = (base.thresholded_accuracy - base.accuracy).to_numpy()
    boot = st.bootstrap((gain,), np.mean, method="BCa", rng=np.random.default_rng(0)).confidence_interval
    expected = (f"thresholded minus plain pooled over points: {gain.mean():+.4f} [{boot.low:.4f}, "
                f"{boot.high:.4f}], n=54, wilcoxon p={st.wilcoxon(gain).pvalue:.3g}")
    assert expected in C.check_c5(frame).reason
    ros = frame[frame.method == "ros"].set_index(["point_id", "repeat"]).roc_auc
    diff = (ros - frame[frame.method == "baseline"].set_index(["point_id", "repeat"]).roc_auc).to_numpy()
    assert f"ros minus baseline pooled over points: {diff.mean():+.4f} [" in C.check_c4(frame).reason
    assert f"n=54, wilcoxon p={st.wilcoxon(diff).pvalue:.3g}" in C.check_c4(frame).reason


def test_c5_contradicted_when_thresholding_helps_only_undersampling():
    frame = study(hurts(), thresh_gain=lambda m: {"baseline": -0.05, "ros": -0.02, "rus": 0.04}[m])
    assert C.check_c5(frame).verdict == "contradicted"


# --- C6 -----------------------------------------------------------------------------------------

def graded(ros_best_level, rus_best_level, seed=0):
    def auc(method, rho, mu, level):
        best = ros_best_level if method == "ros" else rus_best_level
        return 0.97 - 0.01 * abs(math.log10(level) - math.log10(best))
    return study(auc, rhos=(1000,), mus=(0.1, 0.5), levels=(1, 10, 100, 1000), methods=("ros", "rus"), seed=seed)


def test_c6_full_oversampling_best_and_partial_undersampling_better_supported():
    result = C.check_c6(graded(ros_best_level=1, rus_best_level=10))
    assert result.verdict == "supported", result.reason
    assert result.needs is None
    rus = result.evidence[result.evidence["method"] == "rus"]
    assert set(rus["level"]) == {10, 100}          # partial levels only: 1 < level < rho
    first = rus.iloc[0]                            # the reason quotes each level's Welch contrast
    assert (f"level {first['level']:g}: {first['minus_full']:+.4f} [{first['ci_low']:.4f}, {first['ci_high']:.4f}]"
            in result.reason)


def test_c6_contradicted_when_partial_oversampling_wins_and_full_undersampling_is_best():
    assert C.check_c6(graded(ros_best_level=10, rus_best_level=1)).verdict == "contradicted"


def test_c6_partial_rus_not_shown_better_is_undecided_not_contradicted():
    def auc(method, rho, mu, level):       # rus at level 10 a little above level 1, seen through 3 noisy repeats
        return 0.95 + (0.003 if (method, level) == ("rus", 10) else 0.0)
    records = study(auc, rhos=(1000,), mus=(0.5,), levels=(1, 10, 100), methods=("ros", "rus"), repeats=3, seed=3)
    result = C.check_c6(records)
    assert verdicts(result.reason)["partial rus better"].startswith("undecided"), result.reason
    assert result.verdict == "undecided" and set(result.evidence["verdict"]) == {"undecided"}
    # the same records with the rus levels shown within the margin of level 1: the opposite shown, contradicted
    shown_flat = study(lambda m, rho, mu, lv: 0.95, rhos=(1000,), mus=(0.5,), levels=(1, 10, 100),
                       methods=("ros", "rus"), repeats=10, seed=3)
    assert verdicts(C.check_c6(shown_flat).reason)["partial rus better"].startswith("contradicted")


def test_c6_not_enough_data_without_graded_points():
    result = C.check_c6(study(hurts()))
    assert result.verdict == "not enough data" and result.needs == C.GRADED


# --- C7 -----------------------------------------------------------------------------------------

def curves_for(frame, *, ros_late, ros_gap=0.01, rus_gap=0.1, seed=0):
    """Curves at iterations 100..400: ros test accuracy changes by ros_late over the last quarter."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, r in frame.iterrows():
        for it in (100, 200, 300, 400):
            test = 0.9 + (ros_late if (r.method == "ros" and it == 400) else 0) + rng.normal(0, NOISE)
            gap = {"ros": ros_gap, "rus": rus_gap}.get(r.method, 0.05)
            rows.append(dict(point_id=r.point_id, method=r.method, repeat=r["repeat"], iteration=it,
                             train_accuracy=test + gap + rng.normal(0, NOISE), test_accuracy=test))
    return pd.DataFrame(rows)


def test_c7_supported_when_ros_keeps_rising_and_its_gap_is_smaller():
    frame = study(hurts(), repeats=3)
    result = C.check_c7(frame, curves_for(frame, ros_late=0.01))
    assert result.verdict == "supported", result.reason
    assert list(result.evidence["n_pairs"]) == [27, 27]          # pooled over the 9 points


def test_c7_contradicted_when_ros_falls_late_and_overfits():
    frame = study(hurts(), repeats=3)
    result = C.check_c7(frame, curves_for(frame, ros_late=-0.02, ros_gap=0.2))
    assert result.verdict == "contradicted", result.reason


def test_c7_leaves_diverged_networks_out_and_needs_curves():
    frame = study(hurts(), repeats=3)
    frame.loc[(frame.method == "ros") & (frame.repeat == 0), "diverged"] = 1
    result = C.check_c7(frame, curves_for(frame, ros_late=0.01))
    assert list(result.evidence["n_dropped"]) == [9, 9]
    none = C.check_c7(frame, None)
    assert none.verdict == "not enough data" and none.needs == C.STEP


# --- all seven, the quick study, the command line ----------------------------------------------

def test_quick_study_gets_all_seven_checks_with_verdicts():
    records, curves = load_study("quick", ROOT / "outputs")
    results = C.check_all(records, curves)
    table = C.conclusions_table(results)
    assert list(table["conclusion"]) == [f"C{i}" for i in range(1, 8)]
    assert list(table.columns[:6]) == ["conclusion", "title", "claim", "verdict", "outcomes", "evidence"]
    assert set(table["verdict"]) <= set(C.VERDICTS)
    lacking = table[table["verdict"] == "not enough data"]
    assert {"C2", "C3", "C6"} <= set(lacking["conclusion"])      # one dataset, step only, no levels
    assert lacking["needs"].str.startswith("params/real/").all()
    assert all(isinstance(r.evidence, pd.DataFrame) for r in results)


def test_cli_prints_the_checks_and_exits_0_or_2(capsys, tmp_path):
    assert main(["conclusions", str(ROOT / "params/quick.yaml"), "--outputs", str(ROOT / "outputs")]) == 0
    out = capsys.readouterr().out
    # the quick study (one dataset, step only, no levels) prints what its design can test, and says why not the rest
    assert all(f"C{i}  " in out for i in (1, 4, 5, 7)) and not any(f"C{i}  " in out for i in (2, 3, 6))
    assert "claim: " in out and out.strip().splitlines()[-1].startswith("Left out, as this study's design cannot")
    assert all(f"C{i} (" in out.strip().splitlines()[-1] for i in (2, 3, 6))
    assert main(["conclusions", str(ROOT / "params/quick.yaml"), "--outputs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imbalance: error:") and "results.sqlite not found" in err and "\n" not in err


def test_conclusions_do_not_import_torch():
    code = ("import imbalance.analysis.conclusions, imbalance.cli, sys; "
            "imbalance.cli.main(['conclusions', 'params/quick.yaml']); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "lib")},
                   stdout=subprocess.DEVNULL)


def test_c2_ranks_an_unlisted_dataset_by_its_mildest_baseline_auc():
    easy = study(hurts(0.005), dataset="mnist", name="a")
    hard = study(lambda m, rho, mu, lv: hurts(0.04)(m, rho, mu, lv) - 0.1, dataset="my-xrays", name="b")
    result = C.check_c2(easy, others=[hard])
    assert set(result.evidence["harder"]) == {"my-xrays"} and result.verdict == "supported"
    same_task = C.check_c2(easy, others=[study(hurts(0.04), dataset="mnist-sample", name="c")])
    assert same_task.verdict == "not enough data"           # mnist and mnist-sample: one task


@pytest.mark.parametrize("check, needs", [(C.check_c1, C.STEP), (C.check_c4, C.STEP), (C.check_c5, C.STEP)])
def test_two_repeats_are_not_enough_data_for_the_paired_checks(check, needs):
    frame = study(hurts(), repeats=2, thresh_gain=lambda m: 0.05)
    result = check(frame)
    assert result.verdict == "not enough data" and result.needs == needs
    assert "testable" in result.reason


def test_c7_without_training_accuracy_judges_only_the_late_fall():
    frame = study(hurts(), repeats=3)
    curves = curves_for(frame, ros_late=0.01).assign(train_accuracy=None)
    result = C.check_c7(frame, curves)
    assert verdicts(result.reason)["gap no larger"].startswith("not enough data")
    assert result.verdict == "supported" and result.needs == C.STEP
