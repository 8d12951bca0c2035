"""`--format nnunet`: an nnU-Net v2 raw dataset of 2-D slices (`DatasetNNN_Name/`, NIfTI with spacing)."""

from __future__ import annotations

import json
from pathlib import Path

from lungforge.export.context import ExportContext
from lungforge.export.nifti import write_nifti
from lungforge.export.slices import ExportSlice
from lungforge.labels import LABELS

# nnU-Net's own 2-D reader gives slices a z spacing of 999 so that no 3-D resampling mixes them.
SLICE_THICKNESS_MM = 999.0
CV_FOLDS = 5


class NnunetWriter:
    """`imagesTr/<case>_0000.nii.gz` + `labelsTr/<case>.nii.gz` from the train split,
    `imagesTs/` (+ `labelsTs/`, for scoring; nnU-Net ignores it) from the test split,
    `dataset.json` (channel "CT", the 6 labels) and `splits_final.json`.

    `splits_final.json` holds 5 patient-grouped folds (LUNA16 subset mod 5) over the training
    cases; copied to `nnUNet_preprocessed/DatasetNNN_Name/` it stops nnU-Net's random
    cross-validation from putting slices of one patient on both sides.
    """

    def __init__(self, root: Path, context: ExportContext):
        self.root = root
        self.context = context
        for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (root / folder).mkdir()
        self.train_cases: list[tuple[str, int]] = []
        self.test_cases = 0

    def add(self, item: ExportSlice) -> None:
        case = f"lungforge_{item.name}"
        images, labels = ("imagesTr", "labelsTr") if item.split == "train" else ("imagesTs", "labelsTs")
        write_nifti(self.root / images / f"{case}_0000.nii.gz", item.image, item.spacing_mm, SLICE_THICKNESS_MM)
        write_nifti(self.root / labels / f"{case}.nii.gz", item.label, item.spacing_mm, SLICE_THICKNESS_MM)
        if item.split == "train":
            self.train_cases.append((case, item.fold))
        else:
            self.test_cases += 1

    def finish(self) -> list[str]:
        dataset = {
            "name": self.context.options.dataset_name,
            "description": "2-D axial lung CT slices windowed [-1000, 400] HU to 0..255, with lungforge label maps",
            "channel_names": {"0": "CT"},
            "labels": {name: label_id for label_id, name in sorted(LABELS.items())},
            "numTraining": len(self.train_cases),
            "numTest": self.test_cases,
            "file_ending": ".nii.gz",
            "overwrite_image_reader_writer": "SimpleITKIO",
            "lungforge": self.context.provenance,
        }
        (self.root / "dataset.json").write_text(json.dumps(dataset, indent=2))
        splits = []
        for fold in range(CV_FOLDS):
            val = [case for case, f in self.train_cases if f % CV_FOLDS == fold]
            if val and len(val) < len(self.train_cases):
                splits.append({"train": [case for case, f in self.train_cases if f % CV_FOLDS != fold], "val": val})
        (self.root / "splits_final.json").write_text(json.dumps(splits, indent=1))
        return ["imagesTr/", "labelsTr/", "imagesTs/", "labelsTs/", "dataset.json", "splits_final.json"]
