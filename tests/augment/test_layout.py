from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lungforge.augment.layout import (
    GAP_PX,
    LayoutRequest,
    PlacedNodule,
    parse_diameter_range,
    place_nodules,
    plan_layouts,
    sample_diameters,
)
from lungforge.augment.nodule_library import NoduleLibrary, SizePool, equivalent_diameter_mm, sphere_shape
from lungforge.core.errors import LayoutError
from lungforge.core.labels import BACKGROUND, BODY, LEFT_LUNG, NODULE, RIGHT_LUNG
from lungforge.core.nodule_shape import HARMONICS, NoduleOutline
from lungforge.store import NO_SOURCE

LUNGS = (LEFT_LUNG, RIGHT_LUNG)


def spacing_for(size: int) -> tuple[float, float]:
    return (0.7 * 512 / size,) * 2


def _place(label, size, diameters, seed=0, **request):
    result = place_nodules(label, spacing_for(size), diameters, LayoutRequest(**request), np.random.default_rng(seed))
    assert result is not None
    return result


def _assert_exact_bbox(nodule: PlacedNodule, shape_hw) -> None:
    rows, cols = np.nonzero(nodule.mask(shape_hw))
    assert nodule.bbox == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


# -- parsing and sampling -------------------------------------------------------------------


def test_parse_diameter_range_accepts_min_max():
    assert parse_diameter_range("3:30") == (3.0, 30.0)
    assert parse_diameter_range("5.5:5.5") == (5.5, 5.5)


@pytest.mark.parametrize("text", ["12:3", "0:5", "-1:4", "5", "a:b", "3:30:4", "3:inf"])
def test_parse_diameter_range_rejects_bad_text(text):
    with pytest.raises(ValueError, match=f'MIN:MAX mm with 0 < MIN <= MAX <= 100, got "{text}"'):
        parse_diameter_range(text)


def test_parse_diameter_range_message_for_reversed_range():
    with pytest.raises(ValueError) as info:
        parse_diameter_range("12:3")
    assert str(info.value) == 'diameter range must be MIN:MAX mm with 0 < MIN <= MAX <= 100, got "12:3"'


def test_layout_request_validates_fields():
    with pytest.raises(ValueError, match="per_slice"):
        LayoutRequest(per_slice=0)
    with pytest.raises(ValueError, match="placement"):
        LayoutRequest(placement="middle")
    with pytest.raises(ValueError, match="12.0:3.0"):
        LayoutRequest(diameter_mm=(12.0, 3.0))


def test_sample_diameters_uniform_in_range():
    d, sources = sample_diameters(np.random.default_rng(0), 500, LayoutRequest(diameter_mm=(3.0, 30.0)), None)
    assert d.shape == (500,) and d.min() >= 3.0 and d.max() <= 30.0
    assert 12.0 < d.mean() < 21.0
    assert (sources == NO_SOURCE).all()


def test_sample_diameters_resamples_real_mask_sizes_and_names_their_rows():
    pool = SizePool(np.array([4.0, 8.0, 16.0]), np.array([10, 11, 12]))
    d, sources = sample_diameters(np.random.default_rng(0), 200, LayoutRequest(), pool)
    assert set(np.unique(d)) == {4.0, 8.0, 16.0}
    np.testing.assert_array_equal(sources, 10 + np.log2(d / 4.0).astype(int))


def test_sample_diameters_without_range_or_pool_is_an_error():
    with pytest.raises(LayoutError, match="--diameter"):
        sample_diameters(np.random.default_rng(0), 3, LayoutRequest(), SizePool(np.zeros(0), np.zeros(0, np.int64)))


def test_size_pool_holds_the_equivalent_diameters_of_the_real_masks(mini_store):
    pool = SizePool.from_store(mini_store)
    table = mini_store.nodules()
    np.testing.assert_array_equal(pool.source_rows, np.arange(6))
    for row, d in zip(pool.source_rows, pool.diameters_mm):
        x0, y0, x1, y1 = table["bbox"][row].astype(int)
        area = int((np.asarray(mini_store.label[int(table["slice"][row])])[y0:y1, x0:x1] == NODULE).sum())
        sp = mini_store.meta("spacing")[0]
        assert d == pytest.approx(2 * np.sqrt(area * sp[0] * sp[1] / np.pi))
    # the masks, not the annotation (10 mm for every nodule of the mini store), set the sizes
    assert not np.allclose(pool.diameters_mm, table["diameter_mm"][pool.source_rows])


