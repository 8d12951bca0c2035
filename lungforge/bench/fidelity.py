"""`bench fidelity`: label fidelity of synthetic stores, measured offline.

A segmenter trained on the real store's train split (:mod:`lungforge.bench.segmenter`) segments
the real TEST slices (the ceiling: what real images score) and every synthetic slice; each is
compared with the label map it was made from: per-class IoU, mIoU and the nodule hit rate per
size bin (rule in :mod:`lungforge.bench.label_metrics`). Beside them, the Fréchet distance
between the segmenter's bottleneck features of synthetic and real test slices, per subset
(nodule, nodule-free, all), with :mod:`lungforge.bench.fid`'s maths: a domain feature distance
that needs no downloaded weights, NOT comparable with published (Inception) FID.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lungforge.bench.fid import SUBSETS, Moments, frechet_distance
from lungforge.bench.label_metrics import HIT_IOU, NoduleHits, class_iou, confusion_matrix, mean_iou, size_bin_names
from lungforge.bench.segmenter import Segmenter, SegmenterConfig, load_or_train
from lungforge.bench.slices import read_resized
from lungforge.data.store import SPLIT_IDS, Store
from lungforge.errors import InputError
from lungforge.labels import NUM_CLASSES

REAL = "real"
BLOCK = 256
HIT_RULE = (
    f"a nodule (4-connected nodule component of the label map at the working size) is hit when the predicted nodule "
    f"components touching it have IoU >= {HIT_IOU} with it, or the prediction is nodule at its centre"
)
FEATURE_NOTE = "Fréchet distance on the fidelity segmenter's bottleneck features vs the real test slices: NOT comparable with published FID"


@dataclass
class FidelityScore:
    """Running agreement of predicted and given label maps, and feature moments by subset."""

    confusion: torch.Tensor
    hits: NoduleHits
    moments: dict[str, Moments]
    slices: int = 0

    @classmethod
    def empty(cls, dims: int) -> "FidelityScore":
        return cls(torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64), NoduleHits.empty(), {s: Moments(dims) for s in SUBSETS})

    def add(self, segmenter: Segmenter, images: np.ndarray, labels: np.ndarray, pixel_area_mm2: np.ndarray, has_nodule: np.ndarray) -> None:
        """Score slices: images and labels (N, S, S) uint8 at the working size, pixel areas (N,) mm², has_nodule (N,) bool."""
        pred, feats = segmenter.predict(images)
        self.confusion += confusion_matrix(torch.from_numpy(labels), torch.from_numpy(pred), self.confusion.shape[0])
        self.hits.add(labels, pred, pixel_area_mm2)
        self.moments["all"].add(feats)
        self.moments["nodule"].add(feats[has_nodule])
        self.moments["nodule_free"].add(feats[~has_nodule])
        self.slices += len(images)

    def summary(self, reference: "FidelityScore | None") -> dict[str, Any]:
        """{"slices", "iou": {class: IoU}, "miou", "nodule_hits": {...}, "feature_distance": {subset: {...}} or None}."""
        iou = class_iou(self.confusion)
        distance = None
        if reference is not None:
            distance = {}
            for subset in SUBSETS:
                r, s = reference.moments[subset], self.moments[subset]
                fd = frechet_distance(*s.mean_cov(), *r.mean_cov()) if min(r.n, s.n) >= 2 else None
                distance[subset] = {"fd": fd, "n_real": r.n, "n_synthetic": s.n}
        return {"slices": self.slices, "iou": iou, "miou": mean_iou(iou), "nodule_hits": self.hits.summary(), "feature_distance": distance}


def pixel_area_mm2(store: Store, rows: np.ndarray, size: int) -> np.ndarray:
    """(n,) area in mm² of one pixel of slices `rows` once resized to (size, size)."""
    h, w = store.shape_hw
    spacing = store.meta("spacing")[rows].astype(np.float64)
    return spacing[:, 0] * (h / size) * spacing[:, 1] * (w / size)


def score_store(segmenter: Segmenter, store: Store, rows: np.ndarray, progress: Any = None, label: str = "") -> FidelityScore:
    """Score slices `rows` of `store` against their own label maps, in blocks of :data:`BLOCK`."""
    size = segmenter.config.size
    score = FidelityScore.empty(segmenter.model.feature_dims)
    has = store.meta("has_nodule")
    task = progress.add_task(f"fidelity {label}", total=int(rows.size), status="") if progress else None
    for start in range(0, rows.size, BLOCK):
        block = rows[start : start + BLOCK]
        images, labels = read_resized(store, block, size)
        score.add(segmenter, images, labels, pixel_area_mm2(store, block, size), has[block])
        if progress:
            progress.advance(task, block.size)
    return score


def compute_fidelity(
    real: Store,
    synthetic: dict[str, Store],
    config: SegmenterConfig,
    device: torch.device,
    progress: Any = None,
) -> dict[str, Any]:
    """Train or load the segmenter of (real, config) and score the real test slices and every store.

    Returns {"size", "quick", "config", "segmenter": {"path", "cached", ...}, "hit_rule",
    "size_bins", "feature_note", "scores": {"real": ceiling, name: score}}; see
    :meth:`FidelityScore.summary` for a score.
    """
    test_rows = np.flatnonzero(real.meta("split") == SPLIT_IDS["test"])
    if test_rows.size == 0:
        raise InputError(f"{real.path}: no test-split slices; the fidelity ceiling needs real test patients")
    segmenter = load_or_train(real, config, device, progress)
    ceiling = score_store(segmenter, real, test_rows, progress, REAL)
    scores = {REAL: ceiling.summary(None)}
    for name, store in synthetic.items():
        scores[name] = score_store(segmenter, store, np.arange(len(store)), progress, name).summary(ceiling)
    return {
        "size": config.size,
        "quick": config.quick,
        "config": dataclasses.asdict(config),
        "segmenter": {"path": str(segmenter.path), "cached": segmenter.cached, "feature_dims": segmenter.model.feature_dims, **segmenter.info},
        "hit_rule": HIT_RULE,
        "size_bins": size_bin_names(),
        "feature_note": FEATURE_NOTE,
        "scores": scores,
    }


def _num(value: float | None, scale: float = 100.0, digits: int = 1) -> str:
    return "n/a" if value is None else f"{scale * value:.{digits}f}"


def fidelity_markdown(section: dict[str, Any]) -> list[str]:
    """Markdown lines of the fidelity section: one row per condition, the real ceiling first."""
    classes = list(next(iter(section["scores"].values()))["iou"])
    bins = section["size_bins"]
    head = ["condition", "slices", "mIoU (%)", *(f"IoU {c}" for c in classes), "nodule hit (%)", *(f"hit {b}" for b in bins),
            "FD nodule", "FD nodule-free"]
    lines = [
        f"Segmenter: UNet (width {section['config']['width']}) trained on the real train split at "
        f"{section['size']}×{section['size']} px ({section['segmenter']['train_slices']} slices, "
        f"{'cached' if section['segmenter']['cached'] else 'trained now'}); scored on the real test slices (ceiling) and every synthetic slice.",
        f"Nodule hit: {section['hit_rule']}. FD: {section['feature_note']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for name, s in section["scores"].items():
        hits = s["nodule_hits"]
        by = [f"{_num(hits['by_size'][b]['rate'], digits=0)} ({hits['by_size'][b]['nodules']})" for b in bins]
        fd = s["feature_distance"]
        fds = ["–", "–"] if fd is None else [_num(fd[k]["fd"], 1.0, 3) for k in ("nodule", "nodule_free")]
        row = [f"{name} (ceiling)" if name == REAL else name, str(s["slices"]), _num(s["miou"]),
               *(_num(s["iou"][c]) for c in classes), f"{_num(hits['rate'])} ({hits['nodules']})", *by, *fds]
        lines.append("| " + " | ".join(row) + " |")
    return lines
