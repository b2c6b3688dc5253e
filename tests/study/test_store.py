"""The results database: one transaction per point, idempotent inserts, exclusive claims."""
import json
import multiprocessing
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from imbalance.study import store as store_module
from imbalance.study.store import Store, read_records, worker_id, write_records

HOST = socket.gethostname()


def records(n_methods=2, repeats=2, **extra):
    return [{"method": f"m{m}", "repeat": r, "rho": 10.0, "mu": 0.5, "roc_auc": 0.9 - 0.01 * m,
             "per_class_recall": [0.5] * 10, "class_counts": [5] * 10, "diverged": False, **extra,
             "curve": [{"iteration": i, "lr": 0.1, "train_loss": 1.0 / i} for i in (1, 2, 3)]}
            for m in range(n_methods) for r in range(repeats)]


@pytest.fixture
def db(tmp_path):
    with Store(tmp_path / "results.sqlite") as s:
        yield s


def counts(s: Store) -> tuple[int, int]:
    return (s.db.execute("SELECT count(*) FROM networks").fetchone()[0],
            s.db.execute("SELECT count(*) FROM curves").fetchone()[0])


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- inserts ----------------------------------------------------------------------------------

def test_insert_point_writes_networks_curves_and_marks_done(db):
    assert db.insert_point("s", "p", records()) == 4
    assert counts(db) == (4, 12)
    assert db.done_points("s") == {"p"}
    assert db.status("s", ["p", "q"]) == dict(done=1, running=0, failed=0, pending=1)
    assert db.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_inserting_a_done_point_again_is_a_noop(db):
    db.insert_point("s", "p", records())
    assert db.insert_point("s", "p", records()) == 0
    assert counts(db) == (4, 12)


def test_a_failing_insert_leaves_no_rows_of_the_point(db):
    bad = records() + [records()[0]]  # a duplicate (method, repeat): fails on the 5th row
    with pytest.raises(sqlite3.IntegrityError):
        db.insert_point("s", "p", bad)
    assert counts(db) == (0, 0) and db.done_points("s") == set()
    assert db.insert_point("s", "p", records()) == 4  # and the point can be inserted whole later


@pytest.mark.parametrize("record, expected", [
    ({"method": "m", "repeat": 0, "roc_auk": 1}, "unknown field(s) ['roc_auk']"),
    ({"method": "m"}, "field 'repeat' is required"),
    ({"method": "m", "repeat": 0, "point_id": "other"}, "point_id is 'other', expected 'p'"),
    ({"method": "m", "repeat": 0, "curve": [{"iter": 1}]}, "curve entry {'iter': 1}"),
])
def test_bad_records_are_refused_with_the_field_named(db, record, expected):
    with pytest.raises(ValueError) as info:
        db.insert_point("s", "p", [record])
    assert expected in str(info.value) and "record 0 of point 'p'" in str(info.value)
    assert counts(db) == (0, 0)


def test_numpy_values_and_json_fields_round_trip(db):
    rec = {"method": "m", "repeat": np.int64(0), "roc_auc": np.float32(0.75),
           "per_class_recall": np.array([0.5, 1.0]), "versions": {"torch": "2"}, "diverged": np.bool_(True)}
    db.insert_point("s", "p", [rec])
    frame = db.records_frame("s")
    assert frame.loc[0, "per_class_recall"] == [0.5, 1.0]
    assert frame.loc[0, "versions"] == {"torch": "2"}
    assert frame.loc[0, "roc_auc"] == pytest.approx(0.75) and frame.loc[0, "diverged"] == 1
    assert db.curves_frame("s").empty


def test_a_null_json_field_reads_as_none(db):
    """A diverged network stores NULL lists; pandas may read a NULL beside JSON text as NaN: decoding
    must give None, not fail (as the quick study's one diverged network showed)."""
    rows = records(per_class_precision=[0.5] * 10)
    rows[1].update(per_class_recall=None, per_class_precision=None, roc_auc=None, diverged=True)
    db.insert_point("s", "p", rows)
    frame = db.records_frame("s").sort_values(["method", "repeat"])
    assert frame["per_class_precision"].tolist() == [[0.5] * 10, None, [0.5] * 10, [0.5] * 10]
    assert frame["per_class_recall"].tolist() == [[0.5] * 10, None, [0.5] * 10, [0.5] * 10]


def test_database_passes_integrity_check_after_inserts(db):
    for p in range(5):
        db.insert_point("s", f"p{p}", records())
    assert db.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.db.execute("PRAGMA foreign_key_check").fetchall() == []


# --- claims -----------------------------------------------------------------------------------

def test_a_live_claim_is_exclusive_and_its_owner_can_retake_it(db):
    me, other = worker_id(), f"{HOST}:{os.getppid()}"  # our parent: a live process that is not us
    assert db.claim("s", "p", me)
    assert not db.claim("s", "p", other)
    assert db.claim("s", "p", me)  # a retry by the owner
    assert db.points("s")[0]["attempts"] == 2
    assert db.status("s", ["p"])["running"] == 1


