"""imbalance.analysis.tables on a small synthetic study: records as frames, intervals, summaries, and the
rule that ROC AUC tables of one metric leave '-thresh' methods out unless they are named."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser.study import all_records, make_database, point_records
from imbalance.analysis import frames, tables
from scipy import stats as st


@pytest.fixture(scope="module")
def records():
    return frames.records_frame(all_records())


def logit_t_reference(values, confidence=0.95):
    """The logit-scale t interval of a mean of values in [0, 1], from scipy alone (delta method)."""
    from scipy.special import expit, logit
    values = np.asarray(values, dtype=float)
    u = values.mean()
    se = st.sem(values) / (u * (1 - u))
    half = st.t.ppf(0.5 + confidence / 2, len(values) - 1) * se
    return float(expit(logit(u) - half)), float(expit(logit(u) + half))


def test_mean_intervals_are_logit_t_intervals_and_none_below_three(records):
    point = records[records["point_id"] == records["point_id"].iloc[0]]
    intervals = tables.mean_intervals(point, metric="roc_auc").set_index("method")
    values = point.loc[point["method"] == "ros", "roc_auc"].to_numpy()       # 3 repeats
    assert (intervals.loc["ros", "ci_low"], intervals.loc["ros", "ci_high"]) == pytest.approx(
        logit_t_reference(values), abs=1e-12)
    assert intervals.loc["ros", "interval_method"] == "logit-t" and intervals.loc["ros", "n"] == 3
    two = point[point["repeat"] < 2]
    row = tables.mean_intervals(two, metric="roc_auc").set_index("method").loc["ros"]
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]) and row["note"] == "n=2: too few repeats"
    assert tables.mean_intervals([], metric="roc_auc").empty


def test_an_interval_of_a_bounded_metric_stays_inside_zero_one():
    """Three ROC AUCs 0.98, 0.99, 1.00: the plain t interval reaches 1.0148; on the logit scale, by hand:
    logit(0.99) = ln 99 = 4.59512, se = (0.01 / sqrt 3) / (0.99 * 0.01) = 0.583182, t(0.975, 2) = 4.302653,
    so 4.59512 -+ 2.509226 = [2.085894, 7.104346], and back: [0.889524, 0.999179]."""
    from imbalance.analysis import stats
    values = [0.98, 0.99, 1.0]
    assert st.t.interval(0.95, 2, loc=0.99, scale=st.sem(values))[1] > 1.01         # what the issue saw
    bounded = stats.mean_interval(values, bounds=(0, 1))
    assert (bounded.ci_low, bounded.ci_high) == pytest.approx((0.889524, 0.999179), abs=1e-6)
    assert (bounded.ci_low, bounded.ci_high) == pytest.approx(logit_t_reference(values), abs=1e-12)
    assert bounded.interval_method == "logit-t" and bounded.ci_low < bounded.mean < bounded.ci_high < 1
    plain = stats.mean_interval(values)                                                 # no bounds: Student t
    assert plain.interval_method == "student-t" and plain.ci_high == pytest.approx(1.014841, abs=1e-6)
    # far from the bounds the logit interval is nearly the t interval: 0.5 +- 0.0248 either way
    middle = stats.mean_interval([0.49, 0.5, 0.51], bounds=(0, 1))
    assert (middle.ci_low, middle.ci_high) == pytest.approx(st.t.interval(0.95, 2, loc=0.5, scale=st.sem(
        [0.49, 0.5, 0.51])), abs=2e-4)
    # from 10 values a BCa bootstrap: its ends are bootstrap means, inside the bounds already
    many = stats.mean_interval([1.0] * 7 + [0.97, 0.98, 0.99], bounds=(0, 1))
    assert many.interval_method == "bca-bootstrap" and many.ci_high <= 1
    frame = pd.DataFrame({"point_id": "p", "method": "m", "roc_auc": values, "accuracy": values})
    for metric in ("roc_auc", "accuracy"):
        row = tables.mean_intervals(frame, metric=metric).iloc[0]
        assert row["interval_method"] == "logit-t" and row["ci_high"] < 1, metric
    with pytest.raises(ValueError, match="values must lie in bounds"):
        stats.mean_interval([0.5, 0.9, 1.2], bounds=(0, 1))
    with pytest.raises(ValueError, match="bounds must be"):
        stats.mean_interval(values, bounds=(1, 0))


def test_method_table_means_and_ranks():
    recs = point_records(rho=100, mu=0.5, repeats=3)
    table = tables.method_table(recs)
    frame = pd.DataFrame(recs)
    assert list(table["rank"]) == [1, 2, 3, 4, 5]
    assert table["roc_auc"].is_monotonic_decreasing
    for method in table.index:
        assert table.loc[method, "roc_auc"] == pytest.approx(frame[frame.method == method].roc_auc.mean(), abs=1e-4)
        assert table.loc[method, "networks"] == 3
    ordered = tables.method_table(recs, sort=False)
    assert list(ordered.index) == ["baseline", "ros", "rus", "two-phase-ros", "baseline-thresh"]  # accuracy differs
    assert {"roc_auc", "accuracy", "thresholded_accuracy"} <= set(ordered.columns)
    assert set(table["interval"]) == {"logit-t"}                                     # 3 repeats of ROC AUC
    few = tables.method_table(point_records(rho=100, mu=0.5, repeats=2))
    assert few["roc_auc ci_low"].isna().all() and set(few["interval"]) == {"n=2: too few repeats"}


def test_counts_table_from_class_counts_and_records():
    table = tables.counts_table({1: [1, 2, 3], 0: [4, 5, 6]}, classes=["a", "b", "c"])
    assert list(table.index) == [0, 1] and list(table.columns) == ["a", "b", "c", "total"]
    assert list(table.loc[0]) == [4, 5, 6, 15]
    from_records = tables.counts_table(point_records(rho=10, mu=0.5, repeats=2, methods=("baseline",)))
    assert list(from_records["total"]) == [2200, 2200]


def test_grid_table(records):
    grid = tables.grid_table(records)
    assert len(grid) == records.groupby(["dataset", "imbalance", "rho", "mu", "level"], dropna=False).ngroups
    assert {"point_id", "methods", "repeats", "networks"} <= set(grid.columns)
    assert tables.grid_table([]).empty


def test_point_table(records):
    table = tables.point_table(records, dataset="imagefolder")
    assert list(table.columns) == ["ρ=10, μ=0.1", "ρ=100, μ=0.9"]
    assert table.loc["ros", "ρ=10, μ=0.1"] > table.loc["baseline", "ρ=10, μ=0.1"]
    assert "baseline-thresh" not in table.index                        # ROC AUC: it would repeat baseline's
    assert "baseline-thresh" in tables.point_table(records, dataset="imagefolder", metric="accuracy").index
    named = tables.point_table(records, dataset="imagefolder", methods=["baseline", "baseline-thresh"])
    assert list(named.index) == ["baseline", "baseline-thresh"]


def test_metric_records_leaves_thresholding_out_of_roc_auc_only(records):
    auc, omitted = tables.metric_records(records, "roc_auc", dataset="mnist-sample", imbalance="step")
    assert omitted and not frames.thresholded(auc["method"]).any() and "baseline" in set(auc["method"])
    acc, omitted = tables.metric_records(records, "accuracy", dataset="mnist-sample", imbalance="step")
    assert not omitted and "baseline-thresh" in set(acc["method"])
    named, omitted = tables.metric_records(records, "roc_auc", methods=["baseline-thresh"], imbalance="step")
    assert not omitted and set(named["method"]) == {"baseline-thresh"}
    graded, omitted = tables.metric_records(records, "roc_auc", graded=True)   # ros and rus only: nothing to omit
    assert not omitted and set(graded["method"]) == {"ros", "rus"}
    assert list(frames.thresholded(["ros", "ros-thresh", None])) == [False, True, False]


def test_load_study_reads_the_database_and_creates_nothing(tmp_path):
    make_database(tmp_path, "s", kinds=("step",))
    records, curves = frames.load_study("s", tmp_path)
    assert len(records) == 6 * 5 * 3 and set(records["imbalance"]) == {"step"}
    assert len(curves) == len(records) * 4 and {"iteration", "test_accuracy"} <= set(curves.columns)
    empty, no_curves = frames.load_study("missing", tmp_path)
    assert empty.empty and no_curves.empty and not (tmp_path / "missing").exists()


def test_tables_import_neither_torch_nor_matplotlib():
    """Nor do their intervals: imbalance.analysis.stats is pandas + scipy."""
    lib = Path(__file__).resolve().parents[2] / "lib"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import imbalance.analysis.tables as t; "
            "t.mean_intervals([dict(point_id='p', method='m', roc_auc=v) for v in (0.8, 0.9, 0.7)], metric='roc_auc'); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'seaborn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(lib)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the tables as documents ------------------------------------------------------------------------------

RAW_NAMES = ("roc_auc", "thresholded_accuracy", "balanced_accuracy", "ci_low", "ci_high", "mean_difference",
             "p_holm", "n_pairs", "interval_method")


def shown_cells(view: pd.DataFrame) -> list[str]:
    return [str(c) for c in view.columns] + [str(v) for v in view.to_numpy().ravel()]


def test_method_table_view_is_a_document_without_nan_or_raw_names():
    recs = point_records(rho=100, mu=0.5, repeats=3) + point_records(rho=100, mu=0.5, repeats=2, methods=("crt",))
    table = tables.method_table(recs, metrics=("roc_auc", "accuracy", "thresholded_accuracy"))
    view, caption = tables.method_table_view(table, rank_by="roc_auc")
    cells = shown_cells(view)
    assert not {"nan", "NaN", "None", "<NA>"} & set(cells)
    assert not any(raw in cell for raw in RAW_NAMES for cell in view.columns)
    assert {"multi-class ROC AUC", "accuracy after thresholding", "multi-class ROC AUC: interval of the mean"} \
        <= set(view.columns)
    ros = view.set_index("method").loc["ros"]
    low, high = table.loc["ros", ["roc_auc ci_low", "roc_auc ci_high"]]
    assert ros["multi-class ROC AUC: interval of the mean"] == f"[{low:.4f}, {high:.4f}]"
    assert ros["multi-class ROC AUC"] == f"{table.loc['ros', 'roc_auc']:.4f}"
    assert view.set_index("method").loc["crt", "multi-class ROC AUC: interval of the mean"] == tables.DASH  # n = 2
    assert "95% Student t interval on the logit scale" in caption and "stays inside [0, 1]" in caption
    assert f"{tables.DASH} in the interval: fewer than 3 networks" in caption


def test_paired_table_view_signs_differences_and_names_the_test():
    from imbalance.analysis import explorer
    recs = frames.records_frame(point_records(rho=100, mu=0.5, repeats=3)
                                + point_records(rho=100, mu=0.5, repeats=2, methods=("crt",)))
    table = explorer.explorer_paired(recs, dataset="mnist-sample", imbalance="step", rho=100, mu=0.5,
                                     reference="baseline")
    view, caption = tables.paired_table_view(table, metric="roc_auc", reference="baseline")
    cells = shown_cells(view)
    assert not {"nan", "NaN", "None", "<NA>"} & set(cells)
    assert not any(raw in cell for raw in RAW_NAMES for cell in view.columns)
    ros = view.set_index("method").loc["ros"]
    assert ros["multi-class ROC AUC minus baseline"] == f"{table.loc['ros', 'roc_auc − baseline']:+.4f}"
    assert ros["interval of the mean difference"] == (f"[{table.loc['ros', 'ci_low']:+.4f}, "
                                                      f"{table.loc['ros', 'ci_high']:+.4f}]")
    assert ros["test, Holm p"] == f"{table.loc['ros', 'p_holm']:.3g} (paired t)"
    crt = view.set_index("method").loc["crt"]                      # 2 pairs: no interval, test or verdict
    assert crt["verdict"] == crt["test, Holm p"] == crt["interval of the mean difference"] == tables.DASH
    assert "too few repeats" in crt["note"] and ros["note"] == ""
    assert "95% Student t interval" in caption and "paired t-test's own interval" in caption
    html = tables.html_table(view, caption=caption)
    assert html.index("<caption") < html.index("<thead>") and not re.search(r"\b(nan|none)\b", html, re.I)


def test_a_count_takes_the_number_of_its_noun():
    assert [frames.counted(n, "point") for n in (0, 1, 2, 1200)] == ["0 points", "1 point", "2 points", "1,200 points"]
    assert frames.counted(1, "more repeat", "more repeats") == "1 more repeat"
    assert frames.counted(3, "analysis", "analyses") == "3 analyses"
