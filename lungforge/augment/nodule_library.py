"""Nodule footprints in pixels: model shapes (LIDC-like outlines), a library of real nodules
(mask, image and lung around each, at the source slice's own pixels), and a pool of real mask sizes.

Every footprint is a tight (h, w) bool crop whose pixel count is chosen first, from the
requested equivalent diameter, and whose shape is then the level set of a score field holding
exactly that many pixels. So the equivalent diameter is right by construction, down to the
smallest drawable footprint (2×2 pixels for a requested diameter; a real nodule drawn at its
own size keeps its own pixel count, down to 1 pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from lungforge.core.errors import LayoutError
from lungforge.core.labels import LUNG_LABELS, NODULE
from lungforge.core.nodule_shape import NoduleOutline, sample_outline

MIN_AREA_PX = 4
SHAPE_MIN_AREA_PX = 6
"""Real masks smaller than this carry no shape worth rescaling to a requested (`--diameter`) size."""
WINDOW_MARGIN_PX = 8
"""Source pixels a library nodule keeps around its mask's tight box, on every side."""
RIM_PX = 4
"""Output pixels of source kept around a drawn real footprint: the reach of paste's feather."""

DiameterPx = float | tuple[float, float]


def equivalent_diameter_mm(area_px: float | np.ndarray, spacing_mm: tuple[float, float]) -> float | np.ndarray:
    """Diameter (mm) of the disk whose area equals `area_px` pixels of `spacing_mm` (row, col)."""
    return 2.0 * np.sqrt(np.asarray(area_px, dtype=np.float64) * spacing_mm[0] * spacing_mm[1] / np.pi)


def _diameter_rc(diameter_px: DiameterPx) -> tuple[float, float]:
    if np.isscalar(diameter_px):
        d_r = d_c = float(cast(float, diameter_px))
    else:
        d_r, d_c = (float(d) for d in cast(tuple[float, float], diameter_px))
    if not (d_r > 0 and d_c > 0 and math.isfinite(d_r) and math.isfinite(d_c)):
        raise ValueError(f"nodule diameter must be > 0 pixels, got {diameter_px}")
    return d_r, d_c


def target_area_px(diameter_px: DiameterPx) -> int:
    """Pixel count of an ellipse of diameters (rows, cols) in pixels, at least a 2×2 footprint."""
    d_r, d_c = _diameter_rc(diameter_px)
    return max(MIN_AREA_PX, round(math.pi * d_r * d_c / 4.0))


