"""Gaussian diffusion with ε-prediction and learned-range variance: q_sample, p(x_{t-1}|x_t), hybrid loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lungforge.diffusion.losses import discretized_gaussian_log_likelihood, normal_kl
from lungforge.diffusion.schedule import NoiseSchedule

Model = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""model(x_t (B, C, H, W), t (B,) training step ids, onehot (B, K, H, W)) → (B, 2C, H, W): ε and v."""


def gather(values: np.ndarray, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[index] (float64 schedule entries at (B,) indices) shaped (B, 1, ..., 1) in like's dtype/device.

    The table is copied to the index's device and indexed there: the indices are never read on
    the host, so a sampling loop on a GPU does not wait for the device at every step.
    """
    table = torch.from_numpy(values).to(device=index.device, non_blocking=True)
    picked = table[index.detach().long()]
    return picked.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


@dataclass(frozen=True)
class PosteriorPrediction:
    """p(x_{t-1} | x_t) as predicted by the model, and the x0 it implies."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor
    pred_x0: torch.Tensor


class GaussianDiffusion:
    """Diffusion maths on a `NoiseSchedule`; `t` arguments are schedule indices (B,) long."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_timesteps

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε."""
        ac = self.schedule.alphas_cumprod
        return gather(np.sqrt(ac), t, x0) * x0 + gather(np.sqrt(1.0 - ac), t, x0) * noise

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x0)."""
        s = self.schedule
        mean = gather(s.posterior_mean_coef1, t, x_t) * x0 + gather(s.posterior_mean_coef2, t, x_t) * x_t
        return mean, gather(s.posterior_variance, t, x_t), gather(s.posterior_log_variance_clipped, t, x_t)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t."""
        ac = self.schedule.alphas_cumprod
        return gather(np.sqrt(1.0 / ac), t, x_t) * x_t - gather(np.sqrt(1.0 / ac - 1.0), t, x_t) * eps

    def p_mean_variance(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, *, clip_x0: bool = True
    ) -> PosteriorPrediction:
        """p(x_{t-1} | x_t) from the model output (B, 2C, H, W): ε and v in [-1, 1].

        log σ² = ((v+1)/2)·log β_t + (1−(v+1)/2)·log β̃_t (β̃: posterior variance).
        """
        eps, v = model_output.chunk(2, dim=1)
        frac = (v + 1.0) / 2.0
        min_log = gather(self.schedule.posterior_log_variance_clipped, t, x_t)
        max_log = gather(np.log(self.schedule.betas), t, x_t)
        log_variance = frac * max_log + (1.0 - frac) * min_log
        pred_x0 = self.predict_x0(x_t, t, eps)
        if clip_x0:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior(pred_x0, x_t, t)
        return PosteriorPrediction(mean, torch.exp(log_variance), log_variance, pred_x0)

    def vb_terms_bits(self, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Per-sample (B,) variational bound term in bits per dimension: KL for t>0, decoder NLL at t=0."""
        true_mean, _, true_log_var = self.q_posterior(x0, x_t, t)
        pred = self.p_mean_variance(model_output, x_t, t, clip_x0=False)
        kl = normal_kl(true_mean, true_log_var, pred.mean, pred.log_variance).flatten(1).mean(1)
        nll = -discretized_gaussian_log_likelihood(x0, pred.mean, 0.5 * pred.log_variance).flatten(1).mean(1)
        return torch.where(t.to(x0.device) == 0, nll, kl) / math.log(2.0)

    def training_losses(
        self,
        model: Model,
        x0: torch.Tensor,
        t: torch.Tensor,
        onehot: torch.Tensor,
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Hybrid loss of improved-DDPM: MSE on ε + VLB (stop-grad on the mean, scaled by T/1000).

        x0 (B, C, H, W) in [-1, 1], t (B,) schedule indices; returns loss, mse, vb, each (B,).
        """
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        timesteps = torch.as_tensor(self.schedule.timesteps, device=t.device)[t]
        output = model(x_t, timesteps, onehot).float()
        eps, v = output[:, : x0.shape[1]], output[:, x0.shape[1] :]
        mse = (noise.float() - eps).square().flatten(1).mean(1)
        if v.shape[1] == 0:
            return {"loss": mse, "mse": mse, "vb": torch.zeros_like(mse)}
        # The VLB trains only the variance; ε is trained by the MSE alone.
        frozen = torch.cat([eps.detach(), v], dim=1)
        vb = self.vb_terms_bits(frozen, x0.float(), x_t.float(), t) * (self.num_timesteps / 1000.0)
        return {"loss": mse + vb, "mse": mse, "vb": vb}
