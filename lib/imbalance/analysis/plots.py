"""Figures of a study's records: the paper's figures, new ones, one grid point's methods, saving.

Every figure function takes the records (a DataFrame from `Store.records_frame`, or the list of
record dicts a training notebook gets from `run_grid_point`) and returns a matplotlib Figure:

| function                    | the paper's | shows                                                          |
|-----------------------------|-------------|----------------------------------------------------------------|
| `profile_figure`            | Figure 1    | class-count profiles of step and linear imbalance (schematic)  |
| `study_profiles_figure`     | Figure 1    | this study's class counts per class name, a tick at every ρ    |
| `auc_vs_rho`                | Figure 3    | ROC AUC vs ρ (log axis) per method at fixed μ, one panel per μ |
| `auc_vs_mu`                 | Figure 4    | ROC AUC vs μ per method at fixed ρ, one panel per ρ            |
| `linear_figure`             | Figure 5    | ROC AUC vs ρ under linear imbalance                            |
| `threshold_accuracy_figure` | Figure 6    | accuracy with (dashed) and without thresholding vs ρ           |
| `graded_figure`             | Figure 7    | ROC AUC vs the ratio after graded over/undersampling           |
| `curves_figure`             | Figure 8    | train/test accuracy vs iteration, one panel per grid point     |
| `imagenet_table`            | Table 4     | ROC AUC per method and ImageNet subset, as a table             |
| `recall_figure`             |             | per-class recall vs the class's training size, per method      |
| `method_figure`             |             | a metric per method at one grid point (training notebooks)     |

The figures of the answers (maps over (ρ, μ), forest plots, critical differences, what re-scoring adds) are
in `imbalance.analysis.evidence_plots`.

A line is the mean over a point's repeats; its band (its bar, in a point plot) is the interval of
that mean from `imbalance.analysis.stats.method_intervals`: Student t on the logit scale for n < 10 repeats
(inside [0, 1]), BCa bootstrap for n >= 10, and none with n < 3 ("n=2: too few repeats"), never a range.  `band_caption` says which
was drawn.  Lines that coincide stay visible: each method has its own marker, and the methods are
dodged a little along x.  Without the records a figure needs, a function returns a figure whose text
names the params file that produces them (`message_figure`; `figure_message` reads it back).  A ROC
AUC figure leaves the '-thresh' methods out unless `methods` names them, and says so under the
plot: thresholding cannot change one-vs-rest ROC AUC (`imbalance.analysis.tables.metric_records`); the
accuracy figures keep them.  `save_figure` writes PNG + SVG that regenerate byte-identically.

No torch here: plotting a study never imports the training stack.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

import colorcet
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from imbalance.analysis.answers import GROUPS, POSTHOC_GROUP, failed, is_posthoc, method_group
from imbalance.analysis.frames import curves_frame, format_value, methods_present, records_frame, thresholded
from imbalance.analysis.stats import CONFIDENCE, RULES
from imbalance.analysis.tables import mean_intervals, metric_records, point_label, select_records
from imbalance.data.profiles import profile_counts
from imbalance.registry import PAPER_METHODS, display_order
from imbalance.schema import RANKED_METRICS

RHO = "imbalance ratio ρ"
MU = "fraction of minority classes μ"
LEVEL = "ratio after sampling"
METRICS = RANKED_METRICS   # what a figure may plot, with its axis label (imbalance.schema)
METHOD_ORDER = display_order()   # the registry's methods: the paper's first, then today's
UNKNOWN_COLOUR = (0.4, 0.4, 0.4)   # a method the registry does not know (a plugin not loaded here)


def distinct_colours(n: int) -> list[tuple[float, float, float]]:
    """n categorical colours, no two alike: Glasbey's maximally distinct sequence (colorcet's, whose first ten are
    matplotlib's tab10), less those too pale to read on white (relative luminance above 0.7) and the greys
    (kept for unknown methods and for text)."""
    out = []
    for rgb in colorcet.glasbey_category10:
        r, g, b = (float(v) for v in rgb)
        luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
        if luminance > 0.7 or max(r, g, b) - min(r, g, b) < 0.08:
            continue
        out.append((r, g, b))
        if len(out) == n:
            return out
    raise ValueError(f"n: at most {len(out)} distinct colours, got {n}")


# one colour and one marker per registered method, built once from the registry's display order, no two
# colours alike (issue 26: ros and baseline-la were both orange); markers cycle: coinciding lines stay visible
PALETTE = dict(zip(METHOD_ORDER, distinct_colours(len(METHOD_ORDER))))
MARKERS = {m: "osD^vPX*<>ph8Hd"[i % 15] for i, m in enumerate(METHOD_ORDER)}
MAX_CLASS_TICKS = 20   # class-count bars get one labelled tick each (and their count) up to this many classes
LOG_FLOOR = 0.5        # on a log axis class-count bars start here: a 1-example class stays visible
DODGE = 0.025          # x offset between neighbouring methods: a fraction of a decade (log x) or of the x range
MINORITY_COLOUR, MAJORITY_COLOUR = sns.color_palette()[3], sns.color_palette()[0]
# under a figure that left the '-thresh' methods out (tables.metric_records)
THRESH_NOTE = "no '-thresh' methods: thresholding leaves ROC AUC unchanged; see the accuracy figures"
# which params file produces which records (the "no data" figures and the report's missing line say so)
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
    return {m: PALETTE.get(m, UNKNOWN_COLOUR) for m in methods}


def method_marker(method: str) -> str:
    return MARKERS.get(method, "o")


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


def figure_title(*parts) -> str:
    return ", ".join(p for p in parts if p)


def _datasets_text(data: pd.DataFrame) -> str:
    return " / ".join(sorted(pd.unique(data["dataset"].dropna())))


def band_caption(intervals: pd.DataFrame | None) -> str:
    """In words: which interval a figure's bands are, and the repeats n per point and method.

    `intervals` is the figure's `fig.imbalance_intervals` (`tables.mean_intervals` of what it drew)."""
    if intervals is None or intervals.empty:
        return ""
    n = sorted({int(v) for v in intervals["n"].dropna()})
    n_text = f"n = {n[0]}" if len(n) == 1 else f"n = {n[0]} to {n[-1]}"
    drawn = intervals.dropna(subset=["ci_low", "ci_high"])
    pct = f"{CONFIDENCE:.0%}"
    if drawn.empty:
        return (f"Each point is the mean of {n_text} networks (repeats) per method; no interval is drawn: "
                f"{n_text}: too few repeats (an interval needs n ≥ {RULES.min_n}).")
    methods = sorted(set(drawn["interval_method"].dropna()))
    band = " / ".join(methods)
    few = intervals["ci_low"].isna() & (intervals["n"] < RULES.min_n)
    tail = f" Points with n < {RULES.min_n} have no band (too few repeats)." if few.any() else ""
    return (f"Each point is the mean of {n_text} networks (repeats) per method; the band is the {pct} "
            f"{band} interval of that mean over repeats.{tail}")


