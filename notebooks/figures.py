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
# # Figures of a study
#
# Every figure of the paper that the study's records allow, from `outputs/<study>/results.sqlite`;
# each is saved as PNG and SVG under `outputs/<study>/figures/`.  A figure whose records are
# missing says which params file produces them.  `imbalance.report.write_report(study)` runs this
# notebook and converts it to `outputs/<study>/report.html`.

# %% tags=["parameters"]
study = "quick"  # the study: outputs/<study>/results.sqlite
outputs_dir = "../outputs"  # the outputs folder, relative to this notebook's folder (notebooks/)

# %%
from pathlib import Path

from imbalance import plots, tables

records, curves = tables.load_study(study, outputs_dir)
figures_dir = Path(outputs_dir) / study / "figures"


def show(fig, name):
    """Save a figure of this study (not the 'no records' notes) and display it."""
    if not records.empty and plots.figure_message(fig) is None:
        plots.save_figure(fig, figures_dir, name)
    return fig


datasets = sorted(set(records["dataset"].dropna()) - {"imagefolder"})  # ImageNet has its own table
print(f"study {study!r}: {len(records)} networks at {records['point_id'].nunique()} grid points")

# %% [markdown]
# ## The grid points in the database

# %%
# NBVAL_IGNORE_OUTPUT
tables.grid_table(records)

# %% [markdown]
# ## Figure 1: class-count profiles (ρ = 10, μ = 0.5)

# %%
# NBVAL_IGNORE_OUTPUT
show(plots.profile_figure(rho=10, mu=0.5, n_max=5000), "fig1_profiles")

# %% [markdown]
# ## Figures 3 and 4: ROC AUC vs ρ under step imbalance, one panel per μ
# The ROC AUC figures leave the `-thresh` methods out: dividing each class's scores by its prior
# cannot change one-vs-rest ROC AUC, so their lines would sit on their base methods' (Figure 6 shows
# what thresholding does to accuracy).

# %%
# NBVAL_IGNORE_OUTPUT
for name in datasets or [None]:
    display(show(plots.auc_vs_rho(records, dataset=name), f"fig3_4_auc_vs_rho_{name}"))

# %% [markdown]
# ## ROC AUC vs μ under step imbalance, one panel per ρ

# %%
# NBVAL_IGNORE_OUTPUT
for name in datasets or [None]:
    display(show(plots.auc_vs_mu(records, dataset=name), f"auc_vs_mu_{name}"))

# %% [markdown]
# ## Figure 5: ROC AUC vs ρ under linear imbalance

# %%
# NBVAL_IGNORE_OUTPUT
show(plots.linear_figure(records), "fig5_linear")

# %% [markdown]
# ## Figure 6: accuracy with and without thresholding

# %%
# NBVAL_IGNORE_OUTPUT
show(plots.threshold_accuracy_figure(records), "fig6_thresholding")

# %% [markdown]
# ## Figure 7: graded over- and undersampling

# %%
# NBVAL_IGNORE_OUTPUT
show(plots.graded_figure(records), "fig7_graded")

# %% [markdown]
# ## Figure 8: training and test accuracy during training

# %%
# NBVAL_IGNORE_OUTPUT
show(plots.curves_figure(curves), "fig8_curves")

# %% [markdown]
# ## Table 4: ImageNet subsets

# %%
# NBVAL_IGNORE_OUTPUT
show(plots.imagenet_table(records), "table4_imagenet")
