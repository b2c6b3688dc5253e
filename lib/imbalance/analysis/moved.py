"""What moved, and what is still open (issue 28), from the committed databases only (torch-free).

Three blocks of the README's findings (`findings.findings_markdown` places them):
- `moved_markdown`: the first MNIST study (revision-1 definitions of cb-focal, ldam-drw and crt)
  beside its re-run with the faithful methods: C1-C7 verdicts, failed networks, winners per point,
  so a reader of the old README sees what changed;
- `length_markdown`: the paper's 10,000 iterations beside the 2,000-iteration cut at the same points,
  seeds, subsets and initial weights, so networks pair by (point, method, repeat) across the two;
- `unsettled_markdown`: the comparisons still undecided, the repeats and hours that would decide
  them (`planning`), the studies still running and what only a GPU or ImageNet could answer.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from imbalance.analysis import answers, planning, stats
from imbalance.analysis.frames import counted, format_value, methods_present
from imbalance.study.params import margin_for

METRIC = "roc_auc"
PILOT_CAP = 10          # the --max-repeats the unsettled block prices `--until-decided` at


def _where(rho, mu) -> str:
    return f"ρ {format_value(float(rho))}, μ {format_value(float(mu))}"


def _plain(records: pd.DataFrame) -> pd.DataFrame:
    return records[records["level"].isna()] if not records.empty else records


def winners(records: pd.DataFrame) -> pd.DataFrame:
    """ROC AUC winners among the trained methods, one row per non-graded point."""
    plain = _plain(records)
    if plain.empty:
        return pd.DataFrame(columns=list(stats.WINNER_COLUMNS))
    return stats.point_winners(plain, metric=METRIC, methods=answers.trained_methods(methods_present(plain)))


def identical_methods(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    """The methods whose every (point, repeat) in both studies has the same ROC AUC, exactly."""
    keys = ["point_id", "method", "repeat"]
    both = before[keys + [METRIC]].merge(after[keys + [METRIC]], on=keys, suffixes=("_before", "_after"))
    same = both.groupby("method", sort=False).apply(
        lambda g: bool((g[f"{METRIC}_before"] == g[f"{METRIC}_after"]).all()), include_groups=False)
    return [m for m in methods_present(after) if bool(same.get(m, False))]


def failed_networks(records: pd.DataFrame) -> pd.Series:
    """Per trained method: networks that failed (diverged, exploded or constant outputs), over the study."""
    plain = records[~records["method"].map(answers.is_posthoc)]
    return plain.groupby("method", sort=False)["diverged"].apply(lambda d: int(pd.to_numeric(d).fillna(0).sum()))


def tally(records: pd.DataFrame, *, metric: str, methods, reference: str) -> pd.DataFrame:
    """`stats.grid_tally` of `methods` against `reference` over the grid, with the median over points of
    the mean paired difference (empty without the reference or the methods)."""
    present = [m for m in methods if m in set(records["method"])] if not records.empty else []
    if records.empty or reference not in set(records["method"]) or not present:
        return pd.DataFrame()
    paired = stats.paired_differences(records, metric=metric, reference=reference, methods=[reference, *present])
    counted = stats.grid_tally(paired)
    counted["median_difference"] = counted["method"].map(paired.groupby("method")["mean_difference"].median())
    return counted


def _counts(row) -> str:
    return (f"{row.better} better, {row.equivalent} equivalent, {row.undecided} undecided, {row.worse} worse, "
            f"{row.no_verdict} untested")


def moved_markdown(before, after, *, checks_before, checks_after, methods, reference, what: str) -> list[str]:
    """The first MNIST study (`before`, a findings.Loaded) beside its re-run (`after`): verdicts, failures,
    `methods` against `reference`, winners.  checks_*: `conclusions.check_all` with the same other studies."""
    same = identical_methods(before.records, after.records)
    lines = [f"**What moved since the first {what} study** (`{before.study}`, which ran revision 1 of cb-focal and "
             f"ldam-drw and of crt, beside `{after.study}`, which re-runs its grid with the faithful definitions "
             f"and adds crt-ib; the networks of {', '.join(f'`{m}`' for m in same) or 'no method'} score the same "
             "in both, to the last digit, at every point and repeat the two share, so what moved comes from the methods "
             "redefined; a count of a method that did not change can still move, since Holm's correction runs "
             "over the methods compared at a point, and those that failed before were left out of it):", "",
             f"| | verdict with `{before.study}` | verdict with `{after.study}` | |", "|---|---|---|---|"]
    old = {c.id: c for c in checks_before}
    for c in checks_after:
        o = old.get(c.id)
        lines.append(f"| {c.id} {c.title} | {o.summary if o else '—'} | **{c.summary}** | "
                     f"{'verdict moved' if o is None or o.verdict != c.verdict else 'counts moved' if o.summary != c.summary else 'same'} |")
    f_old, f_new = failed_networks(before.records), failed_networks(after.records)
    lost = [m for m in f_old.index if f_old[m]]
    lines += ["", "- Failed networks, of all the method's networks in the grid: " + (
        "; ".join(f"`{m}` {f_old[m]} before, {int(f_new.get(m, 0))} now" for m in lost) if lost else "none before")
        + "; " + (f"now {int(f_new.sum())} in all." if f_new.sum() else "none now, in any method.")]
    t_old, t_new = (tally(s.records, metric=METRIC, methods=methods, reference=reference).set_index("method")
                    for s in (before, after))
    lines.append(f"- ROC AUC against `{reference}`, counted over the grid's points (before → now): " + "; ".join(
        f"`{m}` {_counts(t_old.loc[m]) if m in t_old.index else 'not run'} → {_counts(t_new.loc[m])}"
        for m in methods if m in t_new.index) + ".")
    w_old, w_new = winners(before.records), winners(after.records)
    changed, already = [], 0
    for r in w_new.itertuples():
        o = w_old[(w_old["point_id"] == r.point_id)]
        was = o.iloc[0]["winner"] if len(o) else None
        if was != r.winner:
            changed.append(f"{_where(r.rho, r.mu)}: `{was}` → `{r.winner}`")
            already += bool(len(o)) and r.winner in o.iloc[0]["equivalent"]
    lines.append(f"- The winner (highest mean ROC AUC among the trained methods) changed at {len(changed)} of "
                 f"{counted(len(w_new), 'point')}" + (": " + "; ".join(changed) + f". At {already} of these the new winner "
                                           "was already shown equivalent to the old one" if changed else "")
                 + ". A winner is a point estimate: the table below says which methods are shown equivalent to it.")
    return lines


def length_table(short: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """Per (point, trained method) at the points both studies finished: mean ROC AUC at each length and the
    paired difference long - short over repeats (`stats.compare_paired`: the same subset, seed and initial
    weights at both lengths), Holm-corrected per point over the methods, with its verdict (TOST at the margin),
    by the rule of every other comparison (`stats.decide_point`)."""
    keys = ["point_id", "rho", "mu", "method", "repeat"]
    a = _plain(short)[keys + [METRIC]]
    b = _plain(long)[keys + [METRIC]]
    both = a.merge(b, on=keys, suffixes=("_short", "_long"))
    both = both[~both["method"].map(answers.is_posthoc)]
    rows = []
    for point, point_frame in both.groupby("point_id", sort=False):
        point_rows = []
        for (rho, mu, method), g in point_frame.groupby(["rho", "mu", "method"], sort=False):
            c = stats.compare_paired(g[f"{METRIC}_long"], g[f"{METRIC}_short"])
            e = stats.tost(c.mean_difference, c.se, c.df, margin=margin_for(METRIC))
            point_rows.append(dict(point_id=point, rho=rho, mu=mu, method=method, n=c.n_pairs,
                                   short=g[f"{METRIC}_short"].mean(), long=g[f"{METRIC}_long"].mean(),
                                   mean_difference=c.mean_difference, ci_low=c.ci_low, ci_high=c.ci_high,
                                   p_value=c.p_value, p_equivalent=e.p_value, note=None))
        stats.decide_point(point_rows, METRIC)
        rows += point_rows
    return pd.DataFrame(rows, columns=["point_id", "rho", "mu", "method", "n", "short", "long", "mean_difference",
                                       "ci_low", "ci_high", "p_value", "p_holm", "p_equivalent",
                                       "p_equivalent_holm", "verdict"])


def _verdicts_against_baseline(records: pd.DataFrame, points) -> dict:
    plain = _plain(records)
    plain = plain[plain["point_id"].isin(points)]
    if plain.empty or "baseline" not in set(plain["method"]):
        return {}
    paired = stats.paired_differences(plain, metric=METRIC, reference="baseline",
                                      methods=answers.trained_methods(methods_present(plain)))
    return {(r.point_id, r.method): r.verdict for r in paired.itertuples()}


def length_markdown(short, long) -> list[str]:
    """The 2,000-iteration verdicts beside the paper's 10,000 at the points `long` (findings.Loaded) finished."""
    head = (f"**Does the 2,000-iteration cut change the answer?** (`{long.study}`: {len(long.done)} of {len(long.grid)} "
            f"points at the paper's 10,000 iterations, beside `{short.study}` at 2,000: the same subsets, seeds and "
            "initial weights, so each network pairs with itself trained 5 times longer)")
    if long.records.empty:
        return [head + ":", "", "not run yet: its state and the time still needed are in `outputs/README.md`."]
    table = length_table(short.records, long.records)
    points = list(dict.fromkeys(table.sort_values(["rho", "mu"], kind="stable")["point_id"]))   # grid order
    w_short = winners(short.records).set_index("point_id")
    w_long = winners(long.records).set_index("point_id")
    v_short, v_long = _verdicts_against_baseline(short.records, points), _verdicts_against_baseline(long.records, points)
    flips = [(k, v_short.get(k), v) for k, v in v_long.items() if v_short.get(k) != v]
    lines = [head + "; ROC AUC; a difference is 10,000 minus 2,000 iterations, the mean over repeats with its 95% "
             "Student-t confidence interval, Holm-corrected per point over the methods):", ""]
    for point in points:
        at = table[table["point_id"] == point].sort_values("long", ascending=False)
        r0 = at.iloc[0]
        ws, wl = w_short.loc[point], w_long.loc[point]
        gained = at[at["verdict"] == stats.BETTER]
        lost = at[at["verdict"] == stats.WORSE]
        lines.append(f"- {_where(r0.rho, r0.mu)}: winner `{ws['winner']}` ({ws['mean']:.4f}) at 2,000 and `{wl['winner']}` "
                     f"({wl['mean']:.4f}) at 10,000"
                     + (" (the same)" if ws["winner"] == wl["winner"] else
                        f" (at 10,000, `{ws['winner']}` is " + ("equivalent to it" if ws["winner"] in wl["equivalent"]
                                                                else "undecided against it" if ws["winner"] in
                                                                wl["undecided"] else "shown worse than it"
                                                                if ws["winner"] in wl["worse"] else "untested against it")
                        + ")")
                     + "; longer training raises " + (", ".join(f"`{r.method}` {r.mean_difference:+.4f} [{r.ci_low:+.4f}, "
                                                               f"{r.ci_high:+.4f}]" for r in gained.itertuples())
                                                     if len(gained) else "no method beyond doubt")
                     + ("; lowers " + ", ".join(f"`{r.method}` {r.mean_difference:+.4f}" for r in lost.itertuples())
                        if len(lost) else "")
                     + f"; the change is shown within ±{margin_for(METRIC):g} for "
                       f"{int((at['verdict'] == stats.EQUIVALENT).sum())} of {len(at)} methods.")
    groups: dict = {}
    for (p, m), a, b in flips:
        groups.setdefault((p, a or "untested", b or "untested"), []).append(m)
    lines += ["", f"- Verdicts against `baseline` (as the point-by-point lines) that differ between the two lengths: "
              f"{len(flips)} of {len(v_long)}" + (": " + "; ".join(
                  f"at {_where(*_rho_mu(table, p))}, {a} at 2,000 → {b} at 10,000: " + ", ".join(f"`{m}`" for m in ms)
                  for (p, a, b), ms in groups.items()) if flips else "") + "."]
    gain = table.groupby("method")["mean_difference"].mean().sort_values(ascending=False)
    lines.append("- Mean gain from the longer training, over these points: " + ", ".join(
        f"`{m}` {d:+.4f}" for m, d in gain.items()) + ".")
    bias = cut_bias(short.records, long.records)
    if bias is not None:
        lines.append(f"- Does the cut favour oversampling, which shows each minority example more often per step? "
                     f"`baseline`'s gain minus `ros`'s, paired by point and repeat: {bias.mean_difference:+.4f} "
                     + (f"[{bias.ci_low:+.4f}, {bias.ci_high:+.4f}] (95% confidence interval, {bias.interval_method}; "
                        f"{bias.test} p = {bias.p_value:.3g}, n = {bias.n_pairs})" if bias.n_pairs >= 3 else
                        f"(n = {bias.n_pairs}: too few pairs for an interval)")
                     + ": " + ("yes, the plain network gains more from the full length" if bias.n_pairs >= 3 and
                               bias.ci_low > 0 and bias.p_value < stats.ALPHA else
                               "no, ros gains more from the full length" if bias.n_pairs >= 3 and bias.ci_high < 0
                               and bias.p_value < stats.ALPHA else "not shown either way")
                     + (f", by less than the ±{margin_for(METRIC):g} margin (the whole interval is inside it)"
                        if bias.n_pairs >= 3 and -margin_for(METRIC) < bias.ci_low and bias.ci_high < margin_for(METRIC)
                        else "") + ".")
    return lines


