"""The phantom's samplers reproduce LUNA16's published annotation statistics."""

from __future__ import annotations

import numpy as np

from lungforge.phantom.luna16_statistics import (
    MAX_NODULES_PER_SCAN,
    NODULES_PER_SCAN_P,
    diameter_quantile_mm,
    sample_diameters_mm,
    sample_nodule_count,
    sample_z_origin_mm,
)


def test_diameters_follow_luna16():
    d = sample_diameters_mm(np.random.default_rng(0), 20000)
    assert d.min() >= 3.25 and d.max() <= 32.3
    np.testing.assert_allclose(np.percentile(d, [25, 50, 75]), [5.1, 6.4, 9.7], rtol=0.03)
    assert abs((d < 10).mean() - 0.76) < 0.015
    assert abs((d >= 20).mean() - 0.04) < 0.006
    np.testing.assert_allclose(diameter_quantile_mm(np.array([0.0, 1.0])), [3.25, 32.3])


def test_nodules_per_scan_follow_luna16():
    rng = np.random.default_rng(1)
    counts = np.array([sample_nodule_count(rng) for _ in range(8880)])
    assert abs((counts == 0).mean() - 287 / 888) < 0.02, "about a third of the scans have no nodule"
    with_any = counts[counts > 0]
    assert abs((with_any == 1).mean() - 0.5) < 0.025
    assert abs(with_any.mean() - 1186 / 601) < 0.08
    assert with_any.max() <= MAX_NODULES_PER_SCAN and (with_any >= 5).any()
    assert NODULES_PER_SCAN_P.shape == (12,) and np.all(NODULES_PER_SCAN_P > 0) and np.all(np.diff(NODULES_PER_SCAN_P) < 0)
    assert abs(NODULES_PER_SCAN_P.sum() - 1) < 1e-12


def test_z_origins_of_either_sign():
    rng = np.random.default_rng(2)
    z = np.array([sample_z_origin_mm(rng) for _ in range(2000)])
    assert 0.05 < (z > 0).mean() < 0.2 and z.max() > 1000 and z.max() <= 1300 and z.min() >= -420
