"""Seeded per-sample planning: which real label map each synthetic slice starts from, and its nodules.

Every sample has a global index; its seed comes from (run seed, index) alone, and both its layout
and its sampler noise are drawn from that seed. So a sample is the same whatever batch, block or
rank it is produced in.

Fold-local sources: a nodule slice takes its nodules' real shapes and sizes from nodules of
patients in the same official fold (LUNA16 subset, `meta/fold`) as its label map, so a benchmark
fold that holds the label map's patient out of training holds out every patient the slice came
from. Only when that fold has no usable nodule (or no map of it can host the request) are the
other folds' nodules used; the store records every source, and `bench` drops such slices from
the folds they would leak into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lungforge.augment.layout import LayoutRequest, PlacedNodule, plan_layouts
from lungforge.augment.lidc import LidcLibrary
from lungforge.augment.nodule_library import NoduleLibrary, SizePool, equivalent_diameter_mm
from lungforge.core.errors import InputError, LayoutError
from lungforge.data.resize import resize_label_maps
from lungforge.store import SPLIT_IDS, Store

SEED_MASK = (1 << 63) - 1


def sample_seed(seed: int, index: int, attempt: int = 0) -> int:
    """The 63-bit seed of sample `index` (attempt 0) or of its `attempt`-th re-sampling.

    Attempt 0 uses SeedSequence([seed, index]), retries SeedSequence([seed, index, attempt]).
    """
    entropy = [seed, index] if attempt == 0 else [seed, index, attempt]
    words = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32).astype(np.uint64)
    return int(((words[0] << np.uint64(32)) | words[1]) & np.uint64(SEED_MASK))


class SourceMaps:
    """Real nodule-free TRAIN label maps of a store, read lazily and resized to `size` pixels.

    Indexable like a list of (size, size) uint8 maps (what :func:`plan_layouts` accepts);
    `indices` (P,) are their slice indices in the input store, `spacings_mm` (P, 2) their
    (row, col) pixel spacing in mm at `size`, `folds` (P,) their patients' official folds.
    """

    def __init__(self, store: Store, size: int) -> None:
        free = (store.meta("split") == SPLIT_IDS["train"]) & ~store.meta("has_nodule")
        self.store = store
        self.size = size
        self.indices = np.flatnonzero(free)
        if self.indices.size == 0:
            raise InputError(f"{store.path}: no nodule-free train slices to use as source label maps")
        h, w = store.shape_hw
        self.spacings_mm = store.meta("spacing")[self.indices].astype(np.float64) * (h / size, w / size)
        self.folds = store.meta("fold")[self.indices].astype(np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> np.ndarray:
        return resize_label_maps(np.asarray(self.store.label[int(self.indices[i])])[None], self.size)[0]


class _MapSubset:
    """The maps of `maps` at `positions` (P',), indexable like a list (what plan_layouts accepts)."""

    def __init__(self, maps: SourceMaps, positions: np.ndarray) -> None:
        self.maps = maps
        self.positions = positions

    def __len__(self) -> int:
        return int(self.positions.size)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.maps[int(self.positions[i])]


@dataclass(frozen=True, eq=False)
class _FoldSources:
    """Source maps of one official fold (positions into SourceMaps) and that fold's nodule pools."""

    positions: np.ndarray
    library: NoduleLibrary | LidcLibrary | None
    sizes: SizePool | None


@dataclass(frozen=True, eq=False)
class PlannedSample:
    """One output slice before sampling: its (size, size) uint8 label map and provenance.

    `source` is the slice index in the INPUT store; `seed` the attempt-0 seed;
    `spacing_mm` (row, col) mm at the output size; `nodules` the inserted ones (empty for
    nodule-free samples).
    """

    index: int
    seed: int
    source: int
    label: np.ndarray
    spacing_mm: tuple[float, float]
    nodules: tuple[PlacedNodule, ...]

    @property
    def has_nodule(self) -> bool:
        return bool(self.nodules)


class SamplePlanner:
    """Plans sample `index` from (seed, index) alone: indices below `n_nodule` get nodules.

    `library` (real shapes) and `sizes` (real mask sizes) hold the real store's train nodules;
    each nodule slice draws from those of its label map's fold first (module docstring). A
    LidcLibrary holds no patient of the real store and is used whole. `adapt`, when given,
    rewrites every planned sample (a control's own drawing of the layout, e.g. `blob`'s ellipses).
    """

    def __init__(
        self,
        maps: SourceMaps,
        request: LayoutRequest,
        *,
        n_nodule: int,
        seed: int,
        library: NoduleLibrary | LidcLibrary | None = None,
        sizes: SizePool | None = None,
        adapt: Callable[[PlannedSample], PlannedSample] | None = None,
    ) -> None:
        self.maps = maps
        self.adapt = adapt
        self.request = request
        self.n_nodule = n_nodule
        self.seed = seed
        self.library = library
        self.sizes = sizes
        row_fold = maps.store.meta("fold")[maps.store.nodules()["slice"]].astype(np.int64)
        self._by_fold: dict[int, _FoldSources] = {}
        for fold in np.unique(maps.folds).tolist():
            lib: NoduleLibrary | LidcLibrary | None
            sz: SizePool | None = None
            if isinstance(library, NoduleLibrary):
                keep = row_fold[library.source_rows] == fold
                lib = library.subset(keep) if keep.any() else library
            else:  # LIDC shapes come from no patient of the real store
                lib = library
            if sizes is not None:
                keep = row_fold[sizes.source_rows] == fold
                sz = sizes.subset(keep) if keep.any() else sizes
            self._by_fold[fold] = _FoldSources(np.flatnonzero(maps.folds == fold), lib, sz)

    def _plan_nodules(self, rng: np.random.Generator) -> tuple[int, np.ndarray, tuple]:
        """(map position, edited label, nodules) of one nodule slice, fold-local when possible."""
        fold = int(self.maps.folds[rng.integers(len(self.maps))])
        local = self._by_fold[fold]
        try:
            (planned,) = plan_layouts(
                _MapSubset(self.maps, local.positions),
                self.maps.spacings_mm[local.positions],
                1,
                self.request,
                rng,
                local.library,
                local.sizes,
            )
            return int(local.positions[planned.source]), planned.label, planned.nodules
        except LayoutError:
            (planned,) = plan_layouts(self.maps, self.maps.spacings_mm, 1, self.request, rng, self.library, self.sizes)
            return planned.source, planned.label, planned.nodules

    def plan(self, index: int) -> PlannedSample:
        """The layout of sample `index` (deterministic); LayoutError if no map can host it."""
        seed = sample_seed(self.seed, index)
        rng = np.random.default_rng(seed)
        if index < self.n_nodule:
            position, label, nodules = self._plan_nodules(rng)
        else:
            position = int(rng.integers(len(self.maps)))
            label, nodules = self.maps[position], ()
        spacing = (float(self.maps.spacings_mm[position, 0]), float(self.maps.spacings_mm[position, 1]))
        sample = PlannedSample(index, seed, int(self.maps.indices[position]), label, spacing, tuple(nodules))
        return sample if self.adapt is None else self.adapt(sample)

    def _check_smallest_diameter(self) -> None:
        """LayoutError when a `--diameter` MIN is below one pixel (its equivalent diameter, mm) of
        the coarsest host slice: such a nodule would be drawn larger than asked, or not at all."""
        if self.request.diameter_mm is None:
            return
        pixel_mm = max(float(equivalent_diameter_mm(1.0, (r, c))) for r, c in np.unique(self.maps.spacings_mm, axis=0))
        lo, hi = self.request.diameter_mm
        if lo < pixel_mm:
            raise LayoutError(
                f"--diameter {lo:g}:{hi:g} mm: MIN is below one pixel of the host slices "
                f"(a one-pixel nodule is {pixel_mm:.2f} mm across at their spacing); use MIN >= {pixel_mm:.2f}"
            )

    def check_feasible(self) -> None:
        """Plan sample 0 and, for a `--diameter` range, a slice of its largest diameter.

        Run before anything is written, so an impossible request leaves no output behind
        (LayoutError). Real mask sizes are checked through sample 0 only: their maximum may
        be a rare outlier.
        """
        if self.n_nodule == 0:
            return
        self._check_smallest_diameter()
        self.plan(0)
        if self.request.diameter_mm is not None:
            largest = self.request.diameter_mm[1]
            worst = LayoutRequest(self.request.per_slice, (largest, largest), self.request.placement, self.request.shape)
            plan_layouts(self.maps, self.maps.spacings_mm, 1, worst, np.random.default_rng(self.seed), self.library)
