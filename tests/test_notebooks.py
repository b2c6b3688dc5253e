"""The notebooks: parameters cells, jupytext pairs, committed outputs, and real executions
(mnist/step trains a tiny grid point; figures and explore run on a small synthetic database)."""
import ast
import importlib.util
import io
import os
import tokenize
from pathlib import Path

import jupytext
import nbformat
import pytest
from browser.study import make_database
from fixtures.kernel import ensure_kernel
from imbalance.study.params import expand_grid, load_params

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LIB = ROOT / "lib"
TRAINING = ["mnist/step", "mnist/linear", "mnist/graded", "cifar10/step", "cifar10/linear", "cifar10/convergence",
            "imagenet/subsets", "own/study"]
ALL = TRAINING + ["figures", "explore"]
UNEXECUTED = {"imagenet/subsets"}   # needs an ILSVRC-2012 folder
CELL_TIMEOUT = 300   # s per cell: papermill/nbclient can hang on a lost kernel reply (nteract/papermill#711)


def _load_build():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def read(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def parameters(nb) -> dict:
    return {node.targets[0].id: ast.literal_eval(node.value)
            for node in ast.parse(code_cells(nb)[0].source).body}


@pytest.fixture
def kernel(monkeypatch):
    """The `imbalance` kernel, able to import this package (as the runner arranges)."""
    name = ensure_kernel()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(LIB), os.environ.get("PYTHONPATH")])))
    return name


def test_the_notebooks_are_these():
    found = sorted(str(p.relative_to(NOTEBOOKS).with_suffix("")) for p in NOTEBOOKS.rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
    assert found == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
def test_one_parameters_cell_first_of_plain_literals_with_comments(name):
    nb = read(name)
    cells = code_cells(nb)
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [0], f"{name}: the first code cell, and only it, must be tagged 'parameters'"
    source = cells[0].source
    tree = ast.parse(source)
    assert tree.body, f"{name}: empty parameters cell"
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), \
            f"{name}: line {node.lineno} is not `name = literal`"
        ast.literal_eval(node.value)   # raises unless a plain literal
    commented = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                 if tok.type == tokenize.COMMENT}
    for node in tree.body:   # beside the value, or (training notebooks: papermill parses those) above it
        assert {node.lineno, node.lineno - 1} & commented, f"{name}: parameter {node.targets[0].id!r} has no comment"


@pytest.mark.parametrize("name", TRAINING)
def test_training_notebooks_take_every_runner_parameter(name):
    params = load_params(ROOT / "params" / "quick.yaml")
    passed = set(expand_grid(params)[0].parameters(params)) | {"records_path", "threads"}
    assert passed <= set(parameters(read(name))), f"{name} lacks {sorted(passed - set(parameters(read(name))))}"
    assert parameters(read(name))["records_path"] is None


@pytest.mark.parametrize("name", ALL)
def test_pairs_match_and_follow_build_py(name):
    nb = read(name)
    assert nb.metadata["kernelspec"]["name"] == "imbalance"
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    paired = jupytext.read(NOTEBOOKS / f"{name}.py")
    assert build.cells(paired) == build.cells(nb), f"{name}.py and {name}.ipynb differ: rebuild them"
    assert build.cells(nb) == build.cells(build.notebook_from(name, build.sources()[name][0])), \
        f"notebooks/{name} differs from notebooks/build.py: run `python notebooks/build.py {name}`"


@pytest.mark.parametrize("name", ALL)
def test_committed_outputs_for_nbval(name):
    """nbval compares the cells marked NBVAL_CHECK_OUTPUT with the committed outputs."""
    cells = code_cells(read(name))
    if name in UNEXECUTED:
        assert not any(c.outputs for c in cells)
        return
    assert all(c.execution_count for c in cells), f"{name}: not executed with its defaults (notebooks/build.py)"
    assert not any(o.output_type == "error" for c in cells for o in c.outputs)
    checked = [c for c in cells if "NBVAL_CHECK_OUTPUT" in c.source]
    if name in TRAINING:
        assert len(checked) == 1 and checked[0].outputs, f"{name}: the class counts are what nbval checks"


