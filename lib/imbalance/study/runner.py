"""Run a study: grid -> papermill (one training notebook per grid point) -> records -> database.

Workers (local processes or Dask workers) execute notebooks and return records; only this
process writes `outputs/<study>/results.sqlite`, one transaction per grid point.  Points already
done are skipped, so an interrupted run is resumed by running it again; claims keep two runners
on one study from training a point twice.

Executors (local processes, a Dask LocalCluster, or an existing Dask scheduler): see executors.py.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field, fields
from pathlib import Path

from imbalance.catalog import TEST_IMAGES, n_classes_of
from imbalance.registry import get_method
from imbalance.study import estimates
from imbalance.study.executors import DaskPool, LocalPool, Task, parse_executor, read_progress
from imbalance.study.params import GridPoint, StudyParams, check_data, check_recipe, expand_grid, grid_size
from imbalance.study.preflight import check_study_data
from imbalance.study.store import (
    REBUILD_WAIT_SECONDS,
    Store,
    StoreUnavailable,
    StudyLock,
    StudyChanged,
    copy_path,
    error_line,
    point_seconds,
    refuse_foreign_wal,
    worker_id,
    write_copy,
)

THREADS_PER_WORKER = 2   # default torch threads per local worker: 2 cores -> 1 worker x 2 threads
HEARTBEAT_SECONDS = 30   # how often the runner refreshes its claims while points run
PROGRESS_SECONDS = 1.0   # how often the runner reads the running points' progress files (its bar)


@dataclass
class RunSummary:
    study: str
    points: int                  # grid points in the study
    trained: int = 0             # points trained and inserted by this run
    skipped: int = 0             # points already done (before this run, or by another runner)
    failed: int = 0              # points that failed max_attempts times
    elsewhere: int = 0           # points left to another runner's live claim
    records: int = 0             # network records inserted by this run
    wall_seconds: float = 0.0
    grid_seconds: float = 0.0    # of which in the grid loop (claims, waiting, inserts, copies): the rest is checks
    errors: dict[str, str] = field(default_factory=dict)   # point_id -> error text
    stopped: str | None = None   # why the grid was stopped early (the same error at its first points)
    first_success: bool = False  # a point succeeded in this run (repeated failures stop the grid until then)

    def line(self) -> str:
        parts = [f"{self.trained} trained ({self.records} records)", f"{self.skipped} skipped",
                 f"{self.failed} failed"] + ([f"{self.elsewhere} running elsewhere"] if self.elsewhere else [])
        line = f"{self.study}: {self.points} grid points: {', '.join(parts)}; wall {_duration(self.wall_seconds)}"
        return line + (f"\n{self.stopped}" if self.stopped else "")


def default_workers(params: StudyParams, *, cores: int | None = None) -> int:
    """Local workers: one per THREADS_PER_WORKER cores; one for a cuda study (one GPU)."""
    cores = cores or _cores()
    return 1 if params.device.startswith("cuda") else max(1, cores // THREADS_PER_WORKER)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- the run ---------------------------------------------------------------------------------

# A grid above this many trained networks, or projected to take longer than this, runs only with
# --yes (yes=True): the paper's MNIST step grid is 81 x 5 x 50 = 20,250 networks.
HUGE_NETWORKS = 100_000
HUGE_SECONDS = 7 * 24 * 3600
STOP_AFTER_SAME_FAILURES = 2  # distinct points failing alike, before any success: stop the grid


def run_study(params: StudyParams, *, executor: str = "local", workers: int | None = None,
              quiet: bool = False, outputs_dir="outputs", notebooks_dir="notebooks",
              kernel_name: str = "imbalance", max_attempts: int = 2, dry_run: bool = False,
              record_estimate: bool = False,
              yes: bool = False, pool=None) -> RunSummary:
    """Train every grid point not yet done; see the module docstring for executors.

    Everything that can be checked is checked before any notebook starts (the notebook and its
    parameters, the kernel, the data files' hashes and class sizes, the device, the outputs folder,
    the database and the study's settings).  record_estimate: with dry_run, also write the estimate to
    OUTPUTS/estimates.json (`study.estimates`), which the index of committed studies reads.  `pool`: an object with submit / wait / close (as in
    executors.py) to run the Tasks instead of `executor` (tests, embedding).
    """
    start = time.monotonic()
    kind, address = parse_executor(executor)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    if record_estimate and not dry_run:
        raise ValueError("record_estimate (--record-estimate) needs dry_run (--dry-run): it records the dry run's "
                         "estimate")
    explicit_workers, workers = workers is not None, workers or default_workers(params)
    huge = _huge_grid(params, Path(outputs_dir).resolve() / params.study, workers)
    if huge and not (yes or dry_run):
        raise ValueError(f"{params.source}: {huge}; run it anyway with --yes (yes=True), or shrink the grid")
    points = expand_grid(params)
    study_dir = Path(outputs_dir).resolve() / params.study
    notebook, missing = _notebook_path(params, notebooks_dir)
    check_recipe(params)
    check_model_input(params)    # before the dry run's plan too: an image size the model cannot take never trains
    summary = RunSummary(params.study, len(points))
    if dry_run:
        _check_same_study(params, study_dir / "results.sqlite")
        done = point_seconds(study_dir / "results.sqlite", params.study)
        todo = [p for p in points if p.point_id not in done]
        estimate = _estimate(params, done, todo, workers)
        print(plan(params, points, study_dir=study_dir, workers=workers, estimate=estimate, done=done))
        if record_estimate:
            where = estimates.record(outputs_dir, params.study, seconds=estimate.seconds, text=estimate.text,
                                     points=len(todo), workers=workers)
            print(f"estimate recorded in {where}")
        for warning in ([missing] if missing else []) + ([huge + "; `run` needs --yes"] if huge else []):
            print(f"warning: {warning}")
        return summary
    if missing:
        raise FileNotFoundError(missing)
    check_notebook_parameters(params, notebook)
    if address is None and pool is None:
        _check_kernel(kernel_name)
        check_device(params)
    check_data(params)
    check_study_data(params)
    verify_data(params)
    _check_writable(study_dir)

    if (study_dir / "results.sqlite").is_file():   # before this run's own lock hides whether a runner has it open
        refuse_foreign_wal(study_dir / "results.sqlite")
    lock = StudyLock(study_dir, shared=True, wait=REBUILD_WAIT_SECONDS)   # no rebuild while this run has it open
    try:
        store = Store(study_dir / "results.sqlite", mode="write", busy_timeout=LOCK_SECONDS)
    except BaseException:
        lock.release()
        raise
    try:
        settings = _check_same_study(params, store)
        _insert_kept(store, params, study_dir, settings)
        store.verify(params.study)
        sealed = store.seal(params.study)
        if sealed:
            print(f"{store.path}: stored the content digest of {len(sealed)} done point(s) kept from before digests "
                  "existed (checked against their records copies), once")
        done = store.done_points(params.study)
        _restore_copies(store, params.study, done, study_dir, rewrite=set(sealed))
        pending = [p for p in points if p.point_id not in done]
        summary.skipped = len(points) - len(pending)
        if not pending:
            print(f"all {len(points)} grid points already done; nothing to train")
            return summary
        if summary.skipped and not quiet:   # a resume: the bar's rate and ETA count only the work left
            print(f"{params.study}: {summary.skipped} of {len(points)} points already done; "
                  f"training the other {len(pending)}")
        threads = max(1, _cores() // workers) if address is None else None
        resources = {"GPU": 1} if address and params.device.startswith("cuda") else None
        if pool is None:
            pool = LocalPool(workers) if kind == "local" else DaskPool(address, workers, resources)
        slots = workers if address is None or explicit_workers else len(pending)  # a cluster queues
        context = dict(params=params, points=points, store=store, pool=pool, slots=slots, study_dir=study_dir,
                       notebook=notebook, kernel_name=kernel_name, threads=threads,
                       max_attempts=max_attempts, summary=summary, quiet=quiet, settings=settings)
        loop_start = time.monotonic()
        try:
            _run(pending, **context)
        finally:
            summary.grid_seconds = time.monotonic() - loop_start
    finally:
        store.close()
        lock.release()
    summary.wall_seconds = time.monotonic() - start
    print(summary.line())
    return summary


def _run(pending: list[GridPoint], *, params, points, store, pool, slots, study_dir, notebook, kernel_name,
         threads, max_attempts, summary, quiet, settings) -> None:
    from tqdm import tqdm
    me, queue, attempts, inflight = worker_id(), deque(pending), {}, {}
    first_errors: dict[str, set] = {}   # error line -> the points failing with it, until a success
    bar = _GridBar(params, points, pending, summary, quiet=quiet)
    clean, last_beat = False, time.monotonic()
    claimed: set[str] = set()   # claims of ours not finished yet (in flight, or queued for a retry)
    try:
        while queue or inflight:
            while queue and len(inflight) < slots:
                point = queue.popleft()
                if not store.claim(params.study, point.point_id, me):
                    done = store.point_status(params.study, point.point_id) == "done"
                    summary.skipped += done
                    summary.elsewhere += not done
                    bar.finish(point.point_id, counted=done)
                    continue
                attempts[point.point_id] = attempts.get(point.point_id, 0) + 1
                claimed.add(point.point_id)
                task = Task(point.point_id, str(notebook), str(study_dir / "notebooks" / f"{point.point_id}.ipynb"),
                            str(study_dir / "incoming" / f"{point.point_id}.{uuid.uuid4().hex[:8]}.json"),
                            point.parameters(params), kernel_name, str(notebook.parent), threads,
                            str(study_dir / "logs" / f"{point.point_id}.log"), params.cell_timeout,
                            str(study_dir / "progress" / f"{point.point_id}.{uuid.uuid4().hex[:8]}.json"))
                inflight[pool.submit(task)] = point
                bar.progress_paths[point.point_id] = task.progress_path
            bar.poll()
            for handle, outcome in pool.wait(list(inflight), timeout=HEARTBEAT_SECONDS if quiet else PROGRESS_SECONDS):
                point = inflight[handle]   # removed once handled: an exception here gives it back
                error = outcome.get("error")
                if outcome["ok"]:
                    error = _coverage_error(outcome["records"], params, notebook, repeats=point.repeats)
                    if error is None:
                        try:
                            n = store.insert_point(params.study, point.point_id, outcome["records"], worker=me,
                                                   settings=settings)
                        except StudyChanged:
                            raise
                        except (StoreUnavailable, sqlite3.OperationalError) as exc:   # locked past LOCK_SECONDS, a full disk
                            kept = _keep_records(study_dir, point.point_id, outcome["records"])
                            reason = str(exc).removeprefix(f"{store.path}: ").split("; nothing was changed")[0]
                            raise StoreUnavailable(
                                f"{store.path}: cannot record point {point.point_id!r} ({reason}); its trained records "
                                f"are kept in {kept} and the next `imbalance run` inserts them without retraining") from None
                        except (ValueError, TypeError, OverflowError, sqlite3.IntegrityError) as exc:  # bad fields
                            error = f"inserting the records failed: {type(exc).__name__}: {exc}"
                        else:
                            if n:
                                write_copy(store.point_copy(params.study, point.point_id), study_dir)
                            del inflight[handle]
                            claimed.discard(point.point_id)
                            summary.trained += 1
                            summary.records += n
                            bar.finish(point.point_id)
                            summary.first_success = True
                            continue
                line = error_line(error)
                if not outcome.get("transient") and not summary.first_success:
                    alike = first_errors.setdefault(line, set())
                    alike.add(point.point_id)
                    if len(alike) >= STOP_AFTER_SAME_FAILURES:
                        for point_id in sorted(alike - set(summary.errors)):   # each failing point: failed
                            _fail(store, params, point_id, error, summary)
                            claimed.discard(point_id)
                        del inflight[handle]
                        summary.stopped = (f"stopped early: grid points {', '.join(sorted(alike))} failed with the "
                                           f"same error before any point succeeded, so it would fail everywhere: "
                                           f"{line}")
                        return
                del inflight[handle]
                if attempts[point.point_id] < max_attempts and retried(outcome, line):
                    queue.appendleft(point)  # retry it next (our own claim is re-taken)
                    bar.finish(point.point_id, counted=False)    # its progress restarts with the retry
                else:
                    _fail(store, params, point.point_id, error, summary)
                    claimed.discard(point.point_id)
                    bar.finish(point.point_id, failed=True)
                    if not quiet:
                        tqdm.write(f"{point.point_id} failed after {attempts[point.point_id]} attempt(s)"
                                   + ("" if retried(outcome, line) else " (not a transient fault: it would recur, so not retried)")
                                   + f": {line}")
            if inflight and time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                store.heartbeat(params.study, [p.point_id for p in inflight.values()], me)
                last_beat = time.monotonic()
        clean = True
    finally:
        bar.close()
        for point_id in sorted(claimed):  # interrupted or stopped: give running and retried points back
            try:
                store.release(params.study, point_id, me)
            except (StoreUnavailable, sqlite3.OperationalError):   # locked: the claim dies with this process instead
                pass
        pool.close(wait=clean)


# The faults a retry can pass (the kernel, the machine, another process: not the notebook's code or data),
# by the first line of the error text: a dead kernel or worker, a cell past cell_timeout, memory, a lock, a
# connection, a device fault.  Anything else (a ValueError, TypeError or KeyError the library raises for bad
# input, a RuntimeError of the notebook's own) would fail again alike: it fails its point at once.
TRANSIENT_FAULTS = ("DeadKernelError", "CellTimeoutError", "worker died", "MemoryError", "OutOfMemoryError",
                    "out of memory", "database is locked", "ConnectionError", "ConnectionResetError", "TimeoutError",
                    "BrokenPipeError", "CUDA error")


def retried(outcome: dict, line: str) -> bool:
    """Whether a failed point is worth another attempt: only a transient fault (the executor's flag, or one of
    TRANSIENT_FAULTS in its error line); a deterministic error is never retried."""
    return bool(outcome.get("transient")) or any(fault in line for fault in TRANSIENT_FAULTS)


def recurs(line: str) -> bool:
    """Whether an error (its first line) will recur on a retry: everything but a transient fault."""
    return not retried({}, line)


class _GridBar:
    """The runner's one bar: over the grid's networks x iterations, with the points done beside it.

    A point counts `unit` network-iterations (the recipe's iterations x the networks it trains, the
    lr search included); while it runs, the fraction its notebook writes to its progress file
    (executors.ProgressFile) counts, so a long point does not sit at 0%.  A notebook that writes no
    progress moves the bar when it finishes.  tqdm shows the rate (iterations/s) and the ETA."""

    def __init__(self, params: StudyParams, points: list[GridPoint], pending: list[GridPoint], summary: RunSummary,
                 *, quiet: bool):
        from tqdm import tqdm
        self.summary = summary
        by_repeats = {n: _point_iterations(params, n) for n in {p.repeats for p in points}}
        self.units = {p.point_id: by_repeats[p.repeats] for p in points}   # a point's network-iterations
        self.shown: dict[str, int] = {}                 # point_id -> iterations shown while it runs
        self.progress_paths: dict[str, str] = {}
        self.finished = summary.skipped
        pending = {p.point_id for p in pending}
        self.bar = tqdm(total=sum(self.units.values()),
                        initial=sum(u for p, u in self.units.items() if p not in pending), desc=params.study,
                        unit="it", unit_scale=True, disable=quiet, dynamic_ncols=True)
        self._postfix()

    def _postfix(self) -> None:
        failed = f", {self.summary.failed} failed" if self.summary.failed else ""
        self.bar.set_postfix_str(f"points {self.finished}/{self.summary.points}{failed}, "
                                 f"{self.summary.records} networks")

    def poll(self) -> None:
        """Read the running points' progress files and move the bar."""
        for point_id, path in list(self.progress_paths.items()):
            fraction = read_progress(path)
            if fraction is not None:
                now = round(fraction * self.units[point_id])
                self.bar.update(now - self.shown.get(point_id, 0))
                self.shown[point_id] = now

    def finish(self, point_id: str, *, counted: bool = True, failed: bool = False) -> None:
        """A point left the running set: done (counted: its iterations move the bar), failed (counted as
        finished, but its iterations are taken back: the bar never shows failed work as done), or to be
        retried (not counted)."""
        path = self.progress_paths.pop(point_id, None)
        if path:
            Path(path).unlink(missing_ok=True)       # a killed worker's last report
        shown = self.shown.pop(point_id, 0)
        self.bar.update((self.units[point_id] if counted and not failed else 0) - shown)
        self.finished += bool(counted)
        self._postfix()

    def close(self) -> None:
        self.bar.close()


def _point_iterations(params: StudyParams, repeats: int | None = None) -> int:
    """Network-iterations of one grid point with `repeats` (None: the study's): the recipe's iterations x
    the networks it trains (lr search included); 1 per point when the recipe cannot be read here (the bar
    then counts points)."""
    recipe = _recipe(params)
    if recipe is None:
        return 1
    return max(1, round(recipe.iterations * (_trainings(params) * (repeats or params.repeats) *
                                             _candidates(params, recipe) + _searched(params, recipe))))


def _trainings(params: StudyParams) -> float:
    """A point's trained methods counted by their length in recipe iterations (a cRT head, a ninth of one)."""
    return sum(get_method(m).stage2_length if get_method(m).stage2 else 1.0 for m in params.trained_methods)


def _recipe(params: StudyParams):
    """The study's recipe (None where the library cannot be imported or the recipe not built here)."""
    try:
        from imbalance.training.pipeline import study_recipe
        return study_recipe(params.recipe, params.recipe_overrides)
    except (ImportError, KeyError, ValueError, TypeError):
        return None


def _candidates(params: StudyParams, recipe) -> int:
    """Networks each method's pipeline trains per repeat: 1, or a best-of selection's lr x runs (8)."""
    if params.selection == "train-loss" or not getattr(recipe, "lr_search", ()):
        return 1
    return len(recipe.lr_search) * recipe.lr_search_runs


def _searched(params: StudyParams, recipe) -> int:
    """The lr search's networks per point (selection train-loss with a recipe that has one)."""
    lr_search = getattr(recipe, "lr_search", ())
    return len(lr_search) * recipe.lr_search_runs if lr_search and params.selection == "train-loss" else 0


def _fail(store, params, point_id: str, error: str | None, summary) -> None:
    store.mark_failed(params.study, point_id, error or "")
    summary.failed += 1
    summary.errors[point_id] = error or ""


# What shapes a point's records: rerunning a study with other values would mix results.  The
# grid's extent (rho, mu, points, levels) may grow, and where or how it runs may change.
SAME_STUDY_KEYS = ("dataset", "notebook", "imbalance", "n_max", "minority", "methods", "repeats",
                   "seed", "recipe", "recipe_overrides", "notebook_parameters", "validation", "test_prior", "selection",
                   "image_size", "image_fit", "equivalence_margin")
# Keys that became result-shaping after studies had been registered without them: at their default
# they are left out of a registration, so an older study (which never set them) still matches, while
# any other value, then or now, differs.
LATER_KEYS = ("validation", "test_prior", "image_size", "image_fit", "selection", "equivalence_margin")


def _check_same_study(params: StudyParams, store: Store | Path) -> dict:
    """Refuse a study whose registered settings differ; return the settings to register it with
    on its first success.  `store` may be a database path (dry run: read only, never created)."""
    defaults = {f.name: f.default for f in fields(StudyParams) if f.name in LATER_KEYS}
    settings = {k: v for k, v in params.to_dict().items()
                if k in SAME_STUDY_KEYS and not (k in LATER_KEYS and v == defaults[k])}
    own = [[int(r) if float(r).is_integer() else r, m, n] for r, m, n in params.points or () if n is not None and n != params.repeats]
    if own:    # points with repeats of their own shape their records too (registered only where there are some)
        settings["point_repeats"] = own
    from imbalance import registry
    settings["method_fingerprints"] = {m: registry.fingerprint(m) for m in params.methods}
    if isinstance(store, Path):
        if not store.exists():
            return settings
        with Store(store, create=False) as opened:
            return _check_same_study(params, opened)
    changed = store.check_study(params.study, settings)
    redefined = changed.pop("method_fingerprints", None)
    if redefined:
        then, now = redefined
        name = next(m for m in sorted(now) if (then or {}).get(m, now[m]) != now[m])
        done = store.done_points(params.study)
        if all(p.point_id in done for p in expand_grid(params)):    # nothing to train, so nothing would mix
            print(f"note: study {params.study!r}'s records were made with another definition of method {name!r} "
                  f"(fingerprint {then[name]}; {now[name]} now); every point is done, so nothing is trained; "
                  "use a new study name to train the current definition")
            redefined = None
    if redefined:
        raise ValueError(f"{params.source}: study {params.study!r} in {store.path} was trained with another definition "
                         f"of method {name!r} (fingerprint {then[name]} then, {now[name]} now: a --plugin that replaces "
                         "it, or a changed method), so its results would mix; drop that plugin, give the new "
                         "definition its own name, or use a new study name")
    if changed:
        diffs = "; ".join(f"{k}: {then!r} then, {now!r} now" for k, (then, now) in changed.items())
        raise ValueError(f"{params.source}: study {params.study!r} in {store.path} was run with other "
                         f"settings ({diffs}), so its results would mix; use a new study name, or move "
                         f"{store.path.parent} away")
    return settings


def _restore_copies(store: Store, study: str, done: set[str], study_dir: Path, *, rewrite=frozenset()) -> None:
    """Write the records copy of any done point that lacks one (a runner killed between the
    commit and the copy, or a database from before copies were kept), and again for the points in
    `rewrite` (just given a digest: their copies now carry it)."""
    folder = study_dir / "records"
    have = {p.name for p in folder.glob("*.json")} if folder.is_dir() else set()
    for point_id in sorted(done):
        if copy_path(study_dir, point_id).name not in have or point_id in rewrite:
            write_copy(store.point_copy(study, point_id), study_dir)


# How long the runner waits for another process's write lock before it keeps a finished point's records
# aside (outputs/<study>/incoming/<point_id>.kept.json) and stops; the next run inserts them.
LOCK_SECONDS = 120.0
KEPT_SUFFIX = ".kept.json"


def _keep_records(study_dir: Path, point_id: str, records: list) -> Path:
    from imbalance.study.store import write_records
    return write_records(records, study_dir / "incoming" / f"{point_id}{KEPT_SUFFIX}")


def _insert_kept(store: Store, params: StudyParams, study_dir: Path, settings: dict) -> None:
    """Insert the records a runner kept aside because it could not write the database (see LOCK_SECONDS)."""
    from imbalance.study.store import read_records
    ids = {p.point_id: p for p in expand_grid(params)}
    for path in sorted((study_dir / "incoming").glob(f"*{KEPT_SUFFIX}")):
        point = ids.get(path.name[:-len(KEPT_SUFFIX)])
        if point is None:
            continue
        records = read_records(path)
        error = _coverage_error(records, params, path, repeats=point.repeats)
        if error:
            raise ValueError(f"{path}: kept records that do not fit the study ({error}); move it away")
        if store.insert_point(params.study, point.point_id, records, worker=worker_id(), settings=settings):
            write_copy(store.point_copy(params.study, point.point_id), study_dir)
        path.unlink()


def _huge_grid(params: StudyParams, study_dir: Path, workers: int) -> str | None:
    """Why a grid needs --yes (None if it does not): its network count, counted without expanding
    it, or its projected time, where finished points of the study time it."""
    networks = grid_size(params) * len(params.trained_methods) * params.most_repeats    # an upper bound
    if networks > HUGE_NETWORKS:
        return f"the grid trains {networks:,} networks, more than {HUGE_NETWORKS:,}"
    done = point_seconds(study_dir / "results.sqlite", params.study)
    timed = [s for s in done.values() if s is not None]
    if timed:
        projected = statistics.median(timed) * max(0, grid_size(params) - len(done)) / workers
        if projected > HUGE_SECONDS:
            return (f"the grid's remaining points are projected to take {_duration(projected)} on {workers} "
                    f"worker(s) (the median point of this study took {_duration(statistics.median(timed))}), "
                    f"more than {_duration(HUGE_SECONDS)}")
    return None


def _notebook_path(params: StudyParams, notebooks_dir) -> tuple[Path, str | None]:
    """The training notebook, which must lie inside notebooks_dir; and why it is missing, if it is."""
    root = Path(notebooks_dir).resolve()
    notebook = (root / f"{params.notebook}.ipynb").resolve()
    if not notebook.is_relative_to(root):
        raise ValueError(f"{params.source}: key 'notebook': {params.notebook!r} resolves to {notebook}, outside "
                         f"the notebooks folder {root}; pass another folder with --notebooks DIR")
    missing = None if notebook.is_file() else (
        f"{params.source}: key 'notebook': {notebook} not found; expected the training notebook "
        f"<notebooks_dir>/{params.notebook}.ipynb")
    return notebook, missing


def _check_writable(study_dir: Path) -> None:
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=study_dir):
            pass
    except OSError as exc:
        raise ValueError(f"outputs folder {study_dir}: cannot write there ({exc.strerror or exc}); "
                         "choose another with --outputs DIR") from None


