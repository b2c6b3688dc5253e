"""The paper's conclusions as checks that any study's records can be run against (issue 10).

Each check C1..C7 is a function of records (DataFrame from `frames.load_study`, or record dicts)
returning a `Conclusion`: a verdict (`supported`, `contradicted`, `mixed`, `not enough data`),
the reason in words with its numbers, the evidence (a DataFrame, one row per comparison) and the
params file that would supply the data it lacks.  `check_all` runs the seven; `conclusions_table`
and `format_conclusions` show them (`imbalance conclusions PARAMS` prints the latter).

How a check judges (issue 24).  Every check is a set of comparisons, each with a verdict of the
four in `imbalance.analysis.stats` (`better`, `worse`, `equivalent` within the metric's declared
margin, `undecided`) and from it an *outcome*: `as claimed`, `against` (the claim's opposite is
shown: the other direction, or, for a claimed difference, equivalence) or `undecided` (neither
shown: the comparison lacks power); none when it lacks data (fewer than 3 networks a side: the
stats n rules).  p-values are Holm-corrected across the comparisons of one part of a check, alpha =
0.05, for the difference tests and the equivalence tests (TOST) alike.  A part is judged by one of
two rules:
- "most" (a claim about most comparisons): `supported` when more than half of the testable ones
  come out as claimed; `contradicted` when more than half are against; `undecided` when the
  undecided ones could still tip it either way (as claimed + undecided, or against + undecided,
  is more than half); else `mixed` (as claimed and against both shown, neither a majority).
- "some" (a claim that something can happen): `supported` when at least one comparison is as
  claimed, `contradicted` when every one is against, else `undecided`.
No testable comparison: `not enough data`.  A check of several parts takes the verdict its parts
share; parts that disagree give `mixed` where one is supported and another contradicted (or one is
mixed), else `undecided`; a part lacking data is named in the reason and its params file in
`needs`.  "Not shown" is never "contradicted": a claim is contradicted only where its opposite is shown.

Every evidence row also carries `part`, `label`, `estimate`, `ci_low`, `ci_high`, `margin`,
`verdict` and `outcome`: the forest plot of the report (`evidence_plots.forest_figure`) draws those.

Paired statistics (`imbalance.analysis.stats.paired_differences`) are used where networks pair up (two
methods of one repeat of one point, or two measurements of one network); networks of different
points do not pair, and are compared by Welch contrasts (`stats.compare_independent`) or
Kendall's rank trend (scipy.stats.kendalltau) on per-network values.  No torch here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as st

from imbalance.analysis import stats
from imbalance.analysis.frames import close_to, curves_frame, format_value, records_frame, thresholded
from imbalance.study.params import margin_for

ALPHA = stats.ALPHA
VERDICTS = ("supported", "contradicted", "mixed", "undecided", "not enough data")
AS_CLAIMED, AGAINST, UNDECIDED = "as claimed", "against", "undecided"
OUTCOMES = (AS_CLAIMED, AGAINST, UNDECIDED)

# The params files that supply each check's data (issue 10; the full-scale studies).
STEP = "params/real/mnist-step.yaml"
LINEAR = "params/real/mnist-linear.yaml"
GRADED = "params/real/mnist-graded.yaml"
FASHION = "params/real/fashion-step.yaml"


@dataclass(frozen=True)
class Thresholds:
    """The numbers a check's rule needs beyond the stats rules, declared once."""
    corner_mu: float = 0.5        # C4: "large portion of classes being minority": mu above this
    corner_rho_quantile: float = 0.5   # C4: "extreme ratio": rho at or above this quantile of the grid's rhos
    step_mu: float = 0.5          # C3: step imbalance with half the classes minority matches linear's size
    late_from: float = 0.75       # C7: "late" = evaluations after this fraction of the iterations ...
    earlier_from: float = 0.5     # ... compared with those in (earlier_from, late_from]


THRESHOLDS = Thresholds()
# C2: task difficulty, easiest first (the paper: MNIST < CIFAR-10 < ImageNet); a dataset not listed is
# compared by its baseline ROC AUC at its mildest imbalance (lower = harder).
DIFFICULTY = {"mnist-sample": 0, "mnist": 0, "fashion-mnist": 1, "cifar10": 2, "cifar10-jpg": 2, "imagenet": 3}


@dataclass(frozen=True)
class Conclusion:
    id: str
    title: str
    claim: str                  # the paper's sentence, quoted
    verdict: str                # one of VERDICTS
    reason: str                 # the verdict in words, with its numbers
    evidence: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)   # one row per comparison
    needs: str | None = None    # the params file(s) that would supply missing data
    counts: dict = field(default_factory=dict)   # outcome -> comparisons (None: without enough data)

    @property
    def summary(self) -> str:
        """One line: the verdict with the count of comparisons per outcome, e.g. 'undecided: 1 as
        claimed, 3 undecided (lack power) of 4'."""
        n = sum(v for k, v in self.counts.items() if k is not None)
        said = [f"{self.counts[o]} {o}" + (" (lack power)" if o == UNDECIDED else "")
                for o in OUTCOMES if self.counts.get(o)]
        short = [f"{self.counts[None]} without enough data"] if self.counts.get(None) else []
        return f"{self.verdict}: " + ", ".join(said + short) + (f" of {n}" if n else "") if said or short \
            else self.verdict


# --- judging ----------------------------------------------------------------------------------

def _judge(outcomes, rule: str = "most") -> str:
    outcomes = [o for o in outcomes if o is not None]
    if not outcomes:
        return "not enough data"
    n = len(outcomes)
    claimed, against, open_ = (outcomes.count(o) for o in OUTCOMES)
    if rule == "some":
        return "supported" if claimed else "contradicted" if against == n else "undecided"
    if claimed > n / 2:
        return "supported"
    if against > n / 2:
        return "contradicted"
    return "undecided" if claimed + open_ > n / 2 or against + open_ > n / 2 else "mixed"


