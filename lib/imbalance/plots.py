"""Figures and tables of a study's records: the paper's figures, the explorer, and the report.

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
| `explorer_figure`           |             | profile + metric curves around one chosen grid point         |

Lines and points are the mean over repeats with a 95% bootstrap interval (seaborn's
errorbar=("ci", 95), seed 0: the same records always give the same figure).  Without the records a
figure needs, a function returns a figure whose text names the params file that produces them.
Tables (`method_table`, `explorer_table`, `grid_table`, `point_table`, `counts_table`) are
DataFrames.  `save_figure` writes PNG + SVG that regenerate byte-identically; `imbalance.report.write_report` runs
notebooks/figures.ipynb for a study and converts it to outputs/<study>/report.html.

No torch here: plotting a study never imports the training stack.
"""
from __future__ import annotations

import math
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

SEED = 0                       # bootstrap seed of every interval
ERRORBAR = ("ci", 95)          # mean and 95% bootstrap interval over repeats
N_BOOT = 1000
RHO = "imbalance ratio ρ"
MU = "fraction of minority classes μ"
LEVEL = "ratio after sampling"
METRICS = {"roc_auc": "multi-class ROC AUC", "accuracy": "accuracy",
           "thresholded_accuracy": "accuracy after thresholding",
           "balanced_accuracy": "balanced accuracy"}
PALETTE = dict(zip(METHOD_ORDER, sns.color_palette("tab10", len(METHOD_ORDER))))
NUMERIC = ("rho", "mu", "level", "repeat", "roc_auc", "accuracy", "thresholded_accuracy",
           "balanced_accuracy", "diverged")
COLUMNS = ("study", "point_id", "dataset", "imbalance", "rho", "mu", "level", "method", "repeat",
           "roc_auc", "accuracy", "thresholded_accuracy", "balanced_accuracy", "class_counts", "diverged")
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


# --- records ----------------------------------------------------------------------------------

def records_frame(records) -> pd.DataFrame:
    """Records (DataFrame, list of dicts or None) as a DataFrame with the columns plots use."""
    if records is None:
        frame = pd.DataFrame()
    elif isinstance(records, pd.DataFrame):
        frame = records.copy()
    else:
        frame = pd.DataFrame(list(records))
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    for column in NUMERIC:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.reset_index(drop=True)


def load_study(study: str, outputs_dir: str | os.PathLike = "outputs") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records, curves) of outputs_dir/<study>/results.sqlite; two empty frames if it does not exist.

    Reads only: a study that has not run yet gets no database file from looking at it.
    """
    path = Path(outputs_dir) / study / "results.sqlite"
    if not path.is_file():
        return records_frame(None), _curves_frame(None)
    from imbalance.store import Store
    with Store(path) as store:
        return records_frame(store.records_frame(study)), _curves_frame(store.curves_frame(study))


def _curves_frame(curves) -> pd.DataFrame:
    frame = pd.DataFrame() if curves is None else pd.DataFrame(curves).copy()
    for column in ("point_id", "method", "repeat", "iteration", "train_accuracy", "test_accuracy"):
        if column not in frame:
            frame[column] = None
    return frame


def _close(values, target) -> np.ndarray:
    """values == target for floats (None/NaN target matches missing values)."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    if target is None or (isinstance(target, float) and math.isnan(target)):
        return np.isnan(values)
    return np.isclose(values, float(target), rtol=1e-9, atol=1e-12)


def _methods(frame: pd.DataFrame, methods=None) -> list[str]:
    """The methods present (or the chosen ones), in the registry's order."""
    present = [m for m in pd.unique(frame["method"].dropna())]
    if methods is not None:
        present = [m for m in present if m in set(methods)]
    known = [m for m in METHOD_ORDER if m in present]
    return known + sorted(m for m in present if m not in METHOD_ORDER)


def _palette(methods: Iterable[str]) -> dict[str, Any]:
    return {m: PALETTE.get(m, (0.4, 0.4, 0.4)) for m in methods}


