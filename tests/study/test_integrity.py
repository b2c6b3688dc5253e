"""Issue 25: results you can trust after anything.  Each test reproduces one case of the issue (a hostile
input or a fault) and asserts the clean outcome: refused in one line naming the file, detected and named,
or kept.  Runs use the stub executor (tests/fixtures/stub.py), so nothing trains."""
import gzip
import json
import shutil
import sqlite3
import struct
import zipfile
import zlib
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures.stub import StubPool
from fixtures.studies import NOTEBOOKS, fake_params
from imbalance import registry
from imbalance.cli import main
from imbalance.data import datasets
from imbalance.study import executors, runner
from imbalance.study import store as store_module
from imbalance.study.params import load_params
from imbalance.study.preflight import check_image_folder
from imbalance.study.runner import run_study
from imbalance.study.store import DatabaseError, Store, rebuild_database, worker_id

ROOT = Path(__file__).resolve().parents[2]
POINT = "step_rho=10_mu=0.5"


def run(path, out, *overrides, pool=None):
    return run_study(load_params(path, list(overrides)), outputs_dir=out, notebooks_dir=NOTEBOOKS, quiet=True,
                     pool=pool or StubPool())


@pytest.fixture
def study(tmp_path):
    """A finished two-point study (stub records): (params file, outputs folder, database)."""
    path = fake_params(tmp_path, rho=(10, 100), mu=(0.5,), repeats=1)
    assert run(path, tmp_path / "out").trained == 2
    return path, tmp_path / "out", tmp_path / "out" / "fake" / "results.sqlite"


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    cli.out = captured.out
    return code, captured.err.strip()


def one_line(code, err, *expected):
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("imbalance: error: "), (code, err)
    for text in expected:
        assert text in err, (text, err)


def sql(db, statement, *args):
    with sqlite3.connect(db) as con:
        con.execute(statement, args)
    con.close()


def flip_bit(value: float, bit: int) -> float:
    (n,) = struct.unpack("<Q", struct.pack("<d", value))
    return struct.unpack("<d", struct.pack("<Q", n ^ (1 << bit)))[0]


# --- content integrity ------------------------------------------------------------------------------

def test_sql_in_a_records_copys_keys_is_refused_and_injects_nothing(study, capsys):
    path, out, db = study
    copy = db.parent / "records" / f"{POINT}.json"
    raw = json.loads(copy.read_text())
    raw["point"] = {"status) SELECT ?, ?, ? UNION ALL SELECT 'fake', 'injected_by_sql', 'done' --": "x",
                    **raw["point"]}
    copy.write_text(json.dumps(raw))
    code, err = cli(capsys, "rebuild", path, "--outputs", out)
    one_line(code, err, str(copy), "unknown key")
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM points WHERE point_id = 'injected_by_sql'").fetchone()[0] == 0


@pytest.mark.parametrize("damage", ["roc_auc bit", "method byte"])
def test_a_flipped_bit_in_a_value_is_named_by_every_reader(study, capsys, damage):
    path, out, db = study
    if damage == "roc_auc bit":
        with closing(sqlite3.connect(db)) as con:   # closed: the damage below lands in the file, not a log
            (value,) = con.execute("SELECT roc_auc FROM networks WHERE point_id = ? AND method = 'baseline'",
                                   (POINT,)).fetchone()
        sql(db, "UPDATE networks SET roc_auc = ? WHERE point_id = ? AND method = 'baseline'", flip_bit(value, 51), POINT)
    else:
        sql(db, "UPDATE networks SET method = 'baselije' WHERE point_id = ? AND method = 'baseline'", POINT)
    for command in (["status", path], ["export", path, out / "x.csv"], ["conclusions", path], ["report", path],
                    ["run", path, "--notebooks", NOTEBOOKS, "--quiet"]):
        code, err = cli(capsys, *command, "--outputs", out)
        one_line(code, err, str(db), f"point {POINT!r}", "imbalance rebuild PARAMS", f"{POINT}.json")
    assert not (out / "x.csv").exists()
    code, _ = cli(capsys, "rebuild", path, "--outputs", out)    # the copy restores it
    assert code == 0 and cli(capsys, "status", path, "--outputs", out)[0] == 0 and "2 done" in cli.out


