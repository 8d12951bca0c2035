"""One training budget for every condition: optimiser steps sized from condition A.

Fixed epochs would give a condition with 1000 extra synthetic slices twice the optimiser steps
(and a longer schedule) of real-only training, so a better score could come from training longer.
Every condition of a fold instead trains `epochs × ⌈n_A / batch⌉` steps, n_A being the size of
condition A's training set in that fold, with the same learning-rate schedule over those steps;
on a learning curve, every point K trains the budget of the full training set
(:func:`curve_steps`), so a point differs from another in its data alone;
batches are drawn from successive seeded permutations of each condition's own training set.

Beyond steps, every condition trains on batches of one size (`batch_size`, items repeated when a
set is smaller) and one class balance (`positive_share` positives per batch,
:func:`balanced_batch_indices`), and re-estimates batch-norm statistics on the same number of
batches drawn the same way (:data:`CALIBRATION_BATCHES`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

CALIBRATION_BATCHES = 8
"""Balanced batches every condition re-estimates its batch-norm statistics on after training."""


def reference_steps(n_reference: int, epochs: int, batch_size: int) -> int:
    """Optimiser steps of every condition: `epochs` passes over A's `n_reference` samples (≥ 1)."""
    if n_reference < 0 or epochs < 1 or batch_size < 1:
        raise ValueError(f"need n >= 0, epochs >= 1 and batch size >= 1, got {n_reference}, {epochs}, {batch_size}")
    return max(1, epochs * math.ceil(n_reference / batch_size))


def curve_steps(n_reference_per_fold: list[int], epochs: int, batch_size: int) -> int:
    """The one budget of a learning curve, for every point K, fold and condition: `epochs` passes
    over the mean size of A's full training set over the folds (≥ 1 step)."""
    mean = sum(n_reference_per_fold) / max(len(n_reference_per_fold), 1)
    return reference_steps(round(mean), epochs, batch_size)


def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """`steps` batches of exactly `batch_size` indices into n samples, from successive permutations
    (a batch may straddle two of them, and repeats items when n < batch_size); nothing when n == 0."""
    if n == 0:
        return
    pending = torch.zeros(0, dtype=torch.long)
    for _ in range(steps):
        while pending.numel() < batch_size:
            pending = torch.cat([pending, torch.randperm(n, generator=generator)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def positives_per_batch(batch_size: int, positive_share: float) -> int:
    """Positive items in every batch: round(batch_size × positive_share), at least 1 when the share
    is above 0 and at most batch_size − 1 when it is below 1 (and the batch holds two)."""
    k = round(batch_size * positive_share)
    if positive_share > 0.0:
        k = max(k, 1)
    if positive_share < 1.0 and batch_size >= 2:
        k = min(k, batch_size - 1)
    return int(k)


def balanced_batch_indices(
    target: np.ndarray, batch_size: int, steps: int, positive_share: float, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """`steps` batches of exactly `batch_size` indices into the (n,) 0/1 `target`, each with
    :func:`positives_per_batch` positives and the rest negatives, each class drawn from its own
    successive permutations (with repeats when a class is smaller than its share of a batch).

    Every condition of a fold thus trains on batches of the same size and class balance, whatever
    the size and balance of its training set. A class with no item gives its share to the other
    (the caller records the share it got); nothing when target is empty.
    """
    target = np.asarray(target).astype(bool)
    pos_idx, neg_idx = torch.from_numpy(np.flatnonzero(target)), torch.from_numpy(np.flatnonzero(~target))
    k = positives_per_batch(batch_size, positive_share)
    if pos_idx.numel() == 0:
        k = 0
    elif neg_idx.numel() == 0:
        k = batch_size
    pos = batch_indices(pos_idx.numel(), k, steps, generator) if k else None
    neg = batch_indices(neg_idx.numel(), batch_size - k, steps, generator) if k < batch_size else None
    for _ in range(steps if target.size else 0):
        parts = ([pos_idx[next(pos)]] if pos else []) + ([neg_idx[next(neg)]] if neg else [])
        yield torch.cat(parts)


def realized_share(target: np.ndarray, batch_size: int, positive_share: float) -> float:
    """The positive share of every batch :func:`balanced_batch_indices` draws from `target`."""
    target = np.asarray(target).astype(bool)
    if target.size == 0:
        return float("nan")
    if not target.any():
        return 0.0
    if target.all():
        return 1.0
    return positives_per_batch(batch_size, positive_share) / batch_size
