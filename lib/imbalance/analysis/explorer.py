"""The explorer of a study (notebooks/explore.ipynb): widgets over one grid point and around it.

| function            | gives                                                                        |
|---------------------|------------------------------------------------------------------------------|
| `explore`           | the explorer, ready: a study dropdown, controls + the view they redraw      |
| `studies_under`     | the studies of an outputs folder (those with a results.sqlite)              |
| `explorer_widget`   | the same over records already loaded                                         |
| `explorer_options`  | the values present (datasets, imbalance types, ρ, μ, levels, methods)        |
| `explorer_defaults` | the first view: the main dataset, step imbalance, the point nearest (ρ, μ)   |
| `explorer_table`    | the methods at one grid point, ranked by a metric, with intervals of means   |
| `explorer_paired`   | the paired differences to a reference method at that point, with verdicts   |
| `explorer_figure`   | class counts (log axis) + the metric vs ρ and vs μ around the point + methods |

Intervals and verdicts are `imbalance.analysis.stats`' (via `tables.mean_intervals`): none with fewer than
3 repeats, which the tables say ("n=2: too few repeats").  The widgets show the tables as documents
(`tables.method_table_view`, `tables.paired_table_view`: readers' labels, formatted numbers, a caption naming
each interval, no NaN/None), and the figure at a size whose smallest text stays readable at widget width
(`FIGURE_INCHES`, `MIN_FONT_POINTS`).  `imbalance explore` serves the same notebook with Voilà.  The figure leaves '-thresh' methods out
of ROC AUC unless named, with a note; the tables keep them, as their accuracy differs.

No torch here: exploring a study never imports the training stack.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib.figure import Figure

from imbalance.analysis.frames import (
    close_to,
    compared_methods,
    format_value,
    load_study,
    methods_present,
    records_frame,
)
from imbalance.analysis.plots import (
    METRICS,
    MU,
    PALETTE,
    RHO,
    RUN,
    _lines,
    figure_title,
    message_figure,
    method_marker,
    method_palette,
    profile_bars,
    thresh_note,
)
from imbalance.analysis.stats import REFERENCE
from imbalance.analysis.tables import (
    html_table,
    mean_intervals,
    method_table,
    method_table_view,
    metric_records,
    paired_table_view,
    point_label,
    select_records,
)

FIGURE_INCHES = (12.0, 8.0)   # 2 x 2 panels: shown at about its width (1200 px at FIGURE_DPI) or a little less
FIGURE_DPI = 100
MIN_FONT_POINTS = 10.0        # no text smaller: 10 pt at 100 dpi stays >= 10 px down to 960 px of width
TABLE_STYLE = ("<style>.imbalance-table table{border-collapse:collapse;font-size:13px;margin:6px 0 12px}"
               ".imbalance-table caption{max-width:1100px;font-size:12px;color:#444;padding-bottom:4px}"
               ".imbalance-table th,.imbalance-table td{padding:2px 8px;text-align:right;"
               "border-bottom:1px solid #ddd;white-space:nowrap}"
               ".imbalance-table td:nth-child(-n+2){text-align:left}</style>")


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


def _point(records, *, rho, mu, imbalance, dataset, methods=None, level=None) -> pd.DataFrame:
    frame = select_records(records_frame(records), dataset=dataset, imbalance=imbalance, methods=methods,
                           graded=None, rho=rho)
    return frame[close_to(frame["mu"], mu) & close_to(frame["level"], level)]


def explorer_table(records, *, rho: float, mu: float | None, imbalance: str, dataset: str | None,
                   methods=None, level: float | None = None, metric: str = "roc_auc") -> pd.DataFrame:
    """The methods at one grid point, ranked by `metric` (best first): its mean, the interval of
    that mean and which interval (or why none), with accuracy with and without thresholding.
    Empty if the point has no records."""
    point = _point(records, rho=rho, mu=mu, imbalance=imbalance, dataset=dataset, methods=methods, level=level)
    return method_table(point, rank_by=metric,
                        metrics=(metric, "accuracy", "thresholded_accuracy", "balanced_accuracy"))


def explorer_paired(records, *, rho: float, mu: float | None, imbalance: str, dataset: str | None,
                    methods=None, level: float | None = None, metric: str = "roc_auc",
                    reference: str = REFERENCE) -> pd.DataFrame:
    """Each method minus `reference` at one grid point, paired by repeat: the mean difference, its
    interval and which, the test's Holm-corrected p-value, the equivalence test's (TOST at the
    metric's margin, Holm-corrected) and the verdict (better / worse / equivalent / undecided;
    none with too few repeats, and the note says why).  Empty if the point lacks the reference."""
    from imbalance.analysis import stats
    point = _point(records, rho=rho, mu=mu, imbalance=imbalance, dataset=dataset, level=level)
    columns = ["method", "n_pairs", "mean_difference", "ci_low", "ci_high", "interval_method", "test", "p_holm",
               "margin", "p_equivalent_holm", "verdict", "note"]
    if point.empty or reference not in set(point["method"]):
        return pd.DataFrame(columns=columns)
    compared = methods_present(point, methods)
    if methods is None:                  # a '-thresh' method repeats its base's ROC AUC: left out
        compared = compared_methods(compared, metric)
    paired = stats.paired_differences(point, metric=metric, reference=reference,
                                      methods=[m for m in compared if m != reference] + [reference])
    table = paired[columns].rename(columns={"mean_difference": f"{metric} − {reference}"}).set_index("method")
    return table.round(4)


def explorer_figure(records, *, rho: float, mu: float | None, imbalance: str, dataset: str | None,
                    methods=None, level: float | None = None, metric: str = "roc_auc") -> Figure:
    """The explorer's view of one grid point: (1) its class counts on a log axis (a 1-example class
    stays visible), (2) the metric vs ρ at this μ, (3) the metric vs μ at this ρ (step only), (4)
    the methods at the point, best first; means with their intervals (none for n < 3).  The dotted
    lines mark the chosen ρ and μ."""
    frame = records_frame(records)
    if frame.empty:
        return message_figure(f"no records: run {RUN['any']} (or any params file), then rerun this notebook")
    every = select_records(frame, dataset=dataset, imbalance=imbalance, graded=None)
    frame, omitted = metric_records(frame, metric, methods=methods, dataset=dataset, imbalance=imbalance,
                                    graded=None)
    frame = frame[close_to(frame["level"], level)]
    chosen = methods_present(frame, methods)
    palette = method_palette(chosen)
    ylabel = METRICS.get(metric, metric)
    # fixed margins, not a layout engine: constrained layout's solution varies in the last bits
    # from one process to the next, and with it the SVG's clip-path ids
    fig, grid = plt.subplots(2, 2, figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    axes = [grid[0, 0], grid[1, 0], grid[1, 1], grid[0, 1]]     # counts, vs ρ, vs μ, methods here
    fig.subplots_adjust(left=0.08, right=0.83, bottom=0.1, top=0.9, wspace=0.45, hspace=0.45)
    fig.suptitle(figure_title(dataset, f"{imbalance} imbalance", point_label(rho, mu, level)), fontsize=13)

    point = frame[close_to(frame["rho"], rho) & close_to(frame["mu"], mu)]
    shape_from = every[close_to(every["rho"], rho) & close_to(every["mu"], mu)]
    counts, per_label = _class_counts(shape_from if not shape_from.empty else every, rho=rho, mu=mu,
                                      imbalance=imbalance)
    if counts is None:
        _axes_message(axes[0], "no class counts for this point")
    else:
        rhos = sorted(pd.unique(every["rho"].dropna()))
        profile_bars(axes[0], counts, log=True, rhos=rhos, labels=[str(i) for i in range(len(counts))]
                     if per_label else None,
                     title=f"class counts (n_max = {format_value(float(max(counts)))})")
        axes[0].set_ylabel("training examples (log)")

    def lines(ax, data, x, mark, xlabel, xlog):
        if data.empty or data[x].nunique() == 0:
            _axes_message(ax, "no records along this line")
            return
        span = float(data[x].max() - data[x].min()) or 1.0
        _lines(ax, data, mean_intervals(data, metric=metric), x=x, y=metric, methods=chosen, xlog=xlog, span=span)
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
        intervals = mean_intervals(point, metric=metric).set_index("method")
        for i, method in enumerate(order):
            values = point.loc[point["method"] == method, metric]
            colour = PALETTE.get(method, (0.4, 0.4, 0.4))
            ax.scatter(values, np.full(len(values), i), color=colour, s=12, alpha=0.45, lw=0)
            ax.plot([values.mean()], [i], marker=method_marker(method), color=colour, markersize=7)
            if method in intervals.index and not pd.isna(intervals.loc[method, "ci_low"]):
                low, high = intervals.loc[method, "ci_low"], intervals.loc[method, "ci_high"]
                ax.plot([low, high], [i, i], color=colour, lw=1.5)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(order)
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set_xlabel(ylabel)
        n = sorted(set(intervals["n"].astype(int)))
        few = " (n < 3: no interval)" if intervals["ci_low"].isna().all() else ""
        ax.set_title(f"methods here, best first; n = {', '.join(map(str, n))}{few}", fontsize=10)
    if chosen:
        handles = [matplotlib.lines.Line2D([], [], color=palette[m], marker=method_marker(m), label=m) for m in chosen]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.84, 0.5), frameon=False, title="method")
    thresh_note(fig, omitted)
    _readable(fig)
    plt.close(fig)
    return fig


def _readable(fig: Figure, minimum: float = MIN_FONT_POINTS) -> None:
    """No text of the figure smaller than `minimum` points (the shared helpers draw ticks at 7-9 pt, sized
    for a page, not for a widget)."""
    for text in fig.findobj(matplotlib.text.Text):
        if text.get_text() and text.get_fontsize() < minimum:
            text.set_fontsize(minimum)


def _class_counts(frame: pd.DataFrame, *, rho, mu, imbalance) -> tuple[list[int] | None, bool]:
    """(counts, per label?): the class counts of the point's first network (per label), else the
    profile's at (ρ, μ) in rank order, shaped like the records' (None without any)."""
    counts = [c for c in frame.sort_values("repeat")["class_counts"] if isinstance(c, (list, tuple)) and len(c) > 1]
    if counts and close_to(frame["rho"], rho).all():
        return list(counts[0]), True
    if not counts:
        return None, False
    from imbalance.data.profiles import profile_counts
    try:
        return list(profile_counts(imbalance, n_classes=len(counts[0]), n_max=int(max(max(c) for c in counts)),
                                   rho=rho, mu=mu if imbalance == "step" else None)), False
    except ValueError:
        return None, False


def _axes_message(ax, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9, transform=ax.transAxes)


# --- the widgets --------------------------------------------------------------------------------

def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def studies_under(outputs_dir) -> list[str]:
    """The studies of `outputs_dir`: its folders holding a results.sqlite, sorted by name."""
    root = Path(outputs_dir)
    return sorted(p.parent.name for p in root.glob("*/results.sqlite") if p.is_file()) if root.is_dir() else []


def explore(study: str = "quick", outputs_dir: str = "../outputs", *, metric: str = "roc_auc",
            reference: str = REFERENCE, rho: float = 100, mu: float = 0.5):
    """The explorer of `study` (outputs_dir/<study>/results.sqlite), ready to display: a dropdown of the
    studies under `outputs_dir` (`studies_under`), dropdowns for dataset, imbalance type, metric and
    reference method, sliders for ρ and μ, a method list, and below them the chosen point's ranking, its
    paired differences to the reference with verdicts, and the figure.  First view: the point nearest
    (ρ, μ).  Without any study, a sentence naming the params file to run.  In a frontend without
    ipywidgets it shows that first view, static."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    studies = studies_under(outputs_dir)
    if not studies:
        return _Text(f"study {study!r} has no records yet under {outputs_dir}: run {RUN['any']} "
                     "(or any params file), then rerun this notebook")
    w_study = widgets.Dropdown(options=studies, value=study if study in studies else None, description="study")
    body = widgets.VBox([])

    def show(name):
        records, _ = load_study(name, outputs_dir) if name is not None else (None, None)
        if records is None or records.empty:
            body.children = [widgets.HTML(html.escape(
                f"study {name or study!r} has no records under {outputs_dir}: pick one of the studies above, "
                f"or run {RUN['any']} (or any params file)"))]
            return body.children[0].value
        inner = explorer_widget(records, study=name, metric=metric, reference=reference, rho=rho, mu=mu)
        body.children = [inner]
        return inner._static_html

    static = show(w_study.value)
    w_study.observe(lambda change: show(change["new"]), names="value")
    return ExplorerBox([w_study, body], static_html=static)