def test_a_committed_study_without_digests_is_checked_against_its_copies_and_sealed_by_run(tmp_path, capsys):
    out = tmp_path / "out"
    # mnist-graded was committed before digests existed (the quick study has been retrained since)
    shutil.copytree(ROOT / "outputs" / "mnist-graded", out / "mnist-graded",
                    ignore=shutil.ignore_patterns("figures", "notebooks"))
    db = out / "mnist-graded" / "results.sqlite"
    with Store(db, mode="read") as store:
        assert set(store.stored_digests("mnist-graded").values()) == {None}      # committed before digests
        assert store.verify("mnist-graded").checked == 6
    with sqlite3.connect(db) as con:
        point, nid, value = con.execute("SELECT point_id, id, roc_auc FROM networks LIMIT 1").fetchone()
    sql(db, "UPDATE networks SET roc_auc = ? WHERE id = ?", flip_bit(value, 50), nid)
    code, err = cli(capsys, "status", ROOT / "params/real/mnist-graded.yaml", "--outputs", out)
    one_line(code, err, f"point {point!r}", "records copy")
    sql(db, "UPDATE networks SET roc_auc = ? WHERE id = ?", value, nid)
    with Store(db, mode="write") as store:
        assert sorted(store.seal("mnist-graded")) == sorted(store.done_points("mnist-graded"))
        assert None not in store.stored_digests("mnist-graded").values() and store.verify("mnist-graded").checked == 6


