"""A synthetic dataset in LUNA16's exact on-disk layout, for offline demos and tests.

Layout written under OUT::

    subset0..subset9/<seriesuid>.mhd + .raw     MET_SHORT HU, little-endian, LUNA16-style header
    seg-lungs-LUNA16/<seriesuid>.mhd + .zraw    MET_UCHAR, zlib: 3 left lung, 4 right lung, 5 trachea
    annotations.csv                              seriesuid,coordX,coordY,coordZ,diameter_mm (world mm)
    phantom.json                                 the options that produced the files

Anatomy is built in world orientation (ITK LPS: +x patient left, +y posterior, +z superior), so
the *left* lung (seg value 3) is the one at larger world x, which is the larger x index for the
identity direction (the image's right side in radiological display). Every fifth scan (and a
single-scan dataset's only scan) is stored with a flipped direction, alternately z-flipped and
x/y-flipped, to exercise readers; its annotations are still exact world positions.

Nodule counts, diameters and z origins follow LUNA16 (:mod:`lungforge.data.luna16_statistics`);
nodule cross-sections follow the LIDC contours (:mod:`lungforge.nodule_shape`). A nodule always
holds the voxel at its annotated centre, so it survives any test resolution as one voxel.
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungforge.data.luna16 import ANNOTATION_COLUMNS, ANNOTATIONS_FILE, SEG_DIR, index_to_world
from lungforge.data.luna16_statistics import sample_diameters_mm, sample_nodule_count, sample_z_origin_mm
from lungforge.errors import LungforgeError
from lungforge.nodule_shape import sample_outline
from lungforge.seeds import check_seed

UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
MARKER_FILE = "phantom.json"
SEG_LEFT, SEG_RIGHT, SEG_TRACHEA = 3, 4, 5
Z_EXTENT_LOG_SD = 0.15
"""A nodule's z semi-axis is its equivalent radius times a log-normal factor (natural-log sd)."""
FOV_PAD_HU = (-2000, -3024)


@dataclass(frozen=True)
class PhantomGeometry:
    """Where a phantom scan sits in the world.

    shape_zyx: voxels; spacing_mm, origin_mm: (3,) x, y, z of the anatomy array (identity
    direction, index 0 = right/anterior/inferior corner); flip: (3,) bool per x, y, z axis of the
    stored file.
    """

    shape_zyx: tuple[int, int, int]
    spacing_mm: np.ndarray
    origin_mm: np.ndarray
    flip: tuple[bool, bool, bool]

    @property
    def direction(self) -> np.ndarray:
        """(3, 3) direction of the stored file (diagonal ±1)."""
        return np.diag(np.where(self.flip, -1.0, 1.0))

    @property
    def stored_origin_mm(self) -> np.ndarray:
        """(3,) world x, y, z of stored voxel 0: the far corner along flipped axes."""
        extent = self.spacing_mm * (np.asarray(self.shape_zyx[::-1]) - 1)
        return np.round(self.origin_mm + np.where(self.flip, extent, 0.0), 6)

    def to_stored(self, array: np.ndarray) -> np.ndarray:
        """Reorder a (Z, Y, X) anatomy array into the stored file's index order."""
        axes = tuple(2 - axis for axis in range(3) if self.flip[axis])
        return np.flip(array, axis=axes) if axes else array

    def stored_index(self, index_xyz: np.ndarray) -> np.ndarray:
        """(N, 3) x, y, z indices of the anatomy array -> indices of the stored file."""
        size = np.asarray(self.shape_zyx[::-1]) - 1
        return np.where(self.flip, size - index_xyz, index_xyz)


@dataclass(frozen=True)
class PhantomNodule:
    """A rendered nodule: its centre voxel (x, y, z) in the anatomy array and diameter in mm."""

    index_xyz: np.ndarray
    diameter_mm: float


