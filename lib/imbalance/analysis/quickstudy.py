"""The README's "What the quick study answers" and `make study`'s last line, from whatever database is there.

A retrain of the quick study gives the same records on the same machine and thread count, and numbers
that move in the third decimal on another CPU (README, "How reproducible a retrain is"). So its claims are
never typed in: `make study` ends with `python -m imbalance.analysis.quickstudy --write`, which rewrites the
README between its markers from `outputs/quick/results.sqlite` and prints the one-sentence answer at the
hardest point and the report's path; `tests/test_readme_claims.py` pins the README to the database present.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from imbalance.analysis import answers, conclusions, stats
from imbalance.analysis.frames import load_study, methods_present

ROOT = Path(__file__).resolve().parents[3]
STUDY = "quick"
BEGIN = "<!-- quick:begin (generated from outputs/quick/results.sqlite by `make study`: python -m imbalance.analysis.quickstudy --write) -->"
END = "<!-- quick:end -->"
REFERENCE = "baseline"


def hardest_point(records: pd.DataFrame) -> str:
    """The grid point where the reference method's mean ROC AUC is lowest (the report's confusion-matrix point)."""
    of = records[records["method"] == REFERENCE]
    if of.empty:
        raise ValueError(f"records: no {REFERENCE!r} networks, so no hardest point")
    return str(of.groupby("point_id")["roc_auc"].mean().idxmin())


def quoted(row) -> str:
    """A paired difference as the README writes it: mean [95% interval] (Holm p = ...)."""
    return f"{row.mean_difference:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}] (Holm p = {row.p_holm:.2g})"


def _where(records: pd.DataFrame, point_id: str) -> str:
    first = records[records["point_id"] == point_id].iloc[0]
    return f"ρ = {first['rho']:g}, μ = {first['mu']:g}" if pd.notna(first["mu"]) else f"ρ = {first['rho']:g}"


def _names(rows) -> str:
    names = [f"`{r.method}` {quoted(r)}" for r in rows]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _roc_auc(records: pd.DataFrame) -> pd.DataFrame:
    """Paired ROC AUC differences of the trained methods to the reference: post-hoc methods re-score a network
    and train nothing, so they are not compared as methods (`_rescoring` says what they add)."""
    return stats.paired_differences(records, metric="roc_auc", reference=REFERENCE,
                                    methods=answers.trained_methods(methods_present(records)))


def answer(records: pd.DataFrame, *, point_id: str | None = None) -> str:
    """One sentence a reader can act on: at the hardest point, which methods are shown better or worse than
    the baseline on ROC AUC (paired, Holm-corrected), and how many are not shown different."""
    point_id = point_id or hardest_point(records)
    paired = _roc_auc(records)
    here = paired[paired["point_id"] == point_id]
    mean = records[(records["point_id"] == point_id) & (records["method"] == REFERENCE)]["roc_auc"].mean()
    better = [r for r in here.itertuples() if r.verdict == "better"]
    worse = [r for r in here.itertuples() if r.verdict == "worse"]
    equivalent = [r for r in here.itertuples() if r.verdict == "equivalent"]
    untested = int(here["verdict"].isna().sum())
    undecided = len(here) - len(better) - len(worse) - len(equivalent) - untested
    n = int(here["n_pairs"].max()) if len(here) else 0
    parts = [f"shown better than `{REFERENCE}` on ROC AUC: " + _names(better) if better
             else f"no method is shown better than `{REFERENCE}` on ROC AUC"]
    parts.append("shown worse: " + _names(worse) if worse else "none is shown worse")
    if equivalent:
        parts.append("shown equivalent within the margin: " + ", ".join(f"`{r.method}`" for r in equivalent))
    parts.append(f"the other {undecided} are undecided with {n} repeats"
                 + (f" ({untested} untested: a diverged network left too few pairs)" if untested else ""))
    return (f"At the hardest point ({_where(records, point_id)}, where `{REFERENCE}`'s mean ROC AUC is lowest, "
            f"{mean:.3f}), " + "; ".join(parts) + ".")


_VERBS = {"better": "raises {what} by {q}", "worse": "lowers {what}: {q}",
          "equivalent": "is shown not to change {what} beyond the margin ({q})",
          "undecided": "is not shown to change {what}, nor shown equivalent ({q})"}


def _comparison(paired: pd.DataFrame, point_id: str, method: str, what: str) -> str | None:
    row = paired[(paired["point_id"] == point_id) & (paired["method"] == method)]
    if row.empty:
        return None
    r = next(row.itertuples())
    if r.verdict is None or pd.isna(r.verdict):
        return f"cannot be tested ({r.note or 'too few pairs'})"
    return _VERBS[r.verdict].format(what=what, q=quoted(r))


def _thresholding(records: pd.DataFrame, point_id: str) -> str | None:
    accuracy = stats.paired_differences(records, metric="accuracy", reference=REFERENCE)
    on_thresh = (stats.paired_differences(records, metric="accuracy", reference="baseline-thresh")
                 if "baseline-thresh" in set(records["method"]) else accuracy.iloc[0:0])
    alone = _comparison(accuracy, point_id, "baseline-thresh", "the baseline's accuracy")
    added = _comparison(on_thresh, point_id, "ros-thresh", "accuracy")
    if alone is None:
        return None
    return (f"There, thresholding (`baseline-thresh` minus `baseline`) {alone}"
            + (f"; oversampling on top of thresholding (`ros-thresh` minus `baseline-thresh`) {added}" if added else "")
            + ".")


def _undersampling(records: pd.DataFrame) -> str | None:
    """rus against the baseline's accuracy where the imbalance is steepest and fewest classes are minority."""
    if "rus" not in set(records["method"]) or records["mu"].isna().all():
        return None
    points = records.drop_duplicates("point_id")
    point = points.sort_values(["rho", "mu"], ascending=[False, True]).iloc[0]["point_id"]
    text = _comparison(stats.paired_differences(records, metric="accuracy", reference=REFERENCE), point, "rus",
                       "accuracy")
    return text and f"Undersampling where few classes are minority, at {_where(records, point)}: `rus` minus `baseline` {text}."