def _dodged(x: np.ndarray, offset: float, *, xlog: bool, span: float) -> np.ndarray:
    if xlog:
        return x * 10 ** (offset * DODGE)
    return x + offset * DODGE * span


def _lines(ax, frame: pd.DataFrame, intervals: pd.DataFrame, *, x: str, y: str, methods: list[str],
           xlog: bool, linestyle: str = "-", span: float = 1.0) -> None:
    """Mean of `y` vs `x` per method with its interval band, methods dodged along x."""
    for i, method in enumerate(methods):
        group = frame[frame["method"] == method]
        if group.empty:
            continue
        means = group.groupby(x)[y].mean().sort_index()
        xs = _dodged(means.index.to_numpy(dtype=float), i - (len(methods) - 1) / 2, xlog=xlog, span=span)
        colour = PALETTE.get(method, (0.4, 0.4, 0.4))
        ax.plot(xs, means.to_numpy(), linestyle=linestyle, marker=method_marker(method), markersize=5,
                color=colour, lw=1.4, label=method)
        iv = intervals.loc[intervals["method"] == method, ["point_id", "ci_low", "ci_high"]].merge(
            group[["point_id", x]].drop_duplicates("point_id"), on="point_id").dropna(subset=["ci_low"])
        if not iv.empty:
            iv = iv.groupby(x)[["ci_low", "ci_high"]].mean().sort_index()
            ivx = _dodged(iv.index.to_numpy(dtype=float), i - (len(methods) - 1) / 2, xlog=xlog, span=span)
            ax.errorbar(ivx, (iv["ci_low"] + iv["ci_high"]).to_numpy() / 2,
                        yerr=(iv["ci_high"] - iv["ci_low"]).to_numpy() / 2, fmt="none", ecolor=colour,
                        elinewidth=1, capsize=2, alpha=0.8)
            if len(iv) > 1:
                ax.fill_between(ivx, iv["ci_low"].to_numpy(), iv["ci_high"].to_numpy(), color=colour, alpha=0.12,
                                lw=0)


def _panels(data: pd.DataFrame, col: tuple[str, str] | None, row: tuple[str, str] | None):
    """[(row value, col value, title)] in grid order; a facet with one value is no facet.  Text facets
    (dataset, method group) keep their order of appearance in GROUPS, else sorted; their title is the value."""
    def values(spec):
        if spec is None:
            return [None]
        present = list(pd.unique(data[spec[0]].dropna()))
        present = [g for g in GROUPS if g in present] + sorted(v for v in present if v not in GROUPS)
        return present if len(present) > 1 else [None]
    rows, cols = values(row), values(col)

    def said(spec, v):
        return v if isinstance(v, str) else f"{spec[1]} = {format_value(v)}"
    out = []
    for r in rows:
        for c in cols:
            title = ", ".join(said(spec, v) for spec, v in ((row, r), (col, c)) if v is not None)
            out.append((r, c, title))
    return rows, cols, out


def _facet(part: pd.DataFrame, column: str, value) -> pd.DataFrame:
    if isinstance(value, str):
        return part[part[column] == value]
    return part[np.isclose(part[column].astype(float), value)]


