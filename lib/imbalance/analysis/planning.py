"""Repeats where the answer is still open (issue 24): how many would decide a comparison, and the
stopping design that adds them without bending the error rates.

`plan_repeats(records)` lists, for each `undecided` comparison the study cares about (`CARED`),
the repeats that would decide it at the declared margin δ, from the observed standard deviation
s of its paired differences (normal approximation with t quantiles, iterated on n):
- to show equivalence (TOST at level α/m, true difference 0):  n = ((t_{1-α/m} + t_{1-β/2}) s / δ)²;
- to show the observed difference Δ (two-sided at α/m):       n = ((t_{1-α/(2m)} + t_{1-β}) s / |Δ|)²;
m is the number of comparisons Holm corrects over at the point (a conservative, Bonferroni-sized
first step), β = 1 - power.  `needed` is the smaller of the two; the compute is what the runner
spends to reach it: it re-trains the point at its final n (the stored repeats again, checked to be the
same networks, then the new ones), so `needed` times the seconds of one repeat of the point (its
measured wall time per repeat, else the records' train_seconds).

The stopping design, `internal_pilot_targets` (`imbalance run --until-decided`): an *internal
pilot* with sample-size re-estimation from the pilot's variance only (Wittes & Brittain 1990), in
its blinded form (Kieser & Friede 2003): the repeats already run are the pilot; each point's final
n is the equivalence n above for the largest *blinded* pilot standard deviation among its
reference comparisons, s_b = sqrt(sum d^2 / (n0 - 1)) (the second moment of the paired differences
about 0, blind to their sign and not centred on their mean), capped at --max-repeats.  The final
n never depends on the verdicts, and every comparison is tested once, at the final n, by the
ordinary rules: no look at the answer decides whether to go on.  The unblinded sd (centred on the
pilot's mean) would not do with pilots of 3: a small pilot sd stops a comparison early exactly
when its t statistic is inflated, and the simulation test measured 8% false better/worse at
alpha = 5%; the blinded s_b keeps both error rates at or below alpha (tests/analysis/test_planning.py,
2,000 null comparisons each).  Points whose pilot already has the n are left as they are.

No torch here; the runner (study.runner.extend_repeats) trains the added repeats.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as st

from imbalance.analysis import stats
from imbalance.analysis.answers import is_posthoc
from imbalance.analysis.frames import counted, records_frame, repeats_its_base
from imbalance.study.params import margin_for

POWER = 0.8
DESIGN = "internal pilot"
DESIGN_FILE = "repeats.json"      # outputs/<study>/repeats.json: written by `imbalance run --until-decided`
# The comparisons a study cares about (issue 24): each method against the reference and against the
# point's winner (the recommendation table), and the pair C4 reads (rus against ros).
CARED = ("reference", "winner", "rus vs ros")


@dataclass(frozen=True)
class Needed:
    """Repeats needed for one comparison (math.inf when it cannot be decided that way)."""
    equivalence: float
    difference: float

    @property
    def needed(self) -> float:
        return min(self.equivalence, self.difference)


def _solve(q_of_n, z: float, effect: float, sd: float, *, most: int = 100_000) -> float:
    """The smallest n >= 3 with n >= (q(n) sd / effect)^2, q(n) the summed t quantiles at n - 1 df;
    the search starts at the normal quantiles' n (`z` their sum), which is never above it."""
    if not effect > 0 or not sd >= 0 or math.isnan(sd):
        return math.inf
    n = max(3, int((z * sd / effect) ** 2))
    while n <= most:
        if n >= (q_of_n(n) * sd / effect) ** 2:
            return float(n)
        n += 1
    return math.inf


def repeats_needed(sd: float, *, margin: float, difference: float = 0.0, alpha: float = stats.ALPHA,
                   power: float = POWER, m: int = 1) -> Needed:
    """Paired repeats that would show equivalence within ±margin (if the true difference is 0) and
    that would show `difference` itself (if it is the true one), at level alpha / m with `power`."""
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    a, b = alpha / max(1, m), 1 - power

    def equivalence(n):
        return st.t.ppf(1 - a, n - 1) + st.t.ppf(1 - b / 2, n - 1)

    def shown(n):
        return st.t.ppf(1 - a / 2, n - 1) + st.t.ppf(1 - b, n - 1)
    z = st.norm.ppf
    return Needed(_solve(equivalence, z(1 - a) + z(1 - b / 2), margin, sd),
                  _solve(shown, z(1 - a / 2) + z(1 - b), abs(difference), sd))