def _combine(parts: dict[str, str]) -> str:
    judged = {v for v in parts.values() if v != "not enough data"}
    if not judged:
        return "not enough data"
    if len(judged) == 1:
        return judged.pop()
    return "mixed" if {"supported", "contradicted"} <= judged or "mixed" in judged else "undecided"


def _counts(outcomes, noun: str) -> str:
    """'as claimed in 1 of 4 rhos (3 undecided: too few repeats to tell, 1 without enough data)'."""
    outcomes = list(outcomes)
    tested = [o for o in outcomes if o is not None]
    if not tested:
        return f"none of {len(outcomes)} {noun} testable (fewer than {stats.RULES.min_n} networks a side)"
    extra = [f"{tested.count(AGAINST)} against"] if AGAINST in tested else []
    extra += [f"{tested.count(UNDECIDED)} undecided: not shown either way"] if UNDECIDED in tested else []
    extra += [f"{len(outcomes) - len(tested)} without enough data"] if len(tested) < len(outcomes) else []
    return f"as claimed in {tested.count(AS_CLAIMED)} of {len(tested)} {noun}" + (
        f" ({', '.join(extra)})" if extra else "")


def _outcome(verdict: str | None, *, claimed, against) -> str | None:
    """A comparison's outcome from its four-way verdict (stats.verdict): as claimed when the verdict
    is in `claimed`, against when in `against` (the claim's opposite shown), else undecided; None
    without a verdict (too few networks)."""
    if verdict is None or (isinstance(verdict, float) and math.isnan(verdict)):
        return None
    return AS_CLAIMED if verdict in claimed else AGAINST if verdict in against else UNDECIDED


# the claim's direction -> (verdicts as claimed, verdicts against)
HIGHER = ((stats.BETTER,), (stats.WORSE, stats.EQUIVALENT))        # "x is above y"
LOWER = ((stats.WORSE,), (stats.BETTER, stats.EQUIVALENT))         # "x is below y"
NOT_LOWER = ((stats.BETTER, stats.EQUIVALENT), (stats.WORSE,))     # "x is on a par with y, or above"
NOT_HIGHER = ((stats.WORSE, stats.EQUIVALENT), (stats.BETTER,))    # "x is no higher than y"


def _contrast_verdicts(rows: list[dict], *, estimate: str, margin: float) -> list[dict]:
    """Holm across `rows` (each with p_value, se, df, ci_low, ci_high and the `estimate` column) for
    the difference tests and their TOSTs at +-`margin`; each row gets p_holm, p_equivalent(_holm),
    margin and its four-way verdict."""
    for row in rows:
        row["p_equivalent"] = stats.tost(row[estimate], row.pop("se", math.nan), row.pop("df", math.nan),
                                         margin=margin, alpha=ALPHA).p_value
        row["margin"] = margin
    _with_holm(rows)
    for row, p in zip(rows, stats.holm([r["p_equivalent"] for r in rows])):
        row["p_equivalent_holm"] = p
        row["verdict"] = stats.verdict(row[estimate], row["ci_low"], row["ci_high"], row["p_holm"], p, alpha=ALPHA)
    return rows


def _plotted(row: dict, *, part: str, label: str, estimate: str) -> dict:
    """The forest plot's columns of an evidence row."""
    return {**row, "part": part, "label": label, "estimate": row[estimate]}


def _with_holm(rows: list[dict]) -> list[dict]:
    for row, p in zip(rows, stats.holm([r["p_value"] for r in rows])):
        row["p_holm"] = p
    return rows


def _result(id, *, parts, rules, reasons, evidence, needs) -> Conclusion:
    verdicts = {name: _judge(outs, rules[name]) for name, outs in parts.items()}
    verdict = _combine(verdicts)
    reason = "; ".join(f"{name}: {verdicts[name]} ({reasons[name]})" for name in parts)
    missing = [name for name, v in verdicts.items() if v == "not enough data"]
    every = [o for outs in parts.values() for o in outs]
    counts = {o: every.count(o) for o in (*OUTCOMES, None) if every.count(o)}
    return Conclusion(id, TITLES[id], CLAIMS[id], verdict, reason, evidence, needs if missing else None, counts)


def _plain_records(records) -> pd.DataFrame:
    """Non-graded records (graded points are C6's own)."""
    frame = records_frame(records)
    return frame[frame["level"].isna()]


def _pool(records, others) -> pd.DataFrame:
    """This study's records with those of the companion studies `others`.  Two studies that both hold a
    grid point (the same dataset, imbalance and point) are a ValueError: pooled, that point's networks
    would be counted twice, as if one study had run twice the repeats."""
    frames = [records_frame(r) for r in (records, *others)]
    seen: dict[tuple, str] = {}
    for frame in frames:
        if frame.empty:
            continue
        for key, studies in frame.groupby(["dataset", "imbalance", "point_id"], dropna=False)["study"]:
            study = ", ".join(sorted(map(str, pd.unique(studies))))
            if key in seen and seen[key] != study:
                raise ValueError(f"--with: studies {seen[key]!r} and {study!r} both hold grid point {key[2]} of "
                                 f"{key[0]} ({key[1]} imbalance); pooled, its networks would count twice: read "
                                 "one of them with the other studies, not both")
            seen[key] = study
    return records_frame(pd.concat(frames, ignore_index=True))


def _values(frame, metric="roc_auc") -> np.ndarray:
    return frame[metric].dropna().to_numpy(dtype=float)


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _with_interval(difference: float, low: float, high: float) -> str:
    """'+0.0280 [0.0216, 0.0343]': a Welch contrast as the evidence lines quote it (no interval: the
    difference alone)."""
    return f"{difference:+.4f}" + (f" [{low:.4f}, {high:.4f}]" if pd.notna(low) else "")


def _paired_text(c: stats.PairedComparison) -> str:
    """'+0.0023 [0.0006, 0.0038], n=30, wilcoxon p=0.00265', or the comparison's note."""
    if pd.isna(c.ci_low):
        return c.note or f"n={c.n_pairs}"
    return f"{c.mean_difference:+.4f} [{c.ci_low:.4f}, {c.ci_high:.4f}], n={c.n_pairs}, {c.test} p={c.p_value:.3g}"


