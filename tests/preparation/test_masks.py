import numpy as np
import pytest

from lungforge.core.labels import BODY, LEFT_LUNG, NODULE, RIGHT_LUNG, TRACHEA, SegValues
from lungforge.preparation.masks import (
    auto_lung_labels,
    body_mask,
    compose_labels,
    fill_holes_per_slice,
    kmeans_threshold,
    largest_component_per_slice,
    nodule_mask,
    nodule_threshold,
    seg_to_labels,
    sphere_mask,
    two_means_1d,
    unwindow_to_hu,
    window_to_uint8,
)


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
        _box, sphere = sphere_mask((20, 40, 40), centre, 10.0, spacing, direction)
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

    rng = np.random.default_rng(0)
    mask = rng.random((3, 40, 50)) < 0.55
    expected = np.stack([ndimage.binary_fill_holes(m) for m in mask])
    np.testing.assert_array_equal(fill_holes_per_slice(mask), expected)


@pytest.mark.parametrize("seed", range(6))
def test_two_means_equals_sklearn(seed):
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    n_a, n_b = rng.integers(5, 400, size=2)
    values = np.r_[rng.normal(rng.uniform(-900, 0), rng.uniform(5, 200), n_a), rng.normal(rng.uniform(-900, 0), rng.uniform(5, 200), n_b)]
    fit = KMeans(n_clusters=2, n_init=20, tol=0.0, random_state=seed).fit(values.reshape(-1, 1))
    expected = np.sort(fit.cluster_centers_.ravel())
    np.testing.assert_allclose(two_means_1d(values), expected, rtol=0, atol=1e-9)


def test_two_means_on_integers_with_ties_reaches_sklearns_inertia():
    from sklearn.cluster import KMeans

    values = np.random.default_rng(7).integers(60, 200, size=300).astype(np.float64)
    lo, hi = two_means_1d(values)
    inertia = np.minimum((values - lo) ** 2, (values - hi) ** 2).sum()
    fit = KMeans(n_clusters=2, n_init=20, tol=0.0, random_state=0).fit(values.reshape(-1, 1))
    assert inertia <= fit.inertia_ + 1e-6
    # equal values are never split between the clusters
    assert not np.any((values > (lo + hi) / 2) & (values < (lo + hi) / 2))
    assert two_means_1d(np.full(5, 3.0)) == (3.0, 3.0)


SPACING = np.array([0.7, 0.7, 1.25])  # x, y, z mm


