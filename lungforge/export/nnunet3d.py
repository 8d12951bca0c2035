"""`--format nnunet3d`: an nnU-Net v2 raw dataset of whole scans (`DatasetNNN_Name/`, HU NIfTI in the world)."""

from __future__ import annotations

from pathlib import Path

from lungforge.export.context import ExportContext
from lungforge.export.nifti import write_volume_nifti
from lungforge.export.nnunet import write_dataset_files
from lungforge.export.volumes import ExportVolume


class Nnunet3dWriter:
    """`imagesTr/<case>_0000.nii.gz` (int16 HU) + `labelsTr/<case>.nii.gz` (uint8, lungforge's
    label ids) from the train split, `imagesTs/` (+ `labelsTs/`, for scoring; nnU-Net ignores it)
    from the test split, `dataset.json` and `splits_final.json` as the 2-D export
    (:func:`lungforge.export.nnunet.write_dataset_files`), and `cases.csv` (case id → series uid).

    Each file carries the store's isotropic spacing, origin and direction in its NIfTI affine
    (:func:`lungforge.export.nifti.write_volume_nifti`); train `3d_fullres`. Case ids are
    `lungforge_<scan>` (:func:`lungforge.export.volumes.case_names`).
    """

    def __init__(self, root: Path, context: ExportContext):
        self.root = root
        self.context = context
        for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (root / folder).mkdir()
        self.train_cases: list[tuple[str, int]] = []
        self.test_cases = 0
        self.rows: list[str] = []
        self.notes: list[str] = []

    def add(self, item: ExportVolume) -> None:
        images, labels = ("imagesTr", "labelsTr") if item.split == "train" else ("imagesTs", "labelsTs")
        place = (item.spacing_mm, item.origin_mm, item.direction)
        write_volume_nifti(self.root / images / f"{item.case}_0000.nii.gz", item.image, *place)
        write_volume_nifti(self.root / labels / f"{item.case}.nii.gz", item.label, *place)
        if item.split == "train":
            self.train_cases.append((item.case, item.fold))
        else:
            self.test_cases += 1
        self.rows.append(f"{item.case},{item.index},{item.series_uid},{item.split},{item.fold}")

    def finish(self) -> list[str]:
        description = (
            f"Lung CT scans in HU (int16) at {self.context.provenance['params'].get('spacing_mm')} mm isotropic, "
            "with lungforge label maps (3-D)"
        )
        write_dataset_files(self.root, self.context, description, self.train_cases, self.test_cases)
        (self.root / "cases.csv").write_text("\n".join(["case,scan,series_uid,split,fold", *self.rows]) + "\n")
        return ["imagesTr/", "labelsTr/", "imagesTs/", "labelsTs/", "dataset.json", "splits_final.json", "cases.csv"]
