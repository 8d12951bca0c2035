"""`--format nnunet3d` and `--format monai-detection` of a volume store: the volumes, their place in
the world (LPS in the store, RAS in NIfTI), the nodule boxes, and the refusals the 2-D exports make."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from lungforge.core.errors import ConfigError, InputError
from lungforge.core.labels import LABELS, NODULE
from lungforge.export import ExportOptions, VolumeExportReport, export_store
from lungforge.export.nifti import write_volume_nifti
from lungforge.export.volumes import ExportVolume
from lungforge.store import open_volume_store

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def volumes(volume_store: Path):
    return open_volume_store(volume_store)


@pytest.fixture(scope="module")
def nnunet3d(volume_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    report = export_store(volume_store, tmp_path_factory.mktemp("nnunet3d") / "raw", ExportOptions(format="nnunet3d"))
    return Path(report.out)


@pytest.fixture(scope="module")
def monai_export(volume_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(export_store(volume_store, tmp_path_factory.mktemp("monai") / "det", ExportOptions(format="monai-detection")).out)


def _lps_point_to_voxel(image: Any, point_lps: np.ndarray) -> np.ndarray:
    """World x, y, z mm (LPS) → the nearest voxel (i, j, k) of a NIfTI file, through nibabel's RAS affine."""
    ras = LPS_TO_RAS @ point_lps
    return np.rint(np.linalg.inv(image.affine) @ np.append(ras, 1.0))[:3].astype(int)


def test_nnunet3d_dataset_holds_the_store_volumes(volumes, nnunet3d: Path) -> None:
    assert nnunet3d.name == "Dataset501_Lungforge"
    dataset = json.loads((nnunet3d / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"} and dataset["file_ending"] == ".nii.gz"
    assert dataset["labels"] == {name: i for i, name in LABELS.items()}
    assert (dataset["numTraining"], dataset["numTest"]) == (2, 1) == (int((volumes.split == 0).sum()), int((volumes.split == 1).sum()))
    assert dataset["lungforge"]["schema"] == "lungforge.volumes/1" and dataset["lungforge"]["fingerprint"] == volumes.fingerprint()
    cases = list(csv.DictReader((nnunet3d / "cases.csv").open()))
    assert [c["case"] for c in cases] == ["lungforge_000", "lungforge_001", "lungforge_002"]
    for i, case in enumerate(cases):
        assert case["series_uid"] == volumes.uids[i] and case["split"] == volumes.split_name(i)
        images, labels = ("imagesTr", "labelsTr") if case["split"] == "train" else ("imagesTs", "labelsTs")
        image = sitk.ReadImage(str(nnunet3d / images / f"{case['case']}_0000.nii.gz"))
        label = sitk.ReadImage(str(nnunet3d / labels / f"{case['case']}.nii.gz"))
        hu, ids = volumes.read(i)
        assert image.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label), ids)
        for volume in (image, label):
            np.testing.assert_allclose(volume.GetSpacing(), [2.0] * 3, rtol=1e-6)
            np.testing.assert_allclose(volume.GetOrigin(), volumes.origin_mm[i], atol=1e-4)
            np.testing.assert_allclose(np.reshape(volume.GetDirection(), (3, 3)), volumes.direction[i], atol=1e-6)
    splits = json.loads((nnunet3d / "splits_final.json").read_text())
    assert splits == [{"train": ["lungforge_001"], "val": ["lungforge_000"]}, {"train": ["lungforge_000"], "val": ["lungforge_001"]}]