# --- pre-flight checks ----------------------------------------------------------------------------

def check_notebook_parameters(params: StudyParams, notebook: Path) -> None:
    """Each notebook_parameters key must be a parameter of the notebook's parameters cell (a
    misspelled one would be ignored by papermill with a warning in a log nobody reads)."""
    if not params.notebook_parameters:
        return
    import papermill as pm
    known = set(pm.inspect_notebook(str(notebook)))
    unknown = [k for k in params.notebook_parameters if k not in known]
    if unknown:
        near = difflib.get_close_matches(unknown[0], known, n=1)
        raise ValueError(f"{params.source}: key 'notebook_parameters': {unknown[0]!r} is not a parameter of "
                         f"{notebook}" + (f"; did you mean {near[0]!r}?" if near else
                                          f"; its parameters: {', '.join(sorted(known))}"))


def check_device(params: StudyParams) -> None:
    """device: cuda[:N] needs a CUDA device on this machine (local workers run here)."""
    if not params.device.startswith("cuda"):
        return
    import torch
    index = int(params.device.partition(":")[2] or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        raise ValueError(f"{params.source}: key 'device': value {params.device!r} is not valid here; this machine "
                         f"has {count} CUDA device(s) (torch {torch.__version__}); use device: auto or cpu, or run "
                         "on a machine or Dask cluster with GPUs")


def verify_data(params: StudyParams) -> None:
    """Load a resident dataset once here, so its files' hashes are checked (data.py), and check
    n_max against the examples each class has: a damaged file or too large an n_max fails now,
    not in every kernel.  Streamed image folders are only located (check_data)."""
    if params.dataset == "imagefolder":
        return
    import numpy as np

    from imbalance.data.datasets import load_dataset
    data = load_dataset(params.dataset, root=params.data_root)
    available = np.bincount(data.train_labels.numpy(), minlength=len(data.classes))
    if params.n_max is not None and params.minority != "scarcity" and params.n_max > available.min():
        c = int(available.argmin())
        raise ValueError(f"{params.source}: key 'n_max': value {params.n_max} is not valid; expected at most "
                         f"{int(available.min())}: class {c} ({data.classes[c]}) of {params.dataset} has "
                         f"{int(available[c])} training examples (or use minority: scarcity)")


def _coverage_error(records: list, params: StudyParams, notebook: Path, *, repeats: int | None = None) -> str | None:
    """None if the records hold exactly one network per (method, repeat) for the point's `repeats` (None:
    the study's), else what is wrong (checked in O(records): nothing per repeat is built)."""
    methods, repeats = set(params.methods), repeats or params.repeats
    expected = len(params.methods) * repeats
    got = Counter((r.get("method"), r.get("repeat")) if isinstance(r, dict) else repr(r) for r in records)
    unexpected = sorted(str(k) for k, n in got.items() if n > 1 or not (
        isinstance(k, tuple) and k[0] in methods and isinstance(k[1], int) and 0 <= k[1] < repeats))
    if not unexpected and len(got) == expected:
        return None
    missing = ([str((m, r)) for m in params.methods for r in range(repeats) if (m, r) not in got][:10]
               if expected <= 100_000 else ["(too many to list)"])
    return (f"{notebook} wrote records that are not one per (method, repeat): missing "
            f"{missing}, unexpected or repeated {unexpected[:10]}")


def _check_kernel(kernel_name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    if kernel_name not in KernelSpecManager().find_kernel_specs():
        raise FileNotFoundError(
            f"Jupyter kernel {kernel_name!r} is not installed; install it for this environment with "
            f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel_name}` (make venv does)")


def model_input(params: StudyParams) -> tuple[int, int, int] | None:
    """(channels, height, width) of the images the recipe's model will be given, read from headers only: an
    image folder's `image_size` or its first training image, an .npz's arrays; None where not known here (the
    built-in datasets, whose sizes every recipe takes, or data not found: check_data says so)."""
    from imbalance.data.datasets import check_npz, data_root
    try:
        if params.dataset == "npz":
            return tuple(check_npz(data_root(params.data_root)).image_shape)
        if params.dataset != "imagefolder":
            return None
        from PIL import Image
        train = data_root(params.data_root) / "train"
        first = next(f for d in sorted(train.iterdir()) if d.is_dir() for f in sorted(d.iterdir()) if f.is_file())
        with Image.open(first) as image:
            channels, (width, height) = (1 if image.mode in ("L", "1", "I;16") else 3), image.size
    except (OSError, StopIteration, ValueError):
        return None
    return (channels, params.image_size, params.image_size) if params.image_size else (channels, height, width)


def _takes(model: str, shape: tuple[int, int, int]) -> str | None:
    """None if the model runs on one zero image of `shape`, else its error in one line."""
    import torch

    from imbalance.training.models import build_model
    c, h, w = shape
    try:
        with torch.no_grad():
            build_model(model, n_classes=2, in_channels=c, seed=0, image_size=(h, w)).eval()(torch.zeros(1, c, h, w))
    except (ValueError, RuntimeError) as exc:
        return " ".join(str(exc).split())[:200]
    return None


def check_model_input(params: StudyParams) -> None:
    """The recipe's model must take the study's images (one forward pass of a zero image, before any training);
    a refusal names the images' size and the smallest setting that fixes it. Recipes that crop their inputs
    to a size of their own (ResNet-10's `crop_size`) and the fast recipes are not checked here."""
    shape = model_input(params)
    recipe = _recipe(params) if shape is not None else None
    if recipe is None or not hasattr(recipe, "model") or getattr(recipe, "preprocessing", None) in (None, "imagenet"):
        return
    error = _takes(recipe.model, shape)
    if error is None:
        return
    from imbalance.training.models import SIZED
    c, h, w = shape
    least = next((s for s in range(max(h, w) + 1, 257) if _takes(recipe.model, (c, s, s)) is None), None)
    native = SIZED.get(recipe.model, (0, 0))[0]
    side = native if least and native >= least else least
    why = (f" ({recipe.model}'s own input size; it takes {least} px and up)" if side == native != least
           else " or more")
    fix = (f"set image_size: {side}{why}: each image is fitted to {side}x{side} (image_fit: crop or stretch)"
           if params.dataset == "imagefolder" else f"resize the arrays to {side}x{side}{why}")
    raise ValueError(f"{params.source}: the images are {h}x{w} pixels, which recipe {params.recipe!r} "
                     f"({recipe.model}) cannot take ({error})" + (f"; {fix}" if side else ""))


# --- dry run -----------------------------------------------------------------------------------

def plan(params: StudyParams, points: list[GridPoint], *, study_dir: Path, workers: int,
         estimate: Estimate | None = None, done: dict | None = None) -> str:
    """The dry-run report: grid, counts, and an honest time estimate (`_estimate`'s, unless given);
    `done`: the store's finished points (`point_seconds`), read here unless given."""
    done = point_seconds(study_dir / "results.sqlite", params.study) if done is None else done
    todo = [p for p in points if p.point_id not in done]
    n, m, t = len(points), len(params.methods), len(params.trained_methods)
    repeats = sum(p.repeats for p in points)
    per = (f"{n} points x {{}} x {params.repeats} repeats" if all(p.repeats == params.repeats for p in points)
           else f"{{}} x {repeats} repeats over the {n} points")
    lines = [f"study {params.study}: {params.dataset}, {params.imbalance} imbalance, "
             f"notebook {params.notebook}, recipe {params.recipe}", "grid points:"]
    available = _available_counts(params)
    lines += [f"  {p.point_id}" + (f"  ({p.repeats} repeats)" if p.repeats != params.repeats else "")
              + ("  (done)" if p.point_id in done else "") + _subset_line(params, p, available) for p in points]
    lines += [f"{n} grid points ({len(done)} done, {len(todo)} to train)",
              f"methods: {', '.join(params.methods)}",
              f"records: {per.format(f'{m} methods')} = {m * repeats}",
              f"trained networks: {per.format(f'{t} trained methods')} = {t * repeats} "
              "(thresholding methods reuse a trained network)"]
    k = _candidates(params, _recipe(params))
    if k > 1:
        lines.append(f"selection {params.selection}: each method and repeat trains {k} candidates (the recipe's "
                     f"lr search x runs) and keeps the best on the "
                     + ("test set (the paper's protocol, optimistic: the test set chooses)"
                        if params.selection.startswith("test") else "validation split (never the test set)")
                     + f": {t * repeats} x {k} = {t * repeats * k} networks, {k}x the cost")
    lines.append("estimate: " + (estimate or _estimate(params, done, todo, workers)).text)
    lines += _gpu_bound(params, sum(p.repeats for p in todo) * k)
    try:
        check_data(params)
    except FileNotFoundError as exc:
        lines.append(f"warning: data not found: {exc}")
    return "\n".join(lines)


def _available_counts(params: StudyParams):
    """Training images per class where they can be counted without reading them (an image folder's
    files per class folder), else None (the subsets are then planned from the nominal profile)."""
    if params.dataset != "imagefolder":
        return None
    from imbalance.data.datasets import data_root
    train = data_root(params.data_root) / "train"
    try:
        folders = sorted(d for d in train.iterdir() if d.is_dir())
    except OSError:
        return None
    import numpy as np
    return np.array([sum(1 for f in os.scandir(d) if f.is_file()) for d in folders], dtype=np.int64) \
        if len(folders) >= 2 else None


def _subset_line(params: StudyParams, point: GridPoint, available) -> str:
    """A point's imbalanced training subset, per class: e.g. ':  900 classes x 10, 100 classes x 1,000'
    (from the image folder's counts where known, else the profile with the dataset's classes)."""
    from imbalance.data.profiles import NATURAL, profile_counts, subset_counts
    if point.imbalance == NATURAL:
        return _natural_line(params, available)
    n_classes = len(available) if available is not None else n_classes_of(params.dataset)
    try:
        if available is not None:
            counts = subset_counts(available, profile=point.imbalance, rho=point.rho, mu=point.mu,
                                   n_max=params.n_max, minority=params.minority, random_state=0).counts
        elif n_classes and params.n_max:
            counts = profile_counts(point.imbalance, n_classes=n_classes, n_max=params.n_max, rho=point.rho,
                                    mu=point.mu)
        elif params.n_max and point.imbalance == "step":     # per-class sizes need no class count
            low = profile_counts("step", n_classes=2, n_max=params.n_max, rho=point.rho, mu=0.5).min()
            return (f"  subset: minority classes x {int(low):,}, majority classes x {params.n_max:,} (how many of "
                    "each needs the data: set data_root)")
        else:           # n_max null: the largest the data allows, known once it is read
            return ""
    except ValueError as exc:
        return f"  (subset: {exc})"
    sizes = Counter(int(c) for c in counts)
    if len(sizes) <= 3:
        text = ", ".join(f"{n} {'class' if n == 1 else 'classes'} x {c:,}" for c, n in sorted(sizes.items()))
    else:
        text = f"{len(counts)} classes of {min(sizes):,} to {max(sizes):,}"
    return f"  subset: {text} ({int(sum(counts)):,} images" + (", as counted in the folder" if available is not None
                                                              else "") + ")"


def _natural_line(params: StudyParams, available) -> str:
    """A natural study's training counts per class, as the data holds them (the folder's files, the .npz's
    labels, or the loaded dataset's), e.g. ':  training set: zero 300, three 120, eight 15 (435 images, rho 20)'."""
    names = None
    try:
        if available is None and params.dataset == "npz":
            from imbalance.data.datasets import check_npz, data_root
            contents = check_npz(data_root(params.data_root))
            available, names = contents.train_counts, contents.classes
        elif available is None:
            from imbalance.data.datasets import load_dataset
            data = load_dataset(params.dataset, root=params.data_root)
            import numpy as np
            available, names = np.bincount(data.train_labels.numpy(), minlength=len(data.classes)), data.classes
        elif params.dataset == "imagefolder":
            from imbalance.data.datasets import data_root
            names = sorted(d.name for d in (data_root(params.data_root) / "train").iterdir() if d.is_dir())
    except (OSError, ValueError):
        return ""
    counts = [int(c) for c in available]
    if len(counts) <= 12 and names is not None and len(names) == len(counts):
        text = ", ".join(f"{n} {c:,}" for n, c in zip(names, counts))
    else:
        text = f"{len(counts)} classes of {min(counts):,} to {max(counts):,}"
    split = f"; before the {params.validation:g} validation split" if params.validation else ""
    return (f"  training set (the data's own counts): {text} ({sum(counts):,} images, "
            f"rho {max(counts) / max(1, min(counts)):.3g}{split})")


def _gpu_bound(params: StudyParams, repeats: int) -> list[str]:
    """A fast recipe's GPU projection: its counted training FLOPs at airbench94's sustained rate on
    one A100 (fast.AIRBENCH94_A100_FLOPS_PER_SECOND), a lower bound for this less tuned code."""
    recipe = _recipe(params)
    if recipe is None or hasattr(recipe, "lr_search"):      # a paper recipe (fast ones have no lr search)
        return []
    from imbalance.training import fast
    networks = repeats * len(params.trained_methods)     # repeats: summed over the points to train
    flops = networks * fast.flops_per_network(recipe)
    seconds = flops / fast.AIRBENCH94_A100_FLOPS_PER_SECOND
    return [f"GPU projection: {networks} networks x {fast.flops_per_network(recipe) / 1e15:.3f} PFLOP = "
            f"{flops / 1e15:.1f} PFLOP, at least {_duration(seconds)} ({seconds / 3600:.2f} GPU-hours) at airbench94's sustained "
            f"{fast.AIRBENCH94_A100_FLOPS_PER_SECOND / 1e12:.0f} TFLOP/s on one A100 (a lower bound: "
            "this recipe's code is less tuned; measure with benchmarks/fast_cifar10_gpu.sh)"]


@dataclass(frozen=True)
class PointTiming:
    """One grid point's real job, timed short and extrapolated: seconds = fixed + per_iteration x iterations."""
    point_id: str
    fixed: float           # seconds that do not grow with iterations (data, preprocessing, evaluation, metrics)
    per_iteration: float   # seconds per iteration of the point's whole batched job (all its networks)
    iterations: int        # the recipe's
    lengths: tuple[int, int]   # the two short runs' iterations

    @property
    def seconds(self) -> float:
        return self.fixed + self.per_iteration * self.iterations


def time_point(params: StudyParams, point: GridPoint, *, threads: int) -> PointTiming | None:
    """Time the real job of one grid point: `methods.run_grid_point` with the study's methods,
    repeats, batching and layout, its evaluations and learning-rate search, at two short lengths
    k and 2k (after a 2-iteration warm-up, excluded) with the recipe's number of evaluations, k
    doubled until training time outweighs the fixed costs (at most about one point's iterations
    in all); extrapolate linearly to the recipe's iterations.  None for streamed datasets."""
    if params.dataset == "imagefolder":
        return None
    import torch

    from imbalance.data.datasets import load_dataset
    from imbalance.training import pipeline as methods
    data = load_dataset(params.dataset, root=params.data_root)
    recipe = methods.study_recipe(params.recipe, params.recipe_overrides)
    evaluations = max(1, recipe.iterations // recipe.eval_interval)

    def run(k: int) -> float:
        short = dataclasses.replace(recipe, iterations=k, eval_interval=max(1, k // evaluations),
                                    **({"milestones": ()} if hasattr(recipe, "milestones") else {}))
        started = time.perf_counter()
        methods.run_grid_point(data, imbalance=point.imbalance, rho=point.rho, mu=point.mu, level=point.level,
                               n_max=params.n_max, minority=params.minority, methods=list(params.methods),
                               repeats=point.repeats or params.repeats, seed=params.seed, recipe=short,
                               device=params.device,
                               batched=params.batched, study=params.study, point_id=point.point_id, progress=False,
                               validation=params.validation, test_prior=params.test_prior,
                               selection=params.selection)
        return time.perf_counter() - started

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)   # as a worker would
    try:
        run(2)                       # warm-up: imports, caches, kernels' first calls
        k = max(10, 2 * evaluations)
        t1, t2 = run(k), run(2 * k)
        # lengthen until the iterations, not the fixed costs and the machine's noise, make the difference
        while t2 - t1 < 0.5 * t1 and 4 * k <= recipe.iterations:
            k, t1, t2 = 2 * k, t2, run(4 * k)
    finally:
        torch.set_num_threads(old_threads)
    per_iteration = max(0.0, (t2 - t1) / k)
    return PointTiming(point.point_id, max(0.0, t1 - per_iteration * k), per_iteration, recipe.iterations, (k, 2 * k))


@dataclass(frozen=True)
class Estimate:
    """The dry run's time estimate: its sentence and, where it has one, the seconds it gives."""
    text: str
    seconds: float | None = None


def _estimate(params: StudyParams, done: dict[str, float | None], todo: list[GridPoint], workers: int) -> Estimate:
    if not todo:
        return Estimate("nothing left to train", 0.0)
    timed = [s for s in done.values() if s is not None]
    if timed:
        per_point = statistics.median(timed)
        return Estimate(f"about {_duration(per_point * len(todo) / workers)} for {len(todo)} points on {workers} "
                f"worker(s), from the median {_duration(per_point)} per point of {len(timed)} finished "
                "points of this study (points differ in size: a rough figure)", per_point * len(todo) / workers)
    recipe = _recipe(params)
    if recipe is not None and not hasattr(recipe, "lr_search"):     # a fast recipe: probed, not run
        try:
            return _fast_estimate(params, recipe, todo, workers, threads=max(1, _cores() // workers))
        except (ValueError, RuntimeError, OSError) as exc:
            return Estimate(f"unavailable (the recipe could not be probed here: {' '.join(str(exc).split())[:300]})")
    try:
        if params.device.startswith("cuda"):
            check_device(params)
        timing = time_point(params, todo[0], threads=max(1, _cores() // workers))
    except (ValueError, RuntimeError, OSError) as exc:   # no GPU or no data here: say so, plan anyway
        return Estimate(f"unavailable (the point could not be timed here: {' '.join(str(exc).split())[:300]})")
    if timing is None:
        return Estimate(f"unavailable (no finished points of this study to time from, and {params.dataset} "
                "is streamed from an image folder, which is not timed here)")
    rounds = -(-len(todo) // workers)   # points run `workers` at a time
    return Estimate(f"about {_duration(timing.seconds * rounds)}: {len(todo)} points on {workers} worker(s), "
                    f"{_duration(timing.seconds)} per point ({timing.point_id}'s real batched job timed here at "
                    f"{timing.lengths[0]} and {timing.lengths[1]} iterations: {timing.fixed:.1f} s + "
                    f"{timing.per_iteration * 1000:.1f} ms per iteration x {timing.iterations} iterations), "
                    "plus each notebook's start-up (a few seconds)", timing.seconds * rounds)




def _fast_estimate(params: StudyParams, recipe, todo: list[GridPoint], workers: int, *, threads: int) -> Estimate:
    """A fast recipe's time here: `fast.probe_seconds_per_iteration` (a few steps on random images,
    at the point's batching) x iterations x networks, plus its evaluations (test curve points and the
    final prediction, both with the mirror: about 2 x test images / batch forward passes of a third of a
    training step each). Timing a whole point, as the paper recipes are, would train most of one."""
    import torch

    from imbalance.training import fast
    from imbalance.training.loop import resolve_device
    device = resolve_device(None if params.device == "auto" else params.device)
    networks = sum(p.repeats for p in todo) * len(params.trained_methods)
    k = min(2 if device.type == "cpu" else 8, max(1, len(params.trained_methods) * params.repeats))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        per_iteration = fast.probe_seconds_per_iteration(recipe, device=device, k=k,
                                                         layout=fast.default_layout(device) if params.batched
                                                         else "single")
    finally:
        torch.set_num_threads(old)
    n_test = TEST_IMAGES.get(params.dataset)
    evaluations = recipe.iterations // recipe.eval_interval + 1
    eval_seconds = per_iteration * 2 * n_test / recipe.batch_size / 3 * evaluations if n_test else 0.0
    per_network = per_iteration * recipe.iterations + eval_seconds
    trainings = sum(p.repeats for p in todo) * _trainings(params)     # cRT's heads train a ninth as long
    seconds = per_iteration * recipe.iterations * trainings + eval_seconds * networks
    text = (f"about {_duration(seconds / workers)} for {networks} networks on {workers} worker(s) "
            f"here: {per_iteration * 1000:.0f} ms per iteration per network (fast.probe_seconds_per_iteration, "
            f"K={k}) x {recipe.iterations} iterations" + (f" + {eval_seconds:.0f} s of evaluations" if n_test else
                                                         " (evaluations not included: test size unknown)")
            + f" = {_duration(per_network)} per network (a cRT head's training a ninth of it), "
              f"{seconds / 3600:.1f} CPU-hours"
            if device.type == "cpu" else f" = {_duration(per_network)} per network")
    return Estimate(text, seconds / workers)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --- more repeats at done points (imbalance run --until-decided, issue 24) -------------------------------

def extend_repeats(params: StudyParams, targets: dict[str, int], *, executor: str = "local", workers: int | None = None,
                   quiet: bool = False, outputs_dir="outputs", notebooks_dir="notebooks", kernel_name: str = "imbalance",
                   pool=None) -> dict[str, int]:
    """Grow done points to `targets` {point_id: repeats}: each point's notebook runs again with the
    larger `repeats`; by the seeds rule (imbalance.seeds: every seed is (study seed, point, repeat,
    purpose)) its repeats 0..n-1 are the stored networks again, which is checked (seed and metrics
    equal), and only the new repeats are added.  Returns {point_id: networks added}; a point whose
    retrained repeats differ from the stored ones (e.g. a learning-rate search over every repeat's
    subset) adds nothing and raises."""
    kind, address = parse_executor(executor)
    study_dir = Path(outputs_dir).resolve() / params.study
    notebook, missing = _notebook_path(params, notebooks_dir)
    if missing:
        raise FileNotFoundError(missing)
    if (study_dir / "results.sqlite").is_file():
        refuse_foreign_wal(study_dir / "results.sqlite")
    lock = StudyLock(study_dir, shared=True, wait=REBUILD_WAIT_SECONDS)
    try:
        store = Store(study_dir / "results.sqlite", create=False)
    except BaseException:
        lock.release()
        raise
    added: dict[str, int] = {}
    try:
        frame = store.records_frame(params.study)
        have = frame.groupby("point_id")["repeat"].nunique().to_dict() if len(frame) else {}
        grow = [dataclasses.replace(p, repeats=targets[p.point_id]) for p in expand_grid(params)
                if targets.get(p.point_id, 0) > have.get(p.point_id, 0) > 0]
        if not grow:
            return added
        workers = workers or default_workers(params)
        threads = max(1, _cores() // workers) if address is None else None
        if pool is None:
            pool = LocalPool(workers) if kind == "local" else DaskPool(address, workers, None)
        inflight = {}
        for point in grow:
            task = Task(point.point_id, str(notebook), str(study_dir / "notebooks" / f"{point.point_id}.more.ipynb"),
                        str(study_dir / "incoming" / f"{point.point_id}.{uuid.uuid4().hex[:8]}.json"),
                        point.parameters(params), kernel_name, str(notebook.parent), threads,
                        str(study_dir / "logs" / f"{point.point_id}.log"), params.cell_timeout, None)
            inflight[pool.submit(task)] = point
        try:
            while inflight:
                for handle, outcome in pool.wait(list(inflight), timeout=HEARTBEAT_SECONDS):
                    point = inflight.pop(handle)
                    error = outcome.get("error") if not outcome["ok"] else \
                        _coverage_error(outcome["records"], params, notebook, repeats=point.repeats)
                    if error:
                        raise ValueError(f"{point.point_id}: adding repeats failed: {error_line(error)}")
                    old = frame[frame["point_id"] == point.point_id]
                    added[point.point_id] = _append_repeats(store, params.study, point.point_id, outcome["records"], old)
                    write_copy(store.point_copy(params.study, point.point_id), study_dir)
                    if not quiet:
                        print(f"{point.point_id}: {have[point.point_id]} -> {point.repeats} repeats "
                              f"({added[point.point_id]} networks added)")
        finally:
            pool.close(wait=not inflight)
    finally:
        store.close()
        lock.release()
    return added


def _append_repeats(store: Store, study: str, point_id: str, records: list[dict], old) -> int:
    """Insert the records of repeats the point did not have, after checking that the others are the
    stored networks again (same seed and scores); the store adds them and the point's new digest at once."""
    stored = {(m, int(r)): row for m, r, row in zip(old["method"], old["repeat"], old.to_dict("records"))}
    new = []
    for record in records:
        key = (record["method"], int(record["repeat"]))
        if key not in stored:
            new.append(record)
            continue
        was = stored[key]
        for field_name in ("seed", "roc_auc", "accuracy"):
            a, b = was.get(field_name), record.get(field_name)
            if a is not None and b is not None and not (a == b or (isinstance(a, float) and abs(a - b) <= 1e-9)):
                raise ValueError(f"{point_id}: repeat {key[1]} of {key[0]} retrained with {field_name} {b!r}, stored "
                                 f"{a!r}: the repeat is not the same network, so no repeats were added")
    return store.add_networks(study, point_id, new)
