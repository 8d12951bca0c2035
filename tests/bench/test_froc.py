"""FROC of a slice detector against a hand-computed case."""

import numpy as np
import pytest

from lungforge.bench.scoring.froc import CPM, FP_RATES, FROC_METRICS, centre_hits, froc


def box(cx: float, cy: float, half: float = 2.0) -> list[float]:
    return [cx - half, cy - half, cx + half, cy + half]


def test_centre_in_box_rule_edges_included():
    truth = np.array([[10, 10, 20, 20]], np.float32)
    predicted = np.array([box(20, 15), box(20.5, 15), [0, 0, 40, 40], [12, 12, 13, 13]], np.float32)
    assert centre_hits(predicted, truth)[:, 0].tolist() == [True, False, True, True]
    assert centre_hits(np.zeros((0, 4)), truth).shape == (0, 1) and centre_hits(predicted, np.zeros((0, 4))).shape == (4, 0)


def test_froc_against_a_hand_computed_case():
    """Four slices, two nodule-free; three nodules.

    slice 0: nodule N0; detections hit N0 (0.9) and miss (0.8)
    slice 1: nodules NA, NB; detections hit NA (0.6 and 0.95: NA counted once, the 0.6 is no FP), NB (0.5)
    slice 2: nodule-free; detections 0.7 and 0.3 (false positives)
    slice 3: nodule-free; detection 0.85 (false positive)
    Nodule scores 0.9, 0.95, 0.5; false positives 0.8, 0.7, 0.3, 0.85 over 4 slices:
    threshold 0.9 → sensitivity 2/3 at 0 FP/slice; 0.85 → 1/4; 0.8 → 2/4; 0.7 → 3/4; 0.5 → 3/3 at 3/4;
    0.3 → 3/3 at 4/4. Sensitivity at 1/8, 1/4, 1/2: 2/3; at 1, 2, 4, 8: 1. CPM = (3·2/3 + 4) / 7 = 6/7.
    """
    truth = [
        np.array([[10, 10, 20, 20]], np.float32),
        np.array([[30, 30, 40, 40], [5, 40, 15, 50]], np.float32),
        np.zeros((0, 4), np.float32),
        np.zeros((0, 4), np.float32),
    ]
    boxes = [
        np.array([box(15, 15), box(50, 50)]),
        np.array([box(35, 35), box(34, 36), box(10, 45)]),
        np.array([box(20, 20), box(40, 10)]),
        np.array([box(25, 25)]),
    ]
    scores = [np.array([0.9, 0.8]), np.array([0.6, 0.95, 0.5]), np.array([0.7, 0.3]), np.array([0.85])]
    out = froc(boxes, scores, truth)
    expected = [2 / 3, 2 / 3, 2 / 3, 1.0, 1.0, 1.0, 1.0]
    assert [out[k] for k in FROC_METRICS] == pytest.approx(expected)
    assert out[CPM] == pytest.approx(6 / 7)
    assert (out["nodules"], out["slices"], out["false_positives"]) == (3, 4, 4)
    # without the nodule-free slices, the false positives per slice change: 0.8 → 1/2 FP/slice at sensitivity 2/3
    nodule_only = froc(boxes[:2], scores[:2], truth[:2])
    assert nodule_only["false_positives"] == 1
    assert [nodule_only[k] for k in FROC_METRICS] == pytest.approx([2 / 3, 2 / 3, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_froc_edge_cases():
    truth = [np.array([[10, 10, 20, 20]], np.float32)]
    none = froc([np.zeros((0, 4))], [np.zeros(0)], truth)
    assert none[CPM] == 0.0 and none["false_positives"] == 0
    perfect = froc([np.array([box(15, 15)])], [np.array([0.2])], truth)
    assert perfect[CPM] == 1.0
    free_only = froc([np.array([box(15, 15)])], [np.array([0.2])], [np.zeros((0, 4), np.float32)])
    assert np.isnan(free_only[CPM]) and free_only["nodules"] == 0
    assert len(FP_RATES) == len(FROC_METRICS) == 7
    with pytest.raises(ValueError, match="one entry per slice"):
        froc([np.zeros((0, 4))], [], truth)


def test_per_nodule_froc_finds_a_nodule_when_any_of_its_slices_is_hit():
    """One nodule on two slices (id 7) and one on a third (id 8): a hit on one slice of nodule 7
    finds it per nodule (1 of 2 nodules) while per slice it is 1 box of 3."""
    truth = [np.array([box(10, 10)]), np.array([box(10, 10)]), np.array([box(30, 30)])]
    boxes = [np.array([box(10, 10, 1)]), np.zeros((0, 4)), np.zeros((0, 4))]
    scores = [np.array([0.9]), np.zeros(0), np.zeros(0)]
    per_slice = froc(boxes, scores, truth)
    per_nodule = froc(boxes, scores, truth, nodule_ids=[np.array([7]), np.array([7]), np.array([8])])
    assert per_slice["nodules"] == 3 and per_slice[CPM] == pytest.approx(1 / 3)
    assert per_nodule["nodules"] == 2 and per_nodule[CPM] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="one id per truth box"):
        froc(boxes, scores, truth, nodule_ids=[np.array([7]), np.array([], np.int64), np.array([8])])
