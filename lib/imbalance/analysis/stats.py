"""Paired statistics of a study's records: intervals, tests, verdicts, winners (issues 10, 24).

Within one repeat of a grid point every method shares the imbalanced subset and the initial
weights, so two methods' networks of one repeat are a *pair*, keyed (point_id, repeat).  The
difference of a metric within each pair is a *paired difference*; its mean over the repeats,
with an interval and a test, says whether a method beats a *reference method* at that point.

| function             | one row per                 | says                                           |
|----------------------|-----------------------------|------------------------------------------------|
| `compare_paired`     | (one comparison)            | `PairedComparison`: mean difference, interval, p |
| `mean_interval`      | (one sample)                | `MeanInterval`: a mean with its interval       |
| `compare_independent`| (one contrast)              | `IndependentComparison`: unpaired, Welch t     |
| `tost`               | (one comparison)            | `Equivalence`: two one-sided tests at +-margin |
| `paired_differences` | (point, method)             | the difference to the reference, with verdict  |
| `method_intervals`   | (point, method)             | a method's mean with its interval              |
| `point_winners`      | point                       | the best method, those equivalent to it, those undecided against it |
| `grid_tally`         | method                      | better / equivalent / undecided / worse / no verdict, over points |

The rules (`RULES`, from issue 10): fewer than 3 values, no interval and no test; Student t
interval below 10, BCa bootstrap (scipy.stats.bootstrap, seeded) from 10; a method's mean of a metric
in [0, 1] (`method_intervals`) takes the t interval on the logit scale (`LOGIT_T_INTERVAL`, issue 26),
so it stays inside [0, 1]; paired t-test below 6,
Wilcoxon signed-rank from 6; Holm's step-down across the methods compared at one point (on ROC
AUC, a '-thresh' method is its base's networks again, so not a test of its own).

The verdicts (issue 24), one of four per comparison:
- `better` / `worse`: the Holm-corrected p < alpha and the interval excludes 0 (the difference is shown);
- `equivalent`: not shown different, and the difference is shown to lie inside +-margin (the study's
  `equivalence_margin:` of the metric): two one-sided t-tests (TOST; equivalently the (1 - 2 alpha)
  t interval inside +-margin), their p Holm-corrected across the same family;
- `undecided`: neither: the comparison lacks the power to say (more repeats would settle it;
  `imbalance.analysis.planning`).
None (no verdict) below 3 pairs.  Never a range.

A diverged network has no metric: its repeat is unpaired for that comparison, and the rows say
how many pairs were dropped.  Metrics are higher-is-better.  pandas/numpy/scipy only, no torch.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

from imbalance.analysis.frames import methods_present, records_frame, repeats_its_base
from imbalance.registry import trained_method
from imbalance.schema import SCALAR_METRICS
from imbalance.study.params import margin_for


@dataclass(frozen=True)
class Rules:
    min_n: int = 3              # fewer values: no interval, no test, no verdict (issue 10)
    bootstrap_from: int = 10    # n >= this: BCa bootstrap interval; below: Student t
    wilcoxon_from: int = 6      # n >= this: Wilcoxon signed-rank test; below: paired t-test
    n_resamples: int = 9999     # bootstrap resamples (scipy.stats.bootstrap's default)
    atol: float = 1e-12         # differences this close to each other count as all equal


RULES = Rules()
# the statistical defaults every analysis module uses (the report's, the explorer's, the conclusions')
CONFIDENCE = 0.95          # confidence level of every interval
ALPHA = 0.05               # verdicts: Holm-corrected p below this (and an interval without 0)
REFERENCE = "baseline"     # the method others are compared with, pairwise within a repeat
POINT_KEYS = ("point_id", "dataset", "imbalance", "rho", "mu", "level")
T_INTERVAL, BCA_INTERVAL = "student-t", "bca-bootstrap"
LOGIT_T_INTERVAL = "logit-t"   # Student t on the logit scale of a bounded metric (`mean_interval`)
WILCOXON, PAIRED_T = "wilcoxon", "paired-t"
WELCH = "welch-t"          # unpaired: Welch-Satterthwaite t, interval and test
TOST = "tost-t"            # equivalence: two one-sided t-tests at +-margin
BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
VERDICTS = (BETTER, EQUIVALENT, UNDECIDED, WORSE)      # a comparison's outcome; None: too few pairs


@dataclass(frozen=True)
class MeanInterval:
    """A mean with its interval (None/NaN where n < RULES.min_n)."""
    n: int
    mean: float
    ci_low: float
    ci_high: float
    interval_method: str | None
    confidence: float
    note: str | None = None


@dataclass(frozen=True)
class PairedComparison:
    """The paired difference x - y of one comparison: its mean, interval and test."""
    n_pairs: int
    n_dropped: int
    mean_difference: float
    ci_low: float
    ci_high: float
    interval_method: str | None
    p_value: float
    test: str | None
    confidence: float
    note: str | None = None
    se: float = math.nan        # standard error of the mean difference (the t interval's), for `tost`
    df: float = math.nan        # its degrees of freedom (n - 1)


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests (TOST) of |difference| < margin: p is the larger one-sided p; the
    (1 - 2 alpha) t interval lies inside +-margin exactly when p < alpha."""
    estimate: float
    margin: float
    p_value: float
    ci_low: float               # the (1 - 2 alpha) t interval
    ci_high: float
    alpha: float
    test: str | None = TOST


