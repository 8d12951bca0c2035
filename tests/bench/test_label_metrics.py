import numpy as np
import pytest
import torch

from lungforge.bench.scoring.label_metrics import NoduleHits, class_iou, confusion_matrix, mean_iou, size_bin_names
from lungforge.core.labels import BODY, LEFT_LUNG, NODULE


def disk(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_iou_from_confusion_matches_hand_count():
    target = torch.tensor([[0, 0, 1, 1], [4, 4, 4, 5]])
    pred = torch.tensor([[0, 1, 1, 1], [4, 4, 0, 0]])
    cm = confusion_matrix(target, pred)
    assert cm.sum() == 8 and cm[1, 1] == 2 and cm[0, 1] == 1
    iou = class_iou(cm)
    assert iou["background"] == pytest.approx(1 / 4)  # tp 1; target 2, pred 3
    assert iou["left_lung"] == pytest.approx(2 / 3)
    assert iou["body"] == pytest.approx(2 / 3)
    assert iou["nodule"] == 0.0
    assert iou["right_lung"] is None and iou["trachea"] is None
    assert mean_iou(iou) == pytest.approx(np.mean([1 / 4, 2 / 3, 2 / 3, 0.0]))


def test_hit_rule_iou_and_centre_and_size_bins():
    size = 64
    target = np.full((3, size, size), LEFT_LUNG, np.uint8)
    pred = np.full((3, size, size), LEFT_LUNG, np.uint8)
    # slice 0: a 12-px-wide nodule found one pixel off (IoU ~0.8) and one missed entirely
    target[0][disk(size, 20, 20, 6)] = NODULE
    pred[0][disk(size, 21, 20, 6)] = NODULE
    target[0][disk(size, 45, 45, 6)] = NODULE
    # slice 1: a single-pixel nodule whose centre is predicted (IoU 1/5, centre hit)
    target[1, 30, 30] = NODULE
    pred[1][disk(size, 30, 30, 1)] = NODULE
    # slice 2: prediction far too large around the nodule, centre not nodule: IoU < 0.3, miss
    target[2][disk(size, 30, 30, 3)] = NODULE
    pred[2][disk(size, 30, 30, 14) & ~disk(size, 30, 30, 1)] = NODULE
    hits = NoduleHits.empty()
    hits.add(target, pred, pixel_area_mm2=np.array([1.0, 1.0, 1.0]))
    s = hits.summary()
    assert (s.nodules, s.hit) == (4, 2)
    bins = size_bin_names()
    # 2·√(area/π) with area in mm² = px here: r=6 disks → ~12 mm, 1 px → 1.1 mm, r=3 → ~6 mm
    assert s.by_size[bins[2]].to_dict() == {"nodules": 2, "hit": 1, "rate": 0.5}
    assert s.by_size[bins[0]].to_dict() == {"nodules": 1, "hit": 1, "rate": 1.0}
    assert s.by_size[bins[1]].hit == 0 and s.by_size[bins[3]].rate is None


def test_components_do_not_join_across_slices_and_size_uses_pixel_area():
    size = 32
    target = np.full((2, size, size), BODY, np.uint8)
    target[:, 10:14, 10:14] = NODULE  # same place on both slices: two nodules
    hits = NoduleHits.empty()
    hits.add(target, target.copy(), pixel_area_mm2=np.array([1.0, 25.0]))
    s = hits.summary()
    assert s.nodules == 2 and s.rate == 1.0
    # 16 px: 4.5 mm at 1 mm²/px, 22.6 mm at 25 mm²/px
    assert s.by_size["0-5 mm"].nodules == 1 and s.by_size[">=20 mm"].nodules == 1
