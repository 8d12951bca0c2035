"""Noise schedules (float64) and timestep respacing: pick K of the T training steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def linear_betas(num_timesteps: int = 1000) -> np.ndarray:
    """Linear β schedule of improved-DDPM, scaled so any T spans the same noise range; (T,) float64."""
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete diffusion schedule with every quantity the losses and samplers need, in float64.

    `timesteps[i]` is the training-time step id of index i (the identity unless respaced); the
    model is always fed these ids.
    """

    betas: np.ndarray
    timesteps: np.ndarray
    alphas_cumprod: np.ndarray = field(init=False)
    alphas_cumprod_prev: np.ndarray = field(init=False)
    posterior_variance: np.ndarray = field(init=False)
    posterior_log_variance_clipped: np.ndarray = field(init=False)
    posterior_mean_coef1: np.ndarray = field(init=False)
    posterior_mean_coef2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a 1-D array with values in (0, 1]")
        if len(self.timesteps) != len(betas):
            raise ValueError(f"timesteps has {len(self.timesteps)} entries, expected {len(betas)} (one per beta)")
        alphas_cumprod = np.cumprod(1.0 - betas)
        prev = np.append(1.0, alphas_cumprod[:-1])
        posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
        # The posterior variance is 0 at t=0; its log is clipped to the next value, as in improved-DDPM.
        clipped = np.append(posterior_variance[1], posterior_variance[1:]) if len(betas) > 1 else betas.copy()
        values = {
            "betas": betas,
            "timesteps": np.asarray(self.timesteps, dtype=np.int64),
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": prev,
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": np.log(clipped),
            "posterior_mean_coef1": betas * np.sqrt(prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def linear(cls, num_timesteps: int = 1000) -> NoiseSchedule:
        """The training schedule: linear βs over `num_timesteps` steps."""
        return cls(linear_betas(num_timesteps), np.arange(num_timesteps))

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)


def space_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """`steps` training step ids spread evenly over 0..T-1, ascending, always including T-1."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in 1..{num_timesteps} (the training step count), got {steps}")
    return np.round(np.linspace(num_timesteps - 1, 0, steps))[::-1].astype(np.int64)


def respace(schedule: NoiseSchedule, steps: int) -> NoiseSchedule:
    """A `steps`-step schedule whose ᾱ equal the original ones at the chosen steps.

    βs are recomputed as 1 − ᾱ_i / ᾱ_{i−1}, so ancestral sampling with learned variance works
    at any step count; `timesteps` maps each new index to the original step id.
    """
    chosen = space_timesteps(schedule.num_timesteps, steps)
    alphas_cumprod = schedule.alphas_cumprod[chosen]
    betas = 1.0 - alphas_cumprod / np.append(1.0, alphas_cumprod[:-1])
    return NoiseSchedule(betas, schedule.timesteps[chosen])