def _top_pixels(score: np.ndarray, n_px: int, square_of_four: bool = True) -> np.ndarray:
    """(H, W) bool: the `n_px` highest-scoring pixels of `score`; with `square_of_four`, a 2×2
    block at the best pixel when n_px = 4 (the roundest 4-pixel model shape).

    Ties at the threshold can strand a few pixels; only the largest 8-connected piece is kept.
    """
    if square_of_four and n_px == MIN_AREA_PX:
        r, c = (int(i) for i in np.unravel_index(int(np.argmax(score)), score.shape))
        r, c = min(max(r, 0), score.shape[0] - 2), min(max(c, 0), score.shape[1] - 2)
        mask = np.zeros(score.shape, dtype=bool)
        mask[r : r + 2, c : c + 2] = True
        return mask
    order = np.argsort(-score, axis=None, kind="stable")[: min(n_px, score.size)]
    flat = np.zeros(score.size, dtype=bool)
    flat[order] = True
    return _largest_piece(flat.reshape(score.shape))


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected piece of a non-empty (H, W) bool mask."""
    pieces, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
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
    :func:`lungforge.core.nodule_shape.sample_outline` (an ellipse with lobes whose eccentricity and
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


def _rescale_to_area(mask: np.ndarray, scale_rc: tuple[float, float], n_px: int) -> np.ndarray:
    """Resize a bool mask by (row, col) factors and keep its `n_px` most-inside pixels (tight crop)."""
    padded = np.pad(mask, 1).astype(np.float64)
    out_shape = tuple(max(2, math.ceil(s * f)) for s, f in zip(padded.shape, scale_rc))
    score = resize(padded, out_shape, order=1, mode="constant", anti_aliasing=None)
    return _crop(_top_pixels(score, n_px))


def _nodule_window(
    store, table: dict[str, np.ndarray], row: int, margin: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Nodule `row`'s bbox grown by `margin` px on its slice, clipped at the slice border:
    label == NODULE (h, w) bool, the image (h, w) uint8, the label (h, w) uint8 and the
    window's top-left (row, col) on the slice."""
    index = int(table["slice"][row])
    x0, y0, x1, y1 = np.round(table["bbox"][row]).astype(int) + (-margin, -margin, margin, margin)
    y0, x0 = max(y0, 0), max(x0, 0)
    label = np.asarray(store.label[index, y0:y1, x0:x1])
    return label == NODULE, np.asarray(store.image[index, y0:y1, x0:x1]), label, (y0, x0)


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

    def subset(self, keep: np.ndarray) -> SizePool:
        """The entries where `keep` (P,) bool is True."""
        return SizePool(self.diameters_mm[keep], self.source_rows[keep])

    @classmethod
    def from_store(cls, store, split: int | None = None) -> SizePool:
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
            window, _, _, _ = _nodule_window(store, table, int(row), 0)
            sp = spacing[int(table["slice"][row])]
            diameters.append(equivalent_diameter_mm(window.sum(), (float(sp[0]), float(sp[1]))))
        diam = np.asarray(diameters, dtype=np.float64)
        keep = diam > 0
        return cls(diam[keep], rows[keep].astype(np.int64))


@dataclass(frozen=True, eq=False)
class RealNodule:
    """One real nodule at its source slice's own pixels, in a window reaching WINDOW_MARGIN_PX
    beyond its mask's tight box on every side (edge-padded where the slice ends).

    mask (h, w) bool: the nodule (the largest 8-connected NODULE piece inside its bbox);
    image (h, w) uint8: the source slice there; lung (h, w) bool: where the source is lung
    (labels 1, 2); spacing_mm: the source slice's (row, col) pixel spacing; diameter_mm: the
    mask's equivalent diameter; source_slice / source_row: its slice and nodule-table row.
    """

    mask: np.ndarray
    image: np.ndarray
    lung: np.ndarray
    spacing_mm: tuple[float, float]
    diameter_mm: float
    source_slice: int
    source_row: int


@dataclass(frozen=True, eq=False)
class RealPatch:
    """A drawn real nodule's source pixels around its footprint, at the output's pixels.

    image (h + 2m, w + 2m) uint8 and lung (h + 2m, w + 2m) bool (where the source is lung),
    with the (h, w) footprint at offset (m, m); m = `margin` pixels.
    """

    image: np.ndarray
    lung: np.ndarray
    margin: int


@dataclass(frozen=True, eq=False)
class DrawnShape:
    """A real nodule drawn for a target slice: its footprint (h, w) bool, its source pixels
    around it (RealPatch) and its row in the store's nodule table."""

    footprint: np.ndarray
    patch: RealPatch
    source_row: int


