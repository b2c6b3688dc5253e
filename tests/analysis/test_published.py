"""CIFAR-10-LT gains beside the published ones (issue 28): ours paired per repeat as scipy computes them."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from imbalance.analysis import published


def _records(shift: dict, n=5, seed=0):
    rng = np.random.default_rng(seed)
    base = 0.6 + rng.normal(0, 0.01, n)
    return pd.DataFrame([dict(imbalance="exponential", rho=100.0, method=m, repeat=r,
                              balanced_accuracy=base[r] + d + (0 if m == "baseline" else rng.normal(0, 0.003)))
                         for m, d in shift.items() for r in range(n)])


def test_our_gain_is_the_paired_difference_with_scipys_t_interval_and_theirs_is_the_published_one():
    records = _records({"baseline": 0.0, "la-loss": 0.05, "baseline-la": 0.03, "ldam-drw": 0.04})
    table = published.gains(records, rho=100.0).set_index("method")
    for m in ("la-loss", "baseline-la", "ldam-drw"):
        d = (records[records["method"] == m]["balanced_accuracy"].to_numpy()
             - records[records["method"] == "baseline"]["balanced_accuracy"].to_numpy())
        half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        assert table.loc[m, "our_gain"] == pytest.approx(d.mean(), abs=1e-12)
        assert table.loc[m, "ci_high"] == pytest.approx(d.mean() + half, abs=1e-12)
        assert table.loc[m, "our_relative"] == pytest.approx(d.mean() / table.loc[m, "our_erm"])
    assert table.loc["la-loss", "their_gain"] == pytest.approx(0.7789 - 0.7136)
    assert table.loc["ldam-drw", "their_erm"] == pytest.approx(0.7036)           # 1 - 29.64% top-1 error
    assert table.loc["ldam-drw", "their_value"] == pytest.approx(0.7703)


def test_the_block_says_whether_the_published_order_holds_and_says_not_run_without_records():
    class Study:
        study, records = "cifar10-lt", _records({"baseline": 0.0, "la-loss": 0.05, "baseline-la": 0.03,
                                                  "ldam-drw": 0.06})
    text = "\n".join(published.published_markdown(Study, recipe="fast-cifar10-cpu"))
    assert "published `ldam-drw`, `la-loss`, `baseline-la`; here `ldam-drw`, `la-loss`, `baseline-la`: the order holds" \
        in text            # by gain over each paper's own ERM: +0.0667, +0.0653, +0.0596
    Study.records = _records({"baseline": 0.0, "la-loss": 0.07, "baseline-la": 0.03, "ldam-drw": 0.05})
    assert "here `la-loss`, `ldam-drw`, `baseline-la`: the order differs" in \
        "\n".join(published.published_markdown(Study, recipe="fast-cifar10-cpu"))
    Study.records = _records({"baseline": 0.0, "la-loss": 0.05, "baseline-la": 0.03, "ldam-drw": 0.07})
    assert "the order holds" in "\n".join(published.published_markdown(Study, recipe="fast-cifar10-cpu"))
    Study.records = pd.DataFrame()
    assert "not run yet" in "\n".join(published.published_markdown(Study, recipe="fast-cifar10-cpu"))
