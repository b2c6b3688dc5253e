"""Figures of a study's records: the paper's figures, one grid point's methods, and saving them.

Every figure function takes the records (a DataFrame from `Store.records_frame`, or the list of
record dicts a training notebook gets from `run_grid_point`) and returns a matplotlib Figure:

| function                    | the paper's | shows                                                        |
|-----------------------------|-------------|--------------------------------------------------------------|
| `profile_figure`            | Figure 1    | class-count profiles of step and linear imbalance            |
| `auc_vs_rho`                | Figures 3/4 | ROC AUC vs rho (log axis) per method, one panel per mu       |
| `auc_vs_mu`                 |             | ROC AUC vs mu per method, one panel per rho                  |
| `linear_figure`             | Figure 5    | ROC AUC vs rho under linear imbalance                        |
| `threshold_accuracy_figure` | Figure 6    | accuracy with (dashed) and without thresholding vs rho       |
| `graded_figure`             | Figure 7    | ROC AUC vs the ratio after graded over/undersampling         |
| `curves_figure`             | Figure 8    | train/test accuracy vs iteration (from `Store.curves_frame`) |
| `imagenet_table`            | Table 4     | ROC AUC per method and ImageNet subset, as a table           |
| `method_figure`             |             | a metric per method at one grid point (training notebooks)   |

Lines and points are the mean over repeats with a 95% bootstrap interval (seaborn's
errorbar=("ci", 95), seed 0: the same records always give the same figure).  Without the records a
figure needs, a function returns a figure whose text names the params file that produces them
(`message_figure`; `figure_message` reads it back).  A ROC AUC figure leaves the '-thresh' methods
out unless `methods` names them, and says so under the plot: thresholding divides each class's
scores by its prior, which cannot change one-vs-rest ROC AUC, so their lines would sit exactly on
their base methods' (`imbalance.tables.metric_records`); the accuracy figures keep them.
`save_figure` writes PNG + SVG that regenerate byte-identically.

The records as tables are `imbalance.tables`; the widget explorer's view is `imbalance.explorer`;
`imbalance.report.write_report` runs notebooks/figures.ipynb for a study into its report.html.

No torch here: plotting a study never imports the training stack.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from imbalance.params import METHODS as METHOD_ORDER
from imbalance.profiles import profile_counts
from imbalance.tables import (N_BOOT, SEED, bootstrap_ci, curves_frame, format_value, methods_present,
                              metric_records, point_label, records_frame, select_records, thresholded)

ERRORBAR = ("ci", 95)          # mean and 95% bootstrap interval over repeats (tables.SEED, N_BOOT)
RHO = "imbalance ratio ρ"
MU = "fraction of minority classes μ"
LEVEL = "ratio after sampling"
METRICS = {"roc_auc": "multi-class ROC AUC", "accuracy": "accuracy",
           "thresholded_accuracy": "accuracy after thresholding",
           "balanced_accuracy": "balanced accuracy"}
PALETTE = dict(zip(METHOD_ORDER, sns.color_palette("tab10", len(METHOD_ORDER))))
# under a figure that left the '-thresh' methods out (tables.metric_records)
THRESH_NOTE = "no '-thresh' methods: thresholding leaves ROC AUC unchanged; see the accuracy figures"
# which params file produces which records (the "no data" figures say so)
RUN = {
    "step": "`imbalance run params/mnist/step.yaml` (MNIST) or `params/cifar10/step.yaml` (CIFAR-10); "
            "`params/quick.yaml` for a quick look",
    "linear": "`imbalance run params/mnist/linear.yaml` (MNIST) or `params/cifar10/linear.yaml` (CIFAR-10)",
    "graded": "`imbalance run params/mnist/graded.yaml`",
    "curves": "any study, e.g. `imbalance run params/quick.yaml`",
    "imagenet": "`imbalance run params/imagenet/subsets.yaml`",
    "any": "`imbalance run params/quick.yaml`",
}
# matplotlib settings that make saved files byte-identical from one save to the next
SAVE_RC = {"svg.hashsalt": "imbalance", "svg.id": None, "svg.fonttype": "path"}
PNG_METADATA = {"Software": None}
SVG_METADATA = {"Date": None, "Creator": None}


# --- figures: helpers -------------------------------------------------------------------------

def method_palette(methods: Iterable[str]) -> dict[str, Any]:
    return {m: PALETTE.get(m, (0.4, 0.4, 0.4)) for m in methods}


def message_figure(text: str, *, title: str | None = None) -> Figure:
    """A figure that only says something (e.g. which params file produces the missing records)."""
    fig = plt.figure(figsize=(8, 1.8))
    body = text if title is None else f"{title}\n\n{text}"
    ax = fig.add_axes((0, 0, 1, 1))   # an (invisible) axes: IPython does not display a figure without one
    ax.axis("off")
    ax.text(0.5, 0.5, body, ha="center", va="center", wrap=True, fontsize=11, transform=ax.transAxes)
    fig.imbalance_message = body
    plt.close(fig)
    return fig


def figure_message(fig: Figure) -> str | None:
    """The text of a figure made by `message_figure`, else None."""
    return getattr(fig, "imbalance_message", None)


def _no_records(what: str, run: str) -> Figure:
    return message_figure(f"no {what} records: run {RUN[run]}")


def thresh_note(fig: Figure, omitted: bool) -> None:
    """Say under the figure that its '-thresh' methods were left out (when they were)."""
    if omitted:
        fig.text(0.5, 0, THRESH_NOTE, ha="center", va="top", fontsize=9, color="0.3", wrap=True)


def _facets(data: pd.DataFrame, name: str, symbol: str) -> tuple[str | None, list[str] | None]:
    """A facet column '<symbol> = value' for `name`, or (None, None) when it has one value."""
    values = sorted(pd.unique(data[name].dropna()))
    if len(values) <= 1:
        return None, None
    data[symbol] = data[name].map(format_value)
    return symbol, [format_value(v) for v in values]


def _line_figure(data: pd.DataFrame, *, x: str, y: str, methods: list[str], xlabel: str, ylabel: str,
                 col: tuple[str, str] | None = None, row: tuple[str, str] | None = None, style: str | None = None,
                 style_order: list[str] | None = None, xlog: bool = False, title: str | None = None,
                 thresh_omitted: bool = False) -> Figure:
    """Lines of y vs x per method (mean, 95% CI over repeats), faceted by col/row (name, symbol)."""
    data = data.copy()
    col_var, col_order = _facets(data, *col) if col else (None, None)
    row_var, row_order = _facets(data, *row) if row else (None, None)
    wrap = 3 if col_var and not row_var and len(col_order) > 3 else None
    grid = sns.relplot(data=data, kind="line", x=x, y=y, hue="method", hue_order=methods,
                       palette=method_palette(methods), style=style, style_order=style_order,
                       col=col_var, col_order=col_order,
                       row=row_var, row_order=row_order, col_wrap=wrap, errorbar=ERRORBAR, seed=SEED,
                       n_boot=N_BOOT, marker="o", markersize=5, height=3.0, aspect=1.25,
                       facet_kws={"sharex": True, "sharey": True})
    if xlog:
        grid.set(xscale="log")
    grid.set_axis_labels(xlabel, ylabel)
    grid.set_titles(template="{col_var} = {col_name}" if col_var and not row_var else
                    "{row_var} = {row_name} | {col_var} = {col_name}" if col_var and row_var else
                    "{row_var} = {row_name}" if row_var else "")
    if title:
        grid.figure.suptitle(title, y=1.02)
    fig = grid.figure
    thresh_note(fig, thresh_omitted)
    plt.close(fig)
    return fig


def figure_title(*parts) -> str:
    return ", ".join(p for p in parts if p)


def _datasets_text(data: pd.DataFrame) -> str:
    return " / ".join(sorted(pd.unique(data["dataset"].dropna())))


# --- the paper's figures ----------------------------------------------------------------------

def profile_figure(*, rho: float = 10, mu: float = 0.5, n_classes: int = 10, n_max: int = 5000,
                   imbalances: Iterable[str] = ("step", "linear")) -> Figure:
    """Figure 1: class-count profiles (rank order, smallest class first) of each imbalance type."""
    imbalances = list(imbalances)
    fig, axes = plt.subplots(1, len(imbalances), figsize=(3.8 * len(imbalances), 3.0), sharey=True,
                             squeeze=False)
    for ax, kind in zip(axes[0], imbalances):
        counts = profile_counts(kind, n_classes=n_classes, n_max=n_max, rho=rho,
                                mu=mu if kind == "step" else None)
        profile_bars(ax, counts, title=f"{kind} imbalance: ρ = {format_value(rho)}" +
                      (f", μ = {format_value(mu)}" if kind == "step" else ""))
    axes[0][0].set_ylabel("training examples")
    fig.tight_layout()
    plt.close(fig)
    return fig


def profile_bars(ax, counts, *, title: str) -> None:
    counts = np.asarray(counts)
    minority = counts < counts.max()
    colors = [sns.color_palette()[3] if m else sns.color_palette()[0] for m in minority]
    ax.bar(np.arange(1, len(counts) + 1), counts, color=colors)
    ax.set_xticks(np.arange(1, len(counts) + 1))
    ax.set_xlabel("class (smallest first)")
    ax.set_title(title, fontsize=10)


def auc_vs_rho(records, *, mu: float | None = None, dataset: str | None = None, methods=None,
               metric: str = "roc_auc") -> Figure:
    """Figures 3 (MNIST) / 4 (CIFAR-10): metric vs ρ (log axis) per method, one panel per μ
    (or only μ = `mu`), one row per dataset."""
    return _step_figure(records, x="rho", at=("mu", mu), dataset=dataset, methods=methods, metric=metric)


def auc_vs_mu(records, *, rho: float | None = None, dataset: str | None = None, methods=None,
              metric: str = "roc_auc") -> Figure:
    """Metric vs μ per method, one panel per ρ (or only ρ = `rho`), one row per dataset."""
    return _step_figure(records, x="mu", at=("rho", rho), dataset=dataset, methods=methods, metric=metric)


def _step_figure(records, *, x: str, at: tuple[str, float | None], dataset, methods, metric: str) -> Figure:
    """Step imbalance: metric vs x ('rho', log axis, or 'mu') per method, one panel per value of
    the other (`at`: its name and the one value to keep, or None for all), one row per dataset."""
    other, value = at
    symbol = {"rho": "ρ", "mu": "μ"}
    frame, omitted = metric_records(records, metric, methods=methods, dataset=dataset, imbalance="step",
                                    **{other: value})
    if frame.empty:
        where = f" at {symbol[other]} = {format_value(value)}" if value is not None else ""
        return _no_records(f"step-imbalance{where}" + (f" {dataset}" if dataset else ""), "step")
    return _line_figure(frame, x=x, y=metric, methods=methods_present(frame, methods), xlabel={"rho": RHO, "mu": MU}[x],
                        ylabel=METRICS.get(metric, metric), col=(other, symbol[other]), row=("dataset", "dataset"),
                        xlog=x == "rho", title=figure_title(_datasets_text(frame), "step imbalance"),
                        thresh_omitted=omitted)


def linear_figure(records, *, dataset: str | None = None, methods=None, metric: str = "roc_auc") -> Figure:
    """Figure 5: metric vs ρ (log axis) per method under linear imbalance, one panel per dataset."""
    frame, omitted = metric_records(records, metric, methods=methods, dataset=dataset, imbalance="linear")
    if frame.empty:
        return _no_records("linear-imbalance" + (f" {dataset}" if dataset else ""), "linear")
    return _line_figure(frame, x="rho", y=metric, methods=methods_present(frame, methods), xlabel=RHO,
                        ylabel=METRICS.get(metric, metric), col=("dataset", "dataset"), xlog=True,
                        title=figure_title(_datasets_text(frame), "linear imbalance"), thresh_omitted=omitted)


def threshold_accuracy_figure(records, *, imbalance: str = "step", mu: float | None = None,
                              dataset: str | None = None, methods=None) -> Figure:
    """Figure 6: accuracy of each network with argmax (solid) and thresholded (dashed) predictions
    vs ρ, one panel per μ.  '-thresh' methods are left out: they are their base method, thresholded."""
    frame = select_records(records_frame(records), dataset=dataset, imbalance=imbalance, methods=methods, mu=mu)
    frame = frame[~thresholded(frame["method"])]
    frame = frame.dropna(subset=["accuracy", "thresholded_accuracy"])
    if frame.empty:
        return _no_records(f"{imbalance}-imbalance (with accuracy and thresholded accuracy)",
                           imbalance if imbalance in RUN else "any")
    long = frame.melt(id_vars=["dataset", "rho", "mu", "method", "repeat"],
                      value_vars=["accuracy", "thresholded_accuracy"], var_name="prediction", value_name="acc")
    long["prediction"] = long["prediction"].map({"accuracy": "argmax", "thresholded_accuracy": "thresholded"})
    return _line_figure(long, x="rho", y="acc", methods=methods_present(frame, methods), style="prediction",
                        xlabel=RHO, ylabel="accuracy", col=("mu", "μ"), row=("dataset", "dataset"), xlog=True,
                        title=figure_title(_datasets_text(frame),
                                           f"{imbalance} imbalance: with and without thresholding"))


def graded_figure(records, *, dataset: str | None = None, methods=("ros", "rus"), metric: str = "roc_auc") -> Figure:
    """Figure 7: metric vs the ratio after graded over/undersampling (log axis; 1 = fully balanced,
    ρ = no sampling), one panel per μ, one row per ρ."""
    frame, omitted = metric_records(records, metric, methods=methods, dataset=dataset, graded=True)
    if frame.empty:
        return _no_records("graded-sampling", "graded")
    row = ("rho", "ρ") if frame["rho"].nunique() > 1 else ("dataset", "dataset")
    rhos = ", ".join(f"ρ = {format_value(r)}" for r in sorted(frame["rho"].unique()))
    return _line_figure(frame, x="level", y=metric, methods=methods_present(frame, methods), xlabel=LEVEL,
                        ylabel=METRICS.get(metric, metric), col=("mu", "μ"), row=row, xlog=True,
                        title=figure_title(_datasets_text(frame), "graded sampling", rhos), thresh_omitted=omitted)


def curves_figure(curves, *, point_id: str | Iterable[str] | None = None, methods=None,
                  max_points: int = 3) -> Figure:
    """Figure 8: test (solid) and train (dashed) accuracy vs iteration per method, one panel per
    grid point (`point_id`, or the first `max_points` points).  '-thresh' methods are left out:
    they share their base method's network, so its curve."""
    frame = curves_frame(curves)
    frame = frame.dropna(subset=["iteration"])
    frame = frame[~thresholded(frame["method"])]   # the base method's network
    if methods is not None:
        frame = frame[frame["method"].isin(list(methods))]
    points = sorted(pd.unique(frame["point_id"].dropna()))
    if point_id is not None:
        chosen = [point_id] if isinstance(point_id, str) else list(point_id)
        points = [p for p in points if p in chosen]
    else:
        points = points[:max_points]
    frame = frame[frame["point_id"].isin(points)]
    if frame.empty:
        return _no_records("training-curve", "curves")
    long = frame.melt(id_vars=["point_id", "method", "repeat", "iteration"],
                      value_vars=["train_accuracy", "test_accuracy"], var_name="set", value_name="acc")
    long["set"] = long["set"].map({"train_accuracy": "train", "test_accuracy": "test"})
    for column in ("iteration", "acc"):
        long[column] = pd.to_numeric(long[column], errors="coerce")
    return _line_figure(long, x="iteration", y="acc", methods=methods_present(frame, methods), style="set",
                        style_order=["test", "train"],
                        xlabel="iteration", ylabel="accuracy", col=("point_id", "point"),
                        title="learning curves" if len(points) > 1 else f"learning curves: {points[0]}")


