"""Phantom anatomy: table, torso, spine, ribs, mediastinum, lungs, vessels, trachea and scanner noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungforge.phantom.geometry import SEG_LEFT, SEG_RIGHT, SEG_TRACHEA, PhantomGeometry, ball, ellipse
from lungforge.phantom.nodules import PhantomNodule, place_nodules

FOV_PAD_HU = (-2000, -3024)


@dataclass(frozen=True)
class _Torso:
    """The torso's in-plane outline (mm, relative to the body centre) and its (Y, X) HU slab."""

    base: np.ndarray
    wall: float
    inner_a: float
    inner_b: float
    spine: np.ndarray
    spine_r: float
    spine_y: float


def render_scan(rng: np.random.Generator, geometry: PhantomGeometry) -> tuple[np.ndarray, np.ndarray, list[PhantomNodule]]:
    """Render one scan in the anatomy frame (identity direction).

    Returns hu (Z, Y, X) int16 HU, seg (Z, Y, X) uint8 LUNA16 seg values, and the nodules.
    Every step draws from `rng` in a fixed order, so a (seed, scan) gives the same files.
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

    torso = _torso(rng, X[0], Y[0], fov_radius)
    hu = np.broadcast_to(torso.base, geometry.shape_zyx).copy()
    seg = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    flat = hu.reshape(nz, -1)
    z_mm = (np.arange(nz) * sz).astype(np.float32)
    disc = np.mod(z_mm + rng.uniform(0, 28), 28.0) < 5.0
    flat[np.ix_(np.flatnonzero(disc), np.flatnonzero(torso.spine))] = 80.0

    # Stack fraction t (0 inferior, 1 superior) and lung fraction u (0 base, 1 apex).
    t = (np.arange(nz, dtype=np.float32) + 0.5) / nz
    t_base, t_apex = rng.uniform(-0.05, 0.03), rng.uniform(0.8, 0.9)
    u = (t - t_base) / (t_apex - t_base)
    _ribs(rng, flat, X[0], Y[0], torso, z_mm, t < t_apex + 0.05)

    # Chest block: everything below lies inside the inner chest wall, so work on that box only.
    cols = np.flatnonzero(np.abs(x) <= torso.inner_a + 1)
    rows_y = np.flatnonzero(np.abs(y) <= torso.inner_b + 1)
    xs, ys = slice(cols[0], cols[-1] + 1), slice(rows_y[0], rows_y[-1] + 1)
    Xc, Yc, U = X[:, :, xs], Y[:, ys, :], u[:, None, None]
    soft, med_w, heart_y = _mediastinum(rng, hu[:, ys, xs], Xc, Yc, U, torso)
    lung_c = _lungs(rng, hu[:, ys, xs], seg[:, ys, xs], Xc, Yc, U, torso, ~soft & ((u >= 0) & (u <= 1))[:, None, None])
    lung_any = np.zeros(geometry.shape_zyx, dtype=bool)
    lung_any[:, ys, xs] = lung_c

    hilum_mm = (med_w + 8, heart_y + 10)
    _vessels(rng, hu, seg, geometry, lung_any, hilum_mm=hilum_mm, grid_start_mm=(float(x[0]), float(y[0])), u=u)
    _trachea(rng, hu, seg, X, Y, u, carina=rng.uniform(0.6, 0.7), med_w=med_w, spine_y=torso.spine_y - torso.spine_r)
    nodules = place_nodules(rng, hu, seg, geometry, u)

    hu += rng.standard_normal(size=hu.shape, dtype=np.float32) * np.float32(rng.uniform(15, 25))
    outside = (x[None, :] - x.mean()) ** 2 + (y[:, None] - y.mean()) ** 2 > fov_radius**2
    hu[:, outside] = FOV_PAD_HU[int(rng.integers(len(FOV_PAD_HU)))]
    return np.rint(hu, out=hu).astype(np.int16), seg, nodules


def _torso(rng: np.random.Generator, X2: np.ndarray, Y2: np.ndarray, fov_radius: float) -> _Torso:
    """One axial HU slab (Y, X) of table, fat rim, muscle, vertebra (cortex), canal and sternum;
    `X2` (1, X) and `Y2` (Y, 1) are mm from the body centre."""
    body_a, body_b = min(rng.uniform(145, 165), 0.93 * fov_radius), rng.uniform(100, 118)
    fat, wall = rng.uniform(6, 15), rng.uniform(10, 15)

    # Table under the patient (posterior = +y), curved, one band of HU in -200..200.
    base = np.full((Y2.shape[0], X2.shape[1]), -1000.0, dtype=np.float32)
    table_top = body_b + rng.uniform(5, 15) + 0.0008 * X2**2
    table = (table_top <= Y2) & (table_top + rng.uniform(6, 12) >= Y2) & (np.abs(X2) < 0.85 * fov_radius)
    base[table] = rng.uniform(-200, 200)

    base[ellipse(X2, Y2, body_a, body_b)] = rng.uniform(-120, -80)
    base[ellipse(X2, Y2, body_a - fat, body_b - fat)] = rng.uniform(30, 50)
    inner_a, inner_b = body_a - fat - wall, body_b - fat - wall
    spine_r = rng.uniform(16, 21)
    spine_y = inner_b - spine_r + rng.uniform(0, 6)
    spine = ellipse(X2, Y2 - spine_y, spine_r, spine_r)
    base[spine] = rng.uniform(300, 450)
    base[spine & ~ellipse(X2, Y2 - spine_y, spine_r - 2.5, spine_r - 2.5)] = rng.uniform(600, 800)
    base[ellipse(X2, Y2 - spine_y - spine_r - 8, 7, 7)] = 20.0
    base[ellipse(X2, Y2 + inner_b + wall / 2, 14, 5)] = rng.uniform(300, 450)
    return _Torso(base, wall, inner_a, inner_b, spine, spine_r, spine_y)


def _ribs(
    rng: np.random.Generator, flat: np.ndarray, X2: np.ndarray, Y2: np.ndarray, torso: _Torso, z_mm: np.ndarray, below_apex: np.ndarray
) -> None:
    """Paint ribs into `flat` (Z, Y·X) HU: arcs in the chest wall whose angular phase turns with
    z, so they come and go per slice; only on the slices `below_apex` (Z,) bool."""
    inner_a, inner_b, wall = torso.inner_a, torso.inner_b, torso.wall
    band = ellipse(X2, Y2, inner_a + wall * 0.7, inner_b + wall * 0.7) & ~ellipse(X2, Y2, inner_a + wall * 0.25, inner_b + wall * 0.25)
    theta = np.arctan2(Y2, X2)
    band &= np.abs(theta + np.pi / 2) > 0.45
    ring = np.flatnonzero(band)
    phase = (2 * np.pi * z_mm / rng.uniform(30, 40)).astype(np.float32)
    k_theta = 11 * theta.ravel()[ring]
    wave = np.cos(k_theta)[None] * np.cos(phase)[:, None] - np.sin(k_theta)[None] * np.sin(phase)[:, None]
    ribs = (wave > 0.55) & below_apex[:, None]
    flat[:, ring] = np.where(ribs, np.float32(rng.uniform(550, 800)), flat[:, ring])


def _mediastinum(
    rng: np.random.Generator, hu_c: np.ndarray, Xc: np.ndarray, Yc: np.ndarray, U: np.ndarray, torso: _Torso
) -> tuple[np.ndarray, float, float]:
    """Paint the mediastinum (central column), heart and descending aorta into the chest block
    `hu_c` (Z, Yc, Xc); returns their (Z, Yc, Xc) bool extent, the narrowest mediastinum
    half-width (mm) and the heart centre's y (mm)."""
    spine_y, spine_r, inner_b = torso.spine_y, torso.spine_r, torso.inner_b
    med_w = rng.uniform(20, 28) * (1.15 - 0.3 * np.clip(U, 0, 1))
    mediastinum = (np.abs(Xc) < med_w) & (Yc < spine_y) & (Yc > -inner_b)
    heart_c = np.array([rng.uniform(15, 25), rng.uniform(-40, -25)])
    heart_s = np.sqrt(np.clip(1 - ((U - 0.3) / 0.25) ** 2, 0, 1))
    heart = ellipse(Xc - heart_c[0], Yc - heart_c[1], rng.uniform(45, 55) * heart_s, rng.uniform(38, 45) * heart_s)
    aorta_c = np.array([rng.uniform(18, 26), spine_y - spine_r - rng.uniform(8, 14)])
    heart |= ellipse(Xc[0] - aorta_c[0], Yc[0] - aorta_c[1], 12, 12)[None] & (U < 0.75)
    hu_c[mediastinum] = rng.uniform(-110, -60)
    hu_c[heart] = rng.uniform(30, 50)
    return mediastinum | heart, float(med_w.min()), float(heart_c[1])


