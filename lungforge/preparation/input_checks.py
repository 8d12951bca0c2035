"""Checks that the inputs of `prepare` agree before a scan is stored (each returns a reason or None).

A file that reads without error can still be wrong: a header whose ElementType or byte order does
not match its data (values that are not HU), a seg mask laid out differently from its scan (a
mirrored seg swaps the lungs), two series that share one data file. Each check gives the
one-phrase reason a scan is skipped for.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from lungforge.luna16.metaimage import Geometry

MAX_HU = 4000
"""CT numbers stop near 3071 (12-bit scanners); a few metal voxels may reach beyond, whole organs not."""
MAX_SHARE_ABOVE = 0.01
"""Largest share of voxels above MAX_HU in a plausible scan (metal implants are well under 0.1 %)."""
AIR_HU = (-1150.0, -500.0)
"""Air and aerated lung: the air around the patient reads about -1000 HU, lung -900 to -700 HU."""
MIN_AIR_SHARE = 0.03
"""Least share of voxels (padding aside) in AIR_HU: a chest CT holds lungs, 10-50 % of its voxels."""
PADDING_BELOW_HU = -1500.0
"""Values below any tissue or air: the padding outside a circular field of view (-2000, -3024)."""
_SAMPLE_VOXELS = 1 << 20

ORIGIN_TOLERANCE_VOXELS = 0.1
"""A seg mask's origin may differ from its scan's by a tenth of a voxel (header rounding)."""
SPACING_TOLERANCE = 1e-3
"""Relative spacing difference allowed between a seg mask and its scan."""
DIRECTION_TOLERANCE = 1e-3
"""Largest difference allowed between the direction matrices' entries."""

_PROBE_BYTES = 1 << 16
_PROBES_AT = (0.25, 0.5, 0.75)


def hu_problem(hu: np.ndarray) -> str | None:
    """Why a (Z, Y, X) volume does not hold CT numbers in HU, or None when it plausibly does.

    Judged on evenly spaced whole slices, about 1 Mi voxels or more: too many voxels above MAX_HU (a signed
    scan read as unsigned, or with the wrong byte order), or too few air-like voxels among those
    above the field-of-view padding (values shifted, scaled or scrambled).
    """
    plane = int(np.prod(hu.shape[1:]))
    sample = hu[:: max(1, hu.size // max(plane, 1) * plane // _SAMPLE_VOXELS)].reshape(-1)
    above = np.count_nonzero(sample > MAX_HU) / max(sample.size, 1)
    if above > MAX_SHARE_ABOVE:
        return (
            f"{100 * above:.0f} % of voxels are above {MAX_HU} HU (CT values stop near 3071): not HU "
            "(wrong ElementType, e.g. MET_USHORT for signed data, or wrong BinaryDataByteOrderMSB?)"
        )
    body = sample[sample >= PADDING_BELOW_HU]
    air = np.count_nonzero((body >= AIR_HU[0]) & (body <= AIR_HU[1])) / body.size if body.size else 0.0
    if air < MIN_AIR_SHARE:
        p1, p50, p99 = np.percentile(body, (1, 50, 99)) if body.size else (np.nan,) * 3
        return (
            f"no air: {100 * air:.1f} % of voxels in {AIR_HU[0]:g}..{AIR_HU[1]:g} HU (air, lung; expected at least "
            f"{100 * MIN_AIR_SHARE:g} %), values {p1:g} / {p50:g} / {p99:g} HU at the 1st / 50th / 99th percentile: "
            "not HU (wrong ElementType, byte order or rescale?)"
        )
    return None


def geometry_difference(scan: Geometry, seg: Geometry) -> str | None:
    """How a seg mask's geometry differs from its scan's beyond the tolerances, or None.

    Both are read in their file order; a mask with another origin, spacing or direction (a
    mirrored mask) would put its lungs on other voxels than the scan's.
    """
    if seg.shape_zyx != scan.shape_zyx:
        return f"seg shape {seg.shape_zyx} differs from scan shape {scan.shape_zyx}"
    if not np.allclose(seg.spacing_mm, scan.spacing_mm, rtol=SPACING_TOLERANCE, atol=0.0):
        return f"seg spacing {_mm(seg.spacing_mm)} mm differs from scan spacing {_mm(scan.spacing_mm)} mm"
    if np.abs(seg.direction - scan.direction).max() > DIRECTION_TOLERANCE:
        return (
            f"seg direction {_mm(seg.direction.ravel())} differs from scan direction {_mm(scan.direction.ravel())} "
            "(a mirrored or rotated mask would swap or misplace the lungs)"
        )
    if np.abs(seg.origin_mm - scan.origin_mm).max() > ORIGIN_TOLERANCE_VOXELS * scan.spacing_mm.min():
        return f"seg origin {_mm(seg.origin_mm)} mm differs from scan origin {_mm(scan.origin_mm)} mm"
    return None


def _mm(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:g}" for v in np.round(np.asarray(values, dtype=np.float64), 4)) + ")"


def shared_data(files: dict[str, Path]) -> dict[str, list[str]]:
    """Series whose data files hold the same bytes: {uid: the other uids with its data}.

    `files` maps series uids to their data files. Two files are the same when they are one file
    (a symlink or hard link: same device and inode) or have equal content (equal size, equal
    64 KiB probes at a quarter, half and three quarters of the file, then equal sha256). Files
    that cannot be read are left to the reader to report.
    """
    groups: dict[tuple, list[str]] = defaultdict(list)
    by_size: dict[int, list[tuple[str, Path]]] = defaultdict(list)
    for uid, path in files.items():
        try:
            stat = os.stat(path)
        except OSError:
            continue
        groups[("inode", stat.st_dev, stat.st_ino)].append(uid)
        by_size[stat.st_size].append((uid, path))
    for size, same_size in by_size.items():
        if len(same_size) < 2:
            continue
        probed: dict[bytes, list[tuple[str, Path]]] = defaultdict(list)
        for uid, path in same_size:
            probe = _probe(path, size)
            if probe is not None:
                probed[probe].append((uid, path))
        for candidates in probed.values():
            if len(candidates) < 2:
                continue
            for uid, path in candidates:
                digest = _sha256(path)
                if digest is not None:
                    groups[("content", digest)].append(uid)
    shared: dict[str, set[str]] = defaultdict(set)
    for uids in groups.values():
        for uid in uids:
            shared[uid] |= set(uids) - {uid}
    return {uid: sorted(others) for uid, others in sorted(shared.items()) if others}


def _probe(path: Path, size: int) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            chunks = []
            for at in _PROBES_AT:
                fh.seek(int(at * max(0, size - _PROBE_BYTES)))
                chunks.append(fh.read(_PROBE_BYTES))
    except OSError:
        return None
    return hashlib.sha256(b"".join(chunks)).digest()


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
