"""Checkpoints: `model.safetensors` + `config.json` (weights and what built them), and `resume.pt`.

A checkpoint directory holds `model.safetensors` (for SDM the EMA weights) whose metadata embeds
the same JSON as `config.json`, so a single `.safetensors` file is self-describing. Training
state (optimisers, EMA, step, RNG states, sampler position) lives in a separate `resume.pt`
holding tensors and plain Python types only, so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from lungforge.errors import CheckpointError, LungforgeError
from lungforge.labels import labels_attr
from lungforge.models.bounds import check_dimensions, check_parameters, spade_parameters
from lungforge.models.presets import (
    SDMConfig,
    SPADEConfig,
    config_to_dict,
    sdm_config_from_dict,
    spade_config_from_dict,
)

FORMAT = "lungforge.checkpoint/1"
MODEL_FILE = "model.safetensors"
DEFAULT_EDIT_MARGIN_PX = 3
"""How far (pixels, at the training store's native resolution) an inpainting edit region extends past the nodule."""
CONFIG_FILE = "config.json"
RESUME_FILE = "resume.pt"
METADATA_KEY = "lungforge_config"

Kind = Literal["sdm", "spade"]
_KINDS = ("sdm", "spade")


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
    of nodule slices among its training slices (`bench` keeps those patients out of test folds)."""

    series: tuple[str, ...]
    nodule_slices: int


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in `chunk_bytes` pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_meta(
    *,
    kind: Kind,
    preset: str,
    model_config: SDMConfig | SPADEConfig,
    step: int,
    store_fingerprint: str | None,
    extra: dict[str, Any] | None = None,
    edit_margin_px: int = DEFAULT_EDIT_MARGIN_PX,
    seen: "TrainingRecord | None" = None,
) -> dict[str, Any]:
    """The `config.json` payload describing weights of `model_config`.

    An SDM records its `mode`: "slice" (whole slices) or "inpaint" (windows of `image_size`
    pixels, `window`, whose edit region is a nodule footprint grown by `edit_margin_px` pixels).
    `seen` records the patients (series uids) and nodule slices the weights were trained on.
    """
    from lungforge import __version__

    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
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
    if kind == "sdm":
        meta["mode"] = "inpaint" if model_config.inpaint else "slice"
        if model_config.inpaint:
            meta["window"] = model_config.image_size
            meta["edit_margin_px"] = int(edit_margin_px)
    if seen is not None:
        meta["train_series"] = list(seen.series)
        meta["train_nodule_slices"] = int(seen.nodule_slices)
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
    seen: "TrainingRecord | None" = None,
) -> Path:
    """Write `dir/model.safetensors` and `dir/config.json` (each via a temp file and `os.replace`).

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
    write_safetensors(dir / MODEL_FILE, state_dict, meta)
    atomic_write_bytes(dir / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return dir


def write_safetensors(path: Path, state_dict: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Atomically write a self-describing `.safetensors` file: tensors + `meta` JSON in its metadata."""
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
    with _temp_beside(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)


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
    if embedded is None and beside is None:
        raise CheckpointError(
            f"checkpoint {weights} carries no config: expected {CONFIG_FILE} beside it or a "
            f"'{METADATA_KEY}' entry in its safetensors metadata"
        )
    if embedded is not None and beside is not None and embedded != beside:
        keys = sorted(k for k in set(embedded) | set(beside) if embedded.get(k) != beside.get(k))
        raise CheckpointError(f"{config_json} disagrees with the config embedded in {weights} (keys {keys})")
    return weights, embedded if embedded is not None else beside


def checkpoint_config(path: Path) -> tuple[Path, Kind, str, SDMConfig | SPADEConfig]:
    """(weights file, kind, preset, config) of a checkpoint, validated and size-checked like
    :func:`load_checkpoint`, without reading its tensors."""
    weights, meta = read_checkpoint_meta(path)
    return (weights, *_validate_meta(weights, meta))


def load_checkpoint(path: Path, *, expect_kind: Kind | None = None, expect_preset: str | None = None) -> LoadedCheckpoint:
    """Load and validate a checkpoint directory or a self-describing `.safetensors` file.

    Raises CheckpointError on missing or corrupt files, an unknown format, a different label set,
    a config larger than the bounds of :mod:`lungforge.models.bounds` (checked before anything is
    built), a kind/preset other than the expected one, or tensors that do not fit a model of the
    config.
    """
    weights, meta = read_checkpoint_meta(path)
    kind, preset, config = _validate_meta(weights, meta)
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"checkpoint {weights} holds a {kind!r} model, expected {expect_kind!r}")
    if expect_preset is not None and preset != expect_preset:
        raise CheckpointError(f"checkpoint {weights} was trained with preset {preset!r}, expected {expect_preset!r}")
    from safetensors.torch import load_file

    try:
        state_dict = load_file(weights)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {weights} is corrupt or truncated: {exc}") from None
    _check_shapes(weights, kind, config, state_dict)
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
        model = _new_model(ckpt.kind, ckpt.config)
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval()


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically `torch.save` `state` (tensors, numbers, strings, None, lists/tuples/dicts of them)."""
    _check_plain(state, "state")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temp_beside(path) as tmp:
        torch.save(state, tmp)
        os.replace(tmp, path)


def load_training_state(path: Path) -> dict[str, Any]:
    """Load a `resume.pt` written by `save_training_state` (with `weights_only=True`, on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--resume given but no training state at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"training state {path} cannot be read: {torch_load_reason(exc)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"training state {path} holds a {type(state).__name__}, expected a dict")
    return state


def torch_load_reason(exc: BaseException) -> str:
    """One line saying why `torch.load(..., weights_only=True)` refused a file.

    torch's message for a pickle of Python objects spans several lines of advice (with terminal
    escapes); its gist is the unpickler's line naming the refused global.
    """
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("WeightsUnpickler error:"):
            gist = line.removeprefix("WeightsUnpickler error:").strip().split(". ")[0].rstrip(".")
            return f"it holds pickled Python objects, which lungforge never executes ({gist})"
    return lines[0] if lines else type(exc).__name__


def capture_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and every CUDA device), numpy's global RNG and `random`, as plain types."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what `capture_rng_state` captured (CUDA states only where devices are present)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _validate_meta(weights: Path, meta: dict[str, Any]) -> tuple[Kind, str, SDMConfig | SPADEConfig]:
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {weights} has format {meta.get('format')!r}, expected {FORMAT!r}")
    kind = meta.get("kind")
    if kind not in _KINDS:
        raise CheckpointError(f"checkpoint {weights} has kind {kind!r}, expected one of {_KINDS}")
    if meta.get("labels") != labels_attr():
        raise CheckpointError(
            f"checkpoint {weights} was trained on labels {meta.get('labels')}, this lungforge uses {labels_attr()}"
        )
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
    if kind == "sdm":
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
        if kind == "spade":
            parameters = spade_parameters(config)  # type: ignore[arg-type]
        else:
            with torch.device("meta"):
                parameters = sum(p.numel() for p in _new_model(kind, config).parameters())
        problem = check_parameters(kind, config, parameters)
    if problem is not None:
        raise CheckpointError(f"checkpoint {weights}: {problem.message}; refusing to build it")


def _new_model(kind: Kind, config: SDMConfig | SPADEConfig) -> torch.nn.Module:
    if kind == "sdm":
        from lungforge.models.sdm_unet import SDMUNet

        return SDMUNet(config)
    from lungforge.models.spade import SPADEGenerator

    return SPADEGenerator(config)


def _check_shapes(weights: Path, kind: Kind, config: SDMConfig | SPADEConfig, state_dict: dict[str, Tensor]) -> None:
    # spectral_norm's power iteration is slow on the meta device (~1 s per layer through op
    # decompositions); building SPADE on the CPU is faster, and SDM has no such layers.
    try:
        with torch.device("meta" if kind == "sdm" else "cpu"), torch.no_grad():
            reference = _new_model(kind, config).state_dict()
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
            details.append(
                f"{len(wrong)} of wrong shape (e.g. {k}: {tuple(state_dict[k].shape)}, expected {tuple(reference[k].shape)})"
            )
        raise CheckpointError(f"checkpoint {weights} does not fit a {kind} model of its config: {'; '.join(details)}")


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


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, (Tensor, int, float, str, bool, bytes, type(None))):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; use str or int keys")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; training state may hold only tensors, numbers, strings, None "
        "and lists/tuples/dicts of them (so it loads with weights_only=True)"
    )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file beside it and `os.replace`."""
    with _temp_beside(path) as tmp:
        tmp.write_bytes(data)
        os.replace(tmp, path)


@contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A temporary file in the directory of `path` (so `os.replace` is atomic), removed unless renamed."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o644)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
