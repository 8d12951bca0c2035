"""`bench fidelity`: label fidelity of synthetic stores, measured offline and cross-fitted.

Two segmenters (:mod:`lungforge.bench.scoring.segmenter`), each trained on one half of the real train
patients (:mod:`lungforge.bench.scoring.crossfit`), segment the real train slices of the OTHER half (the
ceiling: what real images score) and every synthetic slice whose label map, image and nodule
sources they did not train on; each slice is compared with the label map it was made from:
per-class IoU, mIoU and the nodule hit rate per size bin (rule in
:mod:`lungforge.bench.scoring.label_metrics`). Slices whose sources touch both halves are not scored
(counted as `unscored`). Beside them, the Fréchet distance between the segmenters' bottleneck
features of synthetic and real slices, per subset (nodule, nodule-free, all), with
:mod:`lungforge.bench.scoring.fid`'s maths, computed per scoring segmenter in its own feature space and
averaged weighted by the synthetic slices each scored: a domain feature distance that needs no
downloaded weights, NOT comparable with published (Inception) FID.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lungforge.bench.protocol.results import json_safe
from lungforge.bench.protocol.slices import read_resized
from lungforge.bench.scoring.crossfit import HALVES, UNSCORED, real_scorers, synthetic_scorers
from lungforge.bench.scoring.fid import SUBSETS, Moments, frechet_distance
from lungforge.bench.scoring.label_metrics import HIT_IOU, HitSummary, NoduleHits, class_iou, confusion_matrix, mean_iou, size_bin_names
from lungforge.bench.scoring.segmenter import Segmenter, SegmenterConfig, load_or_train
from lungforge.core.labels import NUM_CLASSES
from lungforge.store import Store

REAL = "real"
BLOCK = 256
HIT_RULE = (
    f"a nodule (4-connected nodule component of the label map at the working size) is hit when the predicted nodule "
    f"components touching it have IoU >= {HIT_IOU} with it, or the prediction is nodule at its centre"
)
FEATURE_NOTE = (
    "Fréchet distance on the fidelity segmenters' bottleneck features vs the real slices each scored, averaged over the two "
    "segmenters: NOT comparable with published FID"
)


@dataclass(frozen=True)
class FeatureDistance:
    """One subset's Fréchet distance `fd` of synthetic to real bottleneck features (None when no
    scorer had 2 slices on both sides), over `n_real` and `n_synthetic` slices."""

    fd: float | None
    n_real: int
    n_synthetic: int


@dataclass(frozen=True)
class FidelitySummary:
    """Agreement of predicted and given label maps over `slices`: IoU per class name (None for a
    class absent from both), their mean `miou`, the `nodule_hits`, and per subset (nodule,
    nodule-free, all) the `feature_distance` to the reference (None without a reference)."""

    slices: int
    iou: dict[str, float | None]
    miou: float | None
    nodule_hits: HitSummary
    feature_distance: dict[str, FeatureDistance] | None

    def to_dict(self) -> dict[str, Any]:
        """{"slices", "iou", "miou", "nodule_hits", "feature_distance": {subset: {"fd", "n_real", "n_synthetic"}} or None}."""
        distance = None if self.feature_distance is None else {s: dataclasses.asdict(d) for s, d in self.feature_distance.items()}
        return {
            "slices": self.slices,
            "iou": self.iou,
            "miou": self.miou,
            "nodule_hits": self.nodule_hits.to_dict(),
            "feature_distance": distance,
        }


@dataclass(frozen=True)
class StoreFidelity:
    """One store's :class:`FidelitySummary` and how its slices were scored: `scored_by` [slices per
    segmenter] and `unscored` (slices whose sources touch both halves)."""

    summary: FidelitySummary
    scored_by: list[int]
    unscored: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "scored_by": self.scored_by, "unscored": self.unscored}


@dataclass
class FidelityScore:
    """Running agreement of predicted and given label maps, and feature moments by subset, one set
    per scoring segmenter (features of two networks live in two spaces)."""

    confusion: torch.Tensor
    hits: NoduleHits
    moments: list[dict[str, Moments]]
    slices: int = 0

    @classmethod
    def empty(cls, dims: int, scorers: int = 1) -> FidelityScore:
        moments = [{s: Moments(dims) for s in SUBSETS} for _ in range(scorers)]
        return cls(torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64), NoduleHits.empty(), moments)

    def add(
        self,
        segmenter: Segmenter,
        images: np.ndarray,
        labels: np.ndarray,
        pixel_area_mm2: np.ndarray,
        has_nodule: np.ndarray,
        scorer: int = 0,
    ) -> None:
        """Score slices with `segmenter` (scorer number `scorer`): images and labels (N, S, S) uint8 at
        the working size, pixel areas (N,) mm², has_nodule (N,) bool."""
        pred, feats = segmenter.predict(images)
        self.confusion += confusion_matrix(torch.from_numpy(labels), torch.from_numpy(pred), self.confusion.shape[0])
        self.hits.add(labels, pred, pixel_area_mm2)
        moments = self.moments[scorer]
        moments["all"].add(feats)
        moments["nodule"].add(feats[has_nodule])
        moments["nodule_free"].add(feats[~has_nodule])
        self.slices += len(images)

    def summary(self, reference: FidelityScore | None) -> FidelitySummary:
        """The agreement so far, and the feature distance to `reference` (None: no distance).

        A subset's `fd` is the Fréchet distance of each scorer's features to the reference's
        features of the same scorer, averaged weighted by this score's slices (scorers with fewer
        than 2 slices on either side are left out; None when none is left)."""
        iou = class_iou(self.confusion)
        distance = None
        if reference is not None:
            distance = {}
            for subset in SUBSETS:
                pairs = [(r[subset], s[subset]) for r, s in zip(reference.moments, self.moments)]
                fds = [(frechet_distance(*s.mean_cov(), *r.mean_cov()), s.n) for r, s in pairs if min(r.n, s.n) >= 2]
                fd = sum(d * n for d, n in fds) / sum(n for _, n in fds) if fds else None
                distance[subset] = FeatureDistance(fd, sum(r.n for r, _ in pairs), sum(s.n for _, s in pairs))
        return FidelitySummary(self.slices, iou, mean_iou(iou), self.hits.summary(), distance)


def pixel_area_mm2(store: Store, rows: np.ndarray, size: int) -> np.ndarray:
    """(n,) area in mm² of one pixel of slices `rows` once resized to (size, size)."""
    h, w = store.shape_hw
    spacing = store.meta("spacing")[rows].astype(np.float64)
    return spacing[:, 0] * (h / size) * spacing[:, 1] * (w / size)


def score_rows(
    score: FidelityScore, segmenter: Segmenter, scorer: int, store: Store, rows: np.ndarray, progress: Any = None, task: Any = None
) -> None:
    """Add slices `rows` of `store`, segmented by `segmenter` (scorer number `scorer`), to `score`,
    in blocks of :data:`BLOCK`."""
    size = segmenter.config.size
    has = store.meta("has_nodule")
    for start in range(0, rows.size, BLOCK):
        block = rows[start : start + BLOCK]
        images, labels = read_resized(store, block, size)
        score.add(segmenter, images, labels, pixel_area_mm2(store, block, size), has[block], scorer)
        if progress:
            progress.advance(task, block.size)


def score_store(segmenter: Segmenter, store: Store, rows: np.ndarray, progress: Any = None, label: str = "") -> FidelityScore:
    """Score slices `rows` of `store` against their own label maps with one segmenter."""
    score = FidelityScore.empty(segmenter.model.feature_dims)
    task = progress.add_task(f"fidelity {label}", total=int(rows.size), status="") if progress else None
    score_rows(score, segmenter, 0, store, rows, progress, task)
    return score


def score_crossfit(segmenters: list[Segmenter], store: Store, scorer: np.ndarray, progress: Any = None, label: str = "") -> FidelityScore:
    """Score every slice of `store` with the segmenter `scorer[i]` names ((N,) int; -1: not scored)."""
    score = FidelityScore.empty(segmenters[0].model.feature_dims, len(segmenters))
    task = progress.add_task(f"fidelity {label}", total=int((scorer != UNSCORED).sum()), status="") if progress else None
    for h, segmenter in enumerate(segmenters):
        score_rows(score, segmenter, h, store, np.flatnonzero(scorer == h), progress, task)
    return score


def store_fidelity(summary: FidelitySummary, scorer: np.ndarray) -> StoreFidelity:
    """`summary` with the slices each segmenter scored and the unscored ones, from `scorer` ((N,) int; -1: not scored)."""
    return StoreFidelity(summary, [int((scorer == h).sum()) for h in range(HALVES)], int((scorer == UNSCORED).sum()))


@dataclass(frozen=True)
class SegmenterRecord:
    """Where one cross-fitted segmenter came from: its cached weights `path`, whether they were
    `cached` (reused) or trained now, its feature size and training facts (`info`: half,
    train_patients, train_slices, train_nodule_slices, final_loss, train_seconds, train_cpu_seconds)."""

    path: Path
    cached: bool
    feature_dims: int
    info: dict[str, Any]

    @property
    def half(self) -> int:
        return int(self.info["half"])

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "cached": self.cached, "feature_dims": self.feature_dims, **self.info}


@dataclass(frozen=True)
class FidelityResult:
    """Label fidelity under `config`: the two cross-fitted `segmenters` and `scores` {"real": the
    ceiling, name: score} (None where a statistic is undefined)."""

    config: SegmenterConfig
    segmenters: list[SegmenterRecord]
    scores: dict[str, StoreFidelity]

    def to_dict(self) -> dict[str, Any]:
        """{"size", "quick", "config", "segmenters", "hit_rule", "size_bins", "feature_note", "scores"}."""
        return json_safe(
            {
                "size": self.config.size,
                "quick": self.config.quick,
                "config": dataclasses.asdict(self.config),
                "segmenters": [s.to_dict() for s in self.segmenters],
                "hit_rule": HIT_RULE,
                "size_bins": size_bin_names(),
                "feature_note": FEATURE_NOTE,
                "scores": {name: s.to_dict() for name, s in self.scores.items()},
            }
        )


def compute_fidelity(
    real: Store,
    synthetic: dict[str, Store],
    config: SegmenterConfig,
    device: torch.device,
    progress: Any = None,
) -> FidelityResult:
    """Train or load the two cross-fitted segmenters of (real, config) and score the real train
    slices (the ceiling: each half by the other half's segmenter) and every synthetic store."""
    real_scorer = real_scorers(real, config.seed)
    segmenters = [load_or_train(real, config, device, progress, half=h) for h in range(HALVES)]
    ceiling = score_crossfit(segmenters, real, real_scorer, progress, REAL)
    scores = {REAL: store_fidelity(ceiling.summary(None), real_scorer[real_scorer != UNSCORED])}
    for name, store in synthetic.items():
        scorer = synthetic_scorers(store, real, config.seed)
        scores[name] = store_fidelity(score_crossfit(segmenters, store, scorer, progress, name).summary(ceiling), scorer)
    records = [SegmenterRecord(s.path, s.cached, s.model.feature_dims, s.info) for s in segmenters]
    return FidelityResult(config, records, scores)


def _num(value: float | None, scale: float = 100.0, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{scale * value:.{digits}f}"


def fidelity_markdown(result: FidelityResult) -> list[str]:
    """Markdown lines of the fidelity section: one row per condition, the real ceiling first."""
    classes = list(next(iter(result.scores.values())).summary.iou)
    bins = size_bin_names()
    head = [
        "condition",
        "slices",
        "unscored",
        "mIoU (%)",
        *(f"IoU {c}" for c in classes),
        "nodule hit (%)",
        *(f"hit {b}" for b in bins),
        "FD nodule",
        "FD nodule-free",
    ]
    segs = result.segmenters
    lines = [
        f"Segmenters: two UNets (width {result.config.width}, {result.config.steps} steps each) at "
        f"{result.config.size}×{result.config.size} px, each trained on half of the real train patients "
        f"({' and '.join(str(s.info['train_slices']) for s in segs)} slices; {'cached' if all(s.cached for s in segs) else 'trained now'}). "
        "Cross-fitted: each scores only slices whose label map, image and nodule sources it did not train on; the ceiling is the "
        "real train slices, each half scored by the other half's segmenter; slices whose sources touch both halves are not scored.",
        f"Nodule hit: {HIT_RULE}. FD: {FEATURE_NOTE}.",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for name, scored in result.scores.items():
        s = scored.summary
        hits = s.nodule_hits
        by = [f"{_num(hits.by_size[b].rate, digits=0)} ({hits.by_size[b].nodules})" for b in bins]
        fd = s.feature_distance
        fds = ["–", "–"] if fd is None else [_num(fd[k].fd, 1.0, 3) for k in ("nodule", "nodule_free")]
        row = [
            f"{name} (ceiling)" if name == REAL else name,
            str(s.slices),
            str(scored.unscored),
            _num(s.miou),
            *(_num(s.iou[c]) for c in classes),
            f"{_num(hits.rate)} ({hits.nodules})",
            *by,
            *fds,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines
