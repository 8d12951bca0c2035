"""Reading the LUNA16 layout: scans (`subsetK/<uid>.mhd`), lung masks, annotations, geometry.

World coordinates are ITK's (LPS, mm, x y z order); voxel indices are ITK's continuous indices in
x, y, z order; volumes are returned as numpy arrays in (Z, Y, X) order, axial slices on axis 0.
MetaImage files are read by :mod:`lungforge.luna16.metaimage`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.core.errors import InputError, ScanError
from lungforge.luna16.metaimage import parse_header, read_array, require_finite

SEG_DIR = "seg-lungs-LUNA16"
ANNOTATIONS_FILE = "annotations.csv"
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
MAX_DIAMETER_MM = 100.0
"""Largest annotated diameter accepted: LUNA16 nodules are 3-32 mm; a lung is about 150 mm wide."""
_SUBSET_RE = re.compile(r"^subset(\d)$", re.IGNORECASE)


@dataclass(frozen=True)
class ScanRef:
    """One scan found on disk."""

    uid: str
    subset: int
    mhd: Path


@dataclass(frozen=True)
class Volume:
    """A CT volume in HU with its ITK geometry.

    hu: (Z, Y, X) int16 HU, axial slices along axis 0.
    origin_mm, spacing_mm: (3,) float64 in x, y, z order (world mm, mm per voxel).
    direction: (3, 3) float64, columns are the world directions of the x, y, z index axes.
    """

    hu: np.ndarray
    origin_mm: np.ndarray
    spacing_mm: np.ndarray
    direction: np.ndarray


@dataclass(frozen=True)
class Annotation:
    """One `annotations.csv` row: a nodule centre in world mm (x, y, z), its diameter in mm and the
    row's line in the file (1-based, the header is line 1; 0 for an annotation made in code)."""

    uid: str
    center_mm: np.ndarray
    diameter_mm: float
    line: int = 0


