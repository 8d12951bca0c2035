"""`augment-volumes`: model-free 3-D nodule insertion (paste, blob) into the real volumes of a
3-scan phantom volume store at 2 mm. Outside the edit boxes the output is the host bit for bit;
each inserted mask is one 6-connected component inside one lung, spanning its requested
diameter along z within one voxel spacing; counts, determinism, resume and bad requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from lungforge.augment.volume_insert import augment_volumes
from lungforge.augment.volume_nodules import SIX
from lungforge.augment.volume_options import VolumeInsertOptions
from lungforge.cli.main import app
from lungforge.core.errors import ConfigError, InputError, LayoutError, SchemaError
from lungforge.core.labels import BACKGROUND, BODY, LEFT_LUNG, LUNG_LABELS, NODULE, RIGHT_LUNG
from lungforge.store import SPLIT_IDS, VolumeWriter, open_volume_store
from lungforge.store.volume_verify import verify_volume_store


def _options(data: Path, out: Path, **changes) -> VolumeInsertOptions:
    values = {"weights": "paste", "nodules": 5, "per_volume": 2, "diameter_mm": (6.0, 16.0), "seed": 1} | changes
    return VolumeInsertOptions(data=data, out=out, **values)


@pytest.fixture(scope="module", params=["paste", "blob"])
def made(request, volume_store, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp(f"insert_{request.param}") / "synth.zarr"
    augment_volumes(_options(volume_store, out, weights=request.param))
    return volume_store, out


def _inserted_masks(real, synth):
    """Per inserted row: (output volume, host, its mask (Z, Y, X) bool, the host's labels)."""
    inserted, table = synth.inserted(), synth.nodules()
    for row, nodule in enumerate(inserted["nodule"]):
        v, host = int(table["scan"][nodule]), int(inserted["host"][row])
        _, label = synth.read(v)
        _, host_label = real.read(host)
        box = tuple(slice(int(a), int(b)) for a, b in zip(inserted["edit_box"][row][:3], inserted["edit_box"][row][3:]))
        mask = np.zeros(label.shape, dtype=bool)
        mask[box] = (label[box] == NODULE) & (host_label[box] != NODULE)
        yield row, v, host, mask, host_label


def test_outside_the_edit_boxes_every_voxel_is_the_hosts(made):
    real, synth = open_volume_store(made[0]), open_volume_store(made[1])
    inserted, table = synth.inserted(), synth.nodules()
    for v in range(len(synth)):
        rows = np.flatnonzero(table["scan"][inserted["nodule"]] == v)
        (host,) = set(inserted["host"][rows].tolist())
        image, label = synth.read(v)
        host_image, host_label = real.read(host)
        outside = np.ones(image.shape, dtype=bool)
        for box in inserted["edit_box"][rows]:
            outside[box[0] : box[3], box[1] : box[4], box[2] : box[5]] = False
        assert image.dtype == np.int16 and image.shape == host_image.shape
        assert np.array_equal(image[outside], host_image[outside]) and np.array_equal(label[outside], host_label[outside])
        assert not np.array_equal(image, host_image)
        # The host's real nodules are all still there; the output's scan row is the host's.
        assert (label[host_label == NODULE] == NODULE).all()
        assert synth.uids[v] == real.uids[host]
        np.testing.assert_array_equal(synth.origin_mm[v], real.origin_mm[host])


def test_each_mask_is_one_component_inside_one_lung_spanning_its_diameter_along_z(made):
    real, synth = open_volume_store(made[0]), open_volume_store(made[1])
    inserted, table = synth.inserted(), synth.nodules()
    spacing = synth.spacing_mm
    assert inserted["nodule"].size == 5
    for row, _, _, mask, host_label in _inserted_masks(real, synth):
        _, count = ndimage.label(mask, structure=SIX)
        assert count == 1
        lungs = set(np.unique(host_label[mask]).tolist())
        assert lungs in ({LEFT_LUNG}, {RIGHT_LUNG})
        planes = np.flatnonzero(mask.any(axis=(1, 2)))
        extent_mm = (planes[-1] - planes[0] + 1) * spacing
        requested = float(inserted["requested_mm"][row])
        assert abs(extent_mm - requested) <= spacing + 1e-6, (row, extent_mm, requested)
        nodule = int(inserted["nodule"][row])
        assert table["voxels"][nodule] == mask.sum() and table["annotation"][nodule] == -1
        where = np.nonzero(mask)
        assert list(table["bbox"][nodule]) == [*(int(w.min()) for w in where), *(int(w.max()) + 1 for w in where)]
        assert table["diameter_mm"][nodule] == pytest.approx(inserted["achieved_mm"][row])
        assert inserted["achieved_mm"][row] == pytest.approx(requested, rel=0.15)
        # Clear of the host's real nodules by more than the gap.
        if (host_label == NODULE).any():
            assert ndimage.distance_transform_edt(host_label != NODULE)[mask].min() > 2


def test_counts_provenance_and_verification(made):
    real, synth = open_volume_store(made[0]), open_volume_store(made[1])
    inserted = synth.inserted()
    assert len(synth) == 3 and synth.attrs["kind"] == "synthetic"
    assert np.bincount(synth.nodules()["scan"][inserted["nodule"]]).tolist() == [2, 2, 1]
    assert (real.split[inserted["host"]] == SPLIT_IDS["train"]).all()
    assert (real.split[inserted["donor_scan"]] == SPLIT_IDS["train"]).all()
    assert (real.nodules()["scan"][inserted["donor_nodule"]] == inserted["donor_scan"]).all()
    assert synth.attrs["input"]["fingerprint"] == real.fingerprint()
    assert set(synth.attrs["leakage"]["host_series"]) == {real.uids[h] for h in inserted["host"]}
    assert set(synth.attrs["leakage"]["donor_series"]) == {real.uids[d] for d in inserted["donor_scan"]}
    assert synth.attrs["params"]["seed"] == 1
    report = verify_volume_store(made[1])
    assert report.ok, report.problems


def test_paste_blends_without_a_seam_and_blob_is_constant_inside(made):
    real, synth = open_volume_store(made[0]), open_volume_store(made[1])
    weights = synth.attrs["params"]["weights"]
    for _, v, host, mask, _ in _inserted_masks(real, synth):
        image, _ = synth.read(v)
        host_image, _ = real.read(host)
        inner = ndimage.binary_erosion(mask, structure=SIX)
        if weights == "blob" and inner.any():
            assert np.unique(image[inner]).size == 1
        # The voxels just past the edit region are the host's: one ring out, nothing changed.
        changed = image != host_image
        ring = ndimage.binary_dilation(mask, structure=SIX, iterations=5) & ~ndimage.binary_dilation(mask, structure=SIX, iterations=4)
        assert not changed[ring].any()
        assert (image[mask] > host_image[mask]).mean() > 0.5


def test_the_same_seed_gives_the_same_store_and_another_seed_another(volume_store, made, tmp_path):
    weights = open_volume_store(made[1]).attrs["params"]["weights"]
    again = augment_volumes(_options(volume_store, tmp_path / "again.zarr", weights=weights))
    assert again.fingerprint == open_volume_store(made[1]).fingerprint()
    other = augment_volumes(_options(volume_store, tmp_path / "other.zarr", weights=weights, seed=2))
    assert other.fingerprint != again.fingerprint


def test_resume_after_an_interrupted_volume_gives_the_same_store(volume_store, made, tmp_path, monkeypatch):
    weights = open_volume_store(made[1]).attrs["params"]["weights"]
    out = tmp_path / "resumed.zarr"
    save = VolumeWriter.save_record

    def killed_at_the_second_record(self, name, record):
        if name == "volume-000001":
            raise KeyboardInterrupt
        save(self, name, record)

    monkeypatch.setattr(VolumeWriter, "save_record", killed_at_the_second_record)
    with pytest.raises(KeyboardInterrupt):
        augment_volumes(_options(volume_store, out, weights=weights))
    monkeypatch.setattr(VolumeWriter, "save_record", save)
    with pytest.raises(SchemaError, match="other options"):
        augment_volumes(_options(volume_store, out, weights=weights, seed=9, resume=True))
    report = augment_volumes(_options(volume_store, out, weights=weights, resume=True))
    assert report.written_this_run == 2
    assert report.fingerprint == open_volume_store(made[1]).fingerprint()


@pytest.mark.parametrize("placement", ["left", "right", "central", "peripheral"])
def test_placement(volume_store, tmp_path, placement):
    augment_volumes(_options(volume_store, tmp_path / "p.zarr", weights="blob", nodules=2, per_volume=1, placement=placement))
    real, synth = open_volume_store(volume_store), open_volume_store(tmp_path / "p.zarr")
    for row, _, _, mask, host_label in _inserted_masks(real, synth):
        lungs = set(np.unique(host_label[mask]).tolist())
        if placement in ("left", "right"):
            assert lungs == {LEFT_LUNG if placement == "left" else RIGHT_LUNG}
        lung = np.isin(host_label, LUNG_LABELS)
        depth = ndimage.distance_transform_edt(lung, sampling=synth.spacing_mm)[mask]
        if placement == "central":
            assert depth.min() >= synth.inserted()["achieved_mm"][row] / 2 * 0.9
        if placement == "peripheral":
            ring = ndimage.binary_dilation(mask, structure=SIX) & ~mask
            assert np.isin(host_label[ring], (BODY, BACKGROUND)).any()


def test_bad_requests_fail_before_writing(volume_store, prepared_store, tmp_path):
    out = tmp_path / "never.zarr"
    with pytest.raises(LayoutError, match="can hold"):
        augment_volumes(_options(volume_store, out, diameter_mm=(60.0, 60.0), placement="central"))
    with pytest.raises(LayoutError, match="can hold"):
        augment_volumes(_options(volume_store, out, diameter_mm=(100.0, 100.0)))
    with pytest.raises(LayoutError, match="below two voxels"):
        augment_volumes(_options(volume_store, out, diameter_mm=(3.0, 10.0)))
    with pytest.raises(InputError, match="store of 2-D slices"):
        augment_volumes(_options(prepared_store, out))
    with pytest.raises(ConfigError, match="nodules must be >= 1"):
        _options(volume_store, out, nodules=0)
    assert not out.exists()


def test_cli_writes_the_store_and_bad_input_is_one_line(volume_store, prepared_store, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.zarr"
    args = ["augment-volumes", "--data", str(volume_store), "--out", str(out), "--weights", "blob", "--nodules", "2", "--diameter", "6:10"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert '"nodules": 2' in result.stdout and open_volume_store(out).attrs["kind"] == "synthetic"
    # A LungforgeError leaves the command (the console script prints it as one red line, exit 1).
    bad = runner.invoke(app, ["augment-volumes", "--data", str(prepared_store), "--out", str(tmp_path / "x.zarr"), "--nodules", "1"])
    assert bad.exit_code == 1 and isinstance(bad.exception, InputError) and "\n" not in str(bad.exception)
    huge = runner.invoke(app, [*args[:-1], "90:90", "--overwrite"])
    assert huge.exit_code == 1 and isinstance(huge.exception, LayoutError) and "\n" not in str(huge.exception)
    zero = runner.invoke(app, ["augment-volumes", "--data", str(volume_store), "--out", str(tmp_path / "y.zarr"), "--nodules", "0"])
    assert zero.exit_code == 2 and not (tmp_path / "y.zarr").exists()


def test_slice_augment_points_a_volume_store_to_augment_volumes(volume_store, tmp_path):
    from lungforge.augment.generate import augment
    from lungforge.augment.options import AugmentOptions

    with pytest.raises(InputError, match="augment-volumes"):
        augment(AugmentOptions(data=volume_store, weights="paste", out=tmp_path / "s.zarr", nodules=1, device="cpu"))
    assert not (tmp_path / "s.zarr").exists()
