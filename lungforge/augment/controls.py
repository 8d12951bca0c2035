"""Model-free generators, the benchmark's controls: `paste` (positive), `mislabeled` (negative) and `blob`.

Both take the planner's layouts (label map, nodule positions, sizes, counts) exactly as a model
would and write the same schema, so a benchmark condition made with them differs from one made
with SDM or SPADE in the image alone:

- `paste` is classical copy-paste augmentation: each planned nodule is one real train-patient
  nodule (shape, pixels and, without `--diameter`, size in mm: its `shape_source` row), resampled
  once from its source slice to the output pixels and blended into the REAL nodule-free slice
  the label map came from, with the source's rim feathered past the footprint onto the
  target's own lung level (:func:`blend_patch`). Every generative model should beat it.
- `mislabeled` leaves the real nodule-free slice unchanged and only adds the labels and boxes:
  training on it teaches a detector that plain lung is a nodule. A protocol that cannot tell
  `paste` from `mislabeled` cannot tell anything.

- `blob` (:mod:`lungforge.augment.blob`) replaces each planned nodule by a constant-intensity
  ellipse of the requested size in the same host slice, with exact masks and boxes.

None depends on the seed, so augment never re-draws them (`meta/attempts` is 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from lungforge.augment.blob import blob_sample, paint_blobs
from lungforge.augment.nodule_library import RealPatch
from lungforge.augment.plan import PlannedSample, SamplePlanner
from lungforge.core.errors import InputError
from lungforge.core.labels import LUNG_LABELS
from lungforge.data.resize import resize_images_uint8, resize_label_maps
from lungforge.models.inpaint_window import Window
from lungforge.store import Store

ControlKind = Literal["paste", "mislabeled", "blob"]
CONTROLS: tuple[ControlKind, ...] = ("paste", "mislabeled", "blob")
RIM_INNER_PX = 1.0
"""Pixels around a pasted footprint copied whole from the source: its partial-volume rim."""


def feather_alpha(footprint: np.ndarray, margin: int) -> np.ndarray:
    """(h + 2m, w + 2m) opacity of a pasted (h, w) bool footprint padded by m = `margin` pixels.

    1 on the footprint and up to RIM_INNER_PX outside it (the source nodule's own
    partial-volume rim comes along whole); from there to d = m pixels (Euclidean distance from
    the footprint) a raised cosine falls to 0, so the blend ends without a step.
    """
    if margin <= RIM_INNER_PX:
        raise ValueError(f"feather margin must be > {RIM_INNER_PX} pixel, got {margin}")
    distance = ndimage.distance_transform_edt(~np.pad(footprint, margin))
    t = np.clip((distance - RIM_INNER_PX) / (margin - RIM_INNER_PX), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def blend_patch(image: np.ndarray, footprint: np.ndarray, patch: RealPatch, origin: tuple[int, int], lung: np.ndarray) -> None:
    """Blend a real nodule into `image` (H, W) uint8 in place, its footprint's [0, 0] at `origin` (row, col).

    `footprint` (h, w) bool; `patch` the source pixels m = patch.margin pixels around it;
    `lung` (H, W) bool: the target pixels the feather may touch (the slice's lung). On the
    footprint the source pixels replace the image. Around it, where the source is lung, the
    source's departure from its own lung level (the median of its lung beyond the rim) is
    added with :func:`feather_alpha`'s opacity: the nodule's partial-volume rim and the texture
    around it come along, the target keeps its own level (a nodule on a vessel gets no patch of
    the source's darker lung), and the seam carries no intensity step.
    """
    m = patch.margin
    h, w = footprint.shape
    if patch.image.shape != (h + 2 * m, w + 2 * m) or patch.lung.shape != patch.image.shape:
        raise ValueError(f"patch of {patch.image.shape} does not hold a {footprint.shape} footprint with margin {m}")
    alpha = feather_alpha(footprint, m)
    around = patch.lung & (alpha < 1.0)
    source = patch.image.astype(np.float64)
    excess = source - float(np.median(source[around])) if around.any() else np.zeros_like(source)
    r0, c0 = origin[0] - m, origin[1] - m
    rows = slice(max(r0, 0), min(r0 + h + 2 * m, image.shape[0]))
    cols = slice(max(c0, 0), min(c0 + w + 2 * m, image.shape[1]))
    inner = (slice(rows.start - r0, rows.stop - r0), slice(cols.start - c0, cols.stop - c0))
    blended = image[rows, cols] + (alpha * patch.lung * excess)[inner] * lung[rows, cols]
    nodule = np.pad(footprint, m)[inner]
    blended[nodule] = source[inner][nodule]
    image[rows, cols] = np.clip(np.round(blended), 0, 255).astype(np.uint8)


class ControlGenerator:
    """Renders planned samples (B of them) into (B, S, S) uint8 images from the real store alone.

    `size` is the output resolution S in pixels (the planner's label maps are at S).
    """

    seeded = False
    first_call_seconds = None
    sha256 = None
    """No weights: a resumed control run matches on its options alone."""
    window = None
    """Nodules are drawn into the whole slice, in no window."""

    def __init__(self, kind: ControlKind, real: Store, size: int) -> None:
        if kind not in CONTROLS:
            raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {kind!r}")
        self.kind = kind
        self.real = real
        self.image_size = int(size)

    def provenance(self, weights: str) -> dict[str, Any]:
        """The output store's `generator` attribute block (no model: no sha256, sampler or steps)."""
        return {
            "weights": weights,
            "kind": self.kind,
            "mode": self.kind,
            "model_free": True,
            "sha256": None,
            "preset": None,
            "step": None,
            "sampler": None,
            "steps": None,
            "guidance": None,
            "precision": None,
        }

    def adapt(self, sample: PlannedSample) -> PlannedSample:
        """The planner's `sample` as this control draws it: `blob` swaps each nodule for its
        ellipse (:func:`~lungforge.augment.blob.blob_sample`); the others keep it as planned."""
        if self.kind != "blob":
            return sample
        host = resize_label_maps(np.asarray(self.real.label[sample.source])[None], self.image_size)[0]
        return blob_sample(sample, host)

    def windows(self, sample: PlannedSample) -> list[Window]:
        """No windows: nodules are drawn into the whole slice."""
        return []

    def check_room(self, planner: SamplePlanner, diameter_mm: tuple[float, float] | None, weights: str) -> None:
        """Nothing to refuse: the planner only places nodules a whole slice can hold."""

    def render(self, samples: Sequence[PlannedSample], seeds: Sequence[int]) -> np.ndarray:
        """The real source slice of each sample at S px; `paste` blends in each nodule's real patch,
        `blob` writes each nodule's constant on its ellipse."""
        if len(seeds) != len(samples):
            raise ValueError(f"got {len(seeds)} seeds for {len(samples)} samples, expected one each")
        unique, inverse = np.unique(np.array([s.source for s in samples], dtype=np.int64), return_inverse=True)
        images = resize_images_uint8(np.asarray(self.real.image.oindex[unique, :, :]), self.image_size)[inverse]
        if self.kind == "paste":
            for image, sample in zip(images, samples):
                lung = np.isin(sample.label, LUNG_LABELS)  # other nodules are not lung: the feather spares them
                for nodule in sample.nodules:
                    if nodule.patch is None:
                        raise InputError("augment --weights paste needs real nodule patches: use --shape real")
                    blend_patch(image, nodule.footprint, nodule.patch, nodule.origin, lung)
        elif self.kind == "blob":
            for image, sample in zip(images, samples):
                paint_blobs(image, sample)
        return images
