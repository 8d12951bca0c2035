"""A synthetic dataset in LUNA16's exact on-disk layout, for offline demos and tests.

Layout written under OUT::

    subset0..subset9/<seriesuid>.mhd + .raw     MET_SHORT HU, little-endian, LUNA16-style header
    seg-lungs-LUNA16/<seriesuid>.mhd + .zraw    MET_UCHAR, zlib: 3 left lung, 4 right lung, 5 trachea
    annotations.csv                              seriesuid,coordX,coordY,coordZ,diameter_mm (world mm)
    nodule_textures.csv                          the same rows plus each nodule's texture class
    phantom.json                                 the options that produced the files

Anatomy is built in world orientation (ITK LPS: +x patient left, +y posterior, +z superior), so
the *left* lung (seg value 3) is the one at larger world x, which is the larger x index for the
identity direction (the image's right side in radiological display). Every fifth scan (and a
single-scan dataset's only scan) is stored with a flipped direction, alternately z-flipped and
x/y-flipped, to exercise readers; its annotations are still exact world positions.

Nodule counts, diameters and z origins follow LUNA16 (:mod:`lungforge.phantom.luna16_statistics`);
nodule cross-sections follow the LIDC contours (:mod:`lungforge.core.nodule_shape`), their interiors
LIDC's texture classes in LIDC's proportions (:mod:`lungforge.phantom.textures`). A nodule always
holds the voxel at its annotated centre, so it survives any test resolution as one voxel.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np

from lungforge.core.choices import MAX_SIZE_PX
from lungforge.core.errors import ConfigError, LungforgeError
from lungforge.core.seeds import check_seed
from lungforge.luna16.scans import ANNOTATION_COLUMNS, ANNOTATIONS_FILE, SEG_DIR, index_to_world
from lungforge.phantom.anatomy import render_scan
from lungforge.phantom.geometry import PhantomGeometry, sample_geometry

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
MARKER_FILE = "phantom.json"
TEXTURES_FILE = "nodule_textures.csv"
"""Side data: annotations.csv's rows with a `texture` column (ground-glass, part-solid, solid, calcified)."""


def make_phantom(out: Path, *, scans: int = 10, size: int = 512, seed: int = 0, overwrite: bool = False) -> dict:
    """Write `scans` synthetic CT scans of `size`×`size` pixels in LUNA16 layout under `out`.

    Scan k goes to subset(k mod 10) and depends only on (seed, k, size), so the files are
    byte-identical for the same arguments. Returns a JSON-ready summary: path, scans, nodules,
    subsets, size, seed, series (uids), flipped (uids stored with a non-identity direction).
    """
    if scans < 1:
        raise ConfigError("scans", f"scans must be >= 1, got {scans}")
    if not 32 <= size <= MAX_SIZE_PX:
        raise ConfigError("size", f"size must be 32..{MAX_SIZE_PX} pixels, got {size}")
    check_seed(seed)
    out = Path(out)
    _prepare_out(out, overwrite)
    (out / SEG_DIR).mkdir(parents=True)
    rows: list[str] = [",".join(ANNOTATION_COLUMNS)]
    textures: list[str] = [",".join((*ANNOTATION_COLUMNS, "texture"))]
    uids: list[str] = []
    flipped: list[str] = []
    for k in range(scans):
        rng = np.random.default_rng([seed, k])
        uid = _series_uid(rng)
        geometry = sample_geometry(rng, size, flip=_flip_for(k, scans))
        hu, seg, nodules = render_scan(rng, geometry)
        subset = out / f"subset{k % 10}"
        subset.mkdir(exist_ok=True)
        _write_mhd(subset / f"{uid}.mhd", geometry.to_stored(hu), geometry, compressed=False)
        _write_mhd(out / SEG_DIR / f"{uid}.mhd", geometry.to_stored(seg), geometry, compressed=True)
        for nodule in nodules:
            index = geometry.stored_index(nodule.index_xyz)[None].astype(np.float64)
            world = index_to_world(index, geometry.stored_origin_mm, geometry.spacing_mm, geometry.direction)[0]
            rows.append(f"{uid},{world[0]:.6f},{world[1]:.6f},{world[2]:.6f},{nodule.diameter_mm:.6f}")
            textures.append(f"{rows[-1]},{nodule.texture}")
        uids.append(uid)
        if any(geometry.flip):
            flipped.append(uid)
    (out / ANNOTATIONS_FILE).write_text("\n".join(rows) + "\n")
    (out / TEXTURES_FILE).write_text("\n".join(textures) + "\n")
    summary = {
        "path": str(out),
        "scans": scans,
        "nodules": len(rows) - 1,
        "subsets": sorted({k % 10 for k in range(scans)}),
        "size": size,
        "seed": seed,
        "series": uids,
        "flipped": flipped,
    }
    (out / MARKER_FILE).write_text(json.dumps({"scans": scans, "size": size, "seed": seed}, indent=2) + "\n")
    return summary


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty `out` unless overwrite; never delete a directory we did not write."""
    if out.exists() and not out.is_dir():
        raise LungforgeError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise LungforgeError(f"{out}: directory is not empty (use --overwrite to replace a phantom dataset)")
        if not (out / MARKER_FILE).is_file():
            raise LungforgeError(f"{out}: not a phantom dataset (no {MARKER_FILE}); refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _flip_for(k: int, scans: int) -> tuple[bool, bool, bool]:
    if k % 5 != 1 and scans > 1:
        return (False, False, False)
    return (False, False, True) if (k // 5) % 2 == 0 else (True, True, False)


def _series_uid(rng: np.random.Generator) -> str:
    digits = rng.integers(0, 10, size=30)
    digits[0] = rng.integers(1, 10)
    return UID_PREFIX + "".join(map(str, digits))


def _format(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) if float(v) != int(v) else str(int(v)) for v in np.asarray(values).ravel())


def _write_mhd(mhd: Path, array: np.ndarray, geometry: PhantomGeometry, *, compressed: bool) -> None:
    """Write a LUNA16-style MetaImage header and its `.raw` (or zlib `.zraw`) data file."""
    element = {np.dtype(np.int16): "MET_SHORT", np.dtype(np.uint8): "MET_UCHAR"}[array.dtype]
    data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    data_file = mhd.with_suffix(".zraw" if compressed else ".raw")
    if compressed:
        data = zlib.compress(data, 1)
    data_file.write_bytes(data)
    nz, ny, nx = array.shape
    lines = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        f"CompressedData = {compressed}",
        *([f"CompressedDataSize = {len(data)}"] if compressed else []),
        # MetaIO stores the direction column by column (the transpose of ITK's row-major matrix).
        f"TransformMatrix = {_format(geometry.direction.T)}",
        f"Offset = {_format(geometry.stored_origin_mm)}",
        "CenterOfRotation = 0 0 0",
        "AnatomicalOrientation = RAI",
        f"ElementSpacing = {_format(geometry.spacing_mm)}",
        f"DimSize = {nx} {ny} {nz}",
        f"ElementType = {element}",
        f"ElementDataFile = {data_file.name}",
    ]
    mhd.write_text("\n".join(lines) + "\n")
