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
# Pick a dataset, imbalance type, ρ, μ and methods: the class-count profile, the metric around the
# chosen grid point and a ranking of the methods there are redrawn from
# `outputs/<study>/results.sqlite`.  For example: *which method should I use at ρ = 100 with half
# the classes minority?*  Set ρ = 100 and μ = 0.5 and read the table: the methods ranked by ROC AUC.

# %% tags=["parameters"]
study = "quick"  # the study: outputs/<study>/results.sqlite
outputs_dir = "../outputs"  # the outputs folder, relative to this notebook's folder (notebooks/)
metric = "roc_auc"  # roc_auc | accuracy | thresholded_accuracy | balanced_accuracy

# %%
import ipywidgets as widgets

from imbalance import explorer, plots, tables

records, _ = tables.load_study(study, outputs_dir)
print(f"study {study!r}: {len(records)} networks at {records['point_id'].nunique()} grid points")

# %% [markdown]
# ## The grid points that exist

# %%
# NBVAL_IGNORE_OUTPUT
tables.grid_table(records)

# %% [markdown]
# ## ρ = 100, half the classes minority (or the nearest grid point)

# %%
# NBVAL_IGNORE_OUTPUT
choice = explorer.explorer_defaults(records, rho=100, mu=0.5)
display(explorer.explorer_table(records, **choice, metric=metric))
explorer.explorer_figure(records, **choice, metric=metric)

# %% [markdown]
# ## Explorer
# Move the sliders (or focus one and use the arrow keys); the table ranks the methods at the chosen
# grid point, best first, with the 95% interval over repeats.  With every method selected, the ROC AUC
# plots leave the `-thresh` methods out (thresholding cannot change ROC AUC); select methods to plot
# exactly those.

# %%
# NBVAL_IGNORE_OUTPUT
def labelled(values):
    return [(f"{v:g}", v) for v in values]


def nearest(values, value):
    return min(values, key=lambda v: abs(v - value)) if values and value is not None else None


def explorer_widgets(records, choice):
    """Widgets for dataset, imbalance type, ρ, μ, methods and metric, and the view they redraw."""
    first = explorer.explorer_options(records, dataset=choice["dataset"], imbalance=choice["imbalance"])
    w_dataset = widgets.Dropdown(options=first["datasets"], value=choice["dataset"], description="dataset")
    w_imbalance = widgets.Dropdown(options=first["imbalances"], value=choice["imbalance"], description="imbalance")
    w_rho = widgets.SelectionSlider(options=labelled(first["rhos"]), value=choice["rho"], description="ρ")
    w_mu = widgets.SelectionSlider(options=labelled(first["mus"] or [0.5]), value=choice["mu"] or 0.5,
                                   description="μ", disabled=not first["mus"])
    w_methods = widgets.SelectMultiple(options=first["methods"], value=first["methods"], description="methods",
                                       rows=8)
    w_metric = widgets.Dropdown(options=list(plots.METRICS), value=metric, description="metric")
    out = widgets.Output()

    def follow(change):
        """Dataset or imbalance type changed: offer the values present there."""
        now = explorer.explorer_options(records, dataset=w_dataset.value, imbalance=w_imbalance.value)
        w_imbalance.options = now["imbalances"]
        for slider, values in ((w_rho, now["rhos"]), (w_mu, now["mus"])):
            slider.disabled = not values
            if values:
                slider.options, slider.value = labelled(values), nearest(values, slider.value)
        w_methods.options, w_methods.value = now["methods"], now["methods"]

    def redraw(change=None):
        every = set(w_methods.value) == set(w_methods.options)   # all of them: no methods named
        kw = dict(dataset=w_dataset.value, imbalance=w_imbalance.value, rho=w_rho.value,
                  mu=None if w_mu.disabled else w_mu.value, methods=None if every else list(w_methods.value),
                  metric=w_metric.value)
        with out:
            out.clear_output(wait=True)
            display(explorer.explorer_table(records, **kw))
            display(explorer.explorer_figure(records, **kw))

    for w in (w_dataset, w_imbalance):
        w.observe(follow, names="value")
    for w in (w_dataset, w_imbalance, w_rho, w_mu, w_methods, w_metric):
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([widgets.VBox([w_dataset, w_imbalance, w_rho, w_mu, w_metric]), w_methods]),
                         out])


if records.empty:
    print("no records yet: run `imbalance run params/quick.yaml` (or any params file), then rerun this notebook")
else:
    display(explorer_widgets(records, choice))
