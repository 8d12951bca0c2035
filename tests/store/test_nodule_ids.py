"""Nodules, not slices (issue 24 item 2): stores record which nodule each nodule row belongs to;
stores without the record derive it."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import nodule_ids, open_store
from lungforge.store.nodule_ids import adjacent_components


@pytest.fixture(scope="module")
def phantom_store(phantom_dir, tmp_path_factory):
    """A real store prepared from the 4-scan 96-px phantom with every slice a nodule crosses."""
    out = tmp_path_factory.mktemp("nodule_ids") / "real.zarr"
    prepare(phantom_dir, out, PrepareOptions(test_patients=0.25, nodule_slices="all"))
    return out


def test_prepare_records_one_id_per_annotated_nodule(phantom_store):
    store = open_store(phantom_store)
    table = store.nodules()
    ids, rows = table["nodule"], table["slice"]
    series, z = store.meta("series")[rows], store.meta("z")[rows]
    assert 1 < np.unique(ids).size < ids.size  # nodules cross several slices
    for nodule in np.unique(ids):
        mine = ids == nodule
        assert np.unique(series[mine]).size == 1
        assert np.array_equal(np.sort(z[mine]), np.arange(z[mine].min(), z[mine].max() + 1))  # consecutive slices
    assert np.array_equal(nodule_ids(store), ids)
    assert zarr.open_array(phantom_store / "nodules" / "nodule").attrs["none"] == -1


def test_a_store_without_ids_derives_them_from_overlapping_boxes_on_adjacent_slices(phantom_store, tmp_path):
    import shutil

    copy = tmp_path / "old.zarr"
    shutil.copytree(phantom_store, copy)
    shutil.rmtree(copy / "nodules" / "nodule")  # a store written before nodule ids
    old, new = open_store(copy), open_store(phantom_store)
    assert "nodule" not in old.nodules()
    derived, recorded = nodule_ids(old), nodule_ids(new)
    pairs = np.unique(np.stack([derived, recorded], axis=1), axis=0)
    assert len(pairs) == np.unique(derived).size == np.unique(recorded).size  # the same grouping of rows


def test_adjacent_components_join_overlapping_boxes_one_slice_apart_in_one_series():
    box, far = [10, 10, 20, 20], [40, 40, 50, 50]
    series = np.array([0, 0, 0, 0, 1, 0])
    z = np.array([3, 4, 4, 6, 4, 5])
    bbox = np.array([box, box, far, box, box, [19, 19, 30, 30]], np.float32)
    # series 0: rows 0 (z 3), 1 (z 4), 5 (z 5, overlapping by one pixel) and 3 (z 6) chain into one
    # nodule; row 2 (z 4) is elsewhere on the slice; row 4 is another patient
    assert adjacent_components(series, z, bbox).tolist() == [0, 0, 1, 0, 2, 0]
    assert adjacent_components(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 4))).tolist() == []