def _pooled(frame, method: str, reference: str, metric: str = "roc_auc") -> str:
    """method minus reference, paired by (point, repeat) and pooled over the points of `frame`:
    the grid's mean paired difference, which evidence lines quote beside the per-point counts."""
    pair = frame[frame["method"].isin([method, reference])].pivot_table(
        index=["point_id", "repeat"], columns="method", values=metric, aggfunc="first", dropna=False)
    if not {method, reference} <= set(pair.columns):
        return "no pairs"
    return _paired_text(stats.compare_paired(pair[method], pair[reference]))


# --- the checks -------------------------------------------------------------------------------

TITLES = {"C1": "Imbalance hurts", "C2": "The effect grows with task difficulty",
          "C3": "It is not only fewer examples", "C4": "Oversampling is best for ROC AUC",
          "C5": "Thresholding raises accuracy, except with undersampling",
          "C6": "Graded sampling: full oversampling, partial undersampling",
          "C7": "Oversampling does not overfit"}
CLAIMS = {
    "C1": "As expected, the increasing ratio of examples between majority and minority classes as well as the "
          "number of minority classes had a negative effect on performance of the resulting classifiers.",
    "C2": "by comparing the results from MNIST and CIFAR-10 we observed that the effect of imbalance is "
          "significantly stronger for the task with higher complexity.",
    "C3": "for the same value of parameter ρ we have equal number of examples in the training set for linear "
          "imbalance and step imbalance with µ = 0.5 [...] The drop in performance is much higher for step imbalance.",
    "C4": "The method that in most of the cases outperforms all others with respect to multi-class ROC AUC was "
          "oversampling. For extreme ratio of imbalance and large portion of classes being minority, "
          "undersampling performs on a par with oversampling.",
    "C5": "A combination of thresholding with baseline and oversampling is the most preferable, whereas it "
          "should not be combined with undersampling.",
    "C6": "Oversampling should be applied to the level that totally eliminates the imbalance, whereas "
          "undersampling can perform better when the imbalance is only removed to some extent.",
    "C7": "Accuracy does not decrease as the training progresses and the gap between accuracy on the training "
          "and test sets is smaller for oversampling [...] than undersampling.",
}


def check_c1(records, *, margins=None) -> Conclusion:
    """C1 Imbalance hurts: "the increasing ratio of examples between majority and minority classes
    as well as the number of minority classes had a negative effect on performance".

    Rule: baseline ROC AUC of step-imbalanced points, per network.  Part "rho": for each
    (dataset, mu), Kendall's tau between rho and ROC AUC; part "mu": for each (dataset, rho), tau
    between mu and ROC AUC.  Networks of different points do not pair, so this is a rank trend on
    per-network values (scipy.stats.kendalltau), not a paired test.  A series needs two values of
    the varied parameter with >= 3 networks each.  A significant negative tau (Holm across the
    series of a part) is as claimed, a positive one against, neither undecided (a rank trend has no
    equivalence margin, so nothing shows "no trend"); rule "most" per part, and the two parts
    combine as the module says (both must agree).  The forest plot shows each series' mean at its
    largest value minus its smallest, a Welch contrast with its interval, against the ROC AUC margin."""
    frame = _plain_records(records)
    frame = frame[(frame["method"] == "baseline") & (frame["imbalance"] == "step")].dropna(subset=["roc_auc"])
    parts, reasons, evidence = {}, {}, []
    for name, varied, fixed in (("rho", "rho", "mu"), ("mu", "mu", "rho")):
        rows = []
        for (dataset, value), series in frame.groupby(["dataset", fixed]):
            sizes = series.groupby(varied).size()
            series = series[series[varied].isin(sizes.index[sizes >= stats.RULES.min_n])]
            levels = tuple(sorted(series[varied].unique()))
            row = {"part": name, "dataset": dataset, "fixed": f"{fixed}={format_value(value)}",
                   "values": ", ".join(map(format_value, levels)), "n": len(series),
                   "tau": math.nan, "p_value": math.nan}
            row.update(estimate=math.nan, ci_low=math.nan, ci_high=math.nan, margin=margin_for("roc_auc", margins),
                       part=name, label=f"{dataset}, {fixed} {format_value(value)}")
            if len(levels) >= 2:
                tau = st.kendalltau(series[varied], series["roc_auc"])
                means = series.groupby(varied)["roc_auc"].mean()
                row.update(tau=float(tau.statistic), p_value=float(tau.pvalue), mean_first=float(means.iloc[0]),
                           mean_last=float(means.iloc[-1]))    # at levels[0] and levels[-1]
                shown = stats.compare_independent(_values(series[close_to(series[varied], levels[-1])]),
                                                  _values(series[close_to(series[varied], levels[0])]))
                row.update(estimate=shown.estimate, ci_low=shown.ci_low, ci_high=shown.ci_high)
            rows.append(row)
        for row in _with_holm(rows):
            row["verdict"] = (None if math.isnan(row["p_holm"]) else stats.UNDECIDED if row["p_holm"] >= ALPHA
                              else stats.WORSE if row["tau"] < 0 else stats.BETTER)
            row["outcome"] = _outcome(row["verdict"], claimed=(stats.WORSE,), against=(stats.BETTER,))
        parts[name] = [r["outcome"] for r in rows]
        several = len({r["dataset"] for r in rows}) > 1          # then each series names its dataset
        quoted = [f"{r['dataset'] + ', ' if several else ''}{r['fixed'].replace('=', ' ')}: tau {r['tau']:+.2f} (Holm p {r['p_holm']:.2g}), mean "
                  f"{r['mean_first']:.4f} at {name} {r['values'].split(', ')[0]} to {r['mean_last']:.4f} at "
                  f"{r['values'].split(', ')[-1]}" for r in rows if pd.notna(r["tau"])]
        reasons[name] = (f"baseline ROC AUC falls with {name}: " + _counts(parts[name], f"(dataset, {fixed}) series")
                         + (", with Kendall's tau by series: " + " / ".join(quoted) if quoted else "")
                         if rows else f"no step points with baseline at two values of {name}")
        evidence += rows
    return _result("C1", parts=parts, rules={"rho": "most", "mu": "most"}, reasons=reasons,
                   evidence=pd.DataFrame(evidence), needs=STEP)


