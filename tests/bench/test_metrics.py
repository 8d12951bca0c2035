import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from lungforge.bench.scoring.metrics import Confusion, classification_metrics, detection_metrics


def test_hand_worked_confusion_matrix():
    # tp 6, fp 2, tn 10, fn 4: accuracy 16/22, precision 6/8, recall 6/10, specificity 10/12, F1 12/18
    m = classification_metrics(Confusion(tp=6, fp=2, tn=10, fn=4))
    assert m["accuracy"] == pytest.approx(16 / 22)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.6)
    assert m["specificity"] == pytest.approx(10 / 12)
    assert m["f1"] == pytest.approx(12 / 18)


def test_degenerate_matrix_is_zero_not_nan():
    m = classification_metrics(Confusion(tp=0, fp=0, tn=5, fn=0))
    assert m == {"accuracy": 1.0, "precision": 0.0, "recall": 0.0, "specificity": 1.0, "f1": 0.0}


def test_confusion_from_predictions_matches_sklearn():
    rng = np.random.default_rng(3)
    target = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.7, target, 1 - target)
    cm = Confusion.from_predictions(target, pred)
    assert cm.tp + cm.fp + cm.tn + cm.fn == 200
    m = classification_metrics(cm)
    assert m["accuracy"] == pytest.approx(accuracy_score(target, pred))
    assert m["precision"] == pytest.approx(precision_score(target, pred))
    assert m["recall"] == pytest.approx(recall_score(target, pred))
    assert m["specificity"] == pytest.approx(recall_score(1 - target, 1 - pred))
    assert m["f1"] == pytest.approx(f1_score(target, pred))


def _coco_reference(preds, targets, iou):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets)):
        images.append({"id": i, "width": 64, "height": 64})
        for b in t["boxes"].tolist():
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": (b[2] - b[0]) * (b[3] - b[1]),
                    "iscrowd": 0,
                }
            )
        for b, s in zip(p["boxes"].tolist(), p["scores"].tolist()):
            dets.append({"image_id": i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "nodule"}]}
    gt.createIndex()
    dt = gt.loadRes(dets)
    ev = COCOeval(gt, dt, "bbox")
    ev.params.iouThrs = np.array([iou])
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats[0], ev.stats[8]


def test_ap_ar_match_pycocotools_on_fixed_boxes():
    def t(*b):
        return {"boxes": torch.tensor(b, dtype=torch.float32).reshape(-1, 4), "labels": torch.ones(len(b), dtype=torch.int64)}

    targets = [t([10, 10, 20, 20]), t([30, 30, 40, 40], [5, 40, 15, 50]), t([0, 0, 8, 8])]

    def p(boxes, scores):
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores),
            "labels": torch.ones(len(scores), dtype=torch.int64),
        }

    preds = [
        p([[10, 10, 20, 21], [40, 40, 50, 50]], [0.9, 0.8]),  # IoU 0.91 hit, one false positive
        p([[31, 31, 41, 41], [5, 42, 15, 52]], [0.7, 0.95]),  # IoU 0.68 and 0.67
        p([[1, 1, 10, 10]], [0.4]),  # IoU 0.51
    ]
    ours = detection_metrics(preds, targets)
    for name_ap, name_ar, iou in (("AP50", "AR50", 0.5), ("AP60", "AR60", 0.6), (None, "AR70", 0.7)):
        ap, ar = _coco_reference(preds, targets, iou)
        if name_ap:
            assert ours[name_ap] == pytest.approx(ap, abs=1e-6)
        assert ours[name_ar] == pytest.approx(ar, abs=1e-6)
    assert ours["AR50"] == pytest.approx(1.0)
    assert ours["AR70"] == pytest.approx(1 / 4)


def test_auroc_matches_sklearn_and_a_hand_count():
    from sklearn.metrics import roc_auc_score

    from lungforge.bench.scoring.metrics import auroc

    # positives 0.9, 0.4, 0.35; negatives 0.5, 0.3, 0.1: 7 of the 9 (pos, neg) pairs are ordered right
    target = np.array([1, 1, 1, 0, 0, 0])
    logits = np.array([0.9, 0.4, 0.35, 0.5, 0.3, 0.1])
    assert auroc(target, logits) == pytest.approx(7 / 9) == pytest.approx(roc_auc_score(target, logits))
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + t
    assert auroc(t, s) == pytest.approx(roc_auc_score(t, s))
    assert np.isnan(auroc(np.ones(4), np.arange(4.0)))


def test_recall_by_size_bins():
    from lungforge.bench.scoring.metrics import SIZE_RECALL_METRICS, recall_by_size

    predicted = np.array([1, 0, 1, 1, 0, 1, 1])
    diameter = np.array([3.0, 5.9, 6.0, 9.9, 9.95, 10.0, 25.0])
    recall, count = recall_by_size(predicted, diameter)
    assert [count[k] for k in SIZE_RECALL_METRICS] == [2, 3, 2]
    assert [recall[k] for k in SIZE_RECALL_METRICS] == pytest.approx([1 / 2, 2 / 3, 1.0])
    empty, _ = recall_by_size(np.array([1]), np.array([4.0]))
    assert np.isnan(empty["recall_ge10mm"]) and empty["recall_lt6mm"] == 1.0
