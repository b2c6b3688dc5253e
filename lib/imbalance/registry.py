"""The method registry: every method as data, and the one source of method names (torch-free).

A method is a frozen record of four independent choices:

- `sampling`: how phase-1 training positions are drawn from the imbalanced subset: "none", "ros",
  "rus" (a resampled set, shuffled per epoch) or "class-aware", "sqrt" (a stream: every
  mini-batch drawn class first, then example; `imbalance.sampling`);
- `loss`: which loss terms apply (a `Loss`: class weights, deferred switch, focal gamma, logit
  offsets, LDAM margins and scale); the default is plain cross-entropy;
- `stage2`: a second stage on a copy of the phase-1 network: "two-phase" (the paper: output layers
  fine-tuned on the imbalanced subset, lr x 0.1) or "crt" (Kang et al.: output layers
  re-initialised and retrained with class-aware sampling);
- `posthoc`: an adjustment of a trained method's network or scores, no extra training: "thresh"
  (p / prior), "la" (logits - tau log prior) or "tau-norm" (output weights / norm^tau).

`<m>-thresh`, `<m>-la` and `<m>-tau-norm` are derived for any trained method `<m>` by
`get_method`; they are not registered one by one.  Users add methods with `register_method`
(see the README: a plugin module passed as `imbalance run --plugin MODULE`).
"""
from __future__ import annotations

import difflib
import hashlib
import math
from dataclasses import dataclass, fields

import numpy as np

SAMPLINGS = ("none", "ros", "rus", "class-aware", "sqrt")
STREAMED = ("class-aware", "sqrt")          # drawn batch by batch, not a resampled set
WEIGHTINGS = ("none", "inverse", "class-balanced")
STAGES = (None, "two-phase", "crt")
POSTHOC = ("thresh", "la", "tau-norm")      # suffixes '-thresh', '-la', '-tau-norm'
THRESH_SUFFIX = "-thresh"                   # '<m>-thresh': <m>'s network, its scores divided by the priors
# '-la' and '-tau-norm' with a validation split (params `validation`): tau chosen on it from this grid by the validation
# balanced accuracy (logit adjustment targets the balanced error, Menon et al. 2021, eq. 10), ties to the
# first; without one, Method.posthoc_tau (1.0).  The test set is never used to choose.
TAU_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
TAU_SELECTED_BY = "balanced_accuracy"


@dataclass(frozen=True, kw_only=True)
class Loss:
    """Loss terms, one mechanism for every loss-level method (imbalance.training.losses.class_loss):

        z'_j = s * (z_j + tau log pi_j - [j = y] delta_y)          (logits; pi = training priors)
        l    = (1 - p'_y)^gamma * (-log p'_y)                        (p' = softmax(z'))
        loss = sum_i w_{y_i} l_i / sum_i w_{y_i}                     (F.cross_entropy's weighted mean)

    with class weights w (from iteration `deferred` x iterations on when deferred > 0; 1 before).
    The defaults are plain cross-entropy.
    """
    weights: str = "none"          # 'none' | 'inverse' (1/n_c, mean 1) | 'class-balanced' (Cui et al.)
    beta: float = 0.9999           # class-balanced: w_c = (1 - beta) / (1 - beta^n_c), normalised to mean 1
    deferred: float = 0.0          # weights only over the last `deferred` fraction of iterations (DRW); 0: all
    focal_gamma: float = 0.0       # focal factor (1 - p_y)^gamma; 0 = none
    logit_tau: float = 0.0         # logit offsets tau * log(prior) added while training; 0 = none
    max_margin: float = 0.0        # LDAM: delta_c proportional to n_c^(-1/4), the largest = max_margin; 0 = none
    scale: float = 1.0             # LDAM: s, multiplies the adjusted logits

    def __post_init__(self):
        if self.weights not in WEIGHTINGS:
            raise ValueError(f"Loss weights must be one of {WEIGHTINGS}, got {self.weights!r}")
        for key, ok, what in (("beta", lambda v: 0 <= v < 1, "in [0, 1)"),
                              ("deferred", lambda v: 0 <= v < 1, "in [0, 1)"),
                              ("focal_gamma", lambda v: v >= 0, ">= 0"), ("logit_tau", lambda v: True, "finite"),
                              ("max_margin", lambda v: v >= 0, ">= 0"), ("scale", lambda v: v > 0, "> 0")):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise ValueError(f"Loss {key} must be a number {what}, got {v!r}")

    @property
    def plain(self) -> bool:
        return self == CROSS_ENTROPY


