"""Your own data, end to end (README, "Your own data"): the example's skewed image folder through the
runner, the training notebook (notebooks/own/study) and the report; its .npz through the same library calls."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures.kernel import ensure_kernel
from imbalance.cli import main
from imbalance.study.params import expand_grid, load_params
from imbalance.study.store import Store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "skewed.yaml"
MAKE = ROOT / "examples" / "make_skewed_folder.py"
TINY = ["repeats=2", "recipe_overrides={iterations: 20, eval_interval: 10}"]
# ImageFolder numbers the classes in sorted folder order: eight (15), three (120), zero (300); a tenth of each
# (at least one) is held out for validation
CLASSES, TRAIN_COUNTS = ["eight", "three", "zero"], [13, 108, 270]


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    """The example folder and .npz, made by the README's command."""
    folder = tmp_path_factory.mktemp("own")
    for out, extra in ((folder / "skewed-digits", []), (folder / "skewed.npz", ["--npz"])):
        subprocess.run([sys.executable, str(MAKE), str(out), *extra], check=True, capture_output=True)
    return folder


@pytest.fixture(scope="module")
def folder_study(skewed):
    """The README's two commands on the image folder, shortened (2 repeats of 20 iterations)."""
    ensure_kernel()
    out = skewed / "out"
    sets = [x for s in [f"data_root={skewed / 'skewed-digits'}", *TINY] for x in ("--set", s)]
    assert main(["run", str(EXAMPLE), *sets, "--outputs", str(out), "--quiet",
                 "--notebooks", str(ROOT / "notebooks")]) == 0
    assert main(["report", str(EXAMPLE), *sets, "--outputs", str(out)]) == 0
    with Store(out / "skewed-digits" / "results.sqlite") as store:
        records = store.records_frame("skewed-digits")
        store.export("skewed-digits", out / "export.csv")
    return out / "skewed-digits", records


def test_the_example_params_file_is_short_and_defaults_its_notebook():
    params = load_params(EXAMPLE)
    assert params.notebook == "own/study" and params.imbalance == "natural" and params.validation == 0.1
    assert [p.point_id for p in expand_grid(params)] == ["natural"]


@pytest.mark.slow
def test_an_image_folder_keeps_its_natural_counts_and_named_classes(folder_study):
    _, records = folder_study
    assert len(records) == 6 * 2 and set(records["point_id"]) == {"natural"}
    assert all(c == TRAIN_COUNTS for c in records["class_counts"]) and all(c == CLASSES for c in records["classes"])
    assert np.allclose(records["rho"], 270 / 13) and records["mu"].isna().all()
    assert records["val_roc_auc"].between(0, 1).all() and (records["n_validation"] == 2 + 12 + 30).all()
    la = records[records["method"] == "baseline-la"]
    assert (la["tau_source"] == "validation").all()


def test_the_report_names_the_data_and_not_imagenet_nor_mnist(folder_study):
    study_dir, _ = folder_study
    html = (study_dir / "report.html").read_text()
    names = [p.name for p in (study_dir / "figures").iterdir()]
    assert names and not [n for n in names if "None" in n or "imagenet" in n]
    assert "Table 4 of the paper" not in html and "eight 13, three 108, zero 270" in html
    assert "natural (the data&#x27;s own class counts" in html or "natural (the data's own class counts" in html
    assert not re.search(r"MNIST \(the 5,000-digit", html)
    export = (study_dir.parent / "export.csv").read_text().splitlines()
    assert "classes" in export[0].split(",") and '"[""eight"", ""three"", ""zero""]"' in export[1]


def test_an_npz_runs_the_same_way_with_its_class_names(skewed):
    from imbalance.data.datasets import load_study_data
    from imbalance.training.pipeline import run_grid_point
    from imbalance.training.recipes import RECIPES, recipe_with
    params = load_params(EXAMPLE, [f"data_root={skewed / 'skewed.npz'}", "dataset=npz", *TINY])
    p = expand_grid(params)[0].parameters(params)
    data = load_study_data(p["dataset"], root=p["data_root"], image_size=p["image_size"], image_fit=p["image_fit"])
    result = run_grid_point(data, imbalance=p["imbalance"], rho=p["rho"], mu=p["mu"], methods=p["methods"],
                            repeats=1, recipe=recipe_with(RECIPES[p["recipe"]], **p["recipe_overrides"]),
                            validation=p["validation"], test_prior=p["test_prior"], point_id=p["point_id"],
                            device="cpu", progress=False)
    record = result.records[0]
    # the .npz keeps the maker's label order: zero (300), three (120), eight (15)
    assert record["classes"] == ["zero", "three", "eight"] and record["class_counts"] == [270, 108, 13]
    assert record["val_accuracy"] is not None and record["point_id"] == "natural"


@pytest.mark.parametrize("metric", ["macro_f1", "val_g_mean"])
def test_the_report_ranks_by_the_imbalanced_data_metrics(folder_study, metric):
    from imbalance.analysis import frames, report, tables
    study_dir, records = folder_study
    frame = frames.records_frame(records)
    best = frame.groupby("method")[metric].mean().idxmax()
    html = report.study_report("skewed-digits", study_dir.parent, save_figures=False,
                               settings=report.ReportSettings(metric=metric)).html()
    assert f"rank methods by {report.plots.METRICS[metric]}" in html
    winner = re.search(r"<td>ρ=20.7692</td><td>([\w-]+)</td>", html)
    assert winner and winner.group(1) == best
