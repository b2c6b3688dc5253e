"""Where grid points run: worker processes on this machine, or Dask workers.

A worker executes one grid point's training notebook with papermill and returns its records (or
the error text); it never opens the database. The runner (runner.py) submits `Task`s and waits.

Executors
- "local" (default): a pool of worker processes on this machine, each running one notebook at a
  time with `cores // workers` torch threads (OMP_NUM_THREADS, and the notebook's `threads`).
- "dask": a `distributed.LocalCluster` of `workers` single-threaded worker processes.
- "dask://HOST:PORT" (or "tcp://HOST:PORT"): join a running Dask scheduler.  On SLURM/PBS, start
  one with dask-jobqueue and pass its address::

      from dask_jobqueue import SLURMCluster          # or PBSCluster
      cluster = SLURMCluster(cores=8, memory="32GB", walltime="12:00:00",
                             job_extra_directives=["--gres=gpu:1"],
                             worker_extra_args=["--resources", "GPU=1"])
      cluster.scale(jobs=10)
      print(cluster.scheduler_address)   # imbalance run params/mnist/step.yaml --executor dask://...

  Declare GPU workers with `--resources GPU=1` (as above, or `dask worker ... --resources GPU=1`);
  when params.device is cuda, points go to a remote cluster with resources={"GPU": 1}, so each
  GPU trains one grid point at a time.  Workers need this package, the kernel `imbalance`, the
  data, and the outputs folder on a shared filesystem at the same path as the runner.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import sys
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imbalance.study.store import read_records

MAX_ERROR_CHARS = 20_000  # error text kept per failed point
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Task:
    """One notebook run, as shipped to a worker (plain, picklable)."""
    point_id: str
    notebook: str
    output: str
    records_path: str
    parameters: dict[str, Any]
    kernel_name: str
    cwd: str
    threads: int | None
    log: str          # the kernel's and papermill's messages: outputs/<study>/logs/<point_id>.log
    cell_timeout: float | None = None   # seconds a cell may run (papermill/nbclient); None: no limit
    progress_path: str | None = None    # where the notebook reports {"done", "total"} iterations (ProgressFile)


# --- worker side (runs in a worker process; never touches the database) -------------------------

@contextmanager
def kernel_env(threads: int | None):
    """Environment the notebook's kernel inherits: thread counts, and this package importable."""
    lib = str(Path(__file__).resolve().parents[2])
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    new = {"PYTHONPATH": os.pathsep.join([lib] + [p for p in paths if p and p != lib])}
    if threads:
        new |= {v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@contextmanager
def _output_to(log: Path):
    """Send this process's stdout/stderr (fd level, so the kernel's too) to a log file."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


# Faults that can pass on a retry (the kernel or its machine, not the notebook's code): they are
# retried and never count towards stopping a grid whose first points fail alike.
TRANSIENT_ERRORS = ("DeadKernelError", "CellTimeoutError")


def _error_text(exc: BaseException) -> str:
    """The error, its first line always 'Type: message' (what `imbalance status` shows), then detail."""
    from papermill.exceptions import PapermillExecutionError
    if isinstance(exc, PapermillExecutionError):
        text = f"{exc.ename}: {exc.evalue}\n{exc}"
    elif type(exc).__name__ == "CellTimeoutError":   # nbclient: a cell outran cell_timeout
        text = f"CellTimeoutError: a cell ran longer than the params key cell_timeout allows\n{exc}"
    else:
        first = f"{type(exc).__name__}: " + " ".join(str(exc).split())
        text = first + "\n" + "".join(traceback.format_exception(exc)).strip()
    return ANSI.sub("", text)[:MAX_ERROR_CHARS]


def execute_point(task: Task) -> dict[str, Any]:
    """Execute one grid point's notebook; return {ok, records | error, seconds}."""
    import papermill as pm
    start = time.monotonic()
    parameters = {**task.parameters, "records_path": task.records_path, "threads": task.threads,
                  "progress_path": task.progress_path}
    try:
        Path(task.output).parent.mkdir(parents=True, exist_ok=True)
        with kernel_env(task.threads), _output_to(Path(task.log)):
            pm.execute_notebook(task.notebook, task.output, parameters=parameters,
                                kernel_name=task.kernel_name, language="python", progress_bar=False,
                                cwd=task.cwd, execution_timeout=task.cell_timeout)
        if not Path(task.records_path).is_file():
            raise RuntimeError(f"{task.notebook} finished without writing records to "
                               f"{task.records_path}; it must call "
                               "imbalance.study.store.write_records(records, records_path)")
        records = read_records(task.records_path)
    except Exception as exc:  # the runner decides: retry, or mark failed with this text
        return {"ok": False, "transient": type(exc).__name__ in TRANSIENT_ERRORS,
                "error": _error_text(exc) + f"\n(executed notebook: {task.output}; log: {task.log})"}
    finally:
        Path(task.records_path).unlink(missing_ok=True)
        if task.progress_path:
            Path(task.progress_path).unlink(missing_ok=True)
    return {"ok": True, "records": records, "seconds": time.monotonic() - start}


class ProgressFile:
    """A training notebook's progress inside its grid point, for the runner's bar: call it as
    run_grid_point's progress_callback(done, total).  It writes {"done": ..., "total": ...}
    (network-iterations) to `path` atomically (a temporary file, then os.replace), at most once every
    `interval` seconds, and always when done reaches total."""

    def __init__(self, path, *, interval: float = 1.0):
        self.path, self.interval, self._last = Path(path), float(interval), -float("inf")

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"done": int(done), "total": int(total)}))
        os.replace(tmp, self.path)