def _uncheckpointed_wal(db: Path, change: str) -> bytes:
    """The -wal a connection to db leaves after `change` (never checkpointed: as if its process were killed)."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute(change)
    wal = Path(f"{db}-wal").read_bytes()
    con.close()
    return wal


@pytest.mark.parametrize("whose", ["another study's", "this study's older copy"])
def test_a_foreign_wal_file_is_refused_naming_it_and_the_database_is_left_as_it_was(study, tmp_path, capsys, whose):
    path, out, db = study
    other = tmp_path / "other"
    other.mkdir()
    g = fake_params(other, study="g" if whose.startswith("another") else "fake", rho=(10, 100, 1000), mu=(0.3, 0.7),
                    repeats=2)
    run(g, other / "out")
    gdb = next((other / "out").glob("*/results.sqlite"))
    wal = _uncheckpointed_wal(gdb, "UPDATE networks SET accuracy = accuracy + 0.25")   # 40 rows' pages
    assert len(wal) > 1000
    Path(f"{db}-wal").write_bytes(wal)
    before = db.read_bytes()
    for command in (["status", path], ["export", path, out / "x.csv"], ["conclusions", path],
                    ["run", path, "--set", "rho=[10,100,1000]", "--notebooks", NOTEBOOKS, "--quiet"]):
        code, err = cli(capsys, *command, "--outputs", out)
        one_line(code, err, f"{db}-wal does not belong to {db}", "without it, the database verifies",
                 "move results.sqlite-wal")
        assert db.read_bytes() == before                       # never checkpointed into the study's file
    Path(f"{db}-wal").unlink()
    Path(f"{db}-shm").unlink(missing_ok=True)
    assert cli(capsys, "status", path, "--outputs", out)[0] == 0 and "2 done" in cli.out


def test_a_killed_runners_own_wal_is_kept_not_refused(study, tmp_path, capsys):
    path, out, db = study
    with Store(db, mode="write") as store:            # a third point committed into the log, never checkpointed
        store.db.execute("PRAGMA wal_autocheckpoint = 0")
        from fixtures.stub import fake_records
        point = "step_rho=1000_mu=0.5"
        store.insert_point("fake", point, fake_records({"rho": 1000, "mu": 0.5, "dataset": "mnist-sample",
                                                        "imbalance": "step", "level": None, "seed": 0,
                                                        "methods": ["baseline"], "repeats": 1}))
        crashed = tmp_path / "crashed" / "fake"
        crashed.mkdir(parents=True)
        for suffix in ("", "-wal"):
            shutil.copyfile(f"{db}{suffix}", crashed / f"results.sqlite{suffix}")
    shutil.copytree(db.parent / "records", crashed / "records")
    assert (crashed / "results.sqlite-wal").stat().st_size > 0
    code, err = cli(capsys, "status", path, "--set", "rho=[10,100,1000]", "--outputs", crashed.parent)
    assert code == 0 and "3 done" in cli.out, err


def test_another_studys_database_copied_in_is_refused(study, tmp_path, capsys):
    path, out, db = study
    other = tmp_path / "other"
    other.mkdir()
    g = fake_params(other, study="g", rho=(10, 100), mu=(0.5,), repeats=1)
    run(g, other / "out")
    shutil.copy(other / "out" / "g" / "results.sqlite", db)
    copies = {p: p.read_text() for p in (db.parent / "records").iterdir()}
    for command in (["status", path], ["run", path, "--notebooks", NOTEBOOKS, "--quiet"]):
        code, err = cli(capsys, *command, "--outputs", out)
        one_line(code, err, str(db), "another study's database", "imbalance rebuild PARAMS")
    assert {p: p.read_text() for p in (db.parent / "records").iterdir()} == copies


@pytest.mark.parametrize("drop", ["column roc_auc", "table points", "table networks", "table studies"])
def test_a_dropped_table_or_column_is_refused_not_recreated_empty(study, capsys, drop):
    path, out, db = study
    kind, name = drop.split()
    sql(db, "ALTER TABLE networks DROP COLUMN roc_auc" if kind == "column" else f"DROP TABLE {name}")
    for command in (["status", path], ["run", path, "--set", "repeats=2", "--notebooks", NOTEBOOKS, "--quiet"]
                    if name == "studies" else ["run", path, "--notebooks", NOTEBOOKS, "--quiet"]):
        code, err = cli(capsys, *command, "--outputs", out)
        one_line(code, err, f"{db} is damaged", name, "imbalance rebuild PARAMS")


@pytest.mark.parametrize("edit", ["changed score", "forged point", "empty network list"])
def test_an_edited_records_copy_is_refused_by_rebuild(study, capsys, edit):
    path, out, db = study
    copy = db.parent / "records" / f"{POINT}.json"
    raw = json.loads(copy.read_text())
    if edit == "changed score":
        raw["networks"][0]["roc_auc"] = 0.99
    elif edit == "forged point":
        forged = db.parent / "records" / "step_rho=1000_mu=0.5.json"
        raw = json.loads(json.dumps(raw).replace(POINT, "step_rho=1000_mu=0.5"))
        for n in raw["networks"]:
            n["id"] += 1000
        copy = forged
    else:
        raw["networks"] = []
    copy.write_text(json.dumps(raw))
    before = db.read_bytes()
    code, err = cli(capsys, "rebuild", path, "--outputs", out)
    one_line(code, err, str(copy))
    assert db.read_bytes() == before


def test_a_deleted_copy_is_named_by_rebuild_not_lost(study, capsys):
    path, out, db = study
    (db.parent / "records" / f"{POINT}.json").unlink()
    code, err = cli(capsys, "rebuild", path, "--outputs", out)
    one_line(code, err, f"done point {POINT!r}", "would lose it")


def _run_with_a_plugin_replacing_baseline(path, out, tmp_path, capsys) -> tuple[int, str]:
    plugin = tmp_path / "evil.py"
    plugin.write_text("from imbalance.registry import Method, register_method, get_method\n"
                      "import dataclasses\n"
                      "register_method(dataclasses.replace(get_method('baseline'), sampling='rus'), replace_existing=True)\n")
    saved = dict(registry.METHODS)
    try:
        return cli(capsys, "run", path, "--plugin", plugin, "--set", "rho=[10,100,1000]", "--outputs", out,
                   "--notebooks", NOTEBOOKS, "--quiet")
    finally:
        registry.METHODS.clear()
        registry.METHODS.update(saved)


def test_a_plugin_that_redefines_a_method_of_a_study_is_refused(study, tmp_path, monkeypatch, capsys):
    path, out, db = study
    code, err = _run_with_a_plugin_replacing_baseline(path, out, tmp_path, capsys)
    one_line(code, err, "method 'baseline'", str(db), "drop that plugin")


# --- never lose a finished point ----------------------------------------------------------------------

class LockingPool(StubPool):
    """Takes the database's write lock in another connection as a point is submitted (another process)."""

    def __init__(self, db):
        super().__init__()
        self.db, self.holder = db, None

    def submit(self, task):
        self.holder = sqlite3.connect(self.db, isolation_level=None)
        self.holder.execute("BEGIN IMMEDIATE")
        return super().submit(task)


def test_a_lock_held_past_the_timeout_keeps_the_trained_records_for_the_next_run(study, monkeypatch):
    path, out, db = study
    monkeypatch.setattr(runner, "LOCK_SECONDS", 0.2)
    pool = LockingPool(db)
    with pytest.raises(DatabaseError, match=r"cannot record point 'step_rho=1000_mu=0.5'.*kept in .*\.kept\.json"):
        run(path, out, "rho=[10,100,1000]", pool=pool)
    pool.holder.execute("ROLLBACK")
    again = StubPool()
    summary = run(path, out, "rho=[10,100,1000]", pool=again)
    assert again.submitted == [] and summary.skipped == 3
    with Store(db, mode="read") as store:
        assert store.done_points("fake") == {POINT, "step_rho=100_mu=0.5", "step_rho=1000_mu=0.5"}
        assert store.verify("fake").checked == 3
    assert (db.parent / "records" / "step_rho=1000_mu=0.5.json").is_file()


