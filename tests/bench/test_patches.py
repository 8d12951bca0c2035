import numpy as np

from lungforge.bench.protocol.inputs import nodule_boxes, open_real
from lungforge.bench.protocol.patches import PATCH, crop, negative_candidates, positive_centres, sample_patches
from lungforge.bench.protocol.slices import read_resized, scale_boxes
from lungforge.core.labels import LUNG_LABELS, NODULE


def test_positive_centres_jitter_and_clamp():
    rng = np.random.default_rng(0)
    boxes = np.array([[20, 30, 26, 36], [0, 0, 4, 4]], np.float32)
    centres = positive_centres(np.repeat(boxes, 50, axis=0), 64, rng)
    first, second = centres[:50], centres[50:]
    assert np.all(np.abs(first - np.array([33, 23])) <= 2)
    assert len(np.unique(first, axis=0)) > 1
    assert np.all(second == PATCH // 2)  # clamped so the patch stays inside


def test_negative_candidates_avoid_nodules_and_lie_in_lung():
    label = np.zeros((64, 64), np.uint8)
    label[8:56, 8:56] = 1
    label[30:34, 40:44] = NODULE
    boxes = np.array([[40, 30, 44, 34]], np.float32)
    cand = negative_candidates(label, boxes)
    ys, xs = np.nonzero(cand)
    assert ys.size > 0
    assert np.all(np.isin(label[ys, xs], LUNG_LABELS))
    # the 32×32 window around every candidate misses the nodule box [40, 44] × [30, 34]
    overlap_x = (xs - 16 < 44) & (xs + 16 > 40)
    overlap_y = (ys - 16 < 34) & (ys + 16 > 30)
    assert not np.any(overlap_x & overlap_y)
    assert ys.min() >= 16 and ys.max() <= 48


def test_crop_takes_the_window_around_the_centre():
    images = np.arange(2 * 64 * 64, dtype=np.int64).reshape(2, 64, 64)
    patches = crop(images, np.array([1]), np.array([[20, 30]]))
    np.testing.assert_array_equal(patches[0], images[1, 4:36, 14:46])


def test_sampled_patches_are_balanced_centred_and_deterministic(stores):
    real = open_real(stores["real"])
    groups = real.meta("fold") % 2
    slices = np.arange(len(real))
    a = sample_patches(real, slices, groups, 64, seed=5)
    b = sample_patches(real, slices, groups, 64, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    for g in (0, 1):
        sel = a.group == g
        assert a.target[sel].sum() * 2 == sel.sum()  # 1:1 inside every fold group
    boxes = nodule_boxes(real)
    _, labels = read_resized(real, a.slice, 64)
    for i in range(len(a)):
        y, x = a.centre[i]
        box = scale_boxes(boxes[a.slice[i]], 64, 64, 64)
        if a.target[i]:
            cx, cy = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
            assert np.min(np.abs(cx - x) + np.abs(cy - y)) <= 5  # centre ± 2 px jitter (+ flooring)
            assert a.images[i].max() > 180  # the bright nodule is inside the patch
        else:
            window = labels[i, y - 16 : y + 16, x - 16 : x + 16]
            assert labels[i, y, x] in LUNG_LABELS
            assert not np.any(window == NODULE)


def test_positive_patches_name_their_nodule_row(stores):
    real = open_real(stores["real"])
    slices = np.arange(len(real))
    patches = sample_patches(real, slices, real.meta("fold").astype(np.int64)[slices] % 2, 64, seed=3)
    positive = patches.target == 1
    assert (patches.nodule[~positive] == -1).all() and (patches.nodule[positive] >= 0).all()
    table = real.nodules()
    rows = patches.nodule[positive]
    np.testing.assert_array_equal(table["slice"][rows], patches.slice[positive])
    x0, y0, x1, y1 = table["bbox"][rows].T
    y, x = patches.centre[positive].T
    assert ((x >= np.floor(x0) - 2) & (x <= x1 + 2) & (y >= np.floor(y0) - 2) & (y <= y1 + 2)).all()
    assert sorted(rows.tolist()) == list(range(table["slice"].size))
    assert patches.select(positive).nodule.tolist() == rows.tolist()
