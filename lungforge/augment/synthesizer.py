"""A loaded generator (SDM or SPADE) that turns label maps and per-sample seeds into CT slices."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lungforge.augment.plan import PlannedSample, SamplePlanner
from lungforge.core.device import Precision, autocast_forward
from lungforge.core.errors import CheckpointError, GeneratorError
from lungforge.core.labels import NUM_CLASSES
from lungforge.diffusion.samplers import Sampler, sample
from lungforge.models.acceleration import for_inference
from lungforge.models.checkpoint import LoadedCheckpoint, build_model
from lungforge.models.inpaint_window import Window
from lungforge.models.presets import SDMConfig


@dataclass(frozen=True)
class SamplingSettings:
    """Diffusion sampler settings of SDM weights; the defaults are `augment`'s (SPADE needs one
    forward pass and takes none, :meth:`~lungforge.augment.options.AugmentOptions.as_run`)."""

    # Ancestral DDPM with 50 respaced steps: the fastest setting within 2 % mIoU and 2 points of
    # nodule hit rate of the paper's 1000-step reference on the demo SDM (benchmarks/samplers.py, README).
    sampler: Sampler = "ddpm"
    steps: int = 50
    guidance: float = 1.5


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 1, H, W) images in [-1, 1] → (B, H, W) uint8 windowed CT (inverse of the data loader's x/127.5 − 1)."""
    return ((x.detach().float().clamp(-1.0, 1.0)[:, 0] + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()


SATURATED_SHARE = 0.95
"""Share of a sample's pixels at 0 or 255 above which it is refused: CT slices keep most pixels
inside the window (air outside the body is at most about half a slice), while guidance far too
large pushes every pixel to an end."""


def checked_uint8(x: torch.Tensor, seeds: Sequence[int], guidance: float | None, regions: np.ndarray | None = None) -> np.ndarray:
    """:func:`to_uint8` of generator output `x` (B, 1, H, W); GeneratorError naming the sample's
    seed when one holds a NaN or infinite pixel, or when more than :data:`SATURATED_SHARE` of its
    pixels (of its `regions` (B, H, W) bool, the pixels it draws, when given) are 0 or 255."""
    finite = torch.isfinite(x).flatten(1).all(1).cpu().numpy()
    at = "" if guidance is None else f" at guidance {guidance:g}"
    advice = f"{at}; nothing of it was written: " + ("check the weights" if guidance is None else "lower --guidance or check the weights")
    if not finite.all():
        raise GeneratorError(f"the generator made a sample with NaN or infinite pixels (seed {seeds[int(np.argmin(finite))]}){advice}")
    images = to_uint8(x)
    ends = (images == 0) | (images == 255)
    drawn = np.ones_like(ends) if regions is None else regions
    share = (ends & drawn).reshape(len(images), -1).sum(1) / np.maximum(drawn.reshape(len(images), -1).sum(1), 1)
    if (share > SATURATED_SHARE).any():
        worst = int(np.argmax(share))
        raise GeneratorError(
            f"the generator made a saturated sample ({share[worst]:.0%} of its pixels at 0 or 255, seed {seeds[worst]}){advice}"
        )
    return images


def training_provenance(ckpt: LoadedCheckpoint) -> dict[str, Any]:
    """What the weights saw, for a synthetic store's generator block: the training store's
    fingerprint, its train patients' series uids, nodule slice and distinct nodule counts (None
    where the checkpoint records none); `bench` keeps those patients out of test folds."""
    return {
        "train_store_fingerprint": ckpt.meta.get("store_fingerprint"),
        "train_series": ckpt.meta.get("train_series"),
        "train_nodule_slices": ckpt.meta.get("train_nodule_slices"),
        "train_nodules": ckpt.meta.get("train_nodules"),
    }


def onehot_labels(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, H, W) uint8 label ids → (B, NUM_CLASSES, H, W) float32 one-hot on `device`."""
    ids = torch.from_numpy(np.ascontiguousarray(labels)).to(device=device, dtype=torch.long)
    return F.one_hot(ids, NUM_CLASSES).permute(0, 3, 1, 2).float()


class Synthesizer:
    """Label maps (B, S, S) uint8 + one seed per sample → (B, S, S) uint8 images; S = image_size.

    Sample i's randomness comes only from `seeds[i]` (its own torch.Generator), so an image does
    not depend on the batch it is made in. Only the model's forward runs under autocast; the
    sampler's arithmetic stays float32/64. `compile` runs the model through `torch.compile`
    (same outputs to float rounding); `first_call_seconds` then holds the first call's time,
    compilation included. `memory_format`: see :func:`lungforge.models.acceleration.resolve_memory_format`.
    A :class:`~lungforge.augment.slice_generator.SliceGenerator` that draws whole slices.
    """

    window = None
    """Nodules are drawn with the whole slice, in no window."""

    def __init__(
        self,
        ckpt: LoadedCheckpoint,
        device: torch.device,
        precision: Precision = "fp32",
        settings: SamplingSettings = SamplingSettings(),
        *,
        compile: bool = False,
        memory_format: str = "auto",
    ) -> None:
        if ckpt.config.num_classes != NUM_CLASSES:
            raise CheckpointError(f"checkpoint {ckpt.path} has {ckpt.config.num_classes} label classes, lungforge uses {NUM_CLASSES}")
        if isinstance(ckpt.config, SDMConfig) and not 1 <= settings.steps <= ckpt.config.diffusion_steps:
            raise CheckpointError(f"--steps {settings.steps} must be in 1..{ckpt.config.diffusion_steps} (the model's diffusion steps)")
        self.ckpt = ckpt
        self.device = device
        self.precision = precision
        self.settings = settings
        self.compile = compile
        self.model = build_model(ckpt, device)
        self._forward = autocast_forward(for_inference(self.model, device, memory_format=memory_format, compile=compile), device, precision)
        self.first_call_seconds: float | None = None

    @property
    def kind(self) -> str:
        return self.ckpt.kind

    @property
    def image_size(self) -> int:
        return int(self.ckpt.config.image_size)

    @property
    def sha256(self) -> str:
        """sha256 of the weights file (what a resumed run must match)."""
        return self.ckpt.sha256

    @property
    def seeded(self) -> bool:
        """Whether another seed gives another image (False for SPADE without a noise input)."""
        config = self.ckpt.config
        return isinstance(config, SDMConfig) or config.z_dim > 0

    def render(self, samples: Sequence[PlannedSample], seeds: Sequence[int]) -> np.ndarray:
        """(B, S, S) uint8 images of the planned samples' label maps, one seed each."""
        return self(np.stack([s.label for s in samples]), seeds)

    def windows(self, sample: PlannedSample) -> list[Window]:
        """No windows: the whole slice is generated."""
        return []

    def check_room(self, planner: SamplePlanner, diameter_mm: tuple[float, float] | None, weights: str) -> None:
        """Nothing to refuse: the planner only places nodules a whole slice can hold."""

    def provenance(self, weights: str) -> dict[str, Any]:
        """The output store's `generator` attribute block."""
        return {
            "weights": weights,
            "sha256": self.ckpt.sha256,
            "kind": self.ckpt.kind,
            "mode": "slice",
            "preset": self.ckpt.preset,
            "step": self.ckpt.step,
            "sampler": self.settings.sampler if self.kind == "sdm" else None,
            "steps": self.settings.steps if self.kind == "sdm" else None,
            "guidance": self.settings.guidance if self.kind == "sdm" else None,
            "precision": self.precision,
            **training_provenance(self.ckpt),
        }

    def _generators(self, seeds: Sequence[int]) -> list[torch.Generator]:
        return [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]

    @torch.no_grad()
    def __call__(self, labels: np.ndarray, seeds: Sequence[int]) -> np.ndarray:
        if len(seeds) != labels.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for {labels.shape[0]} label maps, expected one each")
        started = time.perf_counter()
        onehot = onehot_labels(labels, self.device)
        generators = self._generators(seeds)
        cfg = self.ckpt.config
        if isinstance(cfg, SDMConfig):
            x = sample(
                self._forward,
                onehot,
                sampler=self.settings.sampler,
                steps=self.settings.steps,
                guidance=self.settings.guidance,
                generators=generators,
                in_channels=cfg.in_channels,
                num_train_timesteps=cfg.diffusion_steps,
            )
        else:
            z = None
            if cfg.z_dim > 0:
                z = torch.stack([torch.randn(cfg.z_dim, generator=g, device=self.device) for g in generators])
            x = self._forward(onehot, z=z)
        images = checked_uint8(x, seeds, self.settings.guidance if self.kind == "sdm" else None)
        if self.first_call_seconds is None:
            self.first_call_seconds = time.perf_counter() - started
        return images
