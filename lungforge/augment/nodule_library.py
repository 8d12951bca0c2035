"""Nodule footprints in pixels: model shapes (LIDC-like outlines), a library of real nodule masks
(with their image patches), and a pool of real mask sizes.

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
LIBRARY_FORMAT = "lungforge.nodule_library/2"

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


def _top_pixels(score: np.ndarray, n_px: int) -> np.ndarray:
    """(H, W) bool: the `n_px` highest-scoring pixels of `score`; a 2×2 block at the best pixel when n_px ≤ 4.

    Ties at the threshold can strand a few pixels; only the largest 8-connected piece is kept.
    """
    if n_px <= MIN_AREA_PX:
        r, c = np.unravel_index(int(np.argmax(score)), score.shape)
        r, c = min(max(r, 0), score.shape[0] - 2), min(max(c, 0), score.shape[1] - 2)
        mask = np.zeros(score.shape, dtype=bool)
        mask[r : r + 2, c : c + 2] = True
        return mask
    order = np.argsort(-score, axis=None, kind="stable")[: min(n_px, score.size)]
    mask = np.zeros(score.size, dtype=bool)
    mask[order] = True
    pieces, count = ndimage.label(mask.reshape(score.shape), structure=np.ones((3, 3), dtype=bool))
    if count > 1:
        return pieces == 1 + int(np.bincount(pieces.ravel())[1:].argmax())
    return pieces > 0


def _bounds(mask: np.ndarray) -> tuple[slice, slice]:
    """The tight box of a non-empty bool mask, as (row, col) slices."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _crop(mask: np.ndarray) -> np.ndarray:
    return mask[_bounds(mask)]


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
    return _crop(_top_pixels(-np.hypot(yy, xx) / outline.radius(np.arctan2(yy, xx)), target_area_px((d_r, d_c))))


