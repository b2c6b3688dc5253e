"""Run a study: grid -> papermill (one training notebook per grid point) -> records -> database.

Workers (local processes or Dask workers) execute notebooks and return records; only this
process writes `outputs/<study>/results.sqlite`, one transaction per grid point.  Points already
done are skipped, so an interrupted run is resumed by running it again; claims keep two runners
on one study from training a point twice.

Executors (local processes, a Dask LocalCluster, or an existing Dask scheduler): see executors.py.
"""
from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imbalance.params import GridPoint, StudyParams, check_data, check_recipe, expand_grid
from imbalance.executors import DaskPool, LocalPool, Task, parse_executor
from imbalance.store import Store, point_seconds, worker_id

THREADS_PER_WORKER = 2   # default torch threads per local worker: 2 cores -> 1 worker x 2 threads
HEARTBEAT_SECONDS = 30   # how often the runner refreshes its claims while points run


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
    errors: dict[str, str] = field(default_factory=dict)   # point_id -> error text

    def line(self) -> str:
        parts = [f"{self.trained} trained ({self.records} records)", f"{self.skipped} skipped",
                 f"{self.failed} failed"] + ([f"{self.elsewhere} running elsewhere"] if self.elsewhere else [])
        return f"{self.study}: {self.points} grid points: {', '.join(parts)}; wall {_duration(self.wall_seconds)}"


