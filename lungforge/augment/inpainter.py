"""Lesion-focused generation: an inpainting SDM draws each planned nodule into its real host slice.

For every nodule of a planned sample, a window of the model's size is cut around it from the
real nodule-free slice the label map came from (at the output size: the real store's native
resolution unless --size says otherwise); the edit region is the new footprint grown by the
checkpoint's margin. The model samples the window with the known image and the edit mask as
fixed context, and only the edit region's pixels are written back: outside the edit regions the
output is the real slice, bit for bit. The nodules of one slice are drawn one after the other
(nodule k sees nodule k−1 already drawn); nodule k of every sample in a batch is one batched
sampling call, with a generator per sample seeded from (sample seed, k).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lungforge.augment.layout import PlacedNodule
from lungforge.augment.plan import PlannedSample, SamplePlanner
from lungforge.augment.synthesizer import SamplingSettings, checked_uint8, onehot_labels, training_provenance
from lungforge.core.device import Precision, autocast_forward
from lungforge.core.errors import CheckpointError, InputError
from lungforge.core.labels import NUM_CLASSES
from lungforge.data.resize import resize_images_uint8
from lungforge.diffusion.guidance import with_context
from lungforge.diffusion.samplers import sample
from lungforge.models.acceleration import for_inference
from lungforge.models.checkpoint import LoadedCheckpoint, build_model
from lungforge.models.inpaint_window import (
    Window,
    bounding_box,
    check_edit_inside,
    check_window_fits,
    context_channels,
    crop,
    grow,
    window_at,
)
from lungforge.models.presets import SDMConfig
from lungforge.store import Store


def nodule_window(nodule: PlacedNodule, window: int, margin_px: int, shape_hw: tuple[int, int]) -> tuple[Window, np.ndarray]:
    """The window box around `nodule` and its edit region (H, W) bool: the footprint grown by `margin_px`.

    InputError (one line) when the edit region reaches past the window.
    """
    edit = grow(nodule.mask(shape_hw), margin_px)
    ex0, ey0, ex1, ey1 = bounding_box(edit)
    box = window_at(((ey0 + ey1) / 2, (ex0 + ex1) / 2), window, *shape_hw)
    check_edit_inside((ex0, ey0, ex1, ey1), box, "planned nodule")
    return box, edit


def round_seed(seed: int, k: int) -> int:
    """Seed of nodule k of a sample with `seed` (k = 0: the sample's own seed)."""
    if k == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), k]).generate_state(1, dtype=np.uint64)[0] & np.uint64((1 << 63) - 1))


