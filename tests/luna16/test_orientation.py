"""Display orientation: every signed axis order maps onto ITK's LPS reorientation, world positions kept."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from lungforge.core.errors import ScanError
from lungforge.luna16.orientation import Reorientation
from lungforge.luna16.scans import index_to_world


def _signed_permutations() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            d = np.zeros((3, 3))
            for index_axis, (world_axis, sign) in enumerate(zip(perm, signs)):
                d[world_axis, index_axis] = sign
            out.append(d)
    return out


@pytest.mark.parametrize("direction", _signed_permutations(), ids=lambda d: "".join(f"{int(v):+d}" for v in d.ravel()))
def test_reorientation_equals_itk_lps(direction: np.ndarray) -> None:
    array = np.random.default_rng(0).permutation(4 * 5 * 6).reshape(4, 5, 6).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-170.0, -200.0, -350.0))
    image.SetDirection(direction.ravel().tolist())
    reference = sitk.DICOMOrient(image, "LPS")  # index axes towards patient Left, Posterior, Superior

    turn = Reorientation.from_direction(direction)
    out = turn.apply(array)
    origin, spacing, new_direction = turn.geometry(array.shape, image.GetOrigin(), image.GetSpacing(), direction)
    np.testing.assert_array_equal(out, sitk.GetArrayFromImage(reference))
    assert turn.shape(array.shape) == out.shape
    np.testing.assert_allclose(origin, reference.GetOrigin())
    np.testing.assert_allclose(spacing, reference.GetSpacing())
    np.testing.assert_allclose(new_direction, np.eye(3), atol=1e-12)
    assert turn.is_identity == bool(np.array_equal(direction, np.eye(3)))


def test_oblique_direction_keeps_world_positions() -> None:
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    direction = rotation @ np.diag([-1.0, 1.0, -1.0])
    array = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    origin, spacing = np.array([10.0, -20.0, 30.0]), np.array([0.7, 0.8, 2.5])
    turn = Reorientation.from_direction(direction)
    out = turn.apply(array)
    new_origin, new_spacing, new_direction = turn.geometry(array.shape, origin, spacing, direction)
    assert np.all(np.diag(new_direction) > 0.98)
    for z, y, x in itertools.product(*map(range, out.shape)):
        (k,) = np.argwhere(array.ravel() == out[z, y, x])[0]
        fz, fy, fx = np.unravel_index(k, array.shape)
        np.testing.assert_allclose(
            index_to_world(np.array([[x, y, z]], float), new_origin, new_spacing, new_direction),
            index_to_world(np.array([[fx, fy, fz]], float), origin, spacing, direction),
        )


def test_directions_without_an_axis_order_are_refused() -> None:
    with pytest.raises(ScanError, match="singular"):
        Reorientation.from_direction(np.zeros((3, 3)), "scan.mhd")
    with pytest.raises(ScanError, match="scan.mhd: direction .* not close to any axis order"):
        Reorientation.from_direction(np.array([[1.0, 0.9, 0.0], [0.9, 0.2, 0.0], [0.0, 0.0, 1.0]]), "scan.mhd")
