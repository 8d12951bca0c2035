from __future__ import annotations

import numpy as np
import pytest

from lungforge.augment.layout import LayoutRequest, place_nodules
from lungforge.augment.visibility import (
    contrast_threshold_from_store,
    hu_from_uint8,
    label_contrasts_hu,
    nodule_contrast_hu,
    nodule_contrast_hu_batch,
    real_contrasts_hu,
)
from lungforge.core.errors import InputError
from lungforge.core.labels import LEFT_LUNG, RIGHT_LUNG


def _hu(value: float) -> float:
    return -1000.0 + value / 255.0 * 1400.0


def test_hu_from_uint8_undoes_the_window():
    np.testing.assert_allclose(hu_from_uint8(np.array([0, 255], dtype=np.uint8)), [-1000.0, 400.0])


def test_contrast_of_a_uniform_nodule_is_exact(label_256, render_slice, lung_value):
    edited, (nodule,) = place_nodules(label_256, (1.4, 1.4), [12.0], LayoutRequest(), np.random.default_rng(0))
    image = render_slice(edited, 150)
    lung = np.isin(edited, (LEFT_LUNG, RIGHT_LUNG))
    contrast = nodule_contrast_hu(image, nodule.mask(edited.shape), lung)
    assert contrast == pytest.approx(_hu(150) - _hu(lung_value))


def test_blank_nodule_rejected_and_bright_one_accepted(mini_store, label_256, render_slice, lung_value):
    threshold = contrast_threshold_from_store(mini_store, percentile=5.0)
    edited, (_nodule,) = place_nodules(label_256, (1.4, 1.4), [10.0], LayoutRequest(), np.random.default_rng(1))
    blank = label_contrasts_hu(render_slice(edited, lung_value), edited)
    bright = label_contrasts_hu(render_slice(edited, 170), edited)
    assert blank == pytest.approx([0.0], abs=1e-9)
    assert blank[0] < threshold <= bright[0]


def test_percentile_threshold_of_a_hand_made_store(mini_store, mini_store_contrasts_hu):
    expected = mini_store_contrasts_hu
    np.testing.assert_allclose(np.sort(real_contrasts_hu(mini_store)), np.sort(expected))
    for q in (0.0, 5.0, 50.0):
        assert contrast_threshold_from_store(mini_store, percentile=q) == pytest.approx(np.percentile(expected, q))


def test_threshold_needs_nodules_and_a_valid_percentile(empty_store, mini_store):
    with pytest.raises(InputError, match="empty.zarr"):
        contrast_threshold_from_store(empty_store)
    with pytest.raises(ValueError, match="120"):
        contrast_threshold_from_store(mini_store, percentile=120)


def test_batch_matches_single_and_ring_ignores_other_nodules(label_256, render_slice, lung_value):
    edited, nodules = place_nodules(label_256, (1.4, 1.4), [10.0, 10.0, 8.0], LayoutRequest(placement="left"), np.random.default_rng(2))
    image = render_slice(edited, 100)
    bright = nodules[1].mask(edited.shape)
    image[bright] = 250  # a neighbour this bright would shift any ring that included it
    lung = np.isin(edited, (LEFT_LUNG, RIGHT_LUNG))
    masks = np.stack([n.mask(edited.shape) for n in nodules])
    batch = nodule_contrast_hu_batch(np.broadcast_to(image, masks.shape), masks, np.broadcast_to(lung, masks.shape))
    singles = [nodule_contrast_hu(image, m, lung) for m in masks]
    np.testing.assert_allclose(batch, singles)
    np.testing.assert_allclose(batch, [_hu(100) - _hu(lung_value), _hu(250) - _hu(lung_value), _hu(100) - _hu(lung_value)])
    np.testing.assert_allclose(label_contrasts_hu(image, edited, masks), batch)


def test_empty_nodule_or_ring_gives_nan():
    image = np.zeros((16, 16), dtype=np.uint8)
    nothing = np.zeros((16, 16), dtype=bool)
    assert np.isnan(nodule_contrast_hu(image, nothing, ~nothing))
    nodule = nothing.copy()
    nodule[6:9, 6:9] = True
    assert np.isnan(nodule_contrast_hu(image, nodule, nothing))
    with pytest.raises(ValueError, match="ring_px"):
        nodule_contrast_hu(image, nodule, ~nodule, ring_px=(6, 2))


def test_threshold_at_generator_size_measures_resized_slices(mini_store):
    from lungforge.augment.visibility import label_contrasts_hu, real_contrasts_hu
    from lungforge.data.resize import resize_slices

    size = mini_store.shape_hw[0] // 2
    rows = np.flatnonzero(mini_store.meta("has_nodule"))
    image, label = resize_slices(mini_store.image[rows], mini_store.label[rows], size)
    expected = np.concatenate([label_contrasts_hu(i, lab) for i, lab in zip(image, label)])
    np.testing.assert_allclose(real_contrasts_hu(mini_store, size=size), expected[np.isfinite(expected)])
    assert not np.allclose(real_contrasts_hu(mini_store, size=size), real_contrasts_hu(mini_store)[: expected.size])
