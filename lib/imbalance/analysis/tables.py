"""A study's records as pandas tables: loading, selecting, intervals of means, and summaries.

Every function takes the records (a DataFrame from `Store.records_frame`, or the list of record
dicts a training notebook gets from `run_grid_point`) and returns a DataFrame:

| function         | shows                                                                         |
|------------------|-------------------------------------------------------------------------------|
| `records_frame`  | the records, with every column the figures and tables use                     |
| `load_study`     | (records, curves) of `outputs/<study>/results.sqlite`, read only              |
| `grid_table`     | the grid points present, with their methods, repeats and diverged networks    |
| `point_table`    | the mean of a metric per method (rows) and grid point (columns)               |
| `method_table`   | the metrics per method at one grid point, ranked, with the interval of a mean |
| `mean_intervals` | per (grid point, method): n, mean and its interval (`imbalance.analysis.stats`)        |
| `counts_table`   | the class counts of a point's imbalanced training sets, one row per repeat    |
| `method_table_view`, `paired_table_view` | those tables as documents: labels, formatted numbers, a caption |

`mean_intervals` is the one place the figures (`imbalance.analysis.plots`), the explorer and the report get
the interval of a method's mean from: `imbalance.analysis.stats.method_intervals` (Student-t on the logit
scale for n < 10 repeats, so a metric in [0, 1] keeps its interval there; BCa bootstrap for n >= 10; none for
n < 3: "n=2: too few repeats"; never a range).
`metric_records` gives the records a figure of one metric plots: for ROC AUC without methods named,
the '-thresh' methods are left out, since thresholding cannot change it.

No torch here, nor matplotlib: `imbalance.analysis.stats` (pandas + scipy) is imported when first asked.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from imbalance.analysis.frames import close_to, format_value, methods_present, records_frame, repeats_its_base
from imbalance.analysis.stats import CONFIDENCE

INTERVAL_COLUMNS = ("point_id", "method", "n", "mean", "ci_low", "ci_high", "interval_method", "note")


def select_records(frame: pd.DataFrame, *, dataset=None, imbalance=None, methods=None, graded: bool | None = False,
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
            keep &= close_to(frame[column], value)
    return frame[keep]


def metric_records(records, metric: str, *, methods=None, **select) -> tuple[pd.DataFrame, bool]:
    """The records `select_records(…, methods=methods, **select)` picks that have `metric`, and whether
    '-thresh' methods were left out: they are, for a metric thresholding cannot change (ROC AUC)
    when no methods are named, since each would repeat its base method's numbers exactly."""
    frame = select_records(records_frame(records), methods=methods, **select).dropna(subset=[metric])
    if methods is not None:
        return frame, False
    dropped = repeats_its_base(frame["method"], metric)
    return frame[~dropped], bool(dropped.any())


