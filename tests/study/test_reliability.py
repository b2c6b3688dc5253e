"""Issue 16: results never silently wrong or lost, failures before training, early stops, clean errors.

Runs use the fake notebook (tests/fixtures/notebooks/fake/step.ipynb) or the stub executor
(tests/fixtures/stub.py), so nothing trains.
"""
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import yaml
from fixtures.kernel import ensure_kernel
from fixtures.stub import StubPool
from fixtures.studies import NOTEBOOKS, fake_params
from imbalance.cli import main
from imbalance.study import executors, runner
from imbalance.study.params import RUNNER_PARAMETERS, load_params
from imbalance.study.runner import run_study
from imbalance.study.store import Store, error_line

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ["mnist/step", "mnist/linear", "mnist/graded", "cifar10/step", "cifar10/linear",
            "cifar10/convergence", "imagenet/subsets"]


@pytest.fixture(scope="module")
def done_study(tmp_path_factory):
    """A finished fake study of two points, run through papermill: (folder, params file)."""
    ensure_kernel()
    folder = tmp_path_factory.mktemp("done")
    path = fake_params(folder, rho=(10, 100), mu=(0.5,))
    summary = run_study(load_params(path), outputs_dir=folder / "out", notebooks_dir=NOTEBOOKS, workers=1, quiet=True)
    assert summary.trained == 2
    return folder, path


@pytest.fixture
def study(done_study, tmp_path):
    """A private copy of the finished study: (params file, outputs folder, database)."""
    folder, path = done_study
    shutil.copytree(folder / "out", tmp_path / "out")
    return path, tmp_path / "out", tmp_path / "out" / "fake" / "results.sqlite"


def tables(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order."""
    with sqlite3.connect(db) as con:
        return {"networks": con.execute("SELECT * FROM networks ORDER BY id").fetchall(),
                "curves": con.execute("SELECT * FROM curves ORDER BY network_id, iteration").fetchall(),
                "studies": con.execute("SELECT * FROM studies").fetchall(),
                "points": con.execute("SELECT * FROM points WHERE status = 'done' ORDER BY point_id").fetchall()}


def damage(db: Path) -> None:
    """8 KB of garbage in the middle of the file."""
    data = bytearray(db.read_bytes())
    middle = len(data) // 2 - 4096
    data[middle:middle + 8192] = bytes(range(256)) * 32
    db.write_bytes(bytes(data))


def cli(capsys, *args) -> tuple[int, str]:
    """Run the command line: (exit code, stderr); stdout is kept in cli.out."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    cli.out = captured.out
    return code, captured.err


# --- the database is checked on open ------------------------------------------------------------

def test_a_damaged_database_stops_run_status_export_and_report(study, capsys):
    path, out, db = study
    damage(db)
    for command in (["run", path, "--notebooks", NOTEBOOKS, "--quiet"], ["status", path], ["export", path, out / "x.csv"],
                    ["report", path]):
        code, err = cli(capsys, *command, "--outputs", out)
        assert code == 2 and f"{db} is damaged" in err and "imbalance rebuild PARAMS" in err, (command, err)
        assert len(err.strip().splitlines()) == 1
    assert not (out / "x.csv").exists()


def test_an_emptied_database_is_an_error_not_a_fresh_start(study, capsys):
    path, out, db = study
    db.write_bytes(b"")
    for command in (["run", path, "--notebooks", NOTEBOOKS, "--quiet"], ["status", path]):
        code, err = cli(capsys, *command, "--outputs", out)
        assert code == 2 and f"{db} is empty (0 bytes)" in err
    assert db.stat().st_size == 0   # left as it was


def test_rebuild_recreates_every_row_from_the_records_copies(study, capsys):
    path, out, db = study
    before = tables(db)
    assert len(before["networks"]) == 2 * 8 * 2 and len(before["curves"]) == 2 * 8 * 2 * 2
    assert sorted(p.name for p in (db.parent / "records").iterdir()) == ["step_rho=100_mu=0.5.json",
                                                                         "step_rho=10_mu=0.5.json"]
    damage(db)
    code, _ = cli(capsys, "rebuild", path, "--outputs", out)
    assert code == 0
    assert tables(db) == before
    kept = [p for p in db.parent.iterdir() if p.name.startswith("results.sqlite.replaced-")]
    assert len(kept) == 1   # the damaged one is moved aside, not deleted
    code, _ = cli(capsys, "run", path, "--outputs", out, "--notebooks", NOTEBOOKS, "--quiet")
    assert code == 0 and "all 2 grid points already done" in cli.out


def test_a_done_point_without_its_copy_gets_it_back_on_the_next_run(study):
    path, out, db = study
    copy = db.parent / "records" / "step_rho=10_mu=0.5.json"
    text = copy.read_text()
    copy.unlink()
    run_study(load_params(path), outputs_dir=out, notebooks_dir=NOTEBOOKS, quiet=True)
    assert copy.read_text() == text


def test_a_database_from_before_a_new_column_gains_it(tmp_path):
    db = tmp_path / "results.sqlite"
    Store(db).close()
    with sqlite3.connect(db) as con:   # an older version's networks table: no git_rev column
        con.execute("ALTER TABLE networks DROP COLUMN git_rev")
    with Store(db) as store:
        store.insert_point("s", "p", [{"method": "m", "repeat": 0, "git_rev": "abc"}])
        assert store.records_frame("s").loc[0, "git_rev"] == "abc"


# --- registration on the first success; the real error in status -------------------------------

def test_a_study_is_registered_only_on_its_first_success(tmp_path):
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,), fail_rho=10)
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True,
                        pool=StubPool(lambda task, n: {"ok": False, "error": "RuntimeError: typo"}), max_attempts=1)
    assert summary.failed == 1
    with Store(tmp_path / "out" / "fake" / "results.sqlite") as store:
        assert store.db.execute("SELECT count(*) FROM studies").fetchone()[0] == 0
    summary = run_study(load_params(path, ["repeats=1"]), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS,
                        quiet=True, pool=StubPool())     # other settings: allowed, nothing was locked
    assert summary.trained == 1
    with pytest.raises(ValueError, match="repeats: 1 then, 2 now"):   # and now they are locked
        run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True,
                  pool=StubPool())


