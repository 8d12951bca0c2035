"""SPADE GAN (Park et al. 2019): generator, multiscale PatchGAN discriminator, losses, optimisers.

Follows the reference implementation (NVlabs/SPADE) with `norm_G=spectralspadesyncbatch3x3`,
`norm_D=spectralinstance`, hinge GAN loss and feature matching, without the VAE encoder:
the generator starts from the one-hot label map downsampled to `image_size / 2**k`.
Images are 1-channel CT slices in [-1, 1]; label maps are one-hot `(B, num_classes, H, W)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from lungforge.core.errors import InputError
from lungforge.core.tensor_files import load_tensor_dict
from lungforge.models.presets import SPADEConfig

_UPSAMPLINGS = {"normal": 5, "more": 6}

DiscriminatorOutput = list[list[Tensor]]
"""Per scale, the intermediate features of each layer; the last entry is the patch logits."""


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: param-free BatchNorm, then x·(1+γ)+β from the label map.

    BatchNorm is the SPADE paper's `syncbatch`; under DDP wrap the model with
    `nn.SyncBatchNorm.convert_sync_batchnorm` to synchronise its statistics.
    """

    def __init__(self, channels: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(num_classes, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: Tensor, onehot: Tensor) -> Tensor:
        """Normalise `x (B, C, h, w)` modulated by `onehot (B, K, H, W)` resized (nearest) to h×w."""
        seg = F.interpolate(onehot, size=x.shape[-2:], mode="nearest")
        hidden = self.shared(seg)
        return self.norm(x) * (1 + self.gamma(hidden)) + self.beta(hidden)


class SPADEResBlock(nn.Module):
    """Two SPADE→LeakyReLU→conv3×3 stages with a (learned, when channels change) shortcut."""

    def __init__(self, fin: int, fout: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmid, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fmid, fout, 3, padding=1))
        self.norm_0 = SPADE(fin, num_classes, hidden)
        self.norm_1 = SPADE(fmid, num_classes, hidden)
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = SPADE(fin, num_classes, hidden)

    def forward(self, x: Tensor, onehot: Tensor) -> Tensor:
        shortcut = self.conv_s(self.norm_s(x, onehot)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, onehot), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, onehot), 0.2))
        return shortcut + dx