def mean_intervals(records, *, metric: str, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per (point_id, method): n, the mean of `metric` over repeats and its interval, with the
    interval's name or why there is none (`imbalance.analysis.stats.method_intervals`); empty without records."""
    frame = records_frame(records).dropna(subset=[metric])
    if frame.empty:
        return pd.DataFrame(columns=list(INTERVAL_COLUMNS))
    from imbalance.analysis import stats
    return stats.method_intervals(frame, metric=metric, confidence=confidence).reset_index(drop=True)


def point_table(records, *, dataset: str | None = None, metric: str = "roc_auc", methods=None) -> pd.DataFrame:
    """Mean metric per method (rows) and grid point (columns 'ρ=…, μ=…'), e.g. Table 4's numbers.
    For ROC AUC without `methods` named, no '-thresh' rows: they would repeat their base method's."""
    frame, _ = metric_records(records, metric, methods=methods, dataset=dataset, graded=None)
    if frame.empty:
        return pd.DataFrame()
    frame = frame.assign(point=[point_label(r, m, lv) for r, m, lv in zip(frame.rho, frame.mu, frame.level)])
    order = (frame.sort_values(["rho", "mu", "level"]).drop_duplicates("point")["point"]).tolist()
    table = frame.pivot_table(index="method", columns="point", values=metric, aggfunc="mean")
    return table.reindex(index=methods_present(frame, methods), columns=order)


def point_label(rho, mu, level=None) -> str:
    return ", ".join([f"ρ={format_value(rho)}"] + ([f"μ={format_value(mu)}"] if not pd.isna(mu) else [])
                     + ([f"level={format_value(level)}"] if level is not None and not pd.isna(level) else []))


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
    """Mean of each metric per method over its networks (repeats), with the interval of the mean of
    `rank_by` (`mean_intervals`, all networks of a method pooled) and which interval it is, or why
    there is none ("n=2: too few repeats"); networks counted and diverged ones; best first if
    `sort`, else registry order.  '-thresh' methods stay: their accuracy differs from their base's."""
    frame = records_frame(records)
    metrics = list(dict.fromkeys([rank_by, *metrics]))
    intervals = mean_intervals(frame.assign(point_id="pooled"), metric=rank_by).set_index("method")
    rows = []
    for method in methods_present(frame):
        group = frame[frame["method"] == method]
        iv = intervals.loc[method] if method in intervals.index else None
        rows.append({"method": method, **{m: group[m].mean() for m in metrics},
                     f"{rank_by} ci_low": math.nan if iv is None else iv["ci_low"],
                     f"{rank_by} ci_high": math.nan if iv is None else iv["ci_high"],
                     "interval": "" if iv is None else (iv["interval_method"] if not pd.isna(iv["ci_low"])
                                                        else (iv["note"] or "no interval")),
                     "networks": len(group), "diverged": int(group["diverged"].fillna(0).sum())})
    columns = ["method", *metrics, f"{rank_by} ci_low", f"{rank_by} ci_high", "interval", "networks", "diverged"]
    table = pd.DataFrame(rows, columns=columns).set_index("method")
    if sort:
        table = table.sort_values(rank_by, ascending=False, kind="stable")
        table.insert(0, "rank", range(1, len(table) + 1))
    return table.round(digits)


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
                     "methods": len(methods_present(group)), "repeats": int(group["repeat"].nunique()),
                     "networks": len(group), "diverged": int(group["diverged"].fillna(0).sum())})
    return pd.DataFrame(rows)


# --- tables as documents: labels, formatted numbers, a caption that names each interval ----------------

DASH = "—"                 # a cell with nothing to show; each table's caption says what it means there
DIGITS = 4                 # decimals of every metric and difference shown
INTERVAL_NAMES = {         # stats' interval names, in words for a caption
    "student-t": "Student t interval",
    "logit-t": "Student t interval on the logit scale, mapped back, so it stays inside [0, 1]",
    "bca-bootstrap": "BCa bootstrap interval",
}


def metric_label(metric: str) -> str:
    """The reader's name of a metric (schema.METRIC_LABELS), e.g. 'accuracy after thresholding'."""
    from imbalance.schema import METRIC_LABELS
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def format_number(value, *, digits: int = DIGITS, signed: bool = False) -> str:
    """0.91234 -> '0.9123' ('+0.9123' if signed); NaN or None -> DASH."""
    if value is None or pd.isna(value):
        return DASH
    return f"{float(value):{'+' if signed else ''}.{digits}f}"