def _easier_harder(a: str, b: str, frame: pd.DataFrame):
    """(easier, harder) of two datasets by DIFFICULTY; where one is not listed, by their baseline
    ROC AUC at their mildest rho (lower = harder).  None when they rank alike (e.g. mnist and
    mnist-sample: one task)."""
    if a in DIFFICULTY and b in DIFFICULTY:
        key = DIFFICULTY.get
    else:
        def key(d):
            rows = frame[frame["dataset"] == d]
            return -float(rows.loc[close_to(rows["rho"], rows["rho"].min()), "roc_auc"].mean())
    if key(a) == key(b):
        return None
    return (a, b) if key(a) < key(b) else (b, a)


def check_c2(records, others=(), *, margins=None) -> Conclusion:
    """C2 The effect grows with task difficulty: "the effect of imbalance is significantly
    stronger for the task with higher complexity".

    Rule: for two datasets (in one database, or this study and `others`), harder by DIFFICULTY
    (a dataset not listed: by its baseline ROC AUC at its mildest rho), at each matched
    (imbalance, mu) series and each matched rho above the series' mildest common rho: the drop of
    baseline ROC AUC from the mildest rho to that rho, harder dataset's minus easier's, as a Welch
    contrast of four independent samples (stats.compare_independent, weights 1, -1, -1, 1).  A
    significantly larger drop on the harder task (Holm across the comparisons) is as claimed; a
    significantly smaller one, or one shown equivalent within the ROC AUC margin (TOST on the Welch
    contrast), against; else undecided.  Rule "most"."""
    frame = _pool(records, others)
    frame = frame[frame["level"].isna() & (frame["method"] == "baseline")].dropna(subset=["roc_auc"])
    rows = []
    datasets = sorted(pd.unique(frame["dataset"].dropna()))
    for pair in combinations(datasets, 2):
        if (ranked := _easier_harder(*pair, frame)) is None:
            continue
        easy, hard = ranked
        for (imbalance, mu), _ in frame.groupby(["imbalance", "mu"], dropna=False):
            series = frame[(frame["imbalance"] == imbalance) & close_to(frame["mu"], mu)]
            rhos = sorted(set(series.loc[series["dataset"] == easy, "rho"])
                          & set(series.loc[series["dataset"] == hard, "rho"]))
            at = {(d, r): _values(series[(series["dataset"] == d) & close_to(series["rho"], r)])
                  for d in (easy, hard) for r in rhos}
            for rho in rhos[1:]:
                mild = rhos[0]
                c = stats.compare_independent(at[hard, mild], at[hard, rho], at[easy, mild], at[easy, rho],
                                              weights=(1, -1, -1, 1))
                rows.append({"easier": easy, "harder": hard, "imbalance": imbalance, "mu": mu,
                             "mildest_rho": mild, "rho": rho, "n": c.n,
                             "drop_easier": _mean(at[easy, mild]) - _mean(at[easy, rho]),
                             "drop_harder": _mean(at[hard, mild]) - _mean(at[hard, rho]),
                             "difference": c.estimate, "ci_low": c.ci_low, "ci_high": c.ci_high,
                             "interval_method": c.interval_method, "p_value": c.p_value, "se": c.se, "df": c.df,
                             "part": "difficulty", "label": f"{hard} vs {easy}, rho {format_value(rho)}"
                             + (f", mu {format_value(mu)}" if pd.notna(mu) else ""), "estimate": c.estimate})
    for row in _contrast_verdicts(rows, estimate="difference", margin=margin_for("roc_auc", margins)):
        row["outcome"] = _outcome(row["verdict"], claimed=HIGHER[0], against=HIGHER[1])
    outcomes = [r["outcome"] for r in rows]
    reason = ("the harder task's baseline drops more: " + _counts(outcomes, "matched (rho, mu)")
              + ", with the harder's drop minus the easier's: " + _quoted_drops(rows) if rows else
              f"datasets {', '.join(datasets) or 'none'}: needs two tasks of different difficulty at matched (rho, mu)")
    return _result("C2", parts={"difficulty": outcomes}, rules={"difficulty": "most"},
                   reasons={"difficulty": reason}, evidence=pd.DataFrame(rows),
                   needs=f"{STEP} with {FASHION} (imbalance conclusions {STEP} --with {FASHION})")


def _quoted_drops(rows: list[dict]) -> str:
    """C2's contrasts, per pair of datasets: at each (rho, mu), the difference with its Welch interval."""
    pairs = {}
    for r in rows:
        at = f"rho {format_value(r['rho'])}" + (f", mu {format_value(r['mu'])}" if pd.notna(r["mu"]) else "")
        pairs.setdefault(f"{r['harder']} against {r['easier']}", []).append(
            f"{at}: {_with_interval(r['difference'], r['ci_low'], r['ci_high'])}")
    return "; ".join(f"{pair}: " + " / ".join(quotes) for pair, quotes in pairs.items())


