"""Fixtures of the training tests: hand-made stores of given label maps and very small model presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungforge.models.presets import Preset, SDMConfig, SPADEConfig
from lungforge.store import create_store, empty_nodules


def write_store(path: Path, labels: np.ndarray, split: np.ndarray) -> Path:
    """A complete real store of label maps (N, H, W) uint8, grey images, given per-slice splits."""
    n, h, w = labels.shape
    store = create_store(path, kind="real", height=h, width=w, capacity=n, params={})
    images = (labels.astype(np.uint16) * 40).clip(0, 255).astype(np.uint8)
    meta = {"series": np.arange(n), "spacing": np.ones((n, 2)), "split": split, "fold": np.zeros(n)}
    store.write_block(0, images, labels, meta)
    store.finalize(n, [f"1.2.{i}" for i in range(n)], empty_nodules())
    return path


MICRO = Preset(
    name="micro",
    sdm=SDMConfig(
        image_size=16,
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_head_channels=8,
        norm_groups=4,
        label_embed_channels=8,
    ),
    spade=SPADEConfig(image_size=32, ngf=4, ndf=8),
)
"""Very small models for CPU tests (the `tiny` preset takes seconds per step on 2 busy cores)."""


@pytest.fixture(scope="session")
def micro_preset() -> Preset:
    return MICRO


@pytest.fixture
def store_factory(tmp_path):
    """Build a store from label maps (N, H, W) uint8 and splits (N,) (0 train, 1 test)."""

    def build(labels: np.ndarray, split: np.ndarray, name: str = "custom.zarr") -> Path:
        return write_store(tmp_path / name, labels, split)

    return build
