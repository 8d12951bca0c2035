"""MetaImage (`.mhd` + `.raw`/`.zraw`) files: headers, geometry and voxel arrays, each data file
checked against its header before SimpleITK sees it (SimpleITK fails late on truncated `.raw`
files and silently zero-fills truncated `.zraw` files)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungforge.core.errors import ScanError

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
_MAX_HEADER_BYTES = 1 << 16


@dataclass(frozen=True)
class MetaHeader:
    """The parts of a MetaImage header needed to validate its data file."""

    shape_xyz: tuple[int, ...]
    dtype: np.dtype
    data_file: Path
    compressed: bool
    compressed_size: int | None
    header_size: int
    data_offset: int


def parse_header(mhd: Path) -> MetaHeader:
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
    return MetaHeader(
        shape_xyz=shape,
        dtype=dtype,
        data_file=data_file,
        compressed=fields.get("CompressedData", "False").lower() == "true",
        compressed_size=compressed_size,
        header_size=header_size,
        data_offset=offset if data_name == "LOCAL" else 0,
    )


def _check_data_file(mhd: Path, header: MetaHeader) -> None:
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
            raise ScanError(
                f"{mhd}: {header.data_file.name} is {state} ({size} bytes, header says CompressedDataSize {header.compressed_size})"
            )
        return
    voxels = int(np.prod(header.shape_xyz)) * header.dtype.itemsize
    # HeaderSize -1 (MetaImage): the voxels are the file's last bytes, whatever precedes them.
    expected = voxels + max(header.header_size, 0)
    what = f"expected {expected} for {header.shape_xyz} {header.dtype.name}"
    if size < expected:
        raise ScanError(f"{mhd}: {header.data_file.name} is truncated ({size} bytes, {what})")
    if size > expected and header.header_size != -1:
        raise ScanError(
            f"{mhd}: {header.data_file.name} is larger than its header implies ({size} bytes, {what}; wrong ElementType or DimSize?)"
        )


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
    parse_header(mhd)
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
    parse_header(mhd)
    reader = _geometry(mhd)
    x, y, z = reader.GetSize()
    return (z, y, x), np.asarray(reader.GetSpacing(), dtype=np.float64)


def _read_compressed(mhd: Path, header: MetaHeader) -> np.ndarray:
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


def read_array(mhd: Path) -> tuple[np.ndarray, sitk.ImageFileReader]:
    """The voxel array in (Z, Y, X) order and the reader holding the geometry of `mhd`."""
    header = parse_header(mhd)
    _check_data_file(mhd, header)
    reader = _geometry(mhd)
    if header.compressed:
        return _read_compressed(mhd, header), reader
    return _read_raw(mhd, header), reader


def _read_raw(mhd: Path, header: MetaHeader) -> np.ndarray:
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


def require_finite(mhd: Path, array: np.ndarray) -> None:
    """ScanError when a float volume holds NaN or infinite voxels (they have no HU or label)."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise ScanError(f"{mhd}: {bad} of {array.size} voxels are NaN or infinite")
