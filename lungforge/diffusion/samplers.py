"""Sampling from a label-conditioned ε model: ancestral DDPM, DDIM and DPM-Solver++ 2M, all guided."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, cast

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from lungforge.core.choices import SAMPLERS, Sampler
from lungforge.diffusion.gaussian import GaussianDiffusion, Model
from lungforge.diffusion.guidance import guided_output
from lungforge.diffusion.schedule import NoiseSchedule, linear_betas, respace

Progress = Callable[[int, int], None]
"""progress(steps_done, steps_total), called after every denoising step."""


def draw_noise(
    shape: Sequence[int],
    *,
    generators: Sequence[torch.Generator] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normal noise of `shape` (B, ...) float32 on `device`.

    With `generators` (one per sample) each sample's noise comes from its own generator, so a
    sample does not depend on the batch it is drawn in. Noise is drawn on each generator's device.
    """
    if generators is not None:
        if len(generators) != shape[0]:
            raise ValueError(f"got {len(generators)} generators for a batch of {shape[0]} samples, expected one per sample")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=g.device) for g in generators]).to(device)
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device).to(device)


class _StepOutput(Protocol):
    prev_sample: torch.Tensor


class _Scheduler(Protocol):
    """What :func:`sample` uses of a diffusers scheduler (DDIM or DPM-Solver++)."""

    timesteps: torch.Tensor
    init_noise_sigma: float

    def set_timesteps(self, num_inference_steps: int) -> None: ...

    def scale_model_input(self, sample: torch.Tensor, timestep: int) -> torch.Tensor: ...

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor) -> _StepOutput: ...


def _diffusers_scheduler(sampler: Sampler, betas: np.ndarray) -> _Scheduler:
    common = dict(num_train_timesteps=len(betas), trained_betas=betas, prediction_type="epsilon")
    if sampler == "ddim":
        # Trailing spacing starts at the last training step; alpha_prev = 1 makes the final step return x0.
        ddim = DDIMScheduler(**common, clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, timestep_spacing="trailing")
        return cast(_Scheduler, ddim)
    # Dynamic thresholding with a maximum of 1 clips the predicted x0 to [-1, 1].
    dpmpp = DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2, thresholding=True, sample_max_value=1.0)
    return cast(_Scheduler, dpmpp)


@torch.no_grad()
def sample(
    model: Model,
    onehot: torch.Tensor,
    *,
    sampler: Sampler = "dpmpp",
    steps: int = 25,
    guidance: float = 1.5,
    generators: Sequence[torch.Generator] | None = None,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    in_channels: int = 1,
    num_train_timesteps: int = 1000,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Generate images for one-hot label maps (B, K, H, W); returns x0 (B, in_channels, H, W) in [-1, 1].

    `steps` denoising steps out of `num_train_timesteps`; guidance scale s gives
    ε = ε_u + s·(ε_c − ε_u) (s=1: conditional only, one forward per step; otherwise two passes
    batched into one forward). Randomness: `noise` (the initial x_T), else `generators` (one per
    sample, also used for DDPM's per-step noise) or a single `generator`.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}, expected one of {', '.join(SAMPLERS)}")
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in 1..{num_train_timesteps} (num_train_timesteps), got {steps}")
    if guidance < 0:
        raise ValueError(f"guidance scale must be >= 0, got {guidance}")
    b, _, h, w = onehot.shape
    shape = (b, in_channels, h, w)
    if noise is None:
        noise = draw_noise(shape, generators=generators, generator=generator, device=onehot.device)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {shape}")
    x = noise.to(device=onehot.device, dtype=torch.float32)
    betas = linear_betas(num_train_timesteps)

    if sampler == "ddpm":
        diffusion = GaussianDiffusion(respace(NoiseSchedule.linear(num_train_timesteps), steps))
        train_ids = torch.as_tensor(diffusion.schedule.timesteps, device=x.device)
        for done, i in enumerate(reversed(range(steps)), start=1):
            index = torch.full((b,), i, dtype=torch.long, device=x.device)
            out = guided_output(model, x, train_ids[index], onehot, guidance)
            if out.shape[1] == in_channels:
                # A model without learned variance: v = −1 selects the posterior variance β̃_t.
                out = torch.cat([out, -torch.ones_like(out)], dim=1)
            pred = diffusion.p_mean_variance(out, x, index, clip_x0=True)
            x = pred.mean
            if i > 0:
                step_noise = draw_noise(shape, generators=generators, generator=generator, device=x.device)
                x = x + torch.exp(0.5 * pred.log_variance) * step_noise
            if progress is not None:
                progress(done, steps)
        return x.clamp(-1.0, 1.0)

    scheduler = _diffusers_scheduler(sampler, betas)
    # The schedule stays on the host and the scheduler sees Python ints: it then never reads a
    # device tensor back (no GPU sync per step); only the model's timestep batch lives on the device.
    scheduler.set_timesteps(steps)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)
    model_timesteps = scheduler.timesteps.to(x.device, non_blocking=True)
    x = x * scheduler.init_noise_sigma
    for done, t in enumerate(scheduler.timesteps.tolist(), start=1):
        model_input = scheduler.scale_model_input(x, t)
        out = guided_output(model, model_input, model_timesteps[done - 1].expand(b), onehot, guidance)
        x = scheduler.step(out[:, :in_channels], t, x).prev_sample
        if progress is not None:
            progress(done, steps)
    return x.clamp(-1.0, 1.0)
