"""The contact sheet of a slice store: CT beside CT + label overlay + boxes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungforge.core.drawing import contact_sheet, contact_sheet_shape, draw_boxes, grey_rgb, overlay
from lungforge.core.errors import InputError, OutputError
from lungforge.core.seeds import check_seed
from lungforge.data.resize import resize_slices
from lungforge.store import SPLIT_IDS, Store, open_store

SPLIT_NAMES = {sid: name for name, sid in SPLIT_IDS.items()}
PANEL_GAP_PX = 2
MAX_SHEET_PX = 89_478_485
"""Largest contact sheet in pixels: PIL's default `Image.MAX_IMAGE_PIXELS`, above which readers
built on PIL warn of a decompression bomb (and refuse twice as many)."""


def sheet_pixels(count: int, tile_px: int, columns: int) -> int:
    """Pixels of the contact sheet of `count` slices at `tile_px` (two panels per slice)."""
    h, w = contact_sheet_shape(count, (tile_px, 2 * tile_px + PANEL_GAP_PX), columns)
    return h * w


def check_sheet(count: int, tile_px: int, columns: int) -> None:
    """ValueError when the sheet of `count` slices at `tile_px` would exceed :data:`MAX_SHEET_PX`."""
    pixels = sheet_pixels(count, tile_px, columns)
    if pixels > MAX_SHEET_PX:
        raise ValueError(
            f"a sheet of {count:,} slice{'s' if count != 1 else ''} at --tile {tile_px} px would hold {pixels:,} pixels, over the "
            f"{MAX_SHEET_PX:,} PNG readers accept; show fewer slices or use a smaller tile"
        )


def sheet_capacity(tile_px: int) -> int:
    """An upper bound on the slices any sheet of `tile_px` tiles can show within :data:`MAX_SHEET_PX`
    (ValueError when not even one can)."""
    check_sheet(1, tile_px, 1)
    cell_h, cell_w = contact_sheet_shape(1, (tile_px, 2 * tile_px + PANEL_GAP_PX), 1, gap_px=0)
    return MAX_SHEET_PX // (cell_h * cell_w)


@dataclass(frozen=True)
class ViewOptions:
    """Which slices to show and how big.

    `index` lists store rows (shown in that order); otherwise the pool is every slice, or the
    nodule slices with `nodules`, from which `random` picks that many (seeded by `seed`) or the
    first `limit` are taken. Each slice becomes a tile of two `tile_px`-square panels.
    """

    index: tuple[int, ...] = ()
    nodules: bool = False
    random: int | None = None
    seed: int = 0
    limit: int = 16
    tile_px: int = 256
    columns: int = 4

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.random is not None and self.random < 1:
            raise ValueError(f"random must be at least 1 slice, got {self.random}")
        if self.tile_px < 16:
            raise ValueError(f"tile size must be at least 16 px, got {self.tile_px}")
        if self.columns < 1 or self.limit < 1:
            raise ValueError(f"columns and limit must be at least 1, got {self.columns} and {self.limit}")
        check_sheet(max(1, len(self.index)), self.tile_px, self.columns)


def parse_index(text: str, max_items: int | None = None) -> tuple[int, ...]:
    """`3,5,10-12` → (3, 5, 10, 11, 12); ValueError naming the bad item, or when the list would
    hold more than `max_items` rows (counted before any range is expanded)."""
    ranges: list[range] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        lo, sep, hi = item.partition("-")
        try:
            start, stop = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ValueError(f"index must look like 3,5,10-12, got {item!r}") from None
        if stop < start:
            raise ValueError(f"index range {item!r} runs backwards")
        ranges.append(range(start, stop + 1))
    count = sum(len(r) for r in ranges)
    if max_items is not None and count > max_items:
        raise ValueError(f"index lists {count:,} slices, more than the {max_items:,} a sheet can show")
    return tuple(row for r in ranges for row in r)


def select_rows(store: Store, options: ViewOptions) -> np.ndarray:
    """Store rows to show, per :class:`ViewOptions`; ValueError for rows outside the store."""
    n = len(store)
    if options.index:
        rows = np.asarray(options.index, dtype=np.int64)
        bad = rows[(rows < 0) | (rows >= n)]
        if bad.size:
            raise ValueError(f"{store.path}: index {int(bad[0])} outside 0..{n - 1}")
        return rows
    pool = np.flatnonzero(store.meta("has_nodule")) if options.nodules else np.arange(n)
    if options.random is not None:
        rng = np.random.default_rng(options.seed)
        return np.sort(rng.choice(pool, size=min(options.random, pool.size), replace=False))
    return pool[: options.limit]


def render_rows(store: Store, rows: np.ndarray, tile_px: int, columns: int) -> np.ndarray:
    """Contact sheet (RGB uint8) of store `rows`: per slice, CT | CT + label overlay + nodule boxes,
    resized to `tile_px` squares, captioned "#row split fFOLD nNODULES"."""
    h, w = store.shape_hw
    pairs = [store.read(int(row)) for row in rows]
    images, labels = resize_slices(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), tile_px)
    table = store.nodules()
    scale = np.array([tile_px / w, tile_px / h] * 2)
    split, fold = store.meta("split"), store.meta("fold")
    gap = np.full((tile_px, PANEL_GAP_PX, 3), 255, np.uint8)
    tiles, captions = [], []
    for j, row in enumerate(rows.tolist()):
        boxes = table["bbox"][table["slice"] == row] * scale
        tiles.append(np.concatenate([grey_rgb(images[j]), gap, draw_boxes(overlay(images[j], labels[j]), boxes)], axis=1))
        captions.append(f"#{row} {SPLIT_NAMES[int(split[row])]} f{int(fold[row])} n{len(boxes)}")
    return contact_sheet(tiles, captions, columns)


def write_view(store_path: str | os.PathLike, png: str | os.PathLike, options: ViewOptions = ViewOptions()) -> tuple[Path, np.ndarray]:
    """Write the contact sheet of the slices chosen by `options` to `png`; return it and the rows shown."""
    from PIL import Image

    png = Path(png)
    if png.is_dir():
        raise OutputError(f"{png}: is a folder; give the PNG file to write, e.g. {png / 'view.png'}")
    store = open_store(store_path, lock_for_reading=True)  # no writer replaces the store while it is read
    try:
        rows = select_rows(store, options)
        if rows.size == 0:
            raise InputError(f"{store.path}: no slices to show" + (" (it has no nodule slices)" if options.nodules else ""))
        check_sheet(int(rows.size), options.tile_px, options.columns)
        sheet = render_rows(store, rows, options.tile_px, options.columns)
    finally:
        store.close()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.tmp")
    try:
        Image.fromarray(sheet).save(tmp, format="PNG")
        os.replace(tmp, png)
    except OSError as exc:
        raise OutputError(f"{png}: cannot write ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return png, rows