def test_rerunning_with_other_notebook_parameters_is_refused(tmp_path):
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,), sleep_s=0)
    run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True, pool=StubPool())
    with pytest.raises(ValueError, match=r"notebook_parameters: \{'sleep_s': 0\} then, \{'sleep_s': 1\} now"):
        run_study(load_params(path, ["notebook_parameters.sleep_s=1", "rho=[10,100]"]), outputs_dir=tmp_path / "out",
                  notebooks_dir=NOTEBOOKS, quiet=True, pool=StubPool())


def test_status_shows_the_failing_points_last_error_line(tmp_path, capsys):
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    traceback = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\n"
                 "ValueError: n_max=6000 is larger than class 5 has (5421 examples)\n(log: x.log)")
    with Store(tmp_path / "out" / "fake" / "results.sqlite") as store:
        store.mark_failed("fake", "step_rho=10_mu=0.5", traceback)
    assert main(["status", str(path), "--outputs", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "failed step_rho=10_mu=0.5 (1 attempts): ValueError: n_max=6000 is larger than class 5 has" in out


def test_a_workers_error_text_starts_with_its_type_and_message():
    try:
        raise ValueError("n_max too large")
    except ValueError as exc:
        text = executors._error_text(exc)
    assert text.splitlines()[0] == "ValueError: n_max too large" and "Traceback" in text
    assert error_line("Traceback (most recent call last):\n  File ...\nKeyError: 'x'") == "KeyError: 'x'"


# --- stop repeated failures; keep retrying transient ones ----------------------------------------

def test_the_same_error_at_the_first_points_stops_the_grid(tmp_path, capsys):
    path = fake_params(tmp_path, rho=[10 * (i + 1) for i in range(81)], mu=(0.5,))
    pool = StubPool(lambda task, n: {"ok": False, "error": "ValueError: train-images-idx3-ubyte.gz: truncated\n..."})
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True,
                        pool=pool, max_attempts=2)
    assert pool.submitted == ["step_rho=10_mu=0.5", "step_rho=20_mu=0.5"]   # once each (a ValueError recurs): not 162
    assert summary.failed == 2 and "stopped early" in summary.stopped and "truncated" in summary.stopped
    assert "stopped early: grid points step_rho=10_mu=0.5, step_rho=20_mu=0.5 failed" in capsys.readouterr().out
    with Store(tmp_path / "out" / "fake" / "results.sqlite") as store:
        assert store.status("fake") == dict(done=0, running=0, failed=2, pending=0)   # nothing left claimed


def test_a_stop_with_two_workers_marks_both_points_failed_and_leaves_no_claim(tmp_path):
    path = fake_params(tmp_path, rho=(10, 20, 30, 40), mu=(0.5,))
    pool = StubPool(lambda task, n: {"ok": False, "error": "KeyError: 'x'"})
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True,
                        pool=pool, workers=2, max_attempts=2)
    assert summary.stopped and summary.failed == 2 and len(pool.submitted) == 2
    with Store(tmp_path / "out" / "fake" / "results.sqlite") as store:
        assert [p["status"] for p in store.points("fake")] == ["failed", "failed"]