class _Text:
    def __init__(self, text: str):
        self.text = text

    def _repr_mimebundle_(self, **kwargs):
        return {"text/plain": self.text, "text/html": f"<p>{html.escape(self.text)}</p>"}


def _labelled(values):
    return [(f"{v:g}", v) for v in values]


def _nearest(values, value):
    return min(values, key=lambda v: abs(v - value)) if values and value is not None else None


def explorer_widget(records: pd.DataFrame, *, study: str, metric: str = "roc_auc", reference: str = REFERENCE,
                    rho: float = 100, mu: float = 0.5) -> "ExplorerBox":
    """The explorer widget over `records` (see `explore`)."""

    choice = explorer_defaults(records, rho=rho, mu=mu)
    first = explorer_options(records, dataset=choice["dataset"], imbalance=choice["imbalance"])
    w_dataset = widgets.Dropdown(options=first["datasets"], value=choice["dataset"], description="dataset")
    w_imbalance = widgets.Dropdown(options=first["imbalances"], value=choice["imbalance"], description="imbalance")
    w_rho = widgets.SelectionSlider(options=_labelled(first["rhos"]), value=choice["rho"], description="ρ")
    w_mu = widgets.SelectionSlider(options=_labelled(first["mus"] or [0.5]), value=choice["mu"] or 0.5,
                                   description="μ", disabled=not first["mus"])
    w_methods = widgets.SelectMultiple(options=first["methods"], value=first["methods"], description="methods",
                                       rows=8)
    w_metric = widgets.Dropdown(options=[(label, key) for key, label in METRICS.items()], value=metric,
                                description="metric")          # readers' labels; the value stays the key
    w_reference = widgets.Dropdown(options=first["methods"],
                                   value=reference if reference in first["methods"] else first["methods"][0],
                                   description="reference")
    out = widgets.Output()

    def follow(change):
        """Dataset or imbalance type changed: offer the values present there."""
        now = explorer_options(records, dataset=w_dataset.value, imbalance=w_imbalance.value)
        w_imbalance.options = now["imbalances"]
        for slider, values in ((w_rho, now["rhos"]), (w_mu, now["mus"])):
            slider.disabled = not values
            if values:
                slider.options, slider.value = _labelled(values), _nearest(values, slider.value)
        w_methods.options, w_methods.value = now["methods"], now["methods"]
        keep = w_reference.value
        w_reference.options = now["methods"]
        w_reference.value = keep if keep in now["methods"] else now["methods"][0]

    def view():
        every = set(w_methods.value) == set(w_methods.options)   # all of them: no methods named
        return dict(dataset=w_dataset.value, imbalance=w_imbalance.value, rho=w_rho.value,
                    mu=None if w_mu.disabled else w_mu.value, methods=None if every else list(w_methods.value),
                    metric=w_metric.value)

    def redraw(change=None):
        kw = view()
        with out:
            out.clear_output(wait=True)
            display(widgets.HTML(_tables_html(records, kw, reference=w_reference.value)))
            display(explorer_figure(records, **kw))

    for w in (w_dataset, w_imbalance):
        w.observe(follow, names="value")
    for w in (w_dataset, w_imbalance, w_rho, w_mu, w_methods, w_metric, w_reference):
        w.observe(redraw, names="value")
    redraw()
    controls = widgets.HBox([widgets.VBox([w_dataset, w_imbalance, w_rho, w_mu, w_metric, w_reference]), w_methods])
    kw = view()
    static = (f"<p>Explorer of study <code>{html.escape(study)}</code> (open the notebook in Jupyter, or run "
              f"<code>imbalance explore {html.escape(study)}</code>, for the controls)</p>"
              f"{_tables_html(records, kw, reference=w_reference.value)}"
              f'<img src="data:image/png;base64,{_png(explorer_figure(records, **kw))}" style="max-width:100%">')
    return ExplorerBox([controls, out], static_html=static)


