"""`lungforge augment-volumes`: model-free 3-D nodules in real volumes (thin over lungforge.augment.volume_insert)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lungforge.cli.params import build_config, usage_errors
from lungforge.cli.params import seed as check_seed
from lungforge.core.choices import HostSplit, Placement, VolumeControl

if TYPE_CHECKING:
    from lungforge.augment.volume_options import VolumeInsertOptions, VolumeInsertReport


def register(app: typer.Typer) -> None:
    app.command("augment-volumes")(augment_volumes)


def augment_volumes(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Real volume store (lungforge prepare LUNA16 --out V.zarr --volumes).")],
    out: Annotated[Path, typer.Option("--out", help="Output synthetic volume store (e.g. synth-volumes.zarr).")],
    weights: Annotated[
        VolumeControl,
        typer.Option(
            "--weights",
            help="'paste' (per nodule one real train-patient nodule, its 3-D mask and HU, resampled to the requested diameter "
            "and feathered into the host) or 'blob' (a constant-HU ellipsoid, the same donor's median nodule HU, with a "
            "partial-volume edge).",
        ),
    ] = "paste",
    nodules: Annotated[int, typer.Option("--nodules", help="Nodules to insert in all (>= 1).")] = 1,
    per_volume: Annotated[
        int, typer.Option("--per-volume", min=1, help="Nodules per output volume (the last one takes the remainder).")
    ] = 1,
    diameter: Annotated[
        str | None,
        typer.Option(
            "--diameter",
            help="Diameter range MIN:MAX in mm, drawn uniformly; MIN at least two voxels. Each mask spans the diameter along z "
            "(within one voxel) and has the volume of that sphere. Default: each donor nodule's own equivalent diameter.",
        ),
    ] = None,
    placement: Annotated[
        Placement,
        typer.Option(help="Where nodules go: any, central, peripheral (touching the chest wall), left or right (lung)."),
    ] = "any",
    split: Annotated[HostSplit, typer.Option(help="Patients whose volumes host the nodules (donors are always train patients).")] = "train",
    seed: Annotated[int, typer.Option(callback=check_seed, help="Run seed; output volume v draws from (seed, v) only.")] = 0,
    feather: Annotated[
        int, typer.Option("--feather", min=1, help="Voxels around a pasted nodule over which the donor's rim is blended in (1..8).")
    ] = 2,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run into the same store (same options).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing synthetic store at --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")] = False,
) -> None:
    """Insert nodules into real CT volumes without a model: 3-D `paste` and `blob`.

    Each nodule lies wholly inside one lung, clear of every other nodule, in a host volume of the
    --split patients; only a small edit region around it changes, every other voxel is the real
    one bit for bit. The output is a volume store of kind 'synthetic' with label 5 on each
    inserted mask, the nodule table (centre, mask box) and the inserted table (requested and
    achieved diameter, edit box, host, donor, seed); resumable per volume.
    """
    from lungforge.augment.layout import parse_diameter_range
    from lungforge.augment.volume_options import VolumeInsertOptions

    with usage_errors("--diameter"):
        diameter_mm = parse_diameter_range(diameter) if diameter is not None else None
    options = build_config(VolumeInsertOptions, ctx.params, _FLAGS, diameter_mm=diameter_mm, feather_voxels=feather)
    _run(options, json_out)


_FLAGS = {"diameter_mm": "--diameter", "feather_voxels": "--feather"}
"""CLI flags of the VolumeInsertOptions fields whose flag is not the field's name with dashes."""


def _run(options: VolumeInsertOptions, json_out: bool) -> None:
    from lungforge.augment.volume_insert import augment_volumes as run
    from lungforge.cli.console import print_json, progress

    bar = progress()
    task = bar.add_task("augment-volumes", total=options.volumes, status="")

    def update(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        report = run(options, progress=update)
    finally:
        bar.stop()
    if json_out:
        print_json(report)
    else:
        _print_summary(report)


def _print_summary(report: VolumeInsertReport) -> None:
    from rich.table import Table

    from lungforge.cli.console import out_console

    table = Table(title=f"augment-volumes → {report.out}", show_header=False)
    rows = [
        ("volumes", f"{report.volumes} ({report.written_this_run} written this run) at {report.spacing_mm:g} mm"),
        ("nodules", f"{report.nodules} ({report.weights})"),
        (
            "diameter error",
            f"equivalent diameter: mean {report.diameter_error_pct_mean:.1f} %, max {report.diameter_error_pct_max:.1f} %; "
            f"z extent: max {report.z_extent_error_mm_max:.2f} mm",
        ),
        ("fingerprint", report.fingerprint),
        ("speed", f"{report.nodules_per_minute:.1f} nodules/min ({report.seconds:.1f} s)"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out_console.print(table)
