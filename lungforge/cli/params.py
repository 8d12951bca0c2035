"""Option checks shared by every command: usage errors (exit 2) before any work starts."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

DEVICES = ("auto", "cpu", "cuda")


def finite(value: Optional[float]) -> Optional[float]:
    """Typer callback of every float option: NaN and ±inf are usage errors.

    Click's float ranges let them through, and they would reach stores and reports as `NaN` /
    `Infinity`, which are not JSON.
    """
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


def seed(value: int) -> int:
    """Typer callback of every `--seed`: outside 0..2**63 - 1 is a usage error (lungforge.seeds)."""
    from lungforge.seeds import check_seed

    try:
        return check_seed(value, "the seed")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def device(value: str) -> str:
    """Typer callback of `--device`: one of auto, cpu, cuda."""
    if value not in DEVICES:
        raise typer.BadParameter(f"must be one of {', '.join(DEVICES)}, got {value!r}")
    return value


DeviceOpt = Annotated[str, typer.Option(callback=device, help="auto (CUDA if available), cpu or cuda.")]
"""The `--device` option of train and bench."""
