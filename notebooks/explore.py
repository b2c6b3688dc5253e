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
# # Explore a study
#
# Pick a study, a dataset, imbalance type, ρ, μ, methods, a metric and a reference method: the methods
# at the chosen grid point are ranked (mean and the interval of the mean over repeats), each is compared
# with the reference by its paired difference (same subset and initial weights per repeat) with a
# verdict, and the class counts (log axis) and the metric around the point are drawn, from
# `outputs/<study>/results.sqlite`.  For example: *which method should I use at ρ = 100 with half
# the classes minority?*  In JupyterLab, run all cells (served by `imbalance explore`, the page runs them
# itself); the controls open at the grid point nearest (rho, mu).
# Without Jupyter, `imbalance explore PARAMS` serves this page on localhost.

# %% tags=["parameters"]
study = "quick"  # the study shown first (outputs/<study>/results.sqlite); the dropdown lists the others
outputs_dir = "../outputs"  # the outputs folder, relative to this notebook's folder (notebooks/)
metric = "roc_auc"  # roc_auc | accuracy | thresholded_accuracy | balanced_accuracy | macro_f1 | g_mean | val_* ...
reference = "baseline"  # paired differences are each method minus this one
rho = 100  # the first view: the grid point nearest this imbalance ratio ...
mu = 0.5  # ... and this fraction of minority classes

# %% jupyter={"source_hidden": true}
from imbalance.analysis import explorer

explorer.explore(study, outputs_dir, metric=metric, reference=reference, rho=rho, mu=mu)
