"""The `lungforge` command: a Typer app with one sub-module per command group."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from lungforge import __version__
from lungforge.cli import data as data_cli
from lungforge.errors import EXIT_ERROR, LungforgeError

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
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Synthetic, label-exact lung CT slices for training nodule detectors.

    Exit codes: 0 success, 1 error, 2 bad usage, 3 partial success (some inputs skipped).
    """


data_cli.register(app)


def _register_optional() -> None:
    """Attach command groups whose modules exist (each group lives in its own module)."""
    import importlib

    for module_name in ("train", "weights", "augment", "bench", "demo"):
        try:
            module = importlib.import_module(f"lungforge.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lungforge.cli.{module_name}":
                continue
            raise
        module.register(app)


_register_optional()


def run() -> None:
    """Console-script entry point: turn LungforgeError into one red line on stderr, exit 1."""
    from lungforge.cli.console import err_console

    try:
        app(standalone_mode=False)
    except LungforgeError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("[red]aborted[/red]")
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
