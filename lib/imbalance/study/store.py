"""The SQLite results database (`outputs/<study>/results.sqlite`), and the records file format.

Only the runner process opens the database.  A training notebook writes its grid point's records
to a JSON file (`write_records`); the runner reads them and inserts the whole point in one
transaction (`insert_point`), so a point killed half-way leaves no rows and is redone whole.
Claims (`claim`) keep two runners on one study from training the same point twice.

Every open runs `PRAGMA quick_check`: a damaged (or emptied) database stops everything with
`DatabaseError` instead of passing for "nothing done" or "all done".  A second copy of each done
point (`point_copy`, kept by the runner as outputs/<study>/records/<point_id>.json) lets
`rebuild_database` recreate the database, row for row.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from imbalance.schema import COPY_FORMAT, CURVE_FIELDS, JSON_FIELDS, NETWORK_FIELDS, RECORDS_FORMAT, VALIDATION_METRICS  # noqa: F401
from imbalance.study.integrity import POINT_COLUMNS, parse_copy, point_digest, read_json


class DatabaseError(ValueError):
    """The results database cannot be used as it is (damaged, emptied, unreadable)."""


class StoreUnavailable(DatabaseError):
    """The database is intact but cannot be used now: another process's write lock outlasted the wait, or
    its disk is full.  The transaction was rolled back; the message names the file, what was being done and
    the seconds waited."""


class StudyChanged(ValueError):
    """A study's result-shaping settings differ from those it was registered with."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id INTEGER PRIMARY KEY,
    study TEXT NOT NULL, point_id TEXT NOT NULL,
    dataset TEXT, imbalance TEXT, rho REAL, mu REAL, level REAL,
    method TEXT NOT NULL, "repeat" INTEGER NOT NULL, seed INTEGER,
    n_train INTEGER, class_counts TEXT,
    roc_auc REAL, accuracy REAL, thresholded_accuracy REAL, balanced_accuracy REAL,
    per_class_recall TEXT, diverged INTEGER, diverged_at INTEGER, iterations INTEGER,
    train_seconds REAL, device TEXT, versions TEXT, git_rev TEXT, created_at TEXT NOT NULL,
    confusion_matrix TEXT,
    UNIQUE (study, point_id, method, "repeat"));
CREATE TABLE IF NOT EXISTS curves (
    network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL, lr REAL, train_loss REAL, train_accuracy REAL, test_accuracy REAL);
CREATE INDEX IF NOT EXISTS curves_network ON curves (network_id, iteration);
CREATE TABLE IF NOT EXISTS studies (
    study TEXT PRIMARY KEY, params TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    study TEXT NOT NULL, point_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, worker TEXT,
    started_at TEXT, finished_at TEXT, heartbeat_at TEXT, digest TEXT,
    PRIMARY KEY (study, point_id));
