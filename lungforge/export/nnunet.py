"""`--format nnunet`: an nnU-Net v2 raw dataset of 2-D slices (`DatasetNNN_Name/`, NIfTI with spacing)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

from lungforge.core.errors import InputError
from lungforge.core.labels import LABELS
from lungforge.export.context import FIRST_DATASET_ID, ExportContext, ExportOptions
from lungforge.export.nifti import write_nifti
from lungforge.export.slices import ExportSlice

# nnU-Net's own 2-D reader gives slices a z spacing of 999 so that no 3-D resampling mixes them.
SLICE_THICKNESS_MM = 999.0
CV_FOLDS = 5
DATASET_FOLDER = re.compile(r"Dataset(\d{3})_(.+)")


NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
"""The environment variables naming nnU-Net's folders; it looks a dataset id up in all three."""


def nnunet_roots(raw: Path) -> list[Path]:
    """Where a dataset id must be free: `raw` (the export's --out) and the folders that
    $nnUNet_raw, $nnUNet_preprocessed and $nnUNet_results name, where set (each once)."""
    roots = [Path(raw)]
    for variable in NNUNET_FOLDERS:
        value = os.environ.get(variable)
        if value and Path(value).resolve() not in [r.resolve() for r in roots]:
            roots.append(Path(value))
    return roots


def dataset_folders(roots: list[Path]) -> dict[int, dict[str, Path]]:
    """The datasets in nnU-Net folders `roots`: id → {name: its first `DatasetNNN_Name` folder}."""
    found: dict[int, dict[str, Path]] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            match = DATASET_FOLDER.fullmatch(entry.name)
            if match and entry.is_dir():
                found.setdefault(int(match[1]), {}).setdefault(match[2], entry)
    return found


def with_dataset_id(raw: Path, options: ExportOptions) -> ExportOptions:
    """`options` with the dataset id to write into `raw`; InputError where nnU-Net would see one id twice.

    nnU-Net finds a dataset by its id alone, in nnUNet_raw, nnUNet_preprocessed and
    nnUNet_results together, so an id may name one dataset only across `raw` and those folders
    (:func:`nnunet_roots`). An explicit id held by a dataset of another name is refused. Without
    an id, the id of this name's dataset is reused (so --overwrite replaces it), or else the
    lowest id from 501 that no folder holds.
    """
    taken = dataset_folders(nnunet_roots(raw))
    name = options.dataset_name
    dataset_id = options.dataset_id
    free = [i for i in range(FIRST_DATASET_ID, 1000) if i not in taken]
    if dataset_id is None:
        same_name = sorted(i for i, names in taken.items() if name in names)
        if len(same_name) > 1:
            folders = ", ".join(_shown(taken[i][name], raw) for i in same_name)
            raise InputError(f"{raw}: holds {folders}; choose one with --dataset-id")
        if not same_name and not free:
            raise InputError(f"{raw}: every dataset id from {FIRST_DATASET_ID} to 999 is taken; choose one with --dataset-id")
        dataset_id = same_name[0] if same_name else free[0]
    others = sorted(set(taken.get(dataset_id, {})) - {name})
    if others:
        hint = f" (id {free[0]} is free)" if free else ""
        raise InputError(
            f"{raw}: dataset id {dataset_id} is already {_shown(taken[dataset_id][others[0]], raw)}; nnU-Net needs one name "
            f"per id: choose another --dataset-id{hint}"
        )
    return replace(options, dataset_id=dataset_id)


def _shown(folder: Path, raw: Path) -> str:
    """A dataset folder for a message: its name in `raw`, else its name and the folder it is in."""
    return folder.name if folder.parent == Path(raw) else f"{folder.name} in {folder.parent}"


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
        self.notes: list[str] = []

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
        description = "2-D axial lung CT slices windowed [-1000, 400] HU to 0..255, with lungforge label maps"
        write_dataset_files(self.root, self.context, description, self.train_cases, self.test_cases)
        return ["imagesTr/", "labelsTr/", "imagesTs/", "labelsTs/", "dataset.json", "splits_final.json"]


def write_dataset_files(root: Path, context: ExportContext, description: str, train_cases: list[tuple[str, int]], test_cases: int) -> None:
    """`dataset.json` (channel "CT", lungforge's 6 labels, `.nii.gz`, SimpleITK's reader) and
    `splits_final.json` in `root`: 5 folds over the training cases `(case id, LUNA16 subset)`,
    fold = subset mod 5, so all cases of one subset are on one side of every fold."""
    dataset = {
        "name": context.options.dataset_name,
        "description": description,
        "channel_names": {"0": "CT"},
        "labels": {name: label_id for label_id, name in sorted(LABELS.items())},
        "numTraining": len(train_cases),
        "numTest": test_cases,
        "file_ending": ".nii.gz",
        "overwrite_image_reader_writer": "SimpleITKIO",
        "lungforge": context.provenance,
    }
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    splits = []
    for fold in range(CV_FOLDS):
        val = [case for case, f in train_cases if f % CV_FOLDS == fold]
        if val and len(val) < len(train_cases):
            splits.append({"train": [case for case, f in train_cases if f % CV_FOLDS != fold], "val": val})
    (root / "splits_final.json").write_text(json.dumps(splits, indent=1))
