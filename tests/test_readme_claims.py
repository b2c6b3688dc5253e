"""The README's "What the quick study answers" quotes only what imbalance.analysis.stats and
imbalance.analysis.conclusions say of the committed quick study: each quoted paired difference is
recomputed from outputs/quick/results.sqlite, so a retrained study with other numbers fails here
until the README is updated."""
import re
from pathlib import Path

import pytest
from imbalance.analysis import conclusions, frames, stats, tables

ROOT = Path(__file__).resolve().parents[1]
# (metric, grid point, method, reference method) of every paired difference the section quotes
CLAIMS = [
    ("roc_auc", "step_rho=400_mu=0.5", "ros", "baseline"),
    ("roc_auc", "step_rho=400_mu=0.5", "crt", "baseline"),
    ("accuracy", "step_rho=400_mu=0.5", "baseline-thresh", "baseline"),
    ("accuracy", "step_rho=400_mu=0.5", "ros-thresh", "baseline-thresh"),
    ("accuracy", "step_rho=400_mu=0.2", "rus", "baseline"),
]


def quoted(row) -> str:
    """How the README writes a paired difference: mean [95% interval] (Holm p = ...)."""
    return (f"{row.mean_difference:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}] "
            f"(Holm p = {row.p_holm:.2g})")


@pytest.fixture(scope="module")
def section():
    text = (ROOT / "README.md").read_text()
    return text.split("### What the quick study answers", 1)[1].split("\n## ", 1)[0].replace("−", "-")


@pytest.fixture(scope="module")
def quick():
    return frames.load_study("quick", ROOT / "outputs")


@pytest.mark.parametrize("metric, point, method, reference", CLAIMS)
def test_each_quoted_paired_difference_is_what_stats_computes(section, quick, metric, point, method, reference):
    records, _ = quick
    paired = stats.paired_differences(records, metric=metric, reference=reference)
    row = next(paired[(paired["point_id"] == point) & (paired["method"] == method)].itertuples())
    assert row.interval_method == "student-t" and row.n_pairs == 3 and row.verdict in ("better", "worse")
    assert quoted(row) in section, (quoted(row), point, method, reference)


def test_the_quoted_verdicts_are_the_conclusions_of_the_quick_study(section, quick):
    records, curves = quick
    verdicts = {c.id: c.verdict for c in conclusions.check_all(records, curves)}
    line = re.search(r"`imbalance conclusions params/quick.yaml`: (.*?)\.\n", section, re.S).group(1)
    said = dict((cid, verdict.strip()) for verdict, ids in re.findall(r"([a-z ]+?) for (C\d(?:, C\d)*(?: and C\d)?)", line)
                for cid in re.findall(r"C\d", ids))
    assert said == verdicts