CROSS_ENTROPY = Loss()


@dataclass(frozen=True, kw_only=True)
class Method:
    name: str
    sampling: str = "none"           # one of SAMPLINGS: phase-1 training positions
    loss: Loss = CROSS_ENTROPY       # phase-1 loss terms
    stage2: str | None = None        # None | 'two-phase' | 'crt'
    posthoc: str | None = None       # None | 'thresh' | 'la' | 'tau-norm' (then `base` names the trained method)
    base: str | None = None          # post-hoc only: the trained method whose network is adjusted
    posthoc_tau: float = 1.0         # '-la': logits - tau log(prior); '-tau-norm': w_c / |w_c|^tau
    source: str = ""                 # paper (and equation) the method follows
    changes: str = ""                # what it changes, one line (the README's methods table)
    revision: int = 1                # raise it when what the method does changes without a field changing

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"method name must be a non-empty string without spaces, got {self.name!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"method {self.name!r}: sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if not isinstance(self.loss, Loss):
            raise ValueError(f"method {self.name!r}: loss must be an imbalance.registry.Loss, got {self.loss!r}")
        if self.stage2 not in STAGES:
            raise ValueError(f"method {self.name!r}: stage2 must be one of {STAGES}, got {self.stage2!r}")
        if self.posthoc is not None and (self.posthoc not in POSTHOC or self.base is None):
            raise ValueError(f"method {self.name!r}: posthoc must be one of {POSTHOC} with a base method, "
                             f"got posthoc={self.posthoc!r}, base={self.base!r}")
        if not (isinstance(self.posthoc_tau, (int, float)) and math.isfinite(self.posthoc_tau)
                and self.posthoc_tau >= 0):
            raise ValueError(f"method {self.name!r}: posthoc_tau must be a number >= 0, got {self.posthoc_tau!r}")

    # the paper's vocabulary, kept for readers of records and older code
    @property
    def two_phase(self) -> bool:
        return self.stage2 == "two-phase"

    @property
    def threshold(self) -> bool:
        return self.posthoc == "thresh"

    @property
    def trains(self) -> bool:
        """Whether the method trains a network of its own (post-hoc methods reuse their base's)."""
        return self.posthoc is None