def test_a_claim_by_a_dead_process_is_taken_over(db):
    assert db.claim("s", "p", f"{HOST}:{dead_pid()}")
    assert db.status("s", ["p"]) == dict(done=0, running=0, failed=0, pending=1)
    assert db.claim("s", "p", worker_id())


def test_a_claim_without_heartbeat_is_taken_over_after_the_timeout(tmp_path):
    with Store(tmp_path / "r.sqlite", claim_timeout=3600) as s:
        assert s.claim("s", "p", "elsewhere:1")  # another host: trusted while it beats
        assert not s.claim("s", "p", worker_id())
        s.db.execute("UPDATE points SET heartbeat_at = '2000-01-01T00:00:00+00:00'")
        assert s.claim("s", "p", worker_id())


def test_done_points_cannot_be_claimed_and_stay_done(db):
    db.insert_point("s", "p", records())
    assert not db.claim("s", "p", worker_id())
    db.mark_failed("s", "p", "boom")
    assert db.points("s")[0]["status"] == "done"


def test_a_failed_point_keeps_its_error_and_can_be_claimed_again(db):
    db.claim("s", "p", worker_id())
    db.mark_failed("s", "p", "RuntimeError: boom")
    row = db.points("s")[0]
    assert (row["status"], row["error"]) == ("failed", "RuntimeError: boom")
    assert db.status("s", ["p"])["failed"] == 1
    assert db.claim("s", "p", worker_id())


def test_release_makes_a_point_pending(db):
    db.claim("s", "p", worker_id())
    db.release("s", "p", worker_id())
    assert db.status("s", ["p"])["pending"] == 1


def _claim_all(path, n_points, queue):
    with Store(path) as s:
        queue.put([p for p in range(n_points) if s.claim("s", f"p{p}", worker_id())])


