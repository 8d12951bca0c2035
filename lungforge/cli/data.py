"""`lungforge phantom | prepare | info`: data commands (thin wrappers over lungforge.data)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lungforge.cli.params import build_config, finite, flag_of, usage_errors
from lungforge.cli.params import seed as check_seed
from lungforge.core.choices import MAX_SIZE_PX, VOLUME_SPACING_MM, VOLUME_SPACING_RANGE_MM, Lungs, NoduleSlices
from lungforge.core.errors import EXIT_ERROR, EXIT_PARTIAL

if TYPE_CHECKING:
    from lungforge.core.labels import SegValues
    from lungforge.preparation.options import VolumeOptions, VolumeReport
    from lungforge.preparation.pipeline import PrepareOptions, PrepareReport
    from lungforge.store.summary import StoreSummary, VolumeSummary


def register(app: typer.Typer) -> None:
    app.command("phantom")(phantom)
    app.command("prepare")(prepare)
    app.command("info")(info)


def phantom(
    out: Annotated[Path, typer.Argument(help="Directory to write the synthetic LUNA16-format dataset into.")],
    scans: Annotated[int, typer.Option(min=1, help="Number of scans (spread over subset0..subset9).")] = 10,
    size: Annotated[int, typer.Option(min=32, max=MAX_SIZE_PX, help="In-plane size in pixels (LUNA16 is 512; 128 for fast tests).")] = 512,
    seed: Annotated[int, typer.Option(callback=check_seed, help="Random seed; the same seed gives byte-identical files.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it already holds a phantom dataset.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Write a synthetic dataset in LUNA16's on-disk layout (subsets, seg masks, annotations.csv)."""
    from lungforge.cli.console import print_json, print_result
    from lungforge.phantom.scans import make_phantom

    result = make_phantom(out, scans=scans, size=size, seed=seed, overwrite=overwrite)
    if json_out:
        print_json(result)
    else:
        print_result(f"wrote {result['scans']} phantom scans with {result['nodules']} nodules to {out}")


