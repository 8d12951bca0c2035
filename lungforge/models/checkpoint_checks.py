"""Checks of a checkpoint's config and tensors before anything is built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from lungforge.core.errors import CheckpointError, LungforgeError, torch_load_reason
from lungforge.core.labels import labels_attr
from lungforge.models.bounds import check_dimensions, check_parameters, spade_parameters
from lungforge.models.presets import SDMConfig, SPADEConfig, sdm_config_from_dict, spade_config_from_dict

FORMAT = "lungforge.checkpoint/1"
Kind = Literal["sdm", "spade"]
KINDS = ("sdm", "spade")


def validate_meta(weights: Path, meta: dict[str, Any]) -> tuple[Kind, str, SDMConfig | SPADEConfig]:
    """(kind, preset, config) of a checkpoint's parsed `config.json`; CheckpointError naming `weights`
    on an unknown format or kind, another label set, a bad model_config or a config over the bounds."""
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {weights} has format {meta.get('format')!r}, expected {FORMAT!r}")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"checkpoint {weights} has kind {kind!r}, expected one of {KINDS}")
    if meta.get("labels") != labels_attr():
        raise CheckpointError(f"checkpoint {weights} was trained on labels {meta.get('labels')}, this lungforge uses {labels_attr()}")
    preset = meta.get("preset")
    if not isinstance(preset, str):
        raise CheckpointError(f"checkpoint {weights} has preset {preset!r}, expected a name")
    model_config = meta.get("model_config")
    if not isinstance(model_config, dict):
        raise CheckpointError(f"checkpoint {weights} has no model_config table")
    try:
        config = sdm_config_from_dict(model_config) if kind == "sdm" else spade_config_from_dict(model_config)
    except LungforgeError as exc:
        raise CheckpointError(f"checkpoint {weights}: {exc}") from None
    if isinstance(config, SDMConfig):
        _validate_mode(weights, meta, config)
    check_config_size(weights, kind, config)
    return kind, preset, config


def _validate_mode(weights: Path, meta: dict[str, Any], config: SDMConfig) -> None:
    """An SDM's `mode` must match its config (absent: a whole-slice checkpoint of an older lungforge)."""
    mode = meta.get("mode", "slice")
    expected = "inpaint" if config.inpaint else "slice"
    if mode != expected:
        raise CheckpointError(f"checkpoint {weights} has mode {mode!r}, but its model_config builds a {expected!r} SDM")
    if config.inpaint:
        margin = meta.get("edit_margin_px")
        if not isinstance(margin, int) or isinstance(margin, bool) or margin < 0:
            raise CheckpointError(f"checkpoint {weights} has edit_margin_px {margin!r}, expected a whole number >= 0")
        if meta.get("window") != config.image_size:
            raise CheckpointError(f"checkpoint {weights} has window {meta.get('window')!r}, expected its image_size {config.image_size}")


def check_config_size(weights: Path, kind: Kind, config: SDMConfig | SPADEConfig) -> None:
    """CheckpointError naming `weights` and the field when `config` exceeds the bounds of
    :mod:`lungforge.models.bounds`; nothing is allocated (SPADE is counted from the config, the
    SDM UNet on the meta device once its depth is bounded)."""
    problem = check_dimensions(kind, config)
    if problem is None:
        if isinstance(config, SPADEConfig):
            parameters = spade_parameters(config)
        else:
            with torch.device("meta"):
                parameters = sum(p.numel() for p in new_model(config).parameters())
        problem = check_parameters(kind, config, parameters)
    if problem is not None:
        raise CheckpointError(f"checkpoint {weights}: {problem.message}; refusing to build it")


def new_model(config: SDMConfig | SPADEConfig) -> torch.nn.Module:
    """An untrained SDM UNet or SPADE generator of `config`, on the current default device."""
    if isinstance(config, SDMConfig):
        from lungforge.models.sdm_unet import SDMUNet

        return SDMUNet(config)
    from lungforge.models.spade import SPADEGenerator

    return SPADEGenerator(config)


def check_shapes(weights: Path, kind: Kind, config: SDMConfig | SPADEConfig, state_dict: dict[str, Tensor]) -> None:
    """CheckpointError naming `weights` unless `state_dict` has exactly the names and shapes of a model of `config`."""
    # spectral_norm's power iteration is slow on the meta device (~1 s per layer through op
    # decompositions); building SPADE on the CPU is faster, and SDM has no such layers.
    try:
        with torch.device("meta" if kind == "sdm" else "cpu"), torch.no_grad():
            reference = new_model(config).state_dict()
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {weights}: its config does not build a {kind} model ({torch_load_reason(exc)})") from None
    missing = sorted(set(reference) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(reference))
    wrong = sorted(k for k in set(reference) & set(state_dict) if reference[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            details.append(f"{len(wrong)} of wrong shape (e.g. {k}: {tuple(state_dict[k].shape)}, expected {tuple(reference[k].shape)})")
        raise CheckpointError(f"checkpoint {weights} does not fit a {kind} model of its config: {'; '.join(details)}")