def make_phantom(out: Path, *, scans: int = 10, size: int = 512, seed: int = 0, overwrite: bool = False) -> dict:
    """Write `scans` synthetic CT scans of `size`×`size` pixels in LUNA16 layout under `out`.

    Scan k goes to subset(k mod 10) and depends only on (seed, k, size), so the files are
    byte-identical for the same arguments. Returns a JSON-ready summary: path, scans, nodules,
    subsets, size, seed, series (uids), flipped (uids stored with a non-identity direction).
    """
    if scans < 1:
        raise LungforgeError(f"scans must be >= 1, got {scans}")
    if size < 32:
        raise LungforgeError(f"size must be >= 32 pixels, got {size}")
    check_seed(seed)
    out = Path(out)
    _prepare_out(out, overwrite)
    (out / SEG_DIR).mkdir(parents=True)
    rows: list[str] = [",".join(ANNOTATION_COLUMNS)]
    uids: list[str] = []
    flipped: list[str] = []
    for k in range(scans):
        rng = np.random.default_rng([seed, k])
        uid = _series_uid(rng)
        geometry = _geometry(rng, size, flip=_flip_for(k, scans))
        hu, seg, nodules = render_scan(rng, geometry)
        subset = out / f"subset{k % 10}"
        subset.mkdir(exist_ok=True)
        _write_mhd(subset / f"{uid}.mhd", geometry.to_stored(hu), geometry, compressed=False)
        _write_mhd(out / SEG_DIR / f"{uid}.mhd", geometry.to_stored(seg), geometry, compressed=True)
        for nodule in nodules:
            index = geometry.stored_index(nodule.index_xyz)[None].astype(np.float64)
            world = index_to_world(index, geometry.stored_origin_mm, geometry.spacing_mm, geometry.direction)[0]
            rows.append(f"{uid},{world[0]:.6f},{world[1]:.6f},{world[2]:.6f},{nodule.diameter_mm:.6f}")
        uids.append(uid)
        if any(geometry.flip):
            flipped.append(uid)
    (out / ANNOTATIONS_FILE).write_text("\n".join(rows) + "\n")
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


def _geometry(rng: np.random.Generator, size: int, flip: tuple[bool, bool, bool]) -> PhantomGeometry:
    """LUNA16-like spacing (0.6–0.8 mm in-plane and 1.25–2.5 mm at 512 px) scaled to `size`."""
    spacing_xy = round(rng.uniform(0.6, 0.8) * 512 / size, 6)
    spacing_z512 = float(rng.choice([1.25, 2.0, 2.5], p=[0.2, 0.3, 0.5]))
    slices512 = int(np.clip(round(rng.uniform(200.0, 280.0) / spacing_z512), 64, 120))
    slices = max(8, round(slices512 * np.sqrt(size / 512)))
    spacing_z = round(slices512 * spacing_z512 / slices, 6)
    fov_mm = size * spacing_xy
    centre = np.array([rng.uniform(-15, 15), rng.uniform(-20, 20)])
    origin_xy = np.round(centre - fov_mm / 2, 3)
    origin = np.array([origin_xy[0], origin_xy[1], round(sample_z_origin_mm(rng), 3)])
    return PhantomGeometry(
        shape_zyx=(slices, size, size),
        spacing_mm=np.array([spacing_xy, spacing_xy, spacing_z]),
        origin_mm=origin,
        flip=flip,
    )


