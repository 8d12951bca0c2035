import numpy as np
import pytest

from lungforge.data.masks import (
    auto_lung_labels,
    body_mask,
    compose_labels,
    kmeans_threshold,
    largest_component_per_slice,
    nodule_mask,
    seg_to_labels,
    sphere_mask,
    unwindow_to_hu,
    window_to_uint8,
)
from lungforge.labels import BODY, LEFT_LUNG, NODULE, RIGHT_LUNG, TRACHEA, SegValues


def test_window_maps_ends_and_clips():
    hu = np.array([-3024, -1000, -300, 400, 2000], dtype=np.int16)
    out = window_to_uint8(hu)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, round(700 / 1400 * 255), 255, 255]
    assert np.allclose(unwindow_to_hu(window_to_uint8(np.array([-500.0]))), -500, atol=3)


def test_largest_component_is_per_slice():
    mask = np.zeros((2, 10, 10), dtype=bool)
    mask[0, 0:2, 0:2] = True  # 4 px
    mask[0, 5:9, 5:9] = True  # 16 px
    mask[1, 0:5, 0:5] = True  # 25 px, larger than anything in slice 0
    mask[1, 8:10, 8:10] = True
    out = largest_component_per_slice(mask)
    assert out[0].sum() == 16 and out[0, 5, 5]
    assert out[1].sum() == 25 and out[1, 0, 0]


def test_body_mask_fills_holes_and_drops_table():
    img = np.zeros((1, 40, 40), dtype=np.uint8)
    img[0, 5:30, 5:35] = 200  # body
    img[0, 10:20, 10:15] = 10  # lung: a hole inside the body
    img[0, 35:37, 5:35] = 200  # table, separate and smaller
    body = body_mask(img)
    assert body[0, 15, 12]  # hole filled
    assert not body[0, 36, 10]  # table dropped
    assert body[0].sum() == 25 * 30


def test_seg_values_mapping_and_painting_order():
    seg = np.array([[0, 3, 4, 5, 7]], dtype=np.uint8)
    lungs = seg_to_labels(seg, SegValues())
    assert lungs.tolist() == [[0, LEFT_LUNG, RIGHT_LUNG, TRACHEA, 0]]
    swapped = seg_to_labels(np.array([[1, 2]]), SegValues.parse("left=2,right=1"))
    assert swapped.tolist() == [[RIGHT_LUNG, LEFT_LUNG]]
    body = np.ones_like(seg, dtype=bool)
    nodule = np.array([[False, True, False, False, False]])
    label = compose_labels(body, lungs, nodule)
    assert label.tolist() == [[BODY, NODULE, RIGHT_LUNG, TRACHEA, BODY]]


def test_seg_values_parse_errors():
    with pytest.raises(ValueError, match="left=3"):
        SegValues.parse("lft=3")
    with pytest.raises(ValueError, match="integer"):
        SegValues.parse("left=x")


def test_kmeans_threshold_between_clusters():
    values = np.r_[np.full(50, 10.0), np.full(30, 200.0)]
    assert kmeans_threshold(values) == pytest.approx(105.0)


def test_sphere_respects_spacing_and_direction():
    spacing = np.array([0.5, 0.5, 2.0])
    flip = np.diag([-1.0, 1.0, -1.0])
    centre = np.array([20.0, 20.0, 10.0])
    for direction in (np.eye(3), flip):
        box, sphere = sphere_mask((20, 40, 40), centre, 10.0, spacing, direction)
        volume_mm3 = sphere.sum() * spacing.prod()
        assert volume_mm3 == pytest.approx(4 / 3 * np.pi * 5**3, rel=0.1)
        # 5 mm radius spans 5/2 = 2.5 slices either side in z, 10 pixels in x/y
        z_extent = np.flatnonzero(sphere.any(axis=(1, 2))).size
        assert z_extent in (5, 6)


def test_nodule_mask_keeps_bright_core_only():
    hu = np.full((20, 40, 40), -850, dtype=np.int16)
    zz, yy, xx = np.indices(hu.shape)
    core = (xx - 20) ** 2 + (yy - 20) ** 2 + ((zz - 10) * 4) ** 2 <= 6**2
    hu[core] = 30
    box, mask = nodule_mask(hu, np.array([20.0, 20.0, 10.0]), 20.0, np.array([0.5, 0.5, 2.0]), np.eye(3))
    full = np.zeros(hu.shape, dtype=bool)
    full[box] = mask
    assert (full == core).all()


def test_auto_lungs_finds_two_lungs_and_trachea():
    z, h, w = 12, 64, 64
    hu = np.full((z, h, w), -1000, dtype=np.int16)
    yy, xx = np.indices((h, w))
    body = ((yy - 32) / 28) ** 2 + ((xx - 32) / 30) ** 2 <= 1
    hu[:, body] = 40
    left = ((yy - 32) / 12) ** 2 + ((xx - 46) / 9) ** 2 <= 1
    right = ((yy - 32) / 12) ** 2 + ((xx - 18) / 9) ** 2 <= 1
    trachea = (yy - 22) ** 2 + (xx - 32) ** 2 <= 25
    hu[:8, left] = -850
    hu[:8, right] = -850
    hu[6:, trachea] = -1000
    labels = auto_lung_labels(hu, np.broadcast_to(body, hu.shape), np.array([1.0, 1.0, 2.5]))
    assert (labels[3][left] == LEFT_LUNG).all()
    assert (labels[3][right] == RIGHT_LUNG).all()
    assert (labels[10][trachea] == TRACHEA).all()
    assert not (labels == NODULE).any()


def test_fill_holes_matches_scipy_per_slice():
    from scipy import ndimage

    from lungforge.data.masks import fill_holes_per_slice

    rng = np.random.default_rng(0)
    mask = rng.random((3, 40, 50)) < 0.55
    expected = np.stack([ndimage.binary_fill_holes(m) for m in mask])
    np.testing.assert_array_equal(fill_holes_per_slice(mask), expected)