# -- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("diameter_px", [3.0, 4.3, 7.0, 12.5, 40.0])
def test_sphere_shape_has_requested_equivalent_diameter(diameter_px):
    rng = np.random.default_rng(1)
    for _ in range(5):
        shape = sphere_shape(diameter_px, rng, diameter_mm=0.7 * diameter_px)
        achieved = float(equivalent_diameter_mm(shape.sum(), (1.0, 1.0)))
        assert abs(achieved - diameter_px) / diameter_px < 0.06
        assert shape[0].any() and shape[-1].any() and shape[:, 0].any() and shape[:, -1].any()
        assert ndimage.label(shape)[1] == 1


def test_sphere_shape_clamps_tiny_nodules_to_2x2():
    shape = sphere_shape(0.5, np.random.default_rng(0), diameter_mm=3.0)
    assert shape.shape == (2, 2) and shape.all()


def test_sphere_shape_anisotropic_diameters():
    disk = NoduleOutline(axis_ratio=1.0, angle_rad=0.0, amplitudes=np.zeros(HARMONICS.size), phases_rad=np.zeros(HARMONICS.size))
    shape = sphere_shape((20.0, 10.0), np.random.default_rng(0), diameter_mm=10.0, outline=disk)
    assert 19 <= shape.shape[0] <= 21 and 9 <= shape.shape[1] <= 11
    assert abs(shape.sum() - np.pi * 20 * 10 / 4) <= 1


# -- placement ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "diameters"),
    [(512, [3.0, 5.0, 8.0, 12.0, 18.0, 24.0, 30.0]), (256, [3.0, 6.0, 15.0, 30.0]), (64, [17.0, 22.0, 30.0])],
)
def test_achieved_diameter_within_25_percent(chest_map, size, diameters):
    label = chest_map(size)
    for seed, d in enumerate(diameters):
        _, (nodule,) = _place(label, size, [d], seed=seed)
        assert abs(nodule.achieved_mm - d) / d < 0.25
        assert nodule.requested_mm == d
        assert nodule.achieved_mm == pytest.approx(float(equivalent_diameter_mm(nodule.area_px, spacing_for(size))))


def test_tiny_nodule_is_drawn_2x2_and_reported_honestly(label_64):
    _, (nodule,) = _place(label_64, 64, [3.0])
    assert nodule.footprint.shape == (2, 2) and nodule.area_px == 4
    assert nodule.achieved_mm == pytest.approx(2 * np.sqrt(4 * 5.6 * 5.6 / np.pi))


@pytest.mark.parametrize("placement", ["any", "central", "peripheral", "left", "right"])
def test_nodules_wholly_inside_one_allowed_lung(label_256, placement):
    allowed = {"left": (LEFT_LUNG,), "right": (RIGHT_LUNG,)}.get(placement, LUNGS)
    for seed in range(6):
        _edited, nodules = _place(label_256, 256, [12.0, 6.0], seed=seed, placement=placement)
        for nodule in nodules:
            under = label_256[nodule.mask(label_256.shape)]
            assert np.unique(under).size == 1 and under[0] in allowed
            _assert_exact_bbox(nodule, label_256.shape)


def test_left_and_right_use_their_own_lung(label_256):
    for placement, lung in (("left", LEFT_LUNG), ("right", RIGHT_LUNG)):
        hits = [
            label_256[n.mask(label_256.shape)]
            for seed in range(8)
            for n in _place(label_256, 256, [8.0], seed=seed, placement=placement)[1]
        ]
        assert all((h == lung).all() for h in hits)


def test_peripheral_nodules_touch_the_pleura(label_256):
    wall = np.isin(label_256, (BACKGROUND, BODY))
    for seed in range(8):
        _, (nodule,) = _place(label_256, 256, [10.0], seed=seed, placement="peripheral")
        touching = ndimage.binary_dilation(nodule.mask(label_256.shape), structure=ndimage.generate_binary_structure(2, 1))
        assert (touching & wall).any()


def test_central_nodules_keep_their_radius_from_the_boundary(label_256):
    lung = np.isin(label_256, LUNGS)
    depth_px = ndimage.distance_transform_edt(lung)
    any_depths = []
    for seed in range(8):
        _, (nodule,) = _place(label_256, 256, [14.0], seed=seed, placement="central")
        radius_px = nodule.achieved_mm / 2 / spacing_for(256)[0]
        assert depth_px[nodule.mask(label_256.shape)].min() >= radius_px
        _, (other,) = _place(label_256, 256, [14.0], seed=seed, placement="any")
        any_depths.append(depth_px[other.mask(label_256.shape)].min())
    assert min(any_depths) < radius_px  # "any" does reach the boundary zone that "central" avoids


