"""Synthetic chest label maps and a tiny real store with known nodules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungforge.core.labels import BODY, LEFT_LUNG, NODULE, RIGHT_LUNG, TRACHEA
from lungforge.store import create_store, open_store

SPACING_512_MM = 0.7
LUNG_VALUE = 20  # uint8, about -890 HU
BODY_VALUE = 190  # about +40 HU
NODULE_VALUES = (60, 90, 120, 150, 180, 210)  # one per nodule of the mini store


def spacing_for(size: int) -> tuple[float, float]:
    """In-plane spacing (mm) of a 512-px, 0.7 mm/px slice resized to `size` pixels."""
    s = SPACING_512_MM * 512 / size
    return (s, s)


def _ellipse(size: int, centre: tuple[float, float], semi: tuple[float, float]) -> np.ndarray:
    rr, cc = np.mgrid[0:size, 0:size] + 0.5
    return ((rr - centre[0] * size) / (semi[0] * size)) ** 2 + ((cc - centre[1] * size) / (semi[1] * size)) ** 2 <= 1


def chest_label_map(size: int) -> np.ndarray:
    """(size, size) uint8: body ellipse, left lung on the image right, right lung, trachea disk."""
    label = np.zeros((size, size), dtype=np.uint8)
    label[_ellipse(size, (0.5, 0.5), (0.36, 0.45))] = BODY
    label[_ellipse(size, (0.48, 0.70), (0.25, 0.14))] = LEFT_LUNG
    label[_ellipse(size, (0.48, 0.30), (0.25, 0.14))] = RIGHT_LUNG
    label[_ellipse(size, (0.30, 0.50), (0.03, 0.03))] = TRACHEA
    return label


@pytest.fixture(scope="session")
def chest_map():
    """Factory: `chest_map(size)` builds a synthetic chest label map."""
    return chest_label_map


@pytest.fixture(scope="session")
def label_64() -> np.ndarray:
    return chest_label_map(64)


@pytest.fixture(scope="session")
def label_256() -> np.ndarray:
    return chest_label_map(256)


@pytest.fixture(scope="session")
def label_512() -> np.ndarray:
    return chest_label_map(512)


def render(label: np.ndarray, nodule_value: int) -> np.ndarray:
    """(H, W) uint8 image of a label map: air 0, body BODY_VALUE, lung LUNG_VALUE, nodules `nodule_value`."""
    image = np.full(label.shape, BODY_VALUE, dtype=np.uint8)
    image[label == 0] = 0
    image[np.isin(label, (LEFT_LUNG, RIGHT_LUNG, TRACHEA))] = LUNG_VALUE
    image[label == NODULE] = nodule_value
    return image


def hu(value: float) -> float:
    """HU of a uint8 value in the [-1000, 400] window."""
    return -1000.0 + value / 255.0 * 1400.0


@pytest.fixture(scope="session")
def render_slice():
    """Factory: `render_slice(label, nodule_value)` paints a uniform image for a label map."""
    return render


@pytest.fixture(scope="session")
def lung_value() -> int:
    """uint8 value of lung pixels in rendered slices."""
    return LUNG_VALUE


@pytest.fixture(scope="session")
def mini_store_values() -> tuple[int, ...]:
    """The uint8 value of each nodule of `mini_store` (nodule-table row k has value k)."""
    return NODULE_VALUES


@pytest.fixture(scope="session")
def mini_store_contrasts_hu() -> np.ndarray:
    """The exact contrast (HU) of each nodule of `mini_store`."""
    return np.array([hu(v) - hu(LUNG_VALUE) for v in NODULE_VALUES])


def _mini_store_slices(size: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, tuple[float, float, float, float]]]]:
    """Images, labels and (slice, bbox) rows: 3 nodule slices with 2 nodules each, then 2 free ones."""
    labels = np.stack([chest_label_map(size)] * 5)
    rows = []
    shapes = [((0.40, 0.68), (0.07, 0.04)), ((0.58, 0.28), (0.05, 0.07))]
    for i in range(3):
        for j, (centre, semi) in enumerate(shapes):
            centre = (centre[0] + 0.02 * i, centre[1])
            blob = _ellipse(size, centre, semi)
            if (i + j) % 2:
                blob &= ~_ellipse(size, (centre[0] - semi[0], centre[1]), (semi[0] * 0.6, semi[1] * 0.6))
            labels[i][blob] = NODULE
            r, c = np.nonzero(blob)
            rows.append((i, (c.min(), r.min(), c.max() + 1, r.max() + 1)))
    images = np.stack([render(label, 0) for label in labels])
    for k, (i, (x0, y0, x1, y1)) in enumerate(rows):
        window = labels[i, y0:y1, x0:x1] == NODULE
        images[i, y0:y1, x0:x1][window] = NODULE_VALUES[k]
    return images, labels, rows


@pytest.fixture
def mini_store(tmp_path):
    """A complete real store (64 px, 5 slices, 6 nodules of known uint8 values) opened read-only."""
    size = 64
    images, labels, rows = _mini_store_slices(size)
    n = images.shape[0]
    store = create_store(tmp_path / "mini.zarr", kind="real", height=size, width=size, capacity=n, params={})
    meta = {
        "series": np.zeros(n),
        "z": np.arange(n),
        "spacing": np.tile(spacing_for(size), (n, 1)),
        "split": np.zeros(n),
        "fold": np.zeros(n),
        "has_nodule": np.arange(n) < 3,
    }
    store.write_block(0, images, labels, meta)
    nodules = {
        "slice": np.array([i for i, _ in rows]),
        "bbox": np.array([b for _, b in rows], dtype=np.float32),
        "diameter_mm": np.full(len(rows), 10.0),
    }
    store.finalize(n, ["1.2.3"], nodules)
    return open_store(tmp_path / "mini.zarr")


@pytest.fixture
def empty_store(tmp_path):
    """A complete real store with nodule-free slices only."""
    size = 64
    labels = np.stack([chest_label_map(size)] * 2)
    store = create_store(tmp_path / "empty.zarr", kind="real", height=size, width=size, capacity=2, params={})
    store.write_block(0, np.zeros_like(labels), labels, {"spacing": np.tile(spacing_for(size), (2, 1))})
    store.finalize(2, ["1.2.3"], {"slice": np.zeros(0), "bbox": np.zeros((0, 4)), "diameter_mm": np.zeros(0)})
    return open_store(tmp_path / "empty.zarr")


def save_micro_checkpoints(root: Path) -> dict[str, Path]:
    """Random-init SDM and SPADE checkpoints at 64 px, as small as the configs allow (fast on CPU)."""
    import torch

    from lungforge.models.checkpoint import save_checkpoint
    from lungforge.models.presets import SDMConfig, SPADEConfig
    from lungforge.models.sdm_unet import SDMUNet
    from lungforge.models.spade import SPADEGenerator

    torch.manual_seed(0)
    sdm = SDMConfig(
        image_size=64,
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_head_channels=8,
        norm_groups=4,
        label_embed_channels=8,
    )
    spade = SPADEConfig(image_size=64, ngf=4, ndf=4, z_dim=8)
    return {
        "sdm": save_checkpoint(
            root / "sdm", kind="sdm", preset="tiny", model_config=sdm, state_dict=SDMUNet(sdm).state_dict(), step=0, store_fingerprint=None
        ),
        "spade": save_checkpoint(
            root / "spade",
            kind="spade",
            preset="tiny",
            model_config=spade,
            state_dict=SPADEGenerator(spade).state_dict(),
            step=0,
            store_fingerprint=None,
        ),
    }


@pytest.fixture(scope="session")
def micro_weights(tmp_path_factory):
    """{"sdm": dir, "spade": dir} of random-init 64-px checkpoints."""
    return save_micro_checkpoints(tmp_path_factory.mktemp("augment_weights"))
