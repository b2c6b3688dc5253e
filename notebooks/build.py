"""Generate the project's notebooks from one place: the py:percent sources below -> .py + .ipynb.

The training notebooks are nearly identical (they differ in title, defaults and notes), so they
are written from one template here instead of being copied by hand.  Each notebook is written as
a jupytext pair: `<name>.py` (py:percent, what reviews read) and `<name>.ipynb` (what the runner,
nbval and JupyterLab open), executed with its default parameters on the `imbalance` kernel so the
committed .ipynb carries outputs for nbval to compare (the ImageNet notebook is left unexecuted:
it needs an ILSVRC-2012 folder).

    .venv/bin/python notebooks/build.py                 # every notebook, executed
    .venv/bin/python notebooks/build.py mnist/step      # some of them
    .venv/bin/python notebooks/build.py --no-execute    # sources only (no outputs)
    .venv/bin/python notebooks/build.py --check         # exit 1 if a notebook differs from here

Edit this file, not the notebooks (a hand edit of a paired .py is overwritten by the next build;
tests/test_notebooks.py checks that the notebooks match this file).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIB = HERE.parent / "lib"
KERNEL = {"name": "imbalance", "display_name": "Python (imbalance)", "language": "python"}
FORMATS = "ipynb,py:percent"
sys.path.insert(0, str(LIB))   # the library's own lists, so no notebook keeps a copy of them
from imbalance.registry import PAPER_METHODS  # noqa: E402
from imbalance.study.params import NOTEBOOK_PARAMETERS  # noqa: E402

ALL_METHODS = list(PAPER_METHODS)

# --- training notebooks -----------------------------------------------------------------------

CURVES_CELL = '''
# %% [markdown]
# ## Learning curves (the paper's Figure 8): test (solid) and train (dashed) accuracy per method

# %%
# NBVAL_IGNORE_OUTPUT
plots.curves_figure([dict(point_id=r["point_id"], method=r["method"], repeat=r["repeat"], **p)
                     for r in result.records for p in r["curve"]])
'''

TRAINING = {
    "mnist/step": dict(
        title="MNIST: step imbalance",
        about="The paper's Figures 3, 6 and 8 (MNIST): one grid point of step imbalance, i.e. `round(μ·10)` "
              "minority classes with `n_max/ρ` examples each and the rest with `n_max`.",
        params="params/mnist/step.yaml", imbalance="step", rho=10, mu=0.5, level=None, minority="random",
        methods=["baseline", "ros", "rus", "baseline-thresh"]),
    "mnist/linear": dict(
        title="MNIST: linear imbalance",
        about="The paper's Figure 5 (MNIST): one grid point of linear imbalance, class sizes spread evenly "
              "from `n_max/ρ` to `n_max`.",
        params="params/mnist/linear.yaml", imbalance="linear", rho=10, mu=None, level=None, minority="random",
        methods=["baseline", "ros", "rus", "baseline-thresh"]),
    "mnist/graded": dict(
        title="MNIST: graded over- and undersampling",
        about="The paper's Figure 7: at a step-imbalanced grid point, oversampling (ros) or undersampling "
              "(rus) only down to a target ratio `level` (1 = fully balanced, ρ = no sampling).",
        params="params/mnist/graded.yaml", imbalance="step", rho=100, mu=0.5, level=10, minority="random",
        methods=["ros", "rus"]),
    "cifar10/step": dict(
        title="CIFAR-10: step imbalance",
        about="The paper's Figure 4 (CIFAR-10, All-CNN): one grid point of step imbalance.  The defaults "
              "run a tiny LeNet job on `mnist-sample` in under a minute; `params/cifar10/step.yaml` runs it "
              "with `dataset: cifar10` and `recipe: allcnn-cifar10`.",
        params="params/cifar10/step.yaml", imbalance="step", rho=10, mu=0.5, level=None, minority="lowest",
        methods=["baseline", "ros", "rus", "baseline-thresh"]),
    "cifar10/linear": dict(
        title="CIFAR-10: linear imbalance",
        about="The paper's Figure 5 (CIFAR-10, All-CNN): one grid point of linear imbalance.  The defaults run "
              "a tiny LeNet job on `mnist-sample`; `params/cifar10/linear.yaml` runs it with `dataset: cifar10` "
              "and `recipe: allcnn-cifar10`.",
        params="params/cifar10/linear.yaml", imbalance="linear", rho=10, mu=None, level=None, minority="lowest",
        methods=["baseline", "ros", "rus", "baseline-thresh"]),
    "cifar10/convergence": dict(
        title="CIFAR-10: convergence",
        about="The paper's Figure 8 (CIFAR-10, All-CNN): train and test accuracy along training for each "
              "method at one step-imbalanced grid point.  The defaults run a tiny LeNet job on `mnist-sample`; "
              "`params/cifar10/convergence.yaml` runs it with `dataset: cifar10` and `recipe: allcnn-cifar10`.",
        params="params/cifar10/convergence.yaml", imbalance="step", rho=10, mu=0.5, level=None, minority="lowest",
        methods=["baseline", "ros", "rus"], recipe_overrides={"iterations": 100, "eval_interval": 20},
        extra=CURVES_CELL),
    "imagenet/subsets": dict(
        title="ImageNet subsets (ILSVRC-2012)",
        about="The paper's Table 4: ResNet-10 on step-imbalanced subsets of ILSVRC-2012, read from an "
              "image folder (`<data_root>/train/<class>/*`, `<data_root>/val/<class>/*`).  This notebook "
              "needs that folder and a GPU; it is not executed by the tests.",
        params="params/imagenet/subsets.yaml", imbalance="step", rho=10, mu=0.1, level=None, minority="scarcity",
        methods=ALL_METHODS, dataset="imagefolder", recipe="resnet10-imagenet", recipe_overrides={},
        device="cuda", batched=False, execute=False,
        defaults="Its defaults are the study's first grid point, on a GPU."),
    "own/study": dict(
        title="Your own data: one grid point of any dataset",
        about="The training notebook of a params file without `notebook:` (README, \"Your own data\"): any "
              "dataset (an image folder, an `.npz`, or a built-in one), any imbalance, `natural` included (the "
              "data's own class counts, one grid point), with a validation split for `val_*` metrics and the "
              "τ of `-la` methods.  The defaults run LeNet-5 briefly on `mnist-sample` at its own class counts.",
        params="examples/skewed.yaml", imbalance="natural", rho=None, mu=None, level=None, minority="random",
        methods=["baseline", "ros", "weighted-ce", "baseline-la"], validation=0.1),
}

PARAMETER_KEYS = ("dataset", "validation", "imbalance", "rho", "mu", "level", "minority", "methods", "recipe", "recipe_overrides",
                  "device", "batched")  # the values a TRAINING entry may set
# Each value's comment is the line above it: papermill's parameter parser skips a line with a second
# '=' (as in an inline comment "None = ..."), then warns "Passed unknown parameter" on every run.


def parameters_cell(values: dict) -> str:
    """The parameters cell of a training notebook: every one of NOTEBOOK_PARAMETERS (the runner's single
    list), each with its comment, its value from `values` or else the notebook default."""
    lines = ['# %% tags=["parameters"]']
    for name, (default, what) in NOTEBOOK_PARAMETERS.items():
        lines += [f"# {line}" for line in what.split("\n")]
        lines.append(f"{name} = {Literal.of(values.get(name, default))}")
    return "\n".join(lines) + "\n"


TRAINING_BODY = '''\
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
'''


class Literal(str):
    """A value's Python literal, strings in double quotes (as the parameters cell reads best)."""

    @classmethod
    def of(cls, value) -> Literal:
        if isinstance(value, str):
            return cls(json.dumps(value, ensure_ascii=False))
        if isinstance(value, (list, tuple)):
            return cls("[" + ", ".join(cls.of(v) for v in value) + "]")
        if isinstance(value, dict):
            return cls("{" + ", ".join(f"{cls.of(k)}: {cls.of(v)}" for k, v in value.items()) + "}")
        return cls(repr(value))

    def __format__(self, spec) -> str:
        return str(self)