def test_a_failed_creation_leaves_no_half_made_database(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "SCHEMA", store_module.SCHEMA + "; CREATE TABLE half (")   # fails mid-way
    with pytest.raises(DatabaseError, match="cannot create the results database.*nothing was left behind"):
        Store(tmp_path / "results.sqlite")
    assert list(tmp_path.iterdir()) == []


def test_rebuild_is_refused_while_a_runner_holds_the_study(study, capsys):
    path, out, db = study
    with Store(db) as store:
        assert store.claim("fake", "step_rho=1000_mu=0.5", worker_id())    # this live process: a runner
    code, err = cli(capsys, "rebuild", path, "--outputs", out)
    one_line(code, err, "a runner holds point 'step_rho=1000_mu=0.5'")


def test_reading_commands_open_read_only_and_do_not_wait_for_a_writer(study, capsys):
    path, out, db = study
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")      # another process writing
    try:
        assert cli(capsys, "status", path, "--outputs", out)[0] == 0 and "2 done" in cli.out
        assert cli(capsys, "export", path, out / "x.csv", "--outputs", out)[0] == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_run_on_a_read_only_database_says_read_only_not_damaged(study, monkeypatch, capsys):
    path, out, db = study
    monkeypatch.setattr(store_module, "_writable", lambda path: False)
    monkeypatch.setattr(runner, "_check_writable", lambda study_dir: None)
    code, err = cli(capsys, "run", path, "--outputs", out, "--notebooks", NOTEBOOKS, "--quiet")
    one_line(code, err, f"{db} is read-only")
    assert "damaged" not in err
    assert cli(capsys, "status", path, "--outputs", out)[0] == 0     # a reader still reads it


# --- user errors before any training ----------------------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def image_folder(root: Path, *, classes=("a", "b"), size=(16, 16), n=3) -> Path:
    from PIL import Image
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("L", size, color=i * 40).save(root / split / c / f"{i}.png")
    return root


@pytest.mark.parametrize("case", ["too small", "truncated jpeg", "0-byte png", "not an image", "single class",
                                  "empty val class", "missing val class", "20000x20000 png", "another size",
                                  "no class folders", "symlink loop"])
def test_image_folder_problems_are_named_before_training(tmp_path, case):
    from PIL import Image
    root = image_folder(tmp_path / "data")
    bad = root / "train" / "a" / "0.png"
    expected = str(bad)
    if case == "too small":
        Image.new("L", (4, 4)).save(bad)
    elif case == "truncated jpeg":
        bad = root / "train" / "a" / "0.jpg"
        (root / "train" / "a" / "0.png").unlink()
        Image.new("RGB", (16, 16), color=(200, 10, 10)).save(bad, quality=95)
        bad.write_bytes(bad.read_bytes()[:300])
        expected = str(bad)
    elif case == "0-byte png":
        bad.write_bytes(b"")
    elif case == "not an image":
        bad.write_text("hello")
    elif case == "single class":
        shutil.rmtree(root / "train" / "b")
        shutil.rmtree(root / "val" / "b")
        expected = "one class folder"
    elif case == "empty val class":
        for f in (root / "val" / "b").iterdir():
            f.unlink()
        expected = str(root / "val" / "b")
    elif case == "missing val class":
        shutil.rmtree(root / "val" / "b")
        expected = "lacks class folder 'b'"
    elif case == "20000x20000 png":
        bad.write_bytes(png_header(20000, 20000))
    elif case == "another size":
        bad = root / "val" / "b" / "2.png"
        Image.new("L", (20, 16)).save(bad)
        expected = str(bad)
    elif case == "no class folders":
        for d in (root / "train").iterdir():
            shutil.rmtree(d)
        expected = f"{root / 'train'} holds no class folders"
    else:
        (root / "train" / "a" / "loop").symlink_to(root / "train" / "a")
        expected = str(root / "train" / "a" / "loop")
    with pytest.raises(ValueError) as caught:
        check_image_folder(root)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_an_image_folder_study_stops_at_pre_flight(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    (root / "train" / "a" / "loop").symlink_to(root / "train" / "a")
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "dataset": "imagefolder", "data_root": str(root), "recipe": "resnet10-imagenet"}))
    code, err = cli(capsys, "run", path, "--outputs", tmp_path / "out", "--notebooks", NOTEBOOKS, "--quiet")
    assert code == 2 and "symlink loop" in err and len(err.splitlines()) == 1, err


def npz_with(path: Path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    base = {"x_train": rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), "y_train": np.arange(20) % 2,
            "x_test": rng.integers(0, 255, (10, 8, 8), dtype=np.uint8), "y_test": np.arange(10) % 2}
    np.savez(path, **{**base, **arrays})
    return path


