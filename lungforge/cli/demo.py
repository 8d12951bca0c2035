"""`lungforge demo`: the whole pipeline on phantom data, offline, on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lungforge.cli.params import build_config
from lungforge.cli.params import device as check_device
from lungforge.cli.params import seed as check_seed
from lungforge.core.choices import Sampler


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option(help="Folder for every artefact (kept). Default: a temporary folder, deleted at the end unless --keep.")
    ] = None,
    keep: Annotated[bool, typer.Option(help="Keep the temporary folder when --out is not given.")] = False,
    scans: Annotated[int, typer.Option(min=2, help="Phantom scans (spread over the 10 LUNA16 subsets = folds).")] = 20,
    size: Annotated[int, typer.Option(min=64, help="Phantom in-plane size in pixels (the store's resolution).")] = 128,
    nodules: Annotated[int, typer.Option(min=1, help="Synthetic nodule slices per generator.")] = 32,
    nodule_free: Annotated[int, typer.Option(min=0, help="Synthetic nodule-free slices per generator.")] = 32,
    sampler: Annotated[
        Sampler | None,
        typer.Option(help="Sampler of the SDM generators: ddpm (default, robust with the tiny demo model), ddim or dpmpp."),
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Sampling steps of the SDM generators (default 10).")] = None,
    sdm_weights: Annotated[str, typer.Option(help="SDM weights: registry name or path.")] = "demo-sdm-tiny",
    spade_weights: Annotated[str, typer.Option(help="SPADE weights: registry name or path.")] = "demo-spade-tiny",
    inpaint_weights: Annotated[
        str, typer.Option(help="Inpainting SDM weights (nodules drawn into the real slices): registry name or path.")
    ] = "demo-sdm-inpaint-tiny",
    generators: Annotated[
        str, typer.Option(help="Generators benched beside A, mislabeled and paste: comma-separated among SPADE, SDM, SDM-inpaint.")
    ] = "SDM-inpaint",
    segmenter_steps: Annotated[
        int, typer.Option(min=1, help="Training steps of each of the two cross-fitted label-fidelity segmenters (bench fidelity --quick).")
    ] = 150,
    detect_epochs: Annotated[
        int, typer.Option(min=1, help="Detection epochs over A's full training patches (one budget for every K and condition).")
    ] = 60,
    localize_epochs: Annotated[
        int,
        typer.Option(
            min=1,
            help="Epochs of the CPU-sized Faster R-CNN over A's full training slices (one budget for every K and condition; "
            "20, 40 and 80 all left A's AP50 at 0 on the default phantom, docs/localization.md).",
        ),
    ] = 8,
    small_k: Annotated[
        int, typer.Option(min=1, help="The learning curve's small point: real training nodule slices per fold (the other point: all).")
    ] = 4,
    volumes: Annotated[
        bool,
        typer.Option(
            "--volumes/--no-volumes",
            help="Also run the 3-D path: prepare --volumes (2 mm), augment-volumes paste (8 nodules), export monai-detection, view.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(callback=check_seed, help="Seed of every step.")] = 0,
    device: Annotated[str, typer.Option(callback=check_device, help="auto, cpu or cuda.")] = "cpu",
    json_out: Annotated[bool, typer.Option("--json", help="Print the steps, timings and outputs as JSON on stdout.")] = False,
) -> None:
    """Phantom → prepare → augment (the demo generators) → bench all --quick --controls --real-nodules K,all, offline, in minutes.

    The report's table holds A (real only), mislabeled and paste (the negative and positive
    controls) and the --generators (default SDM-inpaint) at K real nodule slices per fold and at
    all; the bench runs at --size px with patches of 1/8 of that side, localization with the
    CPU-sized Faster R-CNN. When detection A is at chance or its AP50 is 0, the report's first
    line says so.

    The demo weights are tiny models trained on phantom data: the output shows the pipeline
    working, not clinical or research quality.
    """
    import shutil
    import tempfile

    from rich.table import Table

    from lungforge.cli.console import out_console, print_json, print_result, progress
    from lungforge.demo import DemoOptions, demo_summary, run_demo

    temporary = out is None
    folder = Path(tempfile.mkdtemp(prefix="lungforge-demo-")) if out is None else out
    options = build_config(DemoOptions, ctx.params, out=folder, generators=tuple(g.strip() for g in generators.split(",")))
    try:
        with progress(transient=True) as bar:
            steps_done = run_demo(
                options,
                on_step=lambda s: bar.console.print(f"[green]✓[/green] {s.name} ({s.seconds:.1f} s) → {s.produced}", highlight=False),
                progress=bar,
            )
        report = folder / "report" / "report.md"
        if json_out:
            print_json({"out": str(folder), "report": str(report), "steps": demo_summary(steps_done)})
            return
        table = Table("step", "seconds", "produced")
        for s in steps_done:
            table.add_row(s.name, f"{s.seconds:.1f}", s.produced)
        out_console.print(table)
        print_result(f"total {sum(s.seconds for s in steps_done):.1f} s; report: {report}")
        if temporary and not keep:
            print_result(report.read_text().rstrip("\n"))
    finally:
        if temporary and not keep:
            shutil.rmtree(folder, ignore_errors=True)
