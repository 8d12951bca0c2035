"""Re-estimate batch-norm running statistics after training ("precise BN").

Short schedules (the `--quick` runs, small folds) leave the exponential running averages far from
the true statistics, and evaluation then sees shifted activations; one pass over training data
with a cumulative average fixes that without changing any weight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import nn

B = TypeVar("B")
"""One calibration batch: what `forward` (default the model) takes."""


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[B], forward: Callable[[B], object] | None = None) -> None:
    """Reset every BatchNorm layer of `model` and average its statistics over `batches`.

    `forward(batch)` runs the part of the model that holds the batch norms (default `model`).
    The model is left in eval mode with its momentum settings restored.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all batches
    model.train()
    run = forward or model
    for batch in batches:
        run(batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
