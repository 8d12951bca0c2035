"""The nodules of a volume store by eye: per nodule, its axial, coronal and sagittal slices through
its centre, windowed, with the nodule's outline, in one PNG each."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungforge.core.drawing import PALETTE, contact_sheet
from lungforge.core.errors import InputError, OutputError
from lungforge.core.labels import NODULE
from lungforge.data.resize import resize_images_uint8, resize_label_maps
from lungforge.preparation.masks import window_to_uint8
from lungforge.store import CheckedArray, VolumeStore, open_volume_store

PLANES = ("axial", "coronal", "sagittal")
OUTLINE_COLOUR = tuple(int(v) for v in PALETTE[NODULE])
AIR_HU = -1000
"""What a panel shows beyond the volume's edge."""
MAX_FOV_MM = 512.0
"""Largest panel field of view: a LUNA16 chest fits in 500 mm."""


@dataclass(frozen=True)
class VolumeViewOptions:
    """Which nodules to show and how.

    `nodules` lists rows of the store's nodule table (all when empty); each nodule becomes three
    square panels of `tile_px` pixels showing `fov_mm` mm around its centre, so all three have
    the same mm per pixel and the volume's isotropic voxels keep their true proportions.
    """

    nodules: tuple[int, ...] = ()
    tile_px: int = 256
    fov_mm: float = 64.0

    def __post_init__(self) -> None:
        if self.tile_px < 16:
            raise ValueError(f"tile size must be at least 16 px, got {self.tile_px}")
        if not (math.isfinite(self.fov_mm) and 0 < self.fov_mm <= MAX_FOV_MM):
            raise ValueError(f"field of view must be in (0, {MAX_FOV_MM:g}] mm, got {self.fov_mm}")


def crop_cube(array: CheckedArray, centre_zyx: np.ndarray, half: int, fill: int) -> np.ndarray:
    """The (2·half + 1)³ block of the (Z, Y, X) `array` centred on voxel `centre_zyx`, `fill` where it
    leaves the volume; reads only that block."""
    shape = np.asarray(array.shape)
    lo = np.asarray(centre_zyx, dtype=np.int64) - half
    src_lo, src_hi = np.clip(lo, 0, shape), np.clip(lo + 2 * half + 1, 0, shape)
    out = np.full((2 * half + 1,) * 3, fill, dtype=array.dtype)
    block = np.asarray(array[tuple(slice(a, b) for a, b in zip(src_lo.tolist(), src_hi.tolist()))])
    out[tuple(slice(a - o, b - o) for a, b, o in zip(src_lo.tolist(), src_hi.tolist(), lo.tolist()))] = block
    return out


