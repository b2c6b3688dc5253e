"""A small synthetic study: records and curves shaped like the runner's, without training.

ROC AUC falls with log10(rho) and mu, differently per method, plus a little per-repeat noise, so
every figure has lines with intervals to draw.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

METHODS = ("baseline", "ros", "rus", "two-phase-ros", "baseline-thresh")
PENALTY = {"baseline": 0.06, "ros": 0.02, "rus": 0.04, "two-phase-ros": 0.03, "baseline-thresh": 0.05}


def point_id(imbalance: str, rho: float, mu: float | None, level: float | None = None) -> str:
    parts = [imbalance, f"rho={rho:g}"] + ([f"mu={mu:g}"] if mu is not None else []) \
        + ([f"level={level:g}"] if level is not None else [])
    return "_".join(parts)


def point_records(*, dataset="mnist-sample", imbalance="step", rho=10, mu=0.5, level=None,
                  methods=METHODS, repeats=3, seed=0, curves=True) -> list[dict]:
    rng = np.random.default_rng([seed, int(rho), int(100 * (mu or 0)), int(level or 0)])
    n_minority = 0 if mu is None else round(10 * mu)
    records = []
    for method in methods:
        for repeat in range(repeats):
            counts = [max(1, round(400 / rho))] * n_minority + [400] * (10 - n_minority) if mu is not None \
                else [round(400 / rho + (400 - 400 / rho) * i / 9) for i in range(10)]
            drop = PENALTY.get(method, 0.05) * math.log10(rho) * (1 + (mu or 0.5))
            if level is not None:
                drop *= math.log10(level + 1) / math.log10(rho + 1)
            auc = 0.99 - drop + rng.normal(0, 0.004)
            acc = auc - 0.1
            records.append({
                "point_id": point_id(imbalance, rho, mu, level), "dataset": dataset, "imbalance": imbalance, "rho": rho, "mu": mu, "level": level,
                "method": method, "repeat": repeat, "seed": seed, "n_train": sum(counts),
                "class_counts": counts, "roc_auc": round(auc, 6), "accuracy": round(acc, 6),
                "thresholded_accuracy": round(acc + 0.03, 6), "balanced_accuracy": round(acc, 6),
                "per_class_recall": [round(acc, 4)] * 10, "diverged": False, "iterations": 200,
                "train_seconds": 1.0, "device": "cpu",
                "curve": [{"iteration": it, "lr": 0.01, "train_loss": 1.0 / it,
                           "train_accuracy": round(min(0.99, acc * it / 200 + 0.02), 4),
                           "test_accuracy": round(acc * it / 200, 4)} for it in (50, 100, 150, 200)]
                if curves else [],
            })
    return records


def study_points(kind: str = "step") -> list[dict]:
    """Grid points (keyword dicts for point_records) of a small study of one kind."""
    if kind == "step":
        return [dict(imbalance="step", rho=r, mu=m) for r in (10, 100, 1000) for m in (0.2, 0.5)]
    if kind == "linear":
        return [dict(imbalance="linear", rho=r, mu=None) for r in (10, 100)]
    if kind == "graded":
        return [dict(imbalance="step", rho=100, mu=0.5, level=lv, methods=("ros", "rus")) for lv in (1, 10, 100)]
    if kind == "exponential":
        return [dict(imbalance="exponential", rho=r, mu=None) for r in (10, 100)]
    if kind == "imagenet":
        return [dict(dataset="imagefolder", imbalance="step", rho=r, mu=m, repeats=1)
                for r, m in ((10, 0.1), (100, 0.9))]
    raise ValueError(kind)


def all_records(kinds=("step", "linear", "graded", "imagenet"), **kw) -> list[dict]:
    return [r for kind in kinds for p in study_points(kind) for r in point_records(**{**p, **kw})]


def make_database(outputs_dir: Path, study: str = "quick", kinds=("step",), **point) -> Path:
    """outputs_dir/<study>/results.sqlite holding the synthetic points of `kinds` (`point`: point_records
    keywords for every point, e.g. repeats=2)."""
    from imbalance.study.store import Store
    path = Path(outputs_dir) / study / "results.sqlite"
    with Store(path) as store:
        for kind in kinds:
            for p in study_points(kind):
                records = point_records(**{**p, **point})
                pid = point_id(p["imbalance"], p["rho"], p["mu"], p.get("level"))
                store.insert_point(study, pid, [{**r, "study": study} for r in records])
    return path
