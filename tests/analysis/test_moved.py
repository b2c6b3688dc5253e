"""What moved, the 2,000-iteration cut and what is still open (issue 28): the README's blocks against
the databases read with sqlite3 alone, and the paired lengthening differences against scipy."""
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from imbalance.analysis import findings, moved, planning

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "outputs"


def _section() -> str:
    return (ROOT / "README.md").read_text().split(findings.BEGIN)[1].split(findings.END)[0]


def _scores(study: str) -> pd.DataFrame:
    con = sqlite3.connect(f"file:{OUT / study / 'results.sqlite'}?mode=ro", uri=True)
    try:
        return pd.read_sql_query("SELECT point_id, rho, mu, level, method, repeat, roc_auc, diverged FROM networks",
                                 con)
    finally:
        con.close()


def test_the_methods_named_unchanged_score_the_same_in_both_databases_to_the_last_digit():
    """The README says which methods' networks are the same in mnist-step and mnist-step-v2; sqlite says it too,
    and the paper's methods are among them, so mnist-linear and mnist-graded need no re-run for C3 and C6."""
    before, after = _scores("mnist-step"), _scores("mnist-step-v2")
    shared = after.merge(before[["point_id", "repeat"]].drop_duplicates())   # repeats --until-decided added: not in both
    both = before.merge(after, on=["point_id", "method", "repeat"], suffixes=("_b", "_a"))
    by_sql = sorted(m for m, g in both.groupby("method") if (g["roc_auc_b"] == g["roc_auc_a"]).all()
                    and len(g) == (shared["method"] == m).sum())
    assert sorted(moved.identical_methods(before, after)) == by_sql
    assert {"baseline", "ros", "rus", "two-phase-ros", "two-phase-rus"} <= set(by_sql)
    assert not {"cb-focal", "ldam-drw", "crt"} & set(by_sql)            # the redefined ones did move
    line = next(x for x in _section().splitlines() if x.startswith("**What moved since the first MNIST study**"))
    assert "the networks of " + ", ".join(f"`{m}`" for m in moved.identical_methods(before, after)) in line


def test_the_failed_network_counts_are_the_databases():
    line = next(x for x in _section().splitlines() if x.startswith("- Failed networks"))
    before, after = _scores("mnist-step"), _scores("mnist-step-v2")
    for method in ("cb-focal", "ldam-drw"):
        b = int(before.loc[before["method"] == method, "diverged"].sum())
        a = int(after.loc[after["method"] == method, "diverged"].sum())
        assert f"`{method}` {b} before, {a} now" in line
    assert b > 0


def test_lengthening_pairs_each_network_with_itself_as_scipy_does():
    """10,000 minus 2,000 iterations over the repeats: scipy's paired t-test and Student-t interval, Holm by hand."""
    rng = np.random.default_rng(1)
    rows_short, rows_long = [], []
    for method, gain in (("baseline", 0.02), ("ros", 0.0), ("crt", -0.001)):
        for r in range(4):
            s = 0.9 + rng.normal(0, 0.01)
            base = dict(point_id="p", rho=100.0, mu=0.5, level=None, method=method, repeat=r)
            rows_short.append({**base, "roc_auc": s})
            rows_long.append({**base, "roc_auc": s + gain + rng.normal(0, 0.002)})
    rows_long.append(dict(point_id="p", rho=100.0, mu=0.5, level=None, method="baseline-thresh", repeat=0,
                          roc_auc=0.5))                     # post-hoc: not a trained network, left out
    table = moved.length_table(pd.DataFrame(rows_short), pd.DataFrame(rows_long)).set_index("method")
    assert sorted(table.index) == ["baseline", "crt", "ros"]
    p = {}
    for method in table.index:
        s = np.array([x["roc_auc"] for x in rows_short if x["method"] == method])
        lo = np.array([x["roc_auc"] for x in rows_long if x["method"] == method])
        d = lo - s
        half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        assert table.loc[method, "mean_difference"] == pytest.approx(d.mean(), abs=1e-12)
        assert table.loc[method, "ci_low"] == pytest.approx(d.mean() - half, abs=1e-12)
        p[method] = sps.ttest_rel(lo, s).pvalue
        assert table.loc[method, "p_value"] == pytest.approx(p[method], rel=1e-9)
    ordered = sorted(p, key=p.get)                               # Holm by hand: m = 3 tests at the point
    running = 0.0
    for rank, method in enumerate(ordered):
        running = max(running, min(1.0, (3 - rank) * p[method]))
        assert table.loc[method, "p_holm"] == pytest.approx(running, rel=1e-9)
    assert table.loc["baseline", "verdict"] == "better"          # Holm: 3 x its p is still tiny


def _wall(study: str) -> dict:
    con = sqlite3.connect(f"file:{OUT / study / 'results.sqlite'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT point_id, (julianday(finished_at) - julianday(started_at)) * 86400 FROM points "
                           "WHERE status = 'done'").fetchall()
    finally:
        con.close()
    return dict(rows)


def test_the_unsettled_block_prices_the_open_comparisons_at_each_points_measured_wall_time():
    from imbalance.analysis import planning
    records = findings.load()[0].records
    plan = planning.plan_repeats(records, point_seconds=_wall("mnist-step-v2"))
    line = next(x for x in _section().splitlines() if x.startswith("- `mnist-step-v2`: "))
    assert f"{len(plan)} comparisons the recommendation and the conclusions use are still undecided" in line
    finite = plan[np.isfinite(plan["needed"])]
    worst = finite.groupby("point_id").agg(add=("add", "max"), needed=("needed", "max"))
    repeats = records.groupby("point_id")["repeat"].nunique()     # the runner re-trains a point at its final n
    by_hand = sum(worst.loc[p, "needed"] * _wall("mnist-step-v2")[p] / repeats[p] for p in worst.index
                  if worst.loc[p, "add"] > 0)
    assert f"{int(worst['add'].sum())} more repeats over {len(worst)} points, about {by_hand / 3600:.1f} h" in line