def repeat_seconds(records, *, point_seconds=None, attempt_repeats=None) -> pd.Series:
    """Per point_id: the seconds one more repeat of the point costs.

    point_seconds (point id -> wall seconds of its finished attempt, as `store.point_seconds` reads them):
    the measured wall time divided by the repeats that attempt trained, the better figure, since networks
    train batched.  attempt_repeats (point id -> those repeats, the params file's): needed once
    `--until-decided` has grown a point, since the wall time stays its first attempt's; without it, the
    point's repeats now.  Without it, the records' train_seconds summed over the trained methods' networks of a
    repeat (a post-hoc method trains nothing, so its records, which carry its base's seconds, are left
    out); a second stage's record includes its phase 1, which the phase-1 method's own record counts
    too, so this is an upper bound."""
    frame = records_frame(records)
    repeats = frame.groupby("point_id")["repeat"].nunique()
    if point_seconds is not None:
        wall = pd.Series({p: s for p, s in point_seconds.items() if s is not None}, dtype=float)
        if attempt_repeats is not None:
            repeats = pd.Series(attempt_repeats, dtype=float).combine_first(repeats)
        return (wall / repeats.reindex(wall.index)).dropna()
    frame = frame[~frame["method"].map(is_posthoc)]
    seconds = pd.to_numeric(frame.get("train_seconds"), errors="coerce")
    per = frame.assign(s=seconds).groupby(["point_id", "repeat"])["s"].sum(min_count=1)
    return per.groupby(level=0).mean()


def attempt_repeats(grid) -> dict[str, int]:
    """Point id -> the repeats its params file gives it (`study.params.expand_grid`): what the wall time
    `store.point_seconds` reads trained, also after `--until-decided` has grown the point (the attempt_repeats
    of `repeat_seconds` and `plan_repeats`)."""
    return {p.point_id: p.repeats for p in grid}


def rerun_seconds(final_n: float, per_repeat: float) -> float:
    """What growing a point to `final_n` repeats costs: `runner.extend_repeats` re-runs its notebook with
    all of them (repeats 0..n0-1 again, checked equal to the stored networks), so final_n repeats' time,
    not only the added ones'; 0 for a point that does not grow."""
    return 0.0 if not final_n else final_n * per_repeat


def _comparisons(records, *, metric: str, reference: str, alpha: float, margin: float):
    """(against, paired rows) for each comparison family the study cares about (CARED)."""
    frame = records_frame(records)
    frame = frame[frame["level"].isna()] if frame["level"].notna().any() and frame["level"].isna().any() else frame
    out = []
    if reference in set(frame["method"]):
        out.append(("reference", stats.paired_differences(frame, metric=metric, reference=reference,
                                                          alpha=alpha, margin=margin)))
    winners = stats.point_winners(frame, metric=metric, alpha=alpha, margin=margin)
    for _, w in winners.iterrows():
        if not isinstance(w["winner"], str) or w["winner"] == reference:
            continue
        at = frame[frame["point_id"] == w["point_id"]]
        at = at[~repeats_its_base(at["method"], metric)]
        out.append(("winner", stats.paired_differences(at, metric=metric, reference=w["winner"], alpha=alpha,
                                                       margin=margin)))
    if {"ros", "rus"} <= set(frame["method"]):
        out.append(("rus vs ros", stats.paired_differences(frame, metric=metric, reference="ros",
                                                           methods=["ros", "rus"], alpha=alpha, margin=margin)))
    return out


PLAN_COLUMNS = ("point_id", "method", "against", "verdict", "n", "mean_difference", "sd", "margin",
                "n_equivalence", "n_difference", "needed", "add", "seconds")


