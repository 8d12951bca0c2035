"""`lungforge export`: a store's slices in the formats detectors train on (thin over lungforge.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lungforge.cli.params import StoreArg, build_config
from lungforge.core.choices import ExportFormat, ExportSplit


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    ctx: typer.Context,
    store: StoreArg,
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="Slice store: coco (PNG + annotations/instances_<split>.json, RLE masks), yolo (Ultralytics), nnunet (nnU-Net v2 raw dataset, 2-D), nifti or png (images, label maps, CSV of boxes). Volume store: nnunet3d (nnU-Net v2 raw dataset of whole scans in HU), monai-detection (MONAI detection data list, boxes in world mm, and the NIfTI scans).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (nnunet: the nnUNet_raw folder that gets DatasetNNN_Name/).")],
    split: Annotated[
        ExportSplit, typer.Option(help="Slices (volume store: scans) of the store's train split, test split, or all.")
    ] = "all",
    size: Annotated[
        int | None,
        typer.Option(
            min=8,
            help="Resize slices to SIZE×SIZE pixels (images bilinear, labels and nodule masks nearest, boxes from the resized masks; a nodule with no pixel left keeps its nearest one); default: the store's size. Slice formats only.",
        ),
    ] = None,
    nodule_only: Annotated[bool, typer.Option("--nodule-only", help="Only slices (volume store: scans) with at least one nodule.")] = False,
    dataset_id: Annotated[
        int | None,
        typer.Option(
            "--dataset-id",
            min=1,
            max=999,
            help="nnunet, nnunet3d only: the dataset number NNN; refused if a DatasetNNN_* folder of another name is in --out, $nnUNet_raw, $nnUNet_preprocessed or $nnUNet_results. Default: the id of an earlier export of this --dataset-name there, else the lowest id from 501 free in all of them.",
        ),
    ] = None,
    dataset_name: Annotated[
        str, typer.Option("--dataset-name", help="nnunet, nnunet3d only: the dataset name (letters, digits, '-').")
    ] = "Lungforge",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier lungforge export at the same place.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the export summary as JSON on stdout.")] = False,
) -> None:
    """Write a store's slices as COCO, YOLO, nnU-Net, NIfTI or PNG datasets, or a volume store's
    scans as a 3-D nnU-Net dataset or a MONAI detection data list.

    Slice boxes are in pixels of the exported size (after --size, the tight boxes of the resized
    nodule masks); volume boxes in world mm (LPS, as LUNA16's annotations.csv). The dataset
    appears only when complete (it is written into a hidden .NAME.partial folder beside it and
    renamed at the end), with a lungforge-export.json marker
    that records the store's provenance and this summary. One export at a time writes to an
    --out (a lock file OUT.lock beside it); an --out in or over the store is refused.
    """
    from lungforge.cli.console import err_console, print_json, print_result, progress
    from lungforge.export import ExportOptions, VolumeExportReport, export_store

    options = build_config(ExportOptions, ctx.params)
    with progress() as bar:
        report = export_store(store, out, options, overwrite=overwrite, progress=bar)
    if json_out:
        print_json(report)
    elif isinstance(report, VolumeExportReport):
        print_result(
            f"exported {report.scans} scans ({report.scans_by_split['train']} train, {report.scans_by_split['test']} test) "
            f"with {report.nodules} nodules as {report.format} to {report.out}"
        )
    else:
        print_result(
            f"exported {report.images} slices ({report.images_by_split['train']} train, {report.images_by_split['test']} test) "
            f"with {report.nodules} nodules as {report.format} to {report.out}"
        )
    for note in report.notes:
        err_console.print(f"note: {note}")
