"""Options of the localization benchmark and the slices it holds in memory (shared by the fold
runner in :mod:`.localize` and the detector's training in :mod:`.detector_training`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from lungforge.bench.protocol.classic import classic_copies
from lungforge.bench.protocol.fold_options import FoldConfig, check_training
from lungforge.core.choices import MIN_LOCALIZE_SIZE_PX, Backbone, check_choice, check_range

ANCHORS_AT_256 = (8, 16, 32, 64, 128)
SHOW_SCORE = 0.5
Optimizer = Literal["sgd", "adamw"]


@dataclass(frozen=True)
class LocalizeConfig(FoldConfig):
    """Options of the localization benchmark: the shared :class:`FoldOptions` (working `size`
    32..2048 px, every store resized to it: the detector's input size) and the detector's; sizes
    in pixels at the working resolution."""

    min_size: ClassVar[int] = MIN_LOCALIZE_SIZE_PX
    backbone: Backbone = "resnet50"
    backbone_weights: str | None = None
    """Local torchvision ResNet state dict for the backbone (None: random init)."""
    epochs: int = 20
    """Passes over condition A's training slices; every condition trains that many steps."""
    batch_size: int = 4
    lr: float = 0.01
    weight_decay: float = 1e-4
    optimizer: Optimizer = "sgd"
    """SGD with momentum 0.9 (the paper's) or AdamW; either with warm-up and cosine decay."""
    rotations: bool = False
    """Random 90° rotations on top of the horizontal flips (all 8 symmetries of the square)."""
    nodule_free_ratio: float = 0.0
    """Nodule-free slices added as pure negatives, per nodule slice."""
    fpn_channels: int = 256
    head_dim: int = 1024
    """Width of the two-layer box head."""
    roi_samples: int = 512
    """RoIs sampled per image for the box head's loss."""
    examples: int = 4
    """Test slices per fold whose predictions are kept for the report's figure."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_training(self.epochs, self.batch_size)
        check_choice("backbone", self.backbone, Backbone)
        for name in ("fpn_channels", "head_dim", "roi_samples"):
            check_range(name, getattr(self, name), 1)
        check_range("nodule_free_ratio", self.nodule_free_ratio, 0.0)
        check_range("examples", self.examples, 0)
        check_choice("optimizer", self.optimizer, Optimizer)

    @classmethod
    def quick_preset(cls, **overrides: Any) -> LocalizeConfig:
        """2 folds, 3 epochs, ResNet-18 FPN with 64 channels, a 256-d box head and 64 sampled RoIs per
        image: for CI and the demo, not the paper."""
        quick = {"folds": 2, "epochs": 3, "backbone": "resnet18", "fpn_channels": 64, "head_dim": 256, "roi_samples": 64, "quick": True}
        return cls(**{**overrides, **quick})

    @classmethod
    def cpu_preset(cls, **overrides: Any) -> LocalizeConfig:
        """The CPU-sized detector (:mod:`lungforge.bench.networks.small_rcnn`: ResNet-18 to layer2,
        FPN at strides 2–16 with 64 channels, anchors 2–32 px, RPN positive IoU 0.25), a 256-d box
        head, 64 RoIs per image, AdamW at 1e-3 with random 90° turns, 2 folds, 40 epochs in batches
        of 4; `overrides` win. Sized for the demo phantom's 1–7 px nodules on a CPU; not the paper's
        detector (docs/localization.md gives why, and what it reaches)."""
        cpu = {
            "folds": 2,
            "epochs": 40,
            "backbone": "resnet18-stride2",
            "fpn_channels": 64,
            "head_dim": 256,
            "roi_samples": 64,
            "optimizer": "adamw",
            "lr": 1e-3,
            "rotations": True,
        }
        return cls(**{**cpu, **overrides})


@dataclass(frozen=True)
class SliceSet:
    """Slices held in memory at the working size: images (n, S, S) uint8, boxes per slice (K, 4)
    px, group (n,) fold group of the slice's patient, slice (n,) slice index in its store."""

    images: np.ndarray
    boxes: list[np.ndarray]
    group: np.ndarray
    slice: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def select(self, mask: np.ndarray) -> SliceSet:
        rows = np.flatnonzero(mask)
        return SliceSet(self.images[rows], [self.boxes[i] for i in rows], self.group[rows], self.slice[rows])

    @property
    def positive(self) -> np.ndarray:
        """(n,) bool: the slices with a nodule box."""
        return np.array([b.shape[0] > 0 for b in self.boxes], bool)

    def nodule_free(self) -> SliceSet:
        """The same slices with no box (the `hosts` control)."""
        return SliceSet(self.images, [np.zeros((0, 4), np.float32) for _ in self.boxes], self.group, self.slice)

    def classic(self, count: int, rng: np.random.Generator) -> SliceSet:
        """`count` classically augmented copies of the nodule slices, boxes moved with them (:func:`classic_copies`)."""
        positives = self.select(self.positive)
        rows, images, boxes = classic_copies(positives.images, positives.boxes, count, rng)
        return SliceSet(images, boxes or [], positives.group[rows], positives.slice[rows])

    @staticmethod
    def concat(sets: list[SliceSet]) -> SliceSet:
        return SliceSet(
            np.concatenate([s.images for s in sets]),
            [b for s in sets for b in s.boxes],
            np.concatenate([s.group for s in sets]),
            np.concatenate([s.slice for s in sets]),
        )
