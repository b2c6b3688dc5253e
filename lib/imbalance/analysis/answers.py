"""Answers in plain words, and post-hoc methods shown as what they add (issues 23 and 26).

- `point_sentence` / `point_sentences`: one sentence per grid point a reader can act on, from the four
  verdicts of each trained method against the reference (`stats.paired_differences`): which methods are
  shown better or worse, which are practically equivalent (within ±δ), which are undecided, which could
  not be tested.
- `rescoring`: each post-hoc method ('<m>-thresh', '<m>-la', '<m>-tau-norm': its base network's scores
  adjusted, nothing trained) as its paired difference to its base method, Holm-corrected across the
  post-hoc methods of a point.  Post-hoc methods are never ranked beside trained ones
  (`trained_methods`): a re-scoring of one network is not a method trained on the data.
- `failed`: which networks failed (diverged flag, a failure rule, or constant outputs in older records).

No torch, no plotting here.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from imbalance import registry
from imbalance.analysis import stats
from imbalance.analysis.frames import format_value, methods_present, repeats_its_base
from imbalance.schema import RANKED_METRICS

PAPER_GROUP, TODAY_GROUP, POSTHOC_GROUP = "the paper's methods", "today's methods", "post-hoc re-scoring"
GROUPS = (PAPER_GROUP, TODAY_GROUP, POSTHOC_GROUP)
CONSTANT_ROC_AUC = 0.5   # a network whose outputs are constant on the test set scores exactly this


def _split(name: str) -> tuple[str, str | None]:
    for suffix in sorted(registry.POSTHOC, key=len, reverse=True):
        if name.endswith("-" + suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix) - 1], suffix
    return name, None


def is_posthoc(method) -> bool:
    """'<m>-thresh', '<m>-la', '<m>-tau-norm': an adjustment of <m>'s network, no training of its own."""
    return isinstance(method, str) and _split(method)[1] is not None


def base_method(method: str) -> str:
    """The trained method whose network a post-hoc method re-scores (itself for a trained method)."""
    return _split(method)[0]


def trained_methods(methods) -> list[str]:
    """`methods` less the post-hoc ones: what a ranking, a winner or a recommendation may name."""
    return [m for m in methods if not is_posthoc(m)]


def method_group(method: str) -> str:
    """The paper's methods (with their '-thresh'), today's trained methods, or the other post-hoc re-scorings."""
    if method in registry.PAPER_METHODS:
        return PAPER_GROUP
    return POSTHOC_GROUP if is_posthoc(method) else TODAY_GROUP


def failed(records: pd.DataFrame) -> np.ndarray:
    """Which records' networks failed: flagged `diverged`, a `failure` rule named, or (records made before the
    constant-output rule) a ROC AUC of exactly 0.5, which constant outputs give."""
    n = len(records)
    out = np.zeros(n, dtype=bool)
    if "diverged" in records:
        out |= pd.to_numeric(records["diverged"], errors="coerce").fillna(0).to_numpy(dtype=float) > 0
    if "failure" in records:
        out |= records["failure"].map(lambda v: isinstance(v, str) and v != "").to_numpy(dtype=bool)
    if "roc_auc" in records:
        out |= pd.to_numeric(records["roc_auc"], errors="coerce").to_numpy(dtype=float) == CONSTANT_ROC_AUC
    return out


# --- one sentence per point ---------------------------------------------------------------------

def where_text(rho, mu, level=None) -> str:
    parts = [f"ρ={format_value(rho)}" if rho is not None and not pd.isna(rho) else None,
             f"μ={format_value(mu)}" if mu is not None and not pd.isna(mu) else None,
             f"level {format_value(level)}" if level is not None and not pd.isna(level) else None]
    return ", ".join(p for p in parts if p) or "this point"


def _names(methods) -> str:
    methods = list(methods)
    return methods[0] if len(methods) == 1 else ", ".join(methods[:-1]) + " and " + methods[-1]


def _is_are(methods) -> str:
    return "is" if len(list(methods)) == 1 else "are"


