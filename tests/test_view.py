"""`lungforge.view`: slice selection and the contact sheet of a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lungforge.core.drawing import BOX_COLOUR, OVERLAY_ALPHA, PALETTE
from lungforge.core.errors import InputError
from lungforge.core.labels import NODULE
from lungforge.store import open_store
from lungforge.view import PANEL_GAP_PX, ViewOptions, parse_index, select_rows, write_view


def test_parse_index() -> None:
    assert parse_index("3, 5,10-12") == (3, 5, 10, 11, 12)
    with pytest.raises(ValueError, match="got 'x'"):
        parse_index("1,x")
    with pytest.raises(ValueError, match="backwards"):
        parse_index("5-2")


def test_selection(stores) -> None:
    store = open_store(stores["real"])
    has = store.meta("has_nodule")
    assert select_rows(store, ViewOptions(index=(7, 2))).tolist() == [7, 2]
    assert select_rows(store, ViewOptions(limit=5)).tolist() == [0, 1, 2, 3, 4]
    picked = select_rows(store, ViewOptions(nodules=True, random=4, seed=1))
    assert picked.size == 4 and has[picked].all() and (np.diff(picked) > 0).all()
    assert picked.tolist() == select_rows(store, ViewOptions(nodules=True, random=4, seed=1)).tolist()
    assert picked.tolist() != select_rows(store, ViewOptions(nodules=True, random=4, seed=2)).tolist()
    with pytest.raises(ValueError, match="index 40 outside 0..39"):
        select_rows(store, ViewOptions(index=(40,)))


def test_sheet_shows_requested_slices_with_overlay_and_boxes(stores, tmp_path: Path) -> None:
    store = open_store(stores["real"])
    rows = (0, 2, 1)
    path, shown = write_view(stores["real"], tmp_path / "v" / "grid.png", ViewOptions(index=rows, tile_px=64, columns=2))
    assert shown.tolist() == list(rows)
    sheet = np.asarray(Image.open(path).convert("RGB"))
    gap, caption, tile_w = 4, 14, 2 * 64 + PANEL_GAP_PX
    assert sheet.shape == (2 * (caption + 64) + 3 * gap, 2 * tile_w + 3 * gap, 3)
    for k, row in enumerate(rows):
        top = gap + (k // 2) * (caption + 64 + gap) + caption
        left = gap + (k % 2) * (tile_w + gap)
        image, label = store.read(row)
        plain = sheet[top : top + 64, left : left + 64]
        overlaid = sheet[top : top + 64, left + 64 + PANEL_GAP_PX : left + tile_w]
        np.testing.assert_array_equal(plain[..., 0], image)
        nodule = label == NODULE
        assert nodule.any() == (row % 2 == 0)
        a = OVERLAY_ALPHA[NODULE]
        reddish = overlaid[..., 0].astype(int) - overlaid[..., 2].astype(int) >= int(a * (PALETTE[NODULE][0] - PALETTE[NODULE][2])) - 2
        boxes = (overlaid == BOX_COLOUR).all(axis=-1)
        if nodule.any():
            assert (reddish & nodule).sum() >= 0.5 * nodule.sum() and boxes.any()
        else:
            assert not boxes.any()
        assert not (overlaid == plain).all()


def test_no_nodule_slices_is_an_error(store_builder, tmp_path: Path) -> None:
    path = store_builder(tmp_path / "free.zarr", nodule_every=0)
    with pytest.raises(InputError, match="no nodule slices"):
        write_view(path, tmp_path / "v.png", ViewOptions(nodules=True))
    assert not (tmp_path / "v.png").exists()