def test_an_npz_label_beyond_its_images_is_refused_without_counting_to_it(tmp_path):
    path = npz_with(tmp_path / "d.npz", y_train=np.array([0, 10_000_000] * 10))
    with pytest.raises(ValueError, match=r"y_train holds label 10,000,000 but only 20 images"):
        datasets.check_npz(path)


def test_an_npz_header_claiming_more_than_it_holds_is_refused_from_the_header(tmp_path):
    path = npz_with(tmp_path / "d.npz")
    header = np.lib.format
    import io
    forged = io.BytesIO()
    header.write_array_header_1_0(forged, {"descr": "<i8", "fortran_order": False, "shape": (10 ** 10,)})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("y_train.npy", forged.getvalue() + b"\0" * 64)    # a second, forged member of that name
    with pytest.raises(ValueError, match=r"claims shape \(10000000000,\)"):
        datasets.check_npz(path)


def test_mnist_files_with_a_bad_gzip_header_or_a_bomb_are_refused_in_one_line(tmp_path):
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    good = gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x01\x02\x03")
    bad.write_bytes(good[:3] + b"\xff" + good[4:])          # flags byte of the gzip header corrupted
    with pytest.raises(ValueError, match=str(bad)):
        datasets._read_idx(bad, ndim=1, sha256=None)
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 2 ** 31) + b"\x00" * 1000))
    with pytest.raises(ValueError, match=r"header claims dims \(2147483648,\)"):
        datasets._read_idx(bad, ndim=1, sha256=None)
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x00" * 10_000_000))  # a bomb
    with pytest.raises(ValueError, match="too long"):
        datasets._read_idx(bad, ndim=1, sha256=None)


@pytest.mark.parametrize("text", ["recipe_overrides: {iterations: 20, eval_interval: 10, iterations: 30000}\n",
                                  "{study: q, study: r}\n"])
def test_duplicate_keys_on_one_line_are_refused(tmp_path, text):
    path = tmp_path / "p.yaml"
    raw = yaml.safe_load((ROOT / "params/quick.yaml").read_text())
    raw.pop("recipe_overrides", None)
    path.write_text(yaml.safe_dump(raw) + text if text.startswith("recipe") else text)
    with pytest.raises(ValueError, match=r"duplicate key '(iterations|study)' twice on line"):
        load_params(path)