def plan_repeats(records, *, metric: str = "roc_auc", reference: str = stats.REFERENCE, alpha: float = stats.ALPHA,
                 power: float = POWER, margin: float | None = None, point_seconds=None,
                 attempt_repeats=None) -> pd.DataFrame:
    """One row per undecided comparison the study cares about (CARED): n now, the mean paired
    difference and its sd, the repeats needed to show equivalence or the difference (`repeats_needed`,
    m = the comparisons Holm corrects over at the point), the repeats to add and their training
    seconds (`repeat_seconds`, from the points' wall times when `point_seconds` is given, over
    `attempt_repeats`)."""
    margin = margin_for(metric) if margin is None else float(margin)
    per_repeat = repeat_seconds(records, point_seconds=point_seconds, attempt_repeats=attempt_repeats)
    rows, seen = [], set()
    for against, paired in _comparisons(records, metric=metric, reference=reference, alpha=alpha, margin=margin):
        for point_id, at in paired.groupby("point_id", sort=False):
            m = int((~repeats_its_base(at["method"], metric)).sum())
            own = at[~repeats_its_base(at["method"], metric)]     # a '-thresh' method repeats its base on ROC AUC
            for _, r in own[own["verdict"] == stats.UNDECIDED].iterrows():
                key = (point_id, frozenset((r["method"], r["reference"])))
                if key in seen:
                    continue
                seen.add(key)
                need = repeats_needed(r["sd"], margin=margin, difference=r["mean_difference"], alpha=alpha,
                                      power=power, m=m)
                add = need.needed - r["n_pairs"] if math.isfinite(need.needed) else math.inf
                rows.append({"point_id": point_id, "method": r["method"], "against": r["reference"],
                             "verdict": r["verdict"], "n": int(r["n_pairs"]), "mean_difference": r["mean_difference"],
                             "sd": r["sd"], "margin": margin, "n_equivalence": need.equivalence,
                             "n_difference": need.difference, "needed": need.needed, "add": max(0.0, add),
                             "seconds": rerun_seconds(need.needed if add > 0 else 0,
                                                      float(per_repeat.get(point_id, math.nan)))})
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS))