def _elsewhere(records: pd.DataFrame, hardest: str) -> str:
    paired = _roc_auc(records)
    other = paired[paired["point_id"] != hardest]
    points = other["point_id"].nunique()
    counts = other["verdict"].value_counts()
    n_methods = paired.groupby("point_id")["method"].nunique().max()
    return (f"At the other {points} points, {int(counts.get('undecided', 0))} of {len(other)} ROC AUC comparisons with "
            f"`baseline` are undecided ({int(counts.get('better', 0))} better, {int(counts.get('worse', 0))} worse, "
            f"{int(counts.get('equivalent', 0))} equivalent). With {int(paired['n_pairs'].max())} repeats and "
            f"{n_methods} methods compared per point Holm's correction is strict, so undecided means \"not shown either "
            "way\" (`imbalance plan-repeats params/quick.yaml` says how many repeats each would need).")


def _rescoring(records: pd.DataFrame, point_id: str) -> str | None:
    """What post-hoc logit adjustment adds to the baseline's own networks at the hardest point, on ROC AUC."""
    rows = answers.rescoring(records, metric="roc_auc")
    text = _comparison(rows, point_id, "baseline-la", "ROC AUC")
    return text and ("Re-scoring is not training: post-hoc logit adjustment (`baseline-la` minus the same networks' "
                     f"`baseline` scores) {text} there, with no training; it is never ranked beside trained "
                     "methods. Thresholding cannot change one-vs-rest ROC AUC (one positive factor per class keeps "
                     "each class's order); `-la` renormalises each image's scores, which can.")