def markdown(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 100, initial_indent="# ", subsequent_indent="# "))


def training_source(name: str) -> str:
    spec = TRAINING[name]
    values = dict(dataset="mnist-sample", recipe="lenet5-mnist", device="auto", batched=True, validation=None,
                  recipe_overrides={"iterations": 100, "eval_interval": 50})
    values.update({k: v for k, v in spec.items() if k in PARAMETER_KEYS})
    header = (f"# %% [markdown]\n# # {spec['title']}\n#\n{markdown(spec['about'])}\n#\n"
              + markdown(f"The runner executes this notebook once per grid point of `{spec['params']}` "
                         "(`imbalance run` passes the parameters below and collects the records it writes).  "
                         + spec.get("defaults", "With its defaults it is a run of under a minute on a CPU."))
              + "\n\n")
    return (header + parameters_cell(values) + "\n" + TRAINING_BODY
            + spec.get("extra", ""))


# --- figures, explorer ------------------------------------------------------------------------

FIGURES = '''\
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
'''

EXPLORE = '''\
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
'''


OTHER = {"figures": dict(source=FIGURES, execute=True), "explore": dict(source=EXPLORE, execute=True)}


def sources() -> dict[str, tuple[str, bool]]:
    """name -> (py:percent source without the jupytext header, execute at build time?)."""
    out = {name: (training_source(name), TRAINING[name].get("execute", True)) for name in TRAINING}
    out.update({name: (spec["source"], spec["execute"]) for name, spec in OTHER.items()})
    return out


