"""The volume store (`lungforge.volumes/1`) of a 3-scan phantom: isotropic spacing, label ids, 3-D
nodules where annotations.csv puts them, world coordinates, the slice store's split and folds,
and the integrity rules (checksums, content record, schema)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lungforge.core.errors import CorruptStoreError, SchemaError
from lungforge.core.labels import BODY, LABELS, LEFT_LUNG, NODULE, RIGHT_LUNG
from lungforge.preparation.masks import window_to_uint8
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.preparation.volume_pipeline import VolumeOptions, prepare_volumes
from lungforge.store import SPLIT_IDS, open_store, open_volume_store
from lungforge.store.volume_verify import verify_volume_store

SPACING_MM = 2.0


@pytest.fixture(scope="module")
def luna(phantom_factory) -> Path:
    return phantom_factory(scans=3, size=64, seed=0)


@pytest.fixture(scope="module")
def stores(luna, tmp_path_factory) -> dict[str, Path]:
    """A volume store at 2 mm and a slice store of the same phantom, split with the same options."""
    root = tmp_path_factory.mktemp("volumes")
    prepare_volumes(luna, root / "volumes.zarr", VolumeOptions(spacing_mm=SPACING_MM, test_patients=1, seed=3))
    prepare(luna, root / "slices.zarr", PrepareOptions(test_patients=1, seed=3))
    return {"volumes": root / "volumes.zarr", "slices": root / "slices.zarr"}


@pytest.fixture(scope="module")
def store(stores):
    return open_volume_store(stores["volumes"])


def _copy(path: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(path, tmp_path / path.name))


def test_spacing_is_isotropic_and_as_requested(store):
    assert store.spacing_mm == SPACING_MM == store.attrs["params"]["spacing_mm"]
    assert len(store) == 3
    for i in range(len(store)):
        corner = store.index_to_world(i, np.zeros((1, 3)))
        steps = store.index_to_world(i, np.eye(3)) - corner
        np.testing.assert_allclose(np.linalg.norm(steps, axis=1), SPACING_MM, rtol=1e-9)
        # Cropped to the body: along each axis, labelled voxels come within the margin (5 mm) of both ends.
        image, label = store.read(i)
        assert image.shape == label.shape == store.shape(i)
        margin = int(np.ceil(VolumeOptions().margin_mm / SPACING_MM)) + 1
        for axis in range(3):
            present = np.flatnonzero((label > 0).any(axis=tuple(a for a in range(3) if a != axis)))
            assert present[0] <= margin and present[-1] >= label.shape[axis] - 1 - margin


def test_label_ids_and_hu(store):
    image, label = store.read(0)
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) <= set(LABELS)
    assert {LEFT_LUNG, RIGHT_LUNG, BODY, NODULE} <= set(np.unique(label).tolist())
    # HU, not windowed: air near -1000, lungs well below the window's zero.
    assert image.min() < -900 and np.median(image[label == LEFT_LUNG]) < -600
    assert store.window_hu == (-1000.0, 400.0)


def test_each_nodule_is_a_3d_component_at_its_centre_spanning_its_diameter(store):
    table = store.nodules()
    assert table["scan"].size == 5 and (table["voxels"] > 0).all()
    for row in range(table["scan"].size):
        _, label = store.read(int(table["scan"][row]))
        components, _ = ndimage.label(label == NODULE, structure=np.ones((3, 3, 3)))
        centre = tuple(np.rint(table["center_voxel"][row]).astype(int))
        assert label[centre] == NODULE, f"row {row}: the centre voxel is not nodule"
        z = np.flatnonzero((components == components[centre]).any(axis=(1, 2)))
        extent_mm = (z[-1] - z[0] + 1) * SPACING_MM
        assert abs(extent_mm - table["diameter_mm"][row]) <= SPACING_MM, f"row {row}: z extent {extent_mm} mm"
        z0, y0, x0, z1, y1, x1 = table["bbox"][row]
        assert z0 <= centre[0] < z1 and y0 <= centre[1] < y1 and x0 <= centre[2] < x1


def test_world_coordinates_round_trip_against_annotations_csv(store, luna):
    lines = list(csv.reader((luna / "annotations.csv").read_text().splitlines()))
    table = store.nodules()
    for row in range(table["scan"].size):
        line = lines[int(table["annotation"][row]) - 1]
        scan = int(table["scan"][row])
        assert line[0] == store.uids[scan]
        expected = np.array([float(v) for v in line[1:4]])
        np.testing.assert_allclose(table["center_mm"][row], expected)
        np.testing.assert_allclose(store.index_to_world(scan, table["center_voxel"][row])[0], expected, atol=1e-6)
        np.testing.assert_allclose(store.world_to_index(scan, expected)[0], table["center_voxel"][row], atol=1e-6)
        assert table["diameter_mm"][row] == pytest.approx(float(line[4]))


def test_split_and_fold_are_the_slice_stores(store, stores):
    slices = open_store(stores["slices"])
    series = slices.meta("series")
    for i, uid in enumerate(store.uids):
        rows = series == slices.series_uids.index(uid)
        assert set(slices.meta("split")[rows].tolist()) == {int(store.split[i])}
        assert set(slices.meta("fold")[rows].tolist()) == {int(store.fold[i])}
    assert sorted(store.split.tolist()) == [SPLIT_IDS["train"]] * 2 + [SPLIT_IDS["test"]]


def test_axial_slices_are_the_volumes_planes(store):
    image, label = store.read(1)
    hu, lab = store.axial(1, 7)
    np.testing.assert_array_equal(hu[0], image[7])
    hu, lab = store.axial(1, np.array([2, 9]))
    np.testing.assert_array_equal(lab, label[[2, 9]])
    assert window_to_uint8(hu, store.window_hu).dtype == np.uint8


def test_verify_reads_every_chunk_of_a_sound_store(stores):
    checked = verify_volume_store(stores["volumes"])
    assert checked.ok, checked.problems
    assert checked.checksums and checked.content_recorded and checked.attributes_recorded and checked.boxes_checked == 5


def test_a_corrupted_chunk_is_detected(stores, tmp_path):
    path = _copy(stores["volumes"], tmp_path)
    shard = path / "volumes" / "0" / "image" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside a compressed chunk, not the shard index
    shard.write_bytes(bytes(data))
    store = open_volume_store(path)
    with pytest.raises(CorruptStoreError, match="volumes/0/image.*checksum"):
        store.read(0)
    checked = verify_volume_store(path)
    assert not checked.ok and any(line.startswith("volumes/0/image: volumes/0/image/c/0/0/0 fails") for line in checked.problems)


def test_a_lost_shard_is_refused_on_open(stores, tmp_path):
    path = _copy(stores["volumes"], tmp_path)
    (path / "volumes" / "2" / "label" / "c" / "0" / "0" / "0").unlink()
    with pytest.raises(CorruptStoreError, match="volumes/2/label differ from the content recorded") as error:
        open_volume_store(path)
    assert "\n" not in str(error.value)
    assert any("volumes/2/label/c/0/0/0 is missing" in line for line in verify_volume_store(path).problems)


def test_edited_attributes_are_refused(stores, tmp_path):
    path = _copy(stores["volumes"], tmp_path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["spacing_mm"] = 1.0
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaError, match="attributes changed after the store was finished: spacing_mm"):
        open_volume_store(path)


def test_wrong_schema_is_refused_in_one_line(stores):
    with pytest.raises(
        SchemaError, match=r"schema is 'lungforge.slices/1', expected 'lungforge.volumes/1' \(a store of 2-D slices"
    ) as error:
        open_volume_store(stores["slices"])
    assert "\n" not in str(error.value)
    with pytest.raises(SchemaError, match=r"expected 'lungforge.slices/1' \(a store of 3-D volumes: read it with"):
        open_store(stores["volumes"])