def cut_bias(short: pd.DataFrame, long: pd.DataFrame, *, plain: str = "baseline", resampled: str = "ros"):
    """`stats.compare_paired` of the lengthening gains, plain minus resampled, paired by (point, repeat)
    (a difference in differences: each network against itself at the two lengths); None without both."""
    keys = ["point_id", "method", "repeat"]
    both = _plain(long)[keys + [METRIC]].merge(_plain(short)[keys + [METRIC]], on=keys, suffixes=("_long", "_short"))
    both["gain"] = both[f"{METRIC}_long"] - both[f"{METRIC}_short"]
    wide = both.pivot_table(index=["point_id", "repeat"], columns="method", values="gain")
    if not {plain, resampled} <= set(wide.columns):
        return None
    wide = wide[[plain, resampled]].dropna()
    return stats.compare_paired(wide[plain].to_numpy(), wide[resampled].to_numpy())


def _rho_mu(table: pd.DataFrame, point: str) -> tuple:
    row = table[table["point_id"] == point].iloc[0]
    return row["rho"], row["mu"]


def unsettled_markdown(primary, running, *, gpu_only: list[str], recommended: str = "ros",
                       design: dict | None = None) -> list[str]:
    """What this does not settle: the undecided comparisons of `primary` (findings.Loaded) with what
    deciding them costs, the repeats `--until-decided` added (`design`: its recorded design,
    `planning.read_design`) or would add, the `running` studies' state, and `gpu_only` (lines)."""
    lines = ["**What this does not settle.**", ""]
    attempt = planning.attempt_repeats(primary.grid)
    plan = planning.plan_repeats(primary.records, point_seconds=primary.done or None, attempt_repeats=attempt)
    if plan.empty:
        lines.append(f"- `{primary.study}`: no undecided comparison among those the recommendation and the "
                     "conclusions use.")
    else:
        finite = plan[np.isfinite(plan["needed"])]
        by_point = finite.groupby("point_id").agg(add=("add", "max"), seconds=("seconds", "max"))
        per_against = plan.groupby("against").size().sort_values(ascending=False)
        lines.append(
            f"- `{primary.study}`: {len(plan)} comparisons the recommendation and the conclusions use are still "
            f"undecided at {int(plan['n'].median())} repeats (against: "
            + ", ".join(f"`{a}` {k}" for a, k in per_against.items()) + "). At 80% power, deciding each needs "
            f"a median of {int(finite['needed'].median())} repeats (from {int(finite['needed'].min())} to "
            f"{int(finite['needed'].max())}"
            + (f"; {len(plan) - len(finite)} can never be decided by more repeats alone" if len(plan) > len(finite)
               else "") + f"): {int(by_point['add'].sum())} more repeats over {counted(len(by_point), 'point')}, about "
            f"{hours_text(by_point['seconds'].sum())} on the 2-core CPU, each point re-trained at its largest n at its "
            "measured wall time per repeat.")
        best = dict(zip(*winners(primary.records)[["point_id", "winner"]].to_numpy().T)) if len(plan) else {}
        pair = [frozenset((m, a)) == frozenset((recommended, best.get(p))) for p, m, a in
                zip(finite["point_id"], finite["method"], finite["against"])]
        open_ = finite[pair]
        if len(open_):
            worst = open_.groupby("point_id").agg(add=("add", "max"), seconds=("seconds", "max"))
            lines.append(f"- The recommendation's own open question, `{recommended}` against the point's winner, is "
                         f"undecided at {counted(len(worst), 'point')}; deciding it there needs "
                         f"{counted(int(worst['add'].sum()), 'more repeat', 'more repeats')}, about {hours_text(worst['seconds'].sum())} here (at most "
                         f"{int(open_['needed'].max())} repeats at a point).")
    if design is None and not plan.empty:
        targets = planning.internal_pilot_targets(primary.records, max_repeats=PILOT_CAP)
        pilot = primary.records.groupby("point_id")["repeat"].nunique()
        per_repeat = planning.repeat_seconds(primary.records, point_seconds=primary.done or None,
                                             attempt_repeats=attempt)
        add = {p: n - int(pilot.get(p, 0)) for p, n in targets.items() if n > pilot.get(p, 0)}
        seconds = sum(planning.rerun_seconds(targets[p], float(per_repeat.get(p, math.nan))) for p in add)
        lines.append(f"- The stopping design (`imbalance run params/real/{primary.study}.yaml --until-decided "
                     f"--max-repeats {PILOT_CAP}`, an internal pilot) would add {sum(add.values())} repeats over "
                     f"{counted(len(add), 'point')}, about {hours_text(seconds)} here (a point re-trains its stored repeats with the new "
                     "ones, to check they are the same networks); it fixes each point's final n from the "
                     "pilot's blinded spread, so it does not promise to decide every comparison.")
    elif design is not None:
        lines.append(added_markdown(primary, design, attempt=attempt))
    for s in running:
        left = len(s.grid) - len(s.done)
        if left:
            lines.append(f"- `{s.study}` ({s.spec.what}): {len(s.done)} of {len(s.grid)} points done; what it would "
                         "answer stays open until it completes (`outputs/README.md` gives the time still needed).")
    lines += [f"- {line}" for line in gpu_only]
    return lines


