"""Reading the LUNA16 layout: scans (`subsetK/<uid>.mhd`), lung masks, annotations, geometry.

World coordinates are ITK's (LPS, mm, x y z order); voxel indices are ITK's continuous indices in
x, y, z order; volumes are returned as numpy arrays in (Z, Y, X) order, axial slices on axis 0.
Every data file is checked against its MetaImage header before SimpleITK sees it, because
SimpleITK fails late on truncated `.raw` files and silently zero-fills truncated `.zraw` files.
"""

from __future__ import annotations

import csv
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungforge.errors import InputError, ScanError

SEG_DIR = "seg-lungs-LUNA16"
ANNOTATIONS_FILE = "annotations.csv"
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")

# MetaImage element types -> numpy dtypes (little-endian; byte order is applied per header).
MET_DTYPES: dict[str, str] = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_LONG": "i4",
    "MET_ULONG": "u4",
    "MET_LONG_LONG": "i8",
    "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}
MAX_DIAMETER_MM = 100.0
"""Largest annotated diameter accepted: LUNA16 nodules are 3-32 mm; a lung is about 150 mm wide."""
_SUBSET_RE = re.compile(r"^subset(\d)$", re.IGNORECASE)
_MAX_HEADER_BYTES = 1 << 16


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
    """One `annotations.csv` row: a nodule centre in world mm (x, y, z) and its diameter in mm."""

    uid: str
    center_mm: np.ndarray
    diameter_mm: float


@dataclass(frozen=True)
class _Header:
    """The parts of a MetaImage header needed to validate its data file."""

    shape_xyz: tuple[int, ...]
    dtype: np.dtype
    data_file: Path
    compressed: bool
    compressed_size: int | None
    header_size: int
    data_offset: int


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
            found.append((
                mhd,
                f"in {folder.name}/, which is not a LUNA16 subset folder (subset0..subset9, the fold of its "
                "scans); move the scan into its subset to prepare it",
            ))
    return found


def data_file(mhd: Path) -> Path:
    """The file holding the voxels of `mhd` (its `.raw`/`.zraw`, or `mhd` itself); ScanError on a bad header."""
    return _parse_header(Path(mhd)).data_file


def _parse_header(mhd: Path) -> _Header:
    """Parse and validate the `key = value` MetaImage header of `mhd` (ScanError when invalid)."""
    try:
        with open(mhd, "rb") as fh:
            raw = fh.read(_MAX_HEADER_BYTES)
    except OSError as exc:
        raise ScanError(f"{mhd}: cannot read header ({exc.strerror})") from None
    fields: dict[str, str] = {}
    offset = 0
    for line in raw.splitlines(keepends=True):
        offset += len(line)
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            raise ScanError(f"{mhd}: not a MetaImage header (binary content before ElementDataFile)") from None
        if not text:
            continue
        key, sep, value = text.partition("=")
        if not sep:
            raise ScanError(f"{mhd}: not a MetaImage header (line {text[:40]!r} is not 'key = value')")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    else:
        raise ScanError(f"{mhd}: MetaImage header has no ElementDataFile")

    def need(key: str) -> str:
        if key not in fields:
            raise ScanError(f"{mhd}: MetaImage header has no {key}")
        return fields[key]

    try:
        ndims = int(need("NDims"))
        shape = tuple(int(v) for v in need("DimSize").split())
        header_size = int(fields.get("HeaderSize", "0"))
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        compressed_size = int(fields["CompressedDataSize"]) if "CompressedDataSize" in fields else None
    except ValueError:
        raise ScanError(f"{mhd}: non-integer NDims/DimSize/HeaderSize/CompressedDataSize in header") from None
    if ndims != 3 or len(shape) != 3 or min(shape) < 1:
        raise ScanError(f"{mhd}: expected a 3-D image, got NDims={ndims} DimSize={shape}")
    if channels != 1:
        raise ScanError(f"{mhd}: expected 1 channel per voxel, got ElementNumberOfChannels={channels}")
    element = need("ElementType")
    if element not in MET_DTYPES:
        raise ScanError(f"{mhd}: unsupported ElementType {element!r} (expected one of {', '.join(MET_DTYPES)})")
    msb = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False")).lower() == "true"
    dtype = np.dtype(("<", ">")[msb] + MET_DTYPES[element])
    data_name = need("ElementDataFile")
    if data_name == "LIST" or "%" in data_name:
        raise ScanError(f"{mhd}: multi-file ElementDataFile {data_name!r} is not supported")
    # Only the scan's own file beside its header: a path elsewhere (or another scan's data)
    # would silently become this patient's voxels.
    if data_name != "LOCAL" and (Path(data_name).name != data_name or Path(data_name).stem != mhd.stem):
        raise ScanError(
            f"{mhd}: ElementDataFile {data_name!r} must name this scan's own file beside the header "
            f"({mhd.stem}.raw, {mhd.stem}.zraw, ...), not a path elsewhere or another scan's data"
        )
    data_file = mhd if data_name == "LOCAL" else mhd.parent / data_name
    return _Header(
        shape_xyz=shape,
        dtype=dtype,
        data_file=data_file,
        compressed=fields.get("CompressedData", "False").lower() == "true",
        compressed_size=compressed_size,
        header_size=header_size,
        data_offset=offset if data_name == "LOCAL" else 0,
    )


