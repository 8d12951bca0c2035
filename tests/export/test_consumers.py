"""Each export read by the tool its users run: Ultralytics, nnU-Net v2, torchvision's COCO reader, nibabel, MONAI.

These need the optional `export-tools` extra (`pip install -e .[export-tools]`) and are skipped
without it.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from lungforge.core.labels import NODULE
from lungforge.export import ExportOptions, export_store


@pytest.mark.parametrize(("split", "size"), [("all", 32), ("train", 32), ("test", 32), ("all", 12)])
def test_ultralytics_accepts_the_yolo_export(
    stores, reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: str, size: int
) -> None:
    """At 12 px (Ultralytics' smallest image is 10 px) one of the 20 nodules keeps one pixel only: a 1 × 1 px box."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    pytest.importorskip("ultralytics")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    root = tmp_path / "yolo"
    export_store(stores["real"], root, ExportOptions(format="yolo", split=split, size=size))
    data = check_det_dataset(str(root / "data.yaml"), autodownload=False)
    assert data["nc"] == 1 and data["names"] == {0: "nodule"}
    assert Path(data["train"]).is_dir() and Path(data["val"]).is_dir()
    expected_val = "test" if split in ("all", "test") else "train"
    assert Path(data["val"]) == (root / "images" / expected_val).resolve()
    dataset = YOLODataset(img_path=data["val"], data=data, task="detect", imgsz=size, augment=False)
    rows = reference.rows(expected_val)
    assert len(dataset.labels) == rows.size
    by_name = {Path(item["im_file"]).stem: item for item in dataset.labels}
    for row in rows.tolist():
        boxes = by_name[f"{row:06d}"]["bboxes"]  # normalised cx, cy, w, h
        expected = reference.resized_boxes(row, size) / size
        got = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1) if len(boxes) else boxes
        np.testing.assert_allclose(got, expected.reshape(-1, 4), atol=1e-5)