def nodule_panels(image: np.ndarray, mask: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axial, coronal and sagittal planes through the centre of a cube: HU (3, N, N) and mask (3, N, N).

    `image` and `mask` are (N, N, N) z, y, x cubes, N odd, centred on the nodule. Axes whose
    direction points against the world (LPS) axis are flipped first, so every panel is shown as
    radiologists read it: axial from the feet (patient's left on the viewer's right, anterior
    up), coronal from the front (head up, patient's left on the right), sagittal head up with
    anterior on the left.
    """
    flips = tuple(axis for axis, sign in zip((2, 1, 0), np.diag(direction)) if sign < 0)
    if flips:
        image, mask = np.flip(image, flips), np.flip(mask, flips)
    h = image.shape[0] // 2
    planes = [(image[h], mask[h]), (image[::-1, h, :], mask[::-1, h, :]), (image[::-1, :, h], mask[::-1, :, h])]
    return np.stack([p[0] for p in planes]), np.stack([p[1] for p in planes])


def outline(mask: np.ndarray) -> np.ndarray:
    """(..., H, W) bool → its boundary pixels: set pixels with an unset 4-neighbour (or the edge)."""
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    inner = padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1] & padded[..., 1:-1, :-2] & padded[..., 1:-1, 2:]
    return mask & ~inner


def render_nodule(store: VolumeStore, row: int, options: VolumeViewOptions) -> np.ndarray:
    """RGB uint8 sheet of nodule `row`: axial | coronal | sagittal, each `tile_px` square, windowed
    [-1000, 400] HU, the nodule's own voxels outlined in red, under captions naming the plane."""
    table = store.nodules()
    scan = int(table["scan"][row])
    half = max(1, round(options.fov_mm / store.spacing_mm / 2))
    centre = np.clip(np.rint(table["center_voxel"][row]).astype(np.int64), 0, np.asarray(store.shape(scan)) - 1)
    image = crop_cube(store.image(scan), centre, half, AIR_HU)
    label = crop_cube(store.label(scan), centre, half, 0)
    own = np.zeros(label.shape, dtype=bool)  # this nodule's voxels only, not a neighbour's
    box = table["bbox"][row].astype(np.int64)
    if box[0] >= 0:
        lo, hi = np.clip(box[:3] - centre + half, 0, 2 * half + 1), np.clip(box[3:] - centre + half, 0, 2 * half + 1)
        region = tuple(slice(a, b) for a, b in zip(lo.tolist(), hi.tolist()))
        own[region] = label[region] == NODULE
    hu, mask = nodule_panels(image, own, store.direction[scan])
    grey = resize_images_uint8(window_to_uint8(hu, store.window_hu), options.tile_px)
    edges = outline(resize_label_maps(mask.astype(np.uint8), options.tile_px).astype(bool))
    tiles = np.repeat(grey[..., None], 3, axis=-1)
    tiles[edges] = OUTLINE_COLOUR
    z, y, x = centre.tolist()
    diameter = f"{float(table['diameter_mm'][row]):.1f} mm" + ("" if box[0] >= 0 else ", no voxel")
    captions = [f"#{row} scan {scan} {diameter} axial z{z}", f"coronal y{y}", f"sagittal x{x}"]
    return contact_sheet(list(tiles), captions, columns=len(PLANES))


def select_nodules(store: VolumeStore, nodules: tuple[int, ...]) -> np.ndarray:
    """Rows of the nodule table to show: `nodules` in that order, or all; ValueError for rows
    outside the table, InputError when the store has no nodule."""
    count = int(store.nodules()["scan"].size)
    if count == 0:
        raise InputError(f"{store.path}: no nodules to show (its nodule table is empty)")
    if not nodules:
        return np.arange(count)
    rows = np.asarray(nodules, dtype=np.int64)
    bad = rows[(rows < 0) | (rows >= count)]
    if bad.size:
        raise ValueError(f"{store.path}: nodule {int(bad[0])} outside 0..{count - 1}")
    return rows


def write_volume_view(
    store_path: str | os.PathLike, out: str | os.PathLike, options: VolumeViewOptions = VolumeViewOptions()
) -> tuple[list[Path], np.ndarray]:
    """Write `out/nodule_<row>.png` for each nodule chosen by `options` (:func:`render_nodule`);
    return the PNGs and the nodule rows. Each PNG appears whole (written beside, then renamed)."""
    from PIL import Image

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file; a volume store's view is a folder of PNGs, one per nodule")
    store = open_volume_store(store_path, lock_for_reading=True)  # no writer replaces the store while it is read
    try:
        rows = select_nodules(store, options.nodules)
        width = max(3, len(str(int(store.nodules()["scan"].size) - 1)))
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for row in rows.tolist():
            png = out / f"nodule_{row:0{width}d}.png"
            tmp = png.with_name(f".{png.name}.tmp")
            try:
                Image.fromarray(render_nodule(store, row, options)).save(tmp, format="PNG")
                os.replace(tmp, png)
            except OSError as exc:
                raise OutputError(f"{png}: cannot write ({exc.strerror or exc})") from None
            finally:
                tmp.unlink(missing_ok=True)
            written.append(png)
    finally:
        store.close()
    return written, rows
