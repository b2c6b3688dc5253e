"""The small validators the dataclasses and the params share (recipes, fast recipes, losses, params, the
sampler). Torch-free, numpy-free, and imports nothing from the package.

A range is written once as data: `(test, words)`, e.g. `POSITIVE = (lambda v: v > 0, "> 0")`, and
`check_numbers` turns a table of them into one precise ValueError naming the field.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

Range = tuple[Callable[[Any], bool], str]

POSITIVE: Range = (lambda v: v > 0, "> 0")
NON_NEGATIVE: Range = (lambda v: v >= 0, ">= 0")
FRACTION: Range = (lambda v: 0 <= v < 1, "in [0, 1)")           # a momentum, a smoothing, a beta
CLOSED_FRACTION: Range = (lambda v: 0 <= v <= 1, "in [0, 1]")
OPEN_CLOSED_FRACTION: Range = (lambda v: 0 < v <= 1, "in (0, 1]")
ANY: Range = (lambda v: True, "")


def is_int(v) -> bool:
    """An int (numpy's too), never a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v) -> bool:
    """A finite int or float (numpy's too), never a bool; an int too large for a float (10**400) is not one."""
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def first_bad_number(values: dict[str, Any], ranges: dict[str, Range]) -> tuple[str, str] | None:
    """(field, what it must be) of the first value of `values` that is not a finite number in its range."""
    for key, (ok, words) in ranges.items():
        v = values[key]
        if not is_real(v) or not ok(v):
            return key, f"a finite number {words}".rstrip()
    return None


def first_bad_positive_int(values: dict[str, Any], keys) -> str | None:
    """The first of `keys` whose value in `values` is not a positive int."""
    return next((key for key in keys if not is_int(values[key]) or values[key] < 1), None)