def test_deep_nesting_and_a_set_into_a_number_are_one_line_errors(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text((ROOT / "params/quick.yaml").read_text() + "x: " + "[" * 10_000 + "]" * 10_000 + "\n")
    one_line(*cli(capsys, "status", path), "nested 10,000 levels deep")
    one_line(*cli(capsys, "status", ROOT / "params/quick.yaml", "--set", "rho=" + "[" * 10_000), "nested")
    one_line(*cli(capsys, "status", ROOT / "params/quick.yaml", "--set", "recipe_overrides.iterations.x=3"),
             "'recipe_overrides.iterations' is 200, not a mapping")
    records = tmp_path / "r.json"
    records.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        store_module.read_records(records)


def test_outputs_through_a_symlink_loop_is_one_line(tmp_path, capsys):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    one_line(*cli(capsys, "status", ROOT / "params/quick.yaml", "--outputs", tmp_path / "loop"), "--outputs")


@pytest.mark.parametrize("body, expected", [("raise RuntimeError('boom')", "raised RuntimeError while loading: boom"),
                                            ("def (:", "syntax error in")])
def test_a_plugin_that_raises_or_does_not_parse_is_named(tmp_path, monkeypatch, capsys, body, expected):
    (tmp_path / "broken_plugin.py").write_text(body + "\n")
    monkeypatch.chdir(tmp_path)
    one_line(*cli(capsys, "status", ROOT / "params/quick.yaml", "--plugin", "broken_plugin"),
             "plugin 'broken_plugin'", expected)


def test_plugins_load_by_file_path_so_nothing_shadows_them(tmp_path, monkeypatch, capsys):
    (tmp_path / "step.py").write_text("LOADED = True\n")
    monkeypatch.chdir(tmp_path)
    assert registry.load_plugins(["step"]) == (str((tmp_path / "step.py").resolve()),)
    import sys
    assert "step" not in sys.modules and any(m.startswith("imbalance_plugins.step_") for m in sys.modules)
    one_line(*cli(capsys, "status", ROOT / "params/quick.yaml", "--plugin", "os"), "standard library")


def test_dask_addresses_are_checked_at_once_and_connecting_gives_up_within_seconds():
    with pytest.raises(ValueError, match="PORT from 1 to 65535"):
        executors.parse_executor("dask://127.0.0.1:99999")
    with pytest.raises(ConnectionError, match=f"within {executors.CONNECT_SECONDS} s"):
        executors.DaskPool("tcp://127.0.0.1:9", 1, None)


def test_a_locked_database_is_named_with_its_file(study):
    path, out, db = study
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        sql_error = sqlite3.OperationalError("database is locked")
        with Store(db, mode="read") as store:
            message = str(store._error(sql_error))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(db) in message and "write lock" in message


def _as_registered_before_fingerprints(db):
    """The study's registered settings without method fingerprints, as studies run before issue 23 were."""
    con = sqlite3.connect(db)
    params = json.loads(con.execute("SELECT params FROM studies WHERE study = 'fake'").fetchone()[0])
    params.pop("method_fingerprints", None)
    con.execute("UPDATE studies SET params = ? WHERE study = 'fake'", (json.dumps(params),))
    con.commit()
    con.close()


def test_an_older_study_stands_for_revision_1_so_a_plugin_replacing_a_built_in_is_still_refused(
        study, tmp_path, capsys):
    path, out, db = study
    _as_registered_before_fingerprints(db)
    code, err = _run_with_a_plugin_replacing_baseline(path, out, tmp_path, capsys)
    one_line(code, err, "method 'baseline'", str(db))


def test_an_older_study_of_a_method_whose_definition_changed_since_is_refused_naming_it(tmp_path, capsys):
    """cb-focal's revision 2 (issue 23) differs from the revision 1 an older study's records stand for."""
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,), repeats=1)
    params = yaml.safe_load(path.read_text())
    params["methods"] = ["baseline", "cb-focal"]
    path.write_text(yaml.safe_dump(params))
    assert run(path, tmp_path / "out").trained == 1
    db = tmp_path / "out" / "fake" / "results.sqlite"
    _as_registered_before_fingerprints(db)
    code, err = cli(capsys, "run", path, "--set", "rho=[10,100]", "--outputs", tmp_path / "out",
                    "--notebooks", NOTEBOOKS, "--quiet")
    one_line(code, err, "method 'cb-focal'", str(db))
    assert registry.legacy_fingerprint("cb-focal") != registry.fingerprint("cb-focal")


# --- an error that will recur is never retried ----------------------------------------------------------

@pytest.mark.parametrize("error, attempts", [
    ("ValueError: images in train/a are 8x8; lenet5-mnist needs at least 28x28", 1),
    ("TypeError: unsupported operand type(s) for +: 'int' and 'str'", 1),
    ("KeyError: 'x_train'", 1),
    ("RuntimeError: stack expects each tensor to be equal size", 1),
    ("DeadKernelError: Kernel died", 3),
    ("CellTimeoutError: a cell ran longer than the params key cell_timeout allows", 3),
    ("MemoryError: Unable to allocate 3.0 GiB", 3),
    ("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", 3),
    ("OperationalError: database is locked", 3)])
def test_only_a_transient_fault_is_retried_a_deterministic_error_fails_at_once(tmp_path, capsys, error, attempts):
    path = fake_params(tmp_path, rho=(10,), mu=(0.5,))
    pool = StubPool(lambda task, n: {"ok": False, "error": error + "\nTraceback ..."})
    summary = run_study(load_params(path), outputs_dir=tmp_path / "out", notebooks_dir=NOTEBOOKS, quiet=False,
                        pool=pool, max_attempts=3)
    assert pool.submitted == [POINT] * attempts and summary.failed == 1
    captured = capsys.readouterr()
    line = [x for x in (captured.out + captured.err).splitlines() if "failed after" in x]
    assert line == [f"{POINT} failed after {attempts} attempt(s)"
                    + (" (not a transient fault: it would recur, so not retried)" if attempts == 1 else "")
                    + f": {error}"]
    with Store(tmp_path / "out" / "fake" / "results.sqlite", mode="read") as store:
        assert [(p["status"], p["attempts"]) for p in store.points("fake")] == [("failed", attempts)]


# --- "database is locked", "database or disk is full", "embedded null byte": named ---------------------------

def test_a_reader_behind_an_exclusive_lock_gives_up_after_the_stated_seconds_naming_the_file(study, capsys):
    import time
    path, out, db = study
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")     # another process that keeps the whole file to itself
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE points SET attempts = attempts")
    try:
        started = time.monotonic()
        code, err = cli(capsys, "status", path, "--outputs", out)
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_line(code, err, str(db), f"write lock past the {store_module.READ_LOCK_SECONDS:g} s waited", "try again")
    assert store_module.READ_LOCK_SECONDS <= waited < store_module.READ_LOCK_SECONDS + 10     # not 60 s
    assert cli(capsys, "status", path, "--outputs", out)[0] == 0 and "2 done" in cli.out   # intact once it ends


