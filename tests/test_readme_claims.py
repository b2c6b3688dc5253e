"""The README's "What the quick study answers" says what the quick study's database present says.

The section is generated (imbalance.analysis.quickstudy, the last step of `make study`), so a retrained
quick study, whose numbers move on another CPU, rewrites it and these tests follow whatever database is
there. Each quoted paired difference is also recomputed here with scipy, independently of
imbalance.analysis.stats, and the README's sentence on reproducibility is checked by retraining a short
grid point twice."""
import re
from pathlib import Path

import numpy as np
import pytest
from imbalance.analysis import conclusions, frames, quickstudy
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def readme():
    return (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def section(readme):
    return readme.split(quickstudy.BEGIN, 1)[1].split(quickstudy.END, 1)[0].strip()


@pytest.fixture(scope="module")
def quick():
    return frames.load_study("quick", ROOT / "outputs")


def test_the_section_is_what_the_database_present_says(section, quick):
    records, curves = quick
    assert section == quickstudy.section(records, curves), \
        "README's quick section differs from outputs/quick: run python -m imbalance.analysis.quickstudy --write"


def _by_hand(records, point, metric, method, reference, family):
    """Paired t over the repeats, its Student-t 95% interval and Holm's p over `family`, with scipy alone."""
    here = records[records["point_id"] == point]

    def pairs(m):
        a = here[here["method"] == m].set_index("repeat")[metric]
        b = here[here["method"] == reference].set_index("repeat")[metric]
        both = a.notna() & b.notna()
        return a[both].to_numpy(float), b[both].to_numpy(float)

    p = {m: sps.ttest_rel(*pairs(m)).pvalue for m in family if len(pairs(m)[0]) >= 3}
    order = sorted(p, key=p.get)
    holm, running = {}, 0.0
    for i, m in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p[m]))
        holm[m] = running
    d = np.subtract(*pairs(method))
    half = sps.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return d.mean(), d.mean() - half, d.mean() + half, holm.get(method, np.nan)


def _text(mean, low, high, p):
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}] (Holm p = {p:.2g})"


def test_each_quoted_difference_is_a_paired_t_interval_computed_by_hand(section, quick):
    records, _ = quick
    hardest = quickstudy.hardest_point(records)
    here = records[records["point_id"] == hardest]
    # trained methods only: a post-hoc method ('-thresh', '-la', '-tau-norm') re-scores its base's networks
    trained = [m for m in frames.methods_present(here) if m != "baseline" and not m.endswith(("-thresh", "-la",
                                                                                             "-tau-norm"))]
    quoted = re.findall(r"`([a-z-]+)` ([+-]\d\.\d{3} \[[^]]+\] \(Holm p = [^)]+\))", section.split("\n")[0])
    assert quoted, section
    by_hand = {m: _by_hand(records, hardest, "roc_auc", m, "baseline", trained) for m in trained}
    for method, text in quoted:
        assert text == _text(*by_hand[method]), method
    # the first bullet names every method shown better on ROC AUC (interval above 0, Holm p < 0.05): none left out
    better = {m for m, (_, low, _, p) in by_hand.items() if low > 0 and p < 0.05}
    assert {m for m, _ in quoted} == better


def test_the_quoted_verdicts_are_the_conclusions_of_the_quick_study(section, quick):
    records, curves = quick
    verdicts = {c.id: c.verdict for c in conclusions.check_all(records, curves)}
    line = re.search(r"`imbalance conclusions params/quick.yaml`: (.*?)\.\n", section, re.S).group(1)
    said = dict((cid, verdict.strip()) for verdict, ids in re.findall(r"([a-z ]+?) for (C\d(?:, C\d)*(?: and C\d)?)", line)
                for cid in re.findall(r"C\d", ids))
    assert said == verdicts


def test_the_diverged_networks_named_are_the_records_diverged_ones(section, quick):
    records, _ = quick
    trained = records[~records["method"].str.endswith(("-thresh", "-la", "-tau-norm"))]
    n = int((trained["diverged"].fillna(0) > 0).sum())
    assert (f"{n} network{'s' * (n != 1)} diverged" if n else "No network diverged.") in section


def test_the_check_command_fails_on_a_stale_section(tmp_path, quick, readme, capsys):
    stale = tmp_path / "README.md"
    stale.write_text(readme.replace(quickstudy.BEGIN + "\n- At", quickstudy.BEGIN + "\n- Once at"))
    assert quickstudy.main(["--check", "--readme", str(stale), "--outputs", str(ROOT / "outputs")]) == 1
    assert quickstudy.main(["--write", "--readme", str(stale), "--outputs", str(ROOT / "outputs")]) == 0
    assert stale.read_text() == readme
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2] == quickstudy.answer(quick[0]) and out[-1].startswith("report: ") and out[-1].endswith(
        "quick/report.html")


def _records(result):
    """What a record says of its network, without when and how long it took."""
    drop = {"train_seconds", "created_at"}
    return [{k: v for k, v in r.items() if k not in drop} for r in result.records]


def test_a_retrain_on_the_same_machine_and_threads_gives_the_same_records_bit_for_bit():
    """README, "How reproducible a retrain is": the same seeds give the same records here. A short grid point of
    the quick study (40 iterations instead of 200, 4 methods, 2 repeats) is trained twice in this process."""
    import torch
    from imbalance.data.datasets import load_dataset
    from imbalance.training.pipeline import run_grid_point, study_recipe
    data = load_dataset("mnist-sample")
    recipe = study_recipe("lenet5-mnist", {"iterations": 40, "eval_interval": 20})
    kwargs = dict(imbalance="step", rho=100, mu=0.5, n_max=400, methods=["baseline", "ros", "la-loss", "crt"],
                  repeats=2, seed=0, recipe=recipe, device="cpu", progress=False, study="quick")
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = _records(run_grid_point(data, **kwargs)), _records(run_grid_point(data, **kwargs))
    finally:
        torch.set_num_threads(old)
    assert len(first) == 8 and first == second
    assert len({r["roc_auc"] for r in first}) > 1      # networks that differ from each other, compared exactly