def _ellipse(dx: np.ndarray, dy: np.ndarray, ax: np.ndarray | float, ay: np.ndarray | float) -> np.ndarray:
    """Boolean inside-ellipse test; semi-axes in mm (0 gives an empty ellipse)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (dx / ax) ** 2 + (dy / ay) ** 2 <= 1.0


def render_scan(rng: np.random.Generator, geometry: PhantomGeometry) -> tuple[np.ndarray, np.ndarray, list[PhantomNodule]]:
    """Render one scan in the anatomy frame (identity direction).

    Returns hu (Z, Y, X) int16 HU, seg (Z, Y, X) uint8 LUNA16 seg values, and the nodules.
    """
    nz, ny, nx = geometry.shape_zyx
    sx, sy, sz = geometry.spacing_mm
    fov_radius = nx * sx / 2
    body_c = np.array([rng.uniform(-10, 10), rng.uniform(-15, 5)])
    field_c = geometry.origin_mm[:2] + fov_radius
    # In-plane coordinates (mm) relative to the body centre, as broadcastable (1, 1, X) / (1, Y, 1).
    x = (geometry.origin_mm[0] + np.arange(nx) * sx - field_c[0] - body_c[0]).astype(np.float32)
    y = (geometry.origin_mm[1] + np.arange(ny) * sy - field_c[1] - body_c[1]).astype(np.float32)
    X, Y = x[None, None, :], y[None, :, None]
    X2, Y2 = X[0], Y[0]

    body_a, body_b = min(rng.uniform(145, 165), 0.93 * fov_radius), rng.uniform(100, 118)
    fat, wall = rng.uniform(6, 15), rng.uniform(10, 15)

    # Table under the patient (posterior = +y), curved, one band of HU in -200..200.
    base = np.full((ny, nx), -1000.0, dtype=np.float32)
    table_top = body_b + rng.uniform(5, 15) + 0.0008 * X2**2
    table = (Y2 >= table_top) & (Y2 <= table_top + rng.uniform(6, 12)) & (np.abs(X2) < 0.85 * fov_radius)
    base[table] = rng.uniform(-200, 200)

    # Body: subcutaneous fat rim around muscle; vertebra (cortex, disc slices), canal, sternum.
    base[_ellipse(X2, Y2, body_a, body_b)] = rng.uniform(-120, -80)
    base[_ellipse(X2, Y2, body_a - fat, body_b - fat)] = rng.uniform(30, 50)
    inner_a, inner_b = body_a - fat - wall, body_b - fat - wall
    spine_r = rng.uniform(16, 21)
    spine_y = inner_b - spine_r + rng.uniform(0, 6)
    spine = _ellipse(X2, Y2 - spine_y, spine_r, spine_r)
    base[spine] = rng.uniform(300, 450)
    base[spine & ~_ellipse(X2, Y2 - spine_y, spine_r - 2.5, spine_r - 2.5)] = rng.uniform(600, 800)
    base[_ellipse(X2, Y2 - spine_y - spine_r - 8, 7, 7)] = 20.0
    base[_ellipse(X2, Y2 + inner_b + wall / 2, 14, 5)] = rng.uniform(300, 450)
    hu = np.broadcast_to(base, geometry.shape_zyx).copy()
    seg = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    flat = hu.reshape(nz, -1)
    z_mm = (np.arange(nz) * sz).astype(np.float32)
    disc = np.mod(z_mm + rng.uniform(0, 28), 28.0) < 5.0
    flat[np.ix_(np.flatnonzero(disc), np.flatnonzero(spine))] = 80.0

    # Stack fraction t (0 inferior, 1 superior) and lung fraction u (0 base, 1 apex).
    t = (np.arange(nz, dtype=np.float32) + 0.5) / nz
    t_base, t_apex = rng.uniform(-0.05, 0.03), rng.uniform(0.8, 0.9)
    u = (t - t_base) / (t_apex - t_base)
    in_lungs = (u >= 0) & (u <= 1)
    U = u[:, None, None]

    # Ribs: arcs in the chest wall whose angular phase turns with z, so they come and go per slice.
    band = _ellipse(X2, Y2, inner_a + wall * 0.7, inner_b + wall * 0.7) & ~_ellipse(X2, Y2, inner_a + wall * 0.25, inner_b + wall * 0.25)
    theta = np.arctan2(Y2, X2)
    band &= np.abs(theta + np.pi / 2) > 0.45
    ring = np.flatnonzero(band)
    phase = (2 * np.pi * z_mm / rng.uniform(30, 40)).astype(np.float32)
    k_theta = 11 * theta.ravel()[ring]
    wave = np.cos(k_theta)[None] * np.cos(phase)[:, None] - np.sin(k_theta)[None] * np.sin(phase)[:, None]
    ribs = (wave > 0.55) & (t[:, None] < t_apex + 0.05)
    flat[:, ring] = np.where(ribs, np.float32(rng.uniform(550, 800)), flat[:, ring])

    # Chest block: everything below lies inside the inner chest wall, so work on that box only.
    cols = np.flatnonzero(np.abs(x) <= inner_a + 1)
    rows_y = np.flatnonzero(np.abs(y) <= inner_b + 1)
    xs, ys = slice(cols[0], cols[-1] + 1), slice(rows_y[0], rows_y[-1] + 1)
    Xc, Yc = X[:, :, xs], Y[:, ys, :]
    hu_c, seg_c = hu[:, ys, xs], seg[:, ys, xs]

    # Mediastinum (central column), heart, descending aorta: soft tissue that bounds the lungs.
    med_w = rng.uniform(20, 28) * (1.15 - 0.3 * np.clip(U, 0, 1))
    mediastinum = (np.abs(Xc) < med_w) & (Yc < spine_y) & (Yc > -inner_b)
    heart_c = np.array([rng.uniform(15, 25), rng.uniform(-40, -25)])
    heart_s = np.sqrt(np.clip(1 - ((U - 0.3) / 0.25) ** 2, 0, 1))
    heart = _ellipse(Xc - heart_c[0], Yc - heart_c[1], rng.uniform(45, 55) * heart_s, rng.uniform(38, 45) * heart_s)
    aorta_c = np.array([rng.uniform(18, 26), spine_y - spine_r - rng.uniform(8, 14)])
    heart |= _ellipse(Xc[0] - aorta_c[0], Yc[0] - aorta_c[1], 12, 12)[None] & (U < 0.75)
    hu_c[mediastinum] = rng.uniform(-110, -60)
    hu_c[heart] = rng.uniform(30, 50)

    # Lungs: ellipses narrowing to the apex, carved by the diaphragm dome at the base.
    apex_scale = np.sqrt(np.clip((1 - U) / 0.3, 0, 1))
    dome_scale = 0.95 * np.sqrt(np.clip(1 - U / 0.25, 0, 1))
    allowed = ~(mediastinum | heart)
    allowed &= (_ellipse(Xc[0], Yc[0], inner_a, inner_b) & ~_ellipse(Xc[0], Yc[0] - spine_y, spine_r + 6, spine_r + 6))[None]
    allowed &= in_lungs[:, None, None]
    lung_c = np.zeros(allowed.shape, dtype=bool)
    for side, value in ((1.0, SEG_LEFT), (-1.0, SEG_RIGHT)):
        lateral = inner_a - rng.uniform(0, 4)
        cx, ax = side * (lateral + 5) / 2, (lateral - 5) / 2
        cy = rng.uniform(0, 8) + 8 * U
        ay = inner_b - rng.uniform(2, 8)
        lung = _ellipse(Xc - cx, Yc - cy, ax * apex_scale, ay * apex_scale)
        lung &= ~_ellipse(Xc - cx + side * 5, Yc - cy + 10, ax * dome_scale, ay * dome_scale)
        lung &= allowed
        seg_c[lung] = value
        lung_c |= lung
    gradient = rng.uniform(-880, -820) + 50 * np.clip(Yc / inner_b, -1, 1)
    hu_c[lung_c] = np.broadcast_to(gradient, lung_c.shape)[lung_c]
    lung_any = np.zeros(geometry.shape_zyx, dtype=bool)
    lung_any[:, ys, xs] = lung_c

    hilum_mm = (float(med_w.min()) + 8, heart_c[1] + 10)
    _vessels(rng, hu, seg, geometry, lung_any, hilum_mm=hilum_mm, grid_start_mm=(float(x[0]), float(y[0])), u=u)
    _trachea(rng, hu, seg, X, Y, u, carina=rng.uniform(0.6, 0.7), med_w=float(med_w.min()), spine_y=spine_y - spine_r)
    nodules = _nodules(rng, hu, seg, geometry, u)

    hu += rng.standard_normal(size=hu.shape, dtype=np.float32) * np.float32(rng.uniform(15, 25))
    outside = (x[None, :] - x.mean()) ** 2 + (y[:, None] - y.mean()) ** 2 > fov_radius**2
    hu[:, outside] = FOV_PAD_HU[int(rng.integers(len(FOV_PAD_HU)))]
    return np.rint(hu, out=hu).astype(np.int16), seg, nodules


def _ball(radius_mm: float, spacing_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (K, 3) z, y, x offsets of voxels within radius_mm, and their (K, 3) offsets in mm."""
    reach = np.floor(radius_mm / spacing_zyx).astype(int)
    grid = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), axis=-1).reshape(-1, 3)
    mm = grid * spacing_zyx
    keep = (mm**2).sum(axis=1) <= radius_mm**2
    return grid[keep], mm[keep]


