"""Training recipes as data: the paper's per-model hyper-parameters, their validation, the lr schedule."""
from __future__ import annotations

import math

import difflib
from dataclasses import dataclass, fields, replace

from imbalance.catalog import PAPER_ITERATIONS, ZCA_FITS
from imbalance.checks import FRACTION, NON_NEGATIVE, POSITIVE, first_bad_number, first_bad_positive_int, is_int, is_real
from imbalance.training.models import MODELS

POLICIES = ("inv", "multistep", "linear", "cosine")   # cosine: a second stage's (Kang et al.'s cRT)


PRECISIONS = ("fp32", "tf32", "bf16")


PREPROCESSING = ("scale", "gcn-zca", "imagenet")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    model: str                           # key of imbalance.training.models.MODELS
    batch_size: int                      # images per SGD step
    iterations: int                      # SGD steps: equal weight updates for every method
    base_lr: float                       # learning rate at iteration 0
    momentum: float                      # SGD momentum, in [0, 1)
    weight_decay: float                  # L2 coefficient, added to the gradient (Caffe)
    lr_policy: str                       # 'inv' | 'multistep' | 'linear' | 'cosine' (see learning_rate)
    preprocessing: str                   # 'scale' | 'gcn-zca' | 'imagenet' (see Preprocessor)
    eval_interval: int                   # iterations between learning-curve points
    inv_gamma: float = 1e-4              # 'inv': lr = base (1 + gamma t)^-power
    inv_power: float = 0.75
    milestones: tuple[int, ...] = ()     # 'multistep': iterations where lr *= step_gamma
    step_gamma: float = 0.1
    bias_lr_mult: float = 1.0            # lr multiplier of every *.bias parameter
    lr_search: tuple[float, ...] = ()    # candidate base_lr values; empty = use base_lr
    lr_search_runs: int = 1              # networks trained per candidate
    resize_size: int = 256               # 'imagenet': shorter side after resizing, pixels
    crop_size: int = 224                 # 'imagenet': square crop side, pixels
    gcn_scale: float = 55.0              # 'gcn-zca': per-image L2 norm after GCN (pylearn2)
    zca_epsilon: float = 0.1             # 'gcn-zca': added to the covariance's eigenvalues
    zca_fit: str = "full"                # 'gcn-zca': fitted on the balanced training set ('full', shared by the
                                         # point's networks) or on each repeat's imbalanced subset ('subset': the
                                         # leak-free one); the paper does not say (images.Preprocessor)
    precision: str = "fp32"              # 'fp32' (paper fidelity) | 'tf32' (CUDA matmuls/convolutions in
                                         # TF32) | 'bf16' (autocast forward; fp32 weights, updates, loss)

    def __post_init__(self):
        for key in ("milestones", "lr_search"):
            if isinstance(getattr(self, key), list):
                object.__setattr__(self, key, tuple(getattr(self, key)))
        _check_recipe(self)


_POSITIVE_INTS = ("batch_size", "iterations", "eval_interval", "lr_search_runs", "resize_size", "crop_size")
_RANGES = {"base_lr": POSITIVE, "momentum": FRACTION, "weight_decay": NON_NEGATIVE, "inv_gamma": NON_NEGATIVE,
           "inv_power": NON_NEGATIVE, "step_gamma": POSITIVE, "bias_lr_mult": NON_NEGATIVE, "gcn_scale": POSITIVE,
           "zca_epsilon": POSITIVE}