def prepare(
    ctx: typer.Context,
    luna16_dir: Annotated[Path, typer.Argument(help="LUNA16 directory: subset0..9/, seg-lungs-LUNA16/, annotations.csv.")],
    out: Annotated[Path, typer.Option("--out", help="Output Zarr store (e.g. real.zarr).")],
    workers: Annotated[int, typer.Option(min=1, help="Worker processes reading and processing scans.")] = 1,
    lungs: Annotated[
        Lungs, typer.Option(help="Lung labels from 'seg' (seg-lungs-LUNA16 masks) or 'auto' (classical segmentation).")
    ] = "seg",
    seg_values: Annotated[str, typer.Option(help="Seg-mask values of left lung, right lung and trachea.")] = "left=3,right=4,trachea=5",
    nodule_slices: Annotated[
        NoduleSlices,
        typer.Option(help="'center': the axial slice nearest each nodule centre (the paper); 'all': every slice its mask touches."),
    ] = "center",
    keep_nodule_free: Annotated[
        float, typer.Option(min=0.0, max=1.0, callback=finite, help="Fraction of nodule-free lung slices kept (deterministic by seed).")
    ] = 0.25,
    test_patients: Annotated[
        str | None,
        typer.Option(
            help="Test patients: an exact count or a fraction such as 0.15. Default: the paper's 144, "
            "or its share 144/888 of the scans when there are fewer than 888 (e.g. with --limit)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(callback=check_seed, help="Seed for the patient split and the nodule-free subsampling.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N scans (for trials).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run into the same store.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing lungforge store at --out.")] = False,
    volumes: Annotated[
        bool,
        typer.Option(
            "--volumes",
            help="Write a volume store instead: each scan as one 3-D volume of int16 HU and its label volume at one "
            "isotropic spacing, cropped to the body, with the nodule table in mm and voxels (docs/store-format.md). "
            "--nodule-slices and --keep-nodule-free do not apply.",
        ),
    ] = False,
    spacing_mm: Annotated[
        float | None,
        typer.Option(
            min=VOLUME_SPACING_RANGE_MM[0],
            max=VOLUME_SPACING_RANGE_MM[1],
            callback=finite,
            help=f"With --volumes: the isotropic voxel spacing in mm [default: {VOLUME_SPACING_MM:g}].",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
) -> None:
    """Turn LUNA16 scans into windowed 2D slices and label maps in a Zarr store (recipe: docs/prepare.md).

    Window [-1000, 400] HU to uint8; labels 0 background, 1 left lung, 2 right lung, 3 trachea,
    4 body, 5 nodule. Every slice is stored in radiological display orientation (patient's left
    on the image's right, anterior up) whatever the file's direction. Bad scans (unreadable, values
    that are not HU, a seg mask laid out otherwise, data shared with another series, scans
    outside subset0..9) are skipped and listed; the exit code is then 3. Exact duplicate rows of
    annotations.csv are dropped and reported. With --volumes the same inputs, checks, split and
    folds give a store of 3-D volumes (HU, not windowed) for 3-D detectors.
    """
    from lungforge.cli.console import print_json, progress
    from lungforge.core.labels import SegValues
    from lungforge.preparation.options import parse_test_patients
    from lungforge.preparation.pipeline import PrepareOptions
    from lungforge.preparation.pipeline import prepare as run_prepare

    if resume and overwrite:
        raise typer.BadParameter("use either --resume or --overwrite, not both")
    with usage_errors("--seg-values"):
        values = SegValues.parse(seg_values)
    with usage_errors():
        n_test = parse_test_patients(test_patients) if test_patients is not None else None
    if volumes:
        _prepare_volumes(ctx, luna16_dir, out, values, n_test, resume=resume, overwrite=overwrite, json_out=json_out)
        return
    if spacing_mm is not None:
        raise typer.BadParameter("applies to --volumes only (slices keep their scan's spacing)", param_hint="--spacing-mm")
    options = build_config(PrepareOptions, ctx.params, seg_values=values, test_patients=n_test)
    _note_workers(luna16_dir, options)
    with progress() as bar:
        report = run_prepare(luna16_dir, out, options, resume=resume, overwrite=overwrite, progress=bar)
    _print_problems(report, luna16_dir)
    if json_out:
        print_json(report)
    else:
        _print_prepared(report, out)
    if report.skipped:
        raise typer.Exit(EXIT_PARTIAL)


def _prepare_volumes(
    ctx: typer.Context,
    luna16_dir: Path,
    out: Path,
    seg_values: SegValues,
    test_patients: int | float | None,
    *,
    resume: bool,
    overwrite: bool,
    json_out: bool,
) -> None:
    """`prepare --volumes`: the volume store, its problems on stderr and its result on stdout."""
    from lungforge.cli.console import print_json, print_result, progress
    from lungforge.preparation.volume_pipeline import VolumeOptions, prepare_volumes

    for name in ("nodule_slices", "keep_nodule_free"):
        source = ctx.get_parameter_source(name)
        # By name: Typer may bring its own copy of click's ParameterSource enum.
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            raise typer.BadParameter("does not apply to --volumes (a volume holds every slice)", param_hint=flag_of(name))
    params = {k: v for k, v in ctx.params.items() if v is not None}
    options = build_config(VolumeOptions, params, seg_values=seg_values, test_patients=test_patients)
    _note_workers(luna16_dir, options)
    with progress() as bar:
        report = prepare_volumes(luna16_dir, out, options, resume=resume, overwrite=overwrite, progress=bar)
    _print_problems(report, luna16_dir)
    if json_out:
        print_json(report)
    else:
        print_result(
            f"{report.scans_done} volumes at {report.spacing_mm:g} mm ({report.voxels:,} voxels, {report.nodules} nodules, "
            f"{report.nodules_labelled} labelled) written to {out}; {len(report.skipped)} scans skipped, "
            f"{len(report.lost_nodules)} annotated nodules not labelled, {len(report.duplicate_annotations)} duplicate annotation "
            f"rows dropped, {report.reoriented} scans turned to the display orientation"
        )
    if report.skipped:
        raise typer.Exit(EXIT_PARTIAL)


def _note_workers(luna16_dir: Path, options: PrepareOptions | VolumeOptions) -> None:
    """Say on stderr when `prepare` runs fewer worker processes than --workers asked for."""
    from lungforge.cli.console import err_console
    from lungforge.core.cpus import available_cpus
    from lungforge.preparation.pipeline import planned_workers

    used = planned_workers(luna16_dir, options)
    if used < options.workers:
        err_console.print(
            f"[yellow]note:[/yellow] --workers {options.workers}: using {used} (one per CPU and per scan; {available_cpus()} CPUs)",
            highlight=False,
        )


def _print_problems(report: PrepareReport | VolumeReport, luna16_dir: Path) -> None:
    """Skipped scans, unlabelled nodules, annotations of absent series and duplicate annotation rows, on stderr."""
    from rich.markup import escape

    from lungforge.cli.console import err_console

    for skipped in report.skipped:
        err_console.print(
            f"[yellow]skipped[/yellow] {escape(skipped['file'])}: {escape(skipped['reason'])}", highlight=False, soft_wrap=True
        )
    for lost in report.lost_nodules:
        err_console.print(
            f"[yellow]nodule not labelled[/yellow] {lost['series']}, {lost['diameter_mm']} mm at "
            f"{lost['center_mm']} mm: {escape(lost['reason'])}",
            highlight=False,
            soft_wrap=True,
        )
    absent = report.absent_series
    if absent["series"]:
        err_console.print(
            f"{absent['annotations']} annotations of {absent['series']} series not in {luna16_dir} ignored "
            "(not downloaded?; their uids are in --json)",
            highlight=False,
            soft_wrap=True,
        )
    duplicates = report.duplicate_annotations
    if duplicates:
        lines = ", ".join(f"{d['line']} (= {d['same_as']})" for d in duplicates[:5])
        err_console.print(
            f"{len(duplicates)} exact duplicate rows of annotations.csv dropped: lines {lines}"
            f"{' ...' if len(duplicates) > 5 else ''} (all in --json)",
            highlight=False,
            soft_wrap=True,
        )


def _print_prepared(report: PrepareReport, out: Path) -> None:
    """prepare's result line on stdout (what it wrote; the problems went to stderr)."""
    from lungforge.cli.console import print_result

    print_result(
        f"{report.slices} slices ({report.nodule_slices} with nodules, {report.nodules} nodule rows) from "
        f"{report.scans_done} scans written to {out}; {len(report.skipped)} scans skipped, "
        f"{len(report.lost_nodules)} annotated nodules not labelled, {len(report.duplicate_annotations)} duplicate annotation "
        f"rows dropped, {report.reoriented} scans turned to the display orientation"
    )


def info(
    store: Annotated[Path, typer.Argument(help="A lungforge Zarr store.")],
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also read every chunk (crc32c checksums), compare each array with the content recorded when "
            "the store was finished, check the counts against the metadata and that every box is the tight box of "
            "exactly one nodule of its label map; exit 1 naming each damaged array and chunk. (Any open refuses a "
            "store whose attributes changed after it was finished.)",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Print counts, splits, folds and the nodule size histogram of a store (of slices or of volumes)."""
    from rich.markup import escape

    from lungforge.cli.console import err_console, print_json, print_result
    from lungforge.store import VOLUME_SCHEMA, count_store, open_store, open_volume_store, schema_of
    from lungforge.store.summary import VolumeSummary, count_volume_store
    from lungforge.store.verify import verify_store
    from lungforge.store.volume_verify import verify_volume_store

    is_volumes = schema_of(store) == VOLUME_SCHEMA
    checked = (verify_volume_store(store) if is_volumes else verify_store(store)) if verify else None
    if checked is not None and not checked.ok:
        if json_out:
            print_json({"verify": checked})
        else:
            for line in checked.problems:
                err_console.print(f"[red]damaged:[/red] {escape(str(store))}: {escape(line)}", highlight=False, soft_wrap=True)
            more = f" (and {checked.more_problems} more)" if checked.more_problems else ""
            err_console.print(
                f"[red]error:[/red] {store}: {len(checked.problems)} problems{more}; the store is damaged", highlight=False, soft_wrap=True
            )
        raise typer.Exit(EXIT_ERROR)
    summary: StoreSummary | VolumeSummary = count_volume_store(open_volume_store(store)) if is_volumes else count_store(open_store(store))
    if json_out:
        print_json(summary if checked is None else {**asdict(summary), "verify": checked})
        return
    if checked is not None:
        sums = "crc32c checksums ok" if checked.checksums else "no checksums (store written before lungforge recorded them)"
        if not checked.content_recorded:
            content = "no recorded content to compare (store written before lungforge recorded checksums and content)"
        elif not checked.attributes_recorded:
            content = "content as recorded, attributes not recorded (store finished before lungforge recorded them)"
        else:
            content = "content and attributes as recorded"
        boxes = "hold nodule voxels" if is_volumes else "are the tight boxes of their nodules"
        print_result(
            f"verified: {checked.objects_read} shards/chunks of {checked.arrays} arrays read, {sums}, {content}, "
            f"counts consistent, {checked.boxes_checked} boxes {boxes}"
        )
    if isinstance(summary, VolumeSummary):
        _print_volume_summary(summary)
    else:
        _print_summary(summary)


def _print_summary(summary: StoreSummary) -> None:
    """info's report on stdout: the store, its counts, the split table, folds and nodule sizes."""
    from rich.table import Table

    from lungforge.cli.console import out_console, print_result

    print_result(
        (str(summary.path), "bold"),
        f"  kind={summary.kind}  {summary.slices} slices of {summary.height}×{summary.width}  {summary.series} series",
    )
    print_result(f"nodule slices {summary.nodule_slices}, nodule-free {summary.nodule_free_slices}, nodules {summary.nodules}")
    table = Table("split", "slices", "nodule slices", "patients")
    for name, row in summary.splits.items():
        table.add_row(name, str(row["slices"]), str(row["nodule_slices"]), str(row["patients"]))
    out_console.print(table)
    print_result("folds: " + ", ".join(f"{k}: {v}" for k, v in summary.folds.items()))
    print_result("nodule diameters: " + ", ".join(f"{k}: {v}" for k, v in summary.nodule_diameter_hist.items()))


def _print_volume_summary(summary: VolumeSummary) -> None:
    """info's report of a volume store on stdout: its counts, the split table, folds and nodule sizes."""
    from rich.table import Table

    from lungforge.cli.console import out_console, print_result

    low, high = ("×".join(str(v) for v in shape) for shape in (summary.shape_min, summary.shape_max))
    print_result(
        (str(summary.path), "bold"),
        f"  volumes ({summary.schema})  {summary.scans} scans at {summary.spacing_mm:g} mm, {summary.voxels:,} voxels, "
        f"Z×Y×X {low} .. {high}",
    )
    print_result(f"nodules {summary.nodules}, labelled {summary.nodules_labelled}")
    table = Table("split", "scans", "nodules", "labelled")
    for name, row in summary.splits.items():
        table.add_row(name, str(row["scans"]), str(row["nodules"]), str(row["nodules_labelled"]))
    out_console.print(table)
    print_result("folds (scans): " + ", ".join(f"{k}: {v}" for k, v in summary.folds.items()))
    print_result("nodule diameters: " + ", ".join(f"{k}: {v}" for k, v in summary.nodule_diameter_hist.items()))
