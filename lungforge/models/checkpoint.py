"""Checkpoints: `model.safetensors` + `config.json` (weights and what built them).

A checkpoint directory holds `model.safetensors` (for SDM the EMA weights) whose metadata embeds
the same JSON as `config.json`, so a single `.safetensors` file is self-describing. Training
state lives beside it in `resume.pt` (:mod:`lungforge.training.state`); the checks run before a
model is built are in :mod:`lungforge.models.checkpoint_checks`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import Tensor

from lungforge.core.errors import CheckpointError
from lungforge.core.fileio import Writer, replace_together, sha256_file
from lungforge.core.labels import labels_attr
from lungforge.models.checkpoint_checks import FORMAT, KINDS, Kind, check_shapes, new_model, validate_meta
from lungforge.models.presets import SDMConfig, SPADEConfig, config_to_dict

MODEL_FILE = "model.safetensors"
DEFAULT_EDIT_MARGIN_PX = 3
"""How far (pixels, at the training store's native resolution) an inpainting edit region extends past the nodule."""
CONFIG_FILE = "config.json"
RESUME_FILE = "resume.pt"
METADATA_KEY = "lungforge_config"
WRITE_ERRORS: tuple[type[BaseException], ...] = (OSError, RuntimeError, SafetensorError)
"""What writing weights or training state raises on a full disk: OSError (ENOSPC, EFBIG),
safetensors' SafetensorError, torch.save's RuntimeError (inline_container)."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A validated checkpoint: weights, the config that built them and its provenance."""

    kind: Kind
    preset: str
    config: SDMConfig | SPADEConfig
    state_dict: dict[str, Tensor]
    step: int
    meta: dict[str, Any]
    sha256: str
    path: Path


@dataclass(frozen=True)
class TrainingRecord:
    """What a generator's weights saw: the series uids of its training patients and the number
    of nodule slices among its training slices and of distinct nodules on them (None: not
    counted); `bench` keeps those patients out of test folds and reports the nodules beside K."""

    series: tuple[str, ...]
    nodule_slices: int
    nodules: int | None = None


def checkpoint_meta(
    *,
    kind: Kind,
    preset: str,
    model_config: SDMConfig | SPADEConfig,
    step: int,
    store_fingerprint: str | None,
    extra: dict[str, Any] | None = None,
    edit_margin_px: int = DEFAULT_EDIT_MARGIN_PX,
    seen: TrainingRecord | None = None,
) -> dict[str, Any]:
    """The `config.json` payload describing weights of `model_config`.

    An SDM records its `mode`: "slice" (whole slices) or "inpaint" (windows of `image_size`
    pixels, `window`, whose edit region is a nodule footprint grown by `edit_margin_px` pixels).
    `seen` records the patients (series uids) and nodule slices the weights were trained on.
    """
    from lungforge.core.version import __version__

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    expected_type = SDMConfig if kind == "sdm" else SPADEConfig
    if not isinstance(model_config, expected_type):
        raise TypeError(f"kind {kind!r} needs a {expected_type.__name__}, got {type(model_config).__name__}")
    meta = {
        "format": FORMAT,
        "kind": kind,
        "preset": preset,
        "model_config": config_to_dict(model_config),
        "labels": labels_attr(),
        "image_size": model_config.image_size,
        "step": int(step),
        "store_fingerprint": store_fingerprint,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lungforge_version": __version__,
    }
    if isinstance(model_config, SDMConfig):
        meta["mode"] = "inpaint" if model_config.inpaint else "slice"
        if model_config.inpaint:
            meta["window"] = model_config.image_size
            meta["edit_margin_px"] = int(edit_margin_px)
    if seen is not None:
        meta["train_series"] = list(seen.series)
        meta["train_nodule_slices"] = int(seen.nodule_slices)
        if seen.nodules is not None:
            meta["train_nodules"] = int(seen.nodules)
    if extra:
        meta["extra"] = extra
    return meta


def save_checkpoint(
    dir: Path,
    *,
    kind: Kind,
    preset: str,
    model_config: SDMConfig | SPADEConfig,
    state_dict: dict[str, Tensor],
    step: int,
    store_fingerprint: str | None,
    extra: dict[str, Any] | None = None,
    edit_margin_px: int = DEFAULT_EDIT_MARGIN_PX,
    seen: TrainingRecord | None = None,
) -> Path:
    """Write `dir/model.safetensors` and `dir/config.json` (both to temp files, then renamed:
    a failed write, e.g. a full disk, leaves the previous pair intact and raises OutputError).

    Returns `dir`. Other files in `dir` (e.g. `resume.pt`, logs) are left alone.
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    meta = checkpoint_meta(
        kind=kind,
        preset=preset,
        model_config=model_config,
        step=step,
        store_fingerprint=store_fingerprint,
        extra=extra,
        edit_margin_px=edit_margin_px,
        seen=seen,
    )
    replace_together(checkpoint_writers(dir, state_dict, meta), WRITE_ERRORS)
    return dir


def checkpoint_writers(dir: Path, state_dict: dict[str, Tensor], meta: dict[str, Any]) -> dict[Path, Writer]:
    """The writers of `dir/model.safetensors` and `dir/config.json` for weights `state_dict` and
    their `meta` (:func:`checkpoint_meta`), for :func:`lungforge.core.fileio.replace_together`."""
    config = (json.dumps(meta, indent=2) + "\n").encode()
    return {dir / MODEL_FILE: safetensors_writer(state_dict, meta), dir / CONFIG_FILE: lambda tmp: tmp.write_bytes(config)}


def write_safetensors(path: Path, state_dict: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Atomically write a self-describing `.safetensors` file: tensors + `meta` JSON in its metadata."""
    replace_together({Path(path): safetensors_writer(state_dict, meta)}, WRITE_ERRORS)


def safetensors_writer(state_dict: dict[str, Tensor], meta: dict[str, Any]) -> Writer:
    """A writer of `state_dict` as a `.safetensors` file whose metadata embeds `meta` as JSON."""
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state_dict.items():
        tensor = tensor.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        # safetensors refuses tensors sharing memory; give such aliases their own copy
        tensors[name] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    metadata = {"format": "pt", METADATA_KEY: json.dumps(meta, sort_keys=True)}
    return lambda tmp: save_file(tensors, str(tmp), metadata=metadata)


def read_checkpoint_meta(path: Path) -> tuple[Path, dict[str, Any]]:
    """Locate the weights file of `path` (dir or `.safetensors`) and return it with its parsed config.

    The config embedded in the safetensors metadata wins; a `config.json` beside it must agree.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        weights = path / MODEL_FILE
    elif path.suffix == ".safetensors":
        weights = path
    else:
        raise CheckpointError(f"checkpoint {path} is neither a directory nor a .safetensors file")
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {path} has no weights file {weights.name}")
    embedded = _embedded_meta(weights)
    config_json = weights.parent / CONFIG_FILE
    beside = _read_json(config_json) if config_json.is_file() else None
    if embedded is not None and beside is not None and embedded != beside:
        keys = sorted(k for k in set(embedded) | set(beside) if embedded.get(k) != beside.get(k))
        raise CheckpointError(f"{config_json} disagrees with the config embedded in {weights} (keys {keys})")
    meta = embedded if embedded is not None else beside
    if meta is None:
        raise CheckpointError(
            f"checkpoint {weights} carries no config: expected {CONFIG_FILE} beside it or a "
            f"'{METADATA_KEY}' entry in its safetensors metadata"
        )
    return weights, meta


def checkpoint_config(path: Path) -> tuple[Path, Kind, str, SDMConfig | SPADEConfig]:
    """(weights file, kind, preset, config) of a checkpoint, validated and size-checked like
    :func:`load_checkpoint`, without reading its tensors."""
    weights, meta = read_checkpoint_meta(path)
    return (weights, *validate_meta(weights, meta))


def load_checkpoint(path: Path, *, expect_kind: Kind | None = None, expect_preset: str | None = None) -> LoadedCheckpoint:
    """Load and validate a checkpoint directory or a self-describing `.safetensors` file.

    Raises CheckpointError on missing or corrupt files, an unknown format, a different label set,
    a config larger than the bounds of :mod:`lungforge.models.bounds` (checked before anything is
    built), a kind/preset other than the expected one, or tensors that do not fit a model of the
    config.
    """
    weights, meta = read_checkpoint_meta(path)
    kind, preset, config = validate_meta(weights, meta)
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"checkpoint {weights} holds a {kind!r} model, expected {expect_kind!r}")
    if expect_preset is not None and preset != expect_preset:
        raise CheckpointError(f"checkpoint {weights} was trained with preset {preset!r}, expected {expect_preset!r}")
    from safetensors.torch import load_file

    try:
        state_dict = load_file(weights)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {weights} is corrupt or truncated: {exc}") from None
    check_shapes(weights, kind, config, state_dict)
    return LoadedCheckpoint(
        kind=kind,
        preset=preset,
        config=config,
        state_dict=state_dict,
        step=int(meta.get("step", 0)),
        meta=meta,
        sha256=sha256_file(weights),
        path=weights,
    )


def build_model(ckpt: LoadedCheckpoint, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Build the SDM UNet or SPADE generator of `ckpt`, load its weights strictly, return it in eval mode."""
    with torch.device(device):
        model = new_model(ckpt.config)
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval()


def _embedded_meta(weights: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"checkpoint {weights} is corrupt or truncated: {exc}") from None
    text = metadata.get(METADATA_KEY)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {weights} has an unreadable embedded config: {exc}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, expected a JSON object")
    return data
