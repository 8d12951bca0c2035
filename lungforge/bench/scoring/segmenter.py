"""The fidelity segmenter: a :class:`SegUNet` trained on a real store's TRAIN split, or on one
cross-fitting half of its train patients (:mod:`lungforge.bench.scoring.crossfit`), images → the 6-class
label maps at the bench working size, cached beside the store.

The cache lives in `<store>.fidelity/` next to the store (`real.zarr` → `real.fidelity/`) as
`segmenter-<key>.safetensors` + `segmenter-<key>.json`; the key hashes the store's fingerprint,
the :class:`SegmenterConfig` (seed included), the half and the model version, so a second call
with the same store and options loads the weights instead of training again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from lungforge.bench.networks.batchnorm import recalibrate_batchnorm
from lungforge.bench.networks.segunet import SegUNet
from lungforge.bench.protocol.slices import read_resized
from lungforge.bench.scoring.crossfit import train_halves
from lungforge.core.choices import MAX_SIZE_PX, MAX_STEPS, check_range
from lungforge.core.errors import CheckpointError, InputError, OutputError
from lungforge.core.fileio import atomic_write_bytes, named_write, temp_beside
from lungforge.core.labels import NUM_CLASSES
from lungforge.core.seeds import check_seed
from lungforge.store import SPLIT_IDS, Store

MODEL_VERSION = "segunet/2"


@dataclass(frozen=True)
class SegmenterConfig:
    """How the segmenter is trained. `size` is the working resolution (pixels, divisible by
    2^levels, at most 2048); `max_slices` caps the train slices held in memory (every nodule slice first, then
    seeded nodule-free ones); each batch draws `nodule_fraction` of its slices from nodule slices.
    `steps` is per segmenter: cross-fitted fidelity trains two."""

    size: int = 256
    width: int = 16
    levels: int = 3
    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    nodule_fraction: float = 0.5
    max_slices: int = 4096
    seed: int = 0
    quick: bool = False

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check_range("size", self.size, 2**self.levels, MAX_SIZE_PX)
        check_range("steps", self.steps, 1, MAX_STEPS)
        if self.size % 2**self.levels:
            raise InputError(f"fidelity working size must be divisible by {2**self.levels}, got {self.size}")
        if not 0.0 <= self.nodule_fraction <= 1.0:
            raise InputError(f"nodule_fraction must be in [0, 1], got {self.nodule_fraction}")

    @classmethod
    def quick_preset(cls, **overrides: Any) -> SegmenterConfig:
        """A narrow UNet and a short schedule (150 steps per segmenter: the two cross-fitted halves
        together about a minute on one CPU core at 64–128 px), for CI and the demo; `overrides`
        (size, seed, steps, ...) win over the preset's values."""
        return cls(**{"width": 8, "steps": 150, "batch_size": 8, "lr": 4e-3, **overrides, "quick": True})


