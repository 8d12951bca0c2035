"""Conditions differ in their data only (issue 24 item 3): one batch size for every K and
condition, one positive share per batch, batch-norm statistics re-estimated the same way."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lungforge.bench.protocol.budget import CALIBRATION_BATCHES, balanced_batch_indices, batch_indices, positives_per_batch
from lungforge.bench.protocol.detect import DetectConfig, run_detect
from lungforge.bench.protocol.inputs import open_real, open_synthetic

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_small_set_still_fills_the_batch():
    """3 items, batch 8: every batch holds 8 (items repeated), not min(8, 3)."""
    g = torch.Generator().manual_seed(0)
    batches = list(batch_indices(3, 8, 4, g))
    assert [b.numel() for b in batches] == [8] * 4
    assert set(torch.cat(batches).tolist()) == {0, 1, 2}


def test_every_batch_has_the_positive_share_whatever_the_set():
    g = torch.Generator().manual_seed(1)
    for target in (np.r_[np.ones(3), np.zeros(40)], np.r_[np.ones(30), np.zeros(5)]):
        for idx in balanced_batch_indices(target, 16, 6, 0.5, g):
            assert idx.numel() == 16 and int(target[idx.numpy()].sum()) == 8
    only_positive = list(balanced_batch_indices(np.ones(5), 4, 2, 0.5, g))
    assert all(b.numel() == 4 for b in only_positive)  # a missing class gives its share away
    assert positives_per_batch(1, 0.5) == 1 and positives_per_batch(10, 0.01) == 1 and positives_per_batch(10, 0.99) == 9


def test_every_condition_trains_and_recalibrates_on_the_same_batches(stores, monkeypatch):
    """A (few patches) and B (many) record one batch size and positive share, and re-estimate
    batch norm on the same number of patches with the same share."""
    import lungforge.bench.protocol.detect as detect

    seen: list[int] = []
    real_recalibrate = detect.recalibrate_batchnorm

    def counting(model, batches, forward=None):
        batches = list(batches)
        seen.append(sum(b.shape[0] for b in batches))
        return real_recalibrate(model, batches, forward)

    monkeypatch.setattr(detect, "recalibrate_batchnorm", counting)
    real = open_real(stores["real"])
    config = dataclasses.replace(DetectConfig.quick_preset(size=64, patch=16), epochs=1, batch_size=48)
    result = run_detect(real, {"B": open_synthetic(stores["B"], real)}, config, torch.device("cpu"))
    rows = [r for c in result.conditions for r in result.folds[c]]
    assert any(r["train_patches"] < 48 for r in result.folds["A"])  # A's set is smaller than a batch
    assert {r["batch_size"] for r in rows} == {48} and {r["positive_share"] for r in rows} == {0.5}
    assert seen == [48 * CALIBRATION_BATCHES] * len(rows)
