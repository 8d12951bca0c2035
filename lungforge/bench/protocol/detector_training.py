"""Training and inference of the localization benchmark's Faster R-CNN: batches of equal size
and class balance for every condition, the warm-up + cosine schedule, flips and 90° turns, and
batch-norm statistics re-estimated the same way (:mod:`lungforge.bench.protocol.localize`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from lungforge.bench.networks.batchnorm import recalibrate_batchnorm
from lungforge.bench.protocol.budget import CALIBRATION_BATCHES, balanced_batch_indices

if TYPE_CHECKING:
    from lungforge.bench.protocol.localize_config import LocalizeConfig, SliceSet


def positive_share(config: LocalizeConfig) -> float:
    """Nodule slices in every training batch: 1 / (1 + nodule_free_ratio), the share of A's
    training slices, imposed on every condition."""
    return 1.0 / (1.0 + config.nodule_free_ratio)


def to_inputs(images: np.ndarray, device: torch.device) -> list[torch.Tensor]:
    """(B, S, S) uint8 → list of (3, S, S) float in [0, 1] (grey repeated to 3 channels)."""
    x = torch.from_numpy(images).to(device).float().div(255.0)
    return list(x.unsqueeze(1).expand(-1, 3, -1, -1))


def make_targets(boxes: list[np.ndarray], device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Torchvision targets: boxes (K, 4) float px, labels (K,) all 1 (nodule)."""
    return [
        {"boxes": torch.from_numpy(b).reshape(-1, 4).float().to(device), "labels": torch.ones(b.shape[0], dtype=torch.int64, device=device)}
        for b in boxes
    ]


def train_detector(
    model: torch.nn.Module,
    train: SliceSet,
    config: LocalizeConfig,
    device: torch.device,
    steps: int,
    seed: int | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[torch.nn.Module, int]:
    """Train `model` in place for `steps` optimiser steps: SGD (momentum 0.9) or AdamW, linear
    warm-up then cosine decay over those steps, random horizontal flips (and 90° turns with
    config.rotations); batch order, flips and turns seeded by `seed` (default config.seed). Every
    batch holds `config.batch_size` slices, :func:`positive_share` of them nodule slices, for every
    condition; batch-norm statistics of the backbone are re-estimated on CALIBRATION_BATCHES
    batches drawn the same way. `on_step(step, losses)` sees each step's four torchvision losses.
    Returns the model and the steps taken."""
    seed = config.seed if seed is None else seed
    model = model.to(device)
    generator = torch.Generator().manual_seed(seed)
    has_nodule = np.array([b.shape[0] > 0 for b in train.boxes], bool)
    share = positive_share(config)
    warmup = min(100, max(1, steps // 10))
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    size = config.size
    model.train()
    taken = 0
    # torchvision's RPN and RoI samplers draw from the global RNG: seed it, and restore it after.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in balanced_batch_indices(has_nodule, config.batch_size, steps, share, generator):
            idx = batch.numpy()
            flips = (torch.rand(idx.size, generator=generator) < 0.5).numpy()
            images = train.images[idx].copy()
            boxes = [train.boxes[i].copy() for i in idx]
            for j in np.flatnonzero(flips):
                images[j] = images[j][:, ::-1]
                boxes[j][:, [0, 2]] = size - boxes[j][:, [2, 0]]
            if config.rotations:
                turns = torch.randint(4, (idx.size,), generator=generator).numpy()
                for j in np.flatnonzero(turns):
                    images[j], boxes[j] = rotate90(images[j], boxes[j], int(turns[j]))
            losses = model(to_inputs(images, device), make_targets(boxes, device))
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            taken += 1
            if on_step is not None:
                on_step(taken, {k: float(v.detach()) for k, v in losses.items()})

    transform, backbone = model.get_submodule("transform"), model.get_submodule("backbone")

    def backbone_pass(batch: np.ndarray) -> object:
        images, _ = transform(to_inputs(batch, device))
        return backbone(images.tensors)

    calibration = torch.Generator().manual_seed(seed + 1)
    batches = balanced_batch_indices(has_nodule, config.batch_size, CALIBRATION_BATCHES, share, calibration)
    recalibrate_batchnorm(model, (train.images[i.numpy()] for i in batches), backbone_pass)
    return model, taken


def rotate90(image: np.ndarray, boxes: np.ndarray, turns: int) -> tuple[np.ndarray, np.ndarray]:
    """`image` (S, S) and its `boxes` (K, 4) px (x0, y0, x1, y1) turned `turns` × 90° anticlockwise (np.rot90)."""
    side = image.shape[1]
    for _ in range(turns):
        boxes = np.stack([boxes[:, 1], side - boxes[:, 2], boxes[:, 3], side - boxes[:, 0]], axis=1)
    return np.rot90(image, turns), boxes


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Per image {"boxes" (K, 4) px, "scores" (K,), "labels" (K,)} on the CPU."""
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        for p in model(to_inputs(images[start : start + batch_size], device)):
            out.append({k: v.cpu() for k, v in p.items()})
    return out
