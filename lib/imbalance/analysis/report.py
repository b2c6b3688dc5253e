"""A study's report for readers: one self-contained HTML document built from its database.

`write_report(study, outputs_dir)` reads outputs/<study>/results.sqlite and writes
outputs/<study>/report.html (every figure embedded as a base64 PNG, readable offline) and each
figure as PNG + SVG under outputs/<study>/figures/.  `imbalance report PARAMS` and `make study`
call it.  It runs no notebook: the document holds prose, tables and figures, no code.

The document, top to bottom (a section without data is left out, and named in the last line):
1. What was run: datasets, imbalance types, grid, methods, repeats, iterations against the
   paper's recipe, device, train time, library version and git revision (from the records).
2. The paper's conclusions as checks (`imbalance.analysis.conclusions`): a one-line verdict with
   the count of comparisons per outcome, a forest plot each (differences, intervals, 0, ±δ), the
   full numbers in a collapsible block.
3. Recommendations per dataset and imbalance type: the winning method per (ρ, μ) with the methods
   equivalent to it and undecided against it, a table per point (winner, paired difference to the
   reference method with its interval), the four verdicts over the grid (`imbalance.analysis.stats`),
   and the methods' average ranks with the Friedman test and Nemenyi's critical-difference diagram
   (`imbalance.analysis.ranking`).
4. The paper's figures (1, 3, 4, 5, 6, 7, 8 and Table 4), each captioned: what it shows, which
   interval its bands are, and n per point.
5. New figures: per-class recall against class size.
6. One line: what is missing and the params file that produces it.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from imbalance import registry
from imbalance.analysis import answers, evidence_plots, frames, plots, stats, tables
from imbalance.analysis.frames import format_value
from imbalance.analysis.tables import point_label
from imbalance.catalog import DISPLAY_NAMES, PAPER_ITERATIONS, classes_of


@dataclass(frozen=True)
class ReportSettings:
    metric: str = "roc_auc"        # the metric recommendations rank by (the paper's: multi-class ROC AUC)
    reference: str = stats.REFERENCE      # paired differences are method - reference (issue 10)
    confidence: float = stats.CONFIDENCE  # of every interval (imbalance.analysis.stats)
    alpha: float = stats.ALPHA            # verdicts: Holm-corrected p below this, interval without 0
    margins: dict | None = None           # equivalence margins per metric (None: the study's registered ones)
    dpi: int = 100                 # resolution of the PNGs, embedded and saved


SETTINGS = ReportSettings()
WNID = re.compile(r"n\d{8}")   # ILSVRC-2012's class folders are WordNet ids: an image folder of them is ImageNet
CURVE_POINTS = 4    # learning-curve rows at most (Figure 8): grid points spread over the grid, first and last included
CONFUSION_MISSING = ("confusion matrices of {dataset}: its records store none (studies run before records held "
                     "them), so the confusion matrix per method at the hardest point is left out")


@dataclass
class Section:
    title: str
    blocks: list[str] = field(default_factory=list)   # HTML fragments

    def add(self, fragment: str) -> None:
        self.blocks.append(fragment)


@dataclass(repr=False)
class Report:
    """The document: its sections, the figures saved beside it and the missing line's items."""
    study: str
    sections: list[Section] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)      # name -> PNG bytes
    missing: list[str] = field(default_factory=list)

    def html(self, *, fragment: bool = False) -> str:
        """The whole document, or (`fragment`) a <div> of it for a notebook's output."""
        body = [f"<h1>Class imbalance study <code>{esc(self.study)}</code></h1>"]
        toc = "".join(f'<li><a href="#s{i}">{esc(s.title)}</a></li>' for i, s in enumerate(self.sections))
        body.append(f'<nav><ol>{toc}</ol></nav>')
        for i, section in enumerate(self.sections):
            body.append(f'<section id="s{i}"><h2>{esc(section.title)}</h2>\n' + "\n".join(section.blocks)
                        + "</section>")
        if self.missing:
            body.append('<p class="missing"><b>Missing:</b> ' + esc("; ".join(self.missing)) + ".</p>")
        div = f'<div class="imbalance-report">{STYLE}\n' + "\n".join(body) + "</div>"
        if fragment:
            return div
        return TEMPLATE.format(title=esc(f"Imbalance Lab report: {self.study}"), body=div)

    def _repr_html_(self) -> str:
        return self.html(fragment=True)

    def __repr__(self) -> str:
        return (f"Report of study {self.study!r}: {len(self.sections)} sections, {len(self.figures)} figures"
                + (f"; missing: {'; '.join(self.missing)}" if self.missing else ""))


STYLE = """<style>
.imbalance-report table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.88em; }
.imbalance-report th, .imbalance-report td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left;
  vertical-align: top; }
.imbalance-report th { background: #f2f2f2; }
.imbalance-report figure { margin: 1.2em 0 2em; } .imbalance-report figure img { max-width: 100%; }
.imbalance-report figcaption { font-size: 0.9em; color: #333; max-width: 60em; }
.imbalance-report .missing { border-top: 1px solid #ccc; padding-top: 0.6em; font-size: 0.9em; }
.imbalance-report code { background: #f5f5f5; padding: 0 0.2em; }
</style>"""
TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em;
color: #222; line-height: 1.45; }}</style></head>
<body>
{body}
</body></html>
"""


def esc(text) -> str:
    return html.escape("" if text is None else str(text))


def table_html(frame: pd.DataFrame, *, digits: int = 4) -> str:
    """A DataFrame as an HTML table: floats to `digits` places, missing values blank, text escaped."""
    def cell(value):
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.{digits}f}"
        if isinstance(value, (tuple, list)):
            return ", ".join(map(str, value))
        return "" if value is None else str(value)
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{esc(cell(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def paragraph(text: str) -> str:
    return f"<p>{esc(text)}</p>"


# --- what was run -----------------------------------------------------------------------------

def study_settings(store, study: str) -> dict:
    """The result-shaping settings the study's first run stored in `store` ({} if none)."""
    row = store.db.execute("SELECT params FROM studies WHERE study = ?", (study,)).fetchone()
    return json.loads(row[0]) if row else {}


