"""Model-free controls (`augment --weights paste | mislabeled`) and the provenance every synthetic nodule records."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lungforge.augment.generate import augment
from lungforge.augment.nodule_library import RIM_PX, NoduleLibrary
from lungforge.augment.options import AugmentOptions
from lungforge.core.errors import ConfigError, InputError
from lungforge.core.labels import NODULE
from lungforge.data.resize import resize_images_uint8
from lungforge.store import NO_SOURCE, open_store


def _control(real, out, weights, **kw) -> AugmentOptions:
    base = dict(nodules=4, nodule_free=2, shape="real", shard_size=4, device="cpu", seed=3)
    return AugmentOptions(data=real, weights=weights, out=out, **{**base, **kw})


@pytest.fixture(scope="module")
def real_path(stores):
    """The hand-built 64-px real store: 10 patients in folds 0..9, nodule disks of 5–8 px, 6 train patients."""
    return stores["real"]


@pytest.fixture(scope="module")
def controls(real_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("controls")
    for name in ("paste", "mislabeled"):
        augment(_control(real_path, root / f"{name}.zarr", name))
    return {name: open_store(root / f"{name}.zarr") for name in ("paste", "mislabeled")}


def test_mislabeled_keeps_the_real_image_and_adds_nodule_labels(controls, real_path):
    real, store = open_store(real_path), controls["mislabeled"]
    source = store.meta("source")
    for i in range(len(store)):
        image, label = store.read(i)
        np.testing.assert_array_equal(image, resize_images_uint8(np.asarray(real.image[int(source[i])])[None], store.shape_hw[0])[0])
        assert (label == NODULE).any() == (i < 4)
    assert store.nodules()["slice"].tolist() == [0, 1, 2, 3]
    assert store.attrs["generator"]["kind"] == "mislabeled" and store.attrs["generator"]["model_free"]
    assert (store.meta("attempts") == 1).all()


def test_paste_blends_real_nodule_patches_into_the_real_slice(controls, real_path):
    real, store = open_store(real_path), controls["paste"]
    source = store.meta("source")
    table = store.nodules()
    for i in range(len(store)):
        image, label = store.read(i)
        background = resize_images_uint8(np.asarray(real.image[int(source[i])])[None], store.shape_hw[0])[0]
        nodule = label == NODULE
        far = ~ndimage.binary_dilation(nodule, np.ones((3, 3), bool), iterations=RIM_PX)
        np.testing.assert_array_equal(image[far], background[far])  # untouched beyond the feather
        if nodule.any():
            # the pasted pixels are nodule-dense, far above the lung they replace
            assert image[nodule].mean() > background[nodule].mean() + 40
    assert (table["shape_source"] >= 0).all() and (store.meta("attempts") == 1).all()
    assert store.attrs["generator"]["kind"] == "paste" and store.attrs["generator"]["sha256"] is None


def test_every_synthetic_nodule_records_fold_local_shape_and_size_sources(controls, real_path):
    """Each real-shaped nodule is one train nodule (its shape and its size: one row), of the label
    map's own fold whenever that fold has any (else of the others), and records that row."""
    real, store = open_store(real_path), controls["mislabeled"]
    real_table = real.nodules()
    table = store.nodules()
    library = NoduleLibrary.from_store(real, seed=3, split=0)
    row_fold = real.meta("fold")[real_table["slice"]]
    slice_fold = store.meta("fold")[table["slice"]]
    local = 0
    for k in range(table["slice"].size):
        shape_row, size_row = int(table["shape_source"][k]), int(table["size_source"][k])
        assert shape_row == size_row and shape_row in library.source_rows  # one train patient's nodule
        if slice_fold[k] in row_fold[library.source_rows]:
            assert row_fold[shape_row] == slice_fold[k]
            local += 1
        assert table["requested_mm"][k] == pytest.approx(library.diameters_mm[library.source_rows == shape_row][0])
    assert local > 0


def test_diameter_range_and_spheres_record_no_source(real_path, tmp_path):
    augment(_control(real_path, tmp_path / "m.zarr", "mislabeled", shape="sphere", diameter_mm=(8.0, 12.0)))
    table = open_store(tmp_path / "m.zarr").nodules()
    assert (table["shape_source"] == NO_SOURCE).all() and (table["size_source"] == NO_SOURCE).all()


def test_paste_needs_real_shapes_and_size_is_for_controls(real_path, micro_weights, tmp_path):
    with pytest.raises(InputError, match="--shape real"):
        augment(_control(real_path, tmp_path / "p.zarr", "paste", shape="sphere", diameter_mm=(8.0, 12.0)))
    with pytest.raises(InputError, match="--size"):
        augment(_control(real_path, tmp_path / "s.zarr", str(micro_weights["sdm"]), size=32, steps=2))
    assert not (tmp_path / "p.zarr").exists() and not (tmp_path / "s.zarr").exists()


def test_sampler_options_are_refused_for_a_control(real_path, tmp_path):
    """A control draws without a model: --steps would be ignored, so it is refused before anything is written."""
    with pytest.raises(ConfigError, match="^steps is for diffusion \\(SDM\\) weights; --weights blob is a model-free control"):
        augment(_control(real_path, tmp_path / "b.zarr", "blob", steps=50))
    assert not (tmp_path / "b.zarr").exists()


def test_controls_at_another_size(real_path, tmp_path):
    augment(_control(real_path, tmp_path / "m32.zarr", "mislabeled", size=32))
    store = open_store(tmp_path / "m32.zarr")
    assert store.shape_hw == (32, 32) and store.attrs["params"]["size"] == 32


def test_blob_paints_constant_ellipses_of_the_requested_size_in_the_paste_hosts(controls, real_path, tmp_path):
    augment(_control(real_path, tmp_path / "blob.zarr", "blob"))
    blob, paste = open_store(tmp_path / "blob.zarr"), controls["paste"]
    real = open_store(real_path)
    np.testing.assert_array_equal(blob.meta("source"), paste.meta("source"))
    table, paste_table = blob.nodules(), paste.nodules()
    for column in ("slice", "shape_source", "size_source", "requested_mm"):
        np.testing.assert_array_equal(table[column], paste_table[column])
    spacing = blob.meta("spacing")
    for i in range(len(blob)):
        image, label = blob.read(i)
        host = resize_images_uint8(np.asarray(real.image[int(blob.meta("source")[i])])[None], blob.shape_hw[0])[0]
        nodule = label == NODULE
        np.testing.assert_array_equal(image[~nodule], host[~nodule])  # the host slice, untouched off the blobs
        pieces, count = ndimage.label(nodule)
        for k in range(1, count + 1):
            assert np.unique(image[pieces == k]).size == 1  # one constant per blob
    for row, (x0, y0, x1, y1) in enumerate(table["bbox"]):
        mask = blob.read(int(table["slice"][row]))[1][int(y0) : int(y1), int(x0) : int(x1)] == NODULE
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()  # tight box
        s = spacing[int(table["slice"][row])]
        area_mm2 = mask.sum() * float(s[0]) * float(s[1])
        assert table["diameter_mm"][row] == pytest.approx(np.sqrt(4 * area_mm2 / np.pi), rel=1e-4)
        assert abs(table["diameter_mm"][row] - table["requested_mm"][row]) <= 2 * float(s.max())