class SPADEGenerator(nn.Module):
    """Label map → CT slice. `forward(onehot (B, K, S, S)) -> (B, 1, S, S)` in [-1, 1], S = image_size.

    Channel widths from the start: 16·ngf (head and middle blocks) → 8 → 4 → 2 → 1·ngf, one nearest
    2× upsampling between stages (5 in all for `normal`, 6 for `more`).
    """

    def __init__(self, cfg: SPADEConfig) -> None:
        super().__init__()
        ups = _UPSAMPLINGS[cfg.num_upsampling_layers]
        if cfg.image_size % 2**ups:
            raise ValueError(
                f"SPADE image_size must be a multiple of 2**{ups} for num_upsampling_layers="
                f"{cfg.num_upsampling_layers!r}, got {cfg.image_size}"
            )
        self.cfg = cfg
        self.start_size = cfg.image_size // 2**ups
        nf, k, h = cfg.ngf, cfg.num_classes, cfg.label_hidden
        self.fc: nn.Module
        if cfg.z_dim > 0:
            self.fc = nn.Linear(cfg.z_dim, 16 * nf * self.start_size**2)
        else:
            self.fc = nn.Conv2d(k, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResBlock(16 * nf, 16 * nf, k, h)
        self.middle_0 = SPADEResBlock(16 * nf, 16 * nf, k, h)
        self.middle_1 = SPADEResBlock(16 * nf, 16 * nf, k, h)
        self.up_blocks = nn.ModuleList(SPADEResBlock(fin * nf, fout * nf, k, h) for fin, fout in ((16, 8), (8, 4), (4, 2), (2, 1)))
        self.conv_img = nn.Conv2d(nf, 1, 3, padding=1)

    def forward(self, onehot: Tensor, z: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Synthesise images from `onehot (B, K, S, S)`; `z (B, z_dim)` is drawn from `generator` if not given."""
        b = onehot.shape[0]
        if self.cfg.z_dim > 0:
            if z is None:
                z = torch.randn(b, self.cfg.z_dim, generator=generator, device=onehot.device, dtype=onehot.dtype)
            x = self.fc(z).view(b, 16 * self.cfg.ngf, self.start_size, self.start_size)
        else:
            x = self.fc(F.interpolate(onehot, size=(self.start_size, self.start_size), mode="nearest"))
        x = self.head_0(x, onehot)
        x = _up(x)
        x = self.middle_0(x, onehot)
        if self.cfg.num_upsampling_layers == "more":
            x = _up(x)
        x = self.middle_1(x, onehot)
        for block in self.up_blocks:
            x = block(_up(x), onehot)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class PatchDiscriminator(nn.Module):
    """pix2pixHD N-layer PatchGAN: conv4×4 stride 2 …, spectral norm + InstanceNorm, LeakyReLU 0.2."""

    def __init__(self, in_channels: int, ndf: int, n_layers: int) -> None:
        super().__init__()
        pad = 2  # ceil((kernel 4 - 1) / 2), as the reference implementation
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=pad), nn.LeakyReLU(0.2))]
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            conv = spectral_norm(nn.Conv2d(nf_prev, nf, 4, stride=stride, padding=pad, bias=False))
            layers.append(nn.Sequential(conv, nn.InstanceNorm2d(nf, affine=False), nn.LeakyReLU(0.2)))
        layers.append(nn.Conv2d(nf, 1, 4, stride=1, padding=pad))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Outputs of every layer; the last is the patch logits `(B, 1, h, w)`."""
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """`num_d` PatchGANs on image ⊕ one-hot, scale i seeing the input avg-pooled 2^i times."""

    def __init__(self, cfg: SPADEConfig) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PatchDiscriminator(1 + cfg.num_classes, cfg.ndf, cfg.n_layers_d) for _ in range(cfg.num_d))

    def forward(self, image: Tensor, onehot: Tensor) -> DiscriminatorOutput:
        """`image (B, 1, H, W)`, `onehot (B, K, H, W)` → per scale, per layer features (last = logits)."""
        x = torch.cat([image, onehot], dim=1)
        outputs = []
        for i, disc in enumerate(self.discriminators):
            if i:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            outputs.append(disc(x))
        return outputs


def discriminator_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> Tensor:
    """Hinge loss for D, averaged over scales: mean relu(1 − D(real)) + mean relu(1 + D(fake))."""
    return _hinge_real(real) + _hinge_fake(fake)


def _hinge_real(real: DiscriminatorOutput) -> Tensor:
    return torch.stack([F.relu(1 - scale[-1]).mean() for scale in real]).mean()


def _hinge_fake(fake: DiscriminatorOutput) -> Tensor:
    return torch.stack([F.relu(1 + scale[-1]).mean() for scale in fake]).mean()


def generator_loss(fake: DiscriminatorOutput) -> Tensor:
    """Hinge loss for G, averaged over scales: −mean D(fake)."""
    return torch.stack([-scale[-1].mean() for scale in fake]).mean()


def feature_matching_loss(fake: DiscriminatorOutput, real: DiscriminatorOutput) -> Tensor:
    """L1 between D's intermediate features of fake and (detached) real, summed over layers, mean over scales."""
    terms = [F.l1_loss(f, r.detach()) for fake_scale, real_scale in zip(fake, real) for f, r in zip(fake_scale[:-1], real_scale[:-1])]
    return torch.stack(terms).sum() / len(fake)


class VGGLoss(nn.Module):
    """Perceptual L1 over VGG19 relu1_1…relu5_1 features (weights 1/32 … 1), frozen.

    Weights come ONLY from a local file: a torchvision `vgg19` state dict (`features.*` keys are
    used, `classifier.*` ignored), saved with `torch.save` or as `.safetensors`. Grey images in
    [-1, 1] are mapped to [0, 1], repeated to RGB and ImageNet-normalised.
    """

    _SLICES = (2, 7, 12, 21, 30)
    _WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    mean: Tensor
    std: Tensor

    def __init__(self, weights_path: Path) -> None:
        super().__init__()
        from torchvision.models import vgg

        features = vgg.make_layers(vgg.cfgs["E"])
        features.load_state_dict(_load_vgg_features(Path(weights_path)))
        self.features = features[: self._SLICES[-1]].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGLoss:
        super().train(mode)
        self.features.eval()
        return self

    def _activations(self, image: Tensor) -> list[Tensor]:
        x = ((image.repeat(1, 3, 1, 1) + 1) / 2 - self.mean) / self.std
        out, start = [], 0
        for stop in self._SLICES:
            x = self.features[start:stop](x)
            out.append(x)
            start = stop
        return out

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        """Perceptual distance between `fake` and `real` `(B, 1, H, W)` in [-1, 1]."""
        pairs = zip(self._activations(fake), self._activations(real), self._WEIGHTS)
        return cast(Tensor, sum(w * F.l1_loss(f, r.detach()) for f, r, w in pairs))


def _load_vgg_features(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise InputError(f"VGG19 weights file {path} not found; give a local torchvision vgg19 state dict")
    state = load_tensor_dict(path, "VGG19 weights file", InputError, expected="state dict")
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    from torchvision.models import vgg

    with torch.device("meta"):
        reference = vgg.make_layers(vgg.cfgs["E"])
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in features.items()}
    if found != expected:
        missing = sorted(set(expected) - set(found))[:3]
        raise InputError(
            f"VGG19 weights file {path} is not a torchvision vgg19 state dict "
            f"(expected {len(expected)} 'features.*' tensors, found {len(found)}; e.g. missing {missing})"
        )
    return features


def make_optimizers(
    generator: nn.Module,
    discriminator: nn.Module,
    lr_g: float = 1e-4,
    lr_d: float = 4e-4,
    betas: tuple[float, float] = (0.0, 0.9),
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Two-timescale Adam optimisers (G 1e-4, D 4e-4, β = (0, 0.9)) as in the SPADE paper."""
    return (
        torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas),
        torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas),
    )
