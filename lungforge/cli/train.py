"""`lungforge train sdm|spade`: thin wrappers over lungforge.training (single device or torchrun DDP).

The two commands share most options; :func:`_with_options` gives each its signature (what typer
reads): the shared options in one order, with each command's own ones in their places.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar, cast

import typer

from lungforge.cli.params import DeviceOpt, build_config, finite
from lungforge.cli.params import seed as check_seed
from lungforge.core.choices import Precision, PresetName

Command = TypeVar("Command", bound=Callable[..., None])


class _Signed(Protocol):
    """A callable whose signature, as `inspect` and Typer read it, is set by hand."""

    __signature__: inspect.Signature


Options = tuple[inspect.Parameter, ...]

train_app = typer.Typer(
    help="Train a label-map-to-CT generator on a store's TRAIN split (multi-GPU: torchrun --nproc-per-node K -m lungforge train ...).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


DataOpt = Annotated[Path, typer.Option("--data", help="Prepared Zarr store (its train split is used; test patients never).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Run directory: model.safetensors, config.json, resume.pt, metrics.jsonl, samples/.")]
PresetOpt = Annotated[PresetName, typer.Option(help="Model preset: 'tiny' (64 px, CPU) or 'paper' (SDM 256 px, SPADE 512 px).")]
StepsOpt = Annotated[int, typer.Option(min=1, help="Total optimiser steps of the run (a --resume run continues up to it).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per step per process (global batch = this × ranks).")]
PrecisionOpt = Annotated[Precision, typer.Option(help="fp32, bf16 (autocast; CPU or CUDA) or fp16 (CUDA only, with loss scaling).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint, bit-for-bit.")]
SeedOpt = Annotated[int, typer.Option(callback=check_seed, help="Seed of initialisation, data order, flips and noise.")]
CkptOpt = Annotated[int, typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints (and sample grids).")]
SampleOpt = Annotated[int, typer.Option("--sample-every", min=0, help="Steps between extra sample grids (0: only at checkpoints).")]
WorkersOpt = Annotated[
    int, typer.Option(min=0, help="DataLoader worker processes per rank, capped at one per CPU (a note says when fewer are used).")
]
GridOpt = Annotated[int, typer.Option("--grid-samples", min=1, help="Label maps in each sample grid.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")]
DEFAULT_WINDOW = 64


def _option(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _with_options(
    *, batch_size: int, lr_help: str, model: Options = (), sampling: Options = (), extra: Options = ()
) -> Callable[[Command], Command]:
    """Give a train command the options both share (what typer reads from its signature), with its
    own `--batch-size` default, `--lr` help and options: `model` after --lr, `sampling` after
    --sample-every, `extra` before --json. The command receives them all as keyword arguments."""
    shared = (
        _option("data", DataOpt),
        _option("out", OutOpt),
        _option("preset", PresetOpt, "tiny"),
        _option("steps", StepsOpt, 100_000),
        _option("batch_size", BatchOpt, batch_size),
        _option("lr", Annotated[float, typer.Option(min=0.0, callback=finite, help=lr_help)], 1e-4),
        *model,
        _option("device", DeviceOpt, "auto"),
        _option("precision", PrecisionOpt, "fp32"),
        _option("resume", ResumeOpt, False),
        _option("seed", SeedOpt, 0),
        _option("checkpoint_every", CkptOpt, 5000),
        _option("sample_every", SampleOpt, 0),
        *sampling,
        _option("grid_samples", GridOpt, 4),
        _option("workers", WorkersOpt, 2),
        *extra,
        _option("json_out", JsonOpt, False),
    )

    def apply(command: Command) -> Command:
        cast(_Signed, command).__signature__ = inspect.Signature(shared, return_annotation=None)
        return command

    return apply


@train_app.command("sdm")
@_with_options(
    batch_size=2,
    lr_help="AdamW learning rate.",
    model=(
        _option(
            "ema_decay",
            Annotated[
                float | None, typer.Option(callback=finite, help="EMA decay of the shipped weights (default: tiny 0.999, paper 0.9999).")
            ],
            None,
        ),
    ),
    sampling=(
        _option("sample_steps", Annotated[int, typer.Option(min=1, help="DPM-Solver++ steps for the sample grids (guidance 1.5).")], 20),
    ),
    extra=(
        _option(
            "compile",
            Annotated[
                bool,
                typer.Option(
                    "--compile",
                    help="Run the training forward through torch.compile (same losses to float rounding; the first step pays the compilation, reported apart).",
                ),
            ],
            False,
        ),
        _option(
            "inpaint",
            Annotated[
                bool,
                typer.Option(
                    "--inpaint",
                    help="Train an inpainting SDM (lesion-focused): windows cut at the store's native resolution, the known surroundings and an edit mask as extra inputs.",
                ),
            ],
            False,
        ),
        _option(
            "window",
            Annotated[
                int | None,
                typer.Option(min=8, help="Inpainting window side in pixels at the store's native resolution (with --inpaint; default 64)."),
            ],
            None,
        ),
        _option(
            "edit_margin",
            Annotated[
                int | None,
                typer.Option(
                    "--edit-margin",
                    min=0,
                    help="Pixels the edit region extends past each nodule's mask (with --inpaint; default 3, at most (window − 4) / 2).",
                ),
            ],
            None,
        ),
    ),
)
def sdm(**options: Any) -> None:
    """Train a Semantic Diffusion Model (AdamW, hybrid loss, guidance dropout 0.2, EMA weights)."""
    from lungforge.models.checkpoint import DEFAULT_EDIT_MARGIN_PX
    from lungforge.training.loop_sdm import train_sdm

    inpaint, window, margin = options["inpaint"], options["window"], options["edit_margin"]
    for flag, value in (("--window", window), ("--edit-margin", margin)):
        if not inpaint and value is not None:
            raise typer.BadParameter(f"{flag} needs --inpaint", param_hint=flag)
    margin = DEFAULT_EDIT_MARGIN_PX if margin is None else margin
    _train(train_sdm, options, window=(window or DEFAULT_WINDOW) if inpaint else None, edit_margin_px=margin)


@train_app.command("spade")
@_with_options(
    batch_size=16,
    lr_help="Generator Adam learning rate (β = 0, 0.9).",
    model=(
        _option("lr_d", Annotated[float, typer.Option("--lr-d", min=0.0, callback=finite, help="Discriminator learning rate.")], 4e-4),
        _option(
            "vgg_weights",
            Annotated[Path | None, typer.Option("--vgg-weights", help="Local torchvision VGG19 state dict: adds the perceptual loss.")],
            None,
        ),
    ),
)
def spade(**options: Any) -> None:
    """Train a SPADE GAN (hinge + feature matching λ=10, Adam G 1e-4 / D 4e-4)."""
    from lungforge.training.loop_spade import train_spade

    _train(train_spade, options)


def _train(train: Callable[..., Any], params: dict[str, Any], **values: Any) -> None:
    """Run `train` on the TrainOptions of a command's options `params` (and `values`); rank 0
    shows progress and prints the summary (`--json`: as JSON on stdout)."""
    from lungforge.cli.console import err_console, print_json, print_result, progress
    from lungforge.core.process_group import dist_info_from_env
    from lungforge.training.options import TrainOptions

    options = build_config(TrainOptions, params, {"edit_margin_px": "--edit-margin"}, **values)
    main = dist_info_from_env().is_main
    if main:
        _note_workers(options.workers)
        err_console.print(
            f"train {options.preset_resolved().name}: up to {options.steps:,} optimiser steps planned "
            f"(a --resume run continues from its last checkpoint); the bar's time remaining is the ETA",
            highlight=False,
        )
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
    if params["json_out"]:
        print_json(result.summary())
    else:
        print_result(
            f"trained {result.kind} ({result.preset}) to step {result.steps}: final loss {result.final_loss:.4f}, "
            f"{result.images_per_s:.2f} img/s on {result.device} × {result.world_size}; checkpoint in {result.checkpoint}"
        )


def _note_workers(workers: int) -> None:
    """Say on stderr when training runs fewer DataLoader workers than --workers asked for."""
    from lungforge.cli.console import err_console
    from lungforge.core.cpus import available_cpus, capped_workers

    used = capped_workers(workers)
    if used < workers:
        err_console.print(
            f"[yellow]note:[/yellow] --workers {workers}: using {used} (one per CPU; {available_cpus()} CPUs)", highlight=False
        )
