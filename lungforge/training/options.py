"""What a training run is asked to do (:class:`TrainOptions`) and what it reports."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lungforge.core.choices import MAX_GUIDANCE, MAX_STEPS, check_range
from lungforge.core.device import PRECISIONS, Precision
from lungforge.core.errors import ConfigError, LungforgeError
from lungforge.core.seeds import check_seed
from lungforge.models.checkpoint import DEFAULT_EDIT_MARGIN_PX
from lungforge.models.presets import PRESETS, Preset, get_preset, inpaint_preset

MIN_NODULE_ROOM_PX = 4
"""Pixels an inpainting window keeps for the nodule between its two edit margins."""


def max_edit_margin_px(window: int) -> int:
    """Largest edit margin (px) that leaves :data:`MIN_NODULE_ROOM_PX` for a nodule in a `window`-px window."""
    return max(0, (window - MIN_NODULE_ROOM_PX) // 2)


@dataclass(frozen=True)
class TrainOptions:
    """Everything a training run is asked to do; saved in the checkpoint's `extra.train` block.

    `preset` is a preset name (`tiny`, `paper`) or a custom :class:`Preset` (e.g. smaller test models).
    `steps` is the total number of optimiser steps of the run (a resumed run continues up to it).
    `lr` defaults to 1e-4 (SDM AdamW; SPADE generator), `lr_d` to 4·lr (SPADE discriminator).
    `ema_decay` defaults per preset (tiny 0.999, paper 0.9999). `sample_every` 0 = grids only at
    checkpoints. `grid_samples` label maps of the train split are drawn once (by seed) for grids;
    SDM grids use `sample_steps` DPM-Solver++ steps with guidance `guidance`. `compile` runs the
    SDM's training forward through `torch.compile` (SDM only; the first step then includes the
    compilation, reported as `first_step_seconds`). `window` trains an inpainting SDM on windows
    of that many pixels cut at the store's native resolution (SDM only), whose edit regions
    extend `edit_margin_px` pixels past each nodule (at most :func:`max_edit_margin_px`).
    `steps` and `checkpoint_every` are at most :data:`~lungforge.core.choices.MAX_STEPS`. `workers` DataLoader processes per rank are
    capped at one per available CPU (:func:`lungforge.core.cpus.capped_workers`); the batches do not
    depend on them.
    """

    data: Path
    out: Path
    preset: str | Preset = "tiny"
    steps: int = 1000
    batch_size: int = 2
    lr: float | None = None
    lr_d: float | None = None
    device: str = "auto"
    precision: Precision = "fp32"
    resume: bool = False
    seed: int = 0
    checkpoint_every: int = 1000
    sample_every: int = 0
    workers: int = 0
    flip: bool = True
    ema_decay: float | None = None
    vgg_weights: Path | None = None
    grid_samples: int = 4
    sample_steps: int = 20
    guidance: float = 1.5
    compile: bool = False
    window: int | None = None
    edit_margin_px: int = DEFAULT_EDIT_MARGIN_PX

    def __post_init__(self) -> None:
        """ConfigError naming the field for a value outside its range (the CLI's exit 2)."""
        try:
            check_seed(self.seed)
        except ValueError as exc:
            raise ConfigError("seed", str(exc)) from None
        for name in ("steps", "batch_size", "checkpoint_every", "grid_samples", "sample_steps"):
            check_range(name, getattr(self, name), 1, MAX_STEPS if name in ("steps", "checkpoint_every") else None)
        for name in ("sample_every", "workers", "edit_margin_px"):
            check_range(name, getattr(self, name), 0)
        for name in ("lr", "lr_d"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(name, f"{name} must be a finite number > 0, got {value}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError("ema_decay", f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in PRECISIONS:
            raise ConfigError("precision", f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not math.isfinite(self.guidance):
            raise ConfigError("guidance", f"guidance must be a finite number, got {self.guidance}")
        check_range("guidance", self.guidance, 0.0, MAX_GUIDANCE)
        if self.window is not None:
            self._check_window(self.window)
        if isinstance(self.preset, Preset) or self.preset in PRESETS:
            check_range("sample_steps", self.sample_steps, 1, self.preset_resolved().sdm.diffusion_steps)

    def _check_window(self, window: int) -> None:
        """ConfigError unless the inpainting `window` builds a model and leaves room for a nodule
        inside an edit margin on each side (:func:`max_edit_margin_px`)."""
        check_range("window", window, 1)
        try:
            base = self.preset if isinstance(self.preset, Preset) else get_preset(self.preset)
        except LungforgeError as exc:
            raise ConfigError("preset", str(exc)) from None
        try:
            inpaint_preset(base, window)
        except LungforgeError as exc:
            raise ConfigError("window", str(exc)) from None
        largest = max_edit_margin_px(window)
        if self.edit_margin_px > largest:
            raise ConfigError(
                "edit_margin_px",
                f"edit margin {self.edit_margin_px} px leaves no room for a nodule in a {window} px window "
                f"(window − 2 × margin must be >= {MIN_NODULE_ROOM_PX} px); the largest margin for --window {window} is {largest}",
            )

    def to_json(self) -> dict[str, Any]:
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k != "preset"}
        return {"preset": self.preset_resolved().name, **out}

    def preset_resolved(self) -> Preset:
        """The :class:`Preset` of this run (its SDM an inpainting SDM when `window` is set)."""
        preset = self.preset if isinstance(self.preset, Preset) else get_preset(self.preset)
        return preset if self.window is None else inpaint_preset(preset, self.window)


@dataclass(frozen=True)
class StepReport:
    """What the driver reports after each step (for progress bars)."""

    step: int
    total: int
    loss: float
    images_per_s: float
    losses: dict[str, float]


@dataclass
class TrainResult:
    """Summary of a finished run; `losses` holds the mean-over-ranks loss of every step run here.

    `first_step_seconds` is the first step of this run (warm-up, and compilation under
    `compile`); `images_per_s` counts the later steps when there are any.
    """

    kind: str
    preset: str
    steps: int
    start_step: int
    final_loss: float
    images_per_s: float
    checkpoint: str
    device: str
    world_size: int
    first_step_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON summary printed by `lungforge train --json` (without the per-step losses)."""
        return {k: v for k, v in asdict(self).items() if k != "losses"}