def _vessels(
    rng: np.random.Generator,
    hu: np.ndarray,
    seg: np.ndarray,
    geometry: PhantomGeometry,
    lung: np.ndarray,
    *,
    hilum_mm: tuple[float, float],
    grid_start_mm: tuple[float, float],
    u: np.ndarray,
) -> None:
    """Paint tapering, gently curved vessels from each hilum into the lung (inside `lung` only).

    hilum_mm: lateral distance from the midline and y of both hila, in mm from the body centre;
    grid_start_mm: x, y in the same frame of voxel (0, 0).
    """
    nz, ny, nx = geometry.shape_zyx
    spacing_zyx = geometry.spacing_mm[::-1]
    size_scale = nx / 512
    hilum_k = float(np.clip(np.searchsorted(u, 0.55), 0, nz - 1))
    points, radii = [], []
    for side, value in ((1.0, SEG_LEFT), (-1.0, SEG_RIGHT)):
        candidates = np.flatnonzero(seg.ravel() == value)
        if candidates.size == 0:
            continue
        count = max(6, round(30 * size_scale**0.5))
        targets = np.stack(np.unravel_index(rng.choice(candidates, size=count), seg.shape), axis=1).astype(np.float64)
        hilum = np.array([
            hilum_k,
            (hilum_mm[1] - grid_start_mm[1]) / spacing_zyx[1],
            (side * hilum_mm[0] - grid_start_mm[0]) / spacing_zyx[2],
        ])
        starts = np.repeat(hilum[None], count, axis=0)
        start_r = rng.uniform(2.5, 4.5, size=count)
        # One generation of branches leaving each trunk part-way along it.
        along = rng.uniform(0.3, 0.7, size=count)[:, None]
        branch_targets = np.stack(np.unravel_index(rng.choice(candidates, size=count), seg.shape), axis=1).astype(np.float64)
        starts = np.concatenate([starts, starts + along * (targets - starts)])
        ends = np.concatenate([targets, branch_targets])
        start_r = np.concatenate([start_r, start_r * (1 - 0.6 * along[:, 0]) * 0.8])
        for p0, p1, r0 in zip(starts, ends, start_r):
            length_mm = float(np.linalg.norm((p1 - p0) * spacing_zyx))
            n = max(2, int(length_mm / max(0.5 * spacing_zyx[1:].min(), 0.6)))
            tau = np.linspace(0.0, 1.0, n)[:, None]
            bend = rng.normal(0.0, 0.08, size=3) * length_mm / spacing_zyx
            points.append(p0 + tau * (p1 - p0) + np.sin(np.pi * tau) * bend)
            radii.append(r0 * (1 - 0.75 * tau[:, 0]))
    if not points:
        return
    centres = np.rint(np.concatenate(points)).astype(np.int64)
    radius = np.concatenate(radii)
    flat_hu, flat_lung = hu.reshape(-1), lung.reshape(-1)
    # Thin to thick so that thick (brighter) vessels win where they overlap.
    levels = np.round(radius * 2) / 2
    for level in np.unique(levels):
        offsets, _ = _ball(max(level, 0.5), spacing_zyx)
        sel = np.unique(centres[levels == level], axis=0)
        voxels = (sel[:, None, :] + offsets[None]).reshape(-1, 3)
        inside = np.all((voxels >= 0) & (voxels < np.array(hu.shape)), axis=1)
        index = np.ravel_multi_index(voxels[inside].T, hu.shape)
        index = index[flat_lung[index]]
        flat_hu[index] = np.float32(np.clip(-700 + 280 * level, -600, 50))