def format_interval(low, high, *, digits: int = DIGITS, signed: bool = False) -> str:
    """'[0.9010, 0.9250]'; DASH when either end is missing (no interval)."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return DASH
    return f"[{format_number(low, digits=digits, signed=signed)}, {format_number(high, digits=digits, signed=signed)}]"


def interval_words(names: Iterable, *, confidence: float = CONFIDENCE) -> str:
    """'95% Student t interval on the logit scale, ...' for the interval names a table used."""
    used = [n for n in dict.fromkeys(names) if isinstance(n, str) and n]
    if not used:
        return "no interval"
    return f"{confidence:.0%} " + "; or ".join(INTERVAL_NAMES.get(n, n) for n in used)


def method_table_view(table: pd.DataFrame, *, rank_by: str) -> tuple[pd.DataFrame, str]:
    """`method_table` as a document: (a frame of strings with readers' column labels, its caption).

    Columns: rank, method, each metric's mean (schema.METRIC_LABELS), the interval of `rank_by`'s mean
    ('[low, high]'), the networks (and how many failed).  No NaN/None: DASH, said in the caption."""
    label = metric_label(rank_by)
    metrics = [c for c in table.columns if c not in ("rank", f"{rank_by} ci_low", f"{rank_by} ci_high", "interval",
                                                      "networks", "diverged")]
    rows = []
    for method, row in table.iterrows():
        failed = int(row.get("diverged", 0) or 0)
        rows.append({**({"rank": str(int(row["rank"]))} if "rank" in table.columns else {}), "method": method,
                     **{metric_label(m): format_number(row[m]) for m in metrics},
                     f"{label}: interval of the mean": format_interval(row[f"{rank_by} ci_low"],
                                                                       row[f"{rank_by} ci_high"]),
                     "networks": f"{int(row['networks'])}" + (f" ({failed} failed)" if failed else "")})
    view = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["method"])
    names = [n for n in table["interval"] if n in INTERVAL_NAMES] if "interval" in table.columns else []
    caption = (f"Mean over each method's networks (repeats){', best first by ' + label if 'rank' in table else ''}. "
               f"Interval of the mean of {label}: {interval_words(names)}. "
               f"{DASH} in the interval: fewer than 3 networks with a score, so none; {DASH} in a metric: "
               "not measured for that method. A failed network (non-finite or exploded loss, constant outputs) "
               "has no score and is left out of the mean.")
    return view, caption


def paired_table_view(table: pd.DataFrame, *, metric: str, reference: str) -> tuple[pd.DataFrame, str]:
    """`explorer.explorer_paired`'s table (stats.paired_differences' columns) as a document: (frame of
    strings, caption); signed differences, '[low, high]' intervals, Holm p-values, the verdict and a
    note in words, DASH where a comparison has too few pairs."""
    label = metric_label(metric)
    difference = next((c for c in table.columns if c.endswith(f" − {reference}")), "mean_difference")
    rows = []
    for method, row in table.iterrows():
        note = row.get("note")
        rows.append({"method": method, "pairs": str(int(row["n_pairs"])),
                     f"{label} minus {reference}": format_number(row[difference], signed=True),
                     "interval of the mean difference": format_interval(row["ci_low"], row["ci_high"], signed=True),
                     "test, Holm p": DASH if pd.isna(row["p_holm"]) else
                         f"{row['p_holm']:.3g} ({str(row['test']).replace('-', ' ')})",
                     f"equivalence (±{format_number(row['margin'], digits=3)}), Holm p":
                         format_number(row["p_equivalent_holm"], digits=3),
                     "verdict": row["verdict"] if isinstance(row["verdict"], str) else DASH,
                     "note": note if isinstance(note, str) else ""})
    view = pd.DataFrame(rows)
    names = [n for n in table.get("interval_method", []) if isinstance(n, str)]
    caption = (f"Each method's {label} minus {reference}'s, within each repeat (the same subset and initial "
               f"weights), averaged over the pairs. Interval of that mean difference: {interval_words(names)} "
               "(BCa bootstrap from 10 pairs), not adjusted for multiplicity: it is the paired t-test's own interval, "
               "so it is not mapped to a bounded scale (a difference of two values in [0, 1] lies in [-1, 1]). Test: paired t below 6 pairs, Wilcoxon signed-rank from 6; "
               "equivalence: two one-sided t-tests at the margin; both Holm-corrected over the methods compared "
               f"here. Verdict: better / worse (shown different), equivalent (shown within the margin), undecided "
               f"(neither). {DASH}: fewer than 3 pairs, so no interval, test or verdict; the note says why. "
               "An empty note: nothing to add.")
    return view, caption


def html_table(view: pd.DataFrame, *, caption: str) -> str:
    """A frame of strings as an HTML table with its caption above (escaped; no index column)."""
    import html as _html
    body = view.to_html(index=False, border=0, escape=True, na_rep=DASH)
    return body.replace(">", f"><caption style=\"caption-side: top; text-align: left\">"
                                 f"{_html.escape(caption)}</caption>", 1)
