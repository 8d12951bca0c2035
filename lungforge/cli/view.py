"""`lungforge view`: a contact sheet of a slice store's slices, or each nodule of a volume store in
three planes (thin over lungforge.view)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lungforge.cli.params import StoreArg, build_config, finite, usage_errors
from lungforge.cli.params import seed as check_seed

SLICE_ONLY = {
    "index": "--index",
    "nodules": "--nodules",
    "random": "--random",
    "seed": "--seed",
    "limit": "--limit",
    "columns": "--columns",
}
VOLUME_ONLY = {"nodule": "--nodule", "fov_mm": "--fov-mm"}


def register(app: typer.Typer) -> None:
    app.command("view")(view)


def view(
    ctx: typer.Context,
    store: StoreArg,
    out: Annotated[
        Path, typer.Option("--out", help="PNG file to write (e.g. grid.png); for a volume store, the folder that gets one PNG per nodule.")
    ],
    index: Annotated[str | None, typer.Option("--index", help="Store rows to show, e.g. 3,5,10-12 (in that order).")] = None,
    nodules: Annotated[bool, typer.Option("--nodules", help="Choose among nodule slices only.")] = False,
    random: Annotated[
        int | None, typer.Option("--random", min=1, help="Show N slices drawn at random (with --seed) instead of the first ones.")
    ] = None,
    seed: Annotated[int, typer.Option(callback=check_seed, help="Seed of --random.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Without --index or --random: show the first N slices.")] = 16,
    tile: Annotated[int, typer.Option("--tile", min=16, help="Panel size in pixels (slices are resized to TILE×TILE).")] = 256,
    columns: Annotated[int, typer.Option("--columns", min=1, help="Slices per row of the sheet.")] = 4,
    nodule: Annotated[
        str | None,
        typer.Option("--nodule", help="Volume store: rows of its nodule table to show, e.g. 0,3-5 (default: every nodule)."),
    ] = None,
    fov_mm: Annotated[
        float,
        typer.Option("--fov-mm", callback=finite, help="Volume store: the field of view of each panel around the nodule centre, mm."),
    ] = 64.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the PNG path(s) and the rows shown as JSON on stdout.")] = False,
) -> None:
    """Write a contact sheet of slices: CT beside CT with the label map overlaid and nodule boxes.
    For a volume store (prepare --volumes), write one PNG per nodule instead: its axial, coronal
    and sagittal slices through its centre, windowed [-1000, 400] HU, with its outline.

    Labels: left lung blue, right lung green, trachea yellow, body grey tint, nodule red; boxes
    yellow. Each slice is captioned "#row split fFOLD nNODULES". Volume panels are squares of
    --fov-mm at one scale (the voxels are isotropic, so proportions are true), shown as
    radiologists read them; each nodule's own voxels are outlined in red.
    """
    from lungforge.cli.console import print_json, print_result
    from lungforge.store import VOLUME_SCHEMA, schema_of

    volumes = schema_of(store) == VOLUME_SCHEMA
    # Typer ships its own click, so the source is compared by name, not with click's enum.
    given = {name for name in (*SLICE_ONLY, *VOLUME_ONLY) if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"}
    wrong = sorted((SLICE_ONLY if volumes else VOLUME_ONLY)[name] for name in given & set(SLICE_ONLY if volumes else VOLUME_ONLY))
    if wrong:
        kind = "a volume store, which is shown nodule by nodule (choose with --nodule)" if volumes else "a slice store"
        raise typer.BadParameter(f"{', '.join(wrong)} do not apply to {store}: it is {kind}")
    if volumes:
        from lungforge.view import VolumeViewOptions, parse_index, write_volume_view

        with usage_errors():
            volume_options = VolumeViewOptions(nodules=parse_index(nodule) if nodule else (), tile_px=tile, fov_mm=fov_mm)
            pngs, shown = write_volume_view(store, out, volume_options)
        if json_out:
            print_json({"pngs": [str(p) for p in pngs], "nodules": shown.tolist()})
        else:
            print_result(f"wrote {len(pngs)} nodule views to {out}")
        return
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
