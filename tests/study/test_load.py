"""Load: 2,000 grid points, 4 concurrent runners on one study, a stub executor (no training).

Every point must be done exactly once, the database must pass integrity_check, and the runner's
own overhead per point (claim, insert and commit, records copy) is printed (`pytest -s` shows it).
"""
import multiprocessing
import sqlite3
from collections import Counter

import pytest

from fixtures.studies import NOTEBOOKS, fake_params

N_POINTS, N_RUNNERS = 2_000, 4


def _runner(path, outputs, queue):
    from fixtures.stub import StubPool
    from imbalance.study.params import load_params
    from imbalance.study.runner import run_study
    pool = StubPool()
    summary = run_study(load_params(path), outputs_dir=outputs, notebooks_dir=NOTEBOOKS, quiet=True, pool=pool)
    queue.put((summary.trained, summary.skipped, summary.failed, summary.grid_seconds, pool.submitted))


@pytest.mark.slow
def test_four_runners_on_2000_points_do_each_point_exactly_once(tmp_path):
    path = fake_params(tmp_path, rho=[1 + i for i in range(N_POINTS)], mu=(0.5,), repeats=1)
    path.write_text(path.read_text().replace("notebook_parameters: {}", "methods: [baseline, baseline-thresh]"))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_runner, args=(path, tmp_path / "out", queue)) for _ in range(N_RUNNERS)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * N_RUNNERS
    submitted = Counter(point for *_, points in results for point in points)
    assert len(submitted) == N_POINTS and set(submitted.values()) == {1}     # each point ran exactly once
    assert sum(r[0] for r in results) == N_POINTS and sum(r[2] for r in results) == 0
    db = tmp_path / "out" / "fake" / "results.sqlite"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM points WHERE status = 'done'").fetchone()[0] == N_POINTS
        assert con.execute("SELECT count(*) FROM networks").fetchone()[0] == 2 * N_POINTS
        assert con.execute('SELECT count(*) FROM (SELECT DISTINCT point_id, method, "repeat" FROM networks)'
                           ).fetchone()[0] == 2 * N_POINTS
    assert len(list((tmp_path / "out" / "fake" / "records").glob("*.json"))) == N_POINTS
    loop = sum(r[3] for r in results)
    print(f"\n{N_RUNNERS} runners, {N_POINTS} points: runner overhead {1000 * loop / N_POINTS:.1f} ms per point "
          "(claim, insert + commit, records copy; grid loops summed over the runners, start-up excluded)")