def _orient(array: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    out = np.rot90(array, k=turns)
    return out[:, ::-1] if flip else out


def _zoom_grid(shape: tuple[int, int], scale_rc: tuple[float, float], centre: tuple[int, int]) -> np.ndarray:
    """Source coordinates (2, H', W') of an output grid covering an (h, w) window resampled by
    (row, col) factors about the source pixel `centre`.

    Per axis, with k = round(factor) output pixels per source pixel: for odd k an output pixel
    centre lands on the centre pixel's centre (near factor 1 a 1–2 pixel nodule keeps its peak
    instead of being smeared over four output pixels); for even k the output pixels tile it
    (at factor 2 every source pixel becomes 2×2 output pixels, no output centre on an edge).
    """
    axes = []
    for n, f, c in zip(shape, scale_rc, centre):
        shift = 0.5 if round(f) % 2 == 0 else 0.0
        before = math.ceil((c + 0.5) * f) + 1
        after = math.ceil((n - 0.5 - c) * f) + 1
        axes.append(c + (np.arange(before + after + 1) - before - shift) / f)
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def _zoom(array: np.ndarray, scale_rc: tuple[float, float], grid: np.ndarray, edge: bool) -> np.ndarray:
    """(h, w) array sampled bilinearly at `grid` (2, H', W') source coordinates (from
    :func:`_zoom_grid`), antialiased when `scale_rc` shrinks; float64. At factors (1, 1) the
    values come back unchanged (shifted by the grid's border). `edge` extends the border values
    beyond the window, else zeros.
    """
    values = np.asarray(array, dtype=np.float64)
    sigma = [max(0.0, (1.0 / f - 1.0) / 2.0) for f in scale_rc]
    mode = "nearest" if edge else "constant"
    if any(sigma):
        values = ndimage.gaussian_filter(values, sigma, mode=mode)
    return ndimage.map_coordinates(values, grid, order=1, mode=mode, cval=0.0)


def _grow(
    box: tuple[slice, slice], margin: int, shape: tuple[int, ...]
) -> tuple[tuple[slice, slice], tuple[tuple[int, int], tuple[int, int]]]:
    """`box` grown by `margin` on every side and clipped to `shape`, and the padding that restores the clipped part."""
    (r, c), (h, w) = box, shape
    r0, r1, c0, c1 = r.start - margin, r.stop + margin, c.start - margin, c.stop + margin
    pad = ((max(0, -r0), max(0, r1 - h)), (max(0, -c0), max(0, c1 - w)))
    return (slice(max(r0, 0), min(r1, h)), slice(max(c0, 0), min(c1, w))), pad


@dataclass(frozen=True, eq=False)
class NoduleLibrary:
    """Real train-patient nodules at their own scale (:class:`RealNodule`, K ≥ 1 of them).

    A drawn nodule keeps its shape, its pixels and (unless a diameter is requested) its size
    in mm: shape, texture and size come from one real nodule, whose nodule-table row synthetic
    stores record as both `shape_source` and `size_source`.
    """

    items: tuple[RealNodule, ...]

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError("a nodule library needs at least one nodule")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def source_rows(self) -> np.ndarray:
        """(K,) int64 nodule-table rows of the library's nodules."""
        return np.array([n.source_row for n in self.items], dtype=np.int64)

    @property
    def source_slices(self) -> np.ndarray:
        """(K,) int64 slice index of each nodule in its store."""
        return np.array([n.source_slice for n in self.items], dtype=np.int64)

    @property
    def diameters_mm(self) -> np.ndarray:
        """(K,) float64 equivalent diameter (mm) of each nodule's mask."""
        return np.array([n.diameter_mm for n in self.items], dtype=np.float64)

    def subset(self, keep: np.ndarray) -> NoduleLibrary:
        """The nodules where `keep` (K,) bool is True (at least one)."""
        return NoduleLibrary(tuple(n for n, k in zip(self.items, np.asarray(keep, dtype=bool)) if k))

    @classmethod
    def from_store(cls, store, max_items: int = 512, min_area_px: int = 1, seed: int = 0, split: int | None = None) -> NoduleLibrary:
        """Collect up to `max_items` real nodules (label == NODULE inside each nodule's bbox).

        Rows of `store.nodules()` are subsampled with `seed` when there are more; masks smaller
        than `min_area_px` pixels are skipped (:data:`SHAPE_MIN_AREA_PX` when shapes are to be
        rescaled). `split` (0 train, 1 test) keeps only nodules of that split's patients, so
        test patients' nodules never leak into training.
        """
        table = store.nodules()
        rows = np.arange(table["slice"].shape[0])
        if split is not None:
            rows = rows[store.meta("split")[table["slice"]] == split]
        if rows.size > max_items:
            rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_items, replace=False))
        spacing = store.meta("spacing") if rows.size else np.empty((0, 2))
        items = []
        for row in rows:
            index = int(table["slice"][row])
            nodule, image, label, (y0, x0) = _nodule_window(store, table, int(row), WINDOW_MARGIN_PX)
            pieces, count = ndimage.label(nodule, structure=np.ones((3, 3), dtype=bool))
            x_0, y_0, x_1, y_1 = np.round(table["bbox"][row]).astype(int) - (x0, y0, x0, y0)
            inside = np.bincount(pieces[max(y_0, 0) : y_1, max(x_0, 0) : x_1].ravel(), minlength=count + 1)[1:]
            if count == 0 or inside.max() == 0:
                continue
            mask = pieces == 1 + int(inside.argmax())  # the piece filling most of the nodule's bbox
            if mask.sum() < min_area_px:
                continue
            box, pad = _grow(_bounds(mask), WINDOW_MARGIN_PX, mask.shape)
            sp = (float(spacing[index, 0]), float(spacing[index, 1]))
            items.append(
                RealNodule(
                    mask=np.pad(mask[box], pad),
                    image=np.pad(image[box], pad, mode="edge"),
                    lung=np.pad(np.isin(label[box], LUNG_LABELS), pad),
                    spacing_mm=sp,
                    diameter_mm=float(equivalent_diameter_mm(mask.sum(), sp)),
                    source_slice=index,
                    source_row=int(row),
                )
            )
        if not items:
            raise LayoutError(
                f"{store.path}: no usable nodule masks (of {rows.size} nodule rows); "
                "--shape real needs a real store with nodules, or use --shape sphere"
            )
        return cls(tuple(items))

    def draw(
        self, spacing_mm: tuple[float, float], rng: np.random.Generator, index: int | None = None, diameter_mm: float | None = None
    ) -> DrawnShape:
        """Nodule `index` (default: a random one), randomly rotated by quarter turns and flipped,
        resampled once from its source pixels to pixels of `spacing_mm` (row, col) mm.

        The nodule's centre pixel lands on an output pixel (a 1–2 pixel nodule keeps its peak).
        At its own size (`diameter_mm` None) it keeps its size in mm: the footprint is the
        output pixels at least half inside the resampled mask (at least 1 pixel), pixel for
        pixel the mask when the spacings are equal. With `diameter_mm` it is scaled to that
        equivalent diameter. The patch holds the source pixels RIM_PX output pixels around the
        footprint.
        """
        k = int(rng.integers(len(self))) if index is None else int(index)
        item = self.items[k]
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        mask, image, lung = (_orient(a, turns, flip) for a in (item.mask, item.image, item.lung))
        source = item.spacing_mm if turns % 2 == 0 else item.spacing_mm[::-1]
        zoom = 1.0 if diameter_mm is None else diameter_mm / item.diameter_mm
        scale = (source[0] * zoom / spacing_mm[0], source[1] * zoom / spacing_mm[1])
        centre = tuple(int(v) for v in np.round(ndimage.center_of_mass(mask)))
        grid = _zoom_grid(mask.shape, scale, centre)  # type: ignore[arg-type]
        score = _zoom(mask, scale, grid, edge=False)
        if diameter_mm is None:
            # the pixels mostly inside the source mask: no half-lung pixel is labelled nodule
            footprint = _largest_piece(score >= 0.5) if score.max() >= 0.5 else _top_pixels(score, 1)
        else:
            n_px = target_area_px((diameter_mm / spacing_mm[0], diameter_mm / spacing_mm[1]))
            footprint = _top_pixels(score, n_px, square_of_four=False)  # a real shape, however small
        box, pad = _grow(_bounds(footprint), RIM_PX, footprint.shape)
        patch = RealPatch(
            image=np.pad(np.clip(np.round(_zoom(image, scale, grid, edge=True)), 0, 255).astype(np.uint8)[box], pad, mode="edge"),
            lung=np.pad(_zoom(lung, scale, grid, edge=False)[box] > 0.5, pad),
            margin=RIM_PX,
        )
        return DrawnShape(footprint[_bounds(footprint)], patch, item.source_row)
