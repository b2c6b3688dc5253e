"""The method registry: every method as data, and the one source of method names (torch-free).

A method is a frozen record of four independent choices:

- `sampling`: how phase-1 training positions are drawn from the imbalanced subset: "none", "ros",
  "rus" (a resampled set, shuffled per epoch) or "class-aware", "sqrt" (a stream: every
  mini-batch drawn class first, then example; `imbalance.sampling`);
- `loss`: which loss terms apply (a `Loss`: class weights, deferred switch, focal gamma, logit
  offsets, LDAM margins and scale); the default is plain cross-entropy;
- `stage2`: a second stage on a copy of the phase-1 network: "two-phase" (the paper: output layers
  fine-tuned on the imbalanced subset, lr x 0.1) or "crt" (Kang et al.: output layers
  re-initialised and retrained with class-aware sampling, for `stage2_length` of the recipe's
  iterations on a cosine schedule);
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
from dataclasses import dataclass, fields, replace

import numpy as np

SAMPLINGS = ("none", "ros", "rus", "class-aware", "sqrt")
STREAMED = ("class-aware", "sqrt")          # drawn batch by batch, not a resampled set
WEIGHTINGS = ("none", "inverse", "class-balanced")
REDUCTIONS = ("weights", "batch")            # a batch's weighted loss over its summed weights, or over its size
FOCAL_FORMS = ("softmax", "sigmoid")         # focal over the softmax's true class, or over C sigmoids (Cui et al.)
HEADS = ("model", "cosine")                  # the model's own output layer, or Cao et al.'s normalised one
BIAS_INITS = ("model", "sigmoid-uniform")    # the model's init, or Cui et al.'s -log(C - 1) for sigmoid outputs
STAGES = (None, "two-phase", "crt", "head-retrain")   # head-retrain: cRT's compute control (instance-balanced)
STAGE2_SCHEDULES = ("recipe", "cosine")     # a second stage's lr: the recipe's, or cosine from its base lr to 0
# Kang et al.'s cRT retrains the classifier for 10 epochs after 90 of joint training (classifier-balancing,
# config/ImageNet_LT/cls_crt.yaml num_epochs 10; feat_*.yaml num_epochs 90): a tenth-of-ninety share of the
# first stage's length, in iterations here (the study's unit of training).
CRT_STAGE2_LENGTH = 10 / 90
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
        l    = (1 - p'_y)^gamma * (-log p'_y)                        (p' = softmax(z'); focal_form 'softmax')
        l    = sum_j (1 - q_j)^gamma * BCE(z'_j, [j = y])           (q_j = sigmoid of the right sign; 'sigmoid')
        loss = sum_i w_{y_i} l_i / sum_i w_{y_i}                     (reduction 'weights': F.cross_entropy's)
        loss = sum_i w_{y_i} l_i / B                                 (reduction 'batch': Cui et al.'s)

    with class weights w (from iteration `deferred` x iterations on when deferred > 0; 1 before), and the
    learning rate multiplied by `deferred_lr` from that switch on (Cao et al. drop it there).
    The defaults are plain cross-entropy.
    """
    weights: str = "none"          # 'none' | 'inverse' (1/n_c, mean 1) | 'class-balanced' (Cui et al.)
    beta: float = 0.9999           # class-balanced: w_c = (1 - beta) / (1 - beta^n_c), normalised to mean 1
    deferred: float = 0.0          # weights only over the last `deferred` fraction of iterations (DRW); 0: all
    focal_gamma: float = 0.0       # focal factor (1 - p_y)^gamma; 0 = none
    logit_tau: float = 0.0         # logit offsets tau * log(prior) added while training; 0 = none
    max_margin: float = 0.0        # LDAM: delta_c proportional to n_c^(-1/4), the largest = max_margin; 0 = none
    scale: float = 1.0             # LDAM: s, multiplies the adjusted logits
    reduction: str = "weights"     # 'weights' (sum w l / sum w) | 'batch' (sum w l / B)
    focal_form: str = "softmax"    # 'softmax' | 'sigmoid' (Cui et al.'s focal over C one-vs-rest sigmoids)
    deferred_lr: float = 1.0       # the learning rate's factor from the deferred switch on (Cao et al.: 0.01)

    def __post_init__(self):
        if self.weights not in WEIGHTINGS:
            raise ValueError(f"Loss weights must be one of {WEIGHTINGS}, got {self.weights!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"Loss reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.focal_form not in FOCAL_FORMS:
            raise ValueError(f"Loss focal_form must be one of {FOCAL_FORMS}, got {self.focal_form!r}")
        for key, ok, what in (("beta", lambda v: 0 <= v < 1, "in [0, 1)"),
                              ("deferred", lambda v: 0 <= v < 1, "in [0, 1)"),
                              ("focal_gamma", lambda v: v >= 0, ">= 0"), ("logit_tau", lambda v: True, "finite"),
                              ("max_margin", lambda v: v >= 0, ">= 0"), ("scale", lambda v: v > 0, "> 0"),
                              ("deferred_lr", lambda v: v > 0, "> 0")):
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
    head: str = "model"              # 'model' | 'cosine': Cao et al.'s normalised output layer, times head_scale
    head_scale: float = 30.0         # s of a cosine head (its logits lie in [-s, s])
    bias_init: str = "model"         # 'model' | 'sigmoid-uniform': output biases -log(C - 1) (Cui et al.)
    stage2_length: float = 1.0       # a second stage's iterations as a fraction of the recipe's (cRT: 10/90)
    stage2_schedule: str = "recipe"  # one of STAGE2_SCHEDULES
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
        if self.head not in HEADS or self.bias_init not in BIAS_INITS:
            raise ValueError(f"method {self.name!r}: head must be one of {HEADS} and bias_init one of {BIAS_INITS}, "
                             f"got {self.head!r}, {self.bias_init!r}")
        if not (isinstance(self.head_scale, (int, float)) and math.isfinite(self.head_scale) and self.head_scale > 0):
            raise ValueError(f"method {self.name!r}: head_scale must be a number > 0, got {self.head_scale!r}")
        if not (isinstance(self.posthoc_tau, (int, float)) and math.isfinite(self.posthoc_tau)
                and self.posthoc_tau >= 0):
            raise ValueError(f"method {self.name!r}: posthoc_tau must be a number >= 0, got {self.posthoc_tau!r}")
        if isinstance(self.stage2_length, bool) or not isinstance(self.stage2_length, (int, float)) \
                or not 0 < self.stage2_length <= 1:
            raise ValueError(f"method {self.name!r}: stage2_length must be a fraction in (0, 1] of the recipe's "
                             f"iterations, got {self.stage2_length!r}")
        if self.stage2_schedule not in STAGE2_SCHEDULES:
            raise ValueError(f"method {self.name!r}: stage2_schedule must be one of {STAGE2_SCHEDULES}, "
                             f"got {self.stage2_schedule!r}")

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
# Each method follows its authors' code (docs/methods.md has a card per method: reference, formula,
# deviations, the pinned check).  Revision 2 (issue 23) made four of them faithful:
# - cb-ce, cb-focal: Cui et al.'s code divides a batch's weighted loss by the batch size (revision 1 divided
#   by the summed weights, so one minority example at rho = 1000 carried most of a step: the cause of
#   cb-focal's divergences in the committed studies); cb-focal is their sigmoid focal loss over all C
#   outputs, gamma = 1, with the output biases starting at -log(C - 1);
# - ldam-drw, drw: Cao et al.'s deferred re-weighting starts where their learning rate drops x0.01 (160 of
#   200 epochs); LeNet-5's 'inv' schedule has no drop, so the method brings one (x0.01 at the switch: the
#   smallest declared recipe change); ldam-drw has their normalised (cosine) head with s = 30.
# Later revisions:
# - cb-focal 3: scored like every network, by the softmax of its logits (revision 2 recorded Cui et al.'s
#   per-class sigmoids, a re-scoring that moved one-vs-rest ROC AUC by itself; training is unchanged);
# - class-aware 2, crt 2: Kang et al.'s class-aware sampler (reshuffled cycles of classes and of each
#   class's examples, 4 examples per class draw) where revision 1 drew i.i.d.; crt retrains its fresh head
#   for CRT_STAGE2_LENGTH of the iterations on a cosine schedule, as Kang et al.'s 10 of 90 epochs.
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
    Method(name="cb-ce", loss=Loss(**CB, reduction="batch"), revision=2,
           source="Cui et al. 2019 (CVPR), class-balanced loss; richardaecn/class-balanced-loss",
           changes="loss: cross-entropy weighted by (1-beta)/(1-beta^n_c), beta = 0.9999, over the batch size"),
    Method(name="cb-focal", loss=Loss(**CB, focal_gamma=1.0, focal_form="sigmoid", reduction="batch"),
           bias_init="sigmoid-uniform", revision=3,
           source="Cui et al. 2019 (CVPR), class-balanced focal loss; richardaecn/class-balanced-loss",
           changes="loss: sigmoid focal over all C outputs (gamma = 1) weighted by (1-beta)/(1-beta^n_c), "
                   "beta = 0.9999, over the batch size; output biases start at -log(C-1)"),
    Method(name="focal", loss=Loss(focal_gamma=2.0), source="Lin et al. 2017 (ICCV), FL = -(1-p_y)^gamma log p_y",
           changes="loss: focal, gamma = 2"),
    Method(name="la-loss", loss=Loss(logit_tau=1.0), source="Menon et al. 2021 (ICLR), logit-adjusted loss",
           changes="loss: softmax cross-entropy of z + tau log(prior), tau = 1"),
    # Ren et al.'s balanced softmax, exp(z_y) n_y / sum_j exp(z_j) n_j, is the logit-adjusted loss at tau = 1
    Method(name="balanced-softmax", loss=Loss(logit_tau=1.0), source="Ren et al. 2020 (NeurIPS), balanced softmax",
           changes="loss: softmax of z + log(prior) (= la-loss, tau = 1)"),
    # Cao et al. 2019 (kaidic/LDAM-DRW): delta_c proportional to n_c^(-1/4), the largest 0.5, on the cosine
    # logits of their NormedLinear head, times s = 30: CE(30 (cos - delta)).  Here the head outputs 30 cos
    # (its logits are what the loss sees, so softmax scores are the trained ones), and the margins are in
    # those logits' units: 30 x 0.5 = 15.  DRW over the last 20% (their 160 of 200 epochs) with class-balanced
    # weights (beta = 0.9999, F.cross_entropy(weight=): over the summed weights), starting with a lr x0.01 drop.
    Method(name="ldam-drw", loss=Loss(max_margin=15.0, scale=1.0, deferred=0.2, deferred_lr=0.01, **CB),
           head="cosine", head_scale=30.0, revision=2,
           source="Cao et al. 2019 (NeurIPS), LDAM loss + deferred re-weighting; kaidic/LDAM-DRW",
           changes="head: cosine x 30; loss: margin 0.5 (n_min/n_c)^(1/4) on the cosine; CB weights and lr x0.01 "
                   "over the last 20%"),
    Method(name="drw", loss=Loss(deferred=0.2, deferred_lr=0.01, **CB), revision=2,
           source="Cao et al. 2019 (NeurIPS), deferred re-weighting; kaidic/LDAM-DRW",
           changes="loss: cross-entropy; CB weights (beta = 0.9999) and lr x0.01 over the last 20% of iterations"),
    # --- sampling streams ---
    Method(name="class-aware", sampling="class-aware", revision=2,
           source="Shen et al. 2016 (ECCV), class-aware sampling; Kang et al.'s ClassAwareSampler",
           changes="mini-batches: reshuffled cycles of the classes, 4 examples per class draw from its own cycle"),
    Method(name="sqrt-sampling", sampling="sqrt", source="Mahajan et al. 2018; Kang et al. 2020, q = 1/2",
           changes="mini-batches: class c with probability proportional to sqrt(n_c), then an example"),
    # --- two stages ---
    Method(name="crt", stage2="crt", stage2_length=CRT_STAGE2_LENGTH, stage2_schedule="cosine", revision=2,
           source="Kang et al. 2020 (ICLR), classifier re-training; facebookresearch/classifier-balancing",
           changes="baseline first, then output layers re-initialised and retrained with class-aware sampling "
                   "for 1/9 of the iterations, lr cosine to 0"),
    # Kang et al.'s control for cRT: the same head re-training on instance-balanced batches, so a reader can
    # tell cRT's gain from its extra training of the head
    Method(name="crt-ib", stage2="head-retrain", stage2_length=CRT_STAGE2_LENGTH, stage2_schedule="cosine",
           source="Kang et al. 2020 (ICLR), instance-balanced classifier re-training (cRT's control)",
           changes="baseline first, then output layers re-initialised and retrained on the imbalanced subset's "
                   "instance-balanced batches, as long and on the same schedule as crt's"),
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


def _definition(m: Method) -> tuple:
    """What a trained method does, as data: its sampling, loss, second stage, head and revision; never its prose
    (source, changes) nor its name.  Fields at their defaults are left out, so adding a field keeps every
    existing fingerprint."""
    loss = tuple((f.name, getattr(m.loss, f.name)) for f in fields(Loss) if getattr(m.loss, f.name) != f.default)
    extra = tuple((f.name, getattr(m, f.name)) for f in fields(Method)
                  if f.name in ("head", "head_scale", "bias_init", "stage2_length", "stage2_schedule")
                  and getattr(m, f.name) != f.default)
    return ("trained", m.sampling, loss, m.stage2, m.revision) + ((extra,) if extra else ())


def _hash(definition) -> str:
    return hashlib.sha256(repr(definition).encode()).hexdigest()[:12]


# The built-in methods' definitions before fingerprints existed (every one at revision 1): the records of
# studies registered then were made with these, whatever the registry says now.  Computed once from the
# registry of that time (git e5a04fc) and pinned by tests/test_registry.py.
REVISION_1 = {"baseline": "d267d23d7560", "ros": "7613caa90be2", "rus": "b1ff5c7073b9",
              "two-phase-ros": "b222515b7a36", "two-phase-rus": "55cabe5ba294", "weighted-ce": "84afbf9528c6",
              "cb-ce": "69350c5dd546", "cb-focal": "8cb5f5096270", "focal": "62ced0382307",
              "la-loss": "17371b4582f7", "balanced-softmax": "17371b4582f7", "ldam-drw": "c82d209fada2",
              "drw": "7f30dd802455", "class-aware": "3335ba36cdce", "sqrt-sampling": "f4fab5156424",
              "crt": "5f0ae851d204"}


# Post-hoc adjustments whose definition changed since revision 1: '-tau-norm' drops the output bias since
# issue 23 (Kang et al.'s tau_norm.py scores without it).
POSTHOC_REVISIONS = {"tau-norm": 2}


def _posthoc(m: Method, base_fingerprint: str, revision: int) -> tuple:
    return ("posthoc", m.posthoc, m.posthoc_tau, base_fingerprint) + ((revision,) if revision != 1 else ())


def fingerprint(name: str) -> str:
    """The fingerprint of method `name`'s current definition (12 hex digits of a SHA-256): records carry it,
    and a study refuses to mix two definitions of one name.  A post-hoc method's is its adjustment of its
    base's fingerprint."""
    m = get_method(name)
    if m.posthoc:
        return _hash(_posthoc(m, fingerprint(m.base), POSTHOC_REVISIONS.get(m.posthoc, 1)))
    return _hash(_definition(m))


def legacy_fingerprint(name: str) -> str:
    """The definition that records made before fingerprints existed stand for: a built-in method's
    REVISION_1 entry; a user's method's current fields at revision 1."""
    m = get_method(name)
    if m.posthoc:
        return _hash(_posthoc(m, legacy_fingerprint(m.base), 1))
    if m.name in REVISION_1:
        return REVISION_1[m.name]
    return _hash(_definition(replace(m, revision=1)))


def trained_method(name: str) -> str:
    """The method whose network `name` uses: itself, or a post-hoc method's base."""
    m = get_method(name)
    return m.base if m.posthoc else m.name


# --- post-hoc adjustments of stored scores (numpy, float64) ------------------------------------

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

PLUGIN_PACKAGE = "imbalance_plugins"   # plugin files load as imbalance_plugins.<stem>_<hash>: nothing can shadow them


def load_plugins(modules=()) -> tuple[str, ...]:
    """Load each plugin (its import registers its methods) and return them as the kernels must load them.

    A plugin is a file, `my_methods.py` (or `path/to/my_methods.py`; a bare name `my_methods` means the file
    my_methods.py in the current folder), loaded by its absolute path under a module name of its own in the
    `imbalance_plugins` namespace, so neither a notebook's folder (`step.py`) nor the standard library
    (`os`) can stand in for it, and nothing is put on sys.path; or an installed package's module (a dotted
    name that no file in the current folder matches), imported as it is.  A module of Python's standard
    library is refused.  Only explicit calls import code (the CLI's `--plugin`, the training notebook's
    `plugins` parameter); reading a params file never does.  Errors are one line naming the plugin.
    """
    import importlib
    import os
    import sys
    names = (modules,) if isinstance(modules, str) else tuple(modules or ())
    loaded = []
    for name in names:
        if not isinstance(name, str) or not name or "\0" in name:
            raise ValueError(f"plugin {name!r}: expected a plugin file (my_methods.py) or a module name")
        path = _plugin_file(name)
        try:
            if path is not None:
                _load_plugin_file(path)
                loaded.append(str(path))
                continue
            if not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"plugin {name!r}: no such file, and not a module name; pass the plugin's file, "
                                 "e.g. --plugin ./my_methods.py")
            if name.split(".")[0] in getattr(sys, "stdlib_module_names", ()):
                raise ValueError(f"plugin {name!r}: a module of Python's standard library, not a plugin; "
                                 "name your plugin file, e.g. --plugin ./my_methods.py")
            cwd = {"", os.getcwd()}
            saved = sys.path[:]
            sys.path[:] = [p for p in sys.path if p not in cwd]   # an installed module, never a file here
            try:
                importlib.import_module(name)
            finally:
                sys.path[:] = saved
            loaded.append(name)
        except ValueError:
            raise
        except ImportError as exc:
            raise ValueError(f"plugin {name!r}: cannot import it ({exc}); pass the plugin's file, e.g. "
                             f"--plugin ./{name.replace('.', '/')}.py") from None
        except SyntaxError as exc:
            raise ValueError(f"plugin {name!r}: syntax error in {exc.filename} line {exc.lineno}: {exc.msg}") from None
        except Exception as exc:   # the plugin's own code raised: name it, in one line
            raise ValueError(f"plugin {name!r} raised {type(exc).__name__} while loading: "
                             f"{' '.join(str(exc).split())[:300]}") from None
    return tuple(loaded)


def _plugin_file(name: str):
    """The plugin's file as an absolute path, or None for a module name."""
    from pathlib import Path
    candidate = Path(name) if name.endswith(".py") or "/" in name or "\\" in name else Path(f"{name}.py")
    try:
        if candidate.is_file():
            return candidate.resolve()
    except (OSError, RuntimeError):
        pass
    if name.endswith(".py") or "/" in name:
        raise ValueError(f"plugin {name!r}: file not found")
    return None


def _load_plugin_file(path) -> None:
    import hashlib
    import importlib.util
    import sys
    import types
    package = sys.modules.setdefault(PLUGIN_PACKAGE, types.ModuleType(PLUGIN_PACKAGE))
    package.__path__ = []
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    module = f"{PLUGIN_PACKAGE}.{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    if module in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[module]
        raise