def _lungs(
    rng: np.random.Generator,
    hu_c: np.ndarray,
    seg_c: np.ndarray,
    Xc: np.ndarray,
    Yc: np.ndarray,
    U: np.ndarray,
    torso: _Torso,
    free: np.ndarray,
) -> np.ndarray:
    """Paint both lungs into the chest block (HU and seg values): ellipses narrowing to the apex,
    carved by the diaphragm dome at the base, within the `free` (Z, Yc, Xc) voxels inside the
    chest wall and off the spine. Returns the lungs' (Z, Yc, Xc) bool extent."""
    inner_a, inner_b, spine_y, spine_r = torso.inner_a, torso.inner_b, torso.spine_y, torso.spine_r
    apex_scale = np.sqrt(np.clip((1 - U) / 0.3, 0, 1))
    dome_scale = 0.95 * np.sqrt(np.clip(1 - U / 0.25, 0, 1))
    allowed = free & (ellipse(Xc[0], Yc[0], inner_a, inner_b) & ~ellipse(Xc[0], Yc[0] - spine_y, spine_r + 6, spine_r + 6))[None]
    lung_c = np.zeros(allowed.shape, dtype=bool)
    for side, value in ((1.0, SEG_LEFT), (-1.0, SEG_RIGHT)):
        lateral = inner_a - rng.uniform(0, 4)
        cx, ax = side * (lateral + 5) / 2, (lateral - 5) / 2
        cy = rng.uniform(0, 8) + 8 * U
        ay = inner_b - rng.uniform(2, 8)
        lung = ellipse(Xc - cx, Yc - cy, ax * apex_scale, ay * apex_scale)
        lung &= ~ellipse(Xc - cx + side * 5, Yc - cy + 10, ax * dome_scale, ay * dome_scale)
        lung &= allowed
        seg_c[lung] = value
        lung_c |= lung
    gradient = rng.uniform(-880, -820) + 50 * np.clip(Yc / inner_b, -1, 1)
    hu_c[lung_c] = np.broadcast_to(gradient, lung_c.shape)[lung_c]
    return lung_c


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
    nz, _ny, nx = geometry.shape_zyx
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
        hilum = np.array(
            [
                hilum_k,
                (hilum_mm[1] - grid_start_mm[1]) / spacing_zyx[1],
                (side * hilum_mm[0] - grid_start_mm[0]) / spacing_zyx[2],
            ]
        )
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
        offsets, _ = ball(max(level, 0.5), spacing_zyx)
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
    airway[z_tr] = ellipse(Xb - tx, Yb - ty, radius, radius)[0]
    for side in (1.0, -1.0):
        cx = tx + side * spread[z_br] * (med_w + 25)
        airway[z_br] |= ellipse(Xb - cx[:, None, None], Yb - ty - 5 * spread[z_br][:, None, None], 6.0, 6.0)
    hu[:, ys, xs][airway] = -1000.0
    seg[:, ys, xs][airway] = SEG_TRACHEA