@dataclass(frozen=True, eq=False)
class Segmenter:
    """A trained segmenter in eval mode and where it came from."""

    model: SegUNet
    config: SegmenterConfig
    path: Path
    cached: bool
    info: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S) uint8 images → label maps (N, S, S) uint8 and bottleneck features (N, D) float64."""
        labels, feats = [], []
        for start in range(0, len(images), batch_size):
            x = to_input(images[start : start + batch_size], self.device)
            logits, features = self.model.segment(x)
            feats.append(features.double().cpu())
            labels.append(logits.argmax(1).to(torch.uint8).cpu())
        if not labels:
            s = images.shape[-1]
            return np.zeros((0, s, s), np.uint8), np.zeros((0, self.model.feature_dims))
        return torch.cat(labels).numpy(), torch.cat(feats).numpy()


def to_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, S, S) uint8 → (B, 1, S, S) float in [-1, 1] on `device`."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).float().unsqueeze(1) / 127.5 - 1.0


def cache_key(store: Store, config: SegmenterConfig, half: int | None = None) -> str:
    """16 hex digits of sha256(store fingerprint, config, model version, half when cross-fitted)."""
    record = {"store": store.fingerprint(), "config": dataclasses.asdict(config), "model": MODEL_VERSION}
    payload = json.dumps({**record, **({"half": half} if half is not None else {})}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cache_dir(store: Store) -> Path:
    """`<parent>/<store stem>.fidelity`, beside the store."""
    path = Path(store.path)
    return path.parent / f"{path.stem}.fidelity"


def train_indices(store: Store, config: SegmenterConfig, half: int | None = None) -> np.ndarray:
    """Train-split rows used for training (those of cross-fitting `half` when given): all nodule
    slices, then seeded nodule-free ones, at most `max_slices`."""
    train = store.meta("split") == SPLIT_IDS["train"] if half is None else train_halves(store, config.seed) == half
    has = store.meta("has_nodule")
    nodule, free = np.flatnonzero(train & has), np.flatnonzero(train & ~has)
    rng = np.random.default_rng(config.seed)
    nodule = rng.permutation(nodule)[: config.max_slices]
    free = rng.permutation(free)[: config.max_slices - nodule.size]
    return np.sort(np.concatenate([nodule, free]))


def class_weights(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Median-frequency balancing (Eigen & Fergus 2015): (C,) weights median(f) / f_c of the pixel
    frequencies f of (N, S, S) label maps, so tiny classes (nodule, trachea: ~0.1 % of pixels) weigh
    as much in the loss as the lungs; 1 for a class absent from the labels."""
    freq = np.bincount(labels.ravel(), minlength=num_classes)[:num_classes] / labels.size
    present = freq > 0
    weights = np.ones(num_classes)
    weights[present] = np.median(freq[present]) / freq[present]
    return torch.tensor(weights, dtype=torch.float32)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − mean soft Dice over the classes present in the batch; logits (B, C, S, S), target (B, S, S)."""
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum((0, 2, 3))
    total = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    return 1.0 - (2 * inter[present] / total[present].clamp_min(1e-6)).mean()


def _batches(nodule: np.ndarray, free: np.ndarray, config: SegmenterConfig, generator: np.random.Generator) -> Iterator[np.ndarray]:
    """Positions into the training arrays, `nodule_fraction` of each batch from nodule slices when there are any."""
    n_nod = round(config.batch_size * config.nodule_fraction) if nodule.size else 0
    n_nod = config.batch_size if not free.size else n_nod
    for _ in range(config.steps):
        yield np.concatenate([generator.choice(nodule, n_nod), generator.choice(free, config.batch_size - n_nod)])


def train_segmenter(
    store: Store, config: SegmenterConfig, device: torch.device, progress: Any = None, half: int | None = None
) -> tuple[SegUNet, dict[str, Any]]:
    """Train a SegUNet on the store's train split (or its cross-fitting `half`); returns it in eval
    mode and training facts."""
    rows = train_indices(store, config, half)
    where = "train slices" if half is None else f"train slices in cross-fitting half {half}"
    if rows.size < 2:
        raise InputError(f"{store.path}: {rows.size} {where}; the fidelity segmenter needs at least 2")
    started, started_cpu = time.perf_counter(), time.process_time()
    images, labels = read_resized(store, rows, config.size)
    has = store.meta("has_nodule")[rows]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SegUNet(config.width, config.levels).to(device)
    generator = np.random.default_rng(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps)))
    name = "fidelity segmenter" if half is None else f"fidelity segmenter {half + 1}/2"
    task = progress.add_task(name, total=config.steps, status="") if progress else None
    target_all = torch.from_numpy(labels.astype(np.int64))
    weights = class_weights(labels).to(device)
    model.train()
    loss = torch.zeros(())
    for picked in _batches(np.flatnonzero(has), np.flatnonzero(~has), config, generator):
        logits = model(to_input(images[picked], device))
        target = target_all[picked].to(device)
        loss = F.cross_entropy(logits, target, weight=weights) + dice_loss(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress.advance(task)
    recalibrate_batchnorm(model, (to_input(images[i : i + 32], device) for i in range(0, len(images), 32)))
    info = {
        "half": half,
        "train_patients": int(np.unique(store.meta("series")[rows]).size),
        "train_slices": int(rows.size),
        "train_nodule_slices": int(has.sum()),
        "final_loss": float(loss.detach()),
        "train_seconds": round(time.perf_counter() - started, 2),
        "train_cpu_seconds": round(time.process_time() - started_cpu, 2),
    }
    return model, info


CACHE_ADVICE = "the segmenter is retrained on the next run: free space or fix permissions, then rerun"


def _save_cache(model: SegUNet, weights: Path, meta: Path, record: dict[str, Any]) -> None:
    """Write a segmenter to the cache: its weights through a temporary file beside `weights`, then
    its `record` (`meta`, which makes the entry valid); a failed write is one OutputError naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    with named_write(weights.parent, CACHE_ADVICE):
        weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with named_write(weights, CACHE_ADVICE), temp_beside(weights) as partial:
        try:
            save_file(state, str(partial))
        except SafetensorError as exc:  # safetensors reports a full disk as its own error, not an OSError
            raise OutputError(f"{weights}: cannot write ({exc}); {CACHE_ADVICE}") from None
        os.replace(partial, weights)
    with named_write(meta, CACHE_ADVICE):
        atomic_write_bytes(meta, json.dumps(record, indent=2).encode())


def load_or_train(store: Store, config: SegmenterConfig, device: torch.device, progress: Any = None, half: int | None = None) -> Segmenter:
    """The cached segmenter of (store, config, half) if present, else a freshly trained one, then
    cached; `half` None trains on the whole train split, 0 or 1 on that cross-fitting half."""
    from safetensors.torch import load_file

    folder = cache_dir(store)
    key = cache_key(store, config, half)
    weights, meta = folder / f"segmenter-{key}.safetensors", folder / f"segmenter-{key}.json"
    model = SegUNet(config.width, config.levels)
    if weights.is_file() and meta.is_file():
        try:
            model.load_state_dict(load_file(weights))
            info = json.loads(meta.read_text())["info"]
        except Exception as exc:  # truncated or foreign files
            raise CheckpointError(f"{weights}: unreadable fidelity segmenter cache ({exc}); delete it to retrain") from None
        return Segmenter(model.to(device).eval(), config, weights, True, info)
    model, info = train_segmenter(store, config, device, progress, half)
    record = {
        "key": key,
        "store": str(store.path),
        "fingerprint": store.fingerprint(),
        "model": MODEL_VERSION,
        "config": dataclasses.asdict(config),
        "info": info,
    }
    _save_cache(model, weights, meta, record)
    return Segmenter(model, config, weights, False, info)
