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
# The study's report, drawn from `outputs/<study>/results.sqlite`: what was run, the paper's
# conclusions as checks, the recommended method per grid point, and every figure of the paper that
# the records allow, each captioned (what it shows, which interval its bands are, n per point) and
# saved as PNG and SVG under `outputs/<study>/figures/`.  `imbalance report PARAMS` writes the same
# document to `outputs/<study>/report.html`.

# %% tags=["parameters"]
study = "quick"  # the study: outputs/<study>/results.sqlite
outputs_dir = "../outputs"  # the outputs folder, relative to this notebook's folder (notebooks/)

# %% jupyter={"source_hidden": true}
from imbalance.analysis import report

report.show_report(study, outputs_dir)
