"""Model configurations (frozen dataclasses) and the named presets `tiny` and `paper` (the paper's sizes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from lungforge.core.errors import LungforgeError
from lungforge.core.labels import NUM_CLASSES


def _require_counts(config: object, positive: tuple[str, ...], non_negative: tuple[str, ...] = ()) -> None:
    """ValueError unless the named fields (ints or tuples of ints) are whole numbers > 0 (or >= 0)."""
    for names, low in ((positive, 1), (non_negative, 0)):
        for name in names:
            value = getattr(config, name)
            for item in value if isinstance(value, tuple) else (value,):
                if not isinstance(item, int) or isinstance(item, bool) or item < low:
                    raise ValueError(f"{name} must be {'> 0' if low else '>= 0'} (a whole number), got {value!r}")


@dataclass(frozen=True, kw_only=True)
class SDMConfig:
    """Semantic Diffusion Model UNet and diffusion settings.

    `image_size` and `attention_resolutions` are in pixels (square images); attention is applied
    where the feature map side equals one of `attention_resolutions`. `context_channels` are
    extra inputs beside the noisy image that are not denoised: 0 for whole-slice SDM, 2 for the
    inpainting SDM (the known image with its edit region blanked, and the edit mask), whose
    `image_size` is then the window side.
    """

    image_size: int
    in_channels: int = 1
    context_channels: int = 0
    num_classes: int = NUM_CLASSES
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    num_head_channels: int
    norm_groups: int = 32
    dropout: float = 0.0
    resblock_updown: bool = True
    use_scale_shift_norm: bool = True
    label_embed_channels: int = 128
    learn_sigma: bool = True
    diffusion_steps: int = 1000
    noise_schedule: Literal["linear"] = "linear"
    cond_drop_prob: float = 0.2

    def __post_init__(self) -> None:
        _require_counts(
            self,
            (
                "image_size",
                "in_channels",
                "num_classes",
                "model_channels",
                "channel_mult",
                "num_res_blocks",
                "num_head_channels",
                "norm_groups",
                "label_embed_channels",
                "diffusion_steps",
            ),
            ("attention_resolutions", "context_channels"),
        )
        size = self.image_size
        if size <= 0 or size % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(
                f"image_size must be a positive multiple of 2**{len(self.channel_mult) - 1} "
                f"(one halving per channel_mult level after the first), got {size}"
            )
        for mult in self.channel_mult:
            channels = self.model_channels * mult
            if channels % self.norm_groups:
                raise ValueError(f"model_channels*mult={channels} must be divisible by norm_groups {self.norm_groups}")
            if channels % self.num_head_channels and size in self.attention_resolutions:
                raise ValueError(f"channels {channels} must be divisible by num_head_channels {self.num_head_channels}")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.noise_schedule != "linear":
            raise ValueError(f"noise_schedule must be 'linear', got {self.noise_schedule!r}")

    @property
    def inpaint(self) -> bool:
        """Whether this is an inpainting SDM (it reads a known image and an edit mask)."""
        return self.context_channels > 0

    @property
    def out_channels(self) -> int:
        """ε, plus the variance interpolation v when the variance is learned."""
        return self.in_channels * (2 if self.learn_sigma else 1)


@dataclass(frozen=True)
class SPADEConfig:
    """SPADE GAN settings (Park et al. 2019); `image_size` in pixels (square).

    `label_hidden` is the width of the label-map convs inside every SPADE norm (128 in the paper).
    """

    image_size: int
    num_classes: int = NUM_CLASSES
    ngf: int = 64
    ndf: int = 64
    label_hidden: int = 128
    num_upsampling_layers: Literal["normal", "more"] = "normal"
    z_dim: int = 0
    n_layers_d: int = 4
    num_d: int = 2
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0

    def __post_init__(self) -> None:
        _require_counts(self, ("image_size", "num_classes", "ngf", "ndf", "label_hidden", "n_layers_d", "num_d"), ("z_dim",))
        if self.num_upsampling_layers not in ("normal", "more"):
            raise ValueError(f"num_upsampling_layers must be 'normal' or 'more', got {self.num_upsampling_layers!r}")


@dataclass(frozen=True)
class Preset:
    """A named pair of generator configurations."""

    name: Literal["tiny", "paper"]
    sdm: SDMConfig
    spade: SPADEConfig


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        sdm=SDMConfig(
            image_size=64,
            model_channels=32,
            channel_mult=(1, 2, 2),
            num_res_blocks=1,
            attention_resolutions=(16,),
            num_head_channels=32,
            norm_groups=8,
            label_embed_channels=32,
        ),
        spade=SPADEConfig(image_size=64, ngf=8, ndf=16, label_hidden=32),
    ),
    "paper": Preset(
        name="paper",
        sdm=SDMConfig(
            image_size=256,
            model_channels=256,
            channel_mult=(1, 1, 2, 2, 4, 4),
            num_res_blocks=2,
            attention_resolutions=(32, 16, 8),
            num_head_channels=64,
        ),
        spade=SPADEConfig(image_size=512, ngf=64, ndf=64),
    ),
}


INPAINT_CONTEXT_CHANNELS = 2
"""The inpainting SDM's context: the known image (edit region blanked) and the edit mask."""


def inpaint_preset(preset: Preset, window: int) -> Preset:
    """`preset` with its SDM turned into an inpainting SDM on `window`×`window` pixel windows.

    Same UNet widths and depths, and attention at the same levels (a 256 px preset attending at
    32, 16, 8 px attends at 8, 4, 2 px on 64 px windows); the first conv reads two more channels.
    """
    size = preset.sdm.image_size
    attention = tuple(sorted({window * r // size for r in preset.sdm.attention_resolutions if window * r % size == 0}, reverse=True))
    try:
        sdm = dataclasses.replace(preset.sdm, image_size=window, context_channels=INPAINT_CONTEXT_CHANNELS, attention_resolutions=attention)
    except ValueError as exc:
        raise LungforgeError(f"--window {window}: {exc}") from None
    return dataclasses.replace(preset, sdm=sdm)


def get_preset(name: str) -> Preset:
    """Return the preset called `name` (`tiny` or `paper`)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise LungforgeError(f"unknown preset {name!r}, expected one of {', '.join(sorted(PRESETS))}") from None


def config_to_dict(cfg: SDMConfig | SPADEConfig) -> dict[str, Any]:
    """A JSON-serialisable dict of a config (tuples become lists)."""
    return {f.name: list(v) if isinstance(v := getattr(cfg, f.name), tuple) else v for f in dataclasses.fields(cfg)}


_Config = TypeVar("_Config", SDMConfig, SPADEConfig)


def _config_from_dict(cls: type[_Config], data: dict[str, Any]) -> _Config:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise LungforgeError(f"unknown {cls.__name__} keys {unknown}, expected some of {sorted(fields)}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise LungforgeError(f"invalid {cls.__name__}: {exc}") from None


def sdm_config_from_dict(data: dict[str, Any]) -> SDMConfig:
    """Rebuild an `SDMConfig` from `config_to_dict` output (e.g. a checkpoint's config.json)."""
    return _config_from_dict(SDMConfig, data)


def spade_config_from_dict(data: dict[str, Any]) -> SPADEConfig:
    """Rebuild a `SPADEConfig` from `config_to_dict` output."""
    return _config_from_dict(SPADEConfig, data)