def test_a_lock_met_by_a_claim_names_the_file_the_point_and_the_seconds_waited(study, monkeypatch, capsys):
    path, out, db = study
    monkeypatch.setattr(runner, "LOCK_SECONDS", 0.3)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        code, err = cli(capsys, "run", path, "--set", "rho=[10,100,1000]", "--outputs", out, "--notebooks", NOTEBOOKS,
                        "--quiet")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_line(code, err, str(db), "claiming point 'step_rho=1000_mu=0.5'", "past the 0.3 s waited", "nothing was changed")
    with Store(db, mode="read") as store:
        assert store.done_points("fake") == {POINT, "step_rho=100_mu=0.5"} and store.status("fake")["running"] == 0


def test_a_full_disk_while_recording_a_point_keeps_its_records_and_names_the_file(study, monkeypatch, capsys):
    path, out, db = study
    connect = Store._connect

    def full(self, busy_timeout):      # the file may not grow by a page: SQLite's own "database or disk is full"
        con = connect(self, busy_timeout)
        if not self.readonly:
            pages = con.execute("PRAGMA page_count").fetchone()[0]
            con.execute(f"PRAGMA max_page_count = {pages}")
        return con
    monkeypatch.setattr(Store, "_connect", full)
    long = [{"iteration": i, "lr": 0.01, "train_loss": 1.0, "train_accuracy": 0.5, "test_accuracy": 0.5}
            for i in range(1, 400)]   # more rows than the file's free space holds
    pool = StubPool(lambda task, n: {"ok": True, "records": [dict(r, curve=long) for r in StubPool._answer(task)]})
    with pytest.raises(store_module.StoreUnavailable) as caught:
        run(path, out, "rho=[10,100,1000]", pool=pool)
    message = str(caught.value)
    for text in (str(db), "cannot record point 'step_rho=1000_mu=0.5'", "database or disk is full",
                 "step_rho=1000_mu=0.5.kept.json"):
        assert text in message and "\n" not in message, (text, message)
    monkeypatch.setattr(Store, "_connect", connect)
    again = StubPool()
    assert run(path, out, "rho=[10,100,1000]", pool=again).skipped == 3 and again.submitted == []


@pytest.mark.parametrize("where", ["notebook", "data_root", "--outputs", "PARAMS"])
def test_a_nul_byte_in_a_path_is_named_not_embedded_null_byte(study, capsys, where):
    path, out, db = study
    args = [path, "--outputs", out]
    if where in ("notebook", "data_root"):
        raw = yaml.safe_load(path.read_text())
        raw[where] = "fake/st\0ep" if where == "notebook" else "/tmp/da\0ta"
        path.write_text(yaml.safe_dump(raw))
        expected = (f"key {where!r}", "NUL byte")
    elif where == "--outputs":
        args = [path, "--outputs", f"{out}\0x"]
        expected = ("--outputs", "NUL byte")
    else:
        args = [f"{path}\0x", "--outputs", out]
        expected = (f"params file {path}", "not found")
    for command in ("status", "run"):
        one_line(*cli(capsys, command, *args), *expected)


# --- rebuild and a runner: no window between the check and the replacement -------------------------------------

def test_rebuild_is_refused_while_a_runner_has_the_study_open_before_any_claim(study, monkeypatch, capsys):
    path, out, db = study
    opened = []

    def rebuild_now(*args, **kwargs):   # a runner that has opened the database and not claimed anything yet
        if not opened:
            opened.append(cli(capsys, "rebuild", path, "--outputs", out))
        return original(*args, **kwargs)
    original = Store.verify
    monkeypatch.setattr(Store, "verify", rebuild_now)
    assert run(path, out, "rho=[10,100,1000]").trained == 1
    (code, err), = opened
    one_line(code, err, str(db), "a runner has this study open now", ".study.lock")
    with Store(db, mode="read") as store:
        assert store.done_points("fake") == {POINT, "step_rho=100_mu=0.5", "step_rho=1000_mu=0.5"}