def test_each_nodule_centre_lands_on_a_nodule_voxel_through_nibabels_affine(volumes, nnunet3d: Path, monai_export: Path) -> None:
    """The store's world is LPS, NIfTI's RAS: a centre from annotations.csv, flipped to RAS and
    taken through the inverse of nibabel's affine, is a nodule voxel of the exported label map,
    and the same voxel of the exported image holds the store's HU there (nibabel: the
    `export-tools` extra)."""
    nibabel = pytest.importorskip("nibabel")
    table = volumes.nodules()
    assert table["scan"].size == 5
    for centre, scan, voxel in zip(table["center_mm"], table["scan"], table["center_voxel"]):
        folder = "Tr" if volumes.split[scan] == 0 else "Ts"
        label = nibabel.load(nnunet3d / f"labels{folder}" / f"lungforge_{scan:03d}.nii.gz")
        ijk = _lps_point_to_voxel(label, centre)
        assert np.asarray(label.dataobj)[tuple(ijk)] == NODULE
        np.testing.assert_array_equal(ijk[::-1], np.rint(voxel))
        image = nibabel.load(monai_export / "images" / f"lungforge_{scan:03d}.nii.gz")
        np.testing.assert_allclose(image.affine, label.affine)
        assert np.asarray(image.dataobj)[tuple(ijk)] == volumes.read(int(scan))[0][tuple(ijk[::-1])]


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.diag([1.0, 1.0, -1.0]), np.eye(3)[[1, 0, 2]]])
def test_a_volume_nifti_maps_every_index_to_its_lps_point(tmp_path: Path, direction: np.ndarray) -> None:
    """Flipped and permuted directions too: nibabel's affine with x and y negated is the LPS affine."""
    nibabel = pytest.importorskip("nibabel")
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    origin = np.array([-120.5, 33.25, -301.0])
    write_volume_nifti(tmp_path / "v.nii.gz", array, 1.5, origin, direction)
    image = nibabel.load(tmp_path / "v.nii.gz")
    rng = np.random.default_rng(0)
    index_zyx = rng.integers(0, (4, 5, 6), size=(10, 3))
    lps = origin + (index_zyx[:, ::-1] * 1.5) @ direction.T
    ras = (image.affine @ np.c_[index_zyx[:, ::-1], np.ones(10)].T).T[:, :3]
    np.testing.assert_allclose(ras @ LPS_TO_RAS, lps, atol=1e-4)
    data = np.asarray(image.dataobj)
    assert data.dtype == np.int16 and data.shape == (6, 5, 4)
    np.testing.assert_array_equal(data.transpose(2, 1, 0), array)


def test_monai_data_list_boxes_are_the_nodule_voxels_in_world_mm(volumes, monai_export: Path) -> None:
    data = json.loads((monai_export / "dataset.json").read_text())
    assert data["box_mode"] == "cccwhd"
    table = volumes.nodules()
    listed = {"training": np.flatnonzero(volumes.split == 0), "validation": np.flatnonzero(volumes.split == 1)}
    for key, scans in listed.items():
        assert [item["image"] for item in data[key]] == [f"images/lungforge_{i:03d}.nii.gz" for i in scans]
        for item, scan in zip(data[key], scans.tolist()):
            assert (monai_export / item["image"]).is_file() and item["seriesuid"] == volumes.uids[scan]
            rows = np.flatnonzero(table["scan"] == scan)
            boxes = np.asarray(item["box"], dtype=np.float64).reshape(-1, 6)
            assert len(boxes) == len(rows) == len(item["label"]) and set(item["label"]) <= {0}
            for box, row in zip(boxes, rows):
                lo = volumes.world_to_index(scan, box[:3] - box[3:] / 2)[0]
                hi = volumes.world_to_index(scan, box[:3] + box[3:] / 2)[0]
                # Voxel faces: half a voxel outside the first and last nodule voxel centres.
                np.testing.assert_allclose(lo, table["bbox"][row][:3] - 0.5, atol=1e-3)
                np.testing.assert_allclose(hi, table["bbox"][row][3:] - 0.5, atol=1e-3)
    assert sum(len(item["box"]) for key in listed for item in data[key]) == 5


def test_split_and_nodule_only_choose_scans(volume_store: Path, tmp_path: Path) -> None:
    report = export_store(volume_store, tmp_path / "m", ExportOptions(format="monai-detection", split="train", nodule_only=True))
    assert isinstance(report, VolumeExportReport)
    assert (report.scans, report.scans_by_split, report.nodules) == (1, {"train": 1, "test": 0}, 2)
    data = json.loads((tmp_path / "m" / "dataset.json").read_text())
    assert [item["image"] for item in data["training"]] == ["images/lungforge_000.nii.gz"] and data["validation"] == []
    assert sorted(p.name for p in (tmp_path / "m" / "images").iterdir()) == ["lungforge_000.nii.gz"]
    marker = json.loads((tmp_path / "m" / "lungforge-export.json").read_text())
    assert marker["report"]["scans"] == 1 and marker["provenance"]["export"]["format"] == "monai-detection"
    test = export_store(volume_store, tmp_path / "t", ExportOptions(format="nnunet3d", split="test", nodule_only=True, dataset_id=9))
    assert (test.scans_by_split, test.nodules) == ({"train": 0, "test": 1}, 3)
    assert json.loads((Path(test.out) / "dataset.json").read_text())["numTraining"] == 0


