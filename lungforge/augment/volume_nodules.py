"""Model-free 3-D nodules for real volumes: a real nodule scaled from its donor volume (`paste`) and
a constant-HU ellipsoid (`blob`), each drawn as a patch that blends into a host crop.

Array level, all on isotropic voxels of `spacing_mm`: a patch is a (D, H, W) region around its
nodule's tight mask box, padded by :data:`pad` voxels on every side, with its bool `mask` (the
nodule voxels, one 6-connected component) and the HU it writes there. A patch knows nothing of
where it goes: :func:`~lungforge.augment.volume_placement` chooses the host position and
:meth:`VolumeNodule.render` turns the host's HU crop into the edited one.

Diameter: the requested diameter d (mm) is met in two ways at once. The mask's extent along z is
within one voxel spacing of d (`paste`: round(d / spacing) slices; `blob`: the slices whose
centres the ellipsoid holds), and its volume is that of the sphere of diameter d (its equivalent
diameter, recorded as achieved, is d up to voxelisation; for `paste`, up to the anisotropy bound
below).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from lungforge.augment.blob import AXIS_RATIO
from lungforge.core.labels import LUNG_LABELS, NODULE

SIX = ndimage.generate_binary_structure(3, 1)
"""6-connectivity: an inserted mask is one component under it (and so under 26-connectivity too)."""
MAX_ANISOTROPY = 2.0
"""Largest ratio between a pasted donor's in-plane and through-plane scale factors: a donor flat or
tall in z is reshaped at most this much to reach the requested volume and z extent together."""


def equivalent_diameter_mm(voxels: int | np.ndarray, spacing_mm: float) -> float | np.ndarray:
    """Diameter (mm) of the sphere whose volume equals `voxels` voxels of `spacing_mm` (isotropic)."""
    return (6.0 * np.asarray(voxels, dtype=np.float64) / math.pi) ** (1.0 / 3.0) * spacing_mm


def z_voxels(diameter_mm: float, spacing_mm: float) -> int:
    """The z extent (voxels) of a nodule of `diameter_mm`: the nearest whole number of voxels, at least 1."""
    return max(1, round(diameter_mm / spacing_mm))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a (D, H, W) bool mask (empty when `mask` is)."""
    pieces, count = ndimage.label(mask, structure=SIX)
    if count <= 1:
        return pieces > 0
    return pieces == 1 + int(np.bincount(pieces.ravel())[1:].argmax())


def z_extent(mask: np.ndarray) -> int:
    """Axial slices (voxels along axis 0) holding any voxel of the (D, H, W) `mask`."""
    planes = np.flatnonzero(mask.any(axis=(1, 2)))
    return int(planes[-1] - planes[0] + 1) if planes.size else 0


