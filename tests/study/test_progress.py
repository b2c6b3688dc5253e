"""Progress inside a grid point: train_networks / run_grid_point report networks x iterations, the
notebook writes them to a progress file, and the runner's one bar reads it."""
import json

import numpy as np
import pytest
from fixtures.kernel import ensure_kernel
from fixtures.studies import NOTEBOOKS, fake_params
from imbalance.data.datasets import load_dataset
from imbalance.study import runner
from imbalance.study.executors import ProgressFile, read_progress
from imbalance.study.params import load_params
from imbalance.training.batched import NetworkSpec, train_networks
from imbalance.training.pipeline import run_grid_point
from imbalance.training.recipes import RECIPES, recipe_with


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-sample")


def _recorder():
    calls = []
    return calls, lambda done, total: calls.append((done, total))


@pytest.mark.parametrize("layout", ["single", "threads", "vmap"])
def test_train_networks_reports_every_network_iteration_once_in_every_layout(digits, layout):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=6, eval_interval=3, batch_size=8)
    specs = [NetworkSpec(indices=np.arange(200), init_seed=k, batch_seed=k) for k in range(2)] + \
        [NetworkSpec(indices=np.arange(200), init_seed=2, batch_seed=2, lr_scale=1e8)]     # diverges early
    calls, callback = _recorder()
    results = train_networks(specs, digits.train_images, digits.train_labels, recipe, n_classes=10, layout=layout,
                             workers=2, progress=False, progress_callback=callback)
    assert results[2].diverged
    done = [d for d, _ in calls]
    assert {t for _, t in calls} == {3 * 6}
    assert done == sorted(done) and done[-1] == 3 * 6          # monotone; the diverged network's rest credited
    assert len(done) > 3                                         # inside networks, not once per network


def test_run_grid_point_reports_over_all_its_networks_second_stages_included(digits):
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=4, eval_interval=2, batch_size=8)
    calls, callback = _recorder()
    run_grid_point(digits, imbalance="step", rho=10, mu=0.5, methods=["baseline", "ros", "two-phase-ros",
                                                                         "baseline-thresh"],
                   repeats=2, recipe=recipe, device="cpu", layout="single", progress=False,
                   progress_callback=callback)
    # trained per repeat: the 'none' and 'ros' phase-1 networks and the two-phase copy (thresh reuses one)
    total = 2 * 3 * 4
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total and len(set(done)) == total


def test_the_runner_counts_a_crt_head_as_the_ninth_of_a_network_the_point_reports(digits):
    """cRT's head trains a ninth of the iterations: the runner's bar total for a point is what run_grid_point
    reports (baseline 18 + crt's head round(18/9) = 2 per repeat)."""
    recipe = recipe_with(RECIPES["lenet5-mnist"], iterations=18, eval_interval=9, batch_size=8)
    calls, callback = _recorder()
    run_grid_point(digits, imbalance="step", rho=10, mu=0.5, methods=["baseline", "crt"], repeats=2, recipe=recipe,
                   device="cpu", layout="single", progress=False, progress_callback=callback)
    assert {t for _, t in calls} == {2 * (18 + 2)} and calls[-1][0] == 2 * (18 + 2)
    import dataclasses
    from pathlib import Path
    quick = load_params(Path(__file__).resolve().parents[2] / "params" / "quick.yaml")
    assert runner._trainings(dataclasses.replace(quick, methods=("baseline", "crt"))) == pytest.approx(1 + 1 / 9)


def test_progress_file_is_written_atomically_at_most_once_per_interval(tmp_path):
    path = tmp_path / "p" / "point.json"
    report = ProgressFile(path, interval=3600)
    assert read_progress(path) is None                            # nothing yet
    report(5, 100)
    assert json.loads(path.read_text()) == {"done": 5, "total": 100} and read_progress(path) == 0.05
    report(50, 100)                                                # within the interval: not written
    assert read_progress(path) == 0.05
    report(100, 100)                                               # the end is always written
    assert read_progress(path) == 1.0
    assert [p.name for p in path.parent.iterdir()] == ["point.json"]   # no temporary file left
    path.write_text("{not json")
    assert read_progress(path) is None                             # a display, never an error


@pytest.mark.slow
def test_the_runner_bar_moves_inside_a_point_from_the_notebook_s_progress_file(tmp_path, monkeypatch):
    ensure_kernel()
    seen = []

    def spy(path):
        fraction = read_progress(path)
        seen.append(fraction)
        return fraction
    monkeypatch.setattr(runner, "read_progress", spy)
    params = load_params(fake_params(tmp_path, rho=(10,), mu=(0.5,), repeats=1, progress_steps=4))
    summary = runner.run_study(params, outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, workers=1,
                               quiet=False)
    assert summary.trained == 1
    inside = [f for f in seen if f is not None and 0 < f < 1]
    assert inside, seen                                   # the bar saw 1/4, 2/4 or 3/4 of the point
    assert not list((tmp_path / "out" / "fake" / "progress").glob("*.json"))   # files cleaned up


def test_the_runner_counts_network_iterations_per_point_from_the_recipe(tmp_path):
    params = load_params(fake_params(tmp_path, rho=(10,), mu=(0.5,), repeats=2))
    recipe = RECIPES["lenet5-mnist"]
    assert runner._point_iterations(params) == recipe.iterations * params.trained_per_point
