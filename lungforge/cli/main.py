"""The `lungforge` command: a Typer app with one sub-module per command group."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lungforge.cli import augment as augment_cli
from lungforge.cli import augment_volumes as augment_volumes_cli
from lungforge.cli import bench as bench_cli
from lungforge.cli import data as data_cli
from lungforge.cli import demo as demo_cli
from lungforge.cli import export as export_cli
from lungforge.cli import train as train_cli
from lungforge.cli import view as view_cli
from lungforge.cli import weights as weights_cli
from lungforge.core.errors import EXIT_ERROR, LungforgeError
from lungforge.core.version import __version__

app = typer.Typer(
    name="lungforge",
    help="Synthetic, label-exact lung CT slices for training nodule detectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lungforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Synthetic, label-exact lung CT slices for training nodule detectors.

    Exit codes: 0 success, 1 error, 2 bad usage, 3 partial success (some inputs skipped).
    """


for group in (data_cli, train_cli, weights_cli, augment_cli, augment_volumes_cli, bench_cli, demo_cli, export_cli, view_cli):
    group.register(app)


def run() -> None:
    """Console-script entry point: a LungforgeError becomes one red line on stderr and exit 1.

    Usage errors exit 2 and `typer.Exit` codes pass through (Typer's standalone mode).
    """
    try:
        app()
    except LungforgeError as exc:
        _fail(str(exc))
    except OSError as exc:
        # The environment refused (read-only folder, full disk, ...): what was written stays
        # as the command's commit order left it, so a rerun (--resume) continues it.
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")


def _fail(message: str) -> None:
    """Print `message` as one red line on stderr (markup in it, e.g. a regex, printed as is) and exit 1."""
    from rich.markup import escape

    from lungforge.cli.console import err_console

    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_ERROR)