def point_seconds(store, study: str) -> dict[str, float | None]:
    """Done points -> wall seconds of their last attempt, from `store`'s points table."""
    from datetime import datetime
    return {r["point_id"]: (datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"]))
            .total_seconds() if r["started_at"] and r["finished_at"] else None
            for r in store.points(study) if r["status"] == "done"}


def paper_iterations(recipe: str | None) -> int | None:
    """Iterations of the paper's recipe `recipe` (imbalance.catalog.PAPER_ITERATIONS), None if unknown."""
    return PAPER_ITERATIONS.get(recipe)


def class_names(dataset: str | None, n: int) -> tuple[str, ...] | None:
    """The dataset's class names (imbalance.data.datasets.CLASSES) when it has n classes, else None."""
    names = classes_of(dataset)
    return tuple(names) if names is not None and len(names) == n else None


def duration(seconds: float) -> str:
    if not seconds or math.isnan(seconds):
        return "0 s"
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return " ".join(p for p in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{s} s") if p)


def _class_list(records: pd.DataFrame) -> str:
    """'at ρ=…, μ=…, repeat 0: name count, ...' of the first record in grid order that carries class names and
    counts (records from issue 12 on), naming the grid point and repeat whose counts these are."""
    if "classes" not in records or records.empty:
        return "—"
    ordered = records.sort_values(["repeat", "rho", "mu", "level"], na_position="first")
    for names, counts, rho, mu, level, repeat in zip(ordered["classes"], ordered["class_counts"], ordered["rho"],
                                                     ordered["mu"], ordered["level"], ordered["repeat"]):
        if isinstance(names, (list, tuple)) and isinstance(counts, (list, tuple)) and len(names) == len(counts):
            shown = ", ".join(f"{n} {c:,}" for n, c in zip(names[:20], counts[:20]))
            where = point_label(rho, mu, level)
            points = records["point_id"].nunique()
            at = (f"at {where}, repeat {int(repeat)}" + (f" (one of {points} grid points)" if points > 1 else "")
                  if where else f"repeat {int(repeat)}")
            return f"{at}: " + shown + (f", ... ({len(names)} classes)" if len(names) > 20 else "")
    return "—"


def _imagenet(records: pd.DataFrame) -> pd.DataFrame:
    """The records of ILSVRC-2012 subsets (Table 4): an image folder under step imbalance whose classes are
    WordNet ids (or unnamed, as records before class names were stored); your own image folder is not ImageNet."""
    def wnids(names) -> bool:
        return not isinstance(names, (list, tuple)) or all(WNID.fullmatch(str(n)) for n in names)
    of = records[(records["dataset"] == "imagefolder") & (records["imbalance"] == "step")]
    return of[[wnids(n) for n in of["classes"]]] if "classes" in of else of


SELECTION_TEXT = {
    "train-loss": "one base learning rate per grid point (the recipe's, or its search's lowest final training "
                  "loss), the same for every method",
    "test-best-of-8": "per method and repeat, the best test ROC AUC of 8 networks (4 base learning rates x 2 "
                      "runs): the paper's protocol, optimistic, since the test set chooses the network it then scores",
    "validation-best-of-8": "per method and repeat, the best validation ROC AUC of 8 networks (4 base learning "
                            "rates x 2 runs), chosen without the test set",
}


def selection_text(selection: str, base_lrs=None) -> str:
    """How the study chose each network's base learning rate, for readers (and the rates it kept)."""
    text = SELECTION_TEXT.get(selection, selection)
    kept = sorted({float(v) for v in pd.to_numeric(pd.Series(base_lrs), errors="coerce").dropna()}) \
        if base_lrs is not None else []
    return text + (f"; base learning rates kept: {', '.join(format_value(v) for v in kept)}" if kept else "")


def progress_text(done: int, grid_points: int | None) -> str | None:
    """The sentence that says a study is not complete ('1 of 2 grid points are done; ...'), None when it
    is (or when the grid's size is not known: the database stores the done points, not the grid)."""
    if grid_points is None or done >= grid_points:
        return None
    return (f"This study is not complete: {done} of {grid_points} grid points are done. Every table, verdict and "
            f"figure below reads the done points only; the runner resumes the "
            f"{'point' if grid_points - done == 1 else 'points'} left, and this report is rebuilt then.")


def run_table(records: pd.DataFrame, settings: dict, point_seconds: dict, *,
              grid_points: int | None = None) -> pd.DataFrame:
    """What was run, as (item, value) rows, from the records and the study's stored settings.
    `grid_points`: the size of the study's grid (its params), when known: a study that is not complete
    then says how many of its points are done."""
    trained = records[~records["method"].map(_post_hoc)]             # a post-hoc row reuses its base network
    grid = tables.grid_table(records)

    def values(column):
        return ", ".join(format_value(v) for v in sorted(pd.unique(records[column].dropna()))) or "—"

    def text_values(column):
        return ", ".join(sorted(str(v) for v in pd.unique(records[column].dropna()))) or "—"

    # a diverged network stops where it diverged: its iterations are not the study's
    lost = pd.to_numeric(records.get("diverged", pd.Series(0, index=records.index)), errors="coerce").fillna(0) > 0
    counted = lambda frame: sorted({int(v) for v in pd.to_numeric(frame["iterations"], errors="coerce").dropna()})  # noqa: E731
    # a second stage's records count its own updates (crt's: a ninth of the recipe's): the study's length is
    # that of the networks trained from the start
    whole = ~records["method"].map(_second_stage)
    iterations, stopped = counted(records[~lost & whole]), counted(trained[(lost & whole)[trained.index]])
    paper = paper_iterations(settings.get("recipe"))
    iteration_text = ", ".join(map(str, iterations)) or "—"
    if paper:
        iteration_text += f" (the paper's recipe {settings.get('recipe')}: {paper:,}"
        iteration_text += f"; this study ran {iterations[-1] / paper:.1%} of it)" if iterations else ")"
    if stopped:
        iteration_text += (f"; diverged networks stopped at {stopped[0]:,}" if len(stopped) == 1 else
                           f"; diverged networks stopped between {stopped[0]:,} and {stopped[-1]:,}")
    repeats = sorted(set(grid["repeats"])) if not grid.empty else []
    versions = sorted({v.get("imbalance") for v in records["versions"] if isinstance(v, dict) and v.get("imbalance")})
    rows = [
        ("datasets", ", ".join(DISPLAY_NAMES.get(d, d) for d in sorted(pd.unique(records["dataset"].dropna())))),
        ("imbalance types", text_values("imbalance") + (" (the data's own class counts; ρ is their max/min ratio)"
                                                        if "natural" in set(records["imbalance"].dropna()) else "")),
        ("classes (training examples)", _class_list(records)),
        ("validation split", values("validation") if "validation" in records else "—"),
        ("test set", text_values("test_prior") if "test_prior" in records else "—"),
        ("grid: ρ", values("rho")), ("grid: μ", values("mu")),
        ("graded sampling levels", values("level")),
        ("grid points", f"{len(grid)}" if grid_points is None or grid_points <= len(grid) else
         f"{len(grid)} done of {grid_points}"),
        ("examples per majority class n_max", format_value(settings.get("n_max")) if settings.get("n_max") else "—"),
        ("minority classes chosen", settings.get("minority") or "—"),
        ("methods", ", ".join(frames.methods_present(records))),
        ("repeats per point and method", ", ".join(map(str, repeats)) or "—"),
        ("networks trained", f"{len(trained)} ({int(trained['diverged'].fillna(0).sum())} diverged); "
                             f"{len(records) - len(trained)} post-hoc rows ('-thresh', '-la', '-tau-norm') reuse "
                             "their base method's network"),
        ("iterations per network", iteration_text),
        ("learning-rate selection", selection_text(settings.get("selection") or "train-loss",
                                                   records.get("base_lr"))),
        ("recipe changes", ", ".join(f"{k} = {v}" for k, v in sorted((settings.get("recipe_overrides") or {}).items()))
         or "none"),
        ("device", text_values("device")),
        ("wall time of the grid points", duration(sum(s for s in point_seconds.values() if s)) +
         f" over {sum(1 for s in point_seconds.values() if s)} points"),
        ("training time summed over networks", duration(float(pd.to_numeric(trained["train_seconds"],
                                                                             errors="coerce").sum()))),
        ("library version", ", ".join(versions) or "—"),
        ("git revision", text_values("git_rev")),
        ("study seed", format_value(settings.get("seed")) if settings.get("seed") is not None else "—"),
    ]
    return pd.DataFrame(rows, columns=["", "this study"])


# --- the report -------------------------------------------------------------------------------

class _Builder:
    def __init__(self, study: str, records: pd.DataFrame, curves: pd.DataFrame, *, settings: ReportSettings,
                 figures_dir: Path | None, others: dict[str, pd.DataFrame] | None = None):
        self.report = Report(study)
        self.records, self.curves, self.settings, self.figures_dir = records, curves, settings, figures_dir
        self.others = others or {}     # companion studies' records, for the cross-study conclusions

    def figure(self, section: Section, fig, name: str, caption: str, *, label: str) -> None:
        """Save `fig` as figures/<name>.png/.svg, embed its PNG in `section` with its label and caption."""
        import io

        import matplotlib
        if self.figures_dir is not None:
            png, _ = plots.save_figure(fig, self.figures_dir, name, dpi=self.settings.dpi)
            data = png.read_bytes()
        else:
            buffer = io.BytesIO()
            with matplotlib.rc_context(plots.SAVE_RC):
                fig.savefig(buffer, format="png", dpi=self.settings.dpi, bbox_inches="tight",
                            metadata=plots.PNG_METADATA)
            data = buffer.getvalue()
        self.report.figures[name] = data
        caption = caption[:1].upper() + caption[1:]
        section.add(f'<figure id="{esc(name)}"><img alt="{esc(label)}" src="data:image/png;base64,'
                    f'{base64.b64encode(data).decode()}"><figcaption><b>{esc(label)}.</b> {esc(caption)}'
                    f"</figcaption></figure>")


def _margins(s: ReportSettings) -> dict:
    """The report's equivalence margins: the study's (settings.margins) over the defaults."""
    from imbalance.study.params import EQUIVALENCE_MARGINS
    return {**EQUIVALENCE_MARGINS, **(s.margins or {})}


def build_report(study: str, records, curves=None, *, run: pd.DataFrame | None = None,
                 settings: ReportSettings = SETTINGS, figures_dir: str | os.PathLike | None = None,
                 others: dict | None = None, design: str | None = None, progress: str | None = None) -> Report:
    """The report of `records` (and `curves`) as a `Report`; figures are saved under `figures_dir`
    when given.  `run` is the 'what was run' table (`run_table`), if known.  `others`: {study:
    records} of companion studies, which the conclusions that compare datasets, imbalance types
    or graded levels read with this one (as `imbalance conclusions --with`).  `design`: the
    sentence naming how repeats were added (`planning.design_text`), if they were.  `progress`: the
    sentence saying the study is not complete (`progress_text`), if it is not."""
    records = frames.records_frame(records)
    curves = frames.curves_frame(curves)
    b = _Builder(study, records, curves, settings=settings,
                 figures_dir=Path(figures_dir) if figures_dir is not None else None,
                 others={k: frames.records_frame(v) for k, v in (others or {}).items()})
    report = b.report
    if records.empty:
        report.missing.append(f"every section: the study has no records; run {plots.RUN['any']}")
        return report
    top = Section("What was run")
    if progress:
        top.add(paragraph(progress))
    if run is not None:
        top.add(table_html(run))
    rules = stats.RULES
    top.add(paragraph(f"Recommendations rank methods by {plots.METRICS.get(settings.metric, settings.metric)}; "
                      f"every interval is a {settings.confidence:.0%} interval of a mean over repeats: Student-t for "
                      f"n < {rules.bootstrap_from}, BCa bootstrap for n ≥ {rules.bootstrap_from}, none for "
                      f"n < {rules.min_n}. Each comparison has one of four verdicts: better or worse (a paired "
                      f"t-test for n < {rules.wilcoxon_from}, Wilcoxon signed-rank test for n ≥ "
                      f"{rules.wilcoxon_from}, Holm-corrected across the methods at a point, α = {settings.alpha:g}, "
                      "and an interval without 0); equivalent (not shown different, and shown within ±δ by two "
                      f"one-sided t-tests, i.e. the {1 - 2 * settings.alpha:.0%} t interval inside ±δ, Holm-corrected "
                      "likewise); undecided (neither: too few repeats to tell). Intervals are not adjusted for "
                      "multiplicity and verdicts are: an interval without 0 can still be undecided after Holm's "
                      "correction."))
    top.add(paragraph("Equivalence margins δ (the study's equivalence_margin, else the defaults): "
                      + ", ".join(f"{m} ±{format_value(v)}" for m, v in _margins(settings).items()) + "."))
    if design:
        top.add(paragraph(design))
    report.sections.append(top)
    _conclusions(b)
    _recommendations(b)
    _rescoring(b)
    _ranking(b)
    _paper_figures(b)
    _new_figures(b)
    return report


def _conclusions(b: _Builder) -> None:
    try:
        from imbalance.analysis import conclusions
    except ImportError:
        b.report.missing.append("the paper's conclusions as checks: imbalance.analysis.conclusions is not in this version")
        return
    others = list(b.others.values())
    gaps = conclusions.design_gaps(b.records, b.curves, others=others)
    results = [r for r in conclusions.check_all(b.records, b.curves, others=others, margins=_margins(b.settings))
               if r.id not in gaps]
    section = Section("The paper's conclusions, checked on this study")
    if not results:
        section.add(paragraph(conclusions.design_gaps_text(gaps)))
        b.report.sections.append(section)
        return
    table = conclusions.conclusions_table(results)
    also = f", read together with {', '.join(b.others)} where a conclusion compares studies" if b.others else ""
    section.add(paragraph(f"Each of the paper's conclusions is a rule over this study's records{also}: supported, "
                          "contradicted (only where the claim's opposite is shown), mixed, undecided (not shown "
                          "either way: the count says how many comparisons lack the power to tell), or not enough "
                          "data (with the params file that would supply it). Each comparison's outcome is as "
                          "claimed, against, or undecided; the full numbers are in the block under the table."))
    section.add(table_html(table[["conclusion", "title", "verdict", "outcomes", "needs"]]))
    if gaps:
        section.add(paragraph(conclusions.design_gaps_text(gaps)))
    section.add("<details><summary>Every conclusion's claim and evidence, with the numbers</summary>"
                + table_html(table[["conclusion", "claim", "evidence"]]) + "</details>")
    for r in results:
        if r.evidence.empty or "estimate" not in r.evidence or r.evidence["estimate"].dropna().empty:
            continue
        fig = evidence_plots.forest_figure(r.evidence, title=f"{r.id} {r.title}: {r.verdict}")
        b.figure(section, fig, f"forest_{r.id.lower()}", _forest_caption(r), label=f"{r.id}, forest plot")
    b.report.sections.append(section)


FOREST_WHAT = {
    "C1": "baseline ROC AUC at the series' largest value minus at its smallest (Welch t interval or BCa bootstrap "
          "of the two points' networks); the verdict itself is Kendall's tau per series, Holm-corrected",
    "C2": "the harder dataset's drop of baseline ROC AUC minus the easier's, a Welch contrast of four points "
          "(Welch t interval, or BCa bootstrap from 10 networks a point)",
    "C3": "baseline ROC AUC of linear minus step (μ = 0.5) at each ρ, a Welch contrast (Welch t interval, or BCa "
          "bootstrap from 10 networks a point)",
    "C4": "rus minus ros, paired within a repeat (Student-t interval, BCa bootstrap from 10 pairs); the 'best' "
          "part is a winner table and has no row here",
    "C5": "thresholded minus plain accuracy of the same networks, paired (Student-t interval, BCa bootstrap from "
          "10 pairs)",
    "C6": "each graded level minus level 1, a Welch contrast (Welch t interval, or BCa bootstrap from 10 networks)",
    "C7": "ros's late minus earlier test accuracy, and the train-test gap of ros minus rus, paired (Student-t "
          "interval, BCa bootstrap from 10 pairs)",
}


def _forest_caption(r) -> str:
    margin = r.evidence["margin"].dropna() if "margin" in r.evidence else pd.Series(dtype=float)
    band = f"the grey band is the equivalence margin ±{format_value(float(margin.iloc[0]))}" if not margin.empty \
        else "no margin"
    return (f"{FOREST_WHAT.get(r.id, 'the differences')}: each dot an estimate, each bar its "
            f"{SETTINGS.confidence:.0%} interval, the vertical line 0; {band}. Colour is the outcome for the claim "
            "(green as claimed, red against: the opposite shown, grey undecided: too few repeats to tell; "
            "difference tests Holm-corrected within a part, equivalence by two one-sided t-tests at ±δ). "
            f"Verdict: {r.summary}.")


def _recommendations(b: _Builder) -> None:
    s = b.settings
    frame = b.records[b.records["level"].isna()]
    if frame.empty or s.reference not in set(frame["method"]):
        b.report.missing.append(f"recommendations: no grid point ran the reference method {s.reference!r}")
        return
    section = Section("Recommendations: which method, where")
    section.add(paragraph(
        f"At each grid point the winner is the method with the highest mean {plots.METRICS.get(s.metric, s.metric)}; "
        "a method is equivalent to it when their paired difference (same subset and initial weights per repeat) "
        "is shown within the margin ±δ, and undecided against it when it is neither shown worse nor shown "
        "equivalent. A method with a diverged network at a point cannot win there (its mean would "
        "stand on the repeats that survived). Nothing can be tested with fewer than 3 repeats: the winner is then only the "
        f"highest mean. The table gives each winner's paired difference to {s.reference}. Only trained methods are "
        "compared here: a post-hoc method re-scores its base method's network and trains nothing, so it is shown in "
        "\"What re-scoring adds\" as its paired difference to that network, never ranked beside trained methods."))
    for (dataset, imbalance), group in frame.groupby(["dataset", "imbalance"], sort=True):
        margin = _margins(s).get(s.metric)
        trained = answers.trained_methods(frames.methods_present(group))
        winners = stats.point_winners(group, metric=s.metric, alpha=s.alpha, confidence=s.confidence, margin=margin,
                                      methods=trained)
        paired = stats.paired_differences(group, metric=s.metric, reference=s.reference, confidence=s.confidence,
                                          alpha=s.alpha, methods=trained, margin=margin) \
            if s.reference in set(group["method"]) else None
        where = f"{dataset}, {imbalance} imbalance"
        section.add(f"<h3>{esc(where)}</h3>")
        if paired is not None and not paired.empty:
            sentences = answers.point_sentences(group, reference=s.reference, metric=s.metric, margin=margin,
                                                alpha=s.alpha, confidence=s.confidence)
            section.add(paragraph(f"In plain words, point by point ({plots.METRICS.get(s.metric, s.metric)}; "
                                  f"a difference is a mean paired difference to {s.reference} with its "
                                  f"{s.confidence:.0%} interval over repeats):"))
            section.add("<ul>" + "".join(f"<li>{esc(t)}</li>" for t in sentences["sentence"]) + "</ul>")
            b.figure(section, evidence_plots.verdict_map_figure(paired, reference=s.reference, metric=s.metric, margin=margin,
                                                       title=where),
                     plots.figure_name("answers", dataset, imbalance),
                     f"The answer at each grid point of {where}: the trained methods shown better than "
                     f"{s.reference} on {plots.METRICS.get(s.metric, s.metric)} (paired differences, Holm-corrected "
                     f"across the methods at the point; the cell takes the colour of the largest gain), or 'none "
                     f"better'; then how many are practically equivalent to {s.reference} (within "
                     f"±{format_value(margin)}, two one-sided t-tests), undecided (not shown either way), shown worse, "
                     "or untested (too few pairs: a method that lost networks).", label="Answers")
        n = sorted({int(v) for v in winners["n"].dropna()})
        b.figure(section, evidence_plots.winners_figure(winners, title=where),
                 plots.figure_name("winners", dataset, imbalance),
                 f"The trained method with the highest mean {plots.METRICS.get(s.metric, s.metric)} at each grid point "
                 f"of {where}; '≈ …' names the methods shown equivalent to it within ±{format_value(margin)} (two "
                 f"one-sided t-tests, Holm-corrected), or counts them when more than two (hatched; the table below "
                 f"names them all); '? …' the methods undecided against it; 'untested' those with too few pairs. "
                 f"The highest mean is not a method shown better: see the map above. "
                 f"n = {', '.join(map(str, n))} networks per method and point.", label="Highest means")
        section.add(table_html(_point_table(winners, paired, s)))
        if paired is not None and not paired.empty:
            tally = stats.grid_tally(paired)
            section.add(paragraph(f"Over the grid, each method against {s.reference}: points where the paired "
                                  f"difference is shown positive (better), shown within ±{format_value(margin)} "
                                  "(equivalent), neither (undecided), shown negative (worse), or untestable:"))
            section.add(table_html(tally))
            detail = paired.assign(point=[point_label(r, m, lv) for r, m, lv in
                                          zip(paired["rho"], paired["mu"], paired["level"])])
            detail = detail[["point", "method", "n_pairs", "n_dropped", "mean_difference", "ci_low", "ci_high",
                             "interval_method", "test", "p_holm", "p_equivalent_holm", "verdict", "note"]].rename(
                columns={"mean_difference": f"mean difference to {s.reference}"})
            section.add(f"<details><summary>Every method against {esc(s.reference)} at every point</summary>"
                        f"{table_html(detail)}</details>")
        also = ALSO_BY_PROFILE.get(imbalance)
        if also and also != s.metric and paired is not None and not paired.empty:
            _also_metric(b, section, group, trained, metric=also, where=where)
    b.report.sections.append(section)


# The measure a profile's own literature reports, answered beside the ranking metric: long-tail papers
# (Cao et al. 2019, Menon et al. 2021) report top-1 accuracy on the balanced test set, i.e. balanced accuracy.
ALSO_BY_PROFILE = {"exponential": "balanced_accuracy"}


def _also_metric(b: _Builder, section: Section, group: pd.DataFrame, trained: list, *, metric: str, where: str) -> None:
    """The point-by-point answers and the grid tally against the reference on a second metric."""
    s = b.settings
    margin = _margins(s).get(metric)
    label = plots.METRICS.get(metric, metric)
    sentences = answers.point_sentences(group, reference=s.reference, metric=metric, margin=margin,
                                        alpha=s.alpha, confidence=s.confidence)
    paired = stats.paired_differences(group, metric=metric, reference=s.reference, confidence=s.confidence,
                                      alpha=s.alpha, methods=trained, margin=margin)
    section.add(f"<h3>{esc(where)}: {esc(label)}</h3>")
    section.add(paragraph(f"The same answers on {label}, the measure the long-tail literature reports (top-1 "
                          f"accuracy on a balanced test set); a difference is a mean paired difference to "
                          f"{s.reference} with its {s.confidence:.0%} interval over repeats, equivalence within "
                          f"±{format_value(margin)}:"))
    section.add("<ul>" + "".join(f"<li>{esc(t)}</li>" for t in sentences["sentence"]) + "</ul>")
    section.add(table_html(stats.grid_tally(paired)))


RESCORING_METRICS = ("roc_auc", "accuracy", "balanced_accuracy")


def _rescoring(b: _Builder) -> None:
    """What re-scoring adds: each post-hoc method as its paired difference to its own base method."""
    s = b.settings
    frame = b.records[b.records["level"].isna()]
    if not frame["method"].map(answers.is_posthoc).any():
        return
    section = Section("What re-scoring adds")
    section.add(paragraph(
        "A post-hoc method adjusts the scores of its base method's own networks ('-thresh' divides each class's "
        "output by its training prior, '-la' subtracts τ·log prior from the log-probabilities and renormalises, "
        "'-tau-norm' rescales the output layer's weights); it trains nothing. So it is shown as what it adds to "
        "that network: the paired difference post-hoc minus base within each repeat, its interval over repeats, "
        "Holm-corrected across the post-hoc methods of a point. Dividing by a prior multiplies one class's scores by "
        "one positive number, which keeps the order of that class's scores, so '-thresh' cannot change one-vs-rest "
        "ROC AUC (it is left out of that table); '-la' renormalises each row after the shift, which reorders a "
        "class's scores across images and can change ROC AUC, without any training."))
    for metric in dict.fromkeys((s.metric, *RESCORING_METRICS)):
        margin = _margins(s).get(metric)
        rows = answers.rescoring(frame, metric=metric, margin=margin, alpha=s.alpha, confidence=s.confidence)
        if rows.empty:
            continue
        label = plots.METRICS.get(metric, metric)
        section.add(f"<h3>{esc(label)}</h3>")
        b.figure(section, evidence_plots.rescoring_figure(rows, metric=metric), plots.figure_name("rescoring", metric),
                 f"{label}: each post-hoc method minus its base method, paired within a repeat, per grid point; each "
                 f"dot is the mean paired difference, each bar its {s.confidence:.0%} interval over repeats, the grey "
                 f"band ±{format_value(margin)} (the equivalence margin). Colour: raises or lowers (Holm-corrected "
                 "test and an interval without 0), no change beyond ±δ (two one-sided t-tests), or undecided.",
                 label="What re-scoring adds")
        table = rows.assign(point=[point_label(r, m, lv) for r, m, lv in zip(rows["rho"], rows["mu"], rows["level"])])
        section.add(table_html(table[["point", "method", "base", "n_pairs", "mean_difference", "ci_low", "ci_high",
                                      "interval_method", "test", "p_holm", "verdict", "note"]].rename(
            columns={"mean_difference": "mean difference to its base"})))
    if section.blocks[1:]:
        b.report.sections.append(section)


def _ranking(b: _Builder) -> None:
    """Average ranks over the grid's points, the Friedman test and Nemenyi's CD diagram, per dataset."""
    from imbalance.analysis import ranking
    s = b.settings
    frame = b.records[b.records["level"].isna()]
    section = Section("Ranking the methods across the grid")
    for (dataset, imbalance), group in frame.groupby(["dataset", "imbalance"], sort=True):
        r = ranking.rank_methods(group, metric=s.metric, alpha=s.alpha)
        if len(r.average_ranks) < 2 or r.n_points < 2:
            continue
        where = f"{dataset}, {imbalance} imbalance"
        section.add(f"<h3>{esc(where)}</h3>")
        b.figure(section, evidence_plots.critical_difference_figure(r, title=f"{where}: average rank by {s.metric}"),
                 plots.figure_name("cd", dataset, imbalance),
                 f"Average rank of each method over the {r.n_points} grid points of {where} (1 = highest mean "
                 f"{plots.METRICS.get(s.metric, s.metric)} at a point, ties share their average rank). "
                 f"{ranking.ranking_text(r)}. A thick line joins methods whose average ranks differ by less than "
                 "the critical difference (Nemenyi's post-hoc test, Demšar 2006): not shown different over the grid. "
                 "The test treats the grid's points as exchangeable blocks; the per-point verdicts above are the "
                 "finer answer. Trained methods only: post-hoc re-scorings are in \"What re-scoring adds\".",
                 label="Critical-difference diagram")
        section.add(table_html(ranking.ranking_table(r), digits=2))
    if section.blocks:
        b.report.sections.append(section)


def _point_table(winners: pd.DataFrame, paired: pd.DataFrame | None, s: ReportSettings) -> pd.DataFrame:
    rows = []
    for _, w in winners.iterrows():
        diff = None
        if paired is not None and isinstance(w["winner"], str) and w["winner"] != s.reference:
            match = paired[(paired["point_id"] == w["point_id"]) & (paired["method"] == w["winner"])]
            diff = match.iloc[0] if not match.empty else None
        if w["winner"] == s.reference:
            difference, interval, verdict = "— (the winner is the reference)", "", ""
        elif diff is None:
            difference, interval, verdict = "", "", ""
        elif pd.isna(diff["ci_low"]):
            difference = f"{diff['mean_difference']:+.4f}"
            interval, verdict = _text(diff["note"]) or f"n={int(diff['n_pairs'])}: too few repeats", ""
        else:
            difference = f"{diff['mean_difference']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]"
            interval = f"{s.confidence:.0%} {diff['interval_method']}; {diff['test']} p (Holm) = {diff['p_holm']:.3g}"
            verdict = _text(diff["verdict"])
        untested = tuple(w.get("untested") or ())
        rows.append({"point": point_label(w["rho"], w["mu"], w["level"]), "winner": w["winner"] or "none",
                     f"mean {s.metric}": w["mean"], "equivalent to it": ", ".join(w["equivalent"] or ()) or "none",
                     "undecided against it": ", ".join(w["undecided"] or ()) or ("untested" if untested else "none"),
                     f"winner − {s.reference}": difference, "interval": interval, "verdict": verdict,
                     "n": int(w["n"]), "note": "" if _text(w["note"]).startswith(interval) else _text(w["note"])})
    return pd.DataFrame(rows)


def _post_hoc(method) -> bool:
    """A post-hoc method ('<m>-thresh', '<m>-la', '<m>-tau-norm') trains no network of its own."""
    return isinstance(method, str) and registry.is_method(method) and registry.get_method(method).posthoc is not None


def _second_stage(method) -> bool:
    """A method whose network is a second stage on a first (two-phase, crt): its records' iterations are its own."""
    return isinstance(method, str) and registry.is_method(method) and \
        registry.get_method(registry.trained_method(method)).stage2 is not None


def _text(value) -> str:
    """A table cell's text: '' for None and NaN (pandas' missing value in a column of strings)."""
    return value if isinstance(value, str) else ""


def _caption(fig, what: str) -> str:
    band = plots.band_caption(getattr(fig, "imbalance_intervals", None))
    return f"{what} {band}".strip()


def _paper_figures(b: _Builder) -> None:
    records, s = b.records, b.settings
    section = Section("The paper's figures, on this study")
    missing = b.report.missing
    datasets = sorted(set(records["dataset"].dropna()) - {"imagefolder"})
    step = records[(records["imbalance"] == "step") & records["level"].isna()]

    plain = records[records["level"].isna()]
    if not plain.empty:
        first = plain.sort_values("repeat")
        counts = next((c for c in first["class_counts"] if isinstance(c, (list, tuple))), None)
        names = class_names(datasets[0] if len(datasets) == 1 else None, len(counts)) if counts else None
        stored = next((n for n in first.get("classes", ()) if isinstance(n, (list, tuple))), None)
        names = tuple(stored) if stored and counts and len(stored) == len(counts) else names   # the data's own
        fig = plots.study_profiles_figure(plain, classes=names)
        if plots.figure_message(fig) is None:
            b.figure(section, fig, "fig1_profiles",
                     "The training class counts of repeat 0 at each grid point of this study "
                     "(its own n_max and class names), minority classes in red, on a log axis with a tick at n_max "
                     "and at n_max/ρ for every ρ of the grid, so that 1-example classes stay visible. Which classes "
                     "are minority can differ from one repeat to the next (the study's minority rule).",
                     label="Figure 1 of the paper, on this study")
    for dataset in datasets:
        of = step[step["dataset"] == dataset]
        if of.empty:
            continue
        fig = plots.auc_vs_rho(of, dataset=dataset, metric=s.metric)
        b.figure(section, fig, plots.figure_name("fig3_auc_vs_rho", dataset),
                 _caption(fig, f"{plots.METRICS[s.metric]} on the balanced test set against "
                               f"the imbalance ratio ρ (log axis) at fixed μ, one panel per μ, {dataset}, step "
                               "imbalance; the methods are dodged slightly along ρ so that coinciding lines "
                               "stay visible."), label="Figure 3 of the paper, on this study")
        fig = plots.auc_vs_mu(of, dataset=dataset, metric=s.metric)
        b.figure(section, fig, plots.figure_name("fig4_auc_vs_mu", dataset),
                 _caption(fig, f"{plots.METRICS[s.metric]} against the fraction of minority "
                               f"classes μ at fixed ρ, one panel per ρ, {dataset}, step imbalance."), label="Figure 4 of the paper, on this study")
    if step.empty:
        missing.append(f"Figures 3 and 4 (step imbalance): run {plots.RUN['step']}")
    linear = records[records["imbalance"] == "linear"]
    if linear.empty:
        missing.append(f"Figure 5 (linear imbalance): run {plots.RUN['linear']}")
    else:
        fig = plots.linear_figure(linear, metric=s.metric)
        b.figure(section, fig, "fig5_linear",
                 _caption(fig, f"{plots.METRICS[s.metric]} against ρ under linear imbalance "
                               "(class sizes interpolated linearly from n_max/ρ to n_max), one panel per dataset."),
                 label="Figure 5 of the paper, on this study")
    for dataset in datasets:
        of = step[step["dataset"] == dataset]
        fig = plots.threshold_accuracy_figure(of, dataset=dataset)
        if plots.figure_message(fig) is None:
            b.figure(section, fig, plots.figure_name("fig6_thresholding", dataset),
                     _caption(fig, f"Test accuracy with argmax predictions (solid) and after "
                                   "thresholding, i.e. dividing each class's output by its prior in the training "
                                   f"set (dashed), against ρ, one panel per μ, {dataset}, step imbalance."),
                     label="Figure 6 of the paper, on this study")
    graded = records[records["level"].notna()]
    if graded.empty:
        missing.append(f"Figure 7 (graded over- and undersampling): run {plots.RUN['graded']}")
    else:
        fig = plots.graded_figure(graded, metric=s.metric)
        b.figure(section, fig, "fig7_graded",
                 _caption(fig, f"{plots.METRICS[s.metric]} against the imbalance ratio left "
                               "after graded over- or undersampling (1 = fully balanced), one panel per μ."),
                 label="Figure 7 of the paper, on this study")
    if b.curves.dropna(subset=["iteration"]).empty:
        missing.append(f"Figure 8 (learning curves): run {plots.RUN['curves']}")
    else:
        fig = plots.curves_figure(b.curves, records=records, max_points=CURVE_POINTS)
        n = records.groupby(["point_id", "method"])["repeat"].nunique()
        n_points = b.curves["point_id"].nunique()
        shown = f"the first {CURVE_POINTS} of {n_points} grid points" if n_points > CURVE_POINTS else "each grid point"
        b.figure(section, fig, "fig8_curves",
                 "Test (solid) and training (dashed) accuracy during training, one panel for "
                 f"{shown} in grid order; thin lines are single networks, thick lines their mean over "
                 f"{', '.join(map(str, sorted(set(n))))} repeats. '-thresh' methods share their base network's curve.",
                 label="Figure 8 of the paper, on this study")
    imagenet = _imagenet(records)
    if imagenet.empty:
        missing.append(f"Table 4 (ImageNet subsets): run {plots.RUN['imagenet']}")
    else:
        fig = plots.imagenet_table(imagenet, metric=s.metric)
        b.figure(section, fig, "table4_imagenet",
                 _caption(fig, f"{plots.METRICS[s.metric]} per method on each ImageNet subset; "
                               "cells are the mean over repeats with its interval, or the mean and why there is "
                               "none."), label="Table 4 of the paper, on this study")
    if section.blocks:
        b.report.sections.append(section)


def _new_figures(b: _Builder) -> None:
    records = b.records
    section = Section("New figures")
    for dataset in sorted(pd.unique(records["dataset"].dropna())):
        of = records[(records["dataset"] == dataset) & records["level"].isna()]
        counts = next((c for c in of["class_counts"] if isinstance(c, (list, tuple))), None)
        fig = plots.recall_figure(of, dataset=dataset)
        if plots.figure_message(fig) is not None:
            b.report.missing.append(f"per-class recall of {dataset}: its records store none")
            continue
        networks = of.groupby("method").size()
        b.figure(section, fig, plots.figure_name("recall_vs_class_size", dataset),
                 f"Per-class recall on the balanced test set against the class's number of training examples (log "
                 f"axis), one panel per method, {dataset}, every grid point pooled: each dot is one class of one "
                 f"network (red: a minority class of its training set; blue: a majority class), the black line the "
                 f"mean recall per class size; {', '.join(map(str, sorted(set(networks))))} networks per method, "
                 f"{len(counts) if counts else '?'} classes each.", label="Per-class recall")
        _confusion(b, section, of, dataset)
    if section.blocks:
        b.report.sections.append(section)


def _confusion(b: _Builder, section: Section, of: pd.DataFrame, dataset: str) -> None:
    """The confusion matrix per method of repeat 0 at the dataset's hardest grid point: the one where the
    reference method (else every method) has the lowest mean of the ranking metric."""
    s = b.settings
    stored = of[of["confusion_matrix"].map(lambda v: isinstance(v, (list, tuple)) and len(v) > 0)] \
        if "confusion_matrix" in of else of.iloc[0:0]
    if stored.empty:
        b.report.missing.append(CONFUSION_MISSING.format(dataset=dataset))
        return
    judged = stored[stored["method"] == s.reference] if (stored["method"] == s.reference).any() else stored
    means = judged.groupby("point_id")[s.metric].mean().dropna()
    if means.empty:
        b.report.missing.append(CONFUSION_MISSING.format(dataset=dataset))
        return
    hardest = means.idxmin()
    repeat = int(stored[stored["point_id"] == hardest]["repeat"].min())
    first = stored[stored["point_id"] == hardest].iloc[0]
    names = class_names(dataset, len(first["confusion_matrix"]))
    fig = plots.confusion_figure(stored, point_id=hardest, repeat=repeat, dataset=dataset, classes=names)
    whose = s.reference if judged is not stored else "every method"
    b.figure(section, fig, plots.figure_name("confusion", dataset, hardest),
             f"Test confusion matrices of one network per method (repeat {repeat}) at {dataset}'s hardest grid point, "
             f"{hardest} (the lowest mean {plots.METRICS[s.metric]} of {whose}): rows are true classes, each cell the "
             f"share of that class's test images predicted as the column's class (the diagonal is per-class recall); "
             f"red tick labels mark the network's minority classes. A panel titled FAILED is a network that failed "
             f"(diverged, or collapsed: it predicts one class for every image, or its outputs are constant); it has no "
             f"scores in the statistics.", label="Confusion matrices")


def study_report(study: str, outputs_dir: str | os.PathLike = "outputs", *, settings: ReportSettings = SETTINGS,
                 save_figures: bool = True, with_studies=(), grid_points: int | None = None) -> Report:
    """The `Report` of outputs/<study>/results.sqlite; its figures saved as PNG + SVG under
    outputs/<study>/figures/ if `save_figures`.  `with_studies`: companion studies under the same
    outputs folder for the cross-study conclusions.  `grid_points`: the size of the study's grid
    (its params), for a report that says how far a study that is not complete got.  A missing
    database is a FileNotFoundError."""
    study_dir = Path(outputs_dir) / study
    db = study_dir / "results.sqlite"
    for name in [study, *with_studies]:
        path = Path(outputs_dir) / name / "results.sqlite"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: study {name!r} has no results yet; run it first "
                                    f"(imbalance run params/<file>.yaml)")
    others = {name: frames.load_study(name, outputs_dir)[0] for name in with_studies}
    from imbalance.study.store import Store
    # one read-write connection, closed at once: SQLite then removes the WAL files (a read-only
    # connection to a WAL database would leave results.sqlite-wal/-shm behind)
    with Store(db) as store:
        records = frames.records_frame(store.records_frame(study))
        curves = frames.curves_frame(store.curves_frame(study))
        stored = study_settings(store, study)
        seconds = point_seconds(store, study)
        run = run_table(records, stored, seconds, grid_points=grid_points) if not records.empty else None
    if settings.margins is None and stored.get("equivalence_margin"):
        from dataclasses import replace
        settings = replace(settings, margins=stored["equivalence_margin"])
    from imbalance.analysis.planning import design_text
    return build_report(study, records, curves, run=run, settings=settings,
                        figures_dir=study_dir / "figures" if save_figures else None, others=others,
                        design=design_text(study_dir), progress=progress_text(len(seconds), grid_points))


def show_report(study: str, outputs_dir: str | os.PathLike = "outputs", *,
                settings: ReportSettings = SETTINGS) -> Report:
    """The report for a notebook (notebooks/figures.ipynb): displayed as HTML, figures saved."""
    return study_report(study, outputs_dir, settings=settings)


def write_report(study: str, outputs_dir: str | os.PathLike = "outputs", *, settings: ReportSettings = SETTINGS,
                 kernel_name: str | None = None, with_studies=(), grid_points: int | None = None) -> Path:
    """Build outputs/<study>/report.html (figures embedded) and save its figures as PNG + SVG under
    outputs/<study>/figures/, from outputs/<study>/results.sqlite.  Returns the HTML's path.

    kernel_name: unused (the report runs no notebook); accepted so `imbalance report --kernel` works.
    grid_points: the size of the study's grid, as `study_report`."""
    report = study_report(study, outputs_dir, settings=settings, with_studies=with_studies, grid_points=grid_points)
    path = Path(outputs_dir) / study / "report.html"
    path.write_text(report.html(), encoding="utf-8")
    return path
