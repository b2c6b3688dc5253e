"""imbalance.plots on a small synthetic study: every figure draws, says what to run when its
records are missing, and saves PNG + SVG that regenerate byte-identically."""
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from browser.study import all_records, make_database, point_records  # noqa: E402
from imbalance import plots  # noqa: E402


@pytest.fixture(scope="module")
def records():
    return plots.records_frame(all_records())


@pytest.fixture(scope="module")
def curves(records):
    rows = [{"point_id": f"p{r['rho']:g}", "method": r["method"], "repeat": r["repeat"], **c}
            for r in all_records(kinds=("step",)) for c in r["curve"]]
    return pd.DataFrame(rows)


def texts(fig: Figure) -> str:
    """All the text a figure shows: titles, labels, tick labels, legends, table cells."""
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.texts]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        out += [c.get_text().get_text() for tbl in ax.tables for c in tbl.get_celld().values()]
    out += [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    out += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    return " ".join(out)


FIGURES = {  # name -> (call on records/curves, words the figure must show)
    "auc_vs_rho": (lambda r, c: plots.auc_vs_rho(r, dataset="mnist-sample"), ["ρ", "μ = 0.5", "ROC AUC", "ros"]),
    "auc_vs_mu": (lambda r, c: plots.auc_vs_mu(r, dataset="mnist-sample"), ["μ", "ρ = 100", "ROC AUC"]),
    "linear_figure": (lambda r, c: plots.linear_figure(r), ["ρ", "ROC AUC", "linear"]),
    "threshold_accuracy_figure": (lambda r, c: plots.threshold_accuracy_figure(r, dataset="mnist-sample"),
                                  ["accuracy", "thresholded", "argmax"]),
    "graded_figure": (lambda r, c: plots.graded_figure(r), ["ratio after sampling", "ros", "rus"]),
    "curves_figure": (lambda r, c: plots.curves_figure(c), ["iteration", "accuracy", "train", "test"]),
    "imagenet_table": (lambda r, c: plots.imagenet_table(r), ["ρ=10, μ=0.1", "baseline", "ROC AUC"]),
    "method_figure": (lambda r, c: plots.method_figure(r[r.point_id == r.point_id.iloc[0]]), ["ROC AUC", "rus"]),
    "explorer_figure": (lambda r, c: plots.explorer_figure(r, dataset="mnist-sample", imbalance="step", rho=100,
                                                           mu=0.5), ["ρ", "μ", "class counts", "best first"]),
    "profile_figure": (lambda r, c: plots.profile_figure(rho=10, mu=0.5), ["step", "linear", "ρ = 10", "μ = 0.5"]),
}

EMPTY = {  # name -> (call on no records, the params file it must name)
    "auc_vs_rho": (lambda: plots.auc_vs_rho([]), "params/mnist/step.yaml"),
    "auc_vs_mu": (lambda: plots.auc_vs_mu(None), "params/mnist/step.yaml"),
    "linear_figure": (lambda: plots.linear_figure(pd.DataFrame()), "params/mnist/linear.yaml"),
    "threshold_accuracy_figure": (lambda: plots.threshold_accuracy_figure([]), "params/mnist/step.yaml"),
    "graded_figure": (lambda: plots.graded_figure([]), "params/mnist/graded.yaml"),
    "curves_figure": (lambda: plots.curves_figure(pd.DataFrame()), "params/quick.yaml"),
    "imagenet_table": (lambda: plots.imagenet_table([]), "params/imagenet/subsets.yaml"),
    "explorer_figure": (lambda: plots.explorer_figure([], dataset=None, imbalance="step", rho=100, mu=0.5),
                        "params/quick.yaml"),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_draws_and_saves(name, records, curves, tmp_path):
    make, words = FIGURES[name]
    fig = make(records, curves)
    assert isinstance(fig, Figure)
    assert plots.figure_message(fig) is None
    shown = texts(fig)
    for word in words:
        assert word in shown, f"{name}: {word!r} not in {shown[:500]!r}"
    png, svg = plots.save_figure(fig, tmp_path / "a", name)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_no_records_names_the_params_file(name, tmp_path):
    make, params_file = EMPTY[name]
    fig = make()
    assert isinstance(fig, Figure)
    message = plots.figure_message(fig)
    assert message is not None and params_file in message and "imbalance run" in message
    assert message in texts(fig) and fig.axes      # IPython displays only figures with axes
    png, svg = plots.save_figure(fig, tmp_path, name)
    assert png.is_file() and svg.is_file()


def test_svg_and_png_regenerate_byte_identical(records, tmp_path):
    """Two figures made from the same records, saved apart: the same bytes (seeded bootstrap,
    fixed svg.hashsalt, no dates in the metadata)."""
    paths = []
    for run in ("one", "two"):
        fig = plots.auc_vs_rho(records, dataset="mnist-sample")
        paths.append(plots.save_figure(fig, tmp_path / run, "fig"))
        plots.save_figure(fig, tmp_path / run, "again")
    (png1, svg1), (png2, svg2) = paths
    assert svg1.read_bytes() == svg2.read_bytes() == (tmp_path / "one" / "again.svg").read_bytes()
    assert png1.read_bytes() == png2.read_bytes()
    assert b"<dc:date>" not in svg1.read_bytes()


CROSS_PROCESS = """
import sys
from browser.study import all_records
from imbalance import plots


def draw(outdir):
    records = plots.records_frame(all_records())
    plots.save_figure(plots.explorer_figure(records, dataset="mnist-sample", imbalance="step", rho=100, mu=0.5),
                      outdir, "explorer")
    plots.save_figure(plots.auc_vs_rho(records, dataset="mnist-sample"), outdir, "rho")


if __name__ == "__main__":
    draw(sys.argv[1])
"""


def test_svg_is_identical_in_another_process(tmp_path):
    """Nothing process-specific (object ids, hash order, layout-solver round-off) reaches the SVG."""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent / "lib"), str(here)]), "MPLBACKEND": "Agg"}
    subprocess.run([sys.executable, "-c", CROSS_PROCESS, str(tmp_path / "other")], env=env, check=True)
    namespace = {"__name__": "in_process"}
    exec(CROSS_PROCESS, namespace)
    namespace["draw"](tmp_path / "this")
    for name in ("explorer.svg", "rho.svg"):
        assert (tmp_path / "this" / name).read_bytes() == (tmp_path / "other" / name).read_bytes(), name