def _ct(shape=(24, 48, 48), sigma_hu=35.0, seed=0):
    """Lung (-850 HU) with scanner-like noise: Gaussian, slightly correlated in-plane."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(0, 1, shape), sigma=(0, 0.7, 0.7))
    noise *= sigma_hu / noise.std()
    return np.full(shape, -850.0) + noise, np.indices(shape)


def _ball_mm(grid, centre_zyx, radius_mm):
    zz, yy, xx = grid
    d2 = ((zz - centre_zyx[0]) * SPACING[2]) ** 2 + ((yy - centre_zyx[1]) * SPACING[1]) ** 2 + ((xx - centre_zyx[2]) * SPACING[0]) ** 2
    return d2 <= radius_mm**2


def _nodule(hu, centre_zyx, diameter_mm):
    box, mask = nodule_mask(np.rint(hu).astype(np.int16), np.array(centre_zyx[::-1], float), diameter_mm, SPACING, np.eye(3))
    full = np.zeros(hu.shape, dtype=bool)
    full[box] = mask
    return full


def _no_holes(mask):
    return (fill_holes_per_slice(mask) == mask).all()


def test_homogeneous_nodule_filling_its_sphere_is_labelled_whole():
    hu, grid = _ct()
    centre = (12, 24, 24)
    solid = _ball_mm(grid, centre, 7.0)
    hu[solid] = 35.0 + (hu[solid] + 850.0)  # soft tissue with the same noise
    mask = _nodule(hu, centre, 10.0)
    sphere = _ball_mm(grid, centre, 5.0)
    # the paper's split would cut the nodule's own noise in two (speckle); every voxel is nodule
    assert (mask == sphere).all()
    assert nodule_threshold(window_to_uint8(hu[sphere]))[1] == "hu"


def test_part_solid_nodule_keeps_core_and_ground_glass_not_lung():
    hu, grid = _ct(seed=1)
    centre = (12, 24, 24)
    ggo, core = _ball_mm(grid, centre, 5.0), _ball_mm(grid, centre, 2.5)
    hu[ggo] += 250.0  # ground glass, -600 HU
    hu[core] += 870.0  # solid core, +20 HU
    mask = _nodule(hu, centre, 16.0)
    assert mask[core].all()
    assert mask[ggo].mean() > 0.95, "the ground glass is nodule too"
    lung_in_sphere = _ball_mm(grid, centre, 8.0) & ~_ball_mm(grid, centre, 5.0 + 1.0)
    assert mask[lung_in_sphere].mean() < 0.01
    assert _no_holes(mask)
    assert nodule_threshold(window_to_uint8(hu[_ball_mm(grid, centre, 8.0)]))[1] == "kmeans"


def test_juxtapleural_nodule_excludes_lung():
    hu, grid = _ct(seed=2)
    _zz, _yy, xx = grid
    wall = xx >= 30
    hu[wall] += 890.0  # chest wall, +40 HU
    centre = (12, 24, 27)
    solid = _ball_mm(grid, centre, 4.0) & ~wall
    hu[solid] += 880.0
    mask = _nodule(hu, centre, 14.0)
    assert mask[solid].all()
    lung_in_sphere = _ball_mm(grid, centre, 7.0) & ~wall & ~_ball_mm(grid, centre, 4.0 + 1.0)
    assert lung_in_sphere.sum() > 50 and mask[lung_in_sphere].mean() < 0.01
    assert _no_holes(mask)


def test_lung_only_sphere_gives_an_empty_mask():
    hu, _grid = _ct(seed=3)
    assert not _nodule(hu, (12, 24, 24), 6.0).any()


def _chest(shape=(6, 64, 64)):
    """HU volume: body ellipse, two lung ellipses; returns hu and the lung masks (left at high x)."""
    _z, h, w = shape
    yy, xx = np.indices((h, w))
    hu = np.full(shape, -1000, dtype=np.int16)
    return hu, yy, xx


def test_auto_lungs_fills_vessels_inside_the_lung():
    z, h, w = 6, 64, 64
    hu, yy, xx = _chest((z, h, w))
    body = ((yy - 32) / 28) ** 2 + ((xx - 32) / 30) ** 2 <= 1
    hu[:, body] = 40
    left = ((yy - 32) / 12) ** 2 + ((xx - 46) / 9) ** 2 <= 1
    right = ((yy - 32) / 12) ** 2 + ((xx - 18) / 9) ** 2 <= 1
    hu[:, left | right] = -850
    vessel = (yy - 30) ** 2 + (xx - 45) ** 2 <= 6
    hu[:, vessel] = 30
    labels = auto_lung_labels(hu, body_mask(window_to_uint8(hu)), np.array([1.0, 1.0, 2.5]))
    assert (labels[:, vessel] == LEFT_LUNG).all()
    assert (labels[:, left] == LEFT_LUNG).all() and (labels[:, right] == RIGHT_LUNG).all()


@pytest.mark.parametrize("fov", ["square", "circle"])
def test_auto_lungs_touching_the_field_of_view_edge(fov):
    z, h, w = 6, 64, 64
    hu, yy, xx = _chest((z, h, w))
    body = ((yy - 32) / 22) ** 2 + ((xx - 32) / 40) ** 2 <= 1  # wider than the image
    hu[:, body] = 40
    left = (((yy - 32) / 11) ** 2 + ((xx - 60) / 14) ** 2 <= 1) & body
    right = (((yy - 32) / 11) ** 2 + ((xx - 4) / 14) ** 2 <= 1) & body
    hu[:, left | right] = -850
    if fov == "circle":
        outside = (yy - 31.5) ** 2 + (xx - 31.5) ** 2 > 31.5**2
        hu[:, outside] = -2000
        left, right = left & ~outside, right & ~outside
    labels = auto_lung_labels(hu, body_mask(window_to_uint8(hu)), np.array([1.0, 1.0, 2.5]))
    assert (labels[:, left] == LEFT_LUNG).all()
    assert (labels[:, right] == RIGHT_LUNG).all()
    assert not labels[:, ~(left | right)].any(), "the air around the body is not lung"


def test_largest_component_matches_scipy_per_slice():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    mask = rng.random((5, 30, 40)) < 0.45
    mask[2] = False  # a slice without any component
    expected = np.zeros_like(mask)
    for z, m in enumerate(mask):
        labels, n = ndimage.label(m, structure=np.ones((3, 3)))
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            expected[z] = labels == 1 + np.argmax(sizes)
    np.testing.assert_array_equal(largest_component_per_slice(mask), expected)


def test_body_mask_on_its_box_matches_whole_slices():
    rng = np.random.default_rng(2)
    windowed = np.zeros((3, 50, 60), dtype=np.uint8)
    windowed[:, 10:40, 12:50] = rng.integers(0, 256, size=(3, 30, 38))
    whole = largest_component_per_slice(fill_holes_per_slice(windowed > 127))
    np.testing.assert_array_equal(body_mask(windowed), whole)


def test_window_lookup_equals_arithmetic():
    hu = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    np.testing.assert_array_equal(window_to_uint8(hu), window_to_uint8(hu.astype(np.float64)))