def test_concurrent_claimers_in_separate_processes_never_share_a_point(tmp_path):
    path = tmp_path / "r.sqlite"
    Store(path).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(path, 40, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    claimed = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert Counter(p for c in claimed for p in c) == Counter(range(40))


# --- export and records files -----------------------------------------------------------------

def test_export_csv_writes_one_row_per_network(db, tmp_path):
    db.insert_point("s", "p", records())
    assert db.export("s", tmp_path / "out.csv") == 4
    text = (tmp_path / "out.csv").read_text().splitlines()
    assert len(text) == 5 and text[0].startswith("id,study,point_id")


def test_export_parquet_without_pyarrow_suggests_csv(db, tmp_path, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(ValueError, match=r"needs pyarrow.*export to .*out\.csv instead"):
        db.export("s", tmp_path / "out.parquet")


def test_export_to_an_unknown_format_is_refused(db, tmp_path):
    with pytest.raises(ValueError, match="expected a .csv or .parquet"):
        db.export("s", tmp_path / "out.xlsx")


def test_records_file_round_trips_numpy_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "records.json"
    write_records([{"method": "m", "repeat": np.int64(1), "per_class_recall": np.ones(2)}], path)
    assert read_records(path) == [{"method": "m", "repeat": 1, "per_class_recall": [1.0, 1.0]}]
    assert [p.name for p in path.parent.iterdir()] == ["records.json"]


def test_a_file_that_is_not_a_records_file_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match=f"not a records file; expected .*{store_module.RECORDS_FORMAT}"):
        read_records(path)


def _open_and_close(path, results):
    from imbalance.study.store import Store
    try:
        Store(path).close()
        results.put("ok")
    except Exception as exc:      # reported to the test, which names it
        results.put(repr(exc))


def test_runners_opening_a_new_database_at_once_never_see_it_locked(tmp_path):
    # the WAL switch on a brand-new file could fail with "database is locked" without SQLite's busy
    # handler being consulted (seen once in CI: two runners started together; ~1 in 160 opens here)
    import multiprocessing
    context = multiprocessing.get_context("fork")
    failures = []
    for trial in range(30):
        results = context.Queue()
        procs = [context.Process(target=_open_and_close, args=(tmp_path / f"{trial}.sqlite", results))
                 for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failures += [r for r in (results.get(timeout=10) for _ in procs) if r != "ok"]
    assert failures == []


# --- registration, copies, damage ---------------------------------------------------------------

def test_a_study_registered_by_another_run_with_other_settings_refuses_the_insert(tmp_path):
    path = tmp_path / "results.sqlite"
    with Store(path) as first, Store(path) as second:
        assert first.check_study("s", {"repeats": 2}) == second.check_study("s", {"repeats": 3}) == {}  # none yet
        first.insert_point("s", "p", records(), settings={"repeats": 2})
        with pytest.raises(store_module.StudyChanged, match="repeats: 2 then, 3 now"):
            second.insert_point("s", "q", records(), settings={"repeats": 3})
        assert counts(second) == (4, 12) and second.done_points("s") == {"p"}   # q left no rows


def test_point_copies_rebuild_the_database_row_for_row(tmp_path):
    study_dir = tmp_path / "s"
    with Store(study_dir / "results.sqlite") as s:
        for p in ("p1", "p2", "p3"):
            s.insert_point("s", p, records(versions={"torch": "2"}, accuracy=np.float32(0.25)), settings={"k": 1})
            store_module.write_copy(s.point_copy("s", p), study_dir)
        s.claim("s", "p4", worker_id())
        s.mark_failed("s", "p4", "boom")              # not done: not in a copy, not rebuilt
        dump = lambda: [s.db.execute(f"SELECT * FROM {t} {o}").fetchall() for t, o in
                        (("networks", "ORDER BY id"), ("curves", "ORDER BY network_id, iteration"), ("studies", ""))]
        before = [[tuple(r) for r in rows] for rows in dump()]
    result = store_module.rebuild_database(study_dir, "s")
    assert (result.points, result.networks, result.kept.name.startswith("results.sqlite.replaced-")) == (3, 12, True)
    with Store(study_dir / "results.sqlite") as s:
        assert [[tuple(r) for r in rows] for rows in dump()] == before
        assert s.done_points("s") == {"p1", "p2", "p3"} and s.point_status("s", "p4") is None


def test_opening_a_database_that_is_not_one_names_the_file(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(store_module.DatabaseError, match=f"{path} is damaged .*imbalance rebuild PARAMS"):
        Store(path)


# --- readable exports (issue 10) --------------------------------------------------------------------

QUICK_DB = Path(__file__).resolve().parents[2] / "outputs" / "quick" / "results.sqlite"


@pytest.fixture(scope="module")
def quick_export(tmp_path_factory):
    """The committed quick study's export, read back from CSV."""
    import pandas as pd
    folder = tmp_path_factory.mktemp("quick")
    shutil.copy(QUICK_DB, folder / "results.sqlite")
    with Store(folder / "results.sqlite") as s:
        s.export("quick", folder / "quick.csv")
    frame = pd.read_csv(folder / "quick.csv", keep_default_na=False, na_values=[""])
    for col in ("class_counts", "classes", "is_minority"):
        frame[col] = [json.loads(v) for v in frame[col]]
    return frame


def test_exported_subset_seeds_reproduce_each_networks_class_counts(quick_export):
    from imbalance.data.datasets import load_dataset
    from imbalance.data.profiles import imbalanced_subset
    labels = load_dataset("mnist-sample").train_labels.numpy()
    for row in quick_export.drop_duplicates(["point_id", "repeat"]).itertuples():
        subset = imbalanced_subset(labels, profile=row.imbalance, rho=row.rho, mu=row.mu, minority="random",
                                   random_state=int(row.subset_seed))
        assert subset.counts.tolist() == row.class_counts, row.point_id


def test_exported_minority_flags_and_class_names(quick_export):
    for row in quick_export.itertuples():
        assert row.classes == list("0123456789")
        assert row.is_minority == [c < max(row.class_counts) for c in row.class_counts]
        assert sum(row.is_minority) == round(row.mu * 10)


def test_thresh_rows_share_their_base_network_and_are_not_counted_twice(quick_export):
    thresh = quick_export[quick_export["method"].str.endswith("-thresh")]
    assert len(thresh) and (thresh["shares_network_with"] == thresh["method"].str.removesuffix("-thresh")).all()
    assert (thresh["own_train_seconds"] == 0).all()
    one_phase = quick_export[quick_export["method"].isin(["baseline", "ros", "rus"])]
    assert (one_phase["own_train_seconds"] == one_phase["train_seconds"]).all()
    assert one_phase["shares_network_with"].isna().all()
    seconds = quick_export.set_index(["point_id", "method", "repeat"])["train_seconds"]
    two_phase = quick_export[quick_export["method"].str.startswith("two-phase-")]
    assert len(two_phase) and (two_phase["shares_network_with"] == two_phase["method"].str.removeprefix("two-phase-")).all()
    for row in two_phase.itertuples():   # its train_seconds = its base network's pre-training + its own fine-tuning
        base = seconds[(row.point_id, row.shares_network_with, row.repeat)]
        assert row.own_train_seconds + base == pytest.approx(row.train_seconds) and row.own_train_seconds > 0


def test_the_column_dictionary_describes_every_exported_column(quick_export):
    text = (Path(__file__).resolve().parents[2] / "docs" / "export-columns.md").read_text()
    first_cells = re.findall(r"^\| (`\w+`(?:, `\w+`)*) \|", text, flags=re.M)   # a row may name a family
    documented = {name for cell in first_cells for name in re.findall(r"`(\w+)`", cell)}
    assert documented == set(quick_export.columns)