"""
TABLES = ("networks", "curves", "studies", "points")
# the networks columns every database has had since the first version: one missing is damage, not age
FIRST_COLUMNS = (*NETWORK_FIELDS[:NETWORK_FIELDS.index("per_class_recall") + 1], "created_at")
WRITE_LOCK_SECONDS = 60.0   # how long a writer waits for another process's write lock (the runner: LOCK_SECONDS)
READ_LOCK_SECONDS = 5.0     # how long a reader (status, export, conclusions, report) waits for one
LATER_POINT_COLUMNS = ("digest",)   # points columns added later: older databases gain them on a writable open


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _age_seconds(stamp: str | None) -> float:
    if not stamp:
        return math.inf
    return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds()


def worker_id() -> str:
    """This process as a claim owner: 'host:pid'."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _plain(value: Any) -> Any:
    """numpy / torch scalars and arrays -> Python numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _reads(method):
    """A Store method that reads: an SQLite error it meets (a lock past busy_timeout, e.g. from a writer in
    exclusive locking mode; an I/O error) becomes one line naming the file and what was read."""
    @functools.wraps(method)
    def reading(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc, f"reading ({method.__name__})") from None
        except Exception as exc:    # pandas.errors.DatabaseError wraps the SQLite error of read_sql_query
            if type(exc).__module__.startswith("pandas") and isinstance(exc.__cause__, sqlite3.OperationalError):
                raise self._unavailable(exc.__cause__, f"reading ({method.__name__})") from None
            raise
    return reading


class Store:
    """The results database of one or more studies.

    claim_timeout: seconds after which a claim whose runner stopped heart-beating counts as dead
    (a claim by a dead process on this host is dead at once).  busy_timeout: seconds to wait for another
    process's lock before failing (default WRITE_LOCK_SECONDS for "write", READ_LOCK_SECONDS otherwise).  mode: "write" (the runner: refuses a read-only file),
    "read" (status, export: opens read-only, never waits for a writer's lock, changes nothing), or
    "auto" (write where the file and its folder can be written, else read).
    """

    def __init__(self, path: str | os.PathLike, *, claim_timeout: float = 600.0,
                 busy_timeout: float | None = None, create: bool = True, mode: str = "auto",
                 _check_wal: bool = True):
        if mode not in ("auto", "read", "write"):
            raise ValueError(f"mode must be 'auto', 'read' or 'write', got {mode!r}")
        self.path = Path(path)
        self.claim_timeout = claim_timeout
        if busy_timeout is None:
            busy_timeout = WRITE_LOCK_SECONDS if mode == "write" else READ_LOCK_SECONDS
        self.busy_timeout = busy_timeout
        if not self.path.exists():
            if not create or mode == "read":
                raise FileNotFoundError(f"{self.path} not found")
            _create_database(self.path)
        elif self.path.is_file() and self.path.stat().st_size == 0:
            raise DatabaseError(f"{self.path} is empty (0 bytes), so its results are lost, not pending; "
                                + _what_to_do(self.path))
        writable = _writable(self.path)
        if mode == "write" and not writable:
            raise DatabaseError(f"{self.path} is read-only (the file or its folder cannot be written), so `run` "
                                "cannot record results in it; the file is intact and `status`, `export` and "
                                "`conclusions` read it as it is; copy the study folder somewhere writable and "
                                "pass --outputs")
        self.readonly = mode == "read" or not writable
        if _check_wal:
            refuse_foreign_wal(self.path)
        self.db = self._connect(busy_timeout)
        try:
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if not self.readonly:
                self._use_wal(busy_timeout)
            self.db.execute("PRAGMA foreign_keys = ON")
            check = [r[0] for r in self.db.execute("PRAGMA quick_check(5)")]
            if check != ["ok"]:
                raise DatabaseError(f"{self.path} is damaged (PRAGMA quick_check: {'; '.join(check)[:300]}); "
                                    + _what_to_do(self.path))
            self._check_structure()
            # "auto" (a reader that may write) adds a missing networks column, as before; the points' digest
            # column is added by the first write that stores a digest, so reading never changes a file
            if not self.readonly and self._missing_columns(points=mode == "write"):
                with self._transaction():
                    self._add_missing_columns(points=mode == "write")
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise self._error(exc) from None
        except BaseException:
            self.db.close()
            raise

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        try:
            if not self.readonly:
                return sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=busy_timeout, isolation_level=None)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError as exc:   # a WAL database on a read-only file system: nobody can write it
                con.close()
                if "locked" in str(exc) or "busy" in str(exc):   # a writer holds it: never read past its lock
                    raise
                con = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
            return con
        except sqlite3.Error as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise self._unavailable(exc, "opening it") from None
            raise DatabaseError(f"{self.path}: cannot open the results database ({exc})") from None

    def _error(self, exc: sqlite3.DatabaseError) -> DatabaseError:
        """An SQLite error on open as one line naming the file and the way out."""
        text = str(exc)
        if "locked" in text or "busy" in text or "disk is full" in text or "disk I/O" in text:
            return self._unavailable(exc, "opening it")
        if "unable to open" in text or "readonly" in text:
            return DatabaseError(f"{self.path}: cannot use the results database ({text}); check the "
                                 "permissions of the file and its folder")
        return DatabaseError(f"{self.path} is damaged ({text}); " + _what_to_do(self.path))

    def _unavailable(self, exc: BaseException, doing: str) -> DatabaseError:
        """An SQLite error met while `doing` (e.g. "claiming point 'step_rho=10_mu=0.5'") as one line naming
        the file, what was being done, and for a lock the seconds waited; the transaction is rolled back."""
        text = " ".join(str(exc).split())
        if "locked" in text or "busy" in text:
            return StoreUnavailable(
                f"{self.path}: {doing}: another process held the database's write lock past the "
                f"{self.busy_timeout:g} s waited (SQLite: {text}); nothing was changed: let it finish "
                "(imbalance status PARAMS shows what runs) and try again")
        if "full" in text or "disk I/O" in text:
            return StoreUnavailable(f"{self.path}: {doing}: its file system is full or failing (SQLite: {text}); "
                                    "nothing was changed: free space there and try again")
        if "readonly" in text or "read-only" in text:
            return StoreUnavailable(f"{self.path}: {doing}: the file or its folder is read-only (SQLite: {text}); "
                                    "copy the study folder somewhere writable and pass --outputs")
        return DatabaseError(f"{self.path} is damaged ({doing}: {text}); " + _what_to_do(self.path))

    def _check_structure(self) -> None:
        """Every table, and every column the first version had: a dropped one is damage, never recreated empty."""
        have = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in TABLES if t not in have]
        if missing:
            raise DatabaseError(f"{self.path} is damaged (table {missing[0]!r} is missing); " + _what_to_do(self.path))
        columns = {r["name"] for r in self.db.execute("PRAGMA table_info(networks)")}
        lost = [c for c in FIRST_COLUMNS if c not in columns]
        if lost:
            raise DatabaseError(f"{self.path} is damaged (column networks.{lost[0]} is missing); "
                                + _what_to_do(self.path))

    def _missing_columns(self, *, points: bool = True) -> list[tuple[str, str]]:
        have = {r["name"] for r in self.db.execute("PRAGMA table_info(networks)")}
        kept = {r["name"] for r in self.db.execute("PRAGMA table_info(points)")}
        return ([("networks", n) for n in NETWORK_FIELDS if n not in have]
                + [("points", n) for n in LATER_POINT_COLUMNS if n not in kept and points])

    def _add_missing_columns(self, *, points: bool = True) -> None:
        """Migrate a database made by an older version: add each NETWORK_FIELDS column it lacks
        (committed databases exist; a new field must not make them unreadable), and the points' digest."""
        for table, name in self._missing_columns(points=points):
            kind = " TEXT" if name in JSON_FIELDS or table == "points" else ""
            self.db.execute(f'ALTER TABLE {table} ADD COLUMN "{name}"{kind}')

    def _use_wal(self, patience: float) -> None:
        """Switch to WAL once per file. Two runners opening a brand-new database at once can get
        "database is locked" here without SQLite's busy handler being consulted: retry, then give up."""
        deadline = time.monotonic() + patience
        while True:
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self, doing: str = "writing"):
        """BEGIN IMMEDIATE: take the write lock up front, so check-then-write is atomic.  A lock that outlasts
        busy_timeout, or a full disk, rolls back and raises StoreUnavailable naming the file and `doing`."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc, doing) from None

    @_reads
    def check_study(self, study: str, settings: dict[str, Any]) -> dict[str, tuple]:
        """The result-shaping settings that differ from those the study was registered with, as
        {key: (then, now)}; empty for the same settings, or a study not registered yet.  A study is
        registered by its first successful point (`insert_point(..., settings=)`), so a run that
        trained nothing (a typo, a missing file) locks nothing."""
        row = self.db.execute("SELECT params FROM studies WHERE study = ?", (study,)).fetchone()
        return {} if row is None else _differences(json.loads(row["params"]), settings)

    def _register(self, study: str, settings: dict[str, Any]) -> None:
        """Inside a transaction: register the study, or raise StudyChanged if it was registered
        with other settings (another runner, with other settings, got there first)."""
        row = self.db.execute("SELECT params FROM studies WHERE study = ?", (study,)).fetchone()
        if row is None:
            self.db.execute("INSERT INTO studies VALUES (?, ?, ?)",
                            (study, json.dumps(settings, sort_keys=True), _now()))
            return
        changed = _differences(json.loads(row["params"]), settings)
        if changed:
            raise StudyChanged(f"study {study!r} in {self.path} was registered with other settings "
                               f"({_describe(changed)}) by another run, so its results would mix")

    # --- claims -----------------------------------------------------------------------------

    def _claim_live(self, row: sqlite3.Row) -> bool:
        if _age_seconds(row["heartbeat_at"]) > self.claim_timeout:
            return False
        host, _, pid = (row["worker"] or "").rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            return _pid_alive(int(pid))
        return True  # another host: trust the heartbeat

    def claim(self, study: str, point_id: str, worker: str) -> bool:
        """Claim a point for `worker` ('host:pid'): False if it is done or held by a live claim.

        A claim whose process is dead on this host, or whose heartbeat is older than
        claim_timeout, is taken over.  Re-claiming one's own point counts another attempt.
        """
        with self._transaction(f"claiming point {point_id!r}"):
            row = self.db.execute("SELECT * FROM points WHERE study = ? AND point_id = ?",
                                  (study, point_id)).fetchone()
            if row is not None and (row["status"] == "done" or (
                    row["status"] == "running" and row["worker"] != worker and self._claim_live(row))):
                return False
            now = _now()
            self.db.execute(
                "INSERT INTO points (study, point_id, status, attempts, worker, started_at, heartbeat_at)"
                " VALUES (?, ?, 'running', 1, ?, ?, ?) ON CONFLICT (study, point_id) DO UPDATE SET"
                " status = 'running', attempts = attempts + 1, worker = excluded.worker,"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
                " finished_at = NULL", (study, point_id, worker, now, now))
            return True

    def heartbeat(self, study: str, point_ids: Iterable[str], worker: str) -> None:
        """Keep `worker`'s claims on these points alive."""
        point_ids = list(point_ids)
        with self._transaction(f"renewing the claims on {', '.join(map(repr, point_ids))}"):
            self.db.executemany(
                "UPDATE points SET heartbeat_at = ? WHERE study = ? AND point_id = ? AND worker = ?"
                " AND status = 'running'", [(_now(), study, p, worker) for p in point_ids])

    def release(self, study: str, point_id: str, worker: str) -> None:
        """Drop `worker`'s running claim (the point becomes pending again)."""
        with self._transaction(f"releasing the claim on point {point_id!r}"):
            self.db.execute("DELETE FROM points WHERE study = ? AND point_id = ? AND worker = ?"
                            " AND status = 'running'", (study, point_id, worker))

    def mark_failed(self, study: str, point_id: str, error: str) -> None:
        """Record a point's failure and its error text (a done point stays done)."""
        with self._transaction(f"marking point {point_id!r} failed"):
            self.db.execute(
                "INSERT INTO points (study, point_id, status, attempts, error, finished_at)"
                " VALUES (?, ?, 'failed', 1, ?, ?) ON CONFLICT (study, point_id) DO UPDATE SET"
                " status = 'failed', error = excluded.error, finished_at = excluded.finished_at"
                " WHERE status != 'done'", (study, point_id, error, _now()))

    # --- records ----------------------------------------------------------------------------

    def insert_point(self, study: str, point_id: str, records: list[dict[str, Any]],
                     *, worker: str | None = None, settings: dict[str, Any] | None = None) -> int:
        """Insert all of a point's records and curves and mark it done, in one transaction.

        With `settings`, the study is registered with them if it is not yet (see check_study), or
        StudyChanged is raised if it was registered with others.  Returns the number of networks
        inserted: 0 when the point was already done (a no-op).
        """
        rows = [_network_row(study, point_id, r, i) for i, r in enumerate(records)]
        with self._transaction(f"recording point {point_id!r}"):
            self._add_missing_columns()
            row = self.db.execute("SELECT status FROM points WHERE study = ? AND point_id = ?",
                                  (study, point_id)).fetchone()
            if row is not None and row["status"] == "done":
                return 0
            if settings is not None:
                self._register(study, settings)
            columns = ", ".join(f'"{f}"' for f in NETWORK_FIELDS)
            marks = ", ".join("?" * len(NETWORK_FIELDS))
            for values, curve in rows:
                cursor = self.db.execute(f"INSERT INTO networks ({columns}) VALUES ({marks})", values)
                self.db.executemany(
                    "INSERT INTO curves (network_id, iteration, lr, train_loss, train_accuracy,"
                    " test_accuracy) VALUES (?, ?, ?, ?, ?, ?)",
                    [(cursor.lastrowid, *c) for c in curve])
            now = _now()
            digest = self.content_digests(study, [point_id]).get(point_id)
            self.db.execute(
                "INSERT INTO points (study, point_id, status, attempts, worker, started_at, finished_at, digest)"
                " VALUES (?, ?, 'done', 1, ?, ?, ?, ?) ON CONFLICT (study, point_id) DO UPDATE SET"
                " status = 'done', error = NULL, finished_at = excluded.finished_at, digest = excluded.digest",
                (study, point_id, worker, now, now, digest))
        return len(rows)

    def add_networks(self, study: str, point_id: str, records: list[dict[str, Any]]) -> int:
        """Append networks (repeats it did not have) to a done point, and store the point's new content digest,
        in one transaction: the records and their digest never disagree.  Returns the networks added."""
        rows = [_network_row(study, point_id, r, i) for i, r in enumerate(records)]
        columns = ", ".join(f'"{f}"' for f in NETWORK_FIELDS)
        marks = ", ".join("?" * len(NETWORK_FIELDS))
        with self._transaction(f"adding repeats to point {point_id!r}"):
            self._add_missing_columns()
            for values, curve in rows:
                cursor = self.db.execute(f"INSERT INTO networks ({columns}) VALUES ({marks})", values)
                self.db.executemany("INSERT INTO curves (network_id, iteration, lr, train_loss, train_accuracy,"
                                    " test_accuracy) VALUES (?, ?, ?, ?, ?, ?)",
                                    [(cursor.lastrowid, *c) for c in curve])
            digest = self.content_digests(study, [point_id]).get(point_id)
            self.db.execute("UPDATE points SET digest = ? WHERE study = ? AND point_id = ?", (digest, study, point_id))
        return len(rows)

    # --- content digests ----------------------------------------------------------------------

    @_reads
    def content_digests(self, study: str, point_ids: Iterable[str] | None = None) -> dict[str, str]:
        """The digest of each point's networks and curves as they are stored now (integrity.point_digest)."""
        wanted = None if point_ids is None else set(point_ids)
        columns = ["id", *self._columns("networks", NETWORK_FIELDS)]
        networks: dict[int, dict] = {}
        by_point: dict[str, list[dict]] = {}
        one = wanted is not None and len(wanted) == 1
        for row in self.db.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in columns)} FROM networks"
                                   " WHERE study = ?" + (" AND point_id = ?" if one else ""),
                                   (study, *(wanted if one else ()))):
            if wanted is not None and row["point_id"] not in wanted:
                continue
            network = {c: row[c] for c in columns}
            for key in JSON_FIELDS:
                if isinstance(network.get(key), str):
                    network[key] = _json_or_text(network[key])
            network["curve"] = []
            networks[network["id"]] = network
            by_point.setdefault(network["point_id"], []).append(network)
        for row in self.db.execute(f"SELECT c.network_id, {', '.join('c.' + f for f in CURVE_FIELDS)} FROM curves c"
                                   " JOIN networks n ON n.id = c.network_id WHERE n.study = ?"
                                   + (" AND n.point_id = ?" if one else "") + " ORDER BY c.rowid",
                                   (study, *(wanted if one else ()))):
            if row[0] in networks:
                networks[row[0]]["curve"].append(list(row)[1:])
        points = wanted if wanted is not None else self.done_points(study) | set(by_point)
        return {p: point_digest(by_point.get(p, [])) for p in points}

    def _columns(self, table: str, names: Iterable[str]) -> list[str]:
        have = {r["name"] for r in self.db.execute(f"PRAGMA table_info({table})")}
        return [n for n in names if n in have]

    @_reads
    def stored_digests(self, study: str) -> dict[str, str | None]:
        """Done points -> the digest stored when each was inserted (None: stored before digests existed)."""
        if "digest" not in self._columns("points", ["digest"]):
            return {p: None for p in self.done_points(study)}
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT point_id, digest FROM points WHERE study = ? AND status = 'done'", (study,))}

    @_reads
    def verify(self, study: str, *, copies: str | os.PathLike | None = None) -> "Verified":
        """Recompute every done point's digest and compare it with the stored one (or, for a point stored
        before digests, with its records copy's, where `copies` holds one); raise DatabaseError naming the
        first damaged point and how to restore it.  A records copy of a point that is not done here means
        the database lost rows, or is another study's: refused too."""
        stored = self.stored_digests(study)
        now = self.content_digests(study, stored)
        folder = Path(copies) if copies is not None else self.path.parent / "records"
        unchecked = []
        for point_id in sorted(stored):
            expected = stored[point_id]
            if expected is None:
                expected = _copy_digest(copy_path(folder.parent, point_id))
                if expected is None:
                    unchecked.append(point_id)
                    continue
            if now[point_id] != expected:
                raise DatabaseError(_damaged(self.path, study, point_id, copy_path(folder.parent, point_id), expected))
        if folder.is_dir():
            orphans = sorted(f.stem for f in folder.glob("*.json") if not f.name.startswith(".")
                             and f.stem not in stored and _copy_study(f) == study)
            if orphans:
                registered = [r[0] for r in self.db.execute("SELECT study FROM studies")]
                whose = ("it registers study " + ", ".join(map(repr, registered)) + f", not {study!r}: another study's "
                         "database" if registered and study not in registered else "it lost their rows")
                raise DatabaseError(f"{self.path} lacks done point {orphans[0]!r} (and {len(orphans) - 1} more) that "
                                    f"{folder} holds copies of ({whose}); nothing was changed: move {self.path.name} "
                                    "aside and recreate it with `imbalance rebuild PARAMS`")
        return Verified(len(stored) - len(unchecked), tuple(unchecked))

    def seal(self, study: str) -> list[str]:
        """Store the digest of every done point stored before digests existed (its content as it is now,
        checked against its records copy where there is one by `verify` first); returns those points."""
        missing = [p for p, d in self.stored_digests(study).items() if d is None]
        if missing and not self.readonly:
            digests = self.content_digests(study, missing)
            with self._transaction("storing the content digests of older points"):
                self._add_missing_columns()
                self.db.executemany("UPDATE points SET digest = ? WHERE study = ? AND point_id = ? AND digest IS NULL",
                                    [(digests[p], study, p) for p in missing])
        return missing

    @_reads
    def point_status(self, study: str, point_id: str) -> str | None:
        """'done', 'running', 'failed', or None (never claimed)."""
        row = self.db.execute("SELECT status FROM points WHERE study = ? AND point_id = ?",
                              (study, point_id)).fetchone()
        return None if row is None else row["status"]

    @_reads
    def done_points(self, study: str) -> set[str]:
        return {r[0] for r in self.db.execute(
            "SELECT point_id FROM points WHERE study = ? AND status = 'done'", (study,))}

    @_reads
    def points(self, study: str) -> list[dict[str, Any]]:
        """The points table of a study, as dicts (status, attempts, error, times, worker)."""
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM points WHERE study = ? ORDER BY point_id", (study,))]

    @_reads
    def status(self, study: str, point_ids: Iterable[str] | None = None) -> dict[str, int]:
        """Counts of done / running (live claims) / failed / pending among the expected points.

        A running claim that is no longer live counts as pending.  Without point_ids, counts the
        points the database knows (pending is then 0).
        """
        rows = {r["point_id"]: r for r in self.db.execute(
            "SELECT * FROM points WHERE study = ?", (study,))}
        ids = list(rows) if point_ids is None else list(point_ids)
        counts = dict(done=0, running=0, failed=0, pending=0)
        for pid in ids:
            row = rows.get(pid)
            if row is None or (row["status"] == "running" and not self._claim_live(row)):
                counts["pending"] += 1
            else:
                counts[row["status"]] += 1
        return counts

    @_reads
    def records_frame(self, study: str, *, decode_json: bool = True):
        """The study's networks as a pandas DataFrame (JSON columns decoded unless told not to)."""
        import pandas as pd
        self.verify(study)
        frame = pd.read_sql_query(
            'SELECT * FROM networks WHERE study = ? ORDER BY point_id, method, "repeat"',
            self.db, params=(study,))
        for col in set(NETWORK_FIELDS) - set(frame.columns):     # a database from before the column
            frame[col] = None
        if decode_json:
            for col in JSON_FIELDS:
                # a NULL reads as None, or as NaN in a column that is NULL throughout (pandas)
                frame[col] = [json.loads(v) if isinstance(v, str) else None for v in frame[col]]
        return frame

    @_reads
    def curves_frame(self, study: str):
        """Training curves, one row per (network, iteration), with the network's keys."""
        import pandas as pd
        return pd.read_sql_query(
            'SELECT n.point_id, n.method, n."repeat", c.* FROM curves c JOIN networks n'
            ' ON n.id = c.network_id WHERE n.study = ? ORDER BY n.id, c.iteration',
            self.db, params=(study,))

    def export(self, study: str, path: str | os.PathLike) -> int:
        """Write the study's records to .csv, or .parquet (needs pyarrow); returns the row count."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise ValueError(f"cannot export to {path}: expected a .csv or .parquet file name")
        if suffix == ".parquet":
            import importlib.util
            if importlib.util.find_spec("pyarrow") is None:
                raise ValueError(f"cannot export to {path}: .parquet needs pyarrow, which is not "
                                 f"installed; export to {path.with_suffix('.csv')} instead")
        frame = readable(self.records_frame(study))
        if suffix == ".csv":   # lists and mappings as JSON text
            for col in [*JSON_FIELDS, *LIST_COLUMNS]:
                frame[col] = [None if v is None else json.dumps(v) for v in frame[col]]
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return len(frame)


    # --- a second copy of every done point ---------------------------------------------------------

    @_reads
    def point_copy(self, study: str, point_id: str) -> dict[str, Any]:
        """A done point as stored: its networks (ids and JSON fields decoded), their curves, its
        points row and the study's registration; `rebuild_database` inserts it back identically."""
        point = self.db.execute("SELECT * FROM points WHERE study = ? AND point_id = ?", (study, point_id)).fetchone()
        if point is None or point["status"] != "done":
            raise ValueError(f"point {point_id!r} of study {study!r} is not done in {self.path}")
        registered = self.db.execute("SELECT * FROM studies WHERE study = ?", (study,)).fetchone()
        networks = []
        for row in self.db.execute('SELECT * FROM networks WHERE study = ? AND point_id = ? ORDER BY id',
                                   (study, point_id)).fetchall():
            network = {k: row[k] for k in ("id", *NETWORK_FIELDS)}
            for key in JSON_FIELDS:
                network[key] = None if network[key] is None else json.loads(network[key])
            network["curve"] = [dict(zip(CURVE_FIELDS, c)) for c in self.db.execute(
                f"SELECT {', '.join(CURVE_FIELDS)} FROM curves WHERE network_id = ? ORDER BY rowid", (row["id"],))]
            networks.append(network)
        return {"format": COPY_FORMAT, "study": study, "point_id": point_id, "point": dict(point),
                "registered": None if registered is None else dict(registered), "networks": networks,
                "digest": point_digest(networks)}

    def _insert_copy(self, copy: dict[str, Any]) -> int:
        """Inside a transaction: insert a point's copy (checked by integrity.parse_copy) as it was, ids
        included; every column name is the schema's, every value a parameter."""
        if copy.get("registered"):
            reg = copy["registered"]
            self.db.execute("INSERT OR IGNORE INTO studies (study, params, created_at) VALUES (?, ?, ?)",
                            (reg["study"], reg["params"], reg["created_at"]))
        point = {**copy["point"], "digest": None}
        names = [c for c in POINT_COLUMNS if c in point]
        self.db.execute(f"INSERT INTO points ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                        [point[c] for c in names])
        columns = ", ".join(f'"{f}"' for f in ("id", *NETWORK_FIELDS))
        marks = ", ".join("?" * (len(NETWORK_FIELDS) + 1))
        for network in copy["networks"]:
            values = dict(network)
            for key in JSON_FIELDS:
                if values.get(key) is not None:
                    values[key] = json.dumps(values[key])
            self.db.execute(f"INSERT INTO networks ({columns}) VALUES ({marks})",
                            [values.get(f) for f in ("id", *NETWORK_FIELDS)])
            self.db.executemany(
                f"INSERT INTO curves (network_id, {', '.join(CURVE_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?)",
                [(network["id"], *(c.get(f) for f in CURVE_FIELDS)) for c in network.get("curve") or []])
        digest = self.content_digests(copy["study"], [copy["point_id"]])[copy["point_id"]]
        if digest != (copy.get("digest") or point_digest(copy["networks"])):
            raise ValueError(f"the records copy of point {copy['point_id']!r} does not store back as it reads "
                             "(a value of the wrong type for its column): it was not written by a runner")
        self.db.execute("UPDATE points SET digest = ? WHERE study = ? AND point_id = ?",
                        (digest, copy["study"], copy["point_id"]))
        return len(copy["networks"])


@dataclass(frozen=True)
class Verified:
    checked: int                      # done points whose content matched their digest
    unchecked: tuple[str, ...]        # done points stored before digests, with no copy to check against


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _copy_study(path: Path) -> str | None:
    try:
        raw = read_json(path)
    except ValueError:
        return None
    return raw.get("study") if isinstance(raw, dict) else None


def _copy_digest(path: Path) -> str | None:
    """The digest a point's records copy vouches for: its stored one, or its content's; None without a copy."""
    if not path.is_file():
        return None
    try:
        copy = parse_copy(read_json(path), path)
    except ValueError:
        return None
    return copy.get("digest") or point_digest(copy["networks"])


def _damaged(path: Path, study: str, point_id: str, copy: Path, expected: str) -> str:
    good = _copy_digest(copy) == expected
    way = (f"restore it from its records copy {copy} (which matches) with `imbalance rebuild PARAMS`" if good else
           f"its records copy {copy} does not match either: move {path.name} aside, `imbalance rebuild PARAMS` "
           f"without that copy, and `imbalance run PARAMS` retrains the point")
    return (f"{path}: point {point_id!r} of study {study!r} does not match the digest stored when it was trained "
            f"(its records were changed since); nothing was changed: {way}")


def _writable(path: Path) -> bool:
    folder = path.parent if str(path.parent) else Path(".")
    return os.access(folder, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


# Export columns added to the database's (docs/export-columns.md describes every column).
LIST_COLUMNS = ("is_minority",)          # "classes" is a stored field now (JSON_FIELDS), filled here when absent


def readable(frame):
    """The networks frame (JSON decoded) with what a reader needs beside it: class names, a per-class
    minority flag (step imbalance), each network's own seeds (as methods.run_grid_point derives
    them), and which trained network a row reuses, with its own training seconds (so that summing
    `own_train_seconds` counts every network once: '-thresh' rows reuse their base method's)."""
    from imbalance import seeds
    from imbalance.catalog import classes_of
    from imbalance.registry import get_method, is_method
    frame = frame.copy()
    frame["classes"] = [stored if isinstance(stored, list) else list(classes_of(d)) if classes_of(d) else None
                        for stored, d in zip(frame["classes"], frame["dataset"])]   # records carry them since 12
    frame["is_minority"] = [[c < max(counts) for c in counts] if kind == "step" and counts else None
                            for kind, counts in zip(frame["imbalance"], frame["class_counts"])]
    methods = [get_method(m) if is_method(m) else None for m in frame["method"]]
    trained = [None if m is None else get_method(m.base) if m.posthoc else m for m in methods]
    # a best-of-n network's candidate run is not recorded, so its init and batch seeds are unknown (None)
    best_of = [sel is not None and sel == sel and sel != "train-loss" for sel in
               (frame["selection"] if "selection" in frame else [None] * len(frame))]
    keys = [(None if s is None or s != s else int(s), p, int(r))    # s != s: NaN, a record without a seed
            for s, p, r in zip(frame["seed"], frame["point_id"], frame["repeat"])]
    frame["subset_seed"] = [None if s is None else seeds.subset_seed(s, p, r) for s, p, r in keys]
    frame["init_seed"] = [None if s is None or t is None or b else seeds.init_seed(s, p, r)
                          for (s, p, r), t, b in zip(keys, trained, best_of)]
    frame["batch_seed"] = [
        None if s is None or t is None or b else
        seeds.batch_seed(s, p, r, seeds.batch_stream(method=t.name, sampling=t.sampling, second_stage=t.stage2))
        for (s, p, r), t, b in zip(keys, trained, best_of)]
    trunk = {"none": "baseline", "ros": "ros", "rus": "rus"}   # plain cross-entropy networks, shared
    present = set(zip(frame["point_id"], frame["method"], frame["repeat"]))
    seconds = dict(zip(zip(frame["point_id"], frame["method"], frame["repeat"]), frame["train_seconds"]))
    shares, own = [], []
    for (point, method, repeat, spent), m in zip(zip(frame["point_id"], frame["method"], frame["repeat"],
                                                     frame["train_seconds"]), methods):
        reused = None if m is None else m.base if m.posthoc else \
            trunk.get(m.sampling) if m.stage2 and m.loss.plain else None
        if reused is not None and (point, reused, repeat) not in present:
            reused = None                         # its base method is not in the study: trained for this row
        shares.append(reused)
        if reused is None or spent is None:
            own.append(spent)
        elif m.posthoc:
            own.append(0.0)                       # the same network as `reused`: no training of its own
        else:                                     # a second stage: its own training only (train_seconds includes the first)
            own.append(max(0.0, spent - (seconds[(point, reused, repeat)] or 0.0)))
    frame["shares_network_with"], frame["own_train_seconds"] = shares, own
    return frame


def _create_database(path: Path) -> None:
    """Create an empty results database atomically: built aside (rollback journal, so the file alone is the
    whole database), checked, synced, then linked into place; a failure (a full disk) leaves nothing behind,
    so a results.sqlite that exists is never a half-made one and a 0-byte file can only mean damage."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".new")
    os.close(fd)
    try:
        try:
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode = DELETE")
                con.executescript(SCHEMA)
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if not set(TABLES) <= tables:
                    raise sqlite3.DatabaseError("the new database lacks tables")
            finally:
                con.close()
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        except sqlite3.Error as exc:
            raise DatabaseError(f"{path}: cannot create the results database ({exc}); nothing was left "
                                "behind: free space (or fix the folder's permissions) and try again") from None
        try:
            os.link(tmp, path)         # fails if another runner created it first: use theirs
        except FileExistsError:
            pass
        except OSError:                # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def refuse_foreign_wal(path: Path) -> None:
    """A `-wal` file left beside the database while no runner has it open is either a killed runner's committed
    points (kept: SQLite replays them) or another database's log, which SQLite would replay just the same (its
    frames carry no mark of the file they belong to) and the first read-write open would checkpoint into this
    file.  Told apart by the content digests: with the log, every done point must match the digest stored with
    it.  A log under which they do not, while the file alone verifies, is refused before anything opens the
    file read-write, so the database is left as it was."""
    wal = Path(f"{path}-wal")
    if not wal.is_file() or wal.stat().st_size == 0:
        return
    try:
        lock = StudyLock(path.parent, shared=False)
    except (StudyBusy, OSError):      # a runner has it open (its own log), or a read-only folder: SQLite decides
        return
    with lock, tempfile.TemporaryDirectory(dir=path.parent, prefix=".wal-check-") as aside:
        with_log = _verifies(path)
        if with_log is None:
            return
        alone = Path(aside) / path.name
        shutil.copyfile(path, alone)           # the file without the log
        if _verifies(alone) is None:
            raise DatabaseError(f"{wal} does not belong to {path} (with it, {with_log}; without it, the database "
                                "verifies: the log is another database's, or damaged); nothing was changed: move "
                                f"{wal.name} (and {path.name}-shm) out of the folder, then `imbalance rebuild PARAMS` "
                                f"restores any point only the log held from its records copy in {path.parent / 'records'}")


def _verifies(path: Path) -> str | None:
    """None when the database at `path` (read-only, with any log beside it) passes its checks and every done
    point of every study matches its stored digest; else what does not."""
    try:
        with Store(path, mode="read", create=False, _check_wal=False) as store:
            for (study,) in store.db.execute("SELECT DISTINCT study FROM points").fetchall():
                stored = {p: d for p, d in store.stored_digests(study).items() if d is not None}
                now = store.content_digests(study, stored)
                bad = sorted(p for p in stored if now[p] != stored[p])
                if bad:
                    return f"point {bad[0]!r} of study {study!r} does not match its stored digest"
    except (DatabaseError, sqlite3.Error) as exc:
        return " ".join(str(exc).split())[:200]
    return None


def _what_to_do(path: Path) -> str:
    return (f"nothing was changed. Restore {path.name} from a backup, or recreate it from the study's records "
            f"copies ({path.parent / 'records'}) with `imbalance rebuild PARAMS`")


EMPTY = (None, {}, [])  # a setting registered before it became one, e.g. notebook_parameters: its default


def _differences(then: dict[str, Any], settings: dict[str, Any]) -> dict[str, tuple]:
    """Settings that differ, as {key: (then, now)}; a key the registration lacks matches an empty value,
    and a study registered before method fingerprints existed registered revision 1 of every method
    (registry.legacy_fingerprint).  A method added to the study since compares with itself."""
    now = json.loads(json.dumps(settings))
    if "method_fingerprints" in now:
        from imbalance import registry
        registered = then.get("method_fingerprints") or {m: registry.legacy_fingerprint(m) for m in now["method_fingerprints"]}
        then = {**then, "method_fingerprints": {m: registered.get(m, fp) for m, fp in now["method_fingerprints"].items()}}
    return {k: (then.get(k), now.get(k)) for k in sorted(set(then) | set(now))
            if then.get(k) != now.get(k) and not (k not in then and now.get(k) in EMPTY)}


def _describe(changed: dict[str, tuple]) -> str:
    return "; ".join(f"{k}: {then!r} then, {now!r} now" for k, (then, now) in changed.items())


ERROR_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Timeout|Warning|Failure)\b.*")


def error_line(text: str | None) -> str:
    """The line of an error text that says what went wrong, e.g. 'ValueError: n_max=6000 is larger ...':
    the first line naming an exception, else the last non-empty one ('Traceback ...' never)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    named = [line for line in lines if ERROR_LINE.match(line)]
    if named:
        return named[0]
    rest = [line for line in lines if not line.startswith("Traceback")]
    return rest[-1] if rest else ""


def copy_path(study_dir: str | os.PathLike, point_id: str) -> Path:
    """Where the runner keeps a done point's copy: outputs/<study>/records/<point_id>.json."""
    return Path(study_dir) / "records" / f"{point_id}.json"


def write_copy(copy: dict[str, Any], study_dir: str | os.PathLike) -> Path:
    return _write_json_atomic(copy, copy_path(study_dir, copy["point_id"]))


def read_copy(path: str | os.PathLike, *, study: str | None = None) -> dict[str, Any]:
    """A records copy, checked against the schema (integrity.parse_copy) and against its own digest."""
    path = Path(path)
    copy = parse_copy(read_json(path), path, study=study)
    if copy.get("digest") is not None and copy["digest"] != point_digest(copy["networks"]):
        raise ValueError(f"{path}: this records copy was edited (its content does not match its digest); "
                         "restore it from git or a backup, or delete it and run the study again to retrain "
                         f"point {copy['point_id']!r}")
    return copy


LOCK_FILE = ".study.lock"   # outputs/<study>/.study.lock: runners hold it shared, `rebuild` exclusively
REBUILD_WAIT_SECONDS = 60.0   # how long a starting runner waits for a rebuild in progress


class StudyLock:
    """An advisory lock (flock) on outputs/<study>/.study.lock, held for a whole run or rebuild: every runner
    holds it shared (so runners run side by side, each claiming points), `rebuild` exclusively, so a rebuild
    never starts while a runner has the database open (even before its first claim), and a runner never
    starts while a rebuild replaces the file.  The lock goes with its process, so a killed one holds nothing."""

    def __init__(self, study_dir: str | os.PathLike, *, shared: bool, wait: float = 0.0):
        import fcntl
        self.path = Path(study_dir) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(self.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise StudyBusy(self.path, shared, wait) from None
                time.sleep(0.05)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)       # closing the descriptor drops the lock
            self.fd = None

    def __enter__(self) -> "StudyLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class StudyBusy(ValueError):
    """The study's lock is held the other way: a runner, while rebuilding; a rebuild, while starting a run."""

    def __init__(self, path: Path, shared: bool, wait: float):
        db = path.parent / "results.sqlite"
        super().__init__(
            f"{db}: `imbalance rebuild` is replacing this database (it holds {path}; waited {wait:g} s); run again "
            "once it has finished" if shared else
            f"{db}: a runner has this study open now (it holds {path}); rebuilding would set aside the points it "
            "finishes: stop it (or wait for it) and rebuild then")


@dataclass(frozen=True)
class RebuildResult:
    path: Path                  # the rebuilt database
    points: int                 # done points recreated (one per records copy)
    networks: int
    kept: Path | None           # the replaced database, moved aside (None: there was none)
    unsealed: tuple[str, ...] = ()   # points whose copies carry no digest (written before digests): taken as they are


def rebuild_database(study_dir: str | os.PathLike, study: str, *, lost_ok: bool = False) -> RebuildResult:
    """Recreate study_dir/results.sqlite from the copies in study_dir/records/: every done point's
    networks, curves and points row as they were (failed and pending points are not kept: run the
    study again to redo them).  The replaced database is moved aside, never deleted.

    Refused, changing nothing: while a runner has the study open (StudyLock, held from the check to the
    replacement, so no runner can start in between) or holds a live claim on it; a copy that is not valid
    data or whose content does not match its digest (or, for a copy from before digests, the readable
    database's content); and, unless lost_ok, a done point of the readable database that has no copy."""
    study_dir = Path(study_dir)
    db = study_dir / "results.sqlite"
    if not any(p for p in (study_dir / "records").glob("*.json") if not p.name.startswith(".")):
        raise FileNotFoundError(f"no point copies in {study_dir / 'records'}: nothing to rebuild "
                                f"{db} from (copies are kept by runs of this version on)")
    with StudyLock(study_dir, shared=False):
        return _rebuild(study_dir, study, db, lost_ok=lost_ok)


def _rebuild(study_dir: Path, study: str, db: Path, *, lost_ok: bool) -> "RebuildResult":
    """rebuild_database's work, under the study's exclusive lock (the copies are read under it too)."""
    files = sorted(p for p in (study_dir / "records").glob("*.json") if not p.name.startswith("."))
    copies = [read_copy(f, study=study) for f in files]
    old = _old_contents(db, study)
    if old is not None:
        running, digests = old
        if running:
            raise ValueError(f"{db}: a runner holds point {running[0]!r} of study {study!r} now; rebuilding would "
                             "set aside the points it finishes: stop it (or wait for it) and rebuild then")
        have = {c["point_id"] for c in copies}
        lost = sorted(set(digests) - have)
        if lost and not lost_ok:
            raise ValueError(f"{study_dir / 'records'} has no copy of done point {lost[0]!r} (and {len(lost) - 1} more) "
                             f"that {db.name} holds: rebuilding would lose it; restore the copy (git checkout, a "
                             "backup), or run the study after rebuilding to retrain it")
        for copy, path in zip(copies, files):
            known = digests.get(copy["point_id"])
            if copy.get("digest") is None and known is not None and known != point_digest(copy["networks"]):
                raise ValueError(f"{path}: this records copy does not match point {copy['point_id']!r} in {db.name} "
                                 "(one of them was edited); restore the copy from git or a backup")
    unsealed = tuple(c["point_id"] for c in copies if c.get("digest") is None)
    fresh = study_dir / f".results.rebuild-{os.getpid()}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    networks = 0
    try:
        with Store(fresh, mode="write") as store:
            with store._transaction():
                for copy in sorted(copies, key=lambda c: min(n["id"] for n in c["networks"])):
                    networks += store._insert_copy(copy)
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.IntegrityError as exc:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{fresh}{suffix}").unlink(missing_ok=True)
        raise ValueError(f"{study_dir / 'records'}: the copies do not fit together ({exc}: two copies hold the "
                         "same point or network id); restore them from git or a backup") from None
    kept = None
    if db.exists():
        kept = study_dir / f"results.sqlite.replaced-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{db}{suffix}").exists():
                os.replace(f"{db}{suffix}", f"{kept}{suffix}")
    os.replace(fresh, db)
    for suffix in ("-wal", "-shm"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    return RebuildResult(db, len(copies), networks, kept, unsealed)


def _old_contents(db: Path, study: str):
    """(live claims, {done point: digest of its content}) of the database a rebuild replaces; None when it
    cannot be read (damaged, emptied, missing: the copies are all there is)."""
    if not db.is_file() or db.stat().st_size == 0:
        return None
    made = [Path(f"{db}{s}") for s in ("-wal", "-shm") if not Path(f"{db}{s}").exists()]
    try:
        with Store(db, mode="read") as old:
            running = sorted(r["point_id"] for r in old.db.execute(
                "SELECT * FROM points WHERE study = ? AND status = 'running'", (study,)).fetchall()
                if old._claim_live(r))
            return running, old.content_digests(study, old.done_points(study))
    except (DatabaseError, sqlite3.Error, OSError):
        return None
    finally:   # a reader of a WAL database makes these; leave the replaced database as it was
        if all(not p.exists() or p.name.endswith("-shm") or p.stat().st_size == 0 for p in made):
            for p in made:
                p.unlink(missing_ok=True)


def _network_row(study: str, point_id: str, record: dict[str, Any], index: int):
    """A record dict -> (networks values, curve rows), checked."""
    where = f"record {index} of point {point_id!r}"
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a dict, got {type(record).__name__}")
    unknown = set(record) - set(NETWORK_FIELDS) - {"curve"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; expected fields from "
                         f"{', '.join(NETWORK_FIELDS)} and 'curve'")
    for key, expected in (("study", study), ("point_id", point_id)):
        if record.get(key) not in (None, expected):
            raise ValueError(f"{where}: {key} is {record[key]!r}, expected {expected!r}")
    for key in ("method", "repeat"):
        if record.get(key) is None:
            raise ValueError(f"{where}: field {key!r} is required")
    row = {**record, "study": study, "point_id": point_id}
    row.setdefault("created_at", _now())
    for key in JSON_FIELDS:
        if row.get(key) is not None:
            row[key] = json.dumps(row[key], default=_plain)
    if row.get("diverged") is not None:
        row["diverged"] = int(bool(row["diverged"]))
    values = [_scalar(row.get(f)) for f in NETWORK_FIELDS]
    curve = []
    for point in record.get("curve") or []:
        extra = set(point) - set(CURVE_FIELDS)
        if extra or point.get("iteration") is None:
            raise ValueError(f"{where}: curve entry {point!r}: expected fields {', '.join(CURVE_FIELDS)}"
                             " with 'iteration' required")
        curve.append(tuple(_scalar(point.get(f)) for f in CURVE_FIELDS))
    return values, curve


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    return _plain(value)


def point_seconds(path: str | os.PathLike, study: str) -> dict[str, float | None]:
    """Done points -> wall seconds of their last attempt, read-only ({} if there is no database)."""
    path = Path(path)
    if not path.is_file():
        return {}
    if path.stat().st_size == 0:
        raise DatabaseError(f"{path} is empty (0 bytes), so its results are lost, not pending; " + _what_to_do(path))
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=READ_LOCK_SECONDS)
        try:
            try:
                check = [r[0] for r in con.execute("PRAGMA quick_check(5)")]
            except sqlite3.OperationalError as exc:   # a WAL database on a read-only file system, as Store reads it
                if "unable to open" not in str(exc) or _writable(path):
                    raise
                con.close()
                con = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
                check = [r[0] for r in con.execute("PRAGMA quick_check(5)")]
            if check != ["ok"]:
                raise DatabaseError(f"{path} is damaged (PRAGMA quick_check: {'; '.join(check)[:300]}); "
                                    + _what_to_do(path))
            rows = con.execute("SELECT point_id, started_at, finished_at FROM points "
                               "WHERE study = ? AND status = 'done'", (study,)).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreUnavailable(f"{path}: reading the points' times: another process held the database's write "
                                   f"lock past the {READ_LOCK_SECONDS:g} s waited (SQLite: {exc}); nothing was "
                                   "changed: let it finish and try again") from None
        raise DatabaseError(f"{path} is damaged ({exc}); " + _what_to_do(path)) from None
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path} is damaged ({exc}); " + _what_to_do(path)) from None
    return {p: (datetime.fromisoformat(f) - datetime.fromisoformat(s)).total_seconds() if s and f else None
            for p, s, f in rows}


def write_records(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write a grid point's records for the runner, atomically (temp file + os.replace)."""
    return _write_json_atomic({"format": RECORDS_FORMAT, "records": list(records)}, path)


def _write_json_atomic(payload: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, default=_plain)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a records file written by `write_records`."""
    path = Path(path)
    payload = read_json(path)
    if not isinstance(payload, dict) or payload.get("format") != RECORDS_FORMAT \
            or not isinstance(payload.get("records"), list):
        raise ValueError(f"{path}: not a records file; expected a JSON object with "
                         f"format {RECORDS_FORMAT!r} and a 'records' list")
    return payload["records"]
