"""`--repeats R`: R training seeds per fold and condition, their fold rows averaged into one.

Training noise (initial weights, batch order, augmentation) moves a small fold's score by
points; averaging R trainings on the same data shrinks that part of the fold-to-fold variance
without changing what is compared. Patch sampling keeps the run's seed, so every repeat sees the
same data.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np

from lungforge.bench.protocol.results import FoldRow

REPEAT_STREAM = 0x5EED
"""Mixed into the seed of repeats after the first, so they do not collide with other runs' seeds."""


def repeat_seed(seed: int, repeat: int) -> int:
    """The training seed of repeat `repeat` (0-based): the run's `seed` for the first, a seed
    drawn from (seed, repeat) for the others."""
    if repeat == 0:
        return seed
    return int(np.random.default_rng([seed, REPEAT_STREAM, repeat]).integers(0, 2**31 - 1))


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def average_values(values: list[Any]) -> Any:
    """One value for R repeats: the value itself when they agree, the mean of numbers (NaN-aware:
    NaN only when every repeat is NaN), element-wise for equal-length lists, key-wise for dicts,
    else the first repeat's."""
    first = values[0]
    if all(v == first for v in values[1:]):
        return first
    if all(_number(v) for v in values):
        x = np.asarray(values, dtype=np.float64)
        return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
    if all(isinstance(v, dict) for v in values) and all(v.keys() == first.keys() for v in values):
        return {k: average_values([v[k] for v in values]) for k in first}
    if all(isinstance(v, list) and len(v) == len(first) for v in values):
        return [average_values(list(column)) for column in zip(*values)]
    return first


def average_rows(rows: list[FoldRow]) -> FoldRow:
    """The fold row of R repeats (:func:`average_values` per key) with `repeats` = R."""
    keys = list(rows[0])
    return {**{k: average_values([r.get(k) for r in rows]) for k in keys}, "repeats": len(rows)}