def _survivor_limits(values: np.ndarray) -> tuple[float, float] | None:
    """A y-range from the surviving networks' values: their span, padded by a tenth of it on each side
    (at least 0.002), and never past a bounded metric's [0, 1] by more than that padding."""
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    low, high = float(values.min()), float(values.max())
    pad = max(0.1 * (high - low), 0.002)
    return max(low - pad, -pad), min(high + pad, 1 + pad)


def _line_figure(frame: pd.DataFrame, *, x: str, metrics: dict[str, str], methods: list[str], xlabel: str,
                 ylabel: str, col: tuple[str, str] | None = None, row: tuple[str, str] | None = None,
                 xlog: bool = False, title: str | None = None, thresh_omitted: bool = False,
                 note: str | None = None, failures: pd.DataFrame | None = None) -> Figure:
    """Mean of each metric (column -> line style name) vs x per method with its interval (stats),
    one panel per value of col/row (column, symbol; a text column such as 'group' titles panels by value).
    Failed networks (`answers.failed`) are left out of the means and intervals and of the y-range, which
    the surviving networks' values choose; each failure is a ▼ at the bottom edge of its panel, in its
    method's colour, and the legend counts them.  `failures`: the failed networks' records when `frame` lost
    those without a score.  The intervals drawn are `fig.imbalance_intervals`."""
    frame = frame.assign(_failed=failed(frame))
    if failures is not None and not failures.empty:
        key = ["point_id", "method", "repeat"]
        extra = failures.merge(frame[key].drop_duplicates(), on=key, how="left", indicator=True)
        extra = extra[extra["_merge"] == "left_only"].drop(columns="_merge")
        frame = pd.concat([frame, extra.assign(_failed=True)], ignore_index=True)
    rows, cols, panels = _panels(frame, col, row)
    ncols = len(cols) if len(cols) <= 4 or len(rows) > 1 else 3
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 1.8, 3.0 * nrows + 0.6), sharex=True, sharey=True,
                             squeeze=False)
    styles = dict(zip(metrics, ["-", "--", ":", "-."]))
    x_values = frame[x].dropna().to_numpy(dtype=float)
    span = float(x_values.max() - x_values.min()) if len(x_values) else 1.0
    drawn, kept = [], []
    for ax, (r, c, panel_title) in zip(axes.flat, panels):
        part = frame
        if r is not None:
            part = _facet(part, row[0], r)
        if c is not None:
            part = _facet(part, col[0], c)
        here = [m for m in methods if (part["method"] == m).any()]
        survivors = part[~part["_failed"]]
        for metric, style in styles.items():
            values = survivors.dropna(subset=[metric])
            kept.append(values[metric].to_numpy(dtype=float))
            intervals = mean_intervals(values, metric=metric)
            drawn.append(intervals)
            _lines(ax, values, intervals, x=x, y=metric, methods=here, xlog=xlog, linestyle=style, span=span or 1.0)
        lost = part[part["_failed"]]
        for i, method in enumerate(here):
            at = lost.loc[lost["method"] == method, x].dropna().to_numpy(dtype=float)
            if len(at):
                xs = _dodged(at, i - (len(here) - 1) / 2, xlog=xlog, span=span or 1.0)
                ax.plot(xs, np.full(len(xs), 0.02), linestyle="none", marker="v", markersize=6,
                        color=PALETTE.get(method, UNKNOWN_COLOUR), transform=ax.get_xaxis_transform(), clip_on=False)
        if xlog:
            ax.set_xscale("log")
        ticks = sorted(pd.unique(frame[x].dropna()))
        if len(ticks) <= 12:
            ax.set_xticks(ticks)
            ax.set_xticklabels([format_value(t) for t in ticks])
            ax.minorticks_off()
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
    limits = _survivor_limits(np.concatenate(kept)) if kept else None
    if limits is not None:
        axes.flat[0].set_ylim(*limits)      # shared y: every panel
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    n_failed = frame[frame["_failed"]].drop_duplicates(["point_id", "method", "repeat"]).groupby("method").size()
    handles = [Line2D([], [], color=PALETTE.get(m, UNKNOWN_COLOUR), marker=method_marker(m),
                      label=m + (f" ({int(n_failed[m])} failed)" if m in n_failed.index else "")) for m in methods]
    if len(metrics) > 1:
        handles += [Line2D([], [], color="0.3", linestyle=s, label=name) for name, s in
                    zip(metrics.values(), styles.values())]
    if len(n_failed):
        handles.append(Line2D([], [], color="0.3", marker="v", linestyle="none",
                              label="a failed network (no score): ▼ at the axis edge"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="method")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    notes = [THRESH_NOTE if thresh_omitted else None, note]
    if any(notes):
        fig.text(0.5, 0, "\n".join(n for n in notes if n), ha="center", va="top", fontsize=9, color="0.3", wrap=True)
    fig.imbalance_intervals = pd.concat(drawn, ignore_index=True) if drawn else None
    fig.imbalance_failed = int(frame["_failed"].sum())
    plt.close(fig)
    return fig


def _grouped(frame: pd.DataFrame, methods, *, rank_metric: bool) -> tuple[pd.DataFrame, str | None]:
    """The frame with a 'group' column (the paper's methods, today's, other post-hoc re-scorings), and, on a
    ROC AUC-like figure with no methods named, without the post-hoc re-scorings (-la, -tau-norm): those are
    shown as what they add to their base network (the report's "What re-scoring adds"), and a note says so."""
    frame = frame.assign(group=frame["method"].map(method_group))
    note = None
    if rank_metric and methods is None:
        dropped = frame["group"] == POSTHOC_GROUP
        if dropped.any():
            names = ", ".join(sorted(pd.unique(frame.loc[dropped, "method"])))
            note = f"{RESCORED_NOTE}: {names}"
            frame = frame[~dropped]
    return frame, note


RESCORED_NOTE = "post-hoc re-scorings are shown as what they add to their base network, not as lines here"


# --- the paper's figures ----------------------------------------------------------------------

def profile_figure(*, rho: float = 10, mu: float = 0.5, n_classes: int = 10, n_max: int = 5000,
                   imbalances: Iterable[str] = ("step", "linear")) -> Figure:
    """Figure 1 as in the paper: class-count profiles (rank order, smallest class first) of each
    imbalance type at one (ρ, μ).  `study_profiles_figure` draws a study's own."""
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


def profile_bars(ax, counts, *, title: str, labels: Iterable[str] | None = None, log: bool = False,
                 rhos: Iterable[float] = ()) -> None:
    """Bars of class counts, minority classes (below the largest) in red.  With `log`, a log axis
    (a 1-example class stays visible) with a tick at n_max and at n_max/ρ for every ρ in `rhos`."""
    counts = np.asarray(counts, dtype=float)
    minority = counts < counts.max()
    colours = [MINORITY_COLOUR if m else MAJORITY_COLOUR for m in minority]
    if log:   # bars rise from half an example, so a 1-example class is a bar of its own, not a hairline
        ax.bar(np.arange(len(counts)), counts - LOG_FLOOR, bottom=LOG_FLOOR, color=colours)
    else:
        ax.bar(np.arange(len(counts)), counts, color=colours)
    if len(counts) <= MAX_CLASS_TICKS:        # each bar's count above it
        for i, c in enumerate(counts):
            ax.text(i, c, f"{c:,.0f}", ha="center", va="bottom", fontsize=6, color="0.2")
    ax.set_xlabel("class" if labels is not None else "class (smallest first)")
    if len(counts) > MAX_CLASS_TICKS:          # e.g. ImageNet's 1000 classes: no label per bar
        ax.set_xticks([])
    elif labels is not None:
        ax.set_xticks(np.arange(len(counts)))
        ax.set_xticklabels(list(labels), rotation=90 if max(len(str(s)) for s in labels) > 2 else 0, fontsize=8)
    else:
        ax.set_xticks(np.arange(len(counts)))
        ax.set_xticklabels([str(i) for i in range(1, len(counts) + 1)])
    if log:
        ax.set_yscale("log")
        n_max = counts.max()
        labels_at = {n_max: f"{n_max:g} = n_max"}
        for r in rhos:
            labels_at.setdefault(n_max / float(r), f"{n_max / float(r):.3g} (ρ={format_value(r)})")
        ticks = sorted(labels_at)
        ax.set_yticks(ticks)
        ax.set_yticklabels([labels_at[t] for t in ticks], fontsize=8)
        ax.minorticks_off()
        ax.set_ylim(min([LOG_FLOOR] + [0.8 * t for t in ticks]), n_max * 3)
    ax.set_title(title, fontsize=10)


def study_profiles_figure(records, *, classes: Iterable[str] | None = None, max_panels: int = 12) -> Figure:
    """Figure 1 of this study: the training class counts of repeat 0 at each grid point, per class
    (named by `classes`), on a log axis with a tick at n_max and at n_max/ρ for every ρ of the grid;
    minority classes in red.  At most `max_panels` points, spread over the grid in its order."""
    frame = records_frame(records)
    frame = frame[frame["level"].isna() & frame["class_counts"].map(lambda c: isinstance(c, (list, tuple)))]
    if frame.empty:
        return _no_records("class-count", "any")
    frame = frame.sort_values(["dataset", "imbalance", "rho", "mu", "repeat"], na_position="first")
    points = frame.drop_duplicates("point_id")
    if len(points) > max_panels:
        points = points.iloc[np.unique(np.linspace(0, len(points) - 1, max_panels).round().astype(int))]
    rhos = sorted(pd.unique(frame["rho"].dropna()))
    ncols = min(len(points), 3)
    nrows = math.ceil(len(points) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.9 * ncols, 3.0 * nrows), squeeze=False, sharey=True)
    for ax, (_, point) in zip(axes.flat, points.iterrows()):
        counts = list(point["class_counts"])
        names = list(classes) if classes is not None and len(list(classes)) == len(counts) else \
            [str(i) for i in range(len(counts))]
        label = point_label(point["rho"], point["mu"])
        profile_bars(ax, counts, labels=names, log=True, rhos=rhos,
                     title=f"{point['dataset']}, {point['imbalance']}: {label}")
    for ax in axes.flat[len(points):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("training examples (log)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def auc_vs_rho(records, *, mu: float | None = None, dataset: str | None = None, methods=None,
               metric: str = "roc_auc") -> Figure:
    """Figure 3: metric vs ρ (log axis) per method at fixed μ, one panel per μ (or only μ = `mu`),
    one row per dataset."""
    return _step_figure(records, x="rho", at=("mu", mu), dataset=dataset, methods=methods, metric=metric)


def auc_vs_mu(records, *, rho: float | None = None, dataset: str | None = None, methods=None,
              metric: str = "roc_auc") -> Figure:
    """Figure 4: metric vs μ per method at fixed ρ, one panel per ρ (or only ρ = `rho`), one row
    per dataset."""
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
    fixed = f"at fixed {symbol[other]}"
    frame, note = _grouped(frame, methods, rank_metric=True)
    return _line_figure(_rows_by_group(frame), x=x, metrics={metric: metric}, methods=methods_present(frame, methods),
                        failures=_failures(records, frame, dataset=dataset, imbalance="step", **{other: value}),
                        xlabel={"rho": RHO, "mu": MU}[x], ylabel=METRICS.get(metric, metric),
                        col=(other, symbol[other]), row=("panel_row", ""), xlog=x == "rho",
                        title=figure_title(_datasets_text(frame), "step imbalance",
                                           f"{METRICS.get(metric, metric)} vs {symbol[x]} {fixed}"),
                        thresh_omitted=omitted, note=note)


def _failures(records, shown: pd.DataFrame, **where) -> pd.DataFrame:
    """The failed networks of the methods `shown` (with their facet columns), including those whose records
    hold no score and so left the metric's frame."""
    everything = select_records(records_frame(records), **where)
    lost = everything[failed(everything) & everything["method"].isin(set(shown["method"]))]
    lost = lost.assign(group=lost["method"].map(method_group))
    return _rows_by_group(lost) if not lost.empty else lost


def _rows_by_group(frame: pd.DataFrame) -> pd.DataFrame:
    """A 'panel_row' column: the method group, prefixed by the dataset when there are several (small
    multiples with the paper's methods and today's apart)."""
    several = frame["dataset"].nunique() > 1
    return frame.assign(panel_row=[f"{d}: {g}" if several else g for d, g in zip(frame["dataset"], frame["group"])])


def linear_figure(records, *, dataset: str | None = None, methods=None, metric: str = "roc_auc") -> Figure:
    """Figure 5: metric vs ρ (log axis) per method under linear imbalance, one panel per dataset."""
    frame, omitted = metric_records(records, metric, methods=methods, dataset=dataset, imbalance="linear")
    if frame.empty:
        return _no_records("linear-imbalance" + (f" {dataset}" if dataset else ""), "linear")
    frame, note = _grouped(frame, methods, rank_metric=True)
    return _line_figure(frame, x="rho", metrics={metric: metric}, methods=methods_present(frame, methods), xlabel=RHO,
                        ylabel=METRICS.get(metric, metric), col=("dataset", "dataset"), row=("group", ""), xlog=True,
                        title=figure_title(_datasets_text(frame), "linear imbalance"), thresh_omitted=omitted,
                        note=note)


def threshold_accuracy_figure(records, *, imbalance: str = "step", mu: float | None = None,
                              dataset: str | None = None, methods=None) -> Figure:
    """Figure 6: accuracy of each network with argmax (solid) and thresholded (dashed) predictions
    vs ρ, one panel per μ.  '-thresh' methods are left out: they are their base method, thresholded."""
    frame = select_records(records_frame(records), dataset=dataset, imbalance=imbalance, methods=methods, mu=mu)
    frame = frame[~frame["method"].map(is_posthoc).astype(bool)]   # a post-hoc row re-scores its base's network
    frame = frame.dropna(subset=["accuracy", "thresholded_accuracy"])
    if frame.empty:
        return _no_records(f"{imbalance}-imbalance (with accuracy and thresholded accuracy)",
                           imbalance if imbalance in RUN else "any")
    frame, _ = _grouped(frame, methods, rank_metric=False)
    return _line_figure(_rows_by_group(frame), x="rho",
                        metrics={"accuracy": "argmax", "thresholded_accuracy": "thresholded"},
                        methods=methods_present(frame, methods), xlabel=RHO, ylabel="accuracy", col=("mu", "μ"),
                        row=("panel_row", ""), xlog=True,
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
    return _line_figure(frame, x="level", metrics={metric: metric}, methods=methods_present(frame, methods),
                        xlabel=LEVEL, ylabel=METRICS.get(metric, metric), col=("mu", "μ"), row=row, xlog=True,
                        title=figure_title(_datasets_text(frame), "graded sampling", rhos), thresh_omitted=omitted)


def curves_figure(curves, *, records=None, point_id: str | Iterable[str] | None = None, methods=None,
                  max_points: int = 12) -> Figure:
    """Figure 8: test (solid) and train (dashed) accuracy vs iteration, the mean over each method's
    networks, one row per grid point (in grid order: ρ, then μ, then level, from `records`; titled
    'ρ = …, μ = …') and one column per method group (the paper's methods, today's), so that no panel
    holds every method.  `point_id` picks points, else at most `max_points` spread over the grid
    (its first and last included).  Post-hoc methods are left out: they share their base method's
    network, so its curve."""
    frame = curves_frame(curves)
    frame = frame.dropna(subset=["iteration"])
    frame = frame[~frame["method"].map(is_posthoc).astype(bool)]   # the base method's network
    if methods is not None:
        frame = frame[frame["method"].isin(list(methods))]
    titles, order = _point_titles(records, pd.unique(frame["point_id"].dropna()))
    if point_id is not None:
        chosen = [point_id] if isinstance(point_id, str) else list(point_id)
        order = [p for p in order if p in chosen]
    elif len(order) > max_points:
        order = [order[i] for i in np.unique(np.linspace(0, len(order) - 1, max_points).round().astype(int))]
    frame = frame[frame["point_id"].isin(order)]
    if frame.empty:
        return _no_records("training-curve", "curves")
    for column in ("iteration", "train_accuracy", "test_accuracy"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.assign(group=frame["method"].map(method_group))
    groups = [g for g in GROUPS if (frame["group"] == g).any()]
    shown = methods_present(frame, methods)
    fig, axes = plt.subplots(len(order), len(groups), figsize=(4.2 * len(groups) + 1.8, 2.6 * len(order) + 0.5),
                             squeeze=False, sharex=True, sharey=True)
    for row, point in zip(axes, order):
        for ax, group in zip(row, groups):
            part = frame[(frame["point_id"] == point) & (frame["group"] == group)]
            for method in [m for m in shown if (part["method"] == m).any()]:
                colour = PALETTE.get(method, UNKNOWN_COLOUR)
                of_method = part[part["method"] == method]
                for column, style in (("test_accuracy", "-"), ("train_accuracy", "--")):
                    mean = of_method.groupby("iteration")[column].mean()
                    ax.plot(mean.index, mean.to_numpy(), color=colour, lw=1.4, linestyle=style,
                            marker=method_marker(method), markersize=4, markevery=max(1, len(mean) // 4))
            ax.set_title(f"{titles.get(point, point)}; {group}", fontsize=9)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    handles = [Line2D([], [], color=PALETTE.get(m, UNKNOWN_COLOUR), marker=method_marker(m), label=m) for m in shown]
    handles += [Line2D([], [], color="0.3", linestyle="-", label="test"),
                Line2D([], [], color="0.3", linestyle="--", label="train")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="method")
    fig.suptitle("learning curves (mean over repeats)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _point_titles(records, point_ids) -> tuple[dict[str, str], list[str]]:
    """Readable titles ('mnist-sample, step: ρ=10, μ=0.5') and the grid order of these points."""
    frame = records_frame(records)
    frame = frame[frame["point_id"].isin(list(point_ids))].drop_duplicates("point_id")
    frame = frame.sort_values(["dataset", "imbalance", "rho", "mu", "level"], na_position="first")
    titles = {p: f"{d}, {i}: {point_label(r, m, lv)}" if frame["dataset"].nunique() > 1 else
              f"{i}: {point_label(r, m, lv)}"
              for p, d, i, r, m, lv in zip(frame.point_id, frame.dataset, frame.imbalance, frame.rho, frame.mu,
                                           frame.level)}
    order = list(frame["point_id"]) + sorted(p for p in point_ids if p not in set(frame["point_id"]))
    return titles, order


def imagenet_table(records, *, dataset: str = "imagefolder", metric: str = "roc_auc", methods=None) -> Figure:
    """Table 4: metric per method (rows) on each ImageNet subset (columns), drawn as a table;
    cells are 'mean [interval]' over repeats (`tables.mean_intervals`), or 'mean (n=…)' when the
    repeats are too few for an interval."""
    frame, omitted = metric_records(records, metric, methods=methods, dataset=dataset, graded=None)
    if frame.empty:
        return _no_records(f"{dataset} (ImageNet)", "imagenet")
    methods = methods_present(frame, methods)
    intervals = mean_intervals(frame, metric=metric)
    frame = frame.assign(point=[point_label(r, m, lv) for r, m, lv in zip(frame.rho, frame.mu, frame.level)])
    points = frame.sort_values(["rho", "mu"]).drop_duplicates("point")[["point", "point_id"]]
    cells = []
    for method in methods:
        row = []
        for point, pid in zip(points["point"], points["point_id"]):
            iv = intervals[(intervals["method"] == method) & (intervals["point_id"] == pid)]
            row.append("" if iv.empty else interval_text(iv.iloc[0]))
        cells.append(row)
    fig = plt.figure(figsize=(2.0 + 2.6 * len(points), 0.5 + 0.32 * (len(methods) + 1)))
    ax = fig.add_subplot()
    ax.axis("off")
    table = ax.table(cellText=cells, rowLabels=methods, colLabels=list(points["point"]), loc="center",
                     cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    ax.set_title(f"{METRICS.get(metric, metric)} on {dataset} subsets (mean [{CONFIDENCE:.0%} interval] over repeats)",
                 fontsize=10)
    thresh_note(fig, omitted)
    fig.imbalance_intervals = intervals
    plt.close(fig)
    return fig


def interval_text(row, digits: int = 4) -> str:
    """'0.9520 [0.9400, 0.9640]' for a `tables.mean_intervals` row, or '0.9520 (n=2: too few repeats)'."""
    mean = f"{row['mean']:.{digits}f}"
    if pd.isna(row.get("ci_low")) or pd.isna(row.get("ci_high")):
        why = row.get("note") or f"n={int(row['n'])}"
        return f"{mean} ({why})"
    return f"{mean} [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"


# --- new figures ------------------------------------------------------------------------------

def recall_figure(records, *, dataset: str | None = None, methods=None, classes: Iterable[str] | None = None) -> Figure:
    """Per-class recall on the balanced test set against that class's training examples (log axis),
    one panel per method: each dot is one class of one network, red if it was a minority class of
    that network's training set, blue if a majority one; the black line is the mean recall per class
    size.  From the records' stored `per_class_recall` and `class_counts` (grid points without
    graded sampling)."""
    frame = select_records(records_frame(records), dataset=dataset, methods=methods, graded=False)
    has = frame["per_class_recall"].map(lambda v: isinstance(v, (list, tuple))) & \
        frame["class_counts"].map(lambda v: isinstance(v, (list, tuple)))
    frame = frame[has]
    if frame.empty:
        return _no_records("per-class recall", "any")
    rows = []
    for _, r in frame.iterrows():
        counts = np.asarray(r["class_counts"], dtype=float)
        for label, (count, recall) in enumerate(zip(counts, r["per_class_recall"])):
            rows.append({"method": r["method"], "count": count, "recall": recall, "minority": count < counts.max()})
    long = pd.DataFrame(rows).dropna(subset=["recall"])
    shown = methods_present(frame, methods)
    ncols = min(len(shown), 4)
    nrows = math.ceil(len(shown) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.9 * nrows + 0.6), squeeze=False, sharex=True,
                             sharey=True)
    jitter = np.random.default_rng(0)        # a fixed seed: the same records draw the same figure
    for ax, method in zip(axes.flat, shown):
        part = long[long["method"] == method]
        for minority, colour in ((False, MAJORITY_COLOUR), (True, MINORITY_COLOUR)):
            dots = part[part["minority"] == minority]
            ax.scatter(dots["count"] * 10 ** jitter.uniform(-0.04, 0.04, len(dots)), dots["recall"], s=9,
                       color=colour, alpha=0.45, lw=0)
        mean = part.groupby("count")["recall"].mean()
        ax.plot(mean.index, mean.to_numpy(), color="black", lw=1.2, marker="o", markersize=3)
        ax.set_xscale("log")
        ax.set_title(method, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("training examples of the class")
    for ax in axes[:, 0]:
        ax.set_ylabel("test recall of the class")
    handles = [Line2D([], [], color=MINORITY_COLOUR, marker="o", ls="none", label="minority class"),
               Line2D([], [], color=MAJORITY_COLOUR, marker="o", ls="none", label="majority class"),
               Line2D([], [], color="black", marker="o", markersize=3, label="mean per class size")]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.02), ncol=3, frameon=False)
    fig.suptitle(figure_title(_datasets_text(frame), "per-class recall vs class size"))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    plt.close(fig)
    return fig


def method_figure(records, *, metric: str = "roc_auc", title: str | None = None, methods=None) -> Figure:
    """A metric per method (mean, and its interval from `tables.mean_intervals`) at one grid point
    (or all points pooled: one interval per method over every network)."""
    frame, omitted = metric_records(records, metric, methods=methods, graded=None)
    if frame.empty:
        return message_figure(f"no records with {metric}: every network diverged, or none was trained")
    methods = methods_present(frame, methods)
    points = sorted(pd.unique(frame["point_id"].dropna()))
    intervals = mean_intervals(frame.assign(point_id="pooled"), metric=metric)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(methods), 3.2))
    for i, method in enumerate(methods):
        values = frame.loc[frame["method"] == method, metric]
        colour = PALETTE.get(method, (0.4, 0.4, 0.4))
        ax.scatter(np.full(len(values), i), values, color=colour, s=10, alpha=0.4, lw=0)
        iv = intervals[intervals["method"] == method]
        ax.plot([i], [values.mean()], marker=method_marker(method), color=colour, markersize=7)
        if not iv.empty and not pd.isna(iv["ci_low"].iloc[0]):
            ax.errorbar([i], [values.mean()], yerr=[[values.mean() - iv["ci_low"].iloc[0]],
                                                    [iv["ci_high"].iloc[0] - values.mean()]],
                        color=colour, capsize=4)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, rotation=30, ha="right")
    ax.set_xlim(-0.5, len(methods) - 0.5)
    ax.set_ylabel(METRICS.get(metric, metric))
    ax.set_title(title or (points[0] if len(points) == 1 else f"{len(points)} grid points pooled"), fontsize=10)
    fig.tight_layout()
    thresh_note(fig, omitted)
    fig.imbalance_intervals = intervals
    plt.close(fig)
    return fig


# --- files ------------------------------------------------------------------------------------

def figure_name(*parts) -> str:
    """A file name stem from parts: parts that are None or empty are left out (never 'None'),
    anything but letters, digits, '.', '_' and '-' becomes '-'."""
    kept = [re.sub(r"[^A-Za-z0-9._-]+", "-", str(p)).strip("-") for p in parts
            if p is not None and not (isinstance(p, float) and math.isnan(p)) and str(p) != ""]
    name = "_".join(p for p in kept if p)
    if not name:
        raise ValueError(f"figure name parts {parts!r} leave no name")
    return name


def save_figure(fig: Figure, outdir: str | os.PathLike, name: str, *, dpi: int = 120) -> tuple[Path, Path]:
    """Write outdir/name.png and outdir/name.svg; the same figure gives the same bytes every time."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"figure name must be a plain file name without folders, got {name!r}")
    if "None" in name:
        raise ValueError(f"figure name {name!r} contains 'None': leave missing parts out (plots.figure_name)")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    png, svg = outdir / f"{name}.png", outdir / f"{name}.svg"
    with matplotlib.rc_context(SAVE_RC):
        fig.savefig(png, dpi=dpi, bbox_inches="tight", metadata=PNG_METADATA)
        fig.savefig(svg, bbox_inches="tight", metadata=SVG_METADATA)
    return png, svg


def collapsed(record, counts=None) -> str | None:
    """Why a network's confusion matrix is that of a failed network, in words, or None: its record says it
    failed (`answers.failed`), or every test image is predicted as one class (a collapsed network)."""
    if counts is not None:
        counts = np.asarray(counts, dtype=float)
        if counts.ndim == 2 and counts.sum() > 0 and (counts.sum(0) > 0).sum() == 1:
            return f"collapsed, predicts class {int(np.argmax(counts.sum(0)))} for every image"
    if failed(pd.DataFrame([dict(record)]))[0]:
        rule = record.get("failure") if isinstance(record.get("failure"), str) and record.get("failure") else None
        return f"collapsed ({rule})" if rule else "collapsed (constant outputs: ROC AUC 0.5) or diverged"
    return None


def confusion_figure(records, *, point_id: str, repeat: int = 0, dataset: str | None = None, methods=None,
                     classes: Iterable[str] | None = None) -> Figure:
    """The test confusion matrix of one network per method (repeat `repeat` at grid point `point_id`),
    row-normalised: row = true class, each cell the share of that class's test images predicted as the
    column's class, so the diagonal is per-class recall.  Tick labels of the network's minority classes
    are red.  A failed or collapsed network's panel says so in its title (`collapsed`).  From the records' stored
    `confusion_matrix` (counts)."""
    frame = select_records(records_frame(records), dataset=dataset, methods=methods, graded=None)
    frame = frame[(frame["point_id"] == point_id) & (frame["repeat"] == repeat)]
    if "confusion_matrix" in frame:
        frame = frame[frame["confusion_matrix"].map(lambda v: isinstance(v, (list, tuple)) and len(v) > 0)]
    else:
        frame = frame.iloc[0:0]
    if frame.empty:
        return message_figure(f"no confusion matrices stored for {point_id}, repeat {repeat}")
    shown = [m for m in methods_present(frame, methods) if (frame["method"] == m).any()]
    ncols = min(len(shown), 4)
    nrows = math.ceil(len(shown) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.3 * nrows + 0.5), squeeze=False)
    for ax, method in zip(axes.flat, shown):
        row = frame[frame["method"] == method].iloc[0]
        counts = np.asarray(row["confusion_matrix"], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = counts / counts.sum(1, keepdims=True)
        ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
        n = len(counts)
        names = list(classes)[:n] if classes is not None else [str(i) for i in range(n)]
        train = row["class_counts"] if isinstance(row["class_counts"], (list, tuple)) else None
        minority = [c < max(train) for c in train] if train else [False] * n
        ax.set_xticks(range(n), names, fontsize=7, rotation=90 if max(map(len, names)) > 2 else 0)
        ax.set_yticks(range(n), names, fontsize=7)
        for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
            for label, is_minority in zip(ticks, minority):
                label.set_color(MINORITY_COLOUR if is_minority else "black")
        why = collapsed(row, counts)
        ax.set_title(method + (f"\nFAILED: {why}" if why else ""), fontsize=10 if not why else 8,
                     color="black" if not why else MINORITY_COLOUR)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("predicted class")
    for ax in axes[:, 0]:
        ax.set_ylabel("true class")
    fig.suptitle(figure_title(_datasets_text(frame), f"confusion matrices at {point_id}, repeat {repeat}"))
    fig.tight_layout()
    plt.close(fig)
    return fig
