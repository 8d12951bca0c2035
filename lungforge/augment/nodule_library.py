"""Nodule footprints in pixels: model shapes (LIDC-like outlines), and a library of real nodule masks.

Every footprint is a tight (h, w) bool crop whose pixel count is chosen first, from the
requested equivalent diameter, and whose shape is then the level set of a score field holding
exactly that many pixels. So the equivalent diameter is right by construction, down to the
smallest drawable footprint (2×2 pixels).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from lungforge.errors import InputError, LayoutError
from lungforge.labels import NODULE
from lungforge.nodule_shape import NoduleOutline, sample_outline

MIN_AREA_PX = 4
CANVAS_PX = 64
NORM_DIAMETER_PX = 32.0
LIBRARY_FORMAT = "lungforge.nodule_library/1"

DiameterPx = float | tuple[float, float]


def equivalent_diameter_mm(area_px: float | np.ndarray, spacing_mm: tuple[float, float]) -> float | np.ndarray:
    """Diameter (mm) of the disk whose area equals `area_px` pixels of `spacing_mm` (row, col)."""
    return 2.0 * np.sqrt(np.asarray(area_px, dtype=np.float64) * spacing_mm[0] * spacing_mm[1] / np.pi)


def _diameter_rc(diameter_px: DiameterPx) -> tuple[float, float]:
    d_r, d_c = (diameter_px, diameter_px) if np.isscalar(diameter_px) else diameter_px
    d_r, d_c = float(d_r), float(d_c)
    if not (d_r > 0 and d_c > 0 and math.isfinite(d_r) and math.isfinite(d_c)):
        raise ValueError(f"nodule diameter must be > 0 pixels, got {diameter_px}")
    return d_r, d_c


def target_area_px(diameter_px: DiameterPx) -> int:
    """Pixel count of an ellipse of diameters (rows, cols) in pixels, at least a 2×2 footprint."""
    d_r, d_c = _diameter_rc(diameter_px)
    return max(MIN_AREA_PX, round(math.pi * d_r * d_c / 4.0))


def _crop(mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _top_pixels(score: np.ndarray, n_px: int) -> np.ndarray:
    """The `n_px` highest-scoring pixels as a tight bool crop; a 2×2 block when n_px ≤ 4.

    Ties at the threshold can strand a few pixels; only the largest 8-connected piece is kept.
    """
    if n_px <= MIN_AREA_PX:
        return np.ones((2, 2), dtype=bool)
    order = np.argsort(-score, axis=None, kind="stable")[: min(n_px, score.size)]
    mask = np.zeros(score.size, dtype=bool)
    mask[order] = True
    pieces, count = ndimage.label(mask.reshape(score.shape), structure=np.ones((3, 3), dtype=bool))
    if count > 1:
        return _crop(pieces == 1 + int(np.bincount(pieces.ravel())[1:].argmax()))
    return _crop(pieces > 0)


def sphere_shape(
    diameter_px: DiameterPx,
    rng: np.random.Generator,
    diameter_mm: float,
    outline: NoduleOutline | None = None,
) -> np.ndarray:
    """A model nodule cross-section: (h, w) bool crop with the equivalent diameter `diameter_px`.

    `diameter_px` is one diameter, or (rows, cols) diameters for anisotropic pixels. The shape
    is `outline`, by default one drawn for a `diameter_mm` nodule by
    :func:`lungforge.nodule_shape.sample_outline` (an ellipse with lobes whose eccentricity and
    solidity follow the LIDC contours; larger nodules more lobulated).
    """
    d_r, d_c = _diameter_rc(diameter_px)
    if outline is None:
        outline = sample_outline(rng, diameter_mm)
    reach = outline.reach()
    h = 2 * math.ceil(d_r / 2 * reach + 1)
    w = 2 * math.ceil(d_c / 2 * reach + 1)
    # The centre falls anywhere within a pixel, as a real nodule's does.
    shift = rng.uniform(-0.5, 0.5, size=2)
    y = (np.arange(h) - (h - 1) / 2 + shift[0]) / (d_r / 2)
    x = (np.arange(w) - (w - 1) / 2 + shift[1]) / (d_c / 2)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return _top_pixels(-np.hypot(yy, xx) / outline.radius(np.arctan2(yy, xx)), target_area_px((d_r, d_c)))


def _rescale_to_area(mask: np.ndarray, scale_rc: tuple[float, float], n_px: int) -> np.ndarray:
    """Resize a bool mask by (row, col) factors and keep the `n_px` most-inside pixels."""
    padded = np.pad(mask, 1).astype(np.float64)
    out_shape = tuple(max(2, math.ceil(s * f)) for s, f in zip(padded.shape, scale_rc))
    score = resize(padded, out_shape, order=1, mode="constant", anti_aliasing=None)
    return _top_pixels(score, n_px)


def _normalise(component: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray | None:
    """A real nodule mask resampled to isotropic pixels and NORM_DIAMETER_PX, centred on the canvas."""
    crop = _crop(component)
    d_mm = float(equivalent_diameter_mm(crop.sum(), spacing_mm))
    px_mm = d_mm / NORM_DIAMETER_PX
    scale = (spacing_mm[0] / px_mm, spacing_mm[1] / px_mm)
    shape = _rescale_to_area(crop, scale, target_area_px(NORM_DIAMETER_PX))
    if shape.shape[0] > CANVAS_PX or shape.shape[1] > CANVAS_PX:
        return None
    canvas = np.zeros((CANVAS_PX, CANVAS_PX), dtype=bool)
    r0 = (CANVAS_PX - shape.shape[0]) // 2
    c0 = (CANVAS_PX - shape.shape[1]) // 2
    canvas[r0 : r0 + shape.shape[0], c0 : c0 + shape.shape[1]] = shape
    return canvas


@dataclass(frozen=True, eq=False)
class NoduleLibrary:
    """Real nodule masks, each at isotropic pixels with equivalent diameter NORM_DIAMETER_PX.

    masks: (K, CANVAS_PX, CANVAS_PX) bool; diameters_mm: (K,) equivalent diameter of the source
    mask in mm; source_slices: (K,) slice index of each mask in the store it came from.
    """

    masks: np.ndarray
    diameters_mm: np.ndarray
    source_slices: np.ndarray

    def __post_init__(self) -> None:
        k = self.masks.shape[0] if self.masks.ndim == 3 else -1
        if k < 1 or self.masks.shape[1:] != (CANVAS_PX, CANVAS_PX) or self.masks.dtype != bool:
            raise ValueError(f"library masks must be (K>=1, {CANVAS_PX}, {CANVAS_PX}) bool, got {self.masks.shape} {self.masks.dtype}")
        if self.diameters_mm.shape != (k,) or self.source_slices.shape != (k,):
            raise ValueError(f"library columns must have {k} rows, got {self.diameters_mm.shape} and {self.source_slices.shape}")

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @classmethod
    def from_store(
        cls, store, max_items: int = 512, min_area_px: int = 6, seed: int = 0, split: int | None = None
    ) -> "NoduleLibrary":
        """Collect up to `max_items` real nodule masks (label == NODULE inside each nodule's bbox).

        Rows of `store.nodules()` are subsampled with `seed` when there are more; masks smaller
        than `min_area_px` pixels carry no shape and are skipped. `split` (0 train, 1 test) keeps
        only nodules of that split's patients, so test patients' shapes never leak into training.
        """
        table = store.nodules()
        rows = np.arange(table["slice"].shape[0])
        if split is not None:
            rows = rows[store.meta("split")[table["slice"]] == split]
        if rows.size > max_items:
            rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_items, replace=False))
        spacing = store.meta("spacing") if rows.size else None
        masks, diameters, slices = [], [], []
        for row in rows:
            index = int(table["slice"][row])
            x0, y0, x1, y1 = np.round(table["bbox"][row]).astype(int) + (-1, -1, 1, 1)
            y0, x0 = max(y0, 0), max(x0, 0)
            window = np.asarray(store.label[index, y0:y1, x0:x1]) == NODULE
            components, count = ndimage.label(window)
            if count == 0:
                continue
            sizes = np.bincount(components.ravel())[1:]
            if sizes.max() < min_area_px:
                continue
            sp = (float(spacing[index, 0]), float(spacing[index, 1]))
            canvas = _normalise(components == 1 + int(sizes.argmax()), sp)
            if canvas is None:
                continue
            masks.append(canvas)
            diameters.append(equivalent_diameter_mm(sizes.max(), sp))
            slices.append(index)
        if not masks:
            raise LayoutError(
                f"{store.path}: no usable nodule masks (of {rows.size} nodule rows); "
                "--shape real needs a real store with nodules, or use --shape sphere"
            )
        return cls(np.stack(masks), np.asarray(diameters, dtype=np.float32), np.asarray(slices, dtype=np.int64))

    def shape(self, diameter_px: DiameterPx, rng: np.random.Generator) -> np.ndarray:
        """A random real mask, randomly flipped/rotated, rescaled to equivalent diameter `diameter_px`.

        Returns a tight (h, w) bool crop; `diameter_px` as in :func:`sphere_shape`.
        """
        d_r, d_c = _diameter_rc(diameter_px)
        mask = np.rot90(self.masks[rng.integers(len(self))], k=int(rng.integers(4)))
        if rng.integers(2):
            mask = mask[:, ::-1]
        scale = (d_r / NORM_DIAMETER_PX, d_c / NORM_DIAMETER_PX)
        return _rescale_to_area(_crop(mask), scale, target_area_px((d_r, d_c)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the library as a compressed `.npz` (no pickled objects)."""
        np.savez_compressed(
            path,
            format=np.asarray(LIBRARY_FORMAT),
            masks=self.masks,
            diameters_mm=self.diameters_mm,
            source_slices=self.source_slices,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NoduleLibrary":
        """Read a library written by :meth:`save`; InputError naming the file if it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != LIBRARY_FORMAT:
                    raise InputError(f"{path}: format {str(data['format'])!r}, expected {LIBRARY_FORMAT!r}")
                return cls(data["masks"].astype(bool), data["diameters_mm"], data["source_slices"])
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: not a lungforge nodule library ({exc})") from None