def _check_recipe(r: Recipe) -> None:
    def fail(key, expected):
        raise ValueError(f"recipe {r.name!r}: {key} must be {expected}, got {getattr(r, key)!r}")
    if not isinstance(r.name, str) or not r.name:
        fail("name", "a non-empty string")
    if r.model not in MODELS:
        fail("model", f"one of {', '.join(MODELS)}")
    values = vars(r)
    if (key := first_bad_positive_int(values, _POSITIVE_INTS)) is not None:
        fail(key, "a positive int")
    if (bad := first_bad_number(values, _RANGES)) is not None:
        fail(*bad)
    if r.lr_policy not in POLICIES:
        fail("lr_policy", f"one of {', '.join(POLICIES)}")
    if r.precision not in PRECISIONS:
        fail("precision", f"one of {', '.join(PRECISIONS)}")
    if r.preprocessing not in PREPROCESSING:
        fail("preprocessing", f"one of {', '.join(PREPROCESSING)}")
    if r.zca_fit not in ZCA_FITS:
        fail("zca_fit", f"one of {', '.join(ZCA_FITS)}")
    m = r.milestones
    if not isinstance(m, tuple) or not all(is_int(x) and x > 0 for x in m) \
            or any(a >= b for a, b in zip(m, m[1:])):
        fail("milestones", "a tuple of increasing positive ints")
    if not isinstance(r.lr_search, tuple) or not all(is_real(x) and x > 0 for x in r.lr_search):
        fail("lr_search", "a tuple of positive learning rates")
    if r.crop_size > r.resize_size:
        fail("crop_size", f"<= resize_size ({r.resize_size})")


RECIPES = {r.name: r for r in (
    # Caffe's examples/mnist/lenet_solver.prototxt and lenet_train_test.prototxt.
    Recipe(name="lenet5-mnist", model="lenet5", batch_size=64, iterations=PAPER_ITERATIONS["lenet5-mnist"], base_lr=0.01,
           momentum=0.9, weight_decay=5e-4, lr_policy="inv", inv_gamma=1e-4, inv_power=0.75,
           bias_lr_mult=2.0,                 # the prototxt's biases: param { lr_mult: 2 }
           preprocessing="scale",            # data layer: scale 0.00390625 = 1/256
           eval_interval=500),               # the solver's test_interval
    # Springenberg et al. 2015 (350 epochs, lr x0.1 at 200/250/300) as 70k iterations of 256;
    # base_lr is the search's first candidate, replaced by the search's winner.
    Recipe(name="allcnn-cifar10", model="allcnn", batch_size=256, iterations=PAPER_ITERATIONS["allcnn-cifar10"], base_lr=0.05,
           momentum=0.9, weight_decay=1e-3, lr_policy="multistep",
           milestones=(40_000, 50_000, 60_000), step_gamma=0.1, preprocessing="gcn-zca",
           eval_interval=1_000, lr_search=(0.05, 0.005, 0.0005, 0.00005), lr_search_runs=2),
    # ResNet-10 on ImageNet: 320k iterations of 256 (64 epochs), lr decaying linearly to 0.
    Recipe(name="resnet10-imagenet", model="resnet10", batch_size=256,
           iterations=PAPER_ITERATIONS["resnet10-imagenet"],
           base_lr=0.1, momentum=0.9, weight_decay=1e-4, lr_policy="linear",
           preprocessing="imagenet", eval_interval=5_000),
)}


def recipe_with(recipe: Recipe, **overrides) -> Recipe:
    """A copy of `recipe` with some fields replaced (checked like any recipe)."""
    valid = [f.name for f in fields(Recipe)]
    for key in overrides:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
            raise ValueError(f"unknown recipe field {key!r}; did you mean {near[0]!r}? "
                             f"Valid fields: {', '.join(valid)}")
    return replace(recipe, **overrides)


def learning_rate(recipe: Recipe, iteration: int) -> float:
    """The rate used by the update of `iteration` (0-based), by Caffe's formulas."""
    if not is_int(iteration) or iteration < 0:
        raise ValueError(f"iteration must be a non-negative int, got {iteration!r}")
    t, base = int(iteration), float(recipe.base_lr)
    if recipe.lr_policy == "inv":
        return base * (1.0 + recipe.inv_gamma * t) ** -recipe.inv_power
    if recipe.lr_policy == "multistep":
        return base * recipe.step_gamma ** sum(t >= m for m in recipe.milestones)
    if recipe.lr_policy == "cosine":     # PyTorch's CosineAnnealingLR to eta_min 0, stepped every update
        return base * 0.5 * (1.0 + math.cos(math.pi * t / recipe.iterations))
    return base * max(0.0, 1.0 - t / recipe.iterations)  # 'linear' = Caffe's 'poly', power 1
