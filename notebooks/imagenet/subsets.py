# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python (imbalance)
#     language: python
#     name: imbalance
# ---

# %% [markdown]
# # ImageNet subsets (ILSVRC-2012)
#
# The paper's Table 4: ResNet-10 on step-imbalanced subsets of ILSVRC-2012, read from an image
# folder (`<data_root>/train/<class>/*`, `<data_root>/val/<class>/*`).  This notebook needs that
# folder and a GPU; it is not executed by the tests.
#
# The runner executes this notebook once per grid point of `params/imagenet/subsets.yaml`
# (`imbalance run` passes the parameters below and collects the records it writes).  Its defaults
# are the study's first grid point, on a GPU.

# %% tags=["parameters"]
# study name (the runner passes the params file's `study`)
study = "scratch"
# mnist-sample | mnist | fashion-mnist | cifar10 | cifar10-jpg | imagefolder | npz
dataset = "imagefolder"
# dataset folder (imagefolder: <data_root>/train/<class>/*, <data_root>/val/<class>/*) or .npz file;
# None: $IMBALANCE_DATA or the user cache dir (mnist-sample needs none)
data_root = None
# imagefolder: square side in pixels the images are fitted to; None: their own size
image_size = None
# imagefolder with image_size: crop (shorter side, centre crop) | stretch
image_fit = "crop"
# step | linear | exponential | natural (the data's own class counts: rho and mu None)
imbalance = "step"
# majority/minority size ratio, at least 1; None for natural imbalance
rho = 10
# fraction of minority classes in (0, 1) for step imbalance; None for linear / exponential
mu = 0.1
# graded sampling: target ratio after ros/rus (from 1 up to rho); None: fully balanced
level = None
# examples per majority class; None: the most the data allows
n_max = None
# random | lowest | scarcity: which classes are minority
minority = "scarcity"
# names from the method registry (README, "Methods"); "<m>-thresh", "<m>-la", "<m>-tau-norm" reuse <m>'s network
methods = ["baseline", "ros", "rus", "two-phase-ros", "two-phase-rus", "baseline-thresh", "ros-thresh", "rus-thresh"]
# modules that register more methods (imbalance run --plugin MODULE), imported before training
plugins = []
# networks per method (each repeat: new subset, sampling and initial weights)
repeats = 1
# study seed; every network's seed derives from it
seed = 0
# fraction of each repeat's training subset held out (stratified) for val_* metrics and the '-la' / '-tau-norm' tau; None: none
validation = None
# balanced | train | both: the test set, a subsample following the training prior, or both (prior_* metrics)
test_prior = "balanced"
# train-loss | test-best-of-8 (the paper's: the test set picks, optimistic) | validation-best-of-8
selection = "train-loss"
# lenet5-mnist | allcnn-cifar10 | resnet10-imagenet | fast-cifar10 | fast-cifar10-cpu
recipe = "resnet10-imagenet"
# any Recipe field (lib/imbalance/training/recipes.py); {}: the paper's recipe
recipe_overrides = {}
# auto | cpu | cuda | cuda:N
device = "cuda"
# train the point's networks as one batched job
batched = False
# the grid point's id (the runner passes one, e.g. step_rho=10_mu=0.5); None: derived
point_id = None
# the runner's records file; None: don't write records
records_path = None
# torch threads; None: torch's default
threads = None
# the runner's progress file (its bar inside a point); None: report no progress
progress_path = None

# %% [markdown]
# ## Train the grid point
# All the work happens in the library (`imbalance.training.pipeline.run_grid_point`): the imbalanced subset,
# the sampling of each method, batched training and the test metrics.

# %%
import time

import torch

from imbalance.analysis import plots, tables
from imbalance.data.datasets import load_study_data
from imbalance.study.executors import ProgressFile
from imbalance.training.pipeline import run_grid_point, study_recipe
from imbalance.registry import load_plugins
from imbalance.study.store import write_records
from imbalance.training.recipes import recipe_with

load_plugins(plugins)  # users' methods (imbalance.registry.register_method), before the names are used
if threads:
    torch.set_num_threads(threads)
# an image folder is loaded resident when it fits in memory, else streamed (decoded on demand)
data = load_study_data(dataset, root=data_root, image_size=image_size, image_fit=image_fit)
training_recipe = study_recipe(recipe, recipe_overrides)   # the paper's (train.RECIPES) or a fast one
if image_size and not hasattr(data, "train_images"):  # streamed: crops of image_size
    training_recipe = recipe_with(training_recipe, crop_size=image_size, resize_size=round(image_size * 8 / 7))

# %%
# NBVAL_IGNORE_OUTPUT
start = time.perf_counter()
result = run_grid_point(data, imbalance=imbalance, rho=rho, mu=mu, level=level, n_max=n_max, minority=minority,
                        methods=methods, repeats=repeats, seed=seed, recipe=training_recipe, device=device,
                        batched=batched, study=study, point_id=point_id, progress=False, validation=validation,
                        test_prior=test_prior, selection=selection, progress_callback=ProgressFile(progress_path) if progress_path else None)
print(f"{len(result.records)} records ({len(methods)} methods x {repeats} repeats) "
      f"in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## Class counts of the imbalanced training set (one row per repeat)

# %%
# NBVAL_CHECK_OUTPUT
tables.counts_table(result.class_counts, classes=data.classes)

# %% [markdown]
# ## Test metrics: mean over repeats per method
# `roc_auc` is the multi-class ROC AUC (one-vs-rest); `thresholded_accuracy` divides each network's
# outputs by the training set's class priors before the argmax.  Thresholding cannot change ROC AUC,
# so the ROC AUC plot leaves the `-thresh` methods out (the table keeps them: their accuracy differs).

# %%
# NBVAL_IGNORE_OUTPUT
tables.method_table(result.records, sort=False)

# %%
# NBVAL_IGNORE_OUTPUT
plots.method_figure(result.records)

# %%
if records_path:
    write_records(result.records, records_path)