def _check_data_file(mhd: Path, header: _Header) -> None:
    """Raise ScanError unless the data file exists and its byte size is exactly what the header implies.

    A larger file is as wrong as a shorter one (e.g. a MET_UCHAR header on int16 data would
    read as garbage); compressed files must be exactly `CompressedDataSize` bytes when it is
    given (their inflated size is checked when they are read).
    """
    if not header.data_file.is_file():
        raise ScanError(f"{mhd}: data file {header.data_file.name} is missing")
    size = header.data_file.stat().st_size - header.data_offset
    if header.compressed:
        if header.compressed_size is not None and size != header.compressed_size:
            state = "truncated" if size < header.compressed_size else "larger than the header says"
            raise ScanError(f"{mhd}: {header.data_file.name} is {state} ({size} bytes, header says CompressedDataSize {header.compressed_size})")
        return
    voxels = int(np.prod(header.shape_xyz)) * header.dtype.itemsize
    # HeaderSize -1 (MetaImage): the voxels are the file's last bytes, whatever precedes them.
    expected = voxels + max(header.header_size, 0)
    what = f"expected {expected} for {header.shape_xyz} {header.dtype.name}"
    if size < expected:
        raise ScanError(f"{mhd}: {header.data_file.name} is truncated ({size} bytes, {what})")
    if size > expected and header.header_size != -1:
        raise ScanError(f"{mhd}: {header.data_file.name} is larger than its header implies ({size} bytes, {what}; wrong ElementType or DimSize?)")


def _geometry(mhd: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(mhd))
    reader.SetImageIO("MetaImageIO")
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ScanError(f"{mhd}: SimpleITK cannot read the header ({_last_line(exc)})") from None
    return reader


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


@dataclass(frozen=True)
class Geometry:
    """Where a file's voxels sit in the world: shape_zyx in voxels; origin_mm, spacing_mm (3,)
    x, y, z; direction (3, 3), columns the world directions of the x, y, z index axes."""

    shape_zyx: tuple[int, int, int]
    origin_mm: np.ndarray
    spacing_mm: np.ndarray
    direction: np.ndarray


def read_geometry(mhd: Path) -> Geometry:
    """The geometry of `mhd` from its header alone (ScanError when the header is invalid)."""
    mhd = Path(mhd)
    _parse_header(mhd)
    reader = _geometry(mhd)
    x, y, z = reader.GetSize()
    return Geometry(
        shape_zyx=(z, y, x),
        origin_mm=np.asarray(reader.GetOrigin(), dtype=np.float64),
        spacing_mm=np.asarray(reader.GetSpacing(), dtype=np.float64),
        direction=np.asarray(reader.GetDirection(), dtype=np.float64).reshape(3, 3),
    )


