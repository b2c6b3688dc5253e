"""A study's records as pandas frames: loading them read-only, their columns, and the small helpers
every analysis module shares (method order, thresholded names, value formatting). No torch."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from imbalance.registry import THRESH_SUFFIX, display_order
from imbalance.schema import TABLED_METRICS, THRESHOLD_INVARIANT  # noqa: F401

# the metrics a table or figure may rank by: the test set's, and (issue 12) the validation split's
RANKABLE = TABLED_METRICS


NUMERIC = ("rho", "mu", "level", "repeat", *RANKABLE, "diverged")


COLUMNS = ("study", "point_id", "dataset", "imbalance", "rho", "mu", "level", "method", "repeat",
           *RANKABLE, "class_counts", "per_class_recall", "diverged")


CURVE_COLUMNS = ("point_id", "method", "repeat", "iteration", "train_accuracy", "test_accuracy")


# metrics that thresholding (dividing each class's scores by its prior) cannot change: one-vs-rest
# ROC AUC ranks each class's scores alone, and a positive factor per class keeps that order


METHOD_ORDER = display_order()   # tables list methods in the registry's order: the paper's first


def records_frame(records) -> pd.DataFrame:
    """Records (DataFrame, list of dicts or None) as a DataFrame with the columns plots use."""
    if records is None:
        frame = pd.DataFrame()
    elif isinstance(records, pd.DataFrame):
        frame = records.copy()
    else:
        frame = pd.DataFrame(list(records))
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    for column in NUMERIC:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.reset_index(drop=True)


def load_study(study: str, outputs_dir: str | os.PathLike = "outputs") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records, curves) of outputs_dir/<study>/results.sqlite; two empty frames if it does not exist.

    Reads only: a study that has not run yet gets no database file from looking at it.
    """
    path = Path(outputs_dir) / study / "results.sqlite"
    if not path.is_file():
        return records_frame(None), curves_frame(None)
    from imbalance.study.store import Store
    with Store(path) as store:
        return records_frame(store.records_frame(study)), curves_frame(store.curves_frame(study))


def curves_frame(curves) -> pd.DataFrame:
    frame = pd.DataFrame() if curves is None else pd.DataFrame(curves).copy()
    for column in CURVE_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame


def close_to(values, target) -> np.ndarray:
    """values == target for floats (None/NaN target matches missing values)."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    if target is None or (isinstance(target, float) and math.isnan(target)):
        return np.isnan(values)
    return np.isclose(values, float(target), rtol=1e-9, atol=1e-12)


def methods_present(frame: pd.DataFrame, methods=None) -> list[str]:
    """The methods present (or the chosen ones), in the registry's order."""
    present = [m for m in pd.unique(frame["method"].dropna())]
    if methods is not None:
        present = [m for m in present if m in set(methods)]
    known = [m for m in METHOD_ORDER if m in present]
    return known + sorted(m for m in present if m not in METHOD_ORDER)


def thresholded(methods) -> np.ndarray:
    """Which of `methods` (a column of names) are '<m>-thresh': <m>'s network, thresholded."""
    return pd.Series(methods, dtype=object).astype(str).str.endswith(THRESH_SUFFIX).to_numpy(dtype=bool)


def repeats_its_base(methods, metric: str) -> np.ndarray:
    """Which of `methods` only repeat their base method's numbers on `metric`: the '<m>-thresh' ones, on a
    metric thresholding cannot change (schema.THRESHOLD_INVARIANT).  The one place this rule is applied."""
    return thresholded(methods) & (metric in THRESHOLD_INVARIANT)


def compared_methods(methods, metric: str) -> list[str]:
    """`methods` less those that only repeat their base's numbers on `metric` (`repeats_its_base`)."""
    methods = list(methods)
    return [m for m, same in zip(methods, repeats_its_base(methods, metric)) if not same]


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 point', '3 points', '1,200 repeats': a count with its noun in the number it takes."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def format_value(x) -> str:
    """10.0 -> '10', 0.5 -> '0.5' (for titles and labels)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, str):
        return x
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:g}"
