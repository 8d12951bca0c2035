"""SPADE training: alternating G and D steps, hinge loss + feature matching (λ=10), optional VGG."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import torch
from torch import Tensor, nn

from lungforge.core.device import Precision, autocast, grad_scaler
from lungforge.core.process_group import DistInfo, wrap_ddp
from lungforge.models.layers import labels_to_onehot
from lungforge.models.presets import Preset
from lungforge.models.spade import (
    DiscriminatorOutput,
    MultiscaleDiscriminator,
    SPADEGenerator,
    VGGLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    make_optimizers,
)
from lungforge.training.options import StepReport, TrainOptions, TrainResult
from lungforge.training.run import fit
from lungforge.training.state import ResumableParts

DEFAULT_LR_G = 1e-4
D_LR_RATIO = 4.0
BETAS = (0.0, 0.9)


def _halves(output: DiscriminatorOutput) -> tuple[DiscriminatorOutput, DiscriminatorOutput]:
    """Split a discriminator output of a [fake; real] batch into the fake and the real part."""
    fake = [[f.chunk(2)[0] for f in scale] for scale in output]
    real = [[f.chunk(2)[1] for f in scale] for scale in output]
    return fake, real


def _no_context(context: Tensor | None) -> None:
    if context is not None:
        raise ValueError(f"SPADE takes no inpainting context, got a tensor of shape {tuple(context.shape)}")


class SPADETrainer(ResumableParts):
    """SPADE generator and multiscale discriminator with their two-timescale Adam optimisers."""

    kind: Final = "spade"

    def __init__(self, preset: Preset, options: TrainOptions, device: torch.device, precision: Precision, info: DistInfo) -> None:
        self.config = preset.spade
        self.device, self.precision = device, precision
        self.generator = SPADEGenerator(self.config).to(device)
        self.discriminator = MultiscaleDiscriminator(self.config).to(device)
        generator_module: nn.Module = self.generator
        if info.enabled and device.type == "cuda":
            # The reference SPADE normalises with synchronised BatchNorm across GPUs.
            generator_module = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
        # Spectral norm updates its power-iteration buffers in forward; broadcasting them mid-step breaks autograd.
        self.g_ddp = wrap_ddp(generator_module, info, device, broadcast_buffers=False)
        self.d_ddp = wrap_ddp(self.discriminator, info, device, broadcast_buffers=False)
        self.lr_g = options.lr or DEFAULT_LR_G
        self.lr_d = options.lr_d or D_LR_RATIO * self.lr_g
        self.opt_g, self.opt_d = make_optimizers(self.generator, self.discriminator, self.lr_g, self.lr_d, BETAS)
        self.scaler = grad_scaler(device, precision)
        self.vgg = VGGLoss(options.vgg_weights).to(device) if options.vgg_weights is not None else None

    def train_step(self, image: Tensor, label: Tensor, generator: torch.Generator, context: Tensor | None = None) -> dict[str, float]:
        """One G step (hinge + λ_feat·FM [+ λ_vgg·VGG]) then one D step (hinge) on the same batch.

        `context` must be None: SPADE draws whole slices and has no inpainting mode.
        """
        _no_context(context)
        cfg = self.config
        onehot = labels_to_onehot(label, cfg.num_classes)
        self.generator.train()
        self.discriminator.train()
        with autocast(self.device, self.precision):
            fake = self.g_ddp(onehot, generator=generator)
            pred_fake = self.d_ddp(fake, onehot)
            with torch.no_grad():
                pred_real = self.d_ddp(image, onehot)
            g_gan = generator_loss(pred_fake)
            g_feat = cfg.lambda_feat * feature_matching_loss(pred_fake, pred_real)
            g_vgg = cfg.lambda_vgg * self.vgg(fake, image) if self.vgg is not None else torch.zeros((), device=self.device)
            g_total = g_gan + g_feat + g_vgg
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_total).backward()
        self.scaler.step(self.opt_g)

        with autocast(self.device, self.precision):
            both = self.d_ddp(torch.cat([fake.detach(), image]), torch.cat([onehot, onehot]))
            d_fake, d_real = _halves(both)
            d_total = discriminator_loss(d_real, d_fake)
        # G's backward also reached D's weights; D learns from its own loss only.
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(d_total).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()
        return {
            "loss": float(g_total.detach()),
            "g_gan": float(g_gan.detach()),
            "g_feat": float(g_feat.detach()),
            "g_vgg": float(g_vgg.detach()),
            "d": float(d_total.detach()),
        }

    @torch.no_grad()
    def sample(self, label: Tensor, generator: torch.Generator, context: Tensor | None = None) -> Tensor:
        """Generator output in eval mode (BatchNorm running statistics); `context` must be None."""
        _no_context(context)
        self.generator.eval()
        try:
            with autocast(self.device, self.precision):
                return self.generator(labels_to_onehot(label, self.config.num_classes), generator=generator).float()
        finally:
            self.generator.train()

    def checkpoint_weights(self) -> dict[str, Tensor]:
        """The generator's weights (the discriminator lives only in the resume state)."""
        return self.generator.state_dict()

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "optimizer": "Adam",
            "betas": list(BETAS),
            "lr_g": self.lr_g,
            "lr_d": self.lr_d,
            "loss": "hinge + feature matching" + (" + VGG" if self.vgg is not None else ""),
            "lambda_feat": self.config.lambda_feat,
            "lambda_vgg": self.config.lambda_vgg if self.vgg is not None else 0.0,
        }

    def resume_parts(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "discriminator": self.discriminator,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
            "scaler": self.scaler,
        }


def train_spade(options: TrainOptions, on_step: Callable[[StepReport], None] | None = None) -> TrainResult:
    """Train a SPADE GAN on the train split of `options.data`, writing checkpoints into `options.out`."""
    return fit("spade", SPADETrainer, options, on_step)
