"""What the commands share: option checks and types, and config objects built from a command's options;
bad values are usage errors (exit 2) before any work starts."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from lungforge.core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
Config = TypeVar("Config")


def finite(value: float | None) -> float | None:
    """Typer callback of every float option: NaN and ±inf are usage errors.

    Click's float ranges let them through, and they would reach stores and reports as `NaN` /
    `Infinity`, which are not JSON.
    """
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


def seed(value: int) -> int:
    """Typer callback of every `--seed`: outside 0..2**63 - 1 is a usage error (lungforge.core.seeds)."""
    from lungforge.core.seeds import check_seed

    try:
        return check_seed(value, "the seed")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def device(value: str) -> str:
    """Typer callback of `--device`: one of auto, cpu, cuda."""
    if value not in DEVICES:
        raise typer.BadParameter(f"must be one of {', '.join(DEVICES)}, got {value!r}")
    return value


StoreArg = Annotated[Path, typer.Argument(help="A lungforge Zarr store (real or synthetic).")]
"""The STORE argument of export and view."""
DeviceOpt = Annotated[str, typer.Option(callback=device, help="auto (CUDA if available), cpu or cuda.")]
"""The `--device` option of train and bench."""


def flag_of(field: str, flags: Mapping[str, str] | None = None) -> str:
    """The CLI flag of a config field: `flags[field]`, else the field's name with dashes (`--nodule-free`)."""
    return (flags or {}).get(field, "--" + field.replace("_", "-"))


@contextmanager
def usage_errors(flag: str | None = None, flags: Mapping[str, str] | None = None, only: type[ValueError] = ValueError) -> Iterator[None]:
    """A ValueError raised inside is a usage error (exit 2) of option `flag` (None: of the command).

    A :class:`~lungforge.core.errors.ConfigError` names its field's flag (:func:`flag_of`) instead.
    `only` narrows it to one ValueError subclass: the option errors a run finds once its inputs
    are open (weights, stores), while any other error of that run keeps its own exit code.
    """
    try:
        yield
    except only as exc:
        hint = flag_of(exc.field, flags) if isinstance(exc, ConfigError) else flag
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def build_config(make: Callable[..., Config], params: Mapping[str, Any], flags: Mapping[str, str] | None = None, **values: Any) -> Config:
    """The config that `make` (a config class, or one of its preset classmethods such as
    `quick_preset`) builds from a command's options: those of `params` (its `ctx.params`) named
    like the config's fields, then `values` (fields whose option is named otherwise or parsed
    first). A value the config refuses (ConfigError) is a usage error naming that field's flag
    (:func:`flag_of`)."""
    fields = inspect.signature(getattr(make, "__self__", make)).parameters
    options = {name: value for name, value in params.items() if name in fields}
    with usage_errors(flags=flags):
        return make(**{**options, **values})