def check_c3(records, others=(), *, margins=None) -> Conclusion:
    """C3 It is not only fewer examples: for equal rho, step imbalance with mu = 0.5 and linear
    imbalance train on equally many examples, and "the drop in performance is much higher for
    step imbalance".

    Rule: per dataset and rho present in both, baseline ROC AUC of linear minus step (mu = 0.5),
    a Welch contrast of the two points' networks (stats.compare_independent).  Significantly
    positive (Holm across the rhos) is as claimed; significantly negative, or shown equivalent within
    the ROC AUC margin (TOST on the contrast, Holm likewise), against; else undecided (too few
    repeats to tell).  Rule "most"."""
    frame = _pool(records, others)
    frame = frame[frame["level"].isna() & (frame["method"] == "baseline")].dropna(subset=["roc_auc"])
    step = frame[(frame["imbalance"] == "step") & close_to(frame["mu"], THRESHOLDS.step_mu)]
    linear = frame[frame["imbalance"] == "linear"]
    rows = []
    for dataset in sorted(set(step["dataset"]) & set(linear["dataset"])):
        s, lin = step[step["dataset"] == dataset], linear[linear["dataset"] == dataset]
        for rho in sorted(set(s["rho"]) & set(lin["rho"])):
            a, b = _values(lin[close_to(lin["rho"], rho)]), _values(s[close_to(s["rho"], rho)])
            c = stats.compare_independent(a, b)
            rows.append({"dataset": dataset, "rho": rho, "n": c.n, "linear": float(np.mean(a)),
                         "step_mu=0.5": float(np.mean(b)), "difference": c.estimate, "ci_low": c.ci_low,
                         "ci_high": c.ci_high, "interval_method": c.interval_method, "p_value": c.p_value,
                         "se": c.se, "df": c.df, "part": "step vs linear", "estimate": c.estimate,
                         "label": f"{dataset}, rho {format_value(rho)}"})
    for row in _contrast_verdicts(rows, estimate="difference", margin=margin_for("roc_auc", margins)):
        row["outcome"] = _outcome(row["verdict"], claimed=HIGHER[0], against=HIGHER[1])
    outcomes = [r["outcome"] for r in rows]
    reason = ("step (mu=0.5) is below linear at the same rho: " + _counts(outcomes, "rhos")
              + ", with linear minus step by rho: " + ", ".join(
                  f"{format_value(r['rho'])}: {_with_interval(r['difference'], r['ci_low'], r['ci_high'])}"
                  for r in rows) if rows
              else "needs step (mu=0.5) and linear baseline points at a common rho")
    return _result("C3", parts={"step vs linear": outcomes}, rules={"step vs linear": "most"},
                   reasons={"step vs linear": reason}, evidence=pd.DataFrame(rows),
                   needs=f"{STEP} with {LINEAR} (imbalance conclusions {STEP} --with {LINEAR})")


def check_c4(records, *, margins=None) -> Conclusion:
    """C4 Oversampling is best for ROC AUC: "in most of the cases outperforms all others with
    respect to multi-class ROC AUC"; "for extreme ratio of imbalance and large portion of classes
    being minority, undersampling performs on a par with oversampling".

    Rule, on non-graded points ('-thresh' methods left out: same ROC AUC as their base):
    - "best": ros is the winner or equivalent to it (stats.point_winners, paired, Holm): as
      claimed; shown worse than the winner: against; undecided against the winner: undecided; rule "most".
    - "on par in the corner": at points with mu > THRESHOLDS.corner_mu and rho at or above the
      grid's median rho, rus against ros (paired) is equivalent or better: as claimed, worse:
      against; rule "some".
    - "only there": elsewhere rus is worse than ros (paired): as claimed, equivalent or better:
      against; rule "most".
    The three parts combine as the module says."""
    frame = _plain_records(records)
    frame = frame[~thresholded(frame["method"])]
    parts = {"best": [], "on par in the corner": [], "only there": []}
    reasons = {k: "no points with ros" for k in parts}
    rows = []
    if "ros" in set(frame["method"]):
        winners = stats.point_winners(frame, metric="roc_auc", alpha=ALPHA, margin=margin_for("roc_auc", margins))
        for _, w in winners.iterrows():
            if "ros" not in set(frame.loc[frame["point_id"] == w["point_id"], "method"]):
                continue
            if "ros" in w["equivalent"] or (w["winner"] == "ros" and not w["untested"]):
                outcome = AS_CLAIMED
            elif w["winner"] == "ros" or "ros" in w["untested"]:
                outcome = None      # best by its mean, but not tested against all: too few repeats
            else:
                outcome = AGAINST if "ros" in w["worse"] else UNDECIDED
            rows.append({"part": "best", "point_id": w["point_id"], "rho": w["rho"], "mu": w["mu"],
                         "winner": w["winner"], "equivalent": ", ".join(w["equivalent"]),
                         "undecided": ", ".join(w["undecided"]), "outcome": outcome,
                         "label": f"rho {format_value(w['rho'])}, mu {format_value(w['mu'])}"})
            parts["best"].append(outcome)
        reasons["best"] = "ros best, or equivalent to the best: " + _counts(parts["best"], "points")
        if "baseline" in set(frame["method"]):
            reasons["best"] += ", with ros minus baseline pooled over points: " + _pooled(frame, "ros", "baseline")
        if "rus" in set(frame["method"]):
            paired = stats.paired_differences(frame, reference="ros", methods=["ros", "rus"], alpha=ALPHA,
                                              margin=margin_for("roc_auc", margins))
            rhos = np.unique(frame["rho"].dropna())
            extreme = float(np.quantile(rhos, THRESHOLDS.corner_rho_quantile)) if len(rhos) else math.inf
            for _, p in paired.iterrows():
                corner = bool(p["mu"] > THRESHOLDS.corner_mu and p["rho"] >= extreme)
                part = "on par in the corner" if corner else "only there"
                v = p["verdict"]
                outcome = _outcome(v, claimed=(NOT_LOWER if corner else LOWER)[0],
                                   against=(NOT_LOWER if corner else LOWER)[1])
                rows.append({"part": part, "point_id": p["point_id"], "rho": p["rho"], "mu": p["mu"],
                             "rus_minus_ros": p["mean_difference"], "ci_low": p["ci_low"], "ci_high": p["ci_high"],
                             "p_holm": p["p_holm"], "p_equivalent_holm": p["p_equivalent_holm"],
                             "margin": p["margin"], "verdict": v, "outcome": outcome,
                             "estimate": p["mean_difference"],
                             "label": f"rus - ros, rho {format_value(p['rho'])}, mu {format_value(p['mu'])}"})
                parts[part].append(outcome)
            corner_text = f"mu > {format_value(THRESHOLDS.corner_mu)}, rho >= {format_value(extreme)}"
            reasons["on par in the corner"] = (f"rus equivalent to or above ros where {corner_text}: "
                                               + _counts(parts["on par in the corner"], "points")
                                               if parts["on par in the corner"]
                                               else f"no points with {corner_text}")
            reasons["only there"] = "rus below ros elsewhere: " + _counts(parts["only there"], "points")
            away = set(paired.loc[~((paired["mu"] > THRESHOLDS.corner_mu) & (paired["rho"] >= extreme)), "point_id"])
            if away:
                reasons["only there"] += (", with rus minus ros there pooled: "
                                          + _pooled(frame[frame["point_id"].isin(away)], "rus", "ros"))
        else:
            reasons["on par in the corner"] = reasons["only there"] = "no rus networks"
    return _result("C4", parts=parts, rules={"best": "most", "on par in the corner": "some", "only there": "most"},
                   reasons=reasons, evidence=pd.DataFrame(rows), needs=STEP)