def test_many_nodules_per_slice_never_overlap_and_keep_a_gap(label_256):
    gap = np.hypot(*np.mgrid[-GAP_PX : GAP_PX + 1, -GAP_PX : GAP_PX + 1]) <= GAP_PX
    for seed in range(4):
        edited, nodules = _place(label_256, 256, [10.0, 8.0, 6.0, 5.0, 4.0, 3.0], seed=seed)
        masks = np.stack([n.mask(label_256.shape) for n in nodules])
        assert masks.sum(axis=0).max() == 1
        for i, mask in enumerate(masks):
            halo = ndimage.binary_dilation(mask, structure=gap)
            assert not (halo & np.delete(masks, i, axis=0).any(axis=0)).any()
        np.testing.assert_array_equal(edited == NODULE, masks.any(axis=0))
        np.testing.assert_array_equal(edited[~masks.any(axis=0)], label_256[~masks.any(axis=0)])
        assert [n.requested_mm for n in nodules] == sorted((n.requested_mm for n in nodules), reverse=True)


def test_existing_nodules_are_kept_and_avoided(chest_map):
    label = chest_map(256)
    existing = np.zeros_like(label, dtype=bool)
    existing[100:140, 50:90] = True
    label[existing & (label == RIGHT_LUNG)] = NODULE
    original = label == NODULE
    for seed in range(6):
        edited, (nodule,) = _place(label, 256, [15.0], seed=seed, placement="right")
        assert (edited[original] == NODULE).all()
        halo = ndimage.binary_dilation(nodule.mask(label.shape), iterations=GAP_PX)
        assert not (halo & original).any()


def test_input_label_map_is_not_modified(label_256):
    before = label_256.copy()
    _place(label_256, 256, [20.0])
    np.testing.assert_array_equal(label_256, before)


def test_anisotropic_spacing_scales_the_footprint_per_axis(label_256):
    _edited, (nodule,) = place_nodules(label_256, (0.7, 1.4), [20.0], LayoutRequest(), np.random.default_rng(0))
    h, w = nodule.footprint.shape
    assert 1.6 < h / w < 2.4
    assert abs(nodule.achieved_mm - 20.0) / 20.0 < 0.05


def test_place_returns_none_when_the_map_cannot_host(label_256):
    assert place_nodules(label_256, spacing_for(256), [150.0], LayoutRequest(), np.random.default_rng(0)) is None


# -- planning -------------------------------------------------------------------------------


def test_plan_layouts_is_deterministic_for_a_seed(chest_map):
    maps = [chest_map(256) for _ in range(3)]
    request = LayoutRequest(per_slice=2, diameter_mm=(3.0, 20.0))

    def plan(seed):
        return plan_layouts(maps, spacing_for(256), 5, request, np.random.default_rng(seed))

    a, b, c = plan(7), plan(7), plan(8)
    assert len(a) == 5 and all(len(p.nodules) == 2 for p in a)
    assert [p.source for p in a] == [p.source for p in b]
    assert all(np.array_equal(p.label, q.label) for p, q in zip(a, b))
    assert [n.bbox for p in a for n in p.nodules] == [n.bbox for p in b for n in p.nodules]
    assert [n.bbox for p in a for n in p.nodules] != [n.bbox for p in c for n in p.nodules]


def test_plan_layouts_skips_maps_that_cannot_host(label_256):
    small = np.zeros((256, 256), dtype=np.uint8)
    small[120:130, 120:130] = LEFT_LUNG
    maps = [small, small, label_256, small]
    plans = plan_layouts(maps, spacing_for(256), 6, LayoutRequest(diameter_mm=(20.0, 25.0)), np.random.default_rng(0))
    assert {p.source for p in plans} == {2}


def test_plan_layouts_uses_real_mask_sizes_and_records_their_source(label_256):
    pool = SizePool(np.array([9.0]), np.array([3]))
    plans = plan_layouts([label_256], [spacing_for(256)], 4, LayoutRequest(), np.random.default_rng(0), sizes=pool)
    assert all(n.requested_mm == 9.0 and n.size_source == 3 and n.shape_source == NO_SOURCE for p in plans for n in p.nodules)


def test_plan_layouts_raises_when_nothing_can_host(label_256):
    maps = [label_256, label_256]
    with pytest.raises(LayoutError) as info:
        plan_layouts(maps, spacing_for(256), 1, LayoutRequest(diameter_mm=(70.0, 70.0), placement="central"), np.random.default_rng(0))
    assert str(info.value) == "no label map can host a 70.0 mm nodule with placement 'central' (tried 2 maps)"
    with pytest.raises(LayoutError, match="100.0 mm"):
        plan_layouts(maps, spacing_for(256), 1, LayoutRequest(diameter_mm=(100.0, 100.0)), np.random.default_rng(0))


# -- real shapes ----------------------------------------------------------------------------