def test_transient_failures_are_retried_and_never_stop_the_grid(tmp_path):
    path = fake_params(tmp_path, rho=(10, 20, 30), mu=(0.5,))
    died = {"ok": False, "transient": True, "error": "worker died while running the point: BrokenProcessPool: x"}
    pool = StubPool(lambda task, n: died if n == 1 else None)
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True,
                        pool=pool, max_attempts=2)
    assert (summary.trained, summary.failed, summary.stopped) == (3, 0, None) and len(pool.submitted) == 6


def test_an_insert_that_overflows_fails_the_point_instead_of_leaving_it_running(tmp_path):
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    too_big = lambda task, n: {"ok": True, "records": [dict(r, seed=2**70) for r in StubPool()._answer(task)]}
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True,
                        pool=StubPool(too_big), max_attempts=1)
    assert summary.failed == 1 and "OverflowError" in summary.errors["step_rho=10_mu=0.5"]
    with Store(tmp_path / "out" / "fake" / "results.sqlite") as store:
        assert [(p["status"], error_line(p["error"])[:40]) for p in store.points("fake")] == [
            ("failed", "inserting the records failed: OverflowEr")]


# --- checked before any notebook starts ----------------------------------------------------------

def started_nothing(out: Path) -> bool:
    return not (out / "fake" / "notebooks").exists() and not (out / "fake" / "logs").exists()


def test_a_truncated_data_file_fails_before_any_notebook_starts(tmp_path, shared_data):
    data = tmp_path / "data" / "mnist"
    shutil.copytree(shared_data / "mnist", data)
    train = data / "train-images-idx3-ubyte.gz"
    train.chmod(0o644)
    train.write_bytes(train.read_bytes()[: train.stat().st_size // 2])
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    started = time.monotonic()
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: truncated"):
        run_study(load_params(path, ["dataset=mnist", f"data_root={tmp_path / 'data'}"]), outputs_dir=tmp_path / "out",
                  notebooks_dir=NOTEBOOKS, quiet=True)
    assert time.monotonic() - started < 20 and started_nothing(tmp_path / "out")


def test_n_max_beyond_a_class_size_fails_before_any_notebook_starts(tmp_path):
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    with pytest.raises(ValueError, match=r"key 'n_max': value 1000 is not valid; expected at most \d+: class \d \(\d\) of mnist-sample has"):
        run_study(load_params(path, ["n_max=1000"]), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True)
    assert started_nothing(tmp_path / "out")


def test_cuda_on_a_machine_without_it_fails_before_any_notebook_starts(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    with pytest.raises(ValueError, match="key 'device': value 'cuda' is not valid here; this machine has 0 CUDA"):
        run_study(load_params(path, ["device=cuda"]), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True)
    assert started_nothing(tmp_path / "out")


def test_a_misspelled_notebook_parameter_is_rejected_before_any_notebook_starts(tmp_path):
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,), sleeps_s=1)
    with pytest.raises(ValueError, match="'sleeps_s' is not a parameter of .*step.ipynb; did you mean 'sleep_s'"):
        run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True)
    assert started_nothing(tmp_path / "out")


def test_a_notebook_that_resolves_outside_the_notebooks_folder_is_refused(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "fake").symlink_to(NOTEBOOKS / "fake")      # a link out of the folder
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    with pytest.raises(ValueError, match="outside the notebooks folder"):
        run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=notebooks, quiet=True)


