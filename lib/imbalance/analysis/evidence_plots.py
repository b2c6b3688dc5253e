"""Figures of the study's answers, drawn from the statistics' tables (never from raw records alone):

| function                     | shows                                                                        |
|------------------------------|------------------------------------------------------------------------------|
| `winners_figure`             | the highest mean per (ρ, μ), equivalent ones marked (`stats.point_winners`) |
| `verdict_map_figure`         | per (ρ, μ), the methods shown better / equivalent / undecided / worse than the reference |
| `rescoring_figure`           | what each post-hoc re-scoring adds to its base network (paired differences)  |
| `forest_figure`              | a conclusion's differences with intervals, 0 and the ±δ band                 |
| `critical_difference_figure` | average ranks with Nemenyi's critical difference (`ranking`)                 |

Colours, labels and the message figure are `imbalance.analysis.plots`'s.  No torch here.
"""
from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from imbalance.analysis.frames import format_value, methods_present
from imbalance.analysis.plots import METRICS, MU, PALETTE, RHO, UNKNOWN_COLOUR, message_figure


def _map_axes(ax, rhos, mu_keys, *, has_mu: bool) -> None:
    """A (ρ x μ) map's grid of cells: one column per ρ, one row per μ, labelled, without spines or ticks."""
    ax.set_xlim(0, max(len(rhos), 1))
    ax.set_ylim(len(mu_keys), 0)
    ax.set_xticks(np.arange(len(rhos)) + 0.5)
    ax.set_xticklabels([format_value(r) for r in rhos])
    ax.set_yticks(np.arange(len(mu_keys)) + 0.5)
    ax.set_yticklabels(mu_keys)
    ax.set_xlabel(RHO)
    ax.set_ylabel(MU if has_mu else "")
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)


