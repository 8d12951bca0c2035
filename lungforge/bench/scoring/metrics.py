"""Per-fold metrics: binary classification from a confusion matrix, AUROC and recall per nodule
size of the classifier, and COCO-style AP/AR at one IoU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lungforge.bench.scoring.froc import CPM, FROC_METRICS

DETECT_METRICS = ("accuracy", "precision", "recall", "specificity", "f1")
LOCALIZE_METRICS = ("AP50", "AP60", "AR50", "AR60", "AR70")
AP_IOUS = {"AP50": 0.5, "AP60": 0.6}
AR_IOUS = {"AR50": 0.5, "AR60": 0.6, "AR70": 0.7}
SIZE_EDGES_MM = (6.0, 10.0)
"""Nodule diameter bins for recall: < 6, 6–10 and ≥ 10 mm (LUNA16 annotation diameter, `nodules/diameter_mm`)."""
SIZE_RECALL_METRICS = ("recall_lt6mm", "recall_6to10mm", "recall_ge10mm")
DETECT_EXTRA_METRICS = ("auroc", *SIZE_RECALL_METRICS)
"""Detection metrics beside the paper's: AUROC of the classifier's scores, recall per nodule size."""
LOCALIZE_EXTRA_METRICS = (CPM, *FROC_METRICS)
"""Localization metrics beside the paper's: CPM and the FROC sensitivities (:mod:`lungforge.bench.scoring.froc`)."""


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary confusion matrix (positive = nodule)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @classmethod
    def from_predictions(cls, target: np.ndarray, predicted: np.ndarray) -> Confusion:
        """From (n,) 0/1 targets and 0/1 predictions."""
        t = np.asarray(target).astype(bool)
        p = np.asarray(predicted).astype(bool)
        return cls(tp=int((t & p).sum()), fp=int((~t & p).sum()), tn=int((~t & ~p).sum()), fn=int((t & ~p).sum()))


def _ratio(num: int, den: int) -> float:
    """num / den, 0.0 when den is 0 (as sklearn's zero_division=0)."""
    return num / den if den else 0.0


def classification_metrics(cm: Confusion) -> dict[str, float]:
    """Accuracy, precision, recall (sensitivity), specificity and F1 as fractions in [0, 1]."""
    precision = _ratio(cm.tp, cm.tp + cm.fp)
    recall = _ratio(cm.tp, cm.tp + cm.fn)
    return {
        "accuracy": _ratio(cm.tp + cm.tn, cm.tp + cm.fp + cm.tn + cm.fn),
        "precision": precision,
        "recall": recall,
        "specificity": _ratio(cm.tn, cm.tn + cm.fp),
        "f1": _ratio(2 * cm.tp, 2 * cm.tp + cm.fp + cm.fn),
    }


def auroc(target: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of (n,) scores (any monotone scale, e.g. logits) for (n,) 0/1
    targets (sklearn's roc_auc_score); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    t = np.asarray(target).astype(bool)
    if t.all() or not t.any():
        return float("nan")
    return float(roc_auc_score(t, np.asarray(scores, dtype=np.float64)))


def recall_by_size(predicted: np.ndarray, diameter_mm: np.ndarray) -> tuple[dict[str, float], dict[str, int]]:
    """Recall of positive patches per nodule size bin (:data:`SIZE_EDGES_MM`).

    `predicted` (n,) 0/1 predictions and `diameter_mm` (n,) diameter of the nodule of each
    POSITIVE patch. Returns ({"recall_lt6mm", "recall_6to10mm", "recall_ge10mm": fraction, NaN
    for an empty bin}, {same keys: positives in the bin}).
    """
    bins = np.digitize(np.asarray(diameter_mm, dtype=np.float64), SIZE_EDGES_MM)
    hit = np.asarray(predicted).astype(bool)
    recall, count = {}, {}
    for b, name in enumerate(SIZE_RECALL_METRICS):
        inside = bins == b
        count[name] = int(inside.sum())
        recall[name] = float(hit[inside].mean()) if count[name] else float("nan")
    return recall, count


def detection_metrics(predictions: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """AP50, AP60, AR50, AR60, AR70 as fractions, COCO-style (pycocotools), one IoU threshold each.

    `predictions`: per image {"boxes" (K, 4) x0,y0,x1,y1 px, "scores" (K,), "labels" (K,)};
    `targets`: per image {"boxes" (G, 4), "labels" (G,)}. AR is recall at 100 detections.
    A metric with no ground truth at all is NaN.
    """
    from torchmetrics.detection import MeanAveragePrecision

    out: dict[str, float] = {}
    for iou in sorted(set(AP_IOUS.values()) | set(AR_IOUS.values())):
        metric = MeanAveragePrecision(iou_type="bbox", iou_thresholds=[iou], backend="pycocotools")
        metric.update(predictions, targets)
        result = metric.compute()
        ap, ar = float(result["map"]), float(result["mar_100"])
        for name, t in AP_IOUS.items():
            if t == iou:
                out[name] = ap if ap >= 0 else float("nan")
        for name, t in AR_IOUS.items():
            if t == iou:
                out[name] = ar if ar >= 0 else float("nan")
    return {name: out[name] for name in LOCALIZE_METRICS}
