"""Fixtures of the fidelity tests: synthetic stores made from the slices of a real store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lungforge.store import SHARD, SPLIT_IDS, create_store, open_store


def synthetic_from_split(
    real_path: Path,
    out: Path,
    images: Callable[[np.ndarray], np.ndarray] | None = None,
    split: str = "test",
    nodule_sources: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
) -> Path:
    """A synthetic store holding the real store's `split` slices (label maps and nodules unchanged,
    `meta/source` = the real slice); `images(original (N, H, W) uint8) -> (N, H, W) uint8` replaces
    the images, `nodule_sources(table) -> {column: values}` overrides nodule columns (shape_source, ...)."""
    real = open_store(real_path)
    rows = np.flatnonzero(real.meta("split") == SPLIT_IDS[split])
    h, w = real.shape_hw
    image = np.asarray(real.image.oindex[rows, :, :])
    label = np.asarray(real.label.oindex[rows, :, :])
    if images is not None:
        image = images(image)
    n = rows.size
    store = create_store(
        out,
        kind="synthetic",
        height=h,
        width=w,
        capacity=n,
        params={"test": True},
        extra_attrs={"input": {"path": str(real_path), "fingerprint": real.fingerprint()}},
    )
    meta = {name: real.meta(name)[rows] for name in ("series", "z", "spacing", "fold", "has_nodule")}
    meta.update(
        split=np.zeros(n, np.uint8),
        source=rows.astype(np.int64),
        seed=np.arange(n),
        verified=np.ones(n, bool),
        attempts=np.ones(n, np.int32),
        done=np.ones(n, bool),
    )
    for start in range(0, n, SHARD):
        store.write_block(
            start, image[start : start + SHARD], label[start : start + SHARD], {k: v[start : start + SHARD] for k, v in meta.items()}
        )
    table = real.nodules()
    keep = np.isin(table["slice"], rows)
    nodules = {k: v[keep] for k, v in table.items()}
    nodules["slice"] = np.searchsorted(rows, nodules["slice"])
    nodules["requested_mm"] = nodules["diameter_mm"].copy()
    nodules["lidc_annotation"] = np.full(nodules["slice"].shape, -1, dtype=np.int64)
    nodules["shape_source"] = nodules["size_source"] = np.full(nodules["slice"].shape, -1, dtype=np.int64)
    if nodule_sources is not None:
        nodules.update(nodule_sources(nodules))
    store.finalize(n, real.series_uids, nodules)
    return out


@pytest.fixture(scope="session")
def synthetic_maker() -> Callable[..., Path]:
    """The :func:`synthetic_from_split` function."""
    return synthetic_from_split