def check_c5(records, *, margins=None) -> Conclusion:
    """C5 Thresholding raises accuracy with baseline and oversampling, not with undersampling:
    "A combination of thresholding with baseline and oversampling is the most preferable, whereas
    it should not be combined with undersampling."

    Rule: each network of baseline, ros and rus carries its accuracy and its thresholded
    accuracy (scores divided by the training priors): a paired comparison of the same network.
    Per point, stats.paired_differences of thresholded minus plain accuracy (Holm per point), with
    the accuracy margin for `equivalent`.  For baseline and ros, 'better' is as claimed, 'worse' or
    'equivalent' against (the claimed gain is shown absent); for rus, 'worse' or 'equivalent' is as
    claimed and 'better' against; 'undecided' stays undecided.  Rule "most" for each of the three;
    the parts combine as the module says."""
    frame = _plain_records(records)
    parts, reasons, rows = {}, {}, []
    for base, (claimed, against) in (("baseline", HIGHER), ("ros", HIGHER), ("rus", NOT_HIGHER)):
        own = frame[frame["method"] == base]
        if own.empty:
            parts[base], reasons[base] = [], f"no {base} networks"
            continue
        both = pd.concat([own, own.assign(method=base + "-thresh", accuracy=own["thresholded_accuracy"])])
        paired = stats.paired_differences(both, metric="accuracy", reference=base, alpha=ALPHA,
                                              margin=margin_for("accuracy", margins))
        outcomes = []
        for _, p in paired.iterrows():
            v = p["verdict"]
            outcome = _outcome(v, claimed=claimed, against=against)
            outcomes.append(outcome)
            rows.append({"method": base, "point_id": p["point_id"], "rho": p["rho"], "mu": p["mu"],
                         "n_pairs": p["n_pairs"], "gain": p["mean_difference"], "ci_low": p["ci_low"],
                         "ci_high": p["ci_high"], "p_holm": p["p_holm"], "p_equivalent_holm": p["p_equivalent_holm"],
                         "margin": p["margin"], "verdict": v, "outcome": outcome, "part": base,
                         "estimate": p["mean_difference"],
                         "label": f"{base}, rho {format_value(p['rho'])}, mu {format_value(p['mu'])}"})
        parts[base] = outcomes
        word = "raises" if base != "rus" else "does not raise"
        reasons[base] = (f"thresholding {word} {base}'s accuracy: " + _counts(outcomes, "points")
                         + ", with thresholded minus plain pooled over points: "
                         + _pooled(both, base + "-thresh", base, "accuracy"))
    return _result("C5", parts=parts, rules=dict.fromkeys(parts, "most"), reasons=reasons,
                   evidence=pd.DataFrame(rows), needs=STEP)


def check_c6(records, others=(), *, margins=None) -> Conclusion:
    """C6 Graded sampling: "Oversampling should be applied to the level that totally eliminates
    the imbalance, whereas undersampling can perform better when the imbalance is only removed to
    some extent."

    Rule, on graded points (a `level`: the ratio left after sampling; 1 = fully balanced), per
    (dataset, rho, mu) series, baseline-free, by Welch contrasts of the levels' networks
    (different points: unpaired), Holm within a series for the difference tests and for the TOSTs
    at the ROC AUC margin; each level minus level 1 gets a four-way verdict, and a series:
    - "full ros best": every level of ros shown below level 1 or equivalent to it: as claimed; some
      level shown above level 1: against; else undecided.  Rule "most" over the series.
    - "partial rus better": some level 1 < level < rho of rus shown above level 1: as claimed;
      every such level shown below or equivalent: against (the opposite shown); else undecided
      (not shown either way: too few repeats).  Rule "some" over the series.
    The two parts combine as the module says.  The graded points of `others` (e.g. a graded study
    passed with --with) count too."""
    frame = _pool(records, others)
    frame = frame[frame["level"].notna()].dropna(subset=["roc_auc"])
    parts = {"full ros best": [], "partial rus better": []}
    rows = []
    for (dataset, rho, mu), series in frame.groupby(["dataset", "rho", "mu"], dropna=False):
        for method, part in (("ros", "full ros best"), ("rus", "partial rus better")):
            own = series[series["method"] == method]
            full = _values(own[close_to(own["level"], 1.0)])
            levels = sorted(l for l in own["level"].unique() if l > 1 and (method == "ros" or l < rho))
            if not len(full) or not levels:
                continue
            found = []
            for level in levels:
                c = stats.compare_independent(_values(own[close_to(own["level"], level)]), full)
                found.append({"part": part, "dataset": dataset, "rho": rho, "mu": mu, "method": method,
                              "level": level, "n": c.n, "minus_full": c.estimate, "ci_low": c.ci_low,
                              "ci_high": c.ci_high, "p_value": c.p_value, "se": c.se, "df": c.df,
                              "estimate": c.estimate, "label": f"{method} level {format_value(level)} - level 1, "
                                                               f"rho {format_value(rho)}, mu {format_value(mu)}"})
            found = _contrast_verdicts(found, estimate="minus_full", margin=margin_for("roc_auc", margins))
            verdicts = [r["verdict"] for r in found if r["verdict"] is not None]
            above = stats.BETTER in verdicts
            not_above = bool(verdicts) and all(v in NOT_HIGHER[0] for v in verdicts)
            if not verdicts:
                outcome = None
            elif method == "ros":
                outcome = AGAINST if above else AS_CLAIMED if not_above else UNDECIDED
            else:
                outcome = AS_CLAIMED if above else AGAINST if not_above else UNDECIDED
            for r in found:
                r["series_outcome"] = outcome
            parts[part].append(outcome)
            rows += found
    def quoted(part):   # each level minus level 1, per (rho, mu) series, with its Welch interval
        return " / ".join(f"rho {format_value(r['rho'])}, mu {format_value(r['mu'])}, level {format_value(r['level'])}: "
                         + _with_interval(r["minus_full"], r["ci_low"], r["ci_high"])
                         for r in rows if r["part"] == part)
    reasons = {"full ros best": "no level of ros above level 1: " + _counts(parts["full ros best"], "series"),
               "partial rus better": "a partial level of rus beats level 1: "
                                     + _counts(parts["partial rus better"], "series")}
    for part in reasons:
        if any(r["part"] == part for r in rows):
            reasons[part] += ", with level minus level 1: " + quoted(part)
    if frame.empty:
        reasons = dict.fromkeys(parts, "no graded points (levels)")
    return _result("C6", parts=parts, rules={"full ros best": "most", "partial rus better": "some"},
                   reasons=reasons, evidence=pd.DataFrame(rows), needs=GRADED)