def default_workers(params: StudyParams, *, cores: int | None = None) -> int:
    """Local workers: one per THREADS_PER_WORKER cores; one for a cuda study (one GPU)."""
    cores = cores or _cores()
    return 1 if params.device.startswith("cuda") else max(1, cores // THREADS_PER_WORKER)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- the run ---------------------------------------------------------------------------------

def run_study(params: StudyParams, *, executor: str = "local", workers: int | None = None,
              quiet: bool = False, outputs_dir="outputs", notebooks_dir="notebooks",
              kernel_name: str = "imbalance", max_attempts: int = 2, dry_run: bool = False) -> RunSummary:
    """Train every grid point not yet done; see the module docstring for executors."""
    start = time.monotonic()
    kind, address = parse_executor(executor)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    explicit_workers, workers = workers is not None, workers or default_workers(params)
    points = expand_grid(params)
    study_dir = Path(outputs_dir).resolve() / params.study
    notebook = Path(notebooks_dir).resolve() / f"{params.notebook}.ipynb"
    missing = None if notebook.is_file() else (
        f"{params.source}: key 'notebook': {notebook} not found; expected the training notebook "
        f"<notebooks_dir>/{params.notebook}.ipynb")
    check_recipe(params)
    summary = RunSummary(params.study, len(points))
    if dry_run:
        print(plan(params, points, study_dir=study_dir, workers=workers))
        if missing:
            print(f"warning: {missing}")
        return summary
    if missing:
        raise FileNotFoundError(missing)
    if address is None:
        _check_kernel(kernel_name)
    check_data(params)

    store = Store(study_dir / "results.sqlite")
    try:
        _check_same_study(params, store)
        done = store.done_points(params.study)
        pending = [p for p in points if p.point_id not in done]
        summary.skipped = len(points) - len(pending)
        if not pending:
            print(f"all {len(points)} grid points already done; nothing to train")
            return summary
        threads = max(1, _cores() // workers) if address is None else None
        resources = {"GPU": 1} if address and params.device.startswith("cuda") else None
        pool = LocalPool(workers) if kind == "local" else DaskPool(address, workers, resources)
        slots = workers if address is None or explicit_workers else len(pending)  # a cluster queues
        context = dict(params=params, store=store, pool=pool, slots=slots, study_dir=study_dir,
                       notebook=notebook, kernel_name=kernel_name, threads=threads,
                       max_attempts=max_attempts, summary=summary, quiet=quiet)
        _run(pending, **context)
    finally:
        store.close()
    summary.wall_seconds = time.monotonic() - start
    print(summary.line())
    return summary


def _run(pending: list[GridPoint], *, params, store, pool, slots, study_dir, notebook, kernel_name,
         threads, max_attempts, summary, quiet) -> None:
    from tqdm import tqdm
    me, queue, attempts, inflight = worker_id(), list(pending), {}, {}
    expected = Counter((m, r) for m in params.methods for r in range(params.repeats))
    bar = tqdm(total=summary.points, initial=summary.skipped, desc=params.study, unit="point",
               disable=quiet, dynamic_ncols=True)
    clean = False
    try:
        while queue or inflight:
            while queue and len(inflight) < slots:
                point = queue.pop(0)
                if not store.claim(params.study, point.point_id, me):
                    done = point.point_id in store.done_points(params.study)
                    summary.skipped += done
                    summary.elsewhere += not done
                    bar.update(done)
                    continue
                attempts[point.point_id] = attempts.get(point.point_id, 0) + 1
                task = Task(point.point_id, str(notebook), str(study_dir / "notebooks" / f"{point.point_id}.ipynb"),
                             str(study_dir / "records" / f"{point.point_id}.{uuid.uuid4().hex[:8]}.json"),
                             point.parameters(params), kernel_name, str(notebook.parent), threads,
                             str(study_dir / "logs" / f"{point.point_id}.log"), params.cell_timeout)
                inflight[pool.submit(task)] = point
            for handle, outcome in pool.wait(list(inflight), timeout=HEARTBEAT_SECONDS):
                point = inflight.pop(handle)
                error = outcome.get("error")
                if outcome["ok"]:
                    error = _coverage_error(outcome["records"], expected, notebook)
                    if error is None:
                        try:
                            n = store.insert_point(params.study, point.point_id, outcome["records"], worker=me)
                        except (ValueError, TypeError, sqlite3.IntegrityError) as exc:  # bad record fields
                            error = f"inserting the records failed: {type(exc).__name__}: {exc}"
                        else:
                            summary.trained += 1
                            summary.records += n
                            bar.update(1)
                            bar.set_postfix(networks=summary.records)
                            continue
                if attempts[point.point_id] < max_attempts:
                    queue.insert(0, point)  # retry it next (our own claim is re-taken)
                else:
                    store.mark_failed(params.study, point.point_id, error)
                    summary.failed += 1
                    summary.errors[point.point_id] = error
                    bar.update(1)
                    if not quiet:
                        tqdm.write(f"{point.point_id} failed after {max_attempts} attempt(s): "
                                   f"{error.splitlines()[0] if error else ''}")
            if inflight:
                store.heartbeat(params.study, [p.point_id for p in inflight.values()], me)
        clean = True
    finally:
        bar.close()
        for point in inflight.values():  # interrupted: give running points back
            store.release(params.study, point.point_id, me)
        pool.close(wait=clean)


# What shapes a point's records: rerunning a study with other values would mix results.  The
# grid's extent (rho, mu, points, levels) may grow, and where or how it runs may change.
SAME_STUDY_KEYS = ("dataset", "notebook", "imbalance", "n_max", "minority", "methods", "repeats",
                   "seed", "recipe", "recipe_overrides")


def _check_same_study(params: StudyParams, store: Store) -> None:
    settings = {k: v for k, v in params.to_dict().items() if k in SAME_STUDY_KEYS}
    changed = store.check_study(params.study, settings)
    if changed:
        diffs = "; ".join(f"{k}: {then!r} then, {now!r} now" for k, (then, now) in changed.items())
        raise ValueError(f"{params.source}: study {params.study!r} in {store.path} was run with other "
                         f"settings ({diffs}), so its results would mix; use a new study name, or move "
                         f"{store.path.parent} away")


def _coverage_error(records: list, expected: Counter, notebook: Path) -> str | None:
    """None if the records hold exactly one network per (method, repeat), else what is wrong."""
    got = Counter((r.get("method"), r.get("repeat")) if isinstance(r, dict) else repr(r) for r in records)
    if got == expected:
        return None
    return (f"{notebook} wrote records that are not one per (method, repeat): missing "
            f"{sorted(map(str, expected - got))}, unexpected or repeated {sorted(map(str, got - expected))}")


def _check_kernel(kernel_name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    if kernel_name not in KernelSpecManager().find_kernel_specs():
        raise FileNotFoundError(
            f"Jupyter kernel {kernel_name!r} is not installed; install it for this environment with "
            f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel_name}` (make venv does)")


# --- dry run -----------------------------------------------------------------------------------

def plan(params: StudyParams, points: list[GridPoint], *, study_dir: Path, workers: int) -> str:
    """The dry-run report: grid, counts, and an honest time estimate."""
    done = point_seconds(study_dir / "results.sqlite", params.study)
    todo = [p for p in points if p.point_id not in done]
    n, m, r = len(points), len(params.methods), params.repeats
    lines = [f"study {params.study}: {params.dataset}, {params.imbalance} imbalance, "
             f"notebook {params.notebook}, recipe {params.recipe}", "grid points:"]
    lines += [f"  {p.point_id}" + ("  (done)" if p.point_id in done else "") for p in points]
    lines += [f"{n} grid points ({len(done)} done, {len(todo)} to train)",
              f"records: {n} points x {m} methods x {r} repeats = {n * m * r}",
              f"trained networks: {n} points x {len(params.trained_methods)} trained methods x {r} repeats"
              f" = {n * params.trained_per_point} (thresholding methods reuse a trained network)",
              "estimate: " + _estimate(params, done, len(todo), workers)]
    try:
        check_data(params)
    except FileNotFoundError as exc:
        lines.append(f"warning: data not found: {exc}")
    return "\n".join(lines)


PROBE_SHAPES = {"mnist-sample": (1, 28, 28), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
                "cifar10": (3, 32, 32), "cifar10-jpg": (3, 32, 32)}  # (C, H, W) of resident datasets


def probe_seconds_per_iteration(params: StudyParams, *, threads: int, iterations: int = 20) -> float | None:
    """Time the recipe's model training on random images of the dataset's shape, on this machine.

    None when it cannot be timed (train/models not importable, or a streamed dataset).
    """
    shape = PROBE_SHAPES.get(params.dataset)
    try:
        import numpy as np
        import torch
        from imbalance import models, train
    except ImportError:
        return None
    if shape is None:
        return None
    recipe = train.recipe_with(train.RECIPES[params.recipe], **params.recipe_overrides)
    n = 4 * recipe.batch_size
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels, device = torch.arange(n) % 10, None if params.device == "auto" else params.device
    old_threads, prep = torch.get_num_threads(), None
    torch.set_num_threads(threads)  # as a worker would
    try:
        def timed(k: int) -> float:
            nonlocal prep
            model = models.build_model(recipe.model, n_classes=10, in_channels=shape[0], seed=0)
            result = train.train_network(model, images, labels, np.arange(n), train.recipe_with(
                recipe, iterations=k, eval_interval=k), seed=0, device=device, preprocessor=prep, progress=False)
            prep = result.preprocessor
            return result.seconds / k
        first = timed(1)  # warm-up; on a slow machine, the estimate
        return first if first * iterations > 30 else timed(iterations)
    finally:
        torch.set_num_threads(old_threads)


def _estimate(params: StudyParams, done: dict[str, float | None], todo: int, workers: int) -> str:
    if todo == 0:
        return "nothing left to train"
    timed = [s for s in done.values() if s is not None]
    if timed:
        per_point = statistics.median(timed)
        return (f"about {_duration(per_point * todo / workers)} for {todo} points on {workers} "
                f"worker(s), from the median {_duration(per_point)} per point of {len(timed)} finished "
                "points of this study (points differ in size: a rough figure)")
    per_iteration = probe_seconds_per_iteration(params, threads=max(1, _cores() // workers))
    if per_iteration is None:
        return (f"unavailable (no finished points of this study to time from, and {params.dataset} "
                "with this recipe cannot be timed here)")
    iterations = params.recipe_overrides.get("iterations")
    if iterations is None:
        from imbalance import train
        iterations = train.RECIPES[params.recipe].iterations
    networks = todo * params.trained_per_point
    total = per_iteration * iterations * networks / workers
    return (f"about {_duration(total)}: {networks} networks x {iterations} iterations x "
            f"{per_iteration * 1000:.1f} ms per iteration (timed here on random images) / {workers} "
            "worker(s); one network at a time, without evaluation or learning-rate search")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