def test_save_figure_rejects_paths(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        plots.save_figure(plots.profile_figure(), tmp_path, "../escape")


def test_intervals_are_seaborns_and_seeded(records):
    point = records[(records["point_id"] == records["point_id"].iloc[0]) & (records["method"] == "ros")]
    low, high = plots.bootstrap_ci(point["roc_auc"])
    assert low <= point["roc_auc"].mean() <= high
    assert plots.bootstrap_ci(point["roc_auc"]) == (low, high)
    assert plots.bootstrap_ci([0.7]) == (0.7, 0.7)
    assert all(np.isnan(plots.bootstrap_ci([])))


def test_method_table_means_and_ranks():
    recs = point_records(rho=100, mu=0.5, repeats=3)
    table = plots.method_table(recs)
    frame = pd.DataFrame(recs)
    assert list(table["rank"]) == [1, 2, 3, 4, 5]
    assert table["roc_auc"].is_monotonic_decreasing
    for method in table.index:
        assert table.loc[method, "roc_auc"] == pytest.approx(frame[frame.method == method].roc_auc.mean(), abs=1e-4)
        assert table.loc[method, "networks"] == 3
    ordered = plots.method_table(recs, sort=False)
    assert list(ordered.index) == ["baseline", "ros", "rus", "two-phase-ros", "baseline-thresh"]
    assert {"roc_auc", "accuracy", "thresholded_accuracy"} <= set(ordered.columns)


def test_counts_table_from_class_counts_and_records():
    table = plots.counts_table({1: [1, 2, 3], 0: [4, 5, 6]}, classes=["a", "b", "c"])
    assert list(table.index) == [0, 1] and list(table.columns) == ["a", "b", "c", "total"]
    assert list(table.loc[0]) == [4, 5, 6, 15]
    from_records = plots.counts_table(point_records(rho=10, mu=0.5, repeats=2, methods=("baseline",)))
    assert list(from_records["total"]) == [2200, 2200]


def test_explorer_answers_which_method_at_rho_100_half_minority(records):
    choice = plots.explorer_defaults(records, rho=100, mu=0.5)
    assert choice["dataset"] == "mnist-sample" and choice["imbalance"] == "step"
    assert (choice["rho"], choice["mu"]) == (100, 0.5)
    table = plots.explorer_table(records, **choice)
    assert table.index[0] == "ros"           # the synthetic study's best method there
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert {"roc_auc ci_low", "roc_auc ci_high", "thresholded_accuracy"} <= set(table.columns)
    nowhere = plots.explorer_table(records, dataset="mnist-sample", imbalance="step", rho=7, mu=0.5)
    assert nowhere.empty
    fig = plots.explorer_figure(records, dataset="mnist-sample", imbalance="step", rho=7, mu=0.5)
    assert "no records at ρ=7" in texts(fig)


def test_explorer_options_and_grid(records):
    options = plots.explorer_options(records, dataset="mnist-sample", imbalance="step")
    assert options["rhos"] == [10, 100, 1000] and options["mus"] == [0.2, 0.5]
    assert options["levels"] == [1, 10, 100]
    assert set(options["datasets"]) == {"mnist-sample", "imagefolder"}
    linear = plots.explorer_options(records, dataset="mnist-sample", imbalance="linear")
    assert linear["mus"] == [] and linear["rhos"] == [10, 100]
    fig = plots.explorer_figure(records, dataset="mnist-sample", imbalance="linear", rho=10, mu=None)
    assert "μ applies to step imbalance only" in texts(fig)
    grid = plots.grid_table(records)
    assert len(grid) == records.groupby(["dataset", "imbalance", "rho", "mu", "level"], dropna=False).ngroups
    assert {"point_id", "methods", "repeats", "networks"} <= set(grid.columns)
    assert plots.grid_table([]).empty


def test_point_table(records):
    table = plots.point_table(records, dataset="imagefolder")
    assert list(table.columns) == ["ρ=10, μ=0.1", "ρ=100, μ=0.9"]
    assert table.loc["ros", "ρ=10, μ=0.1"] > table.loc["baseline", "ρ=10, μ=0.1"]


def test_load_study_reads_the_database_and_creates_nothing(tmp_path):
    make_database(tmp_path, "s", kinds=("step",))
    records, curves = plots.load_study("s", tmp_path)
    assert len(records) == 6 * 5 * 3 and set(records["imbalance"]) == {"step"}
    assert len(curves) == len(records) * 4 and {"iteration", "test_accuracy"} <= set(curves.columns)
    empty, no_curves = plots.load_study("missing", tmp_path)
    assert empty.empty and no_curves.empty and not (tmp_path / "missing").exists()
