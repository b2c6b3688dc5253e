"""imbalance.analysis.plots on a small synthetic study: every figure draws, says what to run when its
records are missing, leaves '-thresh' methods out of ROC AUC figures only, and saves PNG + SVG
that regenerate byte-identically."""
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from browser.study import all_records  # noqa: E402
from fixtures.figures import colour, data_colours, texts  # noqa: E402
from imbalance.analysis import evidence_plots, frames, plots, stats, tables  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


@pytest.fixture(scope="module")
def records():
    return frames.records_frame(all_records())


@pytest.fixture(scope="module")
def curves(records):
    rows = [{"point_id": f"p{r['rho']:g}", "method": r["method"], "repeat": r["repeat"], **c}
            for r in all_records(kinds=("step",)) for c in r["curve"]]
    return pd.DataFrame(rows)


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
    "profile_figure": (lambda r, c: plots.profile_figure(rho=10, mu=0.5), ["step", "linear", "ρ = 10", "μ = 0.5"]),
    "study_profiles_figure": (lambda r, c: plots.study_profiles_figure(r, classes=tuple("abcdefghij")),
                              ["ρ=1000, μ=0.5", "400 = n_max", "0.4 (ρ=1000)", "j"]),
    "recall_figure": (lambda r, c: plots.recall_figure(r, dataset="mnist-sample"),
                      ["per-class recall", "minority class", "majority class", "two-phase-ros"]),
    "winners_figure": (lambda r, c: evidence_plots.winners_figure(stats.point_winners(
                           r[(r.dataset == "mnist-sample") & (r.imbalance == "step") & r.level.isna()])),
                       ["ros", "imbalance ratio ρ", "fraction of minority classes μ"]),
}

