"""One training budget for every condition: optimiser steps sized from condition A.

Fixed epochs would give a condition with 1000 extra synthetic slices twice the optimiser steps
(and a longer schedule) of real-only training, so a better score could come from training longer.
Every condition of a fold instead trains `epochs × ⌈n_A / batch⌉` steps, n_A being the size of
condition A's training set in that fold, with the same learning-rate schedule over those steps;
on a learning curve, every point K trains the budget of the full training set
(:func:`curve_steps`), so a point differs from another in its data alone;
batches are drawn from successive seeded permutations of each condition's own training set.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch


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
    """`steps` batches of `min(batch_size, n)` indices into n samples, from successive permutations
    (a batch may straddle two of them); nothing when n == 0."""
    if n == 0:
        return
    size = min(batch_size, n)
    pending = torch.zeros(0, dtype=torch.long)
    for _ in range(steps):
        while pending.numel() < size:
            pending = torch.cat([pending, torch.randperm(n, generator=generator)])
        yield pending[:size]
        pending = pending[size:]