def read_progress(path) -> float | None:
    """The fraction done (0..1) that a ProgressFile at `path` reports; None when there is none yet
    (or it cannot be read: the bar is a display, never a reason to fail a point)."""
    try:
        state = json.loads(Path(path).read_text())
        done, total = int(state["done"]), int(state["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return min(1.0, max(0.0, done / total)) if total > 0 else None


def _die_with_parent() -> None:
    """Local workers die with the runner (Linux), so a killed runner leaves no orphans."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


# --- executors ---------------------------------------------------------------------------------

class LocalPool:
    def __init__(self, workers: int):
        self.workers, self.pool = workers, None

    def submit(self, task: Task):
        if self.pool is None:  # (re)built lazily, also after a worker died and broke it
            import multiprocessing
            self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=_die_with_parent)
        return self.pool.submit(execute_point, task)

    def wait(self, handles, timeout: float):
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for f in done:
            exc = f.exception()
            if isinstance(exc, cf.process.BrokenProcessPool) and self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = None
            out.append((f, f.result() if exc is None else _crash(exc)))
        return out

    def close(self, *, wait: bool = True) -> None:
        if self.pool is None:
            return
        if not wait:  # interrupted: stop running notebooks now (their kernels follow their parent)
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.kill()
        self.pool.shutdown(wait=wait, cancel_futures=True)


class DaskPool:
    def __init__(self, address: str | None, workers: int, resources: dict | None):
        import dask
        from distributed import Client, LocalCluster
        self.cluster, self.resources = None, resources
        if address is None:  # our own cluster: a dead worker fails its task at once; we retry
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None)
            self.client = Client(self.cluster)
        else:
            self.address = address
            try:
                self.client = Client(address, timeout=f"{CONNECT_SECONDS}s")
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(f"cannot reach the Dask scheduler at {address} within {CONNECT_SECONDS} s "
                                      f"({' '.join(str(exc).split())[:200]}); start it, or check the address") from None

    def submit(self, task: Task):
        return self.client.submit(execute_point, task, key=f"{task.point_id}-{uuid.uuid4().hex[:8]}",
                                  pure=False, resources=self.resources)

    def wait(self, handles, timeout: float):
        from distributed import wait
        try:
            try:
                wait(list(handles), timeout=timeout, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            done = [f for f in handles if f.done()]
            return [(f, f.result() if f.status == "finished" else _crash(f.exception())) for f in done]
        except Exception as exc:
            # the client cancels every future when it loses the scheduler ("scheduler-connection-lost"), and may
            # still be reconnecting then: the points in flight are lost either way
            lost = "connection-lost" in str(exc) or "CancelledError" in type(exc).__name__
            if self.cluster is None and (lost or self.client.status not in ("running", "connecting")):
                raise SchedulerLost(f"lost the Dask scheduler at {getattr(self, 'address', '?')} "
                                    f"({type(exc).__name__}); the running points' claims are released and finished "
                                    "points are kept: run again to resume") from None
            raise

    def close(self, *, wait: bool = True) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


CONNECT_SECONDS = 5   # how long joining a Dask scheduler may take before the runner gives up


class SchedulerLost(ConnectionError):
    """The Dask scheduler went away while points ran."""


def _crash(exc: BaseException | None) -> dict[str, Any]:
    """A worker died (BrokenProcessPool, KilledWorker, ...) while running the point."""
    return {"ok": False, "transient": True,
            "error": f"worker died while running the point: {type(exc).__name__}: {exc}"}


def parse_executor(executor: str) -> tuple[str, str | None]:
    """'local' | 'dask' | 'dask://HOST:PORT' | 'tcp://HOST:PORT' -> (kind, scheduler address)."""
    if executor in ("local", "dask"):
        return executor, None
    match = re.fullmatch(r"(dask|tcp|tls)://([^/:]+):(\d{1,5})", executor or "")
    if not match or not 1 <= int(match[3]) <= 65535:
        raise ValueError(f"executor {executor!r}: expected local, dask, dask://HOST:PORT or tcp://HOST:PORT "
                         "with PORT from 1 to 65535")
    scheme = "tcp" if match[1] == "dask" else match[1]
    return "dask", f"{scheme}://{match[2]}:{match[3]}"