def _fmt(x) -> str:
    """10.0 -> '10', 0.5 -> '0.5' (for titles and labels)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, str):
        return x
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:g}"


def _select(frame: pd.DataFrame, *, dataset=None, imbalance=None, methods=None, graded: bool | None = False,
            **equal) -> pd.DataFrame:
    keep = np.ones(len(frame), dtype=bool)
    if dataset is not None:
        keep &= (frame["dataset"] == dataset).to_numpy()
    if imbalance is not None:
        keep &= (frame["imbalance"] == imbalance).to_numpy()
    if graded is not None:
        keep &= frame["level"].notna().to_numpy() if graded else frame["level"].isna().to_numpy()
    if methods is not None:
        keep &= frame["method"].isin(list(methods)).to_numpy()
    for column, value in equal.items():
        if value is not None:
            keep &= _close(frame[column], value)
    return frame[keep]


def bootstrap_ci(values) -> tuple[float, float]:
    """The 95% bootstrap interval of the mean that the figures draw (seed 0, 1000 resamples)."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return (math.nan, math.nan)
    if len(values) == 1:
        return (float(values[0]), float(values[0]))
    from seaborn.algorithms import bootstrap
    from seaborn.utils import ci
    low, high = ci(bootstrap(values, n_boot=N_BOOT, func="mean", seed=SEED), 95)
    return (float(low), float(high))


# --- figures: helpers -------------------------------------------------------------------------

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


def _facets(data: pd.DataFrame, name: str, symbol: str) -> tuple[str | None, list[str] | None]:
    """A facet column '<symbol> = value' for `name`, or (None, None) when it has one value."""
    values = sorted(pd.unique(data[name].dropna()))
    if len(values) <= 1:
        return None, None
    data[symbol] = data[name].map(_fmt)
    return symbol, [_fmt(v) for v in values]


