"""`lungforge view`: a contact sheet of any store's slices (thin over lungforge.view)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lungforge.cli.params import StoreArg, build_config, usage_errors
from lungforge.cli.params import seed as check_seed


def register(app: typer.Typer) -> None:
    app.command("view")(view)


def view(
    ctx: typer.Context,
    store: StoreArg,
    out: Annotated[Path, typer.Option("--out", help="PNG file to write (e.g. grid.png).")],
    index: Annotated[str | None, typer.Option("--index", help="Store rows to show, e.g. 3,5,10-12 (in that order).")] = None,
    nodules: Annotated[bool, typer.Option("--nodules", help="Choose among nodule slices only.")] = False,
    random: Annotated[
        int | None, typer.Option("--random", min=1, help="Show N slices drawn at random (with --seed) instead of the first ones.")
    ] = None,
    seed: Annotated[int, typer.Option(callback=check_seed, help="Seed of --random.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Without --index or --random: show the first N slices.")] = 16,
    tile: Annotated[int, typer.Option("--tile", min=16, help="Panel size in pixels (slices are resized to TILE×TILE).")] = 256,
    columns: Annotated[int, typer.Option("--columns", min=1, help="Slices per row of the sheet.")] = 4,
    json_out: Annotated[bool, typer.Option("--json", help="Print the PNG path and the rows shown as JSON on stdout.")] = False,
) -> None:
    """Write a contact sheet of slices: CT beside CT with the label map overlaid and nodule boxes.

    Labels: left lung blue, right lung green, trachea yellow, body grey tint, nodule red; boxes
    yellow. Each slice is captioned "#row split fFOLD nNODULES".
    """
    from lungforge.cli.console import print_json, print_result
    from lungforge.view import ViewOptions, parse_index, sheet_capacity, write_view

    with usage_errors():
        index_rows = parse_index(index, sheet_capacity(tile)) if index else ()
    options = build_config(ViewOptions, ctx.params, index=index_rows, tile_px=tile)
    with usage_errors():
        path, rows = write_view(store, out, options)
    if json_out:
        print_json({"png": str(path), "rows": rows.tolist()})
    else:
        print_result(f"wrote {rows.size} slices to {path}")
