"""SDM training: AdamW, hybrid loss, uniform timesteps, condition dropout p=0.2, EMA weights."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

import torch
from torch import Tensor

from lungforge.core.choices import Sampler
from lungforge.core.device import Precision, autocast_forward, grad_scaler
from lungforge.core.process_group import DistInfo, wrap_ddp
from lungforge.diffusion.gaussian import GaussianDiffusion
from lungforge.diffusion.guidance import drop_condition, with_context
from lungforge.diffusion.samplers import sample
from lungforge.diffusion.schedule import NoiseSchedule
from lungforge.models.acceleration import compiled
from lungforge.models.layers import labels_to_onehot
from lungforge.models.presets import Preset
from lungforge.models.sdm_unet import SDMUNet
from lungforge.training.ema import EMA
from lungforge.training.options import StepReport, TrainOptions, TrainResult
from lungforge.training.run import fit
from lungforge.training.state import ResumableParts

DEFAULT_LR = 1e-4
WEIGHT_DECAY = 0.0
EMA_DECAY = {"tiny": 0.999, "paper": 0.9999}
GRID_SAMPLER: Sampler = "dpmpp"


class SDMTrainer(ResumableParts):
    """The SDM UNet, its DDP wrapper, AdamW, loss scaler and EMA; one `train_step` per batch."""

    kind: Final = "sdm"

    def __init__(self, preset: Preset, options: TrainOptions, device: torch.device, precision: Precision, info: DistInfo) -> None:
        self.config = preset.sdm
        self.device, self.precision, self.options = device, precision, options
        self.model = SDMUNet(self.config).to(device)
        self.ddp = wrap_ddp(self.model, info, device)
        self.forward_model = compiled(self.ddp, options.compile)
        self.lr = options.lr or DEFAULT_LR
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=WEIGHT_DECAY)
        self.scaler = grad_scaler(device, precision)
        self.ema = EMA(self.model, options.ema_decay if options.ema_decay is not None else EMA_DECAY.get(preset.name, 0.9999))
        self.diffusion = GaussianDiffusion(NoiseSchedule.linear(self.config.diffusion_steps))
        self._sampler_model = copy.deepcopy(self.model).eval().requires_grad_(False)

    def train_step(self, image: Tensor, label: Tensor, generator: torch.Generator, context: Tensor | None = None) -> dict[str, float]:
        """Hybrid loss (ε-MSE + VLB) at timesteps drawn uniformly from `generator`; one AdamW step.

        `context` (B, 2, S, S): the known window and edit mask of an inpainting SDM (None otherwise).
        """
        onehot = drop_condition(labels_to_onehot(label, self.config.num_classes), self.config.cond_drop_prob, generator)
        t = torch.randint(0, self.diffusion.num_timesteps, (image.shape[0],), generator=generator, device=self.device)
        noise = torch.randn(image.shape, generator=generator, device=self.device)
        self.model.train()
        forward = autocast_forward(self.forward_model, self.device, self.precision)
        if context is not None:
            forward = with_context(forward, context)
        terms = self.diffusion.training_losses(forward, image, t, onehot, noise)
        loss = terms["loss"].mean()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        return {"loss": float(loss.detach()), "mse": float(terms["mse"].detach().mean()), "vb": float(terms["vb"].detach().mean())}

    @torch.no_grad()
    def sample(self, label: Tensor, generator: torch.Generator, context: Tensor | None = None) -> Tensor:
        """EMA-weight samples with DPM-Solver++ (`options.sample_steps` steps, guidance `options.guidance`)."""
        self.ema.copy_to(self._sampler_model)
        onehot = labels_to_onehot(label, self.config.num_classes)
        forward = autocast_forward(self._sampler_model, self.device, self.precision)
        return sample(
            forward if context is None else with_context(forward, context),
            onehot,
            sampler=GRID_SAMPLER,
            steps=self.options.sample_steps,
            guidance=self.options.guidance,
            generator=generator,
            in_channels=self.config.in_channels,
            num_train_timesteps=self.config.diffusion_steps,
        )

    def checkpoint_weights(self) -> dict[str, Tensor]:
        """The EMA weights: what an SDM checkpoint ships."""
        return self.ema.shadow

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "optimizer": "AdamW",
            "lr": self.lr,
            "weight_decay": WEIGHT_DECAY,
            "ema_decay": self.ema.decay,
            "ema_warmup": "min(decay, (1+n)/(10+n))",
            "cond_drop_prob": self.config.cond_drop_prob,
            "loss": "hybrid (eps MSE + VLB)",
            "grid_sampler": GRID_SAMPLER,
        }

    def resume_parts(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer, "scaler": self.scaler, "ema": self.ema}


def train_sdm(options: TrainOptions, on_step: Callable[[StepReport], None] | None = None) -> TrainResult:
    """Train an SDM on the train split of `options.data`, writing checkpoints into `options.out`."""
    return fit("sdm", SDMTrainer, options, on_step)