def _two_nnunet_exports(stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Two stores exported into one nnUNet_raw without ids (nnU-Net's folders set to tmp_path)."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path / name))
    raw = tmp_path / "nnUNet_raw"
    first = export_store(stores["real"], raw, ExportOptions(format="nnunet", size=32))
    second = export_store(stores["B"], raw, ExportOptions(format="nnunet", dataset_name="Synthetic", size=32))
    return [Path(first.out), Path(second.out)]


def test_nnunet_finds_each_of_two_exports_by_id(stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nnunetv2")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    folders = _two_nnunet_exports(stores, tmp_path, monkeypatch)
    assert (
        [maybe_convert_to_dataset_name(i) for i in (501, 502)]
        == [f.name for f in folders]
        == ["Dataset501_Lungforge", "Dataset502_Synthetic"]
    )


@pytest.mark.slow  # nnU-Net's check spawns worker processes that import torch (about a minute)
def test_nnunet_integrity_check_passes(stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    for folder in _two_nnunet_exports(stores, tmp_path, monkeypatch):
        verify_dataset_integrity(str(folder), num_processes=1)


def test_nnunet_reader_finds_every_nodule_at_a_small_size(stores, reference, tmp_path: Path) -> None:
    """nnU-Net's own reader on an 8 px export: each label map is the store's, resized, with every
    nodule present (one too small for 8 px kept as its nearest pixel)."""
    pytest.importorskip("nnunetv2")
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    report = export_store(stores["real"], tmp_path / "raw", ExportOptions(format="nnunet", size=8, nodule_only=True))
    assert report.nodules_kept_as_pixel == 8
    rows = reference.rows(nodule_only=True)
    for row in rows.tolist():
        folder = "labelsTr" if reference.split[row] == 0 else "labelsTs"
        seg, _ = SimpleITKIO().read_seg(str(Path(report.out) / folder / f"lungforge_{row:06d}.nii.gz"))
        np.testing.assert_array_equal(seg[0, 0], reference.resized(row, 8)[0])
        assert (seg == NODULE).any()


def test_torchvision_reads_each_coco_split(stores, reference, tmp_path: Path) -> None:
    datasets = pytest.importorskip("torchvision.datasets")
    export_store(stores["real"], tmp_path / "coco", ExportOptions(format="coco", size=32))
    for split in ("train", "test"):
        with contextlib.redirect_stdout(io.StringIO()):
            data = datasets.CocoDetection(
                str(tmp_path / "coco" / "images" / split), str(tmp_path / "coco" / "annotations" / f"instances_{split}.json")
            )
        assert sorted(data.ids) == reference.rows(split).tolist()
        image, targets = data[0]
        assert image.size == (32, 32) and all(t["image_id"] == data.ids[0] for t in targets)


def test_nibabel_reads_nifti_spacing(stores, reference, tmp_path: Path) -> None:
    nibabel = pytest.importorskip("nibabel")
    export_store(stores["real"], tmp_path / "nii", ExportOptions(format="nifti", split="test", size=32))
    rows = reference.rows("test")
    image = nibabel.load(tmp_path / "nii" / "images" / f"{rows[0]:06d}.nii.gz")
    np.testing.assert_allclose(image.header.get_zooms()[:2], reference.spacing[rows[0]][::-1] * 2, rtol=1e-5)
    marker = json.loads((tmp_path / "nii" / "lungforge-export.json").read_text())
    assert marker["report"]["images"] == rows.size


def test_nnunet_reads_the_3d_export_with_its_geometry(volume_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's id lookup finds the 3-D dataset and its SimpleITK reader gives each case the
    store's HU volume, label map and isotropic spacing (nnU-Net's (z, y, x) order)."""
    pytest.importorskip("nnunetv2")
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from lungforge.store import open_volume_store

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "nnUNet_raw"))
    report = export_store(volume_store, tmp_path / "nnUNet_raw", ExportOptions(format="nnunet3d", dataset_id=604, dataset_name="Lung3d"))
    assert maybe_convert_to_dataset_name(604) == Path(report.out).name == "Dataset604_Lung3d"
    volumes = open_volume_store(volume_store)
    image, props = SimpleITKIO().read_images([str(Path(report.out) / "imagesTr" / "lungforge_000_0000.nii.gz")])
    seg, _ = SimpleITKIO().read_seg(str(Path(report.out) / "labelsTr" / "lungforge_000.nii.gz"))
    hu, label = volumes.read(0)
    np.testing.assert_array_equal(image[0], hu)
    np.testing.assert_array_equal(seg[0], label)
    np.testing.assert_allclose(props["spacing"], [2.0, 2.0, 2.0])


@pytest.mark.slow  # nnU-Net's check spawns worker processes that import torch
def test_nnunet_integrity_check_passes_on_the_3d_export(volume_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "nnUNet_raw"))
    report = export_store(volume_store, tmp_path / "nnUNet_raw", ExportOptions(format="nnunet3d"))
    verify_dataset_integrity(report.out, num_processes=1)


def test_monai_detection_recipe_puts_each_box_around_its_nodule(volume_store, tmp_path: Path) -> None:
    """MONAI's own loader and the LUNA16 recipe's box transforms (tutorials detection/
    generate_transforms.py: Orientationd RAS, ConvertBoxToStandardModed "cccwhd",
    AffineBoxToImageCoordinated with affine_lps_to_ras=True) on the data list: in image
    coordinates each box holds every voxel of its nodule in the label map, loaded alongside from
    the nnunet3d export and oriented the same way, and ends within half a voxel of them."""
    pytest.importorskip("monai")
    import torch
    from monai.apps.detection.transforms.dictionary import (
        AffineBoxToImageCoordinated,
        ConvertBoxToStandardModed,
        StandardizeEmptyBoxd,
    )
    from monai.data import load_decathlon_datalist
    from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Orientationd
    from scipy import ndimage

    monai_root = Path(export_store(volume_store, tmp_path / "monai", ExportOptions(format="monai-detection")).out)
    nnunet_root = Path(export_store(volume_store, tmp_path / "raw", ExportOptions(format="nnunet3d")).out)
    transform = Compose(
        [
            LoadImaged(keys=["image", "seg"], image_only=False, meta_key_postfix="meta_dict"),
            EnsureChannelFirstd(keys=["image", "seg"]),
            EnsureTyped(keys=["image", "box"], dtype=torch.float32),
            EnsureTyped(keys=["label"], dtype=torch.long),
            StandardizeEmptyBoxd(box_keys=["box"], box_ref_image_keys="image"),
            Orientationd(keys=["image", "seg"], axcodes="RAS", labels=None),
            ConvertBoxToStandardModed(box_keys=["box"], mode="cccwhd"),
            AffineBoxToImageCoordinated(
                box_keys=["box"], box_ref_image_keys="image", image_meta_key_postfix="meta_dict", affine_lps_to_ras=True
            ),
        ]
    )
    boxes_seen = 0
    for key, labels in (("training", "labelsTr"), ("validation", "labelsTs")):
        items = load_decathlon_datalist(str(monai_root / "dataset.json"), is_segmentation=True, data_list_key=key, base_dir=str(monai_root))
        for item in items:
            case = Path(item["image"]).name.removesuffix(".nii.gz")
            out = transform({**item, "seg": str(nnunet_root / labels / f"{case}.nii.gz")})
            seg = out["seg"][0].numpy()
            assert seg.shape == tuple(out["image"].shape[1:])
            components, count = ndimage.label(seg == NODULE)
            boxes = out["box"].numpy().reshape(-1, 6)  # xyzxyz in the oriented image's voxels
            assert count == len(boxes) == len(out["label"])
            held_by = []
            for box in boxes:
                lo, hi = np.ceil(box[:3]).astype(int), np.floor(box[3:]).astype(int) + 1  # voxel centres inside the box
                held = np.unique(components[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
                assert held[held > 0].size == 1  # one nodule's voxels ...
                voxels = np.argwhere(components == held[-1])
                np.testing.assert_allclose(box[:3], voxels.min(axis=0) - 0.5, atol=1e-3)  # ... all of them, tightly
                np.testing.assert_allclose(box[3:], voxels.max(axis=0) + 0.5, atol=1e-3)
                held_by.append(int(held[-1]))
            assert sorted(held_by) == list(range(1, count + 1))
            boxes_seen += len(boxes)
    assert boxes_seen == 5