def tost(estimate: float, se: float, df: float, *, margin: float, alpha: float = 0.05) -> Equivalence:
    """TOST of a t-distributed estimate (standard error `se`, `df` degrees of freedom) against
    +-`margin`: p = max(P(T > (estimate + margin)/se), P(T < (estimate - margin)/se)) with T ~ t(df)
    (scipy.stats.t).  se = 0: p is 0 inside the margin, 1 outside; NaN in, NaN out."""
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    if any(v is None or math.isnan(v) for v in (estimate, se, df)):
        return Equivalence(estimate, margin, math.nan, math.nan, math.nan, alpha, None)
    if se <= RULES.atol:
        p = 0.0 if abs(estimate) < margin else 1.0
        return Equivalence(estimate, margin, p, estimate, estimate, alpha)
    lower = float(st.t.sf((estimate + margin) / se, df))     # H0: difference <= -margin
    upper = float(st.t.cdf((estimate - margin) / se, df))    # H0: difference >= +margin
    half = float(st.t.ppf(1 - alpha, df)) * se
    return Equivalence(estimate, margin, max(lower, upper), estimate - half, estimate + half, alpha)


def _values(values) -> np.ndarray:
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)


def _rng(random_state):
    return random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)


def _check_confidence(confidence) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _too_few(n: int) -> str:
    return f"n={n}: too few repeats"


def mean_interval(values, *, confidence: float = CONFIDENCE, random_state=0,
                  bounds: tuple[float, float] | None = None) -> MeanInterval:
    """The mean of `values` (NaN ignored) with a `confidence` interval by the n rules:
    none below 3, Student t below 10, BCa bootstrap from 10.  All-equal values: the point itself.

    bounds (lo, hi): the values cannot leave [lo, hi] (ROC AUC, accuracy: [0, 1]), nor can the
    interval.  Below 10 values the Student t interval is then taken on the logit scale of the mean
    (`LOGIT_T_INTERVAL`, the delta method: logit(u) +- t * se / (u (1 - u)) with u the mean rescaled to
    [0, 1], mapped back), which lies inside (lo, hi) and tends to the plain t interval away from the
    bounds; a BCa interval is made of bootstrap means, so it is inside already."""
    _check_confidence(confidence)
    x = _values(values)
    x = x[~np.isnan(x)]
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    if bounds is not None and not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    if bounds is not None and n and not (bounds[0] <= x.min() and x.max() <= bounds[1]):
        raise ValueError(f"values must lie in bounds {bounds!r}, got {x.min():g} to {x.max():g}")
    if n < RULES.min_n:
        return MeanInterval(n, mean, math.nan, math.nan, None, confidence, _too_few(n))
    method = BCA_INTERVAL if n >= RULES.bootstrap_from else (T_INTERVAL if bounds is None else LOGIT_T_INTERVAL)
    if np.allclose(x, x[0], rtol=0, atol=RULES.atol):
        return MeanInterval(n, mean, mean, mean, method, confidence, f"all {n} values equal")
    if method == T_INTERVAL:
        low, high = st.ttest_1samp(x, 0.0).confidence_interval(confidence)
    elif method == LOGIT_T_INTERVAL:
        low, high = _logit_t(x, confidence, bounds)
    else:
        low, high = _bca((x,), confidence, random_state)
    return MeanInterval(n, mean, float(low), float(high), method, confidence)