CB = dict(weights="class-balanced", beta=0.9999)     # Cui et al. 2019: beta = 0.9999
# Every weighted loss here divides a batch's weighted sum by the batch's summed weights, as
# F.cross_entropy(weight=) does and as Cao et al.'s LDAM-DRW code does.  Cui et al.'s code divides it by
# the batch size instead.  Under the summed-weights rule a batch holding one minority example at
# rho = 1000 puts most of its step on that example: the likely cause of cb-focal's divergences on full
# MNIST (outputs/mnist-step).  Kept, so the committed studies stay one definition; a batch-size variant
# would be a new, separately named method.
_BUILTIN = [
    # --- the paper (Buda et al. 2018, section 3.3) ---
    Method(name="baseline", source="Buda et al. 2018", changes="nothing: cross-entropy on the imbalanced subset"),
    Method(name="ros", sampling="ros", source="Buda et al. 2018, 3.3.1",
           changes="training set: minority classes oversampled (with replacement) to the majority size"),
    Method(name="rus", sampling="rus", source="Buda et al. 2018, 3.3.2",
           changes="training set: majority classes undersampled to the minority size"),
    Method(name="two-phase-ros", sampling="ros", stage2="two-phase", source="Buda et al. 2018, 3.3.3",
           changes="ros first, then output layers fine-tuned on the imbalanced subset at lr x 0.1"),
    Method(name="two-phase-rus", sampling="rus", stage2="two-phase", source="Buda et al. 2018, 3.3.3",
           changes="rus first, then output layers fine-tuned on the imbalanced subset at lr x 0.1"),
    # --- losses ---
    Method(name="weighted-ce", loss=Loss(weights="inverse"), source="inverse class frequency weighting",
           changes="loss: cross-entropy weighted by 1/n_c, normalised to mean 1"),
    Method(name="cb-ce", loss=Loss(**CB), source="Cui et al. 2019 (CVPR), class-balanced loss",
           changes="loss: cross-entropy weighted by (1-beta)/(1-beta^n_c), beta = 0.9999, over the batch's summed "
                   "weights (Cui et al.: over the batch size)"),
    Method(name="cb-focal", loss=Loss(**CB, focal_gamma=1.0), source="Cui et al. 2019 (CVPR), class-balanced focal",
           changes="loss: focal (gamma = 1) weighted by (1-beta)/(1-beta^n_c), beta = 0.9999, over the batch's "
                   "summed weights (Cui et al.: over the batch size)"),
    Method(name="focal", loss=Loss(focal_gamma=2.0), source="Lin et al. 2017 (ICCV), FL = -(1-p_y)^gamma log p_y",
           changes="loss: focal, gamma = 2"),
    Method(name="la-loss", loss=Loss(logit_tau=1.0), source="Menon et al. 2021 (ICLR), logit-adjusted loss",
           changes="loss: softmax cross-entropy of z + tau log(prior), tau = 1"),
    # Ren et al.'s balanced softmax, exp(z_y) n_y / sum_j exp(z_j) n_j, is the logit-adjusted loss at tau = 1
    Method(name="balanced-softmax", loss=Loss(logit_tau=1.0), source="Ren et al. 2020 (NeurIPS), balanced softmax",
           changes="loss: softmax of z + log(prior) (= la-loss, tau = 1)"),
    # Cao et al. 2019: delta_c = C / n_c^(1/4) with the largest 0.5 (their eq. for the margins), s = 30, and
    # DRW over the last 20% (their 160 of 200 epochs) with class-balanced weights (beta = 0.9999).  Their
    # network ends in a normalised (cosine) linear head, whose logits lie in [-1, 1], and s = 30 sets their
    # range.  This project keeps LeNet-5's and All-CNN-C's plain output layers (the same initial weights as
    # the paired methods, in the same batched job), so the margins are subtracted from raw logits and the
    # scale is s = 1: s = 30 on raw logits diverged within 5 iterations on mnist-sample (LeNet-5, lr 0.01).
    Method(name="ldam-drw", loss=Loss(max_margin=0.5, scale=1.0, deferred=0.2, **CB),
           source="Cao et al. 2019 (NeurIPS), LDAM loss + deferred re-weighting",
           changes="loss: margin 0.5 (n_min/n_c)^(1/4) off the true logit (raw head, s = 1); CB weights over "
                   "the last 20%"),
    Method(name="drw", loss=Loss(deferred=0.2, **CB), source="Cao et al. 2019 (NeurIPS), deferred re-weighting",
           changes="loss: cross-entropy; CB weights (beta = 0.9999) over the last 20% of iterations"),
    # --- sampling streams ---
    Method(name="class-aware", sampling="class-aware", source="Shen et al. 2016 (ECCV), class-aware sampling",
           changes="mini-batches: a class uniformly, then one of its examples"),
    Method(name="sqrt-sampling", sampling="sqrt", source="Mahajan et al. 2018; Kang et al. 2020, q = 1/2",
           changes="mini-batches: class c with probability proportional to sqrt(n_c), then an example"),
    # --- two stages ---
    Method(name="crt", stage2="crt", source="Kang et al. 2020 (ICLR), classifier re-training",
           changes="baseline first, then output layers re-initialised and retrained with class-aware sampling"),
]
PAPER_METHODS = ("baseline", "ros", "rus", "two-phase-ros", "two-phase-rus",
                 "baseline-thresh", "ros-thresh", "rus-thresh")

METHODS: dict[str, Method] = {m.name: m for m in _BUILTIN}   # trained methods; post-hoc ones are derived

