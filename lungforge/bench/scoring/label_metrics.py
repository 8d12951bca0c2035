"""Label-map agreement: per-class IoU from a confusion matrix and the nodule hit rate.

Nodule hit rule (documented in the README): the ground-truth nodules of a slice are the
4-connected components of its nodule label (id 5) at the working size. A nodule is **hit** when
the predicted nodule region that touches it — the union of the predicted nodule components
overlapping it — has IoU ≥ :data:`HIT_IOU` with it, or when the predicted map is nodule at the
nodule's centre (its pixel nearest its centroid). The centre rule keeps nodules of one or two
pixels, where a one-pixel offset decides IoU, from counting as missed when they are found.
A nodule's size is its equivalent diameter on the slice, 2·√(area/π) in mm at the working size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from lungforge.core.labels import LABELS, NODULE, NUM_CLASSES

HIT_IOU = 0.3
SIZE_EDGES_MM = (0.0, 5.0, 10.0, 20.0, float("inf"))
# 4-connectivity within a slice, never across the slices of a stack
_PLANAR = np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 1], [0, 1, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]])


def size_bin_names() -> list[str]:
    """Names of the nodule size bins, e.g. '0-5 mm', ..., '>=20 mm'."""
    edges = SIZE_EDGES_MM
    return [f"{lo:g}-{hi:g} mm" if np.isfinite(hi) else f">={lo:g} mm" for lo, hi in itertools.pairwise(edges)]


def confusion_matrix(target: torch.Tensor, pred: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(C, C) int64 counts, rows = target class, columns = predicted class, of label maps of any equal shape."""
    index = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def class_iou(confusion: torch.Tensor) -> dict[str, float | None]:
    """IoU per class name from a (C, C) confusion matrix; None for a class absent from target and prediction."""
    cm = confusion.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return {LABELS[c]: (float(tp[c] / union[c]) if union[c] > 0 else None) for c in range(cm.shape[0])}


def mean_iou(iou: dict[str, float | None]) -> float | None:
    """Mean of the defined per-class IoUs (classes present in target or prediction)."""
    values = [v for v in iou.values() if v is not None]
    return float(np.mean(values)) if values else None


@dataclass(frozen=True)
class HitRate:
    """`hit` of `nodules` ground-truth nodules found; `rate` their share (None without nodules)."""

    nodules: int
    hit: int

    @property
    def rate(self) -> float | None:
        return self.hit / self.nodules if self.nodules else None

    def to_dict(self) -> dict[str, Any]:
        return {"nodules": self.nodules, "hit": self.hit, "rate": self.rate}


@dataclass(frozen=True)
class HitSummary(HitRate):
    """Every nodule's :class:`HitRate` and one per size bin, `by_size` {bin name: rate}."""

    by_size: dict[str, HitRate]

    def to_dict(self) -> dict[str, Any]:
        """{"nodules", "hit", "rate", "by_size": {bin: {"nodules", "hit", "rate"}}}."""
        return {**super().to_dict(), "by_size": {name: r.to_dict() for name, r in self.by_size.items()}}


@dataclass
class NoduleHits:
    """Running counts of ground-truth nodules and hits, per size bin (:data:`SIZE_EDGES_MM`)."""

    total: np.ndarray
    hit: np.ndarray

    @classmethod
    def empty(cls) -> NoduleHits:
        n = len(SIZE_EDGES_MM) - 1
        return cls(np.zeros(n, np.int64), np.zeros(n, np.int64))

    def add(self, target: np.ndarray, pred: np.ndarray, pixel_area_mm2: np.ndarray) -> None:
        """Count the nodules of label maps `target` (N, H, W) against predictions `pred` (N, H, W);
        `pixel_area_mm2` (N,) is the area of one pixel of each slice at this size."""
        gt, n_gt = ndimage.label(target == NODULE, structure=_PLANAR)
        if n_gt == 0:
            return
        pred_nod = pred == NODULE
        pr, n_pr = ndimage.label(pred_nod, structure=_PLANAR)
        ids = np.arange(1, n_gt + 1)
        area_gt = np.bincount(gt.ravel(), minlength=n_gt + 1)[1:]
        area_pr = np.bincount(pr.ravel(), minlength=n_pr + 1)
        both = (gt > 0) & (pr > 0)
        pairs = np.unique(np.stack([gt[both], pr[both]]), axis=1) if both.any() else np.zeros((2, 0), np.int64)
        inter = np.bincount(gt[both], minlength=n_gt + 1)[1:]
        touching_area = np.bincount(pairs[0], weights=area_pr[pairs[1]], minlength=n_gt + 1)[1:]
        iou = inter / (area_gt + touching_area - inter)
        centres = np.array(ndimage.center_of_mass(np.ones_like(gt), gt, ids)).reshape(-1, 3)
        zz, yy, xx = np.nonzero(gt)
        owner = gt[zz, yy, xx] - 1
        dist = (yy - centres[owner, 1]) ** 2 + (xx - centres[owner, 2]) ** 2
        nearest = np.full(n_gt, -1)
        order = np.lexsort((dist, owner))
        first = np.r_[True, owner[order][1:] != owner[order][:-1]]
        nearest[owner[order][first]] = order[first]
        centre_hit = pred_nod[zz[nearest], yy[nearest], xx[nearest]]
        hit = (iou >= HIT_IOU) | centre_hit
        slice_of = zz[nearest]
        diameter = 2.0 * np.sqrt(area_gt * pixel_area_mm2[slice_of] / np.pi)
        bins = np.clip(np.searchsorted(SIZE_EDGES_MM, diameter, side="right") - 1, 0, len(SIZE_EDGES_MM) - 2)
        self.total += np.bincount(bins, minlength=self.total.size)
        self.hit += np.bincount(bins[hit], minlength=self.hit.size)

    def summary(self) -> HitSummary:
        """The counts so far, over every nodule and per size bin."""
        by_size = {name: HitRate(int(t), int(h)) for name, t, h in zip(size_bin_names(), self.total, self.hit)}
        return HitSummary(int(self.total.sum()), int(self.hit.sum()), by_size)
