"""Runner overhead per grid point: claim, insert + commit, records copy, with a stub executor.

A study of --points grid points (default 20,000; one trained method + its '-thresh' record each)
runs with tests/fixtures/stub.py's StubPool, which answers each notebook run at once, so all the
time measured is the runner's own. Prints the per-point overhead of the grid loop (start-up checks
excluded) for --runners concurrent runners on one study. Target: under 20 ms per point.
Usage: python benchmarks/runner_overhead.py [--points 20000] [--runners 1] [--dir /tmp/x]
"""
import argparse
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from fixtures.studies import NOTEBOOKS, fake_params  # noqa: E402


def runner(path, outputs, queue):
    sys.path.insert(0, str(TESTS))
    from fixtures.stub import StubPool
    from imbalance.study.params import load_params
    from imbalance.study.runner import run_study
    summary = run_study(load_params(path), outputs_dir=outputs, notebooks_dir=NOTEBOOKS, quiet=True, pool=StubPool())
    queue.put((summary.trained, summary.grid_seconds, summary.wall_seconds))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--runners", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None, help="where the study goes (default: a temporary folder)")
    a = ap.parse_args()
    folder = a.dir or Path(tempfile.mkdtemp(prefix="runner-overhead-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = fake_params(folder, rho=[1 + i for i in range(a.points)], mu=(0.5,), repeats=1)
    path.write_text(path.read_text().replace("notebook_parameters: {}", "methods: [baseline, baseline-thresh]"))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=runner, args=(path, folder / "out", queue)) for _ in range(a.runners)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - started
    db = folder / "out" / "fake" / "results.sqlite"
    with sqlite3.connect(db) as con:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        done = con.execute("SELECT count(*) FROM points WHERE status = 'done'").fetchone()[0]
    trained = sum(r[0] for r in results)
    loop = max(r[1] for r in results)
    print(f"{a.points:,} grid points, {a.runners} runner(s): {trained:,} trained, {done:,} done, integrity_check {check}")
    print(f"grid loop {loop:.1f} s -> {1000 * loop * a.runners / a.points:.2f} ms per point per runner "
          f"({1000 * loop / a.points:.2f} ms of wall per point); whole run {wall:.1f} s "
          f"with start-up; target < 20 ms per point")
    print(f"database {db} ({db.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