def class_counts_output(nb) -> str:
    cell = next(c for c in code_cells(nb) if "NBVAL_CHECK_OUTPUT" in c.source)
    return "".join(o["data"]["text/plain"] for o in cell.outputs if "data" in o)


@pytest.mark.slow
def test_mnist_step_writes_records(kernel, tmp_path):
    """The runner's way: papermill, the `imbalance` kernel, default parameters + records_path."""
    import papermill as pm
    from imbalance.schema import NETWORK_FIELDS
    from imbalance.study.store import read_records
    records_path = tmp_path / "records.json"
    executed = tmp_path / "step.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "mnist" / "step.ipynb"), str(executed), kernel_name=kernel,
                        parameters={"records_path": str(records_path), "threads": 2}, progress_bar=False,
                        cwd=str(NOTEBOOKS / "mnist"), language="python", execution_timeout=CELL_TIMEOUT)
    records = read_records(records_path)
    defaults = parameters(read("mnist/step"))
    assert len(records) == len(defaults["methods"]) * defaults["repeats"]
    assert {r["method"] for r in records} == set(defaults["methods"])
    for record in records:
        assert set(record) <= set(NETWORK_FIELDS) | {"curve"}
        assert (record["rho"], record["mu"], record["dataset"]) == (10, 0.5, "mnist-sample")
        assert 0.5 < record["roc_auc"] <= 1 and record["iterations"] == 100
    # what nbval will compare: the class counts are the committed ones
    assert class_counts_output(nbformat.read(executed, as_version=4)) == class_counts_output(read("mnist/step"))


@pytest.mark.slow
def test_figures_and_explorer_notebooks_on_a_small_database(kernel, tmp_path):
    """Run all cells, as a reader would: the figures notebook shows the report (no code, figures
    saved), the explorer shows its controls (a widget view, with a static first view beside it)."""
    import papermill as pm
    outputs = tmp_path / "outputs"
    make_database(outputs, "tiny", kinds=("step", "linear", "graded", "imagenet"))
    shown = {}
    for name in ("figures", "explore"):
        executed = tmp_path / f"{name}.ipynb"
        pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(executed), kernel_name=kernel, progress_bar=False,
                            parameters={"study": "tiny", "outputs_dir": str(outputs)}, cwd=str(NOTEBOOKS),
                            execution_timeout=CELL_TIMEOUT)
        nb = nbformat.read(executed, as_version=4)
        cells = [c for c in code_cells(nb) if "injected-parameters" not in c.metadata.get("tags", [])]   # papermill's
        assert len(cells) == 2 and cells[1].metadata.get("jupyter", {}).get("source_hidden"), \
            f"{name}: a parameters cell and one call, its input hidden"
        outputs_of = [o for o in cells[1].outputs if o.output_type in ("execute_result", "display_data")]
        assert len(outputs_of) == 1, f"{name}: one result, got {[o.output_type for o in cells[1].outputs]}"
        shown[name] = outputs_of[0]["data"]
    report_html = shown["figures"]["text/html"]
    assert "data:image/png;base64" in report_html and "Figure 7 of the paper" in report_html
    assert str(outputs) not in report_html
    figures = sorted(p.name for p in (outputs / "tiny" / "figures").iterdir())
    for stem in ("fig1_profiles", "fig3_auc_vs_rho_mnist-sample", "fig4_auc_vs_mu_mnist-sample", "fig5_linear",
                 "fig6_thresholding_mnist-sample", "fig7_graded", "fig8_curves", "table4_imagenet"):
        assert f"{stem}.png" in figures and f"{stem}.svg" in figures
    assert "application/vnd.jupyter.widget-view+json" in shown["explore"]
    assert not shown["explore"]["text/plain"].startswith("VBox(")
    assert "data:image/png;base64" in shown["explore"]["text/html"]


def test_write_report_needs_a_database(tmp_path):
    from imbalance.analysis import report
    with pytest.raises(FileNotFoundError, match="imbalance run"):
        report.write_report("nothing", tmp_path)