def test_the_paper_length_lines_are_the_databases_paired_gains():
    if not (OUT / "mnist-step-paper-length" / "results.sqlite").is_file():
        pytest.skip("mnist-step-paper-length has no committed points yet")
    short, long = _scores("mnist-step-v2"), _scores("mnist-step-paper-length")
    both = long.merge(short, on=["point_id", "method", "repeat"], suffixes=("_long", "_short"))
    both = both[~both["method"].str.contains("-thresh|-la$")]
    line = next(x for x in _section().splitlines() if x.startswith("- Mean gain from the longer training"))
    gains = (both["roc_auc_long"] - both["roc_auc_short"]).groupby(both["method"]).mean()
    for method, gain in gains.items():
        assert f"`{method}` {gain:+.4f}" in line
    block = _section().split("**Does the 2,000-iteration cut change the answer?**")[1].split("\n\n")[1]
    assert len(re.findall(r"^- ρ ", block, flags=re.M)) == both["point_id"].nunique()


def test_the_recommendations_open_question_is_priced_over_the_points_where_ros_against_the_winner_is_undecided():
    from imbalance.analysis import planning, stats
    records = findings.load()[0].records
    plain = records[records["level"].isna()]
    won = stats.point_winners(plain, methods=[m for m in plain["method"].unique()
                                              if not m.endswith(("-thresh", "-la", "-tau-norm"))])
    open_points = []
    for w in won.itertuples():
        if w.winner == "ros":
            continue
        at = plain[(plain["point_id"] == w.point_id) & ~plain["method"].str.endswith(("-thresh", "-la"))]
        paired = stats.paired_differences(at, reference=w.winner)       # Holm over every method against the winner
        if paired.loc[paired["method"] == "ros", "verdict"].iloc[0] == "undecided":
            open_points.append(w.point_id)
    line = next(x for x in _section().splitlines() if x.startswith("- The recommendation's own open question"))
    assert f"is undecided at {len(open_points)} points" in line
    plan = planning.plan_repeats(records, point_seconds=_wall("mnist-step-v2"))
    assert set(open_points) <= set(plan["point_id"])


def test_the_cut_bias_is_scipys_paired_test_of_the_lengthening_gains_baseline_minus_ros():
    rng = np.random.default_rng(3)
    short, long = [], []
    for point in ("a", "b"):
        for r in range(3):
            for method, gain in (("baseline", 0.01), ("ros", 0.002), ("rus", 0.0)):
                s = 0.95 + rng.normal(0, 0.01)
                row = dict(point_id=point, level=None, method=method, repeat=r)
                short.append({**row, "roc_auc": s})
                long.append({**row, "roc_auc": s + gain + rng.normal(0, 0.003)})
    short, long = pd.DataFrame(short), pd.DataFrame(long)
    c = moved.cut_bias(short, long)
    key = ["point_id", "repeat"]
    gain = {m: (long[long["method"] == m].set_index(key)["roc_auc"] - short[short["method"] == m].set_index(key)["roc_auc"])
            for m in ("baseline", "ros")}
    assert c.n_pairs == 6
    assert c.mean_difference == pytest.approx((gain["baseline"] - gain["ros"]).mean(), abs=1e-12)
    assert c.p_value == pytest.approx(sps.wilcoxon(gain["baseline"] - gain["ros"]).pvalue, rel=1e-9)   # 6 pairs
    few = moved.cut_bias(short[short["repeat"] < 2], long[long["repeat"] < 2])                           # 4 pairs
    d = (gain["baseline"] - gain["ros"])[[(p, r) for p in ("a", "b") for r in (0, 1)]]
    assert few.n_pairs == 4 and few.p_value == pytest.approx(sps.ttest_1samp(d, 0).pvalue, rel=1e-9)
    assert moved.cut_bias(short[short["method"] != "ros"], long) is None


def test_the_added_repeats_line_counts_what_the_recorded_design_added_and_prices_what_is_left():
    """A design that grows two points of mnist-step-v2 from 3 repeats, to 5 and 10: the first has its 5 (repeats 0-1
    copied as 3-4), the other 4 (repeat 0 as 3), so 3 are added and 6 are left, priced as the runner spends them
    (the point re-trained at its final 10) at its wall time over the 3 repeats it trained (not the 4 it has now)."""
    import dataclasses
    primary = findings.load()[0]
    a, b = sorted(primary.records["point_id"].unique())[:2]
    r = primary.records
    grown = r[((r["point_id"] == a) & (r["repeat"] < 2)) | ((r["point_id"] == b) & (r["repeat"] == 0))]
    loaded = dataclasses.replace(primary, records=pd.concat([r, grown.assign(repeat=grown["repeat"] + 3)],
                                                            ignore_index=True))
    design = {"design": "internal pilot", "max_repeats": 10,
              "points": {p: {"pilot": 3, "final": {a: 5, b: 10}.get(p, 3)} for p in r["point_id"].unique()}}
    line = moved.added_markdown(loaded, design, attempt=planning.attempt_repeats(loaded.grid))
    seconds = _wall("mnist-step-v2")[b] / 3
    assert "2 of 12 points were set to grow, by 9 repeats" in line
    assert re.search(r"Added so far: 3 repeats at 2 points \(ρ [\d,]+, μ [\d.]+ \(3 → 5 of 5\), "
                     r"ρ [\d,]+, μ [\d.]+ \(3 → 4 of 10\)\)", line), line
    assert f"Still to run: 6 repeats at 1 point, about {10 * seconds / 60:.0f} min here" in line   # all 10 re-run
