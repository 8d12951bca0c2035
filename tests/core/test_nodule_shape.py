"""Nodule cross-sections follow the LIDC contour statistics (regionprops over hundreds of shapes)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lungforge.core.nodule_shape import LIDC_REFERENCE, cross_section_statistics, sample_outline
from lungforge.phantom.luna16_statistics import diameter_quantile_mm
from lungforge.phantom.nodules import nodule_voxels

PIXEL_MM = 0.7
"""LUNA16's typical in-plane spacing at 512 px, where LIDC's contours were measured."""
LUNA16_DIAMETERS = diameter_quantile_mm((np.arange(400) + 0.5) / 400)
LARGE_DIAMETERS = np.linspace(20.0, 32.0, 200)


def assert_like_lidc(draw: Callable[[float], np.ndarray]) -> None:
    """`draw(diameter_mm)` -> a 2-D bool cross-section at PIXEL_MM; LUNA16-sized shapes must
    match LIDC's figures, and ≥ 20 mm ones its solidity for large nodules."""
    ref = LIDC_REFERENCE
    stats = cross_section_statistics([draw(float(d)) for d in LUNA16_DIAMETERS], LUNA16_DIAMETERS)
    large = cross_section_statistics([draw(float(d)) for d in LARGE_DIAMETERS], LARGE_DIAMETERS)
    np.testing.assert_allclose(stats["eccentricity_quartiles"], ref["eccentricity_quartiles"], atol=0.04)
    assert abs(stats["eccentricity_above_0.8"] - ref["eccentricity_above_0.8"]) < 0.05
    np.testing.assert_allclose(stats["solidity_quartiles"], ref["solidity_quartiles"], atol=0.012)
    assert abs(stats["solidity_below_0.9"] - ref["solidity_below_0.9"]) < 0.06
    assert abs(large["solidity_median_20mm_or_more"] - ref["solidity_median_20mm_or_more"]) < 0.03


def test_outline_has_unit_area_and_stays_whole():
    rng = np.random.default_rng(0)
    theta = np.linspace(0, 2 * np.pi, 4096, endpoint=False)
    for d in (3.5, 8.0, 30.0):
        for _ in range(20):
            r = sample_outline(rng, d).radius(theta)
            assert abs(np.mean(r**2) - 1.0) < 1e-3 and r.min() > 0


def test_phantom_nodule_cross_sections_look_like_lidc():
    rng = np.random.default_rng(0)
    spacing_zyx = np.array([1.0, PIXEL_MM, PIXEL_MM])
    areas = []

    def central_section(diameter_mm: float) -> np.ndarray:
        offsets, _ = nodule_voxels(rng, diameter_mm, spacing_zyx)
        rows_cols = offsets[offsets[:, 0] == 0][:, 1:]
        mask = np.zeros(tuple(np.ptp(rows_cols, axis=0) + 1), dtype=bool)
        mask[tuple((rows_cols - rows_cols.min(axis=0)).T)] = True
        areas.append(mask.sum() * PIXEL_MM**2 / (np.pi * diameter_mm**2 / 4))
        assert all((offsets[:, 0] == z).sum() <= mask.sum() for z in np.unique(offsets[:, 0])), "central slice is the largest"
        return mask

    assert_like_lidc(central_section)
    assert abs(np.median(areas) - 1.0) < 0.05, "the central section has the annotated diameter"


def test_augment_model_shapes_look_like_lidc():
    from lungforge.augment.nodule_library import sphere_shape

    rng = np.random.default_rng(1)
    assert_like_lidc(lambda d: sphere_shape(d / PIXEL_MM, rng, diameter_mm=d))
