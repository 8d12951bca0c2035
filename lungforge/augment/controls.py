"""Model-free generators, the benchmark's controls: `paste` (positive) and `mislabeled` (negative).

Both take the planner's layouts (label map, nodule positions, sizes, counts) exactly as a model
would and write the same schema, so a benchmark condition made with them differs from one made
with SDM or SPADE in the image alone:

- `paste` is classical copy-paste augmentation: each planned nodule's real train-patient patch
  (the library texture resampled with its footprint) is blended into the REAL nodule-free slice
  the label map came from. Every generative model should beat it.
- `mislabeled` leaves the real nodule-free slice unchanged and only adds the labels and boxes:
  training on it teaches a detector that plain lung is a nodule. A protocol that cannot tell
  `paste` from `mislabeled` cannot tell anything.

Neither depends on the seed, so augment never re-draws them (`meta/attempts` is 1).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
from scipy import ndimage

from lungforge.augment.plan import PlannedSample
from lungforge.data.resize import resize_images_uint8
from lungforge.data.store import Store
from lungforge.errors import InputError

ControlKind = Literal["paste", "mislabeled"]
CONTROLS: tuple[ControlKind, ...] = ("paste", "mislabeled")
EDGE_SIGMA_PX = 0.7
"""Gaussian softening (px) of a pasted patch's edge, so the blend leaves no hard seam."""


def blend_patch(image: np.ndarray, footprint: np.ndarray, texture: np.ndarray, origin: tuple[int, int]) -> None:
    """Blend `texture` (h, w) uint8 into `image` (H, W) uint8 in place at `origin` (row, col).

    Inside the footprint (h, w) bool the texture replaces the image; just outside it the two
    mix with a Gaussian-softened footprint as opacity.
    """
    r, c = origin
    h, w = footprint.shape
    soft = ndimage.gaussian_filter(footprint.astype(np.float64), EDGE_SIGMA_PX, mode="constant")
    alpha = np.maximum(footprint, np.clip(soft / max(float(soft.max()), 1e-9), 0.0, 1.0))
    region = image[r : r + h, c : c + w].astype(np.float64)
    image[r : r + h, c : c + w] = np.round(alpha * texture + (1.0 - alpha) * region).astype(np.uint8)


class ControlGenerator:
    """Renders planned samples (B of them) into (B, S, S) uint8 images from the real store alone.

    `size` is the output resolution S in pixels (the planner's label maps are at S).
    """

    seeded = False
    first_call_seconds = None
    sha256 = None
    """No weights: a resumed control run matches on its options alone."""

    def __init__(self, kind: ControlKind, real: Store, size: int) -> None:
        if kind not in CONTROLS:
            raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {kind!r}")
        self.kind = kind
        self.real = real
        self.image_size = int(size)

    def provenance(self, weights: str) -> dict[str, Any]:
        """The output store's `generator` attribute block (no model: no sha256, sampler or steps)."""
        return {"weights": weights, "kind": self.kind, "mode": self.kind, "model_free": True, "sha256": None, "preset": None, "step": None,
                "sampler": None, "steps": None, "guidance": None, "precision": None}

    def render(self, samples: Sequence[PlannedSample], seeds: Sequence[int]) -> np.ndarray:
        """The real source slice of each sample at S px; `paste` blends in each nodule's real patch."""
        if len(seeds) != len(samples):
            raise ValueError(f"got {len(seeds)} seeds for {len(samples)} samples, expected one each")
        unique, inverse = np.unique(np.array([s.source for s in samples], dtype=np.int64), return_inverse=True)
        images = resize_images_uint8(np.asarray(self.real.image.oindex[unique, :, :]), self.image_size)[inverse]
        if self.kind == "paste":
            for image, sample in zip(images, samples):
                for nodule in sample.nodules:
                    if nodule.texture is None:
                        raise InputError("augment --weights paste needs real nodule patches: use --shape real")
                    blend_patch(image, nodule.footprint, nodule.texture, nodule.origin)
        return images