def test_library_from_store_and_real_shapes(mini_store):
    library = NoduleLibrary.from_store(mini_store)
    assert len(library) == 6
    np.testing.assert_array_equal(library.source_slices, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(library.source_rows, np.arange(6))
    rng = np.random.default_rng(0)
    for d in (3.0, 6.0, 11.0, 25.0):
        drawn = library.draw((1.0, 1.0), rng, diameter_mm=d)
        shape = drawn.footprint
        assert abs(float(equivalent_diameter_mm(shape.sum(), (1.0, 1.0))) - d) / d < 0.1
        m = drawn.patch.margin
        assert drawn.patch.image.shape == (shape.shape[0] + 2 * m, shape.shape[1] + 2 * m) and drawn.patch.image.dtype == np.uint8
        assert drawn.source_row in range(6)


def test_library_nodule_keeps_its_own_size_and_pixels(mini_store):
    """Without a diameter a library nodule is its own mask and pixels: pixel for pixel at its own
    spacing, and at a finer spacing the same size in mm with its own nodule value inside."""
    library = NoduleLibrary.from_store(mini_store)
    table = mini_store.nodules()
    spacing = tuple(float(v) for v in mini_store.meta("spacing")[0])
    for k, row in enumerate(library.source_rows):
        x0, y0, x1, y1 = table["bbox"][row].astype(int)
        image, label = mini_store.read(int(table["slice"][row]))
        own = label[y0:y1, x0:x1] == NODULE
        drawn = library.draw(spacing, np.random.default_rng(k), index=k)
        m = drawn.patch.margin
        inside = drawn.patch.image[m:-m, m:-m][drawn.footprint]
        assert drawn.footprint.sum() == own.sum()  # rotated or flipped, never resized
        assert set(np.unique(inside).tolist()) == set(np.unique(image[y0:y1, x0:x1][own]).tolist())
        fine = library.draw((spacing[0] / 2, spacing[1] / 2), np.random.default_rng(k), index=k)
        achieved = float(equivalent_diameter_mm(fine.footprint.sum(), (spacing[0] / 2, spacing[1] / 2)))
        assert abs(achieved - library.diameters_mm[k]) / library.diameters_mm[k] < 0.05
        m = fine.patch.margin
        assert np.median(fine.patch.image[m:-m, m:-m][fine.footprint]) == np.median(inside)


def test_plan_layouts_with_real_shapes_from_a_store(mini_store):
    library = NoduleLibrary.from_store(mini_store)
    labels = mini_store.label
    free = np.flatnonzero(~mini_store.meta("has_nodule"))
    request = LayoutRequest(per_slice=2, diameter_mm=(17.0, 30.0), shape="real")
    plans = plan_layouts(
        [labels[int(i)] for i in free], mini_store.meta("spacing")[free], 4, request, np.random.default_rng(3), library=library
    )
    for plan in plans:
        source = np.asarray(labels[int(free[plan.source])])
        for nodule in plan.nodules:
            assert nodule.shape_source in range(6) and nodule.size_source == NO_SOURCE
            m = nodule.patch.margin
            assert nodule.patch.image.shape == (nodule.footprint.shape[0] + 2 * m, nodule.footprint.shape[1] + 2 * m)
            assert abs(nodule.achieved_mm - nodule.requested_mm) / nodule.requested_mm < 0.25
            assert np.isin(source[nodule.mask(source.shape)], LUNGS).all()
            _assert_exact_bbox(nodule, source.shape)


def test_real_shape_errors(empty_store, label_256):
    with pytest.raises(LayoutError, match="no usable nodule masks"):
        NoduleLibrary.from_store(empty_store)
    with pytest.raises(LayoutError, match="shape 'real'"):
        plan_layouts([label_256], spacing_for(256), 1, LayoutRequest(diameter_mm=(5.0, 6.0), shape="real"), np.random.default_rng(0))
    with pytest.raises(LayoutError, match="shape 'real'"):
        plan_layouts([label_256], spacing_for(256), 1, LayoutRequest(shape="real"), np.random.default_rng(0))


def test_plan_layouts_reads_a_store_label_array_directly(mini_store):
    spacings = mini_store.meta("spacing")
    plans = plan_layouts(mini_store.label, spacings, 4, LayoutRequest(diameter_mm=(17.0, 20.0)), np.random.default_rng(0))
    for plan in plans:
        source = np.asarray(mini_store.label[plan.source])
        (nodule,) = plan.nodules
        mask = nodule.mask(source.shape)
        assert np.isin(source[mask], LUNGS).all()
        assert not (ndimage.binary_dilation(mask, iterations=GAP_PX) & (source == NODULE)).any()


def test_library_keeps_only_the_requested_split(mini_store):
    assert len(NoduleLibrary.from_store(mini_store, split=0)) == 6  # every patient of the mini store is train
    with pytest.raises(LayoutError, match="no usable nodule masks"):
        NoduleLibrary.from_store(mini_store, split=1)
