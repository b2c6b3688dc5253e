"""Prior-thresholding on the fast CIFAR recipe (issue 23), on the committed check studies: with the recipe's label
smoothing (0.2, cifar10-fast-cpu) it sends most test images to a minority class; without it
(thresh-cifar10, label_smoothing 0, the same seeds) no class gets more than twice its share of the balanced
test set, and thresholding raises accuracy."""
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

OUTPUTS = Path(__file__).resolve().parents[2] / "outputs"
POINT = "step_rho=100_mu=0.2"


def _networks(study: str, method: str) -> list[dict]:
    with sqlite3.connect(f"file:{OUTPUTS / study / 'results.sqlite'}?mode=ro", uri=True) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute('SELECT "repeat", accuracy, confusion_matrix FROM networks '
                                             "WHERE point_id = ? AND method = ? ORDER BY \"repeat\"", (POINT, method))]


def _largest_share_ratio(network: dict) -> float:
    """The most predicted class's share of the predictions over its share of the (balanced) test set."""
    cm = np.array(json.loads(network["confusion_matrix"]))
    return float(cm.sum(0).max() / cm.sum() * cm.shape[0])


@pytest.mark.parametrize("method", ["baseline-thresh", "ros-thresh"])
def test_without_label_smoothing_thresholding_sends_no_class_more_than_twice_its_share(method):
    networks = _networks("thresh-cifar10", method)
    assert len(networks) == 3
    assert all(_largest_share_ratio(n) <= 2.0 for n in networks)


@pytest.mark.parametrize("method", ["baseline-thresh", "ros-thresh"])
def test_with_label_smoothing_thresholding_collapsed_onto_a_minority_class(method):
    assert all(_largest_share_ratio(n) > 4.0 for n in _networks("cifar10-fast-cpu", method))


@pytest.mark.parametrize("base", ["baseline", "ros"])
def test_without_label_smoothing_thresholding_raises_accuracy_in_every_repeat(base):
    plain, thresholded = _networks("thresh-cifar10", base), _networks("thresh-cifar10", f"{base}-thresh")
    assert [n["repeat"] for n in plain] == [n["repeat"] for n in thresholded] == [0, 1, 2]
    assert all(t["accuracy"] > p["accuracy"] for p, t in zip(plain, thresholded))