def _rescale_to_area(
    mask: np.ndarray, scale_rc: tuple[float, float], n_px: int, image: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize a bool mask by (row, col) factors and keep the `n_px` most-inside pixels (tight crop).

    `image` (same shape as `mask`, uint8) is resampled with the same geometry and cropped to the
    same box, so its pixels stay aligned with the returned mask (None when not given).
    """
    padded = np.pad(mask, 1).astype(np.float64)
    out_shape = tuple(max(2, math.ceil(s * f)) for s, f in zip(padded.shape, scale_rc))
    score = resize(padded, out_shape, order=1, mode="constant", anti_aliasing=None)
    kept = _top_pixels(score, n_px)
    box = _bounds(kept)
    shape = kept[box]
    if image is None:
        return shape, None
    resampled = resize(np.pad(image.astype(np.float64), 1, mode="edge"), out_shape, order=1, mode="edge", anti_aliasing=min(scale_rc) < 1)
    return shape, np.clip(np.round(resampled[box]), 0, 255).astype(np.uint8)


def _normalise(component: np.ndarray, image: np.ndarray, spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray] | None:
    """A real nodule mask and its image, resampled to isotropic pixels and NORM_DIAMETER_PX, centred
    on (CANVAS_PX, CANVAS_PX) canvases (bool mask, uint8 image); None if it does not fit."""
    box = _bounds(component)
    crop = component[box]
    d_mm = float(equivalent_diameter_mm(crop.sum(), spacing_mm))
    px_mm = d_mm / NORM_DIAMETER_PX
    scale = (spacing_mm[0] / px_mm, spacing_mm[1] / px_mm)
    shape, patch = _rescale_to_area(crop, scale, target_area_px(NORM_DIAMETER_PX), image[box])
    if shape.shape[0] > CANVAS_PX or shape.shape[1] > CANVAS_PX:
        return None
    canvas = np.zeros((CANVAS_PX, CANVAS_PX), dtype=bool)
    texture = np.zeros((CANVAS_PX, CANVAS_PX), dtype=np.uint8)
    r0 = (CANVAS_PX - shape.shape[0]) // 2
    c0 = (CANVAS_PX - shape.shape[1]) // 2
    canvas[r0 : r0 + shape.shape[0], c0 : c0 + shape.shape[1]] = shape
    texture[r0 : r0 + shape.shape[0], c0 : c0 + shape.shape[1]] = patch
    return canvas, texture


def _nodule_window(store, table: dict[str, np.ndarray], row: int, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Label == NODULE and the image inside nodule `row`'s bbox grown by `margin` px: (h, w) bool, (h, w) uint8."""
    index = int(table["slice"][row])
    x0, y0, x1, y1 = np.round(table["bbox"][row]).astype(int) + (-margin, -margin, margin, margin)
    y0, x0 = max(y0, 0), max(x0, 0)
    window = np.asarray(store.label[index, y0:y1, x0:x1]) == NODULE
    return window, np.asarray(store.image[index, y0:y1, x0:x1])


@dataclass(frozen=True, eq=False)
class SizePool:
    """Equivalent diameters (mm) of real nodule masks: diameters_mm (P,) and source_rows (P,), the
    rows of the store's nodule table they were measured on."""

    diameters_mm: np.ndarray
    source_rows: np.ndarray

    def __post_init__(self) -> None:
        if self.diameters_mm.shape != self.source_rows.shape or self.diameters_mm.ndim != 1:
            raise ValueError(f"size pool columns must be equal (P,) arrays, got {self.diameters_mm.shape} and {self.source_rows.shape}")

    def __len__(self) -> int:
        return int(self.diameters_mm.size)

    def subset(self, keep: np.ndarray) -> "SizePool":
        """The entries where `keep` (P,) bool is True."""
        return SizePool(self.diameters_mm[keep], self.source_rows[keep])

    @classmethod
    def from_store(cls, store, split: int | None = None) -> "SizePool":
        """The equivalent diameter (mm) of every nodule's mask (its NODULE pixels inside its bbox on
        its slice), for the nodules of `split`'s patients (0 train, 1 test; None: all).

        A real label is sphere ∩ threshold, smaller than the annotated disk: synthetic nodules
        drawn from this pool have the size of the real masks, not of the annotations.
        """
        table = store.nodules()
        rows = np.arange(table["slice"].shape[0])
        if split is not None:
            rows = rows[store.meta("split")[table["slice"]] == split]
        spacing = store.meta("spacing")
        diameters = []
        for row in rows:
            window, _ = _nodule_window(store, table, int(row), 0)
            sp = spacing[int(table["slice"][row])]
            diameters.append(equivalent_diameter_mm(window.sum(), (float(sp[0]), float(sp[1]))))
        diam = np.asarray(diameters, dtype=np.float64)
        keep = diam > 0
        return cls(diam[keep], rows[keep].astype(np.int64))


@dataclass(frozen=True, eq=False)
class DrawnShape:
    """A library shape at a requested size: footprint (h, w) bool, the source nodule's image
    resampled with it (h, w) uint8, and the source row in the store's nodule table."""

    footprint: np.ndarray
    texture: np.ndarray
    source_row: int


@dataclass(frozen=True, eq=False)
class NoduleLibrary:
    """Real nodule masks, each at isotropic pixels with equivalent diameter NORM_DIAMETER_PX.

    masks: (K, CANVAS_PX, CANVAS_PX) bool; textures: (K, CANVAS_PX, CANVAS_PX) uint8, the source
    image resampled with each mask; diameters_mm: (K,) equivalent diameter of the source mask in
    mm; source_slices: (K,) slice index of each mask in the store it came from; source_rows: (K,)
    its row in that store's nodule table (what synthetic stores record as `shape_source`).
    """

    masks: np.ndarray
    textures: np.ndarray
    diameters_mm: np.ndarray
    source_slices: np.ndarray
    source_rows: np.ndarray

    def __post_init__(self) -> None:
        k = self.masks.shape[0] if self.masks.ndim == 3 else -1
        if k < 1 or self.masks.shape[1:] != (CANVAS_PX, CANVAS_PX) or self.masks.dtype != bool:
            raise ValueError(f"library masks must be (K>=1, {CANVAS_PX}, {CANVAS_PX}) bool, got {self.masks.shape} {self.masks.dtype}")
        if self.textures.shape != self.masks.shape or self.textures.dtype != np.uint8:
            raise ValueError(f"library textures must be {self.masks.shape} uint8, got {self.textures.shape} {self.textures.dtype}")
        columns = (self.diameters_mm.shape, self.source_slices.shape, self.source_rows.shape)
        if any(c != (k,) for c in columns):
            raise ValueError(f"library columns must have {k} rows, got {columns}")

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def subset(self, keep: np.ndarray) -> "NoduleLibrary":
        """The masks where `keep` (K,) bool is True (at least one)."""
        return NoduleLibrary(self.masks[keep], self.textures[keep], self.diameters_mm[keep], self.source_slices[keep], self.source_rows[keep])

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
        masks, textures, diameters, slices, kept = [], [], [], [], []
        for row in rows:
            index = int(table["slice"][row])
            window, image = _nodule_window(store, table, int(row), 1)
            components, count = ndimage.label(window)
            if count == 0:
                continue
            sizes = np.bincount(components.ravel())[1:]
            if sizes.max() < min_area_px:
                continue
            sp = (float(spacing[index, 0]), float(spacing[index, 1]))
            normalised = _normalise(components == 1 + int(sizes.argmax()), image, sp)
            if normalised is None:
                continue
            masks.append(normalised[0])
            textures.append(normalised[1])
            diameters.append(equivalent_diameter_mm(sizes.max(), sp))
            slices.append(index)
            kept.append(int(row))
        if not masks:
            raise LayoutError(
                f"{store.path}: no usable nodule masks (of {rows.size} nodule rows); "
                "--shape real needs a real store with nodules, or use --shape sphere"
            )
        return cls(
            np.stack(masks), np.stack(textures), np.asarray(diameters, dtype=np.float32),
            np.asarray(slices, dtype=np.int64), np.asarray(kept, dtype=np.int64),
        )

    def draw(self, diameter_px: DiameterPx, rng: np.random.Generator) -> DrawnShape:
        """A random real mask, randomly flipped/rotated, rescaled to equivalent diameter `diameter_px`.

        `diameter_px` as in :func:`sphere_shape`; the texture follows the mask's transform.
        """
        d_r, d_c = _diameter_rc(diameter_px)
        k = int(rng.integers(len(self)))
        turns = int(rng.integers(4))
        mask, texture = np.rot90(self.masks[k], k=turns), np.rot90(self.textures[k], k=turns)
        if rng.integers(2):
            mask, texture = mask[:, ::-1], texture[:, ::-1]
        box = _bounds(mask)
        scale = (d_r / NORM_DIAMETER_PX, d_c / NORM_DIAMETER_PX)
        footprint, patch = _rescale_to_area(mask[box], scale, target_area_px((d_r, d_c)), texture[box])
        return DrawnShape(footprint, patch, int(self.source_rows[k]))

    def save(self, path: str | os.PathLike) -> None:
        """Write the library as a compressed `.npz` (no pickled objects)."""
        np.savez_compressed(
            path,
            format=np.asarray(LIBRARY_FORMAT),
            masks=self.masks,
            textures=self.textures,
            diameters_mm=self.diameters_mm,
            source_slices=self.source_slices,
            source_rows=self.source_rows,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NoduleLibrary":
        """Read a library written by :meth:`save`; InputError naming the file if it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != LIBRARY_FORMAT:
                    raise InputError(f"{path}: format {str(data['format'])!r}, expected {LIBRARY_FORMAT!r}")
                return cls(
                    data["masks"].astype(bool), data["textures"], data["diameters_mm"], data["source_slices"], data["source_rows"]
                )
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: not a lungforge nodule library ({exc})") from None
