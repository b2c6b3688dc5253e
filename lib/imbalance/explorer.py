"""The widget explorer's view of a study (notebooks/explore.ipynb): one grid point and around it.

| function            | gives                                                                        |
|---------------------|------------------------------------------------------------------------------|
| `explorer_options`  | the values present (datasets, imbalance types, ρ, μ, levels, methods)        |
| `explorer_defaults` | the first view: the main dataset, step imbalance, the point nearest (ρ, μ)   |
| `explorer_table`    | the methods at one grid point, ranked by a metric, with 95% intervals        |
| `explorer_figure`   | profile + the metric vs ρ and vs μ around the point + the methods ranked     |

The figure follows `imbalance.plots` (seeded intervals, '-thresh' methods left out of ROC AUC
unless named, with a note); the table follows `imbalance.tables.method_table` and keeps them, as
their accuracy differs.

No torch here: exploring a study never imports the training stack.
"""
from __future__ import annotations

import math
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from imbalance.plots import (ERRORBAR, METRICS, MU, RHO, RUN, figure_title, message_figure, method_palette,
                             profile_bars, thresh_note)
from imbalance.profiles import profile_counts
from imbalance.tables import (N_BOOT, SEED, close_to, format_value, method_table, methods_present, metric_records,
                              point_label, records_frame, select_records)


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
            "levels": values("level"), "methods": methods_present(chosen)}


def explorer_defaults(records, *, rho: float = 100, mu: float = 0.5) -> dict[str, Any]:
    """The explorer's first view: the dataset with the most records, step imbalance if present,
    and the grid point nearest to (ρ, μ) (nearest on a log scale for ρ); all methods (methods=None,
    so a ROC AUC figure leaves the '-thresh' ones out)."""
    frame = records_frame(records)
    if frame.empty:
        return {"dataset": None, "imbalance": "step", "rho": rho, "mu": mu, "methods": None}
    dataset = frame["dataset"].value_counts().index[0]
    options = explorer_options(frame, dataset=dataset)
    imbalance = "step" if "step" in options["imbalances"] else options["imbalances"][0]
    options = explorer_options(frame, dataset=dataset, imbalance=imbalance)
    near_rho = min(options["rhos"], key=lambda r: abs(math.log(r) - math.log(rho))) if options["rhos"] else rho
    near_mu = min(options["mus"], key=lambda m: abs(m - mu)) if options["mus"] else None
    return {"dataset": dataset, "imbalance": imbalance, "rho": near_rho, "mu": near_mu, "methods": None}


def explorer_table(records, *, rho: float, mu: float | None, imbalance: str, dataset: str | None,
                   methods=None, level: float | None = None, metric: str = "roc_auc") -> pd.DataFrame:
    """The methods at one grid point, ranked by `metric` (best first): mean and 95% CI over repeats,
    with accuracy with and without thresholding.  Empty if the point has no records."""
    frame = select_records(records_frame(records), dataset=dataset, imbalance=imbalance, methods=methods,
                    graded=None, rho=rho)
    frame = frame[close_to(frame["mu"], mu) & close_to(frame["level"], level)]
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
    frame, omitted = metric_records(frame, metric, methods=methods, dataset=dataset, imbalance=imbalance,
                                    graded=None)
    frame = frame[close_to(frame["level"], level)]
    chosen = methods_present(frame, methods)
    palette = method_palette(chosen)
    ylabel = METRICS.get(metric, metric)
    # fixed margins, not a layout engine: constrained layout's solution varies in the last bits
    # from one process to the next, and with it the SVG's clip-path ids
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), gridspec_kw={"width_ratios": [0.8, 1, 1, 1]})
    fig.subplots_adjust(left=0.04, right=0.9, bottom=0.16, top=0.84, wspace=0.62)
    label = figure_title(dataset, f"{imbalance} imbalance", point_label(rho, mu, level))
    fig.suptitle(label, fontsize=11)

    point = frame[close_to(frame["rho"], rho) & close_to(frame["mu"], mu)]
    n_classes, n_max = _profile_shape(point if not point.empty else frame)
    try:
        counts = profile_counts(imbalance, n_classes=n_classes, n_max=n_max, rho=rho,
                                mu=mu if imbalance == "step" else None)
        profile_bars(axes[0], counts, title=f"class counts (n_max = {n_max})")
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

    lines(axes[1], frame[close_to(frame["mu"], mu)], "rho", rho, RHO, True)
    axes[1].set_title(f"vs ρ at μ = {format_value(mu)}" if mu is not None else "vs ρ", fontsize=10)
    if imbalance == "step":
        lines(axes[2], frame[close_to(frame["rho"], rho)], "mu", mu, MU, False)
        axes[2].set_title(f"vs μ at ρ = {format_value(rho)}", fontsize=10)
    else:
        _axes_message(axes[2], f"μ applies to step imbalance only ({imbalance} has none)")

    ax = axes[3]
    if point.empty:
        _axes_message(ax, f"no records at {point_label(rho, mu, level)}:\npick a grid point that exists")
    else:
        order = method_table(point, rank_by=metric, metrics=(metric,)).index.tolist()
        sns.pointplot(data=point, x=metric, y="method", order=order, hue="method", hue_order=order,
                      palette=method_palette(order), errorbar=ERRORBAR, seed=SEED, n_boot=N_BOOT, linestyle="none",
                      capsize=0.2, legend=False, ax=ax)
        ax.set_xlabel(ylabel)
        ax.set_ylabel("")
        ax.set_title("methods here, best first", fontsize=10)
    if chosen:
        handles = [matplotlib.lines.Line2D([], [], color=palette[m], marker="o", label=m) for m in chosen]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.905, 0.5), frameon=False, title="method")
    thresh_note(fig, omitted)
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