class Inpainter:
    """Planned samples (B) + one seed each → (B, S, S) uint8 real host slices with drawn nodules.

    `size` S is the output side in pixels; the model works on windows of `window` pixels.
    Nodule-free samples are their real slice unchanged. A
    :class:`~lungforge.augment.slice_generator.SliceGenerator`, like
    :class:`lungforge.augment.synthesizer.Synthesizer`.
    """

    kind = "sdm"
    seeded = True

    def __init__(
        self,
        ckpt: LoadedCheckpoint,
        real: Store,
        size: int,
        device: torch.device,
        precision: Precision = "fp32",
        settings: SamplingSettings = SamplingSettings(),
        *,
        compile: bool = False,
    ) -> None:
        config = ckpt.config
        if ckpt.kind != "sdm" or not isinstance(config, SDMConfig) or not config.inpaint:
            raise CheckpointError(f"checkpoint {ckpt.path} is not an inpainting SDM")
        if config.num_classes != NUM_CLASSES:
            raise CheckpointError(f"checkpoint {ckpt.path} has {config.num_classes} label classes, lungforge uses {NUM_CLASSES}")
        if not 1 <= settings.steps <= config.diffusion_steps:
            raise CheckpointError(f"--steps {settings.steps} must be in 1..{config.diffusion_steps} (the model's diffusion steps)")
        self.config = config
        self.window = int(config.image_size)
        check_window_fits(self.window, size, size, f"{ckpt.path} at {size} px")
        self.ckpt, self.real, self.image_size = ckpt, real, int(size)
        self.margin_px = int(ckpt.meta["edit_margin_px"])
        self.device, self.precision, self.settings, self.compile = device, precision, settings, compile
        model = for_inference(build_model(ckpt, device), device, compile=compile)
        self._forward = autocast_forward(model, device, precision)
        self.first_call_seconds: float | None = None

    @property
    def sha256(self) -> str:
        return self.ckpt.sha256

    def provenance(self, weights: str) -> dict[str, Any]:
        """The output store's `generator` attribute block (mode "inpaint", window and edit margin in pixels)."""
        return {
            "weights": weights,
            "sha256": self.ckpt.sha256,
            "kind": "sdm",
            "mode": "inpaint",
            "window": self.window,
            "edit_margin_px": self.margin_px,
            "preset": self.ckpt.preset,
            "step": self.ckpt.step,
            "sampler": self.settings.sampler,
            "steps": self.settings.steps,
            "guidance": self.settings.guidance,
            "precision": self.precision,
            **training_provenance(self.ckpt),
        }

    def windows(self, sample: PlannedSample) -> list[Window]:
        """The window of each nodule of `sample` (half-open x0, y0, x1, y1 pixels at the output size)."""
        shape = (self.image_size, self.image_size)
        return [nodule_window(n, self.window, self.margin_px, shape)[0] for n in sample.nodules]

    def check_room(self, planner: SamplePlanner, diameter_mm: tuple[float, float] | None, weights: str) -> None:
        """InputError (one line, nothing written) when sample 0's nodules, or the largest of a
        `diameter_mm` range grown by the edit margin, cannot fit a window."""
        self.windows(planner.plan(0))
        if diameter_mm is None:
            return
        largest_px = diameter_mm[1] / float(planner.maps.spacings_mm.min()) + 2 * self.margin_px
        if largest_px > self.window:
            raise InputError(
                f"--diameter up to {diameter_mm[1]:g} mm: its edit region ({largest_px:.0f} px with the "
                f"{self.margin_px} px margin) is larger than the {self.window} px window of {weights}"
            )

    def render(self, samples: Sequence[PlannedSample], seeds: Sequence[int]) -> np.ndarray:
        """(B, S, S) uint8: each sample's real source slice with its nodules inpainted."""
        if len(seeds) != len(samples):
            raise ValueError(f"got {len(seeds)} seeds for {len(samples)} samples, expected one each")
        started = time.perf_counter()
        unique, inverse = np.unique(np.array([s.source for s in samples], dtype=np.int64), return_inverse=True)
        images = resize_images_uint8(np.asarray(self.real.image.oindex[unique, :, :]), self.image_size)[inverse].copy()
        for k in range(max((len(s.nodules) for s in samples), default=0)):
            todo = [i for i, s in enumerate(samples) if len(s.nodules) > k]
            self.inpaint(images, [samples[i] for i in todo], [round_seed(seeds[i], k) for i in todo], k, todo)
        if self.first_call_seconds is None:
            self.first_call_seconds = time.perf_counter() - started
        return images

    @torch.no_grad()
    def inpaint(self, images: np.ndarray, samples: Sequence[PlannedSample], seeds: Sequence[int], k: int, rows: Sequence[int]) -> None:
        """Draw nodule k of each of `samples` into `images[rows]` (B, S, S) uint8, in place."""
        shape = (self.image_size, self.image_size)
        cuts = [nodule_window(s.nodules[k], self.window, self.margin_px, shape) for s in samples]
        known = np.stack([crop(images[r], box) for r, (box, _) in zip(rows, cuts)])
        edit = np.stack([crop(e, box) for box, e in cuts])
        labels = np.stack([crop(s.label, box) for s, (box, _) in zip(samples, cuts)])
        known_t = torch.from_numpy(known.astype(np.float32) / 127.5 - 1.0)[:, None].to(self.device)
        edit_t = torch.from_numpy(edit)[:, None].to(self.device)
        generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        drawn = checked_uint8(
            sample(
                with_context(self._forward, context_channels(known_t, edit_t)),
                onehot_labels(labels, self.device),
                sampler=self.settings.sampler,
                steps=self.settings.steps,
                guidance=self.settings.guidance,
                generators=generators,
                in_channels=self.config.in_channels,
                num_train_timesteps=self.config.diffusion_steps,
            ),
            seeds,
            self.settings.guidance,
            edit,
        )
        for r, (box, _), patch, region in zip(rows, cuts, drawn, edit):
            target = crop(images[r], box)
            target[region] = patch[region]