def _trachea(
    rng: np.random.Generator,
    hu: np.ndarray,
    seg: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    u: np.ndarray,
    *,
    carina: float,
    med_w: float,
    spine_y: float,
) -> None:
    """Air-filled trachea from the top slice down to the carina, then two main bronchi."""
    radius = rng.uniform(8, 11)
    ty = spine_y - radius - rng.uniform(6, 12)
    tx = rng.uniform(-3, 3)
    bronchus_len = 0.12
    above = u >= carina
    spread = np.clip((carina - u) / bronchus_len, 0, 1)
    below = (u < carina) & (u >= carina - bronchus_len)
    z_tr = np.flatnonzero(above)
    z_br = np.flatnonzero(below)
    box_x = np.flatnonzero(np.abs(X[0, 0] - tx) < med_w + 45)
    box_y = np.flatnonzero(np.abs(Y[0, :, 0] - ty) < radius + 30)
    if box_x.size == 0 or box_y.size == 0:
        return
    xs = slice(box_x[0], box_x[-1] + 1)
    ys = slice(box_y[0], box_y[-1] + 1)
    Xb, Yb = X[:, :, xs], Y[:, ys, :]
    airway = np.zeros((hu.shape[0], Yb.shape[1], Xb.shape[2]), dtype=bool)
    airway[z_tr] = _ellipse(Xb - tx, Yb - ty, radius, radius)[0]
    for side in (1.0, -1.0):
        cx = tx + side * spread[z_br] * (med_w + 25)
        airway[z_br] |= _ellipse(Xb - cx[:, None, None], Yb - ty - 5 * spread[z_br][:, None, None], 6.0, 6.0)
    hu[:, ys, xs][airway] = -1000.0
    seg[:, ys, xs][airway] = SEG_TRACHEA