def added_markdown(primary, design: dict, *, attempt: dict) -> str:
    """One line: the repeats `--until-decided` set per point (`design`), how many are added so far and
    where, and what is still to run with its time at the points' measured wall time per repeat."""
    have = primary.records.groupby("point_id")["repeat"].nunique()
    table = primary.records.drop_duplicates("point_id")[["point_id", "rho", "mu"]]
    grow = planning.grown_points(design)
    done = {p: int(have.get(p, 0)) - v["pilot"] for p, v in grow.items() if have.get(p, 0) > v["pilot"]}
    left = {p: v["final"] - int(have.get(p, 0)) for p, v in grow.items() if v["final"] > have.get(p, 0)}
    per_repeat = planning.repeat_seconds(primary.records, point_seconds=primary.done or None, attempt_repeats=attempt)
    seconds = sum(planning.rerun_seconds(design["points"][p]["final"], float(per_repeat.get(p, math.nan)))
                  for p in left)
    where = lambda points: ", ".join(f"{_where(*_rho_mu(table, p))} ({design['points'][p]['pilot']} → "  # noqa: E731
                                     f"{int(have.get(p, 0))} of {design['points'][p]['final']})" for p in points)
    return (f"- Repeats added (`imbalance run params/real/{primary.study}.yaml --until-decided --max-repeats "
            f"{design['max_repeats']}`, an internal pilot: each point's final n fixed once from the pilot's blinded "
            f"spread, so it does not promise to decide every comparison): {len(grow)} of {len(design['points'])} "
            f"points were set to grow, by {sum(v['final'] - v['pilot'] for v in grow.values())} repeats. "
            + (f"Added so far: {counted(sum(done.values()), 'repeat')} at {counted(len(done), 'point')} ({where(done)}). " if done else
               "None added yet. ")
            + (f"Still to run: {counted(sum(left.values()), 'repeat')} at {counted(len(left), 'point')}, about {hours_text(seconds)} here "
               "(a point re-trains its stored repeats with the new ones, to check they are the same networks); the "
               "verdicts above read the repeats committed so far." if left else "Every point has its final n."))


def hours_text(seconds: float) -> str:
    """Seconds as readers read a run's length: hours to a tenth from an hour, else whole minutes."""
    return "unknown time" if not math.isfinite(seconds) else f"{seconds / 3600:.1f} h" if seconds >= 3600 else \
        f"{seconds / 60:.0f} min"