def format_plan(plan: pd.DataFrame, *, study: str, max_rows: int = 60) -> str:
    """`imbalance plan-repeats`'s text: one line per open comparison, then the totals."""
    if plan.empty:
        return f"{study}: no undecided comparison among those the study cares about ({', '.join(CARED)})"
    lines = [f"{study}: {len(plan)} undecided comparisons (power {POWER:.0%}, margin ±{plan['margin'].iloc[0]:g}):"]
    def n_text(v):
        return "never (difference 0)" if not math.isfinite(v) else f"{int(v)}"
    for _, r in plan.head(max_rows).iterrows():
        lines.append(f"  {r['point_id']}: {r['method']} vs {r['against']}: n={r['n']}, difference "
                     f"{r['mean_difference']:+.4f}, sd {r['sd']:.4f}; repeats to show equivalence "
                     f"{n_text(r['n_equivalence'])}, to show the difference {n_text(r['n_difference'])}"
                     + (f"; add {int(r['add'])} (~{_duration(r['seconds'])} of training)"
                        if math.isfinite(r["add"]) and not math.isnan(r["seconds"]) else ""))
    if len(plan) > max_rows:
        lines.append(f"  ... and {len(plan) - max_rows} more")
    by_point = plan[np.isfinite(plan["add"])].groupby("point_id").agg(add=("add", "max"), seconds=("seconds", "max"))
    lines.append(f"to decide them all: {int(by_point['add'].sum())} more repeats over {counted(len(by_point), 'point')}, "
                 f"~{_duration(float(by_point['seconds'].sum()))} of training (from the records' train_seconds)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "unknown time"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 \
        else f"{seconds:.0f} s"


def blinded_sd(differences) -> float:
    """s_b = sqrt(sum d^2 / (n - 1)): the pilot's spread about 0, blind to the differences' sign."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    return float(np.sqrt(np.sum(d ** 2) / (len(d) - 1))) if len(d) > 1 else math.nan


def internal_pilot_targets(records, *, metric: str = "roc_auc", reference: str = stats.REFERENCE,
                           alpha: float = stats.ALPHA, power: float = POWER, margin: float | None = None,
                           max_repeats: int) -> dict[str, int]:
    """Per point_id: its final n by the internal pilot (module docstring): the equivalence n of the
    largest blinded pilot sd s_b among the reference comparisons, at least the pilot's n and at most
    `max_repeats`."""
    if max_repeats < stats.RULES.min_n:
        raise ValueError(f"max_repeats must be >= {stats.RULES.min_n}, got {max_repeats}")
    margin = margin_for(metric) if margin is None else float(margin)
    paired = stats.paired_differences(records, metric=metric, reference=reference, alpha=alpha, margin=margin)
    frame = records_frame(records)
    pilot = frame.groupby("point_id")["repeat"].nunique()
    targets = {}
    for point_id, at in paired.groupby("point_id", sort=False):
        own = at[~repeats_its_base(at["method"], metric)]
        n = own["n_pairs"].clip(lower=2)
        sd = float(np.sqrt(own["sd"] ** 2 + n / (n - 1) * own["mean_difference"] ** 2).max())   # blinded s_b
        need = repeats_needed(sd, margin=margin, alpha=alpha, power=power, m=max(1, len(own))).equivalence
        n0 = int(pilot.get(point_id, 0))
        targets[point_id] = int(min(max_repeats, max(n0, need if math.isfinite(need) else max_repeats)))
    return targets


def decide_after_pilot(pilot: np.ndarray, draw, *, margin: float, alpha: float = stats.ALPHA, power: float = POWER,
                       max_repeats: int) -> tuple[str | None, int]:
    """One comparison through the internal pilot design: `pilot` paired differences, the final n from
    their blinded sd s_b only, `draw(k)` the k further differences, and the verdict of the real decision code
    (stats.compare_paired, stats.tost, stats.verdict) at the final n.  Returns (verdict, n)."""
    sd = blinded_sd(pilot)
    need = repeats_needed(sd, margin=margin, alpha=alpha, power=power).equivalence
    n = int(min(max_repeats, max(len(pilot), need if math.isfinite(need) else max_repeats)))
    d = np.concatenate([pilot, draw(n - len(pilot))]) if n > len(pilot) else pilot
    c = stats.compare_paired(d, np.zeros_like(d))
    e = stats.tost(c.mean_difference, c.se, c.df, margin=margin, alpha=alpha)
    return stats.verdict(c.mean_difference, c.ci_low, c.ci_high, c.p_value, e.p_value, alpha=alpha), n


def write_design(study_dir: str | os.PathLike, *, targets: dict[str, int], pilot: dict[str, int], max_repeats: int,
                 metric: str, margin: float, alpha: float = stats.ALPHA, power: float = POWER) -> Path:
    """outputs/<study>/repeats.json: the design, its settings and each point's pilot and final n."""
    path = Path(study_dir) / DESIGN_FILE
    path.write_text(json.dumps({"design": DESIGN, "metric": metric, "margin": margin, "alpha": alpha, "power": power,
                                "max_repeats": max_repeats,
                                "points": {p: {"pilot": pilot.get(p), "final": n} for p, n in sorted(targets.items())}},
                               indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_design(study_dir: str | os.PathLike) -> dict | None:
    """outputs/<study>/repeats.json as written by `write_design` (None if absent), checked: a file that is not
    that design raises ValueError naming it."""
    path = Path(study_dir) / DESIGN_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not the JSON `imbalance run --until-decided` writes ({exc})") from None
    points = d.get("points") if isinstance(d, dict) else None
    if (not isinstance(points, dict) or d.get("design") != DESIGN or not isinstance(d.get("max_repeats"), int)
            or not all(isinstance(v, dict) and isinstance(v.get("final"), int) and isinstance(v.get("pilot"), int)
                       for v in points.values())):
        raise ValueError(f"{path}: expected the internal pilot design (design {DESIGN!r}, an integer max_repeats, "
                         "and points with an integer pilot and final n each)")
    return d


def grown_points(design: dict) -> dict:
    """Point id -> {pilot, final} for the points a design (`read_design`, validated) sets to grow."""
    return {p: v for p, v in design["points"].items() if v["final"] > v["pilot"]}


def design_text(study_dir: str | os.PathLike) -> str | None:
    """The report's sentence naming the stopping design, from outputs/<study>/repeats.json (None if absent)."""
    d = read_design(study_dir)
    if d is None:
        return None
    points = d["points"]
    grown = grown_points(d)
    return (f"Repeats were added by `imbalance run --until-decided` with an internal pilot design (blinded "
            f"sample-size re-estimation from the pilot's variance only, Wittes & Brittain 1990, Kieser & Friede 2003): "
            f"each point's final n is the number that shows equivalence within ±{d['margin']:g} of {d['metric']} with "
            f"power {d['power']:.0%} at α = {d['alpha']:g}, from the largest blinded pilot standard deviation "
            f"(sqrt(Σd²/(n−1)), about 0) of its paired differences, capped at "
            f"{d['max_repeats']}; it never depends on the differences or verdicts, and each comparison is tested once, "
            f"at the final n. {len(grown)} of {len(points)} points grew: "
            + (", ".join(f"{p} {v['pilot']} → {v['final']}" for p, v in grown.items()) or "none") + ".")
