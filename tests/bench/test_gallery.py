"""Nodule gallery: crops around nodules at each store's resolution, real beside every condition."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lungforge.bench.reporting.gallery import NoduleCrop, crop_side_px, crop_tile, nodule_crops, nodule_gallery
from lungforge.core.drawing import PALETTE
from lungforge.core.labels import NODULE
from lungforge.store import open_store


def test_nodule_crops_span_the_sizes_centred_on_each_nodule(stores):
    real = open_store(stores["real"])
    table = real.nodules()
    crops = nodule_crops(real, 4, 16)
    diameters = [c.diameter_mm for c in crops]
    assert len(crops) == 4 and diameters == sorted(diameters)
    assert diameters[0] == pytest.approx(table["diameter_mm"].min()) and diameters[-1] == pytest.approx(table["diameter_mm"].max())
    for crop in crops:
        (row,) = np.flatnonzero((table["slice"] == crop.slice) & np.isclose(table["diameter_mm"], crop.diameter_mm))
        image, label = real.read(crop.slice)
        x0, y0, x1, y1 = table["bbox"][row]
        top, left = round((y0 + y1 - 16) / 2), round((x0 + x1 - 16) / 2)
        assert crop.image.shape == crop.nodule.shape == (16, 16)
        np.testing.assert_array_equal(crop.image, image[top : top + 16, left : left + 16])  # the store's own pixels
        np.testing.assert_array_equal(crop.nodule, label[top : top + 16, left : left + 16] == NODULE)
        assert crop.nodule[6:10, 6:10].any()  # centred on the nodule
    assert len(nodule_crops(real, 100, 16)) == table["slice"].size


def test_crop_side_follows_the_field_of_view_and_tiles_outline_the_mask(stores):
    real = open_store(stores["real"])  # 64 px
    assert crop_side_px(real, 16 / 128) == 8 and crop_side_px(real, 0.25) == 16
    with pytest.raises(ValueError, match="got 0"):
        crop_side_px(real, 0.0)
    nodule = np.zeros((8, 8), bool)
    nodule[3:5, 3:5] = True
    crop = NoduleCrop(np.full((8, 8), 40, np.uint8), nodule, 0, 3.0)
    plain, outlined = crop_tile(crop, outline=False), crop_tile(crop, outline=True)
    assert plain.shape == outlined.shape == (96, 96, 3) and (plain == 40).all()
    red = (outlined == PALETTE[NODULE]).all(axis=-1)
    assert red[36:60, 36:60].sum() == red.sum() > 0 and not red[40:56, 40:56].any()  # the 2×2 nodule's edge only


@pytest.mark.parametrize("outline", [True, False])
def test_gallery_png_has_a_row_per_condition_and_a_column_per_nodule(stores, store_builder, tmp_path, outline):
    real = open_store(stores["real"])
    synthetic = {
        "B": open_store(stores["B"]),
        "empty": open_store(store_builder(tmp_path / "e.zarr", "synthetic", nodule_every=0, made_from=stores["real"])),
    }
    path = nodule_gallery(real, synthetic, tmp_path / "gallery.png", "test", field=0.25, columns=5, outline=outline)
    width, height = Image.open(path).size
    panels = 2 if outline else 1
    assert (width, height) == (88 + 132 * 5 * panels, 66 + 132 * 3)  # 1.2 in cells at 110 dpi, 0.8 in for row names, 0.6 in for titles