def _nodules(rng: np.random.Generator, hu: np.ndarray, seg: np.ndarray, geometry: PhantomGeometry, u: np.ndarray) -> list[PhantomNodule]:
    """Solid nodules with LUNA16's count per scan and diameters, about a third juxtapleural.

    Count and diameters come from :mod:`lungforge.data.luna16_statistics` (a third of the scans
    have none); shapes from :func:`nodule_voxels`. Each centre is a voxel inside a lung (seg 3
    or 4), placed largest first. A juxtapleural nodule is centred a little inside the lung wall
    so that 8–45% of its voxels lie outside the lung; the others lie wholly inside. A nodule
    that cannot be placed as drawn falls back to any position inside the lung, or is dropped
    when none is found.
    """
    count = sample_nodule_count(rng)
    if count == 0:
        return []
    diameters = np.sort(sample_diameters_mm(rng, count))[::-1]
    spacing_zyx = geometry.spacing_mm[::-1]
    lung = (seg == SEG_LEFT) | (seg == SEG_RIGHT)
    rows = np.flatnonzero((u >= 0.2) & (u <= 0.85))
    if rows.size == 0 or not lung[rows].any():
        rows = np.flatnonzero(lung.any(axis=(1, 2)))
    if rows.size == 0:
        return []
    block = lung[rows]
    edge = block & ~(np.roll(block, 1, 1) & np.roll(block, -1, 1) & np.roll(block, 1, 2) & np.roll(block, -1, 2))
    interior, wall = np.flatnonzero(block.ravel()), np.flatnonzero(edge.ravel())
    shape = np.array(hu.shape)
    placed: list[PhantomNodule] = []
    for diameter in (float(d) for d in diameters):
        juxtapleural = rng.random() < 0.35
        offsets = nodule_voxels(rng, diameter, spacing_zyx)
        fallback = None
        for _ in range(300):
            k, j, i = np.unravel_index(rng.choice(wall if juxtapleural else interior), block.shape)
            centre = np.array([rows[k], j, i])
            if juxtapleural:
                angle = rng.uniform(0, 2 * np.pi)
                step = 0.35 * diameter * np.array([0.0, np.sin(angle), np.cos(angle)]) / spacing_zyx
                centre = centre + np.rint(step).astype(np.int64)
            voxels = centre + offsets
            if not np.all((voxels >= 0) & (voxels < shape)) or not lung[tuple(centre)]:
                continue
            if any(np.linalg.norm((centre - p.index_xyz[::-1]) * spacing_zyx) < (diameter + p.diameter_mm) / 2 + 2 for p in placed):
                continue
            fraction = lung[tuple(voxels.T)].mean()
            if (0.55 <= fraction <= 0.92) if juxtapleural else fraction == 1.0:
                break
            if fallback is None:
                fallback = centre
        else:
            if fallback is None:
                continue
            centre = fallback
        voxels = centre + offsets
        voxels = voxels[np.all((voxels >= 0) & (voxels < shape), axis=1)]
        texture = rng.normal(0.0, 8.0, size=len(voxels))
        hu[tuple(voxels.T)] = (rng.uniform(0, 50) + texture).astype(np.float32)
        placed.append(PhantomNodule(index_xyz=centre[::-1].copy(), diameter_mm=round(diameter, 4)))
    return placed


def nodule_voxels(rng: np.random.Generator, diameter_mm: float, spacing_zyx_mm: np.ndarray) -> np.ndarray:
    """(K, 3) integer z, y, x offsets of a nodule's voxels around its centre voxel (always in).

    Every axial section is the nodule's outline (:func:`lungforge.nodule_shape.sample_outline`,
    equivalent diameter `diameter_mm` at the centre), shrinking as an ellipsoid does towards
    the z semi-axis: the equivalent radius times a log-normal factor (Z_EXTENT_LOG_SD). So the
    central axial section is the largest and follows the LIDC contour statistics.
    """
    outline = sample_outline(rng, diameter_mm)
    radius = diameter_mm / 2
    z_radius = radius * float(np.exp(rng.normal(0.0, Z_EXTENT_LOG_SD)))
    offsets, mm = _ball(radius * max(outline.reach(), z_radius / radius), spacing_zyx_mm)
    z, y, x = mm.T
    shrink = np.sqrt(np.clip(1.0 - (z / z_radius) ** 2, 0.0, None))
    inside = np.hypot(x, y) <= radius * outline.radius(np.arctan2(y, x)) * shrink
    inside[(offsets == 0).all(axis=1)] = True
    return offsets[inside]


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