def _network_curves(records, curves) -> pd.DataFrame:
    """Per ros/rus network: late and earlier mean test accuracy, and the final train - test gap."""
    frame = records_frame(records)
    curves = curves_frame(curves)
    for column in ("iteration", "train_accuracy", "test_accuracy"):       # NULL -> NaN, never None
        curves[column] = pd.to_numeric(curves[column], errors="coerce").astype(float)
    curves = curves.dropna(subset=["iteration", "test_accuracy"])
    curves = curves[curves["method"].isin(["ros", "rus"])]           # the only ones C7 reads
    keys = ["point_id", "method", "repeat"]
    if curves.empty:
        return pd.DataFrame(columns=[*keys, "dataset", "late", "earlier", "gap", "diverged"])
    out = []
    for key, c in curves.groupby(keys):
        last = c["iteration"].max()
        late = c.loc[c["iteration"] > THRESHOLDS.late_from * last, "test_accuracy"]
        earlier = c.loc[(c["iteration"] > THRESHOLDS.earlier_from * last)
                        & (c["iteration"] <= THRESHOLDS.late_from * last), "test_accuracy"]
        end = c[c["iteration"] == last].iloc[-1]
        gap = float(end["train_accuracy"]) - float(end["test_accuracy"])      # NaN without a train accuracy
        out.append({**dict(zip(keys, key)), "late": late.mean() if len(late) else math.nan,
                    "earlier": earlier.mean() if len(earlier) else math.nan, "gap": gap})
    out = pd.DataFrame(out)
    info = frame[keys + ["dataset", "diverged"]].drop_duplicates(keys)
    info["repeat"] = info["repeat"].astype(out["repeat"].dtype)
    out = out.merge(info, on=keys, how="left")
    bad = out["diverged"].fillna(0) > 0
    out.loc[bad, ["late", "earlier", "gap"]] = math.nan      # a diverged network's curve says nothing
    return out


def check_c7(records, curves, *, margins=None) -> Conclusion:
    """C7 Oversampling does not overfit: "Accuracy does not decrease as the training progresses
    and the gap between accuracy on the training and test sets is smaller for oversampling [...]
    than undersampling."

    Rule, per dataset, from the stored curves (test accuracy at each evaluation; training accuracy
    as the trainer logged it):
    - "no late fall": each ros network's mean test accuracy over evaluations after
      THRESHOLDS.late_from of its iterations vs its mean over (earlier_from, late_from]: two
      measurements of one network, paired (stats.compare_paired), pooled over the dataset's
      points: the claim is about training, not about a point.  Late shown equivalent (accuracy
      margin, TOST) or higher: as claimed; shown lower: against; else undecided.
    - "gap no larger": the final train - test accuracy gap, ros minus rus, paired by
      (point, repeat) and pooled likewise: shown smaller or equivalent is as claimed (the paper
      says smaller; the issue says no larger), shown larger against, else undecided.
    Rule "most" per part over the datasets; the parts combine as the module says.  Diverged
    networks are left out (and counted)."""
    nets = _network_curves(records, curves)
    parts = {"no late fall": [], "gap no larger": []}
    rows = []
    margin = margin_for("accuracy", margins)

    def add(part, dataset, c, claim, label):
        """One paired comparison of a part: its verdict, its outcome for the claim, its evidence row."""
        v = _paired_verdict(c, margin)
        parts[part].append(_outcome(v, claimed=claim[0], against=claim[1]))
        rows.append({"part": part, "dataset": dataset, "n_pairs": c.n_pairs, "n_dropped": c.n_dropped,
                     "mean_difference": c.mean_difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                     "test": c.test, "p_value": c.p_value, "verdict": v, "outcome": parts[part][-1],
                     "note": c.note, "margin": margin, "estimate": c.mean_difference, "label": label})

    for dataset, d in nets.groupby("dataset"):
        ros = d[d["method"] == "ros"]
        if len(ros):
            add("no late fall", dataset, stats.compare_paired(ros["late"], ros["earlier"]), NOT_LOWER,
                f"{dataset}: ros late - earlier test accuracy")
        pair = d[d["method"].isin(["ros", "rus"])].pivot_table(index=["point_id", "repeat"], columns="method",
                                                               values="gap", aggfunc="first", dropna=False)
        if {"ros", "rus"} <= set(pair.columns):
            add("gap no larger", dataset, stats.compare_paired(pair["ros"], pair["rus"]), NOT_HIGHER,
                f"{dataset}: train-test gap, ros - rus")
    evidence = pd.DataFrame(rows)

    def said(part, text):
        r = evidence[evidence["part"] == part] if len(evidence) else evidence
        if r.empty:
            return f"no {text} curves"
        return "; ".join(f"{x['dataset']}: {x['mean_difference']:+.4f} [{x['ci_low']:.4f}, {x['ci_high']:.4f}], "
                         f"n={x['n_pairs']}, {x['test']} p={x['p_value']:.3g}" if pd.notna(x["ci_low"])
                         else f"{x['dataset']}: {x['note']}"
                         for _, x in r.iterrows())   # _paired_text's form, from the evidence rows
    reasons = {"no late fall": "late minus earlier test accuracy of ros: " + said("no late fall", "ros"),
               "gap no larger": "train-test gap, ros minus rus: " + said("gap no larger", "ros and rus")}
    return _result("C7", parts=parts, rules=dict.fromkeys(parts, "most"), reasons=reasons,
                   evidence=evidence, needs=STEP)