_SUFFIX_SOURCE = {
    "thresh": ("Buda et al. 2018, 3.3.4", "prediction: argmax p / prior (no extra training)"),
    "la": ("Menon et al. 2021 (ICLR), post-hoc logit adjustment",
           "scores: softmax(log p - tau log prior), tau = 1 (no extra training)"),
    "tau-norm": ("Kang et al. 2020 (ICLR), tau-normalised classifier",
                 "output layer: each class's weights / their norm^tau, tau = 1 (no extra training)"),
}


def register_method(method: Method, *, replace_existing: bool = False) -> Method:
    """Add a trained method to the registry, so params files, the runner and the notebooks accept its name.

    Call it at import time of your own module and pass that module to `imbalance run --plugin MODULE`
    (the notebooks import it too).  '-thresh', '-la' and '-tau-norm' variants come with it.
    """
    if not isinstance(method, Method):
        raise ValueError(f"method must be an imbalance.registry.Method, got {type(method).__name__}")
    if method.posthoc is not None:
        raise ValueError(f"method {method.name!r}: register trained methods only; "
                         f"'<m>-{method.posthoc}' is derived from '<m>' on its own")
    if _split_suffix(method.name)[1] is not None:
        raise ValueError(f"method name {method.name!r} ends in a post-hoc suffix "
                         f"({', '.join('-' + s for s in POSTHOC)}): choose another name")
    if method.stage2 and method.name in SAMPLINGS:
        raise ValueError(f"method name {method.name!r} with a second stage would share the key of the "
                         f"{method.name!r} sampling's network: choose another name")
    if method.name in METHODS and not replace_existing and METHODS[method.name] != method:
        raise ValueError(f"method {method.name!r} is registered already; pass replace_existing=True to replace it")
    METHODS[method.name] = method
    return method