def test_a_huge_grid_needs_yes_and_the_dry_run_warns(tmp_path, capsys, monkeypatch):
    path = fake_params(tmp_path, rho=[i + 1 for i in range(500)], mu=(0.5,), repeats=50)
    code, err = cli(capsys, "run", path, "--outputs", tmp_path / "out", "--notebooks", NOTEBOOKS)
    assert code == 2 and "the grid trains 125,000 networks, more than 100,000; run it anyway with --yes" in err
    monkeypatch.setattr(runner, "time_point", lambda params, point, **kw: None)
    code, _ = cli(capsys, "run", path, "--outputs", tmp_path / "out", "--notebooks", NOTEBOOKS, "--dry-run")
    assert code == 0 and "warning: the grid trains 125,000 networks" in cli.out
    assert not (tmp_path / "out").exists()


# --- every user error: one line, exit code 2 -----------------------------------------------------

def _params_file(tmp_path, **changes) -> Path:
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    raw = {**yaml.safe_load(path.read_text()), **changes}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("case", ["overflowing rho", "300-character study", "unwritable outputs",
                                  "unreadable database", "not a database"])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys, case):
    out = tmp_path / "out"
    path = _params_file(tmp_path)
    if case == "overflowing rho":
        path.write_text(path.read_text().replace("- 10\n", f"- 1{'0' * 400}\n", 1))
    elif case == "300-character study":
        path = _params_file(tmp_path, study="s" * 300)
    elif case == "unwritable outputs":
        out.write_text("a file, not a folder")
        out = out / "sub"
    elif case == "unreadable database":
        (out / "fake" / "results.sqlite").mkdir(parents=True)
    else:
        (out / "fake").mkdir(parents=True)
        (out / "fake" / "results.sqlite").write_bytes(b"not SQLite at all" * 100)
    code, err = cli(capsys, "run", path, "--outputs", out, "--notebooks", NOTEBOOKS, "--quiet")
    assert code == 2 and err.startswith("imbalance: error: ") and len(err.strip().splitlines()) == 1, err
    expected = {"overflowing rho": "key 'rho'", "300-character study": "at most 100 characters",
                "unwritable outputs": "cannot write there", "unreadable database": "results.sqlite",
                "not a database": "is damaged"}[case]
    assert expected in err


# --- the point logs: papermill's own warning means something again --------------------------------

@pytest.mark.parametrize("name", TRAINING)
def test_papermill_reads_every_runner_parameter_of_the_training_notebooks(name):
    import papermill as pm
    declared = set(pm.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb")))
    assert set(RUNNER_PARAMETERS) <= declared, sorted(set(RUNNER_PARAMETERS) - declared)


def test_a_normal_run_logs_no_unknown_parameter_but_a_misspelled_one_does(done_study, tmp_path, caplog):
    folder, _ = done_study
    logs = [log.read_text() for log in sorted((folder / "out" / "fake" / "logs").glob("*.log"))]
    assert len(logs) == 2 and all("WARNING" in log for log in logs)   # the logs hold papermill's warnings...
    assert not any("Passed unknown parameter" in log or "Unable to parse" in log for log in logs)  # ...none of these
    params = load_params(fake_params(tmp_path, rho=(10,), mu=(0.5,)))
    point = runner.expand_grid(params)[0]
    task = executors.Task(point.point_id, str(NOTEBOOKS / "fake" / "step.ipynb"), str(tmp_path / "out.ipynb"),
                          str(tmp_path / "records.json"), {**point.parameters(params), "sleeps_s": 1}, "imbalance",
                          str(NOTEBOOKS / "fake"), 1, str(tmp_path / "point.log"))
    with caplog.at_level("WARNING", logger="papermill"):   # in this process, pytest holds papermill's log
        assert executors.execute_point(task)["ok"]
    assert "Passed unknown parameter: sleeps_s" in caplog.text and "point_id" not in caplog.text


def test_a_grid_projected_to_take_over_a_week_needs_yes(tmp_path, capsys):
    path = fake_params(tmp_path, rho=[i + 1 for i in range(200)], mu=(0.5,))
    run_study(load_params(path, ["rho=[1]"]), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True,
              pool=StubPool())
    with sqlite3.connect(tmp_path / "out" / "fake" / "results.sqlite") as con:   # that point took an hour
        con.execute("UPDATE points SET started_at = '2026-01-01T00:00:00+00:00', finished_at = '2026-01-01T01:00:00+00:00'")
    code, err = cli(capsys, "run", path, "--outputs", tmp_path / "out", "--notebooks", NOTEBOOKS, "--workers", "1")
    assert code == 2 and "projected to take 199.0 h on 1 worker(s)" in err and "--yes" in err


def test_a_database_registered_before_notebook_parameters_was_a_setting_still_matches(tmp_path):
    from imbalance.study.runner import SAME_STUDY_KEYS
    params = load_params(fake_params(tmp_path, rho=(10,), mu=(0.5,)))
    old = {k: v for k, v in params.to_dict().items() if k in SAME_STUDY_KEYS and k != "notebook_parameters"}
    with Store(tmp_path / "r.sqlite") as store:
        store.insert_point("fake", "p", [{"method": "m", "repeat": 0}], settings=old)
        assert store.check_study("fake", {**old, "notebook_parameters": {}}) == {}
        assert store.check_study("fake", {**old, "notebook_parameters": {"x": 1}}) == {
            "notebook_parameters": (None, {"x": 1})}


# --- issue 26: a deterministic error is not retried, a failed point is no progress, a resume says so ----------

def test_a_value_error_is_not_retried_and_a_runtime_error_is(tmp_path):
    path = fake_params(tmp_path, rho=(10, 20), mu=(0.5,))
    answer = {"step_rho=10_mu=0.5": "ValueError: image_size must be at least 16 for LeNet-5, got (8, 8)",
              "step_rho=20_mu=0.5": "RuntimeError: CUDA error: unspecified launch failure"}
    pool = StubPool(lambda task, n: {"ok": False, "error": answer[task.point_id]})
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True,
                        pool=pool, workers=1, max_attempts=3)
    assert sorted(pool.submitted) == ["step_rho=10_mu=0.5"] + ["step_rho=20_mu=0.5"] * 3
    assert summary.failed == 2 and summary.stopped is None      # different errors: not 'the same everywhere'
    assert runner.recurs("ValueError: x") and not runner.recurs("DeadKernelError: x")


