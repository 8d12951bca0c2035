"""LUNA16's annotation statistics as seeded samplers, for the phantom.

Figures from the public LUNA16 `annotations.csv` (1186 nodules ≥ 3 mm in 888 scans): 601
scans hold a nodule, 287 none; per scan with any, one nodule in about half, then two, three,
… up to twelve (mean 1186 / 601 ≈ 1.97); diameters from 3.25 to 32.3 mm, quartiles about
5.1 / 6.4 / 9.7 mm, 76 % under 10 mm and 4 % of 20 mm or more. Series origins lie on either side
of z = 0 (most below, some up to about +1600 mm). The samplers reproduce these distributions;
they do not copy the file.
"""

from __future__ import annotations

import numpy as np

SCANS, SCANS_WITH_NODULE, NODULES = 888, 601, 1186
NODULE_FREE_SHARE = 1.0 - SCANS_WITH_NODULE / SCANS
MAX_NODULES_PER_SCAN = 12
SINGLE_NODULE_SHARE = 0.5
"""Share of scans with exactly one nodule among scans with any."""

# Quantile function of the diameter (mm): (cumulative share, diameter) knots, log-linear between.
DIAMETER_QUANTILES_MM = np.array([(0.0, 3.25), (0.25, 5.1), (0.5, 6.4), (0.75, 9.7), (0.76, 10.0), (0.96, 20.0), (1.0, 32.3)])
POSITIVE_Z_SHARE = 0.1
"""Share of series whose z origin is positive (the rest are below the scanner's zero)."""
Z_ORIGIN_MM = {"negative": (-420.0, -60.0), "positive": (40.0, 1300.0)}
"""Ranges (mm) of the anatomy origin; a z-flipped series stores the far end, up to ~400 mm above."""


def _count_probabilities() -> np.ndarray:
    """P(k nodules | at least one), k = 1..MAX: SINGLE_NODULE_SHARE at one, a geometric tail
    whose ratio makes the mean NODULES / SCANS_WITH_NODULE."""
    mean = NODULES / SCANS_WITH_NODULE
    # Untruncated: mean = 1 + (1 - p1) / (1 - q)  =>  q = 1 - (1 - p1) / (mean - 1).
    q = 1.0 - (1.0 - SINGLE_NODULE_SHARE) / (mean - 1.0)
    k = np.arange(2, MAX_NODULES_PER_SCAN + 1)
    tail = (1.0 - q) * q ** (k - 2)
    p = np.concatenate([[SINGLE_NODULE_SHARE], (1.0 - SINGLE_NODULE_SHARE) * tail / tail.sum()])
    return p


NODULES_PER_SCAN_P = _count_probabilities()
"""(MAX_NODULES_PER_SCAN,) probabilities of 1, 2, … nodules in a scan that has any."""


def sample_nodule_count(rng: np.random.Generator) -> int:
    """Nodules in one scan: 0 with NODULE_FREE_SHARE, else 1..12 as NODULES_PER_SCAN_P."""
    if rng.random() < NODULE_FREE_SHARE:
        return 0
    return 1 + int(rng.choice(MAX_NODULES_PER_SCAN, p=NODULES_PER_SCAN_P))


def diameter_quantile_mm(u: np.ndarray | float) -> np.ndarray:
    """Diameter (mm) at cumulative share(s) `u` in [0, 1] of LUNA16's diameter distribution."""
    share, diameter = DIAMETER_QUANTILES_MM.T
    return np.exp(np.interp(u, share, np.log(diameter)))


def sample_diameters_mm(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) nodule diameters in mm drawn from LUNA16's distribution (inverse-CDF sampling)."""
    return diameter_quantile_mm(rng.random(n))


def sample_z_origin_mm(rng: np.random.Generator) -> float:
    """World z (mm) of a series' first slice: negative mostly, positive in POSITIVE_Z_SHARE."""
    side = "positive" if rng.random() < POSITIVE_Z_SHARE else "negative"
    return float(rng.uniform(*Z_ORIGIN_MM[side]))
