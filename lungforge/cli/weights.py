"""`lungforge weights list | pull | import | verify`: the weights registry and cache (thin over lungforge.models.catalog)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from lungforge.core.errors import EXIT_ERROR

weights_app = typer.Typer(
    help="Registered generator weights: list, download (sha256-verified), import your own runs, verify the cache. "
    "Cache and user registry live under $LUNGFORGE_HOME (default ~/.cache/lungforge).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")


@weights_app.command("list")
def list_weights(
    json_out: Annotated[bool, typer.Option("--json", help="Print the entries as JSON on stdout.")] = False,
) -> None:
    """List registered weights, one line each: name, kind, preset, size (MB), whether a local copy exists,
    description (cut to the width; whole in --json)."""
    from rich.table import Table
    from rich.text import Text

    from lungforge.cli.console import out_console, print_json
    from lungforge.models.catalog import WeightsRegistry

    registry = WeightsRegistry()
    rows = []
    for entry in sorted(registry.entries().values(), key=lambda e: e.name):
        local = registry.local_path(entry)
        rows.append({**asdict(entry), "cached": local.is_file(), "local_path": str(local)})
    if json_out:
        print_json(rows)
        return
    table = Table(title=f"lungforge weights ({registry.manifest}, {registry.user_registry})")
    table.add_column("name", no_wrap=True)
    for column in ("kind", "preset", "size", "cached", "source"):
        table.add_column(column, no_wrap=True)
    table.add_column("description")
    for row in rows:
        size = f"{row['size'] / 1e6:.1f} MB" if row["size"] else "?"
        table.add_row(
            row["name"],
            row["kind"],
            row["preset"],
            size,
            "yes" if row["cached"] else "no",
            row["source"],
            Text(row["description"], no_wrap=True, overflow="ellipsis"),
        )
    out_console.print(table)


@weights_app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="Registered weights name (see `lungforge weights list`).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the local path and sha256 as JSON on stdout.")] = False,
) -> None:
    """Download NAME into the cache (resuming a partial download), verify size and sha256, then keep it."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from lungforge.cli.console import err_console, print_json, print_result
    from lungforge.models.catalog import WeightsRegistry

    registry = WeightsRegistry()
    entry = registry.entry(name)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(name, total=entry.size or None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        path = registry.pull(name, progress=report)
    if json_out:
        print_json({"name": name, "path": str(path), "sha256": entry.sha256, "size": path.stat().st_size})
    else:
        print_result(f"{name}: verified {path}")


@weights_app.command("import")
def import_weights(
    file: Annotated[Path, typer.Argument(help="A training run dir (model.safetensors + config.json) or a .safetensors checkpoint.")],
    name: Annotated[str, typer.Option("--name", help="Name to register it under (lowercase letters, digits, . _ -).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an entry of the same name.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the new entry as JSON on stdout.")] = False,
) -> None:
    """Validate a checkpoint, copy it into the cache as one self-describing .safetensors and register it."""
    from lungforge.cli.console import print_json, print_result
    from lungforge.models.catalog import WeightsRegistry

    registry = WeightsRegistry()
    entry = registry.import_checkpoint(file, name, force=force)
    if json_out:
        print_json({**asdict(entry), "path": str(registry.cache_path(name))})
    else:
        print_result(f"imported {entry.kind} ({entry.preset}) weights as {name!r}: {registry.cache_path(name)} sha256 {entry.sha256}")


@weights_app.command("verify")
def verify(
    name: Annotated[str | None, typer.Argument(help="One registered name; all entries if omitted.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one result per entry as JSON on stdout.")] = False,
) -> None:
    """Re-hash local weight files: ok, mismatch (exit 1) or missing (not downloaded; not an error).

    One line per entry on stdout; on a mismatch also one error line on stderr naming the entries.
    """
    from lungforge.cli.console import err_console, print_json, print_result
    from lungforge.models.catalog import WeightsRegistry

    results = WeightsRegistry().verify(name)
    if json_out:
        print_json([{**asdict(r), "path": str(r.path)} for r in results])
    else:
        colours = {"ok": "green", "mismatch": "red", "missing": "yellow"}
        for r in results:
            detail = f" ({r.detail})" if r.detail else ""
            print_result((f"{r.status:8}", colours[r.status]), f" {r.name}  {r.path}{detail}")
    mismatched = [r.name for r in results if r.status == "mismatch"]
    if mismatched:
        err_console.print(
            f"[red]error:[/red] {len(mismatched)} of {len(results)} weights failed verification: {', '.join(mismatched)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_ERROR)
