"""Nodule detection benchmark (paper §3, Table 1-I): SE-ResNet on 32×32 patches, k-fold CV.

Condition A trains on real patches only; every synthetic store adds its patches (minus those whose
source patient is in the test fold). Every condition uses the same seeds and epoch schedule.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from lungforge.bench.crossval import FoldRunner, cross_validate
from lungforge.bench.folds import OUTSIDE, RealSplit, source_groups
from lungforge.bench.batchnorm import recalibrate_batchnorm
from lungforge.bench.inputs import REFERENCE
from lungforge.bench.metrics import Confusion, classification_metrics
from lungforge.bench.patches import JITTER_PX, PATCH, PatchSet, sample_patches
from lungforge.bench.seresnet import SEResNet
from lungforge.data.store import Store

QUICK_LABEL = "QUICK (not comparable to the paper)"


@dataclass(frozen=True)
class DetectConfig:
    """Options of the detection benchmark (sizes in pixels at the working resolution)."""

    size: int = 256
    folds: int = 10
    real_split: RealSplit = "all"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    depth: int = 20
    width: int = 16
    patch: int = PATCH
    jitter_px: int = JITTER_PX
    seed: int = 0
    quick: bool = False

    @classmethod
    def quick_preset(cls, **overrides: Any) -> "DetectConfig":
        """2 folds, 20 epochs of a SE-ResNet-8 of width 8 (cheap: 32×32 patches): for CI and the
        demo, not the paper."""
        return cls(**{**overrides, "folds": 2, "epochs": 20, "depth": 8, "width": 8, "quick": True})


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and transposes (the 8 symmetries of the square) of (B, P, P) patches."""
    flips = torch.rand(x.shape[0], 3, generator=generator) < 0.5
    x = torch.where(flips[:, 0, None, None], x.flip(-1), x)
    x = torch.where(flips[:, 1, None, None], x.flip(-2), x)
    return torch.where(flips[:, 2, None, None], x.transpose(-1, -2), x)


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, P, P) uint8 → (B, 1, P, P) float in [-1, 1] on `device`."""
    return (images.to(device).float().unsqueeze(1) / 127.5) - 1.0


def train_classifier(train: PatchSet, config: DetectConfig, device: torch.device) -> SEResNet:
    """Train an SE-ResNet on `train` patches with Adam and a cosine schedule, seeded by config.seed;
    batch-norm statistics are re-estimated on the training patches at the end."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SEResNet(depth=config.depth, width=config.width).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    images = torch.from_numpy(train.images)
    target = torch.from_numpy(train.target).float()
    n = len(train)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total = config.epochs * steps_per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            if idx.numel() < 2:  # batch norm needs two samples
                continue
            x = augment(images[idx], generator)
            loss = F.binary_cross_entropy_with_logits(model(to_input(x, device)), target[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    batches = (to_input(images[i : i + 256], device) for i in range(0, n, 256))
    recalibrate_batchnorm(model, batches)
    return model


@torch.no_grad()
def predict(model: SEResNet, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """(n,) 0/1 predictions (logit > 0) for (n, P, P) uint8 patches."""
    model.eval()
    out = [model(to_input(torch.from_numpy(images[i : i + batch_size]), device)) > 0 for i in range(0, len(images), batch_size)]
    return torch.cat(out).cpu().numpy().astype(np.uint8) if out else np.zeros(0, np.uint8)


def run_fold(train: PatchSet, test: PatchSet, config: DetectConfig, device: torch.device) -> dict[str, Any]:
    """Train on `train`, evaluate on `test`: metrics, confusion counts, sizes and seconds."""
    start = time.perf_counter()
    model = train_classifier(train, config, device)
    cm = Confusion.from_predictions(test.target, predict(model, test.images, device))
    return {
        **classification_metrics(cm),
        "confusion": dataclasses.asdict(cm),
        "train_patches": len(train),
        "train_positive": int(train.target.sum()),
        "test_patches": len(test),
        "test_positive": int(test.target.sum()),
        "seconds": round(time.perf_counter() - start, 3),
    }


def run_detect(
    real: Store,
    synthetic: dict[str, Store],
    config: DetectConfig,
    device: torch.device,
    out: Path | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run every (fold, condition) of the detection benchmark; finished folds in `out` are reused.

    Returns {"task", "quick", "config", "conditions", "folds": {condition: [per-fold dict]}}.
    """

    def make_runner(groups: np.ndarray) -> FoldRunner:
        inside = np.flatnonzero(groups != OUTSIDE)
        real_patches = sample_patches(real, inside, groups[inside], config.size, config.seed, 0, config.patch, config.jitter_px)
        syn_patches = {
            name: sample_patches(
                store, np.arange(len(store)), source_groups(store, real, groups), config.size, config.seed, stream, config.patch, config.jitter_px
            )
            for stream, (name, store) in enumerate(synthetic.items(), start=1)
        }

        def runner(fold: int, condition: str) -> dict[str, Any]:
            train_sets = [real_patches.select(real_patches.group != fold)]
            if condition != REFERENCE:
                train_sets.append(syn_patches[condition].select(syn_patches[condition].group != fold))
            test = real_patches.select(real_patches.group == fold)
            return run_fold(PatchSet.concat(train_sets, config.patch), test, config, device)

        return runner

    return cross_validate("detect", real, synthetic, config, make_runner, out, progress)
