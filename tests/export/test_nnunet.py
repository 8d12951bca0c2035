"""`--format nnunet`: the dataset read back with SimpleITK (nnU-Net's reader) and its dataset.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungforge.core.errors import InputError
from lungforge.core.labels import LABELS
from lungforge.export import ExportOptions, export_store


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


def test_dataset_ids_never_clash_in_one_raw_folder(stores, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    first = export_store(stores["real"], raw, ExportOptions(format="nnunet", split="train"))
    second = export_store(stores["B"], raw, ExportOptions(format="nnunet", dataset_name="Synthetic"))
    assert (Path(first.out).name, Path(second.out).name) == ("Dataset501_Lungforge", "Dataset502_Synthetic")
    assert "502" in second.notes[0]
    with pytest.raises(InputError, match="dataset id 501 is already Dataset501_Lungforge.*id 503 is free"):
        export_store(stores["C"], raw, ExportOptions(format="nnunet", dataset_id=501, dataset_name="Other"))
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset501_Lungforge", "Dataset502_Synthetic"]
    with pytest.raises(InputError, match="to keep it, export under another name with --dataset-name NAME"):
        export_store(stores["real"], raw, ExportOptions(format="nnunet"))
    again = export_store(stores["real"], raw, ExportOptions(format="nnunet"), overwrite=True)
    assert Path(again.out).name == "Dataset501_Lungforge" and json.loads((Path(again.out) / "dataset.json").read_text())["numTest"] > 0
    (raw / "Dataset777_Lungforge").mkdir()
    with pytest.raises(InputError, match="Dataset501_Lungforge, Dataset777_Lungforge; choose one with --dataset-id"):
        export_store(stores["real"], raw, ExportOptions(format="nnunet"), overwrite=True)


def test_a_second_default_export_is_pointed_to_dataset_name_not_overwrite(stores, tmp_path: Path) -> None:
    """The real store exported first; the synthetic store exported next with the default name is
    refused naming the real export and the option that keeps it."""
    raw = tmp_path / "raw"
    export_store(stores["real"], raw, ExportOptions(format="nnunet"))
    with pytest.raises(InputError) as refused:
        export_store(stores["B"], raw, ExportOptions(format="nnunet"))
    message = str(refused.value)
    assert message.startswith(f"{raw / 'Dataset501_Lungforge'}: already holds an export of {stores['real']}; to keep it, ")
    assert "--dataset-name NAME" in message and message.index("--dataset-name") < message.index("--overwrite")
    follow = export_store(stores["B"], raw, ExportOptions(format="nnunet", dataset_name="Synthetic"))
    assert Path(follow.out).name == "Dataset502_Synthetic"


@pytest.mark.parametrize("variable", ["nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"])
def test_dataset_ids_are_free_in_nnunets_folders_too(stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """nnU-Net looks an id up in all three of its folders ("More than one dataset name found for
    dataset id 501" otherwise): an id held there by another dataset is neither picked nor accepted."""
    elsewhere = tmp_path / variable
    (elsewhere / "Dataset501_Other").mkdir(parents=True)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(elsewhere))
    raw = tmp_path / "out"
    picked = export_store(stores["real"], raw, ExportOptions(format="nnunet", split="test"))
    assert Path(picked.out).name == "Dataset502_Lungforge"
    with pytest.raises(InputError, match=f"dataset id 501 is already Dataset501_Other in {re.escape(str(elsewhere))}; .*id 503 is free"):
        export_store(stores["real"], raw, ExportOptions(format="nnunet", dataset_id=501, dataset_name="Mine"))
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset502_Lungforge"]