def point_sentence(rows: pd.DataFrame, *, reference: str, metric: str, margin: float, where: str) -> str:
    """One point's answer from its `stats.paired_differences` rows (trained methods against `reference`):
    e.g. 'At ρ=100, μ=0.5 no method is shown better than baseline; ros and crt are practically equivalent to
    it (within ±0.005 ROC AUC); la-loss is undecided.'"""
    label = RANKED_METRICS.get(metric, metric)
    by = {v: [m for m, x in zip(rows["method"], rows["verdict"]) if x == v] for v in stats.VERDICTS}
    untested = [m for m, x in zip(rows["method"], rows["verdict"]) if not isinstance(x, str)]

    def quoted(methods):
        out = []
        for m in methods:
            r = rows[rows["method"] == m].iloc[0]
            out.append(f"{m} ({r['mean_difference']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}])")
        return _names(out)

    better = by[stats.BETTER]
    parts = [f"{quoted(better)} {_is_are(better)} shown better than {reference}" if better
             else f"no method is shown better than {reference}"]
    if by[stats.EQUIVALENT]:
        parts.append(f"{_names(by[stats.EQUIVALENT])} {_is_are(by[stats.EQUIVALENT])} practically equivalent to it "
                     f"(within ±{format_value(margin)} {label})")
    if by[stats.UNDECIDED]:
        parts.append(f"{_names(by[stats.UNDECIDED])} {_is_are(by[stats.UNDECIDED])} undecided (not shown either way)")
    if by[stats.WORSE]:
        parts.append(f"{quoted(by[stats.WORSE])} {_is_are(by[stats.WORSE])} shown worse")
    if untested:
        why = [f"{m} ({int(n)} pair{'s' * (n != 1)})" for m, n in
               zip(rows.loc[rows["method"].isin(untested), "method"], rows.loc[rows["method"].isin(untested), "n_pairs"])]
        parts.append(f"{_names(why)} could not be tested (too few pairs)")
    return f"At {where} " + "; ".join(parts) + "."


def point_sentences(records, *, reference: str = stats.REFERENCE, metric: str = "roc_auc",
                    margin: float | None = None, alpha: float = stats.ALPHA,
                    confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """One row per grid point with the trained methods' paired comparisons with `reference`: point_id, rho,
    mu, level and its `sentence` (`point_sentence`).  Post-hoc methods are left out (see `rescoring`)."""
    frame = stats._frame(records, metric)
    columns = ["study", "point_id", "rho", "mu", "level", "sentence"]
    if frame.empty or reference not in set(frame["method"]):
        return pd.DataFrame(columns=columns)
    margin = stats.margin_for(metric) if margin is None else float(margin)
    methods = trained_methods(methods_present(frame))
    paired = stats.paired_differences(frame, metric=metric, reference=reference, methods=methods, margin=margin,
                                      alpha=alpha, confidence=confidence)
    rows = []
    for _, here in paired.groupby(["study", "point_id"], sort=False, dropna=False):
        first = here.iloc[0]
        where = where_text(first["rho"], first["mu"], first["level"])
        rows.append({"study": first["study"], "point_id": first["point_id"], "rho": first["rho"], "mu": first["mu"],
                     "level": first["level"], "sentence": point_sentence(here, reference=reference, metric=metric,
                                                                         margin=margin, where=where)})
    return pd.DataFrame(rows, columns=columns)


# --- what re-scoring adds -----------------------------------------------------------------------

RESCORING_COLUMNS = ("study", "point_id", "rho", "mu", "level", "method", "base", "metric", "n_pairs", "n_dropped",
                     "mean_difference", "ci_low", "ci_high", "interval_method", "p_value", "test", "p_holm",
                     "margin", "p_equivalent_holm", "verdict", "note")


def rescoring(records, *, metric: str = "roc_auc", margin: float | None = None, alpha: float = stats.ALPHA,
              confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """Each post-hoc method against its own base method (its network before the adjustment): one row per
    (point, post-hoc method) with the paired difference post-hoc minus base of `metric`, its interval, test,
    Holm-corrected p across the post-hoc methods of the point (differences and equivalence tests alike) and
    verdict.  '-thresh' on a metric thresholding cannot change (ROC AUC) adds exactly nothing and is left out."""
    frame = stats._frame(records, metric)
    margin = stats.margin_for(metric) if margin is None else float(margin)
    present = set(frame["method"].dropna()) if not frame.empty else set()
    posthoc = [m for m in methods_present(frame) if is_posthoc(m) and base_method(m) in present] if present else []
    posthoc = [m for m, same in zip(posthoc, repeats_its_base(posthoc, metric)) if not same]
    parts = []
    for m in posthoc:
        base = base_method(m)
        pair = stats.paired_differences(frame[frame["method"].isin([m, base])], metric=metric, reference=base,
                                        methods=[m], margin=margin, alpha=alpha, confidence=confidence)
        parts.append(pair.assign(base=base))
    if not parts:
        return pd.DataFrame(columns=list(RESCORING_COLUMNS))
    out = pd.concat(parts, ignore_index=True)
    for _, index in out.groupby(["study", "point_id"], sort=False, dropna=False).groups.items():
        for column, target in (("p_value", "p_holm"), ("p_equivalent", "p_equivalent_holm")):
            out.loc[index, target] = stats.holm(out.loc[index, column].to_numpy(dtype=float))
    out["verdict"] = [stats.verdict(d, lo, hi, p, q, alpha=alpha) for d, lo, hi, p, q in
                      zip(out["mean_difference"], out["ci_low"], out["ci_high"], out["p_holm"],
                          out["p_equivalent_holm"])]
    return out[list(RESCORING_COLUMNS)]
