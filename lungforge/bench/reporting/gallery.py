"""Nodule gallery (PNG): crops around nodules at each store's own resolution, the real store beside
every control and generator, so a person sees the nodules the detector is shown.

Rows are conditions (real first), columns nodules spread over each store's size range (the
rows of its nodule table at evenly spaced diameter ranks), each crop the detector's field of view
around the nodule's box centre. A second panel repeats the grid with each nodule mask's outline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lungforge.bench.protocol.foldlog import RESUME_ADVICE
from lungforge.core.drawing import PALETTE, enlarge, grey_rgb
from lungforge.core.fileio import named_write
from lungforge.core.labels import NODULE
from lungforge.store import Store

GALLERY_COLUMNS = 6
TILE_PX = 96
"""Crops are enlarged by pixel repetition to at least this size, so single pixels stay visible."""
CELL_INCHES = 1.2
LABEL_INCHES = 0.8
TITLE_INCHES = 0.6
DPI = 110


@dataclass(frozen=True, eq=False)
class NoduleCrop:
    """One nodule's neighbourhood: image (c, c) uint8 and nodule mask (c, c) bool (label ==
    NODULE), zero outside the slice; the store's slice index and nodule diameter_mm."""

    image: np.ndarray
    nodule: np.ndarray
    slice: int
    diameter_mm: float


def crop_side_px(store: Store, field: float) -> int:
    """Crop side in pixels of `store` for a field of view of `field` × the slice side (at least 4)."""
    if not 0.0 < field <= 1.0:
        raise ValueError(f"field of view must be in (0, 1] of the slice side, got {field}")
    return max(4, round(field * store.shape_hw[0]))


def nodule_crops(store: Store, columns: int, side_px: int) -> list[NoduleCrop]:
    """Up to `columns` nodules of `store` from its smallest to its largest (the nodule rows at
    evenly spaced ranks of diameter_mm), each a `side_px` square centred on its box centre."""
    table = store.nodules()
    if table["slice"].size == 0:
        return []
    order = np.argsort(table["diameter_mm"], kind="stable")
    picks = order[np.unique(np.round(np.linspace(0, order.size - 1, min(columns, order.size))).astype(int))]
    crops = []
    for row in picks:
        index = int(table["slice"][row])
        image, label = store.read(index)
        x0, y0, x1, y1 = table["bbox"][row]
        top, left = round((y0 + y1 - side_px) / 2), round((x0 + x1 - side_px) / 2)
        crops.append(
            NoduleCrop(
                square_window(image, top, left, side_px),
                square_window(label, top, left, side_px) == NODULE,
                index,
                float(table["diameter_mm"][row]),
            )
        )
    return crops


def square_window(array: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """The (side, side) window of a 2-D array at (top, left), zero where it leaves the array."""
    h, w = array.shape
    out = np.zeros((side, side), dtype=array.dtype)
    r0, c0, r1, c1 = max(top, 0), max(left, 0), min(top + side, h), min(left + side, w)
    if r0 < r1 and c0 < c1:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = array[r0:r1, c0:c1]
    return out


def crop_tile(crop: NoduleCrop, outline: bool) -> np.ndarray:
    """(k·c, k·c, 3) uint8: the crop enlarged by pixel repetition to at least TILE_PX, with the
    nodule mask's outline in the nodule colour when `outline`."""
    factor = max(1, -(-TILE_PX // crop.image.shape[0]))
    tile = enlarge(grey_rgb(crop.image), factor)
    if outline:
        mask = enlarge(crop.nodule[..., None], factor)[..., 0]
        tile[mask & ~ndimage.binary_erosion(mask, border_value=0)] = PALETTE[NODULE]
    return tile


def nodule_gallery(
    real: Store, synthetic: dict[str, Store], path: Path, title: str, field: float, columns: int = GALLERY_COLUMNS, outline: bool = True
) -> Path:
    """Write the gallery PNG to `path`: rows real then each synthetic store, `columns` nodules per
    row, crops of `field` × the slice side of each store (the detector's patch / working size);
    with `outline` a second panel shows the same crops with their mask outlines.

    The figure is (LABEL_INCHES + CELL_INCHES · columns · panels) × (TITLE_INCHES + CELL_INCHES
    · rows) inches at DPI.
    """
    from lungforge.bench.reporting.figures import _pyplot

    plt = _pyplot()
    rows = {"real": real, **synthetic}
    panels = 2 if outline else 1
    width, height = LABEL_INCHES + CELL_INCHES * columns * panels, TITLE_INCHES + CELL_INCHES * len(rows)
    fig, axes = plt.subplots(len(rows), columns * panels, figsize=(width, height), squeeze=False)
    left, top = LABEL_INCHES / width, 1.0 - TITLE_INCHES / height
    fig.subplots_adjust(left=left, right=1.0, bottom=0.0, top=top, wspace=0.08, hspace=0.3)
    for r, (name, store) in enumerate(rows.items()):
        side = crop_side_px(store, field)
        crops = nodule_crops(store, columns, side)
        for ax in axes[r]:
            ax.axis("off")
        fig.text(
            left / 2,
            1.0 - (TITLE_INCHES + CELL_INCHES * (r + 0.5)) / height,
            f"{name}\n{store.shape_hw[0]} px\ncrop {side} px",
            ha="center",
            va="center",
            fontsize=7,
        )
        if not crops:
            axes[r, 0].text(0.5, 0.5, "no nodules", ha="center", va="center", fontsize=7, transform=axes[r, 0].transAxes)
        for c, crop in enumerate(crops):
            for p in range(panels):
                ax = axes[r, p * columns + c]
                ax.imshow(crop_tile(crop, outline=p == 1), interpolation="nearest")
                ax.set_title(f"{crop.diameter_mm:.1f} mm", fontsize=6, pad=2)
    fig.suptitle(title, fontsize=9, y=1.0 - 0.05 / height, va="top")
    for p, heading in enumerate(("CT", "CT, nodule mask outlined")[:panels]):
        fig.text(left + (1.0 - left) * (p + 0.5) / panels, 1.0 - 0.3 / height, heading, ha="center", va="top", fontsize=8)
    with named_write(path, RESUME_ADVICE):
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