def _logit_t(x: np.ndarray, confidence: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """The t interval of the mean of `x` on the logit scale of [lo, hi], mapped back (delta method)."""
    lo, hi = bounds
    u = (x.mean() - lo) / (hi - lo)                 # in (0, 1): values not all equal, all inside the bounds
    se = x.std(ddof=1) / math.sqrt(len(x)) / (hi - lo)
    half = st.t.ppf(0.5 + confidence / 2, len(x) - 1) * se / (u * (1 - u))
    centre = math.log(u / (1 - u))
    return tuple(lo + (hi - lo) * float(st.logistic.cdf(centre + s * half)) for s in (-1, 1))


def _bca(samples, confidence, random_state, *, paired=False):
    if paired:
        def statistic(x, y, axis=-1):
            return np.mean(x - y, axis=axis)
    else:
        statistic = np.mean
    with warnings.catch_warnings():     # a degenerate resample distribution gives NaN, said in the note
        warnings.simplefilter("ignore")
        result = st.bootstrap(samples, statistic, paired=paired, vectorized=True, method="BCa",
                              confidence_level=confidence, n_resamples=RULES.n_resamples,
                              rng=_rng(random_state))
    return result.confidence_interval


def compare_paired(x, y, *, confidence: float = CONFIDENCE, random_state=0) -> PairedComparison:
    """The paired difference x - y (same length; a pair with a NaN on either side is dropped).

    Interval: none for n < 3, Student t for n < 10, BCa bootstrap of the mean difference
    (scipy.stats.bootstrap, paired=True, seeded by `random_state`) from 10.  Test: paired t-test
    (scipy.stats.ttest_rel) for n < 6, Wilcoxon signed-rank (scipy.stats.wilcoxon) from 6.
    All differences equal: the interval is that value and p is 1 if it is 0 (else 0 for the t-test);
    e.g. a '-thresh' method against its base on ROC AUC, identical by construction."""
    _check_confidence(confidence)
    x, y = _values(x), _values(y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must pair up: got {len(x)} and {len(y)} values")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n, dropped = len(x), int((~keep).sum())
    d = x - y
    mean = float(d.mean()) if n else math.nan
    dropped_note = [f"{dropped} pair{'s' * (dropped != 1)} dropped: missing values"] if dropped else []
    if n < RULES.min_n:
        return PairedComparison(n, dropped, mean, math.nan, math.nan, None, math.nan, None, confidence,
                                "; ".join([_too_few(n)] + dropped_note))
    method = BCA_INTERVAL if n >= RULES.bootstrap_from else T_INTERVAL
    test = WILCOXON if n >= RULES.wilcoxon_from else PAIRED_T
    if np.allclose(d, d[0], rtol=0, atol=RULES.atol):
        p = 1.0 if abs(mean) <= RULES.atol else (0.0 if test == PAIRED_T else float(st.wilcoxon(d).pvalue))
        return PairedComparison(n, dropped, mean, mean, mean, method, p, test, confidence,
                                "; ".join([f"all {n} differences equal {mean:.3g}"] + dropped_note), 0.0, n - 1)
    if method == T_INTERVAL:
        low, high = st.ttest_rel(x, y).confidence_interval(confidence)
    else:
        low, high = _bca((x, y), confidence, random_state, paired=True)
    if test == WILCOXON:
        with warnings.catch_warnings():    # some zero differences: scipy drops them and says so
            warnings.simplefilter("ignore")
            p = float(st.wilcoxon(x, y).pvalue)
    else:
        p = float(st.ttest_rel(x, y).pvalue)
    note = dropped_note + (["interval undefined (degenerate bootstrap)"] if math.isnan(low) else [])
    return PairedComparison(n, dropped, mean, float(low), float(high), method, p, test, confidence,
                            "; ".join(note) or None, float(d.std(ddof=1) / math.sqrt(n)), n - 1)


@dataclass(frozen=True)
class IndependentComparison:
    """A contrast sum(w_i * mean_i) of independent samples (networks of different grid points)."""
    n: tuple[int, ...]
    estimate: float
    ci_low: float
    ci_high: float
    interval_method: str | None
    p_value: float
    test: str | None
    confidence: float
    note: str | None = None
    se: float = math.nan        # standard error of the contrast, for `tost`
    df: float = math.nan        # its Welch-Satterthwaite degrees of freedom


def compare_independent(*samples, weights=(1, -1), confidence: float = CONFIDENCE,
                        random_state=0) -> IndependentComparison:
    """The contrast sum(w_i * mean(sample_i)) of independent samples (NaN ignored), e.g. (1, -1):
    a difference of two means; (1, -1, -1, 1): a difference of two drops.  Networks of different
    grid points share no subset or weights, so nothing pairs them.

    Test: Welch's t with Welch-Satterthwaite degrees of freedom (for two samples exactly
    scipy.stats.ttest_ind(equal_var=False)).  Interval: its t interval, or the BCa bootstrap
    (scipy.stats.bootstrap, each sample resampled on its own, seeded) when every sample has
    n >= 10.  Any sample below 3: no interval, no test."""
    _check_confidence(confidence)
    if len(samples) != len(weights) or len(samples) < 1:
        raise ValueError(f"weights must give one weight per sample: got {len(weights)} for {len(samples)} samples")
    xs = [x[~np.isnan(x)] for x in map(_values, samples)]
    w = np.asarray(weights, dtype=float)
    n = tuple(len(x) for x in xs)
    if min(n) < RULES.min_n:
        estimate = float(sum(wi * x.mean() for wi, x in zip(w, xs))) if min(n) else math.nan
        return IndependentComparison(n, estimate, math.nan, math.nan, None, math.nan, None, confidence,
                                     _too_few(min(n)))
    means = np.array([x.mean() for x in xs])
    parts = np.array([wi ** 2 * x.var(ddof=1) / len(x) for wi, x in zip(w, xs)])
    estimate, se = float(w @ means), float(math.sqrt(parts.sum()))
    if se <= RULES.atol:
        p = 1.0 if abs(estimate) <= RULES.atol else 0.0
        return IndependentComparison(n, estimate, estimate, estimate, WELCH, p, WELCH, confidence,
                                     "no spread within the samples", 0.0, float(sum(n) - len(n)))
    df = parts.sum() ** 2 / sum(q ** 2 / (k - 1) for q, k in zip(parts, n))
    p = float(2 * st.t.sf(abs(estimate) / se, df))
    if min(n) >= RULES.bootstrap_from:
        def statistic(*data, axis=-1):
            return sum(wi * np.mean(x, axis=axis) for wi, x in zip(w, data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            low, high = st.bootstrap(tuple(xs), statistic, vectorized=True, method="BCa",
                                     confidence_level=confidence, n_resamples=RULES.n_resamples,
                                     rng=_rng(random_state)).confidence_interval
        method = BCA_INTERVAL
    else:
        half = float(st.t.ppf(0.5 + confidence / 2, df)) * se
        low, high, method = estimate - half, estimate + half, WELCH
    return IndependentComparison(n, estimate, float(low), float(high), method, p, WELCH, confidence, None, se,
                                 float(df))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count among the tests):
    the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) * p_(j))."""
    p = _values(p_values)
    out = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(mean_difference, ci_low, ci_high, p_holm, p_equivalent=math.nan, *, alpha: float = ALPHA) -> str | None:
    """'better' / 'worse' (higher-is-better metric) when the interval excludes 0 and the corrected
    p < alpha; else 'equivalent' when the (corrected) TOST p `p_equivalent` < alpha; else
    'undecided'.  None when there is no interval or test (too few pairs)."""
    if any(v is None or math.isnan(v) for v in (mean_difference, ci_low, ci_high, p_holm)):
        return None
    if not (ci_low <= 0 <= ci_high or p_holm >= alpha):
        return BETTER if mean_difference > 0 else WORSE
    if p_equivalent is not None and not math.isnan(p_equivalent) and p_equivalent < alpha:
        return EQUIVALENT
    return UNDECIDED


# --- tables over a study's records ------------------------------------------------------------

def _frame(records, metric: str) -> pd.DataFrame:
    frame = records_frame(records)
    if metric not in frame.columns:
        raise ValueError(f"metric {metric!r} is not a column of the records; expected one of "
                         "roc_auc, accuracy, thresholded_accuracy, balanced_accuracy")
    frame[metric] = pd.to_numeric(frame[metric], errors="coerce").astype(float)
    return frame


def _points(frame: pd.DataFrame):
    """(point keys as a dict, its records) per grid point, in grid order.  A point is
    (study, point_id): records pooled from two studies may share point ids."""
    if frame.empty:
        return
    key = frame["study"].fillna("").astype(str) + "\0" + frame["point_id"].astype(str)
    order = frame.assign(_key=key).sort_values(["dataset", "imbalance", "rho", "mu", "level", "_key"],
                                               na_position="first")
    for k in pd.unique(order["_key"]):
        group = frame[(key == k).to_numpy()]
        first = group.iloc[0]
        yield {"study": first["study"], **{c: first[c] for c in POINT_KEYS}}, group


def _leave_out_thresh(frame: pd.DataFrame, metric: str, methods) -> pd.DataFrame:
    """For ROC AUC without methods named, '-thresh' methods repeat their base's numbers: left out."""
    if methods is not None:
        return frame[frame["method"].isin(list(methods))]
    return frame[~repeats_its_base(frame["method"], metric)]


def _pair_point(group: pd.DataFrame, method: str, reference: str, metric: str):
    """(x, y, n_diverged_dropped) over the repeats that either method ran."""
    a = group[group["method"] == method].drop_duplicates("repeat").set_index("repeat")
    b = group[group["method"] == reference].drop_duplicates("repeat").set_index("repeat")
    repeats = a.index.union(b.index)
    a, b = a.reindex(repeats), b.reindex(repeats)
    x, y = a[metric].to_numpy(dtype=float), b[metric].to_numpy(dtype=float)
    unpaired = np.isnan(x) | np.isnan(y)
    diverged = (a["diverged"].fillna(0).to_numpy(dtype=float) > 0) | (b["diverged"].fillna(0).to_numpy(dtype=float) > 0)
    return x, y, int((unpaired & diverged).sum())


def _dropped_note(n_dropped: int, n_diverged: int) -> str | None:
    if not n_dropped:
        return None
    why = "diverged" if n_diverged == n_dropped else (
        "missing" if not n_diverged else f"{n_diverged} diverged, {n_dropped - n_diverged} missing")
    return f"{n_dropped} pair{'s' * (n_dropped != 1)} dropped: {why}"


def decide_point(rows: list[dict], metric: str, *, alpha: float = ALPHA) -> None:
    """One grid point's comparisons (dicts with mean_difference, ci_low, ci_high, p_value, p_equivalent,
    method, note), in place: Holm across them for the difference tests (-> p_holm) and for the TOSTs
    (-> p_equivalent_holm), then each one's `verdict`.  A comparison without a test (NaN p) is not
    counted among Holm's tests."""
    _holm_per_point(rows, metric)
    _holm_per_point(rows, metric, column="p_equivalent", out="p_equivalent_holm")
    for row in rows:
        row["verdict"] = verdict(row["mean_difference"], row["ci_low"], row["ci_high"], row["p_holm"],
                                 row["p_equivalent_holm"], alpha=alpha)


def _holm_per_point(rows: list[dict], metric: str, *, column: str = "p_value", out: str = "p_holm") -> None:
    """Holm across a point's comparisons (`column` -> `out`: the difference tests, or the TOSTs).  On a
    metric thresholding cannot change (ROC AUC) a '-thresh' method is its base method's networks
    again: not a test of its own (it would only inflate Holm's count), so it takes its base's
    corrected p (its own p when the base is the reference: every difference is then 0)."""
    own = list(~repeats_its_base([r["method"] for r in rows], metric))
    family = [r for r, o in zip(rows, own) if o]
    for row, p in zip(family, holm([r[column] for r in family])):
        row[out] = p
    corrected = {r["method"]: r[out] for r in family}
    for row, o in zip(rows, own):
        if not o:
            base = trained_method(row["method"])
            row[out] = corrected.get(base, row[column])
            if base in corrected and not math.isnan(row[column]) and out == "p_holm":
                row["note"] = "; ".join(filter(None, [row["note"], f"same networks as {base}: its Holm p"]))


PAIRED_COLUMNS = ("study", *POINT_KEYS, "method", "reference", "metric", "n_pairs", "n_dropped", "mean_difference",
                  "ci_low", "ci_high", "interval_method", "p_value", "test", "p_holm", "margin", "eq_low", "eq_high",
                  "p_equivalent", "p_equivalent_holm", "sd", "verdict", "note")


def _check_alpha(alpha) -> None:
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")


def paired_differences(records, *, metric: str = "roc_auc", reference: str = REFERENCE,
                       confidence: float = CONFIDENCE, alpha: float = ALPHA, random_state=0,
                       methods=None, margin: float | None = None) -> pd.DataFrame:
    """One row per (grid point, method other than the reference): the paired difference
    method - reference of `metric` over the repeats, its interval, test, Holm-corrected p (across
    the methods compared at that point), its TOST against +-`margin` (default: the metric's
    `margin_for`; eq_low/eq_high the (1 - 2 alpha) t interval, p_equivalent_holm Holm-corrected
    likewise), the differences' standard deviation `sd` and the verdict (`verdict`).  Points that
    did not run the reference are left out.  `methods` (optional) limits the methods compared;
    every comparison is seeded with `random_state`, so a row does not depend on which others are
    computed."""
    _check_confidence(confidence)
    _check_alpha(alpha)
    margin = margin_for(metric) if margin is None else float(margin)
    frame = _frame(records, metric)
    if not frame.empty and reference not in set(frame["method"]):
        raise ValueError(f"reference: method {reference!r} is not in the records; methods present: "
                         + ", ".join(methods_present(frame)))
    rows = []
    for keys, group in _points(frame):
        present = methods_present(group, methods)
        if reference not in set(group["method"]):
            continue
        point_rows = []
        for method in present:
            if method == reference:
                continue
            x, y, n_diverged = _pair_point(group, method, reference, metric)
            c = compare_paired(x, y, confidence=confidence, random_state=random_state)
            e = tost(c.mean_difference, c.se, c.df, margin=margin, alpha=alpha)
            notes = [n for n in (c.note or "").split("; ") if n and "dropped" not in n]
            note = "; ".join(filter(None, [_dropped_note(c.n_dropped, n_diverged), *notes])) or None
            point_rows.append({**keys, "method": method, "reference": reference, "metric": metric,
                               "n_pairs": c.n_pairs, "n_dropped": c.n_dropped,
                               "mean_difference": c.mean_difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                               "interval_method": c.interval_method, "p_value": c.p_value, "test": c.test,
                               "margin": margin, "eq_low": e.ci_low, "eq_high": e.ci_high,
                               "p_equivalent": e.p_value, "sd": c.se * math.sqrt(c.n_pairs), "note": note})
        decide_point(point_rows, metric, alpha=alpha)
        rows += point_rows
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


def method_intervals(records, *, metric: str = "roc_auc", confidence: float = CONFIDENCE,
                     random_state=0) -> pd.DataFrame:
    """One row per (grid point, method): n networks with the metric, their mean and its interval
    by the same n rules (never a min-max range), and a note (too few repeats, diverged networks).
    Every record metric (schema.SCALAR_METRICS, and their val_/prior_ forms) lies in [0, 1], and so
    does its interval: `mean_interval(..., bounds=(0, 1))`, the logit-scale t interval below 10."""
    frame = _frame(records, metric)
    bounds = (0.0, 1.0) if metric.removeprefix("val_").removeprefix("prior_") in SCALAR_METRICS else None
    rows = []
    for keys, group in _points(frame):
        for method in methods_present(group):
            networks = group[group["method"] == method]
            m = mean_interval(networks[metric], confidence=confidence, random_state=random_state, bounds=bounds)
            n_diverged = int((networks["diverged"].fillna(0) > 0).sum())
            note = "; ".join(filter(None, [m.note, f"{n_diverged} diverged" if n_diverged else None])) or None
            rows.append({**keys, "method": method, "metric": metric, "n": m.n, "n_diverged": n_diverged,
                         "mean": m.mean, "ci_low": m.ci_low, "ci_high": m.ci_high,
                         "interval_method": m.interval_method, "note": note})
    return pd.DataFrame(rows, columns=["study", *POINT_KEYS, "method", "metric", "n", "n_diverged", "mean", "ci_low",
                                       "ci_high", "interval_method", "note"])


WINNER_COLUMNS = ("study", *POINT_KEYS, "winner", "mean", "equivalent", "undecided", "worse", "untested", "n",
                  "diverged", "note")


def point_winners(records, *, metric: str = "roc_auc", alpha: float = ALPHA, confidence: float = CONFIDENCE,
                  random_state=0, methods=None, margin: float | None = None) -> pd.DataFrame:
    """One row per grid point: the winner (highest mean of `metric`) and, by the paired rules
    against it (Holm-corrected across the methods compared with it, `paired_differences`):
    `equivalent` (shown within +-`margin` of it), `undecided` (neither shown worse nor shown
    equivalent: they may still be as good), `worse` (shown worse) and `untested` (no verdict: too
    few pairs).  n: the winner's networks with the metric.  For ROC AUC without `methods` named,
    '-thresh' methods are left out: they repeat their base method's numbers exactly.

    A method with a diverged network at the point cannot win there while a method without one
    exists: its mean would stand on the repeats that survived.  `diverged` names those methods
    with their counts ("cb-focal 2 of 3"); they are still compared with the winner."""
    frame = _leave_out_thresh(_frame(records, metric), metric, methods)
    rows = []
    for keys, group in _points(frame):
        means = group.groupby("method")[metric].mean().dropna()
        if means.empty:
            rows.append({**keys, "winner": None, "mean": math.nan, "equivalent": (), "undecided": (), "worse": (),
                         "untested": (), "n": 0, "diverged": (), "note": f"no method has {metric} here"})
            continue
        order = [m for m in methods_present(group) if m in means.index]
        lost = group.assign(lost=group["diverged"].fillna(0) > 0).groupby("method")["lost"].agg(["sum", "size"])
        diverged = tuple(f"{m} {int(lost.loc[m, 'sum'])} of {int(lost.loc[m, 'size'])}"
                         for m in methods_present(group) if lost.loc[m, "sum"] > 0)
        intact = [m for m in order if lost.loc[m, "sum"] == 0]
        eligible = intact or order
        winner = max(eligible, key=lambda m: means[m])     # first in registry order on equal means
        paired = paired_differences(group, metric=metric, reference=winner, confidence=confidence,
                                    alpha=alpha, random_state=random_state, methods=order, margin=margin)
        said = {v: tuple(paired.loc[paired["verdict"] == v, "method"]) for v in VERDICTS}
        untested = tuple(paired.loc[paired["verdict"].isna(), "method"])
        n = int(group.loc[group["method"] == winner, metric].notna().sum())
        short = paired[paired["verdict"].isna()]
        note = ("untested against the winner: " + ", ".join(f"{m} ({int(k)} pair{'' if k == 1 else 's'})" for m, k in
                                                            zip(short["method"], short["n_pairs"]))) if untested else None
        if not intact:
            note = "; ".join(filter(None, [note, "every method lost networks here"]))
        # 'better' than the winner by the paired rules cannot be shown for a higher mean, except by a
        # method that lost networks (its mean stands on fewer repeats): it counts as undecided here
        rows.append({**keys, "winner": winner, "mean": float(means[winner]), "equivalent": said[EQUIVALENT],
                     "undecided": said[UNDECIDED] + said[BETTER], "worse": said[WORSE], "untested": untested,
                     "n": n, "diverged": diverged, "note": note})
    return pd.DataFrame(rows, columns=list(WINNER_COLUMNS))


TALLY_COLUMNS = ("method", "reference", *VERDICTS, "no_verdict", "points")


def grid_tally(paired: pd.DataFrame) -> pd.DataFrame:
    """Per method (from `paired_differences`): points where it is better than, equivalent to,
    undecided against, worse than the reference, and points with no verdict."""
    columns = list(TALLY_COLUMNS)
    if paired.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for method in methods_present(paired):
        rows_m = paired[paired["method"] == method]
        counts = rows_m["verdict"].value_counts()
        rows.append({"method": method, "reference": ", ".join(pd.unique(rows_m["reference"])),
                     **{v: int(counts.get(v, 0)) for v in VERDICTS},
                     "no_verdict": int(rows_m["verdict"].isna().sum()), "points": len(rows_m)})
    return pd.DataFrame(rows, columns=columns)