def test_the_bar_never_counts_a_failed_points_iterations_as_done(tmp_path, monkeypatch):
    bars = []
    original = runner._GridBar

    class Spy(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

        def close(self):     # keep the numbers tqdm shows, to read them after the run
            self.final = (self.bar.n, self.bar.total)
            super().close()
    monkeypatch.setattr(runner, "_GridBar", Spy)
    path = fake_params(tmp_path, rho=(10, 20), mu=(0.5,))
    pool = StubPool(lambda task, n: {"ok": False, "error": "ValueError: bad"} if "20" in task.point_id else None)
    run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=False, pool=pool,
              workers=1, max_attempts=2)
    n, total = bars[0].final
    assert total == 2 * runner._point_iterations(load_params(path)) and n == total // 2    # 50%, not 100%


def test_a_resume_says_how_many_points_are_done_and_the_bar_starts_from_them(tmp_path, monkeypatch, capsys):
    path = fake_params(tmp_path, rho=(10, 20), mu=(0.5,))
    params = load_params(path)
    run_study(load_params(path, ["rho=[10]"]), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True,
              pool=StubPool())
    starts = []
    monkeypatch.setattr(runner._GridBar, "_postfix", lambda self: starts.append((self.bar.initial, self.bar.total)))
    run_study(params, outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=False, pool=StubPool())
    assert "fake: 1 of 2 points already done; training the other 1" in capsys.readouterr().out
    unit = runner._point_iterations(params)
    assert starts[0] == (unit, 2 * unit)     # tqdm's rate and ETA count from `initial`: only the work left


def test_cli_prints_its_version(capsys):
    from imbalance import __version__
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"imbalance {__version__}"


@pytest.mark.parametrize("command", [["report"], ["export", "x.csv"], ["conclusions"]])
def test_a_never_run_study_names_its_real_params_file(tmp_path, capsys, command):
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    assert main([command[0], str(path), *command[1:], "--outputs", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"study 'fake' has not run yet (imbalance run {path})" in err and "<file>" not in err


def test_status_refuses_a_database_run_with_other_settings(tmp_path, capsys):
    path = fake_params(tmp_path, rho=(10, 20), mu=(0.5,))
    run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=True, pool=StubPool())
    assert main(["status", str(path), "--outputs", str(tmp_path / "out")]) == 0
    assert "2 done" in capsys.readouterr().out
    assert main(["status", str(path), "--set", "repeats=50", "--outputs", str(tmp_path / "out")]) == 2
    assert "was run with other settings (repeats: " in capsys.readouterr().err
