"""Nodule detection benchmark (paper §3, Table 1-I): SE-ResNet on 32×32 patches, k-fold CV.

Condition A trains on real patches only; every synthetic store adds the patches of its selected
slices (:mod:`lungforge.bench.protocol.selection`) minus those whose label map or nodule sources touch the
test fold. Every condition uses the same seeds, the same optimiser steps (sized from A:
:mod:`lungforge.bench.protocol.budget`), the same schedule, the same batch size and positive share
per batch, and the same batch-norm re-estimation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from lungforge.bench.networks.batchnorm import recalibrate_batchnorm
from lungforge.bench.networks.seresnet import SEResNet
from lungforge.bench.protocol.budget import CALIBRATION_BATCHES, balanced_batch_indices, realized_share
from lungforge.bench.protocol.crossval import FoldRunner, condition_stream, cross_validate, fold_runner
from lungforge.bench.protocol.fold_options import FoldConfig, check_training
from lungforge.bench.protocol.folds import OUTSIDE, source_groups
from lungforge.bench.protocol.patches import JITTER_PX, PATCH, PatchSet, sample_patches
from lungforge.bench.protocol.results import FoldRow, TaskResult
from lungforge.bench.protocol.selection import selected
from lungforge.bench.protocol.sources import SOURCES, external_source_slices
from lungforge.bench.scoring.metrics import Confusion, auroc, classification_metrics, recall_by_size
from lungforge.core.choices import MIN_PATCH_PX, check_range
from lungforge.store import Store

QUICK_LABEL = "QUICK (not comparable to the paper)"


@dataclass(frozen=True)
class DetectConfig(FoldConfig):
    """Options of the detection benchmark: the shared :class:`FoldOptions` (working `size`
    8..2048 px, every store resized to it before patches are cut) and the classifier's; sizes in
    pixels at the working resolution."""

    epochs: int = 30
    """Passes over condition A's training patches; every condition trains that many steps."""
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    depth: int = 20
    """SE-ResNet depth, 6n + 2."""
    width: int = 16
    patch: int = PATCH
    """Patch side (pixels at `size`)."""
    jitter_px: int = JITTER_PX
    positive_share: float = 0.5
    """Nodule patches in every training batch, for every condition (0..1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_training(self.epochs, self.batch_size)
        check_range("batch_size", self.batch_size, 2)
        if not 0.0 < self.positive_share < 1.0:
            raise ValueError(f"positive_share must lie strictly between 0 and 1, got {self.positive_share}")
        check_range("width", self.width, 1)
        check_range("patch", self.patch, MIN_PATCH_PX, self.size)
        check_range("jitter_px", self.jitter_px, 0)
        if (self.depth - 2) % 6 or self.depth < 8:
            raise ValueError(f"depth must be 6n+2 (8, 14, 20, ...), got {self.depth}")

    @classmethod
    def quick_preset(cls, **overrides: Any) -> DetectConfig:
        """2 folds, 20 epochs of a SE-ResNet-8 of width 8 (cheap: 32×32 patches): for CI and the
        demo, not the paper."""
        return cls(**{**overrides, "folds": 2, "epochs": 20, "depth": 8, "width": 8, "quick": True})


def flip_patches(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each of the (B, P, P) patches under a random one of the 8 symmetries of the square (flips and a transpose)."""
    flips = torch.rand(x.shape[0], 3, generator=generator) < 0.5
    x = torch.where(flips[:, 0, None, None], x.flip(-1), x)
    x = torch.where(flips[:, 1, None, None], x.flip(-2), x)
    return torch.where(flips[:, 2, None, None], x.transpose(-1, -2), x)


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, P, P) uint8 → (B, 1, P, P) float in [-1, 1] on `device`."""
    return (images.to(device).float().unsqueeze(1) / 127.5) - 1.0


def train_classifier(
    train: PatchSet, config: DetectConfig, device: torch.device, steps: int, seed: int | None = None
) -> tuple[SEResNet, int]:
    """Train an SE-ResNet on `train` patches for `steps` optimiser steps with Adam and a cosine
    schedule over them, seeded by `seed` (default config.seed); every batch holds
    `config.batch_size` patches, `config.positive_share` of them nodules
    (:func:`~lungforge.bench.protocol.budget.balanced_batch_indices`), and batch-norm statistics
    are re-estimated on CALIBRATION_BATCHES batches drawn the same way. Returns the model and the
    optimiser steps taken."""
    seed = config.seed if seed is None else seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SEResNet(depth=config.depth, width=config.width).to(device)
    generator = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(train.images)
    target = torch.from_numpy(train.target).float()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    model.train()
    taken = 0
    for idx in balanced_batch_indices(train.target, config.batch_size, steps, config.positive_share, generator):
        x = flip_patches(images[idx], generator)
        loss = F.binary_cross_entropy_with_logits(model(to_input(x, device)), target[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        taken += 1
    calibration = torch.Generator().manual_seed(seed + 1)
    batches = balanced_batch_indices(train.target, config.batch_size, CALIBRATION_BATCHES, config.positive_share, calibration)
    recalibrate_batchnorm(model, (to_input(images[i], device) for i in batches))
    return model, taken


@torch.no_grad()
def predict_logits(model: SEResNet, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """(n,) float32 nodule logits for (n, P, P) uint8 patches (the prediction is logit > 0)."""
    model.eval()
    out = [model(to_input(torch.from_numpy(images[i : i + batch_size]), device)) for i in range(0, len(images), batch_size)]
    return torch.cat(out).float().cpu().numpy() if out else np.zeros(0, np.float32)


def run_fold(
    train: PatchSet,
    test: PatchSet,
    config: DetectConfig,
    device: torch.device,
    steps: int,
    diameter_mm: np.ndarray,
    patient: np.ndarray,
    seed: int | None = None,
) -> FoldRow:
    """Train on `train` for `steps` optimiser steps (seeded by `seed`, default config.seed),
    evaluate on `test`: metrics (the paper's, AUROC of the logits, recall per nodule size from
    `diameter_mm`, the diameter of each of the test store's nodules), confusion counts, sizes,
    steps taken, the batch size and positive share trained on, and the out-of-fold predictions
    (`predictions`: target, nodule probability and patient — `patient` (N_real,) per store slice —
    of every test patch) that the pooled tests read."""
    model, taken = train_classifier(train, config, device, steps, seed)
    logits = predict_logits(model, test.images, device)
    predicted = logits > 0
    cm = Confusion.from_predictions(test.target, predicted)
    positive = test.target.astype(bool)
    size_recall, size_count = recall_by_size(predicted[positive], diameter_mm[test.nodule[positive]])
    return {
        **classification_metrics(cm),
        "auroc": auroc(test.target, logits),
        **size_recall,
        "test_positive_by_size": size_count,
        "confusion": dataclasses.asdict(cm),
        "optimizer_steps": taken,
        "train_patches": len(train),
        "train_positive": int(train.target.sum()),
        "test_patches": len(test),
        "test_positive": int(test.target.sum()),
        "test_negative": int(len(test) - test.target.sum()),
        "batch_size": config.batch_size,
        "positive_share": realized_share(train.target, config.batch_size, config.positive_share),
        "predictions": {
            "target": test.target.astype(int).tolist(),
            "score": (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).round(6).tolist(),
            "patient": patient[test.slice].astype(int).tolist(),
        },
    }


def detect_runner(real: Store, synthetic: dict[str, Store], config: DetectConfig, device: torch.device, groups: np.ndarray) -> FoldRunner:
    """The detection task's :func:`~lungforge.bench.protocol.crossval.fold_runner` over the real
    slices' fold `groups` (−1 outside the benchmark): the patches of every store (and of the
    external source slices, :data:`~lungforge.bench.protocol.sources.SOURCES`) sampled once."""
    inside = np.flatnonzero(groups != OUTSIDE)
    real_patches = sample_patches(real, inside, groups[inside], config.size, config.seed, 0, config.patch, config.jitter_px)
    diameter_mm = real.nodules()["diameter_mm"]
    syn_patches = {}
    for name, store in synthetic.items():
        used = np.flatnonzero(selected(store, config.select))
        syn_patches[name] = sample_patches(
            store,
            used,
            source_groups(store, real, groups)[used],
            config.size,
            config.seed,
            condition_stream(name),
            config.patch,
            config.jitter_px,
        )
    sources = np.flatnonzero(external_source_slices(real, synthetic, groups))
    if sources.size:
        syn_patches[SOURCES] = sample_patches(
            real, sources, groups[sources], config.size, config.seed, condition_stream(SOURCES), config.patch, config.jitter_px
        )

    patient = real.meta("series")

    def train_and_test(fold: int, train: list[PatchSet], steps: int, seed: int) -> FoldRow:
        test = real_patches.select(real_patches.group == fold)
        return run_fold(PatchSet.concat(train, config.patch), test, config, device, steps, diameter_mm, patient, seed)

    return fold_runner(real, synthetic, groups, config, real_patches, syn_patches, train_and_test)


def run_detect(
    real: Store, synthetic: dict[str, Store], config: DetectConfig, device: torch.device, out: Path | None = None, progress: Any = None
) -> TaskResult:
    """Run every (fold, condition) of the detection benchmark; finished folds in `out` are reused."""
    return cross_validate(
        "detect", real, synthetic, config, lambda groups: detect_runner(real, synthetic, config, device, groups), out, progress
    )
