"""`lungforge train sdm|spade`: thin wrappers over lungforge.training (single device or torchrun DDP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from lungforge.cli.params import DeviceOpt, finite
from lungforge.cli.params import seed as check_seed

train_app = typer.Typer(
    help="Train a label-map-to-CT generator on a store's TRAIN split (multi-GPU: torchrun --nproc-per-node K -m lungforge train ...).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


DataOpt = Annotated[Path, typer.Option("--data", help="Prepared Zarr store (its train split is used; test patients never).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Run directory: model.safetensors, config.json, resume.pt, metrics.jsonl, samples/.")]
PresetOpt = Annotated[str, typer.Option(help="Model preset: 'tiny' (64 px, CPU) or 'paper' (SDM 256 px, SPADE 512 px).")]
StepsOpt = Annotated[int, typer.Option(min=1, help="Total optimiser steps of the run (a --resume run continues up to it).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per step per process (global batch = this × ranks).")]
PrecisionOpt = Annotated[str, typer.Option(help="fp32, bf16 (autocast; CPU or CUDA) or fp16 (CUDA only, with loss scaling).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint, bit-for-bit.")]
SeedOpt = Annotated[int, typer.Option(callback=check_seed, help="Seed of initialisation, data order, flips and noise.")]
CkptOpt = Annotated[int, typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints (and sample grids).")]
SampleOpt = Annotated[int, typer.Option("--sample-every", min=0, help="Steps between extra sample grids (0: only at checkpoints).")]
WorkersOpt = Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")]
GridOpt = Annotated[int, typer.Option("--grid-samples", min=1, help="Label maps in each sample grid.")]
DEFAULT_WINDOW = 64
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")]


def _run(train: Callable[..., Any], options: Any, json_out: bool) -> None:
    from lungforge.cli.console import err_console, print_json, progress
    from lungforge.training.distributed import dist_info_from_env

    main = dist_info_from_env().is_main
    with progress() as bar:
        task = bar.add_task(f"train {options.preset}", total=options.steps, status="")

        def on_step(report: Any) -> None:
            bar.update(
                task,
                completed=report.step,
                status=f"loss {report.loss:.4f}  {report.images_per_s:.1f} img/s",
            )

        result = train(options, on_step=on_step if main else None)
    if not main:
        return
    if json_out:
        print_json(result.summary())
    else:
        err_console.print(
            f"trained {result.kind} ({result.preset}) to step {result.steps}: final loss {result.final_loss:.4f}, "
            f"{result.images_per_s:.2f} img/s on {result.device} × {result.world_size}; checkpoint in {result.checkpoint}"
        )


@train_app.command("sdm")
def sdm(
    data: DataOpt,
    out: OutOpt,
    preset: PresetOpt = "tiny",
    steps: StepsOpt = 100_000,
    batch_size: BatchOpt = 2,
    lr: Annotated[float, typer.Option(min=0.0, callback=finite, help="AdamW learning rate.")] = 1e-4,
    ema_decay: Annotated[Optional[float], typer.Option(callback=finite, help="EMA decay of the shipped weights (default: tiny 0.999, paper 0.9999).")] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    resume: ResumeOpt = False,
    seed: SeedOpt = 0,
    checkpoint_every: CkptOpt = 5000,
    sample_every: SampleOpt = 0,
    sample_steps: Annotated[int, typer.Option(min=1, help="DPM-Solver++ steps for the sample grids (guidance 1.5).")] = 20,
    grid_samples: GridOpt = 4,
    workers: WorkersOpt = 2,
    compile: Annotated[bool, typer.Option("--compile", help="Run the training forward through torch.compile (same losses to float rounding; the first step pays the compilation, reported apart).")] = False,
    inpaint: Annotated[bool, typer.Option("--inpaint", help="Train an inpainting SDM (lesion-focused): windows cut at the store's native resolution, the known surroundings and an edit mask as extra inputs.")] = False,
    window: Annotated[Optional[int], typer.Option(min=8, help="Inpainting window side in pixels at the store's native resolution (with --inpaint; default 64).")] = None,
    edit_margin: Annotated[int, typer.Option("--edit-margin", min=0, help="Pixels the edit region extends past each nodule's mask (with --inpaint).")] = 3,
    json_out: JsonOpt = False,
) -> None:
    """Train a Semantic Diffusion Model (AdamW, hybrid loss, guidance dropout 0.2, EMA weights)."""
    from lungforge.training.loop_sdm import train_sdm
    from lungforge.training.options import TrainOptions

    if not inpaint and window is not None:
        raise typer.BadParameter("--window needs --inpaint", param_hint="--window")
    options = TrainOptions(
        data=data, out=out, preset=preset, steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay,
        device=device, precision=precision, resume=resume, seed=seed, checkpoint_every=checkpoint_every,
        sample_every=sample_every, sample_steps=sample_steps, grid_samples=grid_samples, workers=workers,
        compile=compile, window=(window or DEFAULT_WINDOW) if inpaint else None, edit_margin_px=edit_margin,
    )
    _run(train_sdm, options, json_out)


@train_app.command("spade")
def spade(
    data: DataOpt,
    out: OutOpt,
    preset: PresetOpt = "tiny",
    steps: StepsOpt = 100_000,
    batch_size: BatchOpt = 16,
    lr: Annotated[float, typer.Option(min=0.0, callback=finite, help="Generator Adam learning rate (β = 0, 0.9).")] = 1e-4,
    lr_d: Annotated[float, typer.Option("--lr-d", min=0.0, callback=finite, help="Discriminator learning rate.")] = 4e-4,
    vgg_weights: Annotated[Optional[Path], typer.Option("--vgg-weights", help="Local torchvision VGG19 state dict: adds the perceptual loss.")] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    resume: ResumeOpt = False,
    seed: SeedOpt = 0,
    checkpoint_every: CkptOpt = 5000,
    sample_every: SampleOpt = 0,
    grid_samples: GridOpt = 4,
    workers: WorkersOpt = 2,
    json_out: JsonOpt = False,
) -> None:
    """Train a SPADE GAN (hinge + feature matching λ=10, Adam G 1e-4 / D 4e-4)."""
    from lungforge.training.loop_spade import train_spade
    from lungforge.training.options import TrainOptions

    options = TrainOptions(
        data=data, out=out, preset=preset, steps=steps, batch_size=batch_size, lr=lr, lr_d=lr_d,
        vgg_weights=vgg_weights, device=device, precision=precision, resume=resume, seed=seed,
        checkpoint_every=checkpoint_every, sample_every=sample_every, grid_samples=grid_samples, workers=workers,
    )
    _run(train_spade, options, json_out)
