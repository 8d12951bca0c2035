"""FROC of a slice detector: sensitivity at fixed false positives per slice, and their mean (CPM).

LUNA16's competition performance metric (Setio et al. 2017), read per 2-D slice instead of per
scan. Hit rule (LUNA16's, with the nodule's box for its sphere): a detection hits a nodule when
the centre of its box lies inside the nodule's ground-truth box (edges included). Each nodule is
counted once: it is found at threshold t when any detection of score ≥ t hits it (its score is
the best of the detections hitting it). A detection that hits some nodule is never a false
positive, even when another detection found that nodule first; every other detection is one.
False positives are divided by the number of test slices, nodule-free ones included, so a
detector that fires on healthy lung pays for it. Sensitivity at a rate r is the highest
sensitivity among the score thresholds whose false positives per slice do not exceed r (a step
curve, no interpolation); a detector that outputs few boxes (torchvision keeps scores ≥ 0.05)
cannot reach the higher rates and keeps its sensitivity at its last threshold.

Per nodule (`nodule_ids`): a nodule crosses several slices; it is found at threshold t when a
detection of score ≥ t hits any of its slices' boxes, so sensitivity counts distinct nodules
(false positives are counted per slice as before). Without ids every box is its own nodule.
"""

from __future__ import annotations

import numpy as np

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per slice at which sensitivity is read (LUNA16's seven points)."""
FROC_METRICS = tuple(f"sens@{r:g}" for r in FP_RATES)
"""Per-fold keys of the sensitivities, in the order of :data:`FP_RATES`."""
CPM = "CPM"


def centre_hits(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(K, G) bool: the centre of predicted box k (K, 4 x0, y0, x1, y1 px) lies inside truth box g (G, 4)."""
    p = np.asarray(predicted, dtype=np.float64).reshape(-1, 4)
    t = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    cx = ((p[:, 0] + p[:, 2]) / 2)[:, None]
    cy = ((p[:, 1] + p[:, 3]) / 2)[:, None]
    return (cx >= t[None, :, 0]) & (cx <= t[None, :, 2]) & (cy >= t[None, :, 1]) & (cy <= t[None, :, 3])


def froc(
    boxes: list[np.ndarray],
    scores: list[np.ndarray],
    truth: list[np.ndarray],
    rates: tuple[float, ...] = FP_RATES,
    nodule_ids: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """Sensitivity at each of `rates` false positives per slice and their mean, over all slices given.

    Per slice i: predicted `boxes[i]` (K, 4) px with `scores[i]` (K,), ground truth `truth[i]`
    (G, 4) px (G = 0 for a nodule-free slice) and, optionally, `nodule_ids[i]` (G,) int: the
    nodule of each box (boxes sharing an id are one nodule, found when any is hit). Returns
    {"sens@r": fraction for each rate, "CPM": their mean, "nodules": nodules in total, "slices":
    number of slices, "false_positives": detections that hit no nodule}; the sensitivities and CPM
    are NaN when there is no nodule at all.
    """
    if not len(boxes) == len(scores) == len(truth):
        raise ValueError(f"froc needs one entry per slice, got {len(boxes)} boxes, {len(scores)} scores, {len(truth)} truths")
    best: list[np.ndarray] = []
    false_pos: list[np.ndarray] = []
    for b, s, t in zip(boxes, scores, truth):
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        hits = centre_hits(b, t)
        false_pos.append(s[~hits.any(axis=1)])
        best.append(np.where(hits, s[:, None], -np.inf).max(axis=0, initial=-np.inf))
    nodule_score = np.concatenate(best) if best else np.zeros(0)
    if nodule_ids is not None:
        nodule_score = best_per_nodule(
            nodule_score, np.concatenate([np.asarray(i, np.int64).reshape(-1) for i in nodule_ids] or [np.zeros(0, np.int64)])
        )
    fp_score = np.concatenate(false_pos) if false_pos else np.zeros(0)
    out = {"nodules": int(nodule_score.size), "slices": len(truth), "false_positives": int(fp_score.size)}
    if nodule_score.size == 0:
        return {**{f"sens@{r:g}": float("nan") for r in rates}, CPM: float("nan"), **out}
    # thresholds: every score, high to low, after "nothing kept" (+inf)
    thresholds = np.concatenate([[np.inf], np.unique(np.concatenate([nodule_score[np.isfinite(nodule_score)], fp_score]))[::-1]])
    found = np.sort(nodule_score)
    fps = np.sort(fp_score)
    sensitivity = (found.size - np.searchsorted(found, thresholds, side="left")) / found.size
    fp_per_slice = (fps.size - np.searchsorted(fps, thresholds, side="left")) / len(truth)
    sens = {f"sens@{r:g}": float(sensitivity[fp_per_slice <= r].max()) for r in rates}
    return {**sens, CPM: float(np.mean(list(sens.values()))), **out}


def best_per_nodule(row_score: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(U,) the best of `row_score` (M,) over the rows of each of the U distinct `ids` (M,)."""
    if ids.shape != row_score.shape:
        raise ValueError(f"nodule_ids must give one id per truth box, got {ids.size} ids for {row_score.size} boxes")
    unique, inverse = np.unique(ids, return_inverse=True)
    best = np.full(unique.size, -np.inf)
    np.maximum.at(best, inverse.reshape(-1), row_score)
    return best