# --- build ------------------------------------------------------------------------------------

def notebook_from(name: str, source: str):
    import jupytext
    nb = jupytext.reads(source, fmt="py:percent")
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["jupytext"] = {"formats": FORMATS}   # and jupytext's default header in the .py
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name.replace('/', '-')}-{i}"   # stable ids: rebuilding changes no id
    return nb


def execute(nb, cwd: Path, *, timeout: int = 600):
    from nbclient import NotebookClient
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(LIB)] + ([env_path] if env_path else []))
    try:
        NotebookClient(nb, kernel_name=KERNEL["name"], timeout=timeout, resources={"metadata": {"path": str(cwd)}},
                       record_timing=False).execute()
    finally:
        if env_path:
            os.environ["PYTHONPATH"] = env_path
        else:
            os.environ.pop("PYTHONPATH")
    return nb


def build(name: str, *, run: bool = True) -> Path:
    import jupytext
    import nbformat
    source, executable = sources()[name]
    nb = notebook_from(name, source)
    path = HERE / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    if run and executable:
        execute(nb, path.parent)
    nbformat.write(nb, path)
    jupytext.write(nb, path.with_suffix(".py"), fmt="py:percent")   # written last: the newer of the pair
    return path


def cells(nb) -> list[tuple[str, str, tuple]]:
    """What a notebook's pair must agree on: each cell's type, source and tags."""
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def check() -> list[str]:
    """Differences between the notebooks on disk (.ipynb and .py) and this file's sources."""
    import jupytext
    problems = []
    for name, (source, _) in sources().items():
        want = cells(notebook_from(name, source))
        for suffix in (".ipynb", ".py"):
            path = HERE / f"{name}{suffix}"
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif cells(jupytext.read(path)) != want:
                problems.append(f"{path} differs from notebooks/build.py (run: python notebooks/build.py {name})")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"notebooks to build (default: all): {', '.join(sources())}")
    parser.add_argument("--no-execute", action="store_true", help="write sources only, without outputs")
    parser.add_argument("--check", action="store_true", help="only check that the notebooks match this file")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        print("\n".join(problems) or "notebooks match notebooks/build.py")
        return 1 if problems else 0
    unknown = sorted(set(args.names) - set(sources()))
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; choose from {', '.join(sources())}")
    for name in args.names or sources():
        print(f"building notebooks/{name}.ipynb", flush=True)
        build(name, run=not args.no_execute)
    return 0


if __name__ == "__main__":
    sys.exit(main())