def _plain_words(records: pd.DataFrame) -> str:
    """One sentence per grid point (ROC AUC, trained methods against the baseline)."""
    sentences = answers.point_sentences(records, reference=REFERENCE, metric="roc_auc")
    order = records.drop_duplicates("point_id").sort_values(["rho", "mu"])["point_id"]
    sentences = sentences.set_index("point_id").loc[[p for p in order if p in set(sentences["point_id"])]]
    return "Point by point, on ROC AUC (mean paired difference to `baseline` [95% interval]):\n" + "\n".join(
        f"  - {t}" for t in sentences["sentence"])


def _diverged(records: pd.DataFrame) -> str:
    gone = records[(records["diverged"].fillna(0) > 0) & ~records["method"].str.endswith(("-thresh", "-la",
                                                                                         "-tau-norm"))]
    if gone.empty:
        return "No network diverged."
    items = [f"`{r.method}` at {_where(records, r.point_id)} (repeat {int(r.repeat)}"
             + (f", iteration {int(r.diverged_at)}" if pd.notna(r.diverged_at) else "") + ")"
             for r in gone.sort_values(["point_id", "method", "repeat"]).itertuples()]
    return (f"{len(items)} network{'s' * (len(items) != 1)} diverged: " + "; ".join(items)
            + ". Their comparisons drop those pairs and say so.")


def _verdicts(records: pd.DataFrame, curves: pd.DataFrame) -> str:
    by: dict[str, list[str]] = {}
    for c in conclusions.check_all(records, curves):
        by.setdefault(c.verdict, []).append(c.id)
    joined = [f"{verdict} for {ids[0] if len(ids) == 1 else ', '.join(ids[:-1]) + ' and ' + ids[-1]}"
              for verdict, ids in by.items()]
    return ("The paper's conclusions as checks, `imbalance conclusions params/quick.yaml`: "
            + ", ".join(joined) + ".\n  Those that compare datasets, imbalance types or levels need the real-data "
            "studies (`params/real/`): see \"What the study finds\" below.")


def section(records: pd.DataFrame, curves: pd.DataFrame) -> str:
    """The bullets between the README's quick markers."""
    hardest = hardest_point(records)
    bullets = [answer(records, point_id=hardest), _thresholding(records, hardest), _rescoring(records, hardest),
               _undersampling(records), _elsewhere(records, hardest), _plain_words(records), _diverged(records),
               _verdicts(records, curves)]
    return "\n".join(f"- {b}" for b in bullets if b)


def readme_text(readme: str, generated: str) -> str:
    """The README with the text between the quick markers replaced."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md: the markers {BEGIN!r} and {END!r} are missing")
    head, rest = readme.split(BEGIN, 1)
    return head + BEGIN + "\n" + generated + "\n" + END + rest.split(END, 1)[1]


def _shown(path: Path) -> str:
    """A path as a reader in the current folder would type it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imbalance.analysis.quickstudy", description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's quick-study section")
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md's section differs")
    parser.add_argument("--outputs", type=Path, default=ROOT / "outputs")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    records, curves = load_study(STUDY, args.outputs)
    if records.empty:
        print(f"imbalance: error: {args.outputs / STUDY / 'results.sqlite'} holds no records: run "
              "`.venv/bin/imbalance run params/quick.yaml` first", file=sys.stderr)
        return 2
    old = args.readme.read_text()
    new = readme_text(old, section(records, curves))
    if args.check and new != old:
        print(f"{args.readme}: 'What the quick study answers' differs from {args.outputs / STUDY}; "
              "run python -m imbalance.analysis.quickstudy --write", file=sys.stderr)
        return 1
    if args.write and new != old:
        args.readme.write_text(new)
        print(f"{_shown(args.readme)}: 'What the quick study answers' rewritten from "
              f"{_shown(args.outputs / STUDY / 'results.sqlite')}")
    print(answer(records))
    print(f"report: {_shown(args.outputs / STUDY / 'report.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