EMPTY = {  # name -> (call on no records, the params file it must name)
    "auc_vs_rho": (lambda: plots.auc_vs_rho([]), "params/mnist/step.yaml"),
    "auc_vs_mu": (lambda: plots.auc_vs_mu(None), "params/mnist/step.yaml"),
    "linear_figure": (lambda: plots.linear_figure(pd.DataFrame()), "params/mnist/linear.yaml"),
    "threshold_accuracy_figure": (lambda: plots.threshold_accuracy_figure([]), "params/mnist/step.yaml"),
    "graded_figure": (lambda: plots.graded_figure([]), "params/mnist/graded.yaml"),
    "curves_figure": (lambda: plots.curves_figure(pd.DataFrame()), "params/quick.yaml"),
    "imagenet_table": (lambda: plots.imagenet_table([]), "params/imagenet/subsets.yaml"),
    "study_profiles_figure": (lambda: plots.study_profiles_figure([]), "params/quick.yaml"),
    "recall_figure": (lambda: plots.recall_figure([]), "params/quick.yaml"),
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


# --- '-thresh' methods: out of ROC AUC figures (thresholding cannot change it), in accuracy ones --

BY_METRIC = {  # name -> call on records with metric= and methods= (None: not named)
    "auc_vs_rho": lambda r, **kw: plots.auc_vs_rho(r, dataset="mnist-sample", **kw),
    "auc_vs_mu": lambda r, **kw: plots.auc_vs_mu(r, dataset="mnist-sample", **kw),
    "linear_figure": lambda r, **kw: plots.linear_figure(r, **kw),
    "graded_figure": lambda r, **kw: plots.graded_figure(r, **kw),
    "imagenet_table": lambda r, **kw: plots.imagenet_table(r, **kw),
    "method_figure": lambda r, **kw: plots.method_figure(r[r.point_id == r.point_id.iloc[0]], **kw),
}
THRESH = [m for m in plots.PALETTE if m.endswith("-thresh")]          # baseline-thresh, ros-thresh, ...
THRESH_COLOURS = {colour(plots.PALETTE[m]) for m in THRESH}


@pytest.fixture(scope="module")
def with_thresh(records):
    """The synthetic study, whose graded points hold ros and rus only, plus ros-thresh there."""
    graded = records[records["level"].notna()]
    return pd.concat([records, graded[graded.method == "ros"].assign(method="ros-thresh")], ignore_index=True)


def shows_thresh(fig) -> bool:
    """Does the figure name a '-thresh' method, or draw in one's colour?"""
    shown = texts(fig)
    return any(m in shown for m in THRESH) or bool(THRESH_COLOURS & data_colours(fig))


@pytest.mark.parametrize("name", sorted(BY_METRIC))
def test_roc_auc_figures_leave_thresholding_out_and_say_so(name, with_thresh):
    fig = BY_METRIC[name](with_thresh, metric="roc_auc", methods=None)
    assert plots.figure_message(fig) is None
    assert not shows_thresh(fig), f"{name}: a '-thresh' method is back in a ROC AUC figure"
    assert plots.THRESH_NOTE in texts(fig) and "ros" in texts(fig)   # the base methods stay


@pytest.mark.parametrize("name", sorted(BY_METRIC))
def test_accuracy_figures_keep_thresholding(name, with_thresh):
    fig = BY_METRIC[name](with_thresh, metric="accuracy", methods=None)
    assert plots.figure_message(fig) is None
    assert shows_thresh(fig), f"{name}: the '-thresh' methods are missing from an accuracy figure"
    assert plots.THRESH_NOTE not in texts(fig)


@pytest.mark.parametrize("name", sorted(BY_METRIC))
def test_roc_auc_figures_show_thresholding_when_named(name, with_thresh):
    named = ["baseline", "ros", "rus", "baseline-thresh", "ros-thresh"]
    fig = BY_METRIC[name](with_thresh, metric="roc_auc", methods=named)
    assert shows_thresh(fig) and plots.THRESH_NOTE not in texts(fig)


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
from imbalance.analysis import frames, explorer, plots, tables


def draw(outdir):
    records = frames.records_frame(all_records())
    plots.save_figure(explorer.explorer_figure(records, dataset="mnist-sample", imbalance="step", rho=100, mu=0.5),
                      outdir, "explorer")
    plots.save_figure(plots.auc_vs_rho(records, dataset="mnist-sample"), outdir, "rho")


if __name__ == "__main__":
    draw(sys.argv[1])
"""


def test_svg_is_identical_in_another_process(tmp_path):
    """Nothing process-specific (object ids, hash order, layout-solver round-off) reaches the SVG."""
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent / "lib"), str(tests)]), "MPLBACKEND": "Agg"}
    subprocess.run([sys.executable, "-c", CROSS_PROCESS, str(tmp_path / "other")], env=env, check=True)
    namespace = {"__name__": "in_process"}
    exec(CROSS_PROCESS, namespace)
    namespace["draw"](tmp_path / "this")
    for name in ("explorer.svg", "rho.svg"):
        assert (tmp_path / "this" / name).read_bytes() == (tmp_path / "other" / name).read_bytes(), name


def test_save_figure_rejects_paths(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        plots.save_figure(plots.profile_figure(), tmp_path, "../escape")


# --- what a reader sees: intervals named, every ρ ticked, coinciding lines visible ------------------

def test_bands_are_stats_intervals_and_the_caption_names_them(records):
    fig = plots.auc_vs_rho(records, dataset="mnist-sample")
    drawn = fig.imbalance_intervals
    expected = stats.method_intervals(records[(records.dataset == "mnist-sample") & (records.imbalance == "step")
                                              & records.level.isna() & ~records.method.str.endswith("-thresh")],
                                      metric="roc_auc")
    key = ["point_id", "method"]
    merged = drawn.merge(expected, on=key, suffixes=("", "_stats"))
    assert len(merged) == len(expected) == len(drawn)
    assert np.allclose(merged["ci_low"], merged["ci_low_stats"]) and np.allclose(merged["ci_high"], merged["ci_high_stats"])
    caption = plots.band_caption(drawn)
    assert "95% logit-t interval" in caption and "n = 3" in caption
    two = plots.auc_vs_rho(records[records["repeat"] < 2], dataset="mnist-sample")
    assert "no interval is drawn" in plots.band_caption(two.imbalance_intervals)
    assert "n = 2" in plots.band_caption(two.imbalance_intervals)


def test_figure_1_of_a_study_ticks_every_rho_of_the_grid_on_a_log_axis(records):
    fig = plots.study_profiles_figure(records[records.dataset == "mnist-sample"], classes=tuple("abcdefghij"))
    for ax in [a for a in fig.axes if a.get_title()]:
        assert ax.get_yscale() == "log"
        assert {400, 40, 4, 0.4} <= {round(t, 6) for t in ax.get_yticks()}
        assert [t.get_text() for t in ax.get_xticklabels()] == list("abcdefghij")


def test_coinciding_lines_stay_visible_markers_and_dodge(records):
    """Two methods with identical numbers: different markers, and x positions apart."""
    step = records[(records.dataset == "mnist-sample") & (records.imbalance == "step") & records.level.isna()]
    twin = pd.concat([step[step.method == "baseline"], step[step.method == "baseline"].assign(method="ros")])
    fig = plots.auc_vs_rho(twin, dataset="mnist-sample")
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in ("baseline", "ros")]
    assert len(lines) == 2
    (a, b) = lines
    assert a.get_marker() != b.get_marker()
    assert np.allclose(a.get_ydata(), b.get_ydata()) and not np.allclose(a.get_xdata(), b.get_xdata())


def test_no_legend_entry_is_invisible(records, curves):
    for fig in (plots.auc_vs_rho(records, dataset="mnist-sample"), plots.threshold_accuracy_figure(records),
                plots.curves_figure(curves, records=records)):
        for legend in fig.legends:
            for text, handle in zip(legend.get_texts(), legend.legend_handles):
                assert text.get_text().strip()
                visible = handle.get_visible() and (getattr(handle, "get_linestyle", lambda: "-")() not in ("None", "")
                                                    or getattr(handle, "get_marker", lambda: "o")() not in ("None", ""))
                assert visible, f"invisible legend entry {text.get_text()!r}"


def test_learning_curves_in_grid_order_with_readable_titles(records):
    rows = [{"point_id": r["point_id"], "method": r["method"], "repeat": r["repeat"], **c}
            for r in all_records(kinds=("step",)) for c in r["curve"]]
    fig = plots.curves_figure(pd.DataFrame(rows), records=records)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"step: ρ={r}, μ={m}; the paper's methods" for r in (10, 100, 1000) for m in (0.2, 0.5)]


def test_figure_names_never_say_none():
    assert plots.figure_name("fig3_auc_vs_rho", None) == "fig3_auc_vs_rho"
    assert plots.figure_name("winners", "cifar10-jpg", "step") == "winners_cifar10-jpg_step"
    assert plots.figure_name("recall", "my data/set") == "recall_my-data-set"
    with pytest.raises(ValueError, match="None"):
        plots.save_figure(plots.profile_figure(), "/nonexistent", "fig_None")


def test_winners_map_says_highest_mean_and_never_pales_a_cell_for_one_untested_method():
    winners = pd.DataFrame([
        dict(rho=10, mu=0.5, winner="ros", equivalent=("rus", "two-phase-ros"), undecided=(), untested=(), n=5),
        dict(rho=100, mu=0.5, winner="ros", equivalent=(), undecided=("rus",), untested=(), n=5),
        dict(rho=10, mu=0.2, winner="baseline", equivalent=(), undecided=(), untested=("ros",), n=2),
        dict(rho=100, mu=0.2, winner=None, equivalent=(), undecided=(), untested=(), n=0),
        dict(rho=100, mu=0.9, winner="crt", equivalent=(), undecided=(), untested=("cb-focal", "ldam-drw", "focal"),
             n=3)])
    fig = evidence_plots.winners_figure(winners)
    shown = texts(fig)
    assert "≈ rus, two-phase-ros" in shown and "untested: ros" in shown and "no winner" in shown
    assert "? rus" in shown and "3 untested" in shown            # named up to two, counted beyond
    assert "highest mean: crt" in shown and "others" not in shown.replace("equivalent to others", "")
    hatched = [p for p in fig.axes[0].patches if p.get_hatch()]
    assert len(hatched) == 1                                    # the one point with equivalent methods
    assert "equivalent to others" in shown and "pale" not in shown
    alphas = {p.get_alpha() for p in fig.axes[0].patches if p.get_facecolor()[:3] != (0.88, 0.88, 0.88)}
    assert alphas == {0.6}                                      # untested methods do not fade a cell


def test_forest_plot_draws_each_interval_zero_and_the_margin_band():
    evidence = pd.DataFrame([
        dict(part="a", label="rho 10", estimate=0.002, ci_low=-0.001, ci_high=0.005, margin=0.005, outcome="undecided"),
        dict(part="a", label="rho 100", estimate=0.04, ci_low=0.03, ci_high=0.05, margin=0.005, outcome="as claimed")])
    fig = evidence_plots.forest_figure(evidence)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["rho 10", "rho 100"]
    bars = [line.get_xdata() for line in ax.lines if len(line.get_xdata()) == 2 and line.get_ydata()[0] == line.get_ydata()[1]]
    assert any(list(b) == [0.03, 0.05] for b in bars) and any(list(b) == [-0.001, 0.005] for b in bars)
    band = [p for p in ax.patches if p.get_xy is not None]
    assert band and "±δ = 0.005" in texts(fig)


def test_critical_difference_diagram_shows_the_ranks_and_the_cd():
    from imbalance.analysis.ranking import Ranking
    ranking = Ranking("roc_auc", pd.Series({"ros": 1.2, "baseline": 2.1, "rus": 2.7}), 12, 0, 10.0, 0.006, 0.96,
                      0.05, (("ros", "baseline"), ("baseline", "rus")))
    shown = texts(evidence_plots.critical_difference_figure(ranking))
    assert "CD = 0.96" in shown and "ros (1.20)" in shown and "rus (2.70)" in shown


def test_many_classes_get_bars_without_a_label_each():
    """ImageNet-sized profiles (1000 classes) stay drawable: no tick label per class."""
    counts = [13] * 900 + [1300] * 100
    frame = pd.DataFrame([dict(point_id="p", dataset="imagefolder", imbalance="step", rho=100, mu=0.9, method="baseline",
                               repeat=0, class_counts=counts, roc_auc=0.9)])
    fig = plots.study_profiles_figure(frame)
    ax = fig.axes[0]
    assert len(ax.patches) == 1000 and len(ax.get_xticks()) == 0 and ax.get_yscale() == "log"