def imagenet_table(records, *, dataset: str = "imagefolder", metric: str = "roc_auc", methods=None) -> Figure:
    """Table 4: metric per method (rows) on each ImageNet subset (columns), drawn as a table;
    cells are 'mean [95% CI]' over repeats (the mean alone for one repeat)."""
    frame, omitted = metric_records(records, metric, methods=methods, dataset=dataset, graded=None)
    if frame.empty:
        return _no_records(f"{dataset} (ImageNet)", "imagenet")
    methods = methods_present(frame, methods)
    frame = frame.assign(point=[point_label(r, m, lv) for r, m, lv in zip(frame.rho, frame.mu, frame.level)])
    points = frame.sort_values(["rho", "mu"]).drop_duplicates("point")["point"].tolist()
    cells = []
    for method in methods:
        row = []
        for point in points:
            values = frame.loc[(frame["method"] == method) & (frame["point"] == point), metric]
            if values.empty:
                row.append("")
            elif len(values) == 1:
                row.append(f"{values.mean():.4f}")
            else:
                low, high = bootstrap_ci(values)
                row.append(f"{values.mean():.4f} [{low:.4f}, {high:.4f}]")
        cells.append(row)
    fig = plt.figure(figsize=(2.0 + 2.2 * len(points), 0.5 + 0.32 * (len(methods) + 1)))
    ax = fig.add_subplot()
    ax.axis("off")
    table = ax.table(cellText=cells, rowLabels=methods, colLabels=points, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    ax.set_title(f"{METRICS.get(metric, metric)} on {dataset} subsets (mean [95% CI] over repeats)", fontsize=10)
    thresh_note(fig, omitted)
    plt.close(fig)
    return fig


# --- one grid point: training notebooks -------------------------------------------------------

def method_figure(records, *, metric: str = "roc_auc", title: str | None = None, methods=None) -> Figure:
    """A metric per method (mean and 95% CI over repeats) at one grid point (or all points pooled)."""
    frame, omitted = metric_records(records, metric, methods=methods, graded=None)
    if frame.empty:
        return message_figure(f"no records with {metric}: every network diverged, or none was trained")
    methods = methods_present(frame, methods)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(methods), 3.2))
    sns.pointplot(data=frame, x="method", y=metric, order=methods, hue="method", hue_order=methods,
                  palette=method_palette(methods), errorbar=ERRORBAR, seed=SEED, n_boot=N_BOOT, linestyle="none",
                  capsize=0.2, legend=False, ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel(METRICS.get(metric, metric))
    ax.tick_params(axis="x", rotation=30)
    points = sorted(pd.unique(frame["point_id"].dropna()))
    ax.set_title(title or (points[0] if len(points) == 1 else f"{len(points)} grid points pooled"), fontsize=10)
    fig.tight_layout()
    thresh_note(fig, omitted)
    plt.close(fig)
    return fig


# --- files ------------------------------------------------------------------------------------

def save_figure(fig: Figure, outdir: str | os.PathLike, name: str, *, dpi: int = 120) -> tuple[Path, Path]:
    """Write outdir/name.png and outdir/name.svg; the same figure gives the same bytes every time."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"figure name must be a plain file name without folders, got {name!r}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    png, svg = outdir / f"{name}.png", outdir / f"{name}.svg"
    with matplotlib.rc_context(SAVE_RC):
        fig.savefig(png, dpi=dpi, bbox_inches="tight", metadata=PNG_METADATA)
        fig.savefig(svg, bbox_inches="tight", metadata=SVG_METADATA)
    return png, svg
