from __future__ import annotations

import pytest
import torch
from torch import nn

from lungforge.training.ema import EMA


def test_ema_follows_warmup_then_decay():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # warm-up decay min(0.5, 1/10) = 0.1
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.9))
    ema.update(model)  # min(0.5, 2/11)
    expected = 0.9 * (2 / 11) + (1 - 2 / 11)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), expected))
    for _ in range(20):
        ema.update(model)
    assert ema.current_decay() == 0.5


def test_ema_state_roundtrip_and_copy():
    model = nn.BatchNorm1d(3)
    ema = EMA(model, decay=0.9)
    model(torch.randn(8, 3))
    ema.update(model)
    other = EMA(nn.BatchNorm1d(3), decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.updates == 1
    assert all(torch.equal(other.shadow[k], v) for k, v in ema.shadow.items())
    assert other.shadow["num_batches_tracked"].item() == 1  # integer buffers are copied
    target = nn.BatchNorm1d(3)
    ema.copy_to(target)
    assert torch.equal(target.running_mean, ema.shadow["running_mean"])


def test_ema_rejects_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        EMA(nn.Linear(1, 1), decay=1.0)