def _line_figure(data: pd.DataFrame, *, x: str, y: str, methods: list[str], xlabel: str, ylabel: str,
                 col: tuple[str, str] | None = None, row: tuple[str, str] | None = None, style: str | None = None,
                 style_order: list[str] | None = None, xlog: bool = False, title: str | None = None) -> Figure:
    """Lines of y vs x per method (mean, 95% CI over repeats), faceted by col/row (name, symbol)."""
    data = data.copy()
    col_var, col_order = _facets(data, *col) if col else (None, None)
    row_var, row_order = _facets(data, *row) if row else (None, None)
    wrap = 3 if col_var and not row_var and len(col_order) > 3 else None
    grid = sns.relplot(data=data, kind="line", x=x, y=y, hue="method", hue_order=methods,
                       palette=_palette(methods), style=style, style_order=style_order,
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
    plt.close(fig)
    return fig


def _title(*parts) -> str:
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
        _profile_bars(ax, counts, title=f"{kind} imbalance: ρ = {_fmt(rho)}" +
                      (f", μ = {_fmt(mu)}" if kind == "step" else ""))
    axes[0][0].set_ylabel("training examples")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _profile_bars(ax, counts, *, title: str) -> None:
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
    frame = _select(records_frame(records), dataset=dataset, imbalance="step", methods=methods, mu=mu)
    frame = frame.dropna(subset=[metric])
    if frame.empty:
        at = f" at μ = {_fmt(mu)}" if mu is not None else ""
        return _no_records(f"step-imbalance{at}" + (f" {dataset}" if dataset else ""), "step")
    return _line_figure(frame, x="rho", y=metric, methods=_methods(frame, methods), xlabel=RHO,
                        ylabel=METRICS.get(metric, metric), col=("mu", "μ"), row=("dataset", "dataset"),
                        xlog=True, title=_title(_datasets_text(frame), "step imbalance"))


def auc_vs_mu(records, *, rho: float | None = None, dataset: str | None = None, methods=None,
              metric: str = "roc_auc") -> Figure:
    """Metric vs μ per method, one panel per ρ (or only ρ = `rho`), one row per dataset."""
    frame = _select(records_frame(records), dataset=dataset, imbalance="step", methods=methods, rho=rho)
    frame = frame.dropna(subset=[metric])
    if frame.empty:
        at = f" at ρ = {_fmt(rho)}" if rho is not None else ""
        return _no_records(f"step-imbalance{at}" + (f" {dataset}" if dataset else ""), "step")
    return _line_figure(frame, x="mu", y=metric, methods=_methods(frame, methods), xlabel=MU,
                        ylabel=METRICS.get(metric, metric), col=("rho", "ρ"), row=("dataset", "dataset"),
                        title=_title(_datasets_text(frame), "step imbalance"))


def linear_figure(records, *, dataset: str | None = None, methods=None, metric: str = "roc_auc") -> Figure:
    """Figure 5: metric vs ρ (log axis) per method under linear imbalance, one panel per dataset."""
    frame = _select(records_frame(records), dataset=dataset, imbalance="linear", methods=methods)
    frame = frame.dropna(subset=[metric])
    if frame.empty:
        return _no_records("linear-imbalance" + (f" {dataset}" if dataset else ""), "linear")
    return _line_figure(frame, x="rho", y=metric, methods=_methods(frame, methods), xlabel=RHO,
                        ylabel=METRICS.get(metric, metric), col=("dataset", "dataset"), xlog=True,
                        title=_title(_datasets_text(frame), "linear imbalance"))


def threshold_accuracy_figure(records, *, imbalance: str = "step", mu: float | None = None,
                              dataset: str | None = None, methods=None) -> Figure:
    """Figure 6: accuracy of each network with argmax (solid) and thresholded (dashed) predictions
    vs ρ, one panel per μ.  '-thresh' methods are left out: they are their base method, thresholded."""
    frame = _select(records_frame(records), dataset=dataset, imbalance=imbalance, methods=methods, mu=mu)
    frame = frame[~frame["method"].astype(str).str.endswith("-thresh")]
    frame = frame.dropna(subset=["accuracy", "thresholded_accuracy"])
    if frame.empty:
        return _no_records(f"{imbalance}-imbalance (with accuracy and thresholded accuracy)",
                           imbalance if imbalance in RUN else "any")
    long = frame.melt(id_vars=["dataset", "rho", "mu", "method", "repeat"],
                      value_vars=["accuracy", "thresholded_accuracy"], var_name="prediction", value_name="acc")
    long["prediction"] = long["prediction"].map({"accuracy": "argmax", "thresholded_accuracy": "thresholded"})
    return _line_figure(long, x="rho", y="acc", methods=_methods(frame, methods), style="prediction",
                        xlabel=RHO, ylabel="accuracy", col=("mu", "μ"), row=("dataset", "dataset"), xlog=True,
                        title=_title(_datasets_text(frame), f"{imbalance} imbalance: with and without thresholding"))


def graded_figure(records, *, dataset: str | None = None, methods=("ros", "rus"), metric: str = "roc_auc") -> Figure:
    """Figure 7: metric vs the ratio after graded over/undersampling (log axis; 1 = fully balanced,
    ρ = no sampling), one panel per μ, one row per ρ."""
    frame = _select(records_frame(records), dataset=dataset, methods=methods, graded=True)
    frame = frame.dropna(subset=[metric])
    if frame.empty:
        return _no_records("graded-sampling", "graded")
    row = ("rho", "ρ") if frame["rho"].nunique() > 1 else ("dataset", "dataset")
    rhos = ", ".join(f"ρ = {_fmt(r)}" for r in sorted(frame["rho"].unique()))
    return _line_figure(frame, x="level", y=metric, methods=_methods(frame, methods), xlabel=LEVEL,
                        ylabel=METRICS.get(metric, metric), col=("mu", "μ"), row=row, xlog=True,
                        title=_title(_datasets_text(frame), "graded sampling", rhos))


def curves_figure(curves, *, point_id: str | Iterable[str] | None = None, methods=None,
                  max_points: int = 3) -> Figure:
    """Figure 8: test (solid) and train (dashed) accuracy vs iteration per method, one panel per
    grid point (`point_id`, or the first `max_points` points).  '-thresh' methods are left out:
    they share their base method's network, so its curve."""
    frame = _curves_frame(curves)
    frame = frame.dropna(subset=["iteration"])
    frame = frame[~frame["method"].astype(str).str.endswith("-thresh")]   # the base method's network
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
    return _line_figure(long, x="iteration", y="acc", methods=_methods(frame, methods), style="set",
                        style_order=["test", "train"],
                        xlabel="iteration", ylabel="accuracy", col=("point_id", "point"),
                        title="learning curves" if len(points) > 1 else f"learning curves: {points[0]}")


def point_table(records, *, dataset: str | None = None, metric: str = "roc_auc", methods=None) -> pd.DataFrame:
    """Mean metric per method (rows) and grid point (columns 'ρ=…, μ=…'), e.g. Table 4's numbers."""
    frame = _select(records_frame(records), dataset=dataset, methods=methods, graded=None)
    frame = frame.dropna(subset=[metric])
    if frame.empty:
        return pd.DataFrame()
    frame = frame.assign(point=[_point_label(r, m, lv) for r, m, lv in zip(frame.rho, frame.mu, frame.level)])
    order = (frame.sort_values(["rho", "mu", "level"]).drop_duplicates("point")["point"]).tolist()
    table = frame.pivot_table(index="method", columns="point", values=metric, aggfunc="mean")
    return table.reindex(index=_methods(frame, methods), columns=order)


def _point_label(rho, mu, level=None) -> str:
    return ", ".join([f"ρ={_fmt(rho)}"] + ([f"μ={_fmt(mu)}"] if not pd.isna(mu) else [])
                     + ([f"level={_fmt(level)}"] if level is not None and not pd.isna(level) else []))


def imagenet_table(records, *, dataset: str = "imagefolder", metric: str = "roc_auc") -> Figure:
    """Table 4: metric per method (rows) on each ImageNet subset (columns), drawn as a table;
    cells are 'mean [95% CI]' over repeats (the mean alone for one repeat)."""
    frame = _select(records_frame(records), dataset=dataset, graded=None).dropna(subset=[metric])
    if frame.empty:
        return _no_records(f"{dataset} (ImageNet)", "imagenet")
    methods = _methods(frame)
    frame = frame.assign(point=[_point_label(r, m, lv) for r, m, lv in zip(frame.rho, frame.mu, frame.level)])
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
    plt.close(fig)
    return fig


# --- one grid point: training notebooks -------------------------------------------------------

def counts_table(class_counts, classes: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-class training counts of the imbalanced subset, one row per repeat, plus the total.

    class_counts: {repeat: counts per label} (PointResult.class_counts) or records with
    'repeat' and 'class_counts'."""
    if isinstance(class_counts, dict):
        rows = {int(r): list(c) for r, c in class_counts.items()}
    else:
        frame = records_frame(class_counts).dropna(subset=["repeat"])
        rows = {int(r): list(c) for r, c in zip(frame["repeat"], frame["class_counts"]) if c is not None}
    table = pd.DataFrame.from_dict(rows, orient="index")
    if classes is not None and len(table.columns) == len(list(classes)):
        table.columns = list(classes)
    table.index.name = "repeat"
    table = table.sort_index()
    table["total"] = table.sum(axis=1)
    return table


def method_table(records, *, metrics: Iterable[str] = ("roc_auc", "accuracy", "thresholded_accuracy"),
                 rank_by: str = "roc_auc", sort: bool = True, digits: int = 4) -> pd.DataFrame:
    """Mean of each metric per method over its networks (repeats), with the 95% interval of
    `rank_by`, networks counted and diverged ones; best first if `sort`, else registry order."""
    frame = records_frame(records)
    metrics = list(dict.fromkeys([rank_by, *metrics]))
    rows = []
    for method in _methods(frame):
        group = frame[frame["method"] == method]
        low, high = bootstrap_ci(group[rank_by])
        rows.append({"method": method, **{m: group[m].mean() for m in metrics},
                     f"{rank_by} ci_low": low, f"{rank_by} ci_high": high,
                     "networks": len(group), "diverged": int(group["diverged"].fillna(0).sum())})
    columns = ["method", *metrics, f"{rank_by} ci_low", f"{rank_by} ci_high", "networks", "diverged"]
    table = pd.DataFrame(rows, columns=columns).set_index("method")
    if sort:
        table = table.sort_values(rank_by, ascending=False, kind="stable")
        table.insert(0, "rank", range(1, len(table) + 1))
    return table.round(digits)


def method_figure(records, *, metric: str = "roc_auc", title: str | None = None) -> Figure:
    """A metric per method (mean and 95% CI over repeats) at one grid point (or all points pooled)."""
    frame = records_frame(records).dropna(subset=[metric])
    if frame.empty:
        return message_figure(f"no records with {metric}: every network diverged, or none was trained")
    methods = _methods(frame)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(methods), 3.2))
    sns.pointplot(data=frame, x="method", y=metric, order=methods, hue="method", hue_order=methods,
                  palette=_palette(methods), errorbar=ERRORBAR, seed=SEED, n_boot=N_BOOT, linestyle="none",
                  capsize=0.2, legend=False, ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel(METRICS.get(metric, metric))
    ax.tick_params(axis="x", rotation=30)
    points = sorted(pd.unique(frame["point_id"].dropna()))
    ax.set_title(title or (points[0] if len(points) == 1 else f"{len(points)} grid points pooled"), fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


# --- the explorer -----------------------------------------------------------------------------

def grid_table(records) -> pd.DataFrame:
    """The grid points present: one row per (dataset, imbalance, ρ, μ, level) with its methods,
    repeats, networks and diverged networks."""
    frame = records_frame(records)
    keys = ["dataset", "imbalance", "rho", "mu", "level"]
    if frame.empty:
        return pd.DataFrame(columns=keys + ["point_id", "methods", "repeats", "networks", "diverged"])
    rows = []
    for key, group in frame.groupby(keys, dropna=False, sort=True):
        rows.append({**dict(zip(keys, key)), "point_id": group["point_id"].iloc[0],
                     "methods": len(_methods(group)), "repeats": int(group["repeat"].nunique()),
                     "networks": len(group), "diverged": int(group["diverged"].fillna(0).sum())})
    return pd.DataFrame(rows)


def explorer_options(records, *, dataset: str | None = None, imbalance: str | None = None) -> dict[str, list]:
    """Values present in the records, for the explorer's widgets: datasets, imbalances (of the
    dataset), rhos, mus, levels and methods (of the dataset and imbalance type)."""
    frame = records_frame(records)
    datasets = sorted(pd.unique(frame["dataset"].dropna()))
    of_dataset = frame[frame["dataset"] == dataset] if dataset is not None else frame
    imbalances = sorted(pd.unique(of_dataset["imbalance"].dropna()))
    chosen = of_dataset[of_dataset["imbalance"] == imbalance] if imbalance is not None else of_dataset
    def values(column):
        return [float(v) for v in sorted(pd.unique(chosen[column].dropna()))]
    return {"datasets": datasets, "imbalances": imbalances, "rhos": values("rho"), "mus": values("mu"),
            "levels": values("level"), "methods": _methods(chosen)}


def explorer_defaults(records, *, rho: float = 100, mu: float = 0.5) -> dict[str, Any]:
    """The explorer's first view: the dataset with the most records, step imbalance if present,
    and the grid point nearest to (ρ, μ) (nearest on a log scale for ρ); all methods."""
    frame = records_frame(records)
    if frame.empty:
        return {"dataset": None, "imbalance": "step", "rho": rho, "mu": mu, "methods": None}
    dataset = frame["dataset"].value_counts().index[0]
    options = explorer_options(frame, dataset=dataset)
    imbalance = "step" if "step" in options["imbalances"] else options["imbalances"][0]
    options = explorer_options(frame, dataset=dataset, imbalance=imbalance)
    near_rho = min(options["rhos"], key=lambda r: abs(math.log(r) - math.log(rho))) if options["rhos"] else rho
    near_mu = min(options["mus"], key=lambda m: abs(m - mu)) if options["mus"] else None
    return {"dataset": dataset, "imbalance": imbalance, "rho": near_rho, "mu": near_mu,
            "methods": options["methods"]}


def explorer_table(records, *, rho: float, mu: float | None, imbalance: str, dataset: str | None,
                   methods=None, level: float | None = None, metric: str = "roc_auc") -> pd.DataFrame:
    """The methods at one grid point, ranked by `metric` (best first): mean and 95% CI over repeats,
    with accuracy with and without thresholding.  Empty if the point has no records."""
    frame = _select(records_frame(records), dataset=dataset, imbalance=imbalance, methods=methods,
                    graded=None, rho=rho)
    frame = frame[_close(frame["mu"], mu) & _close(frame["level"], level)]
    return method_table(frame, rank_by=metric,
                        metrics=(metric, "accuracy", "thresholded_accuracy", "balanced_accuracy"))


def explorer_figure(records, *, rho: float, mu: float | None, imbalance: str, dataset: str | None,
                    methods=None, level: float | None = None, metric: str = "roc_auc") -> Figure:
    """The explorer's view of one grid point: (1) its class-count profile, (2) the metric vs ρ at
    this μ, (3) the metric vs μ at this ρ (step only), (4) the methods at the point, best first.
    The dotted lines mark the chosen ρ and μ."""
    frame = records_frame(records)
    if frame.empty:
        return message_figure(f"no records: run {RUN['any']} (or any params file), then rerun this notebook")
    frame = _select(frame, dataset=dataset, imbalance=imbalance, methods=methods, graded=None)
    frame = frame[_close(frame["level"], level)].dropna(subset=[metric])
    chosen = _methods(frame, methods)
    palette = _palette(chosen)
    ylabel = METRICS.get(metric, metric)
    # fixed margins, not a layout engine: constrained layout's solution varies in the last bits
    # from one process to the next, and with it the SVG's clip-path ids
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), gridspec_kw={"width_ratios": [0.8, 1, 1, 1]})
    fig.subplots_adjust(left=0.04, right=0.9, bottom=0.16, top=0.84, wspace=0.62)
    label = _title(dataset, f"{imbalance} imbalance", _point_label(rho, mu, level))
    fig.suptitle(label, fontsize=11)

    point = frame[_close(frame["rho"], rho) & _close(frame["mu"], mu)]
    n_classes, n_max = _profile_shape(point if not point.empty else frame)
    try:
        counts = profile_counts(imbalance, n_classes=n_classes, n_max=n_max, rho=rho,
                                mu=mu if imbalance == "step" else None)
        _profile_bars(axes[0], counts, title=f"class counts (n_max = {n_max})")
        axes[0].set_ylabel("training examples")
    except ValueError as exc:
        _axes_message(axes[0], str(exc))

    def lines(ax, data, x, mark, xlabel, xlog):
        if data.empty or data[x].nunique() == 0:
            _axes_message(ax, "no records along this line")
            return
        sns.lineplot(data=data, x=x, y=metric, hue="method", hue_order=chosen, palette=palette,
                     errorbar=ERRORBAR, seed=SEED, n_boot=N_BOOT, marker="o", markersize=5, ax=ax,
                     legend=False)
        if xlog:
            ax.set_xscale("log")
        ax.axvline(mark, color="0.5", ls=":", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)

    lines(axes[1], frame[_close(frame["mu"], mu)], "rho", rho, RHO, True)
    axes[1].set_title(f"vs ρ at μ = {_fmt(mu)}" if mu is not None else "vs ρ", fontsize=10)
    if imbalance == "step":
        lines(axes[2], frame[_close(frame["rho"], rho)], "mu", mu, MU, False)
        axes[2].set_title(f"vs μ at ρ = {_fmt(rho)}", fontsize=10)
    else:
        _axes_message(axes[2], f"μ applies to step imbalance only ({imbalance} has none)")

    ax = axes[3]
    if point.empty:
        _axes_message(ax, f"no records at {_point_label(rho, mu, level)}:\npick a grid point that exists")
    else:
        order = method_table(point, rank_by=metric, metrics=(metric,)).index.tolist()
        sns.pointplot(data=point, x=metric, y="method", order=order, hue="method", hue_order=order,
                      palette=_palette(order), errorbar=ERRORBAR, seed=SEED, n_boot=N_BOOT, linestyle="none",
                      capsize=0.2, legend=False, ax=ax)
        ax.set_xlabel(ylabel)
        ax.set_ylabel("")
        ax.set_title("methods here, best first", fontsize=10)
    if chosen:
        handles = [matplotlib.lines.Line2D([], [], color=palette[m], marker="o", label=m) for m in chosen]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.905, 0.5), frameon=False, title="method")
    plt.close(fig)
    return fig


def _profile_shape(frame: pd.DataFrame) -> tuple[int, int]:
    """(n_classes, n_max) of the records' class counts (10 and 5000 when they hold none)."""
    counts = [c for c in frame["class_counts"] if isinstance(c, (list, tuple)) and len(c) > 1]
    if not counts:
        return 10, 5000
    return len(counts[0]), int(max(max(c) for c in counts))


def _axes_message(ax, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9, transform=ax.transAxes)


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