def _split_suffix(name: str) -> tuple[str, str | None]:
    for suffix in sorted(POSTHOC, key=len, reverse=True):     # '-tau-norm' before any shorter match
        if name.endswith("-" + suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix) - 1], suffix
    return name, None


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment): insertions, deletions, substitutions and
    transpositions of two adjacent characters each cost 1, so 'rso' is 1 from 'ros' and 2 from 'rus'."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def suggestions(name: str, valid) -> list[str]:
    """The valid names closest to a misspelled `name` by `edit_distance` (all of them on a tie), if within a
    third of its length (at least 1); else difflib's closest match, if any."""
    distances = {v: edit_distance(name.lower(), v.lower()) for v in valid}
    best = min(distances.values(), default=None)
    if best is not None and best <= max(1, len(name) // 3):
        return [v for v in valid if distances[v] == best]
    return difflib.get_close_matches(name, list(valid), n=1)


def get_method(name: str) -> Method:
    """The registered method `name`, or '<m>-thresh' / '<m>-la' / '<m>-tau-norm' derived from trained `<m>`."""
    if isinstance(name, str) and name in METHODS:
        return METHODS[name]
    base, suffix = _split_suffix(name) if isinstance(name, str) else (name, None)
    if suffix is not None and base in METHODS:
        source, changes = _SUFFIX_SOURCE[suffix]
        return Method(name=name, posthoc=suffix, base=base, source=source, changes=changes)
    valid = method_names()
    near = suggestions(str(name), valid)
    raise ValueError(f"unknown method {name!r}" + (f" (did you mean {' or '.join(map(repr, near))}?)" if near else "")
                     + f"; valid methods: {', '.join(valid)}, and '<m>-thresh', '<m>-la', '<m>-tau-norm' "
                       f"for any of them")


def is_method(name) -> bool:
    try:
        get_method(name)
        return True
    except ValueError:
        return False


def method_names() -> tuple[str, ...]:
    """The registered (trained) methods' names, the paper's first, in registration order."""
    return tuple(METHODS)


def display_order() -> tuple[str, ...]:
    """Names in the order tables and plots list them: the paper's methods (with their '-thresh'), then the
    other registered methods, then the post-hoc variants of the baseline."""
    rest = [m for m in METHODS if m not in PAPER_METHODS]
    return PAPER_METHODS + tuple(rest) + ("baseline-la", "baseline-tau-norm")


def _definition(m: Method, revision: int) -> tuple:
    """What a method does, as data: every field but its name's prose (source, changes), at `revision`;
    a post-hoc method is its adjustment of its base's definition."""
    if m.posthoc:
        base = METHODS[m.base]
        return ("posthoc", m.posthoc, m.posthoc_tau, _definition(base, base.revision))
    loss = tuple((f.name, getattr(m.loss, f.name)) for f in fields(Loss) if getattr(m.loss, f.name) != f.default)
    return ("trained", m.sampling, loss, m.stage2, revision)


def fingerprint(name: str) -> str:
    """The fingerprint of method `name`'s current definition (12 hex digits of a SHA-256): records carry it,
    and a study refuses to mix two definitions of one name."""
    return hashlib.sha256(repr(_definition(get_method(name), get_method(name).revision)).encode()).hexdigest()[:12]


def legacy_fingerprint(name: str) -> str:
    """The fingerprint records made before fingerprints existed stand for: revision 1 of `name`'s fields
    (every method was at revision 1 then), with a post-hoc method's base at revision 1 too."""
    m = get_method(name)
    if m.posthoc:
        base = METHODS[m.base]
        definition = ("posthoc", m.posthoc, m.posthoc_tau, _definition(base, 1))
    else:
        definition = _definition(m, 1)
    return hashlib.sha256(repr(definition).encode()).hexdigest()[:12]


def trained_method(name: str) -> str:
    """The method whose network `name` uses: itself, or a post-hoc method's base."""
    m = get_method(name)
    return m.base if m.posthoc else m.name


# --- post-hoc adjustments of stored scores (numpy, float64) ------------------------------------

# The fast CIFAR-10 recipes (imbalance.training.fast) train with their own label-smoothed cross-entropy on
# shuffled resampled sets: loss terms, streamed sampling and cRT's re-initialised head are the paper
# recipes' only.  Their names, torch-free, for params files (tests/study/test_params.py pins them).


def fast_recipe_problem(name: str) -> str | None:
    """Why a fast recipe cannot train method `name` (one line), or None when it can."""
    m = get_method(name)
    t = get_method(m.base) if m.posthoc else m
    if not t.loss.plain:
        return f"method {name!r} changes the loss, and the fast recipes train with label-smoothed cross-entropy only"
    if t.sampling in STREAMED:
        return f"method {name!r} samples a stream ({t.sampling}), and the fast recipes train on resampled sets only"
    if t.stage2 == "crt":
        return f"method {name!r} re-trains a re-initialised head (cRT), which the fast recipes do not do"
    return None


def _priors(priors, n_classes: int) -> np.ndarray:
    p = np.asarray(priors, dtype=np.float64)
    if p.ndim != 1 or p.shape[0] != n_classes or (p <= 0).any() or not np.isfinite(p).all():
        raise ValueError(f"priors must be {n_classes} positive class frequencies, got {p.tolist()}")
    return p


def logit_adjusted_scores(scores, priors, *, tau: float = 1.0) -> np.ndarray:
    """Post-hoc logit adjustment (Menon et al. 2021): softmax(log p - tau log prior), rows of `scores` = p.

    Its argmax at tau = 1 is that of p / prior, the paper's thresholding."""
    s = np.asarray(scores, dtype=np.float64)
    p = _priors(priors, s.shape[-1])
    with np.errstate(divide="ignore"):
        z = np.log(s) - tau * np.log(p)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


# --- plugins: users' modules that register methods ----------------------------------------------

def load_plugins(modules=()) -> tuple[str, ...]:
    """Import each named module (its import registers its methods) and return the names.

    The current folder is searched first, as `python -m` does, so a user file `my_methods.py` next
    to the params works as `--plugin my_methods`.  Only explicit calls import code (the CLI's
    `--plugin`, the training notebook's `plugins` parameter); reading a params file never does.
    """
    import importlib
    import os
    import sys
    names = (modules,) if isinstance(modules, str) else tuple(modules or ())
    for name in names:
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"plugin {name!r}: expected an importable module name, e.g. my_methods")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"plugin {name!r}: cannot import it ({exc}); run from the folder that holds "
                             f"{name.replace('.', '/')}.py or put that folder on PYTHONPATH") from None
    return names
