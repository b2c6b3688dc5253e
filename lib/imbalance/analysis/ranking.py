"""Ranking methods across a study's grid (issue 24): average ranks, the Friedman test and the
Nemenyi critical difference (Demšar 2006, "Statistical comparisons of classifiers over multiple
data sets", JMLR 7).

Each grid point is one block: its mean of `metric` per method (over the repeats).  Within a point
the methods are ranked, 1 = highest mean (ties share their average rank); `average_ranks` is the
mean rank over the points.  The Friedman test (scipy.stats.friedmanchisquare) asks whether the
methods' ranks differ at all; Nemenyi's post-hoc test calls two methods different when their
average ranks differ by at least the critical difference

    CD = q_alpha * sqrt(k (k + 1) / (6 N)),   q_alpha = studentized_range.ppf(1 - alpha, k, inf) / sqrt(2)

for k methods over N points (Demšar's eq. and his Table 5 of q_alpha, which scipy's studentized
range reproduces: 1.960, 2.343, 2.569, 2.728 for k = 2..5 at alpha = 0.05).  Only methods with a
mean at every point used are ranked (a complete block design); points missing a method are left
out, and the result says how many.  The points are the study's grid, not independent data sets:
the ranks summarise the grid, the test treats its points as exchangeable blocks.

Post-hoc methods ('<m>-thresh', '<m>-la', '<m>-tau-norm') are never ranked, named or not: they re-score
their base method's network and train nothing, so they are shown as what they add to it
(`answers.rescoring`), not as rivals of trained methods (issue 23).

No torch, no plotting here (`evidence_plots.critical_difference_figure` draws a `Ranking`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as st

from imbalance.analysis.answers import is_posthoc
from imbalance.analysis.frames import counted, methods_present
from imbalance.analysis.stats import ALPHA, _frame

POST_HOC = "nemenyi"


@dataclass(frozen=True)
class Ranking:
    """Average ranks of methods over a grid's points with the Friedman test and Nemenyi's CD."""
    metric: str
    average_ranks: pd.Series        # method -> mean rank (1 = best), best first
    n_points: int                   # N: the points ranked (blocks)
    n_left_out: int                 # points left out: some ranked method has no mean there
    statistic: float                # Friedman chi-square (NaN with fewer than 3 methods or 2 points)
    p_value: float
    critical_difference: float      # Nemenyi's CD at alpha
    alpha: float
    cliques: tuple[tuple[str, ...], ...] = field(default=())   # maximal runs of methods within CD of each other
    post_hoc: str = POST_HOC

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.average_ranks.index)


def point_means(records, *, metric: str = "roc_auc", methods=None) -> pd.DataFrame:
    """The mean of `metric` per grid point (rows, 'study/point_id') and method (columns, registry
    order).  Post-hoc methods are left out, named or not (the module's docstring says why)."""
    frame = _frame(records, metric)
    if methods is not None:
        frame = frame[frame["method"].isin(list(methods))]
    frame = frame[~frame["method"].map(is_posthoc).astype(bool)]
    if frame.empty:
        return pd.DataFrame()
    key = frame["study"].fillna("").astype(str) + "/" + frame["point_id"].astype(str)
    means = frame.assign(point=key).pivot_table(index="point", columns="method", values=metric, aggfunc="mean")
    return means[[m for m in methods_present(frame) if m in means.columns]]


def nemenyi_critical_difference(k: int, n: int, *, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of average ranks for k methods over n blocks (Demšar 2006)."""
    if k < 2 or n < 1:
        raise ValueError(f"k (methods) must be >= 2 and n (points) >= 1, got k={k}, n={n}")
    q = float(st.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def _cliques(ranks: pd.Series, cd: float) -> tuple[tuple[str, ...], ...]:
    """Maximal runs of methods (ordered by rank) whose ranks all lie within `cd`: the bars of a CD diagram."""
    names, values = list(ranks.index), ranks.to_numpy()
    runs = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and values[j + 1] - values[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return tuple(tuple(names[a:b + 1]) for a, b in runs)


def rank_methods(records, *, metric: str = "roc_auc", alpha: float = ALPHA, methods=None) -> Ranking:
    """Average ranks over the grid's points, the Friedman test and Nemenyi's critical difference."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    means = point_means(records, metric=metric, methods=methods)
    complete = means.dropna(axis=0, how="any") if not means.empty else means
    if complete.shape[1] < 2 or complete.shape[0] < 1:
        return Ranking(metric, pd.Series(dtype=float), len(complete), len(means) - len(complete),
                       math.nan, math.nan, math.nan, alpha)
    ranks = complete.rank(axis=1, ascending=False, method="average")      # 1 = highest mean
    average = ranks.mean(axis=0).sort_values(kind="stable")
    k, n = complete.shape[1], complete.shape[0]
    if k >= 3 and n >= 2:
        friedman = st.friedmanchisquare(*(complete[c].to_numpy() for c in complete.columns))
        statistic, p = float(friedman.statistic), float(friedman.pvalue)
    else:
        statistic, p = math.nan, math.nan
    cd = nemenyi_critical_difference(k, n, alpha=alpha)
    return Ranking(metric, average, n, len(means) - n, statistic, p, cd, alpha, _cliques(average, cd))


def ranking_table(ranking: Ranking) -> pd.DataFrame:
    """One row per method: its average rank and the methods within the critical difference of it."""
    rows = []
    for m, r in ranking.average_ranks.items():
        close = [o for o, q in ranking.average_ranks.items() if o != m and abs(q - r) < ranking.critical_difference]
        rows.append({"method": m, "average rank": float(r), "not shown different (within CD)": ", ".join(close)})
    return pd.DataFrame(rows, columns=["method", "average rank", "not shown different (within CD)"])


def ranking_text(ranking: Ranking) -> str:
    """The ranking's caption numbers in words."""
    if ranking.average_ranks.empty:
        return f"no ranking of {ranking.metric}: fewer than two methods with a mean at some point"
    test = (f"Friedman chi-square {ranking.statistic:.2f}, p = {ranking.p_value:.3g}"
            if not math.isnan(ranking.statistic) else "no Friedman test (needs 3 methods and 2 points)")
    left = f"; {counted(ranking.n_left_out, 'point')} left out (a method has no mean there)" if ranking.n_left_out else ""
    return (f"{len(ranking.average_ranks)} methods over {ranking.n_points} grid points; {test}; Nemenyi critical "
            f"difference {ranking.critical_difference:.2f} ranks at alpha = {ranking.alpha:g}{left}")
