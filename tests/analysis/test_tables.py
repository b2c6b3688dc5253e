"""imbalance.analysis.tables on a small synthetic study: records as frames, intervals, summaries, and the
rule that ROC AUC tables of one metric leave '-thresh' methods out unless they are named."""
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


def test_mean_intervals_are_scipys_t_interval_and_none_below_three(records):
    point = records[records["point_id"] == records["point_id"].iloc[0]]
    intervals = tables.mean_intervals(point, metric="roc_auc").set_index("method")
    values = point.loc[point["method"] == "ros", "roc_auc"].to_numpy()       # 3 repeats
    low, high = st.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=st.sem(values))
    assert (intervals.loc["ros", "ci_low"], intervals.loc["ros", "ci_high"]) == pytest.approx((low, high), abs=1e-12)
    assert intervals.loc["ros", "interval_method"] == "student-t" and intervals.loc["ros", "n"] == 3
    two = point[point["repeat"] < 2]
    row = tables.mean_intervals(two, metric="roc_auc").set_index("method").loc["ros"]
    assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]) and row["note"] == "n=2: too few repeats"
    assert tables.mean_intervals([], metric="roc_auc").empty


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
    assert set(table["interval"]) == {"student-t"}                                   # 3 repeats
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
