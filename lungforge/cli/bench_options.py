"""The options the `lungforge bench` commands share (Typer parameter types, each with its bounds
from :mod:`lungforge.core.choices`) and the parsing of the values that Typer cannot check alone
(`--synthetic` specs, `--real-nodules` points)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lungforge.cli.params import seed as check_seed
from lungforge.core.choices import (
    MAX_SIZE_PX,
    MIN_FOLDS,
    MIN_PATCH_PX,
    OFFICIAL_FOLDS,
    RealSplit,
    Selection,
)

RealOpt = Annotated[Path, typer.Option("--real", help="Real lungforge store (from `lungforge prepare`).")]
SyntheticOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--synthetic", help="NAME=STORE synthetic store made from --real's label maps; one condition each (e.g. B=spade.zarr C=sdm.zarr)."
    ),
]


def size_option(min_px: int, help: str) -> Any:
    """A `--size` option: the working resolution, `min_px`..MAX_SIZE_PX pixels (the bounds of the config it builds)."""
    return typer.Option(min=min_px, max=MAX_SIZE_PX, help=help)


SIZE_HELP = "Working resolution in pixels for every condition (and FID); images bilinear antialiased, labels nearest, boxes scaled."
FoldsOpt = Annotated[
    int,
    typer.Option(min=MIN_FOLDS, max=OFFICIAL_FOLDS, help="Cross-validation folds; < 10 merges the official LUNA16 folds as fold mod K."),
]
SplitOpt = Annotated[
    RealSplit, typer.Option(help="Real patients in the CV: 'all' (the paper) or 'test' (patients the generator never saw).")
]
SeedOpt = Annotated[
    int, typer.Option(callback=check_seed, help="Seed of patch sampling, model initialisation and batch order (same for every condition).")
]
QuickOpt = Annotated[
    bool, typer.Option("--quick", help="2 folds, 1–2 epochs, small models: for CI and demos, NOT comparable to the paper.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")]
SelectOpt = Annotated[
    Selection,
    typer.Option(
        "--select",
        help="Synthetic slices every condition trains on: 'first-draw' (only slices kept at their first generator draw, "
        "meta/attempts = 1: one draw per slice for every generator) or 'all' (re-drawn ones too).",
    ),
]
PatchOpt = Annotated[
    int, typer.Option("--patch", min=MIN_PATCH_PX, help="Detection patch side in pixels at the working --size (paper: 32 at 256).")
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Folder for per-fold results; a rerun with the same arguments resumes.")]
RealNodulesOpt = Annotated[
    str | None,
    typer.Option(
        "--real-nodules",
        help="Learning curve: K1,K2,…,all real training nodules per fold, each with all its slices (a seeded, nested subset of the "
        "benchmarked patients' nodules, nodule-free slices in the store's proportion, the same for every condition; one optimiser "
        "budget for every K and condition). Synthetic slices built from patients outside the benchmark join at every K.",
    ),
]
LeakageOpt = Annotated[
    bool,
    typer.Option(
        "--allow-generator-leakage",
        help="Bench generators whose weights saw test-fold patients (or do not record them); the report's first line says so.",
    ),
]
EmptySyntheticOpt = Annotated[
    bool,
    typer.Option(
        "--allow-empty-synthetic",
        help="Bench a synthetic store that adds no nodule slice to some fold (its slices all copy real nodules not kept there); "
        "refused otherwise, naming the store and folds.",
    ),
]
SegmenterStepsOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Training steps of each of the two cross-fitted fidelity segmenters (default 1500; 150 with --quick)."),
]


PrimaryOpt = Annotated[
    str | None,
    typer.Option(
        "--primary",
        help="The one comparison fixed before the run, COND@K, vs A on the primary metric (detect: AUROC); its p stays raw, every other "
        "is Holm-adjusted. COND: a synthetic store, a control (with --controls), or A+sources where the synthetic stores draw on "
        "real patients outside the benchmark (--real-split test); K: a --real-nodules point, 'all' without a curve. Default: the "
        "first synthetic store (else paste) at the smallest K.",
    ),
]
RepeatsOpt = Annotated[
    int, typer.Option("--repeats", min=1, help="Training seeds per fold and condition; their fold results are averaged.")
]


def curve_points(text: str | None) -> list[int | None] | None:
    """The `--real-nodules` points, or None without the option; a malformed list is a usage error."""
    from lungforge.bench.protocol.crossval import parse_real_nodules

    if text is None:
        return None
    try:
        return parse_real_nodules(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--real-nodules") from None


def synthetic_specs(synthetic: list[str] | None) -> list[Any]:
    """The `--synthetic NAME=STORE` arguments; a malformed one is a usage error (exit 2)."""
    from lungforge.bench.protocol.inputs import parse_synthetic
    from lungforge.core.errors import InputError

    try:
        return parse_synthetic(synthetic or [])
    except InputError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--synthetic "), param_hint="--synthetic") from None


def open_stores(real: Path, synthetic: list[str] | None, need_nodules: bool = True) -> tuple[Any, dict[str, Any]]:
    """The `--real` store and the `--synthetic` stores by name, opened and checked: every bench
    command opens its stores here and hands them to lungforge.bench."""
    from lungforge.bench.protocol.inputs import open_real, open_synthetic

    specs = synthetic_specs(synthetic)
    real_store = open_real(real)
    return real_store, {s.name: open_synthetic(s.path, real_store, need_nodules=need_nodules) for s in specs}