def _tables_html(records, kw: dict, *, reference: str) -> str:
    """The chosen point's ranking and its paired differences to `reference`, as captioned HTML tables."""
    ranked, ranked_caption = method_table_view(explorer_table(records, **kw), rank_by=kw["metric"])
    paired, paired_caption = paired_table_view(explorer_paired(records, **kw, reference=reference),
                                               metric=kw["metric"], reference=reference)
    where = html.escape(point_label(kw["rho"], kw["mu"]))
    label = html.escape(METRICS[kw["metric"]])
    parts = [TABLE_STYLE, f'<div class="imbalance-table"><h4>{where}: the methods ranked by {label}</h4>']
    parts.append(html_table(ranked, caption=ranked_caption) if not ranked.empty
                 else f"<p>no records at {where}: pick a grid point that exists</p>")
    parts.append(f"<h4>paired differences to {html.escape(reference)} (per repeat: same subset and initial "
                 "weights), with verdicts</h4>")
    parts.append(html_table(paired, caption=paired_caption) if not paired.empty
                 else f"<p>{html.escape(reference)} was not run at {where}: pick another reference</p>")
    return "".join(parts) + "</div>"


class ExplorerBox(widgets.VBox):
    """The explorer's widget: a VBox whose display also carries its first view as static HTML and a
    sentence as plain text, so a frontend without the widget manager (a static notebook viewer) shows
    results instead of 'VBox(...)'."""

    def __init__(self, children, *, static_html: str = ""):
        super().__init__(children)
        self._static_html = static_html

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs) or {}
        data["text/plain"] = "the explorer's controls (they need Jupyter with ipywidgets)"
        if self._static_html:
            data["text/html"] = self._static_html
        return data
