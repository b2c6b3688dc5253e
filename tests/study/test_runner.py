"""The runner: papermill per grid point, one transaction per point, resume, claims, executors.

The notebook is tests/fixtures/notebooks/fake/step.ipynb: it trains nothing and writes
deterministic records, so these tests exercise the runner's mechanics in seconds.
"""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from fixtures.kernel import ensure_kernel
from fixtures.studies import NOTEBOOKS, done_points, fake_params, rows
from imbalance.cli import main
from imbalance.study import executors, runner
from imbalance.study.params import load_params, params_from_dict
from imbalance.study.runner import run_study
from imbalance.study.store import Store

LIB = Path(__file__).resolve().parents[2] / "lib"
BASE = {"study": "t", "dataset": "mnist-sample", "notebook": "fake/step", "imbalance": "step",
        "rho": [10], "mu": [0.5], "recipe": "lenet5-mnist"}
POINTS = 6  # the fake study: rho in {10, 100, 1000} x mu in {0.3, 0.7}
NETWORKS = POINTS * 8 * 2


@pytest.fixture(scope="module", autouse=True)
def kernel():
    ensure_kernel()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted local run of the fake study: (folder, params file, summary, rows)."""
    folder = tmp_path_factory.mktemp("reference")
    path = fake_params(folder)
    summary = run_study(load_params(path), outputs_dir=folder / "out", notebooks_dir=NOTEBOOKS,
                        workers=2, quiet=True)
    return folder, path, summary, rows(folder / "out" / "fake" / "results.sqlite")


def cli(path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "imbalance.cli", "run", str(path), "--outputs", str(out),
            "--notebooks", str(NOTEBOOKS), "--quiet", *extra]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(LIB), os.environ.get("PYTHONPATH", "")])}


def wait_for_done(db: Path, n: int, proc: subprocess.Popen, timeout: float = 90) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = done_points(db) if db.is_file() else set()
        except sqlite3.OperationalError:  # the schema is not there yet
            done = set()
        if len(done) >= n:
            return done
        time.sleep(0.1)
    raise AssertionError(f"{n} points not done within {timeout} s (runner exit code {proc.poll()})")


def test_local_run_records_every_network_of_every_point(reference):
    folder, _, summary, got = reference
    assert (summary.trained, summary.skipped, summary.failed, summary.records) == (POINTS, 0, 0, NETWORKS)
    assert len(got) == len(set(got)) == NETWORKS
    study = folder / "out" / "fake"
    assert len(list((study / "notebooks").glob("*.ipynb"))) == POINTS  # kept, one per point
    with Store(study / "results.sqlite") as s:
        assert s.status("fake", {r[0] for r in got}) == dict(done=POINTS, running=0, failed=0, pending=0)
        assert len(s.curves_frame("fake")) == NETWORKS * 2


def test_a_done_study_trains_nothing_and_says_so(reference, capsys):
    folder, path, _, expected = reference
    summary = run_study(load_params(path), outputs_dir=folder / "out", notebooks_dir=NOTEBOOKS, quiet=True)
    assert (summary.trained, summary.skipped) == (0, POINTS)
    assert f"all {POINTS} grid points already done; nothing to train" in capsys.readouterr().out
    assert rows(folder / "out" / "fake" / "results.sqlite") == expected


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_uninterrupted_rows(tmp_path, reference):
    path, db = fake_params(tmp_path, sleep_s=1.0), tmp_path / "out" / "fake" / "results.sqlite"
    proc = subprocess.Popen(cli(path, tmp_path / "out", "--workers", "1"), env=env())
    wait_for_done(db, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = done_points(db)
    assert 2 <= len(done) < POINTS, "the kill must land mid-grid"
    assert {r[0] for r in rows(db)} == done  # the point killed half-way left no rows

    second = subprocess.run(cli(path, tmp_path / "out", "--workers", "2"),   # the same settings: resumed
                            env=env(), capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert f"{POINTS - len(done)} trained" in second.stdout and f"{len(done)} skipped" in second.stdout
    assert rows(db) == reference[3]
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM points WHERE status != 'done'").fetchone()[0] == 0


def test_two_runners_on_one_study_train_each_point_once(tmp_path, reference):
    log = tmp_path / "executions.log"
    path = fake_params(tmp_path, sleep_s=0.5, log_path=log)
    procs = [subprocess.Popen(cli(path, tmp_path / "out", "--workers", "1"), env=env(),
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=150)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert rows(tmp_path / "out" / "fake" / "results.sqlite") == reference[3]
    executed = Counter(log.read_text().split())
    assert len(executed) == POINTS and set(executed.values()) == {1}, executed
    assert sum(int(o.split(" trained")[0].rsplit(" ", 1)[1]) for o in outs) == POINTS


@pytest.mark.slow
def test_dask_executor_gives_the_local_rows(tmp_path, reference):
    path = fake_params(tmp_path)
    summary = run_study(load_params(path), executor="dask", workers=2, outputs_dir=tmp_path / "out",
                        notebooks_dir=NOTEBOOKS, quiet=True)
    assert summary.trained == POINTS
    assert rows(tmp_path / "out" / "fake" / "results.sqlite") == reference[3]


def test_a_failing_point_is_marked_failed_with_its_error_and_a_deterministic_one_is_not_retried(tmp_path):
    log = tmp_path / "executions.log"
    path = fake_params(tmp_path, rho=(10, 100), mu=(0.5,), fail_rho=100, log_path=log)
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS,
                        workers=2, quiet=True, max_attempts=2)
    assert (summary.trained, summary.failed) == (1, 1)
    assert Counter(log.read_text().split())["step_rho=100_mu=0.5"] == 1  # the notebook's own RuntimeError recurs: once
    with Store(tmp_path / "out" / "fake" / "results.sqlite") as s:
        failed = [p for p in s.points("fake") if p["status"] == "failed"]
        assert [p["point_id"] for p in failed] == ["step_rho=100_mu=0.5"]
        assert "RuntimeError: fake failure at rho=100" in failed[0]["error"]
        assert failed[0]["attempts"] == 1
        assert s.done_points("fake") == {"step_rho=10_mu=0.5"}
    assert "fake failure at rho=100" in summary.errors["step_rho=100_mu=0.5"]


@pytest.mark.slow
def test_a_cell_that_outruns_cell_timeout_fails_its_point_instead_of_holding_it(tmp_path):
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,), sleep_s=120)     # a hung cell, as far as the runner knows
    started = time.monotonic()
    summary = run_study(load_params(path, ["cell_timeout=3"]), outputs_dir=tmp_path / "out",
                        notebooks_dir=NOTEBOOKS, workers=1, quiet=True, max_attempts=1)
    assert time.monotonic() - started < 60
    assert (summary.trained, summary.failed) == (0, 1)
    assert "cell_timeout" in summary.errors["step_rho=10_mu=0.5"]
    with Store(tmp_path / "out" / "fake" / "results.sqlite") as s:
        assert [p["status"] for p in s.points("fake")] == ["failed"]


def test_a_worker_that_dies_has_its_point_retried(tmp_path):
    marker = tmp_path / "killed-once"
    path = fake_params(tmp_path, rho=(10, 100), mu=(0.5,), kill_worker_rho=10, kill_marker=marker)
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS,
                        workers=1, quiet=True, max_attempts=2)
    assert marker.exists()  # the worker process was killed once
    assert (summary.trained, summary.failed) == (2, 0)


def test_dry_run_prints_grid_counts_and_estimate_and_trains_nothing(tmp_path, capsys, monkeypatch):
    timing = runner.PointTiming("step_rho=10_mu=0.3", fixed=2.0, per_iteration=0.05, iterations=100, lengths=(10, 20))
    monkeypatch.setattr(runner, "time_point", lambda params, point, **kw: timing)
    path = fake_params(tmp_path)
    summary = run_study(load_params(path, ["recipe_overrides.iterations=100"]), dry_run=True, workers=2,
                        outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS)
    out = capsys.readouterr().out
    assert "  step_rho=1000_mu=0.7\n" in out and f"{POINTS} grid points (0 done, {POINTS} to train)" in out
    assert f"records: {POINTS} points x 8 methods x 2 repeats = {NETWORKS}" in out
    assert "methods: baseline, ros, rus, two-phase-ros, two-phase-rus, baseline-thresh, ros-thresh, rus-thresh\n" in out
    assert f"trained networks: {POINTS} points x 5 trained methods x 2 repeats = {POINTS * 10}" in out
    assert ("about 21.0 s: 6 points on 2 worker(s), 7.0 s per point (step_rho=10_mu=0.3's real batched job timed "
            "here at 10 and 20 iterations: 2.0 s + 50.0 ms per iteration x 100 iterations)") in out
    assert summary.trained == 0 and not (tmp_path / "out").exists()


def test_a_recorded_dry_run_estimate_is_the_printed_one_and_is_read_back_checked(tmp_path, capsys, monkeypatch):
    from imbalance.study import estimates
    timing = runner.PointTiming("step_rho=10_mu=0.3", fixed=2.0, per_iteration=0.05, iterations=100, lengths=(10, 20))
    monkeypatch.setattr(runner, "time_point", lambda params, point, **kw: timing)
    params = load_params(fake_params(tmp_path), ["recipe_overrides.iterations=100"])
    with pytest.raises(ValueError, match="record_estimate .* needs dry_run"):
        run_study(params, record_estimate=True, workers=2, outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS)
    (tmp_path / "out").mkdir()
    run_study(params, dry_run=True, record_estimate=True, workers=2, outputs_dir=tmp_path / "out",
              notebooks_dir=NOTEBOOKS)
    entry = estimates.read(tmp_path / "out")[params.study]
    assert entry["seconds"] == 21.0 and entry["points"] == POINTS and entry["workers"] == 2     # 3 rounds x 7.0 s
    assert entry["text"] in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "out").iterdir()] == [estimates.ESTIMATES_FILE]      # nothing else written
    (tmp_path / "out" / estimates.ESTIMATES_FILE).write_text('{"s": {"seconds": "__import__(\'os\')"}}')
    with pytest.raises(ValueError, match="entry 's' must have exactly the fields"):
        estimates.read(tmp_path / "out")


def test_dry_run_refuses_a_changed_study_as_run_does(reference, capsys):
    folder, path, _, _ = reference
    code = main(["run", str(path), "--set", "repeats=3", "--outputs", str(folder / "out"),
                 "--notebooks", str(NOTEBOOKS), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "repeats: 2 then, 3 now" in err


@pytest.mark.slow
def test_the_timed_point_predicts_the_real_jobs_wall_time_within_a_factor_of_1_5():
    """The dry run's figure against the job itself, on one thread.  The machine is shared, so the
    probe and the job are timed twice each and the faster probe must land within x1.5 of one of the two jobs."""
    import torch
    from imbalance.data.datasets import load_dataset
    from imbalance.training import pipeline as methods
    from imbalance.training import recipes
    params = params_from_dict({**BASE, "methods": ["baseline"], "repeats": 1, "device": "cpu",
                               "recipe_overrides": {"iterations": 300, "eval_interval": 100}})
    point = runner.expand_grid(params)[0]
    # the probe, like the job, is timed twice (its first run can pay one-off costs of a busy machine)
    timing = min((runner.time_point(params, point, threads=1) for _ in range(2)), key=lambda t: t.seconds)
    data, actual, threads = load_dataset("mnist-sample"), [], torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(2):
            started = time.perf_counter()
            methods.run_grid_point(data, imbalance="step", rho=10, mu=0.5, methods=["baseline"], repeats=1,
                                   recipe=recipes.recipe_with(recipes.RECIPES["lenet5-mnist"], iterations=300,
                                                            eval_interval=100),
                                   device="cpu", point_id=point.point_id, progress=False)
            actual.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    assert any(a / 1.5 < timing.seconds < a * 1.5 for a in actual), (timing, actual)


def test_status_and_export_commands(reference, tmp_path, capsys):
    folder, path, _, _ = reference
    out = str(folder / "out")
    assert main(["status", str(path), "--outputs", out]) == 0
    assert f"fake: {POINTS} grid points: {POINTS} done, 0 running, 0 failed, 0 pending" in capsys.readouterr().out
    assert main(["export", str(path), str(tmp_path / "fake.csv"), "--outputs", out]) == 0
    assert len((tmp_path / "fake.csv").read_text().splitlines()) == NETWORKS + 1


@pytest.mark.parametrize("args, expected", [
    (["--set", "rhoo=5"], "unknown key 'rhoo' (in override 'rhoo=5'); did you mean 'rho'?"),
    (["--set", "mu=2"], "key 'mu': value 2 is not valid"),
    (["--executor", "slurm"], "executor 'slurm': expected local, dask, dask://HOST:PORT"),
    (["--notebooks", "/nonexistent"], "fake/step.ipynb not found"),
])
def test_bad_params_exit_2_with_the_message_and_no_traceback(tmp_path, capsys, args, expected):
    path = fake_params(tmp_path)
    code = main(["run", str(path), "--outputs", str(tmp_path / "out"), "--notebooks", str(NOTEBOOKS), *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_records_must_hold_one_network_per_method_and_repeat():
    expected = params_from_dict({**BASE, "methods": ["baseline"], "repeats": 2})
    ok = [{"method": "baseline", "repeat": 1}, {"method": "baseline", "repeat": 0}]
    assert runner._coverage_error(ok, expected, Path("nb.ipynb")) is None
    message = runner._coverage_error(ok[:1] * 2, expected, Path("nb.ipynb"))
    assert "missing [\"('baseline', 0)\"]" in message and "repeated [\"('baseline', 1)\"]" in message
    assert "unexpected or repeated [\"('baseline', 2)\"]" in runner._coverage_error(
        ok[:1] + [{"method": "baseline", "repeat": 2}], expected, Path("nb.ipynb"))


def test_a_billion_repeats_builds_nothing_per_repeat():
    # records are checked against (methods, repeats) without a Counter of methods x repeats entries
    huge = params_from_dict({**BASE, "methods": ["baseline"], "repeats": 100_000})
    message = runner._coverage_error([{"method": "baseline", "repeat": 0}], huge, Path("nb.ipynb"))
    assert message.startswith("nb.ipynb wrote records that are not one per (method, repeat)")


@pytest.mark.parametrize("executor, expected", [
    ("local", ("local", None)), ("dask", ("dask", None)),
    ("dask://sched:8786", ("dask", "tcp://sched:8786")), ("tcp://10.0.0.1:8786", ("dask", "tcp://10.0.0.1:8786")),
])
def test_executor_names(executor, expected):
    assert executors.parse_executor(executor) == expected


def test_rerunning_a_study_with_other_settings_is_refused(reference, capsys):
    folder, path, _, _ = reference
    code = main(["run", str(path), "--set", "repeats=3", "--outputs", str(folder / "out"),
                 "--notebooks", str(NOTEBOOKS), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "study 'fake'" in err and "repeats: 2 then, 3 now" in err


RECORD = {"method": "baseline", "repeat": 0, "roc_auc": 0.9, "curve": []}


def test_settings_added_later_keep_older_studies_running_and_refuse_other_values(tmp_path):
    """validation, test_prior, image_size and image_fit shape results: a study registered before they
    existed still matches at their defaults, and a study registered at one value refuses another."""
    from imbalance.study.params import load_params as load
    path = fake_params(tmp_path)
    params = load(path)
    with Store(tmp_path / "old.sqlite") as store:
        older = {k: v for k, v in runner._check_same_study(params, store).items() if k not in runner.LATER_KEYS}
        store.insert_point(params.study, "p", [RECORD], settings=older)      # registered before the keys
        assert runner._check_same_study(params, store) == older
        with pytest.raises(ValueError, match=r"validation: None then, 0.1 now"):
            runner._check_same_study(load(path, ["validation=0.1"]), store)
    with Store(tmp_path / "new.sqlite") as store:
        store.insert_point(params.study, "p", [RECORD],
                           settings=runner._check_same_study(load(path, ["test_prior=both"]), store))
        with pytest.raises(ValueError, match=r"test_prior: 'both' then, None now"):
            runner._check_same_study(params, store)


def test_points_with_their_own_repeats_get_that_many_networks_and_register_them(tmp_path):
    path = fake_params(tmp_path)
    raw = yaml.safe_load(path.read_text())
    del raw["rho"], raw["mu"]
    raw["points"] = [{"rho": 10, "mu": 0.3}, {"rho": 100, "mu": 0.7, "repeats": 3}]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True)
    got = Counter(point for point, *_ in rows(tmp_path / "out" / "fake" / "results.sqlite"))
    assert summary.failed == 0 and got == {"step_rho=10_mu=0.3": 8 * 2, "step_rho=100_mu=0.7": 8 * 3}
    raw["points"][1]["repeats"] = 4              # other repeats at a point: other results, refused
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ValueError, match=r"point_repeats: \[\[100, 0.7, 3\]\] then, \[\[100, 0.7, 4\]\] now"):
        run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True)


def test_per_point_repeats_set_the_coverage_expected_of_that_point():
    expected = params_from_dict({**BASE, "methods": ["baseline"], "repeats": 1})
    three = [{"method": "baseline", "repeat": r} for r in range(3)]
    assert runner._coverage_error(three, expected, Path("nb.ipynb"), repeats=3) is None
    assert "unexpected or repeated" in runner._coverage_error(three, expected, Path("nb.ipynb"))


def test_until_decided_adds_repeats_to_a_one_point_study_and_stops(tmp_path, capsys):
    """A one-point mnist-sample study (the fake notebook, with noisy scores): the pilot's 3 repeats, then the
    internal pilot's final n (capped at 5), trained once; repeats 0-2 are the stored networks again."""
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,), repeats=3, noise=0.004)
    raw = yaml.safe_load(path.read_text())
    raw["methods"] = ["baseline", "ros", "rus"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"
    args = ["run", str(path), "--outputs", str(out), "--notebooks", str(NOTEBOOKS), "--quiet", "--workers", "1",
            "--until-decided", "--max-repeats", "5"]
    assert main(args) == 0
    db = out / "fake" / "results.sqlite"
    got = Counter((method, repeat) for _, method, repeat, *_ in rows(db))
    assert set(got) == {(m, r) for m in ("baseline", "ros", "rus") for r in range(5)} and set(got.values()) == {1}
    design = yaml.safe_load((out / "fake" / "repeats.json").read_text())
    assert design["design"] == "internal pilot" and design["points"]["step_rho=10_mu=0.5"] == {"pilot": 3, "final": 5}
    assert "internal pilot" in capsys.readouterr().out
    assert main(args) == 0                                   # the design re-estimates once: a second run adds nothing
    assert len(rows(db)) == 15 and "nothing to add" in capsys.readouterr().out
    from imbalance.analysis.report import study_report
    assert "internal pilot design" in study_report("fake", out, save_figures=False).html()


def test_an_interrupted_until_decided_run_resumes_toward_its_recorded_final_n(tmp_path, capsys):
    """The design is written before any repeat is trained: a run stopped part-way (here: design recorded, nothing
    added) resumes toward the recorded final n (4), not a new estimate (the pilot alone would set 5), and a
    different --max-repeats is refused before any training."""
    from imbalance.analysis.planning import internal_pilot_targets, write_design
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,), repeats=3, noise=0.004)
    raw = yaml.safe_load(path.read_text())
    raw["methods"] = ["baseline", "ros", "rus"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "out"
    common = ["run", str(path), "--outputs", str(out), "--notebooks", str(NOTEBOOKS), "--quiet", "--workers", "1"]
    assert main(common) == 0
    db, pid = out / "fake" / "results.sqlite", "step_rho=10_mu=0.5"
    from imbalance.analysis.frames import load_study
    assert internal_pilot_targets(load_study("fake", out)[0], max_repeats=5) == {pid: 5}
    write_design(out / "fake", targets={pid: 4}, pilot={pid: 3}, max_repeats=5, metric="roc_auc", margin=0.005)
    assert main([*common, "--until-decided", "--max-repeats", "6"]) != 0
    assert "--max-repeats: 6 given" in capsys.readouterr().err and len(rows(db)) == 9
    assert main([*common, "--until-decided", "--max-repeats", "5"]) == 0
    assert "resuming the recorded design" in capsys.readouterr().out
    assert Counter(repeat for _, _, repeat, *_ in rows(db)) == {0: 3, 1: 3, 2: 3, 3: 3}
    assert main([*common, "--until-decided", "--max-repeats", "5"]) == 0
    assert "nothing to add" in capsys.readouterr().out and len(rows(db)) == 12
