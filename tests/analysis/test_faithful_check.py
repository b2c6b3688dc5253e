"""The committed faithful-methods check (issue 23, outputs/faithful-mnist): mnist-step's rho 1000, mu 0.9 point
with the current method definitions.  No network failed, and the README quotes its means as the database has them."""
import re
import sqlite3
from pathlib import Path

import pytest
from imbalance.registry import fingerprint

ROOT = Path(__file__).resolve().parents[2]
DB = ROOT / "outputs" / "faithful-mnist" / "results.sqlite"


@pytest.fixture(scope="module")
def networks():
    with sqlite3.connect(f"file:{DB}?mode=ro", uri=True) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute('SELECT method, "repeat", roc_auc, diverged, failure, '
                                             "method_fingerprint FROM networks")]


def _mean(networks, method):
    values = [n["roc_auc"] for n in networks if n["method"] == method]
    assert len(values) == 3, method
    return sum(values) / 3


def test_no_network_of_the_faithful_methods_failed_at_the_hardest_point(networks):
    assert len(networks) == 27
    assert not any(n["diverged"] or n["failure"] for n in networks)


def test_the_check_ran_the_current_definitions(networks):
    assert all(n["method_fingerprint"] == fingerprint(n["method"]) for n in networks)


def test_the_readme_quotes_the_checks_means_from_its_database(networks):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("`outputs/faithful-mnist` re-runs"):readme.index("<!-- findings:begin")]
    quoted = {"cb-focal": r"`cb-focal`.*?mean ROC AUC (0\.\d{4})", "ldam-drw": r"Revision 2\s+\(cosine.*?ROC AUC (0\.\d{4})",
              "ros": r"`ros` (0\.\d{4})", "baseline": r"`baseline` (0\.\d{4})", "cb-ce": r"`cb-ce` (0\.\d{4})",
              "class-aware": r"`class-aware` (0\.\d{4})", "crt": r"iterations on class-aware batches\)\s+(0\.\d{4})",
              "crt-ib": r"(0\.\d{4}) for its control `crt-ib`"}
    for method, pattern in quoted.items():
        said = re.search(pattern, section, re.S)
        assert said, method
        assert float(said.group(1)) == pytest.approx(round(_mean(networks, method), 4), abs=1e-12), method
    # the repeats quoted for cb-focal
    repeats = sorted(round(n["roc_auc"], 4) for n in networks if n["method"] == "cb-focal")
    assert "(repeats " + ", ".join(f"{v:.4f}" for v in repeats) + ")" in " ".join(section.split())
