"""Size bounds of model configs, checked before a model is built from a checkpoint's config.

A checkpoint's config decides how much memory building its model takes, before any weight is
compared with it: `ngf = 256` in a 7.5 MB SPADE file asks for 1.5 G parameters (about 5 GB on
the CPU). Every config is therefore held to the largest legitimate preset, `paper`:

- its parameter count (counted from the config, without building) at most :data:`SCALE` times
  the paper preset's, and
- the sizes the parameter count does not show (image side, which sets activation memory; depth
  counts, which set build time; diffusion steps, which set the schedule's length) at most
  :data:`SCALE` times the paper preset's.

A config outside them is refused with one line naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lungforge.models.presets import PRESETS, SDMConfig, SPADEConfig

SCALE = 2
"""How many times the paper preset's sizes a checkpoint's config may reach."""
PAPER_PARAMETERS = {"sdm": 652_242_690, "spade": 92_148_289}
"""Parameters of the paper preset's SDM UNet and SPADE generator (tests check them against the built models)."""
_DEPTH_FIELDS = {
    "sdm": ("image_size", "num_res_blocks", "diffusion_steps"),
    "spade": ("image_size", "n_layers_d", "num_d"),
}
_WIDTH_FIELDS = {
    "sdm": ("model_channels", "channel_mult", "label_embed_channels", "num_classes", "in_channels"),
    "spade": ("ngf", "label_hidden", "num_classes", "z_dim", "image_size"),
}


@dataclass(frozen=True)
class SizeProblem:
    """Why a config is too large: the field(s) at fault and a one-line explanation."""

    field: str
    message: str


def _paper(kind: Literal["sdm", "spade"]) -> SDMConfig | SPADEConfig:
    return PRESETS["paper"].sdm if kind == "sdm" else PRESETS["paper"].spade


def _largest(value: int | tuple[int, ...]) -> int:
    return max(value) if isinstance(value, tuple) else int(value)


def spade_parameters(cfg: SPADEConfig) -> int:
    """Parameters of :class:`lungforge.models.spade.SPADEGenerator` for `cfg`, counted without building it."""
    ups = 6 if cfg.num_upsampling_layers == "more" else 5
    start = max(cfg.image_size // 2**ups, 1)
    nf, k, h = cfg.ngf, cfg.num_classes, cfg.label_hidden

    def conv(cin: int, cout: int, kernel: int, bias: bool = True) -> int:
        return cin * cout * kernel * kernel + (cout if bias else 0)

    def spade(channels: int) -> int:
        return conv(k, h, 3) + 2 * conv(h, channels, 3)

    def block(fin: int, fout: int) -> int:
        mid = min(fin, fout)
        total = conv(fin, mid, 3) + conv(mid, fout, 3) + spade(fin) + spade(mid)
        return total + (conv(fin, fout, 1, bias=False) + spade(fin) if fin != fout else 0)

    head = cfg.z_dim * 16 * nf * start**2 + 16 * nf * start**2 if cfg.z_dim > 0 else conv(k, 16 * nf, 3)
    body = 3 * block(16 * nf, 16 * nf) + sum(block(a * nf, b * nf) for a, b in ((16, 8), (8, 4), (4, 2), (2, 1)))
    return head + body + conv(nf, 1, 3)


def check_dimensions(kind: Literal["sdm", "spade"], cfg: SDMConfig | SPADEConfig) -> SizeProblem | None:
    """The first size of `cfg` that the parameter count does not show and that exceeds its bound."""
    paper = _paper(kind)
    for name in _DEPTH_FIELDS[kind]:
        value, limit = getattr(cfg, name), SCALE * getattr(paper, name)
        if value > limit:
            return SizeProblem(name, f"model_config.{name} = {value} exceeds {limit} ({SCALE}x the paper preset's {getattr(paper, name)})")
    levels = len(PRESETS["paper"].sdm.channel_mult)
    if isinstance(cfg, SDMConfig) and len(cfg.channel_mult) > levels + 1:
        return SizeProblem(
            "channel_mult",
            f"model_config.channel_mult has {len(cfg.channel_mult)} levels, more than {levels + 1} (the paper preset's {levels}, plus one)",
        )
    return None


def check_parameters(kind: Literal["sdm", "spade"], cfg: SDMConfig | SPADEConfig, parameters: int) -> SizeProblem | None:
    """A problem when `parameters` (the count `cfg` builds) exceeds :data:`SCALE` times the paper preset's."""
    limit = SCALE * PAPER_PARAMETERS[kind]
    if parameters <= limit:
        return None
    paper = _paper(kind)
    larger = [name for name in _WIDTH_FIELDS[kind] if _largest(getattr(cfg, name)) > _largest(getattr(paper, name))]
    named = ", ".join(f"model_config.{name} = {getattr(cfg, name)!r} (paper {getattr(paper, name)!r})" for name in larger) or "model_config"
    return SizeProblem(
        larger[0] if larger else "model_config",
        f"{named} gives {parameters / 1e6:,.1f} M parameters, more than {SCALE}x the paper preset's {PAPER_PARAMETERS[kind] / 1e6:,.1f} M",
    )