class VolumeNodule(Protocol):
    """A nodule ready to insert: its (D, H, W) `mask` padded by `pad` voxels around its tight box."""

    @property
    def mask(self) -> np.ndarray: ...

    @property
    def pad(self) -> int: ...

    def render(self, host_hu: np.ndarray, host_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The edited HU (D, H, W) int16 of a host crop the patch's size, and the (D, H, W) bool
        voxels it may change (the edit region; every other voxel is `host_hu`'s exactly)."""
        ...


def _to_int16(hu: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(hu), np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(np.int16)


@dataclass(frozen=True, eq=False)
class PastedNodule:
    """A real nodule resampled to the host's voxels: `hu` (D, H, W) float32 the donor's HU
    (linear), `donor_lung` the donor's lung voxels (nearest) and `mask` the nodule, around which
    `feather` voxels of the donor's texture are blended in (:meth:`render`)."""

    mask: np.ndarray
    hu: np.ndarray
    donor_lung: np.ndarray
    pad: int
    feather: int

    def render(self, host_hu: np.ndarray, host_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """On the mask, the donor's HU replace the host's. In the shell of `feather` voxels around
        it (Euclidean distance from the mask, on host and donor lung alike), the donor's departure
        from its own lung level (the median of its lung in the shell) is added to the host with a
        raised-cosine opacity that is 0 one voxel past the shell: the donor's partial-volume rim
        and nearby texture come along, the host keeps its own lung level, and no seam is left."""
        distance = ndimage.distance_transform_edt(~self.mask)
        alpha = 0.5 * (1.0 + np.cos(np.pi * np.clip(distance / (self.feather + 1), 0.0, 1.0)))
        shell = (distance > 0) & (distance <= self.feather) & self.donor_lung & np.isin(host_label, LUNG_LABELS)
        level = float(np.median(self.hu[shell])) if shell.any() else 0.0
        out = host_hu.astype(np.float64)
        out[shell] += alpha[shell] * (self.hu[shell] - level)
        out[self.mask] = self.hu[self.mask]
        edit = shell | self.mask
        edited = host_hu.copy()
        edited[edit] = _to_int16(out[edit])
        return edited, edit


@dataclass(frozen=True, eq=False)
class BlobNodule:
    """A constant-HU ellipsoid: `occupancy` (D, H, W) float in [0, 1], the fraction of each voxel
    inside it (1 deep inside, a linear ramp one voxel wide across its surface), `mask` the voxels
    whose centre lies inside (occupancy ≥ 0.5), `hu` its constant."""

    mask: np.ndarray
    occupancy: np.ndarray
    hu: float
    pad: int

    def render(self, host_hu: np.ndarray, host_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """host + occupancy · (hu − host): the constant inside, a partial-volume edge at the rim."""
        edit = self.occupancy > 0
        edited = host_hu.copy()
        edited[edit] = _to_int16(host_hu[edit] + self.occupancy[edit] * (self.hu - host_hu[edit].astype(np.float64)))
        return edited, edit


@dataclass(frozen=True, eq=False)
class Donor:
    """One real nodule cut from its volume: `hu` (D, H, W) int16 and `label` (D, H, W) uint8 of a
    crop holding its tight mask box [`lo`, `hi`) (crop voxels, half-open) with room around it;
    `mask` its largest 6-connected component of label-5 voxels inside the box."""

    hu: np.ndarray
    label: np.ndarray
    mask: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def voxels(self) -> int:
        return int(self.mask.sum())

    def median_hu(self) -> float:
        """The median HU of the nodule's own voxels (a blob's constant)."""
        return float(np.median(self.hu[self.mask]))


class Voxels(Protocol):
    """A (Z, Y, X) volume read lazily by slicing (a numpy array, a store's CheckedArray)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any, /) -> Any: ...


def cut_donor(hu: Voxels, label: Voxels, bbox: np.ndarray, margin: int) -> Donor:
    """The donor nodule of box `bbox` (z0, y0, x0, z1, y1, x1, half-open voxels) from a volume's
    (Z, Y, X) `hu` and `label` (array-likes read lazily: only the crop is read), with `margin`
    voxels of room around the box (clipped to the volume)."""
    box_lo, box_hi = np.asarray(bbox[:3], dtype=np.int64), np.asarray(bbox[3:], dtype=np.int64)
    shape = np.array(hu.shape)
    lo, hi = np.maximum(box_lo - margin, 0), np.minimum(box_hi + margin, shape)
    crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    hu_crop, label_crop = np.asarray(hu[crop]), np.asarray(label[crop])
    inside = np.zeros(label_crop.shape, dtype=bool)
    inside[tuple(slice(int(a), int(b)) for a, b in zip(box_lo - lo, box_hi - lo))] = True
    mask = largest_component((label_crop == NODULE) & inside)
    where = np.nonzero(mask)
    if not where[0].size:
        raise ValueError(f"no nodule voxel in box {list(bbox)}")
    tight_lo = np.array([w.min() for w in where])
    tight_hi = np.array([w.max() + 1 for w in where])
    return Donor(hu_crop, label_crop, mask, tight_lo, tight_hi)


def scale_factors(donor: Donor, diameter_mm: float, spacing_mm: float, z_target: int) -> np.ndarray:
    """(3,) zoom (z, y, x) that maps the donor's tight box to `z_target` slices and its mask to the
    volume of a `diameter_mm` sphere: in-plane scale from the volume, bounded to within
    :data:`MAX_ANISOTROPY` of the z scale."""
    extent = donor.hi - donor.lo
    zoom_z = z_target / float(extent[0])
    target_voxels = math.pi * (diameter_mm / spacing_mm) ** 3 / 6.0
    zoom_xy = math.sqrt(target_voxels / (donor.voxels * zoom_z))
    zoom_xy = min(max(zoom_xy, zoom_z / MAX_ANISOTROPY), zoom_z * MAX_ANISOTROPY)
    return np.array([zoom_z, zoom_xy, zoom_xy])


def paste_nodule(donor: Donor, diameter_mm: float, spacing_mm: float, feather: int, z_target: int) -> PastedNodule | None:
    """`donor` resampled so that its mask spans `z_target` slices and the volume of a
    `diameter_mm` sphere (:func:`scale_factors`), padded by `feather` + 1 voxels; None when the
    resampled mask does not span exactly `z_target` slices (a thin cap lost between samples).

    The output grid maps the donor's tight box edge to edge (scipy's `grid_mode`): output voxel o
    (per axis, from the padded box's start) samples donor coordinate lo + (o − pad + ½)/zoom − ½.
    HU by linear interpolation (order 1, edges clamped), mask and lung by nearest neighbour
    (order 0); the mask keeps its largest 6-connected component.
    """
    pad = feather + 1
    zoom = scale_factors(donor, diameter_mm, spacing_mm, z_target)
    extent = donor.hi - donor.lo
    tight = np.maximum(1, np.rint(extent * zoom)).astype(np.int64)
    tight[0] = z_target
    zoom = tight / extent  # exact, so the box maps edge to edge
    shape = tuple(int(n) for n in tight + 2 * pad)
    step = 1.0 / zoom
    offset = donor.lo + (0.5 - pad) * step - 0.5

    def sample(array: np.ndarray, order: int, mode: str) -> np.ndarray:
        return ndimage.affine_transform(array, step, offset=offset, output_shape=shape, order=order, mode=mode, output=np.float32)

    mask = largest_component(sample(donor.mask.astype(np.float32), 0, "constant") > 0.5)
    if z_extent(mask) != z_target:
        return None
    hu = sample(donor.hu.astype(np.float32), 1, "nearest")
    lung = sample(np.isin(donor.label, LUNG_LABELS).astype(np.float32), 0, "nearest") > 0.5
    return PastedNodule(mask=mask, hu=hu, donor_lung=lung, pad=pad, feather=feather)


def blob_nodule(diameter_mm: float, spacing_mm: float, hu: float, rng: np.random.Generator, feather: int) -> BlobNodule | None:
    """A constant-`hu` ellipsoid of equivalent diameter `diameter_mm`: z semi-axis d/2, in-plane
    semi-axes d/2 / √r and d/2 · √r (minor/major ratio r drawn from :data:`AXIS_RATIO`, major axis
    at a random angle in the axial plane), its centre shifted in-plane by a random sub-voxel
    offset and on a voxel centre in z (so the mask spans an odd number of slices within one voxel
    spacing of d); padded by `feather` + 1 voxels as a pasted nodule is. Occupancy is
    0.5 − (signed distance to the surface along the ray from the centre) / spacing, clipped to
    [0, 1]. None when the mask is not one 6-connected component (then redraw)."""
    pad = feather + 1
    ratio, angle = rng.uniform(*AXIS_RATIO), rng.uniform(0.0, np.pi)
    c = diameter_mm / 2.0
    semi = np.array([c, c / math.sqrt(ratio), c * math.sqrt(ratio)])
    n = 2 * (math.ceil(semi.max() / spacing_mm) + 1 + pad) + 1
    shift = np.array([0.0, *rng.uniform(-0.5, 0.5, size=2)])
    z, y, x = ((np.arange(n, dtype=np.float64) - n // 2 - shift[k]) * spacing_mm for k in range(3))
    z, y, x = z[:, None, None], y[None, :, None], x[None, None, :]
    u = y * math.cos(angle) + x * math.sin(angle)
    v = -y * math.sin(angle) + x * math.cos(angle)
    rho = np.sqrt((z / semi[0]) ** 2 + (u / semi[1]) ** 2 + (v / semi[2]) ** 2)
    radius = np.sqrt(z**2 + u**2 + v**2)
    signed = np.where(rho > 0, radius * (1.0 - 1.0 / np.maximum(rho, 1e-12)), -c)
    occupancy = np.clip(0.5 - signed / spacing_mm, 0.0, 1.0)
    mask = rho <= 1.0
    if not mask.any() or not np.array_equal(largest_component(mask), mask):
        return None
    where = np.nonzero(mask)
    crop = tuple(slice(int(w.min()) - pad, int(w.max()) + 1 + pad) for w in where)
    return BlobNodule(mask=mask[crop], occupancy=occupancy[crop], hu=float(hu), pad=pad)