def winners_figure(winners: pd.DataFrame, *, title: str | None = None) -> Figure:
    """The winning method per (ρ, μ) as a coloured grid, from `stats.point_winners` rows of one
    dataset and imbalance type.  Each cell names its winner (the highest mean); '≈ …' lists the (or, past two, counts the)
    methods shown equivalent to it within the margin (hatched cell); '? n' counts the methods
    undecided against it; where the repeats are too few to test ('untested'), the cell says so and
    is drawn pale: the winner is only the highest mean there."""
    if winners is None or winners.empty:
        return message_figure("no grid points with a winner")
    frame = winners.copy()
    frame["mu_key"] = frame["mu"].map(lambda v: "-" if pd.isna(v) else format_value(v))
    rhos = sorted(pd.unique(frame["rho"].dropna()))
    mus = sorted(pd.unique(frame["mu"].dropna()), reverse=True)
    mu_keys = [format_value(m) for m in mus] or ["-"]
    fig, ax = plt.subplots(figsize=(2.0 * len(rhos) + 2.8, 1.0 * len(mu_keys) + 1.3))
    present, any_tied, any_untested = [], False, False
    for i, mu_key in enumerate(mu_keys):
        for j, rho in enumerate(rhos):
            cell = frame[(frame["mu_key"] == mu_key) & np.isclose(frame["rho"].astype(float), rho)]
            row = cell.iloc[0] if not cell.empty else None
            winner = row["winner"] if row is not None else None
            has_winner = isinstance(winner, str) and bool(winner)
            tied = tuple(t for t in (row["equivalent"] or ()) if t != winner) if has_winner else ()
            open_ = tuple(row.get("undecided") or ()) if has_winner else ()
            untested = tuple(row.get("untested") or ()) if has_winner else ()
            any_tied |= bool(tied)
            any_untested |= bool(untested)
            colour = PALETTE.get(winner, (0.4, 0.4, 0.4)) if has_winner else (0.88, 0.88, 0.88)
            ax.add_patch(matplotlib.patches.Rectangle(
                (j, i), 1, 1, facecolor=colour, alpha=0.6 if has_winner else 1,
                edgecolor="white", lw=2, hatch="//" if tied else None))
            lines = [f"highest mean: {winner}"] if has_winner else ["no winner"]
            if tied:   # a cell holds two names at most; the table beside the map lists every one
                lines.append("≈ " + ", ".join(tied) if len(tied) <= 2 else f"{len(tied)} equivalent to it")
            if open_:
                lines.append(f"? {', '.join(open_)}" if len(open_) <= 2 else f"? {len(open_)} undecided")
            if untested:
                lines.append(f"untested: {', '.join(untested)}" if len(untested) <= 2 else
                             f"{len(untested)} untested")   # too few pairs with the winner to test
            ax.text(j + 0.5, i + 0.5, "\n".join(lines), ha="center", va="center", fontsize=8, wrap=True)
            if has_winner:
                present.append(winner)
    _map_axes(ax, rhos, mu_keys, has_mu=bool(mus))
    if title:
        ax.set_title(title, fontsize=10)
    handles = [matplotlib.patches.Patch(facecolor=PALETTE.get(m, (0.4, 0.4, 0.4)), alpha=0.6, label=m)
               for m in methods_present(pd.DataFrame({"method": present}))]
    if any_tied:
        handles.append(matplotlib.patches.Patch(facecolor="white", edgecolor="0.3", hatch="//",
                                                label="equivalent to others (≈ …)"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              title="highest mean (? undecided)")
    fig.tight_layout()
    plt.close(fig)
    return fig


NONE_BETTER_COLOUR = (0.9, 0.9, 0.9)


def verdict_map_figure(paired: pd.DataFrame, *, reference: str, metric: str, margin: float,
                       title: str | None = None) -> Figure:
    """The answer at each (ρ, μ) as a grid, from `stats.paired_differences` rows of the trained methods against
    `reference`: each cell names the methods shown better than the reference (coloured by the one with the
    largest mean difference), or says none is; then counts those practically equivalent (within ±δ),
    undecided, shown worse, and untested (too few pairs).  A cell where no method is shown better is light
    grey whatever the other counts; an untested method is only a count, never a reason to grey a cell out."""
    if paired is None or paired.empty:
        return message_figure(f"no paired comparisons with {reference}")
    frame = paired.copy()
    rhos = sorted(pd.unique(frame["rho"].dropna()))
    mus = sorted(pd.unique(frame["mu"].dropna()), reverse=True)
    mu_keys = [format_value(m) for m in mus] or ["-"]
    frame["mu_key"] = frame["mu"].map(lambda v: "-" if pd.isna(v) else format_value(v))
    fig, ax = plt.subplots(figsize=(2.2 * max(len(rhos), 1) + 2.8, 1.15 * len(mu_keys) + 1.3))
    present = []
    for i, mu_key in enumerate(mu_keys):
        for j, rho in enumerate(rhos or [math.nan]):
            cell = frame[(frame["mu_key"] == mu_key) & (close_rho(frame["rho"], rho))]
            if cell.empty:
                continue
            verdicts = cell["verdict"].where(cell["verdict"].map(lambda v: isinstance(v, str)), None)
            better = cell[verdicts == "better"].sort_values("mean_difference", ascending=False)
            colour = PALETTE.get(better["method"].iloc[0], UNKNOWN_COLOUR) if len(better) else NONE_BETTER_COLOUR
            ax.add_patch(matplotlib.patches.Rectangle((j, i), 1, 1, facecolor=colour, alpha=0.6 if len(better) else 1,
                                                      edgecolor="white", lw=2))
            names = list(better["method"])
            lines = [("better: " + ", ".join(names) if len(names) <= 2 else f"{len(names)} better: {names[0]}, …")
                     if names else f"none better than {reference}"]
            for verdict, word in (("equivalent", "≈ equivalent"), ("undecided", "? undecided"), ("worse", "worse")):
                k = int((verdicts == verdict).sum())
                if k:
                    lines.append(f"{k} {word}")
            k = int(verdicts.isna().sum())
            if k:
                lines.append(f"{k} untested")
            ax.text(j + 0.5, i + 0.5, "\n".join(lines), ha="center", va="center", fontsize=8, wrap=True)
            present += names[:1]
    _map_axes(ax, rhos, mu_keys, has_mu=bool(mus))
    ax.set_title(title or f"{METRICS.get(metric, metric)} against {reference} (±δ = {format_value(margin)})",
                 fontsize=10)
    handles = [matplotlib.patches.Patch(facecolor=PALETTE.get(m, UNKNOWN_COLOUR), alpha=0.6, label=m)
               for m in methods_present(pd.DataFrame({"method": present}))]
    handles.append(matplotlib.patches.Patch(facecolor=NONE_BETTER_COLOUR, label=f"none shown better than {reference}"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              title="shown better (largest gain)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def close_rho(values: pd.Series, rho: float) -> np.ndarray:
    if isinstance(rho, float) and math.isnan(rho):
        return values.isna().to_numpy()
    return np.isclose(values.astype(float), rho)


def rescoring_figure(rows: pd.DataFrame, *, metric: str, title: str | None = None) -> Figure:
    """What re-scoring adds: each post-hoc method's paired difference to its base method per point
    (`answers.rescoring` rows), as a forest plot with the ±δ band."""
    if rows is None or rows.empty:
        return message_figure("no post-hoc method with its base method in these records")
    evidence = rows.assign(part=[f"{m} − {b}" for m, b in zip(rows["method"], rows["base"])],
                           label=[", ".join(p for p in (f"ρ={format_value(r)}" if pd.notna(r) else "",
                                                        f"μ={format_value(u)}" if pd.notna(u) else "",
                                                        f"level {format_value(lv)}" if pd.notna(lv) else "") if p)
                                  or str(pid) for r, u, lv, pid in zip(rows["rho"], rows["mu"], rows["level"],
                                                                       rows["point_id"])],
                           estimate=rows["mean_difference"],
                           outcome=rows["verdict"].map({"better": "raises", "worse": "lowers",
                                                        "equivalent": "no change beyond ±δ",
                                                        "undecided": "undecided"}))
    return forest_figure(evidence, title=title or f"what re-scoring adds to its base network: {METRICS.get(metric, metric)}",
                         xlabel=f"{METRICS.get(metric, metric)}: post-hoc minus its base method (paired)",
                         colours=RESCORING_COLOURS)


RESCORING_COLOURS = {"raises": "#1a9850", "lowers": "#d73027", "no change beyond ±δ": "#4575b4",
                     "undecided": "#7f7f7f"}
OUTCOME_COLOURS = {"as claimed": "#1a9850", "against": "#d73027", "undecided": "#7f7f7f"}


def forest_figure(evidence: pd.DataFrame, *, title: str | None = None, xlabel: str = "difference",
                  colours: dict | None = None) -> Figure:
    """A conclusion's comparisons as a forest plot: one row per evidence row with an `estimate`
    (its `label` on the left), the interval [ci_low, ci_high] as a bar, the zero line and the
    ±`margin` band (grey), coloured by `outcome` (as claimed / against / undecided; black: none).
    Rows are grouped by `part` (a header line each)."""
    if evidence is None or evidence.empty or "estimate" not in evidence or evidence["estimate"].dropna().empty:
        return message_figure("no comparison with an estimate")
    frame = evidence.dropna(subset=["estimate"]).reset_index(drop=True)
    parts = list(dict.fromkeys(frame["part"])) if "part" in frame else [None]
    labels, ys, y = [], [], 0
    order = []
    for part in parts:
        rows = frame[frame["part"] == part] if part is not None else frame
        if part is not None and len(parts) > 1:
            labels.append((y, str(part), True))
            y += 1
        for i in rows.index:
            order.append((i, y))
            labels.append((y, str(frame.at[i, "label"]) if "label" in frame else str(i), False))
            y += 1
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * y + 1.2))
    margin = pd.to_numeric(frame.get("margin", pd.Series(dtype=float)), errors="coerce").dropna()
    if not margin.empty:
        d = float(margin.iloc[0])
        ax.axvspan(-d, d, color="0.88", zorder=0, label=f"±δ = {format_value(d)}")
    ax.axvline(0, color="0.3", lw=0.8, zorder=1)
    for i, yy in order:
        r = frame.loc[i]
        colour = (colours or OUTCOME_COLOURS).get(r.get("outcome"), "black")
        if pd.notna(r.get("ci_low")) and pd.notna(r.get("ci_high")):
            ax.plot([r["ci_low"], r["ci_high"]], [yy, yy], color=colour, lw=1.6, zorder=2)
        ax.plot([r["estimate"]], [yy], "o", color=colour, ms=4, zorder=3)
    ax.set_yticks([t[0] for t in labels])
    ax.set_yticklabels([t[1] for t in labels], fontsize=7)
    for tick, (_, _, header) in zip(ax.get_yticklabels(), labels):
        tick.set_fontweight("bold" if header else "normal")
    ax.set_ylim(y - 0.5, -0.5)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    handles = [Line2D([], [], color=c, marker="o", lw=1.6, label=o) for o, c in (colours or OUTCOME_COLOURS).items()
               if "outcome" in frame and (frame["outcome"] == o).any()]
    handles += [matplotlib.patches.Patch(color="0.88", label=f"±δ = {format_value(float(margin.iloc[0]))}")] \
        if not margin.empty else []
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def critical_difference_figure(ranking, *, title: str | None = None) -> Figure:
    """Demšar's critical-difference diagram of a `ranking.Ranking`: the methods on an axis of
    average rank (1 = best, left), the critical difference as a bar above, and a thick line under
    each group of methods whose ranks lie within it (not shown different by Nemenyi's test)."""
    ranks = ranking.average_ranks
    if ranks.empty:
        return message_figure(f"no ranking of {ranking.metric}: fewer than two methods at every point")
    k = len(ranks)
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.22 * k))
    low, high = 1, max(k, 2)
    ax.set_xlim(low - 0.3, high + 0.3)
    ax.hlines(0, low, high, color="black", lw=1)
    for t in range(low, high + 1):
        ax.vlines(t, 0, 0.12, color="black", lw=0.8)
        ax.text(t, 0.2, str(t), ha="center", va="bottom", fontsize=7)
    half = (k + 1) // 2
    for i, (method, r) in enumerate(ranks.items()):
        left = i < half
        depth = -0.5 - 0.35 * (i if left else k - 1 - i)
        xt = low - 0.25 if left else high + 0.25
        ax.plot([r, r, xt], [0, depth, depth], color=PALETTE.get(method, "0.3"), lw=0.9)
        ax.text(xt, depth, f"{method} ({r:.2f})", ha="right" if left else "left", va="center", fontsize=7)
    for j, clique in enumerate(ranking.cliques):
        a, b = ranks[clique[0]], ranks[clique[-1]]
        yy = -0.2 - 0.12 * j
        ax.hlines(yy, a - 0.03, b + 0.03, color="black", lw=3)
    cd = ranking.critical_difference
    if not math.isnan(cd):
        ax.hlines(0.75, low, low + cd, color="black", lw=1.2)
        ax.vlines([low, low + cd], 0.68, 0.82, color="black", lw=1.2)
        ax.text(low + cd / 2, 0.88, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_ylim(-0.6 - 0.35 * half, 1.2)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


# --- one grid point: training notebooks -------------------------------------------------------