def _paired_verdict(c: stats.PairedComparison, margin: float) -> str | None:
    """One paired comparison's four-way verdict (no family to correct for)."""
    e = stats.tost(c.mean_difference, c.se, c.df, margin=margin, alpha=ALPHA)
    return stats.verdict(c.mean_difference, c.ci_low, c.ci_high, c.p_value, e.p_value, alpha=ALPHA)


# --- all of them ------------------------------------------------------------------------------

def check_all(records, curves=None, *, others=(), margins=None) -> list[Conclusion]:
    """C1..C7 on a study's records (and curves, for C7); `others`: records of further studies
    that C2 (another dataset), C3 (linear imbalance) and C6 (graded sampling) may need; `margins`:
    the study's equivalence margins per metric (params `equivalence_margin:`; None: the defaults)."""
    m = {"margins": margins}
    return [check_c1(records, **m), check_c2(records, others, **m), check_c3(records, others, **m),
            check_c4(records, **m), check_c5(records, **m), check_c6(records, others, **m),
            check_c7(records, curves, **m)]


def conclusions_table(results) -> pd.DataFrame:
    """One row per conclusion: conclusion (id), title, claim, verdict, evidence (the reason, with
    its numbers), needs."""
    return pd.DataFrame([{"conclusion": r.id, "title": r.title, "claim": r.claim, "verdict": r.verdict,
                          "outcomes": r.summary.partition(": ")[2], "evidence": r.reason, "needs": r.needs}
                         for r in results],
                        columns=["conclusion", "title", "claim", "verdict", "outcomes", "evidence", "needs"])


def format_conclusions(results, *, width: int = 100) -> str:
    """The conclusions as plain text, one block per check."""
    import textwrap
    blocks = []
    for r in results:
        lines = [f"{r.id}  {r.title}: {r.verdict.upper()}"]
        outcomes = r.summary.partition(": ")[2] if r.counts else None
        for label, text in (("outcomes", outcomes), ("claim", f'"{r.claim}"'), ("evidence", r.reason),
                            ("needs", r.needs)):
            if text:
                lines += textwrap.wrap(text, width, initial_indent=f"    {label}: ",
                                       subsequent_indent=" " * (6 + len(label)))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def design_gaps(records, curves=None, *, others=()) -> dict[str, str]:
    """The conclusions this study's design cannot test, each with the reason in words (issue 26: on a one-point
    study of one's own data, 'C4 supported' is noise).  A check is testable when the design has what its claim
    is about, whatever the power of the data:
    C1 two values of ρ (or of μ) under step imbalance; C2 two datasets (with `others`); C3 step and linear
    imbalance (with `others`); C4 two step grid points with ros and rus; C5 '<m>-thresh' beside its base;
    C6 graded sampling levels (with `others`); C7 learning curves of ros and rus."""
    frame = _plain_records(records)
    pooled = _pool(records, others)
    step = frame[frame["imbalance"] == "step"]
    methods = set(frame["method"].dropna())
    gaps = {}
    varies = any(step.groupby("mu" if axis == "rho" else "rho", dropna=False)[axis].nunique().gt(1).any()
                 for axis in ("rho", "mu")) if not step.empty else False
    if not varies:
        gaps["C1"] = "it compares imbalance levels, and this study has one ρ and one μ (or no step imbalance)"
    if pooled["dataset"].nunique() < 2:
        gaps["C2"] = "it compares datasets of different difficulty, and this study has one dataset"
    if not {"step", "linear"} <= set(pooled["imbalance"].dropna()):
        gaps["C3"] = "it compares step with linear imbalance, and this study has only one of them"
    if step["point_id"].nunique() < 2 or not {"ros", "rus"} <= methods:
        gaps["C4"] = "it is about most grid points and the corner of large ρ and μ: it needs several step grid " \
                     "points with ros and rus"
    if not any(thresholded([m])[0] and m[: -len("-thresh")] in methods for m in methods):
        gaps["C5"] = "no thresholded method ('-thresh') ran beside its base method"
    if pooled["level"].dropna().empty:
        gaps["C6"] = "it compares graded sampling levels, and this study has none"
    curve_methods = set(curves_frame(curves)["method"].dropna()) if curves is not None else set()
    if not {"ros", "rus"} <= curve_methods:
        gaps["C7"] = "it reads learning curves of ros and rus, and this study stores none"
    return gaps


def design_gaps_text(gaps: dict[str, str]) -> str:
    """One line for readers: which conclusions are left out and why."""
    if not gaps:
        return ""
    return ("Left out, as this study's design cannot test them: "
            + "; ".join(f"{c} ({why})" for c, why in sorted(gaps.items())) + ".")