def read_header(mhd: Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """(Z, Y, X) shape in voxels and (3,) x, y, z spacing in mm, from the header alone."""
    mhd = Path(mhd)
    _parse_header(mhd)
    reader = _geometry(mhd)
    x, y, z = reader.GetSize()
    return (z, y, x), np.asarray(reader.GetSpacing(), dtype=np.float64)


def _read_compressed(mhd: Path, header: _Header) -> np.ndarray:
    """Inflate a `.zraw` ourselves so that a truncated stream is an error, not zeros."""
    with open(header.data_file, "rb") as fh:
        fh.seek(header.data_offset)
        payload = fh.read(header.compressed_size if header.compressed_size is not None else -1)
    expected = int(np.prod(header.shape_xyz)) * header.dtype.itemsize
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(payload)
    except zlib.error as exc:
        raise ScanError(f"{mhd}: {header.data_file.name} is not a valid zlib stream ({exc})") from None
    if not inflater.eof or inflater.unused_data:
        state = "truncated (the zlib stream does not end)" if not inflater.eof else f"followed by {len(inflater.unused_data)} stray bytes"
        raise ScanError(f"{mhd}: {header.data_file.name} is {state}")
    if len(data) != expected:
        raise ScanError(f"{mhd}: {header.data_file.name} inflates to {len(data)} bytes, expected {expected}")
    return np.frombuffer(data, dtype=header.dtype).reshape(header.shape_xyz[::-1])


def _read_array(mhd: Path) -> tuple[np.ndarray, sitk.ImageFileReader]:
    """The voxel array in (Z, Y, X) order and the reader holding the geometry of `mhd`."""
    header = _parse_header(mhd)
    _check_data_file(mhd, header)
    reader = _geometry(mhd)
    if header.compressed:
        return _read_compressed(mhd, header), reader
    return _read_raw(mhd, header), reader


def _read_raw(mhd: Path, header: _Header) -> np.ndarray:
    """The uncompressed voxels (Z, Y, X), read straight into numpy: the values SimpleITK reads
    from the same validated header and size-checked file, at a fraction of its time (it
    decodes through ITK and then needs a copy into numpy)."""
    count = int(np.prod(header.shape_xyz))
    if header.header_size == -1:  # MetaImage: the data are the last bytes of the file
        offset = header.data_file.stat().st_size - count * header.dtype.itemsize
    else:
        offset = header.data_offset + header.header_size
    try:
        data = np.fromfile(header.data_file, dtype=header.dtype, count=count, offset=offset)
    except (OSError, ValueError) as exc:
        raise ScanError(f"{mhd}: cannot read {header.data_file.name} ({exc})") from None
    if data.size != count:
        raise ScanError(f"{mhd}: {header.data_file.name} holds {data.size} voxels, expected {count}")
    return data.reshape(header.shape_xyz[::-1])


def _require_finite(mhd: Path, array: np.ndarray) -> None:
    """ScanError when a float volume holds NaN or infinite voxels (they have no HU or label)."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise ScanError(f"{mhd}: {bad} of {array.size} voxels are NaN or infinite")


def read_volume(mhd: Path) -> Volume:
    """Read a scan as int16 HU (values outside the int16 range are clipped) with its geometry."""
    mhd = Path(mhd)
    array, reader = _read_array(mhd)
    _require_finite(mhd, array)
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
    array, _ = _read_array(mhd)
    _require_finite(mhd, array)
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
            raise InputError(f"{path}: line {line_no} has diameter_mm {values[3]:g}, expected at most {MAX_DIAMETER_MM:g} mm (a nodule, not the chest)")
        key = (uid, tuple(values.tolist()))
        if key in first_line:
            duplicates.append({"line": line_no, "same_as": first_line[key], "series": uid})
            continue
        first_line[key] = line_no
        found.setdefault(uid, []).append(Annotation(uid=uid, center_mm=values[:3], diameter_mm=float(values[3])))
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