def test_a_runner_cannot_start_inside_a_rebuild_so_no_point_is_set_aside(study, monkeypatch, capsys):
    path, out, db = study
    tried = []

    def run_now(db_path, study_name):   # rebuild has checked the old database; a runner starts now
        with pytest.raises(ValueError) as caught:
            run(path, out, "rho=[10,100,1000]")
        tried.append(str(caught.value))
        return original(db_path, study_name)
    original = store_module._old_contents
    monkeypatch.setattr(store_module, "_old_contents", run_now)
    monkeypatch.setattr(runner, "REBUILD_WAIT_SECONDS", 0.2)
    assert cli(capsys, "rebuild", path, "--outputs", out)[0] == 0
    assert len(tried) == 1 and "`imbalance rebuild` is replacing this database" in tried[0] and "\n" not in tried[0]
    kept = [p for p in db.parent.iterdir() if p.name.startswith("results.sqlite.replaced-")
            and not p.name.endswith(("-wal", "-shm"))]
    with sqlite3.connect(kept[0]) as old, sqlite3.connect(db) as new:   # nothing finished into the set-aside file
        assert {r[0] for r in old.execute("SELECT point_id FROM points")} == {POINT, "step_rho=100_mu=0.5"}
        assert {r[0] for r in new.execute("SELECT point_id FROM points")} == {POINT, "step_rho=100_mu=0.5"}
    assert run(path, out, "rho=[10,100,1000]").trained == 1      # once the rebuild is done, the run goes ahead


# --- the Dask scheduler killed mid-point ---------------------------------------------------------------------

def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_scheduler_killed_mid_point_is_one_line_and_leaves_no_claim(study, monkeypatch, capsys):
    """A scheduler on 127.0.0.1 with no worker: the point is submitted and in flight (claimed) when it dies."""
    import subprocess
    import sys
    import threading
    import time
    path, out, db = study
    port = _free_port()
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-dashboard"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import socket
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        monkeypatch.setattr(runner, "HEARTBEAT_SECONDS", 1)

        def kill_when_claimed():
            while time.monotonic() < deadline + 20:
                with closing(sqlite3.connect(db)) as con:
                    if con.execute("SELECT count(*) FROM points WHERE status = 'running'").fetchone()[0]:
                        break
                time.sleep(0.2)
            scheduler.kill()
        killer = threading.Thread(target=kill_when_claimed)
        killer.start()
        started = time.monotonic()
        code, err = cli(capsys, "run", path, "--set", "rho=[10,100,1000]", "--executor", f"dask://127.0.0.1:{port}",
                        "--outputs", out, "--notebooks", NOTEBOOKS, "--quiet")
        killer.join()
    finally:
        scheduler.kill()
        scheduler.wait()
    one_line(code, err, f"lost the Dask scheduler at tcp://127.0.0.1:{port}", "claims are released", "run again")
    assert time.monotonic() - started < 60
    with Store(db, mode="read") as store:
        assert store.done_points("fake") == {POINT, "step_rho=100_mu=0.5"}     # not marked done
        assert store.status("fake")["running"] == 0 and all(p["status"] != "running" for p in store.points("fake"))


# --- a real read-only file system (a read-only bind mount in a private mount namespace) ----------------------------

def _on_read_only(folder: Path, *args, env=None) -> tuple[int, str, str]:
    """Run `imbalance ARGS` with `folder` bind-mounted read-only (unshare -m: root alone is not stopped by chmod)."""
    import os
    import shlex
    import subprocess
    import sys
    command = (f"mount --bind -o ro {shlex.quote(str(folder))} {shlex.quote(str(folder))} && exec "
               + shlex.join([sys.executable, "-c", "import sys; from imbalance.cli import main; sys.exit(main(sys.argv[1:]))",
                             *map(str, args)]))
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "lib"), **(env or {})})
    return done.returncode, done.stdout, done.stderr.strip()


@pytest.mark.slow
def test_a_finished_study_on_a_read_only_file_system_reads_and_run_says_read_only(study, tmp_path):
    import subprocess
    path, out, db = study
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {tmp_path} {tmp_path}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no private mount namespace here (unshare -m needs CAP_SYS_ADMIN): the fake read-only test covers it")
    before = {p: p.read_bytes() for p in db.parent.rglob("*") if p.is_file()}
    (tmp_path / "elsewhere").mkdir()
    for args in (["status", path], ["export", path, tmp_path / "elsewhere" / "x.csv"], ["conclusions", path]):
        code, stdout, err = _on_read_only(out, *args, "--outputs", out)
        assert code == 0 and "Traceback" not in err, (args, err)
    code, _, err = _on_read_only(out, "run", path, "--set", "rho=[10,100,1000]", "--outputs", out,
                                 "--notebooks", NOTEBOOKS, "--quiet")
    assert code == 2 and len(err.splitlines()) == 1 and "damaged" not in err, err
    assert "cannot write there" in err or "read-only" in err.lower(), err
    assert {p: p.read_bytes() for p in db.parent.rglob("*") if p.is_file()} == before
