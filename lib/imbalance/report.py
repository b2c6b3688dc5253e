"""A study's report: the figures notebook executed on its database, and its HTML.

`write_report(study)` runs notebooks/figures.ipynb with papermill on the `imbalance` kernel (it
saves every figure the records allow under outputs/<study>/figures/) into
outputs/<study>/report.ipynb, then converts that to outputs/<study>/report.html (no prompts), so
results can be read without Jupyter. `imbalance report PARAMS` and `make study` call it.
"""
from __future__ import annotations

import os
from pathlib import Path

from imbalance.executors import kernel_env

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"


def write_report(study: str, outputs_dir: str | os.PathLike = "outputs", *, notebook: str | os.PathLike | None = None,
                 kernel_name: str = "imbalance", timeout: float | None = 600) -> Path:
    """Execute notebooks/figures.ipynb for `study` (papermill, kernel `kernel_name`) into
    outputs/<study>/report.ipynb (it saves the figures under outputs/<study>/figures/), then
    convert it to outputs/<study>/report.html (nbconvert, no prompts).  Returns the HTML's path."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    outputs = Path(outputs_dir).resolve()
    study_dir = outputs / study
    if not (study_dir / "results.sqlite").is_file():
        raise FileNotFoundError(f"{study_dir / 'results.sqlite'} not found: study {study!r} has no results "
                                f"yet; run it first (imbalance run params/<file>.yaml)")
    notebook = Path(notebook) if notebook is not None else NOTEBOOKS_DIR / "figures.ipynb"
    if not notebook.is_file():
        raise FileNotFoundError(f"figure notebook {notebook} not found")
    executed = study_dir / "report.ipynb"
    with kernel_env(None):
        pm.execute_notebook(str(notebook), str(executed), parameters={"study": study, "outputs_dir": str(outputs)},
                            kernel_name=kernel_name, language="python", progress_bar=False, log_output=False,
                            cwd=str(notebook.parent), execution_timeout=timeout)
    exporter = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    html = study_dir / "report.html"
    html.write_text(body, encoding="utf-8")
    return html