def discover_scans(root: Path) -> list[ScanRef]:
    """All `root/subset<K>/<uid>.mhd` scans (K = 0..9, `Subset4` as `subset4`), sorted by (subset, uid)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: LUNA16 directory not found (expected subset0..subset9/ inside)")
    scans = [
        ScanRef(uid=mhd.stem, subset=int(match.group(1)), mhd=mhd)
        for folder in root.iterdir()
        if folder.is_dir() and (match := _SUBSET_RE.match(folder.name))
        for mhd in folder.glob("*.mhd")
    ]
    if not scans:
        elsewhere = sorted({mhd.parent.name for mhd, _ in misplaced_scans(root)})
        where = f"; scans found only in {', '.join(f'{name}/' for name in elsewhere)}" if elsewhere else ""
        raise InputError(f"{root}: no scans found (expected subset0..subset9/<seriesuid>.mhd{where})")
    scans.sort(key=lambda s: (s.subset, s.uid))
    first: dict[str, ScanRef] = {}
    for scan in scans:
        if scan.uid in first:
            raise InputError(
                f"{root}: series {scan.uid} is in both subset{first[scan.uid].subset} and subset{scan.subset} "
                "(one patient in two folds); keep one copy"
            )
        first[scan.uid] = scan
    return scans


def misplaced_scans(root: Path) -> list[tuple[Path, str]]:
    """(`.mhd`, reason) of every scan in a folder of `root` that is not a LUNA16 subset
    (`subset10/`, `subset_4/`, `extra/`, ...): prepare would otherwise pass over it without a word."""
    found = []
    for folder in sorted(Path(root).iterdir()):
        if not folder.is_dir() or folder.name == SEG_DIR or _SUBSET_RE.match(folder.name):
            continue
        for mhd in sorted(folder.glob("*.mhd")):
            found.append(
                (
                    mhd,
                    f"in {folder.name}/, which is not a LUNA16 subset folder (subset0..subset9, the fold of its "
                    "scans); move the scan into its subset to prepare it",
                )
            )
    return found


def data_file(mhd: Path) -> Path:
    """The file holding the voxels of `mhd` (its `.raw`/`.zraw`, or `mhd` itself); ScanError on a bad header."""
    return parse_header(Path(mhd)).data_file


def read_volume(mhd: Path) -> Volume:
    """Read a scan as int16 HU (values outside the int16 range are clipped) with its geometry."""
    mhd = Path(mhd)
    array, reader = read_array(mhd)
    require_finite(mhd, array)
    if array.dtype != np.int16:
        info = np.iinfo(np.int16)
        array = np.clip(np.rint(array) if array.dtype.kind == "f" else array, info.min, info.max)
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(3, 3)
    if abs(np.linalg.det(direction)) < 1e-6:
        raise ScanError(f"{mhd}: TransformMatrix {direction.ravel().tolist()} is singular (no world coordinates)")
    return Volume(
        hu=np.ascontiguousarray(array, dtype=np.int16),
        origin_mm=np.asarray(reader.GetOrigin(), dtype=np.float64),
        spacing_mm=np.asarray(reader.GetSpacing(), dtype=np.float64),
        direction=direction,
    )


def read_seg(root: Path, uid: str) -> np.ndarray | None:
    """The `seg-lungs-LUNA16/<uid>.mhd` mask as (Z, Y, X) uint8, or None when there is none."""
    mhd = Path(root) / SEG_DIR / f"{uid}.mhd"
    if not mhd.exists():
        return None
    array, _ = read_array(mhd)
    require_finite(mhd, array)
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ScanError(f"{mhd}: seg mask values must lie in 0..255, got {array.min()}..{array.max()}")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array, dtype=np.uint8)


def read_annotations(root: Path) -> dict[str, list[Annotation]]:
    """Nodules per seriesuid from `root/annotations.csv` (world mm centres, diameters in mm),
    exact duplicate rows dropped (see :func:`load_annotations`)."""
    return load_annotations(root)[0]


def load_annotations(root: Path) -> tuple[dict[str, list[Annotation]], list[dict[str, Any]]]:
    """Nodules per seriesuid, and the exact duplicate rows dropped from them.

    A row equal to an earlier one in every value (same series, centre and diameter) describes
    no second nodule, only the same one again: it is dropped, and listed as {"line", "same_as",
    "series"} (1-based line numbers of the file), so that a doubled file does not double the
    nodules. LUNA16's own annotations.csv has no such rows.
    """
    path = Path(root) / ANNOTATIONS_FILE
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: annotations file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read annotations ({exc})") from None
    rows = csv.reader(text.splitlines())
    header = [h.strip() for h in next(rows, [])]
    if tuple(header) != ANNOTATION_COLUMNS:
        raise InputError(f"{path}: header must be {','.join(ANNOTATION_COLUMNS)}, got {','.join(header) or 'an empty file'}")
    found: dict[str, list[Annotation]] = {}
    first_line: dict[tuple[str, tuple[float, ...]], int] = {}
    duplicates: list[dict[str, Any]] = []
    for line_no, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(ANNOTATION_COLUMNS):
            raise InputError(f"{path}: line {line_no} has {len(row)} fields, expected {len(ANNOTATION_COLUMNS)}")
        uid = row[0].strip()
        try:
            values = np.array([float(cell) for cell in row[1:]], dtype=np.float64)
        except ValueError:
            raise InputError(f"{path}: line {line_no} has a non-numeric coordinate or diameter: {','.join(row[1:])}") from None
        if not uid or not np.all(np.isfinite(values)) or values[3] <= 0:
            raise InputError(f"{path}: line {line_no} needs a seriesuid, finite coordinates and diameter_mm > 0, got {','.join(row)}")
        if values[3] > MAX_DIAMETER_MM:
            raise InputError(
                f"{path}: line {line_no} has diameter_mm {values[3]:g}, expected at most {MAX_DIAMETER_MM:g} mm (a nodule, not the chest)"
            )
        key = (uid, tuple(values.tolist()))
        if key in first_line:
            duplicates.append({"line": line_no, "same_as": first_line[key], "series": uid})
            continue
        first_line[key] = line_no
        found.setdefault(uid, []).append(Annotation(uid=uid, center_mm=values[:3], diameter_mm=float(values[3]), line=line_no))
    return found, duplicates


def index_to_world(index: np.ndarray, origin_mm: np.ndarray, spacing_mm: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(N, 3) continuous x, y, z voxel indices -> (N, 3) world x, y, z in mm: origin + D·(spacing·index)."""
    index = np.asarray(index, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    return np.asarray(origin_mm, dtype=np.float64) + (index * np.asarray(spacing_mm, dtype=np.float64)) @ d.T


def world_to_index(points_mm: np.ndarray, origin_mm: np.ndarray, spacing_mm: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(N, 3) world x, y, z in mm -> (N, 3) continuous x, y, z voxel indices (inverse of index_to_world)."""
    points = np.asarray(points_mm, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    offsets = (points - np.asarray(origin_mm, dtype=np.float64)).reshape(-1, 3)
    scaled = np.linalg.solve(d, offsets.T).T
    return (scaled / np.asarray(spacing_mm, dtype=np.float64)).reshape(points.shape)
