"""`--format nnunet`: the dataset read back with SimpleITK (nnU-Net's reader) and its dataset.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungforge.export import ExportOptions, export_store
from lungforge.labels import LABELS


def test_nnunet_dataset_matches_store(stores, reference, tmp_path: Path) -> None:
    report = export_store(stores["real"], tmp_path / "raw", ExportOptions(format="nnunet", dataset_id=7, dataset_name="LungTest"))
    root = tmp_path / "raw" / "Dataset007_LungTest"
    assert Path(report.out) == root
    dataset = json.loads((root / "dataset.json").read_text())
    assert dataset["labels"] == {name: i for i, name in LABELS.items()} and len(dataset["labels"]) == 6
    assert dataset["channel_names"] == {"0": "CT"} and dataset["file_ending"] == ".nii.gz"
    train, test = reference.rows("train"), reference.rows("test")
    assert dataset["numTraining"] == train.size == len(list((root / "imagesTr").iterdir())) == len(list((root / "labelsTr").iterdir()))
    assert len(list((root / "imagesTs").iterdir())) == test.size
    for folder, labels, rows in (("imagesTr", "labelsTr", train), ("imagesTs", "labelsTs", test)):
        for row in rows.tolist():
            case = f"lungforge_{row:06d}"
            image = sitk.ReadImage(str(root / folder / f"{case}_0000.nii.gz"))
            label = sitk.ReadImage(str(root / labels / f"{case}.nii.gz"))
            np.testing.assert_array_equal(sitk.GetArrayFromImage(image), reference.image[row][None])
            np.testing.assert_array_equal(sitk.GetArrayFromImage(label), reference.label[row][None])
            np.testing.assert_allclose(image.GetSpacing()[:2], reference.spacing[row][::-1], rtol=1e-6)
            assert label.GetSpacing() == image.GetSpacing()


def test_nnunet_splits_keep_patients_together(stores, reference, tmp_path: Path) -> None:
    export_store(stores["real"], tmp_path / "raw", ExportOptions(format="nnunet"))
    root = tmp_path / "raw" / "Dataset501_Lungforge"
    splits = json.loads((root / "splits_final.json").read_text())
    train = reference.rows("train")
    series_of = {f"lungforge_{row:06d}": int(reference.series[row]) for row in train.tolist()}
    assert len(splits) >= 2
    for fold in splits:
        assert sorted(fold["train"] + fold["val"]) == sorted(series_of)
        assert not {series_of[c] for c in fold["train"]} & {series_of[c] for c in fold["val"]}
    assert sorted(c for fold in splits for c in fold["val"]) == sorted(series_of)