def test_a_store_of_the_other_kind_is_refused_naming_the_formats(volume_store: Path, stores, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"is a volume store \(prepare --volumes\); format 'coco' does not read it; .*nnunet3d"):
        export_store(volume_store, tmp_path / "c", ExportOptions(format="coco"))
    with pytest.raises(InputError, match="is a slice store; format 'nnunet3d' does not read it; .*coco, yolo, nnunet"):
        export_store(stores["real"], tmp_path / "n", ExportOptions(format="nnunet3d"))
    assert not (tmp_path / "c").exists() and not (tmp_path / "n").exists()
    with pytest.raises(ConfigError, match="size applies to slice formats only; 'nnunet3d' keeps"):
        ExportOptions(format="nnunet3d", size=32)
    with pytest.raises(ConfigError, match="applies to formats 'nnunet' and 'nnunet3d' only"):
        ExportOptions(format="monai-detection", dataset_id=3)


def test_volume_exports_keep_the_integrity_rules(volume_store: Path, stores, tmp_path: Path) -> None:
    """As the 2-D exports: an earlier export is replaced only with overwrite, a foreign folder
    never, and nnU-Net ids are shared with 2-D datasets in the same raw folder."""
    raw = tmp_path / "raw"
    two_d = export_store(stores["real"], raw, ExportOptions(format="nnunet", split="test"))
    three_d = export_store(volume_store, raw, ExportOptions(format="nnunet3d", dataset_name="Lung3d"))
    assert (Path(two_d.out).name, Path(three_d.out).name) == ("Dataset501_Lungforge", "Dataset502_Lung3d")
    with pytest.raises(InputError, match="already holds an export of .*--dataset-name NAME"):
        export_store(volume_store, raw, ExportOptions(format="nnunet3d", dataset_name="Lung3d"))
    again = export_store(volume_store, raw, ExportOptions(format="nnunet3d", dataset_name="Lung3d", split="train"), overwrite=True)
    assert Path(again.out).name == "Dataset502_Lung3d" and not any((Path(again.out) / "imagesTs").iterdir())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is not a lungforge export; refusing to write into it"):
        export_store(volume_store, foreign, ExportOptions(format="monai-detection"), overwrite=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    with pytest.raises(InputError, match="inside STORE"):
        export_store(volume_store, volume_store / "volumes", ExportOptions(format="monai-detection"))


def test_world_boxes_follow_flipped_axes_and_fall_back_to_the_annotation() -> None:
    """A z-flipped volume: the box of voxels z 4..5 lies below the origin in world z; a nodule
    with no voxel is boxed by its annotation (centre, a cube of its diameter)."""
    item = ExportVolume(
        index=0,
        case="lungforge_000",
        split="train",
        fold=0,
        series_uid="1.2.3",
        image=np.zeros((8, 8, 8), np.int16),
        label=np.zeros((8, 8, 8), np.uint8),
        spacing_mm=2.0,
        origin_mm=np.array([10.0, 20.0, 30.0]),
        direction=np.diag([1.0, 1.0, -1.0]),
        boxes_voxel=np.array([[4, 1, 2, 6, 2, 5], [-1] * 6]),
        centers_mm=np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]),
        diameters_mm=np.array([5.0, 4.5]),
    )
    boxes = item.world_boxes()
    # x voxels 2..4 → faces 1.5..4.5 → 13..19 mm; y 1 → 21..23 mm; z 4..5 → 30 - (3.5..5.5)·2 = 19..23 mm.
    np.testing.assert_allclose(boxes[0], [16.0, 22.0, 21.0, 6.0, 2.0, 4.0])
    np.testing.assert_allclose(boxes[1], [1.0, 2.0, 3.0, 4.5, 4.5, 4.5])
    assert item.lost.tolist() == [False, True]
