"""Tests of checkpoint save/load/validation and the resume training state."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lungforge.core.errors import CheckpointError
from lungforge.core.fileio import sha256_file
from lungforge.models.checkpoint import FORMAT, LoadedCheckpoint, build_model, load_checkpoint, save_checkpoint
from lungforge.models.presets import SPADEConfig, config_to_dict, get_preset
from lungforge.models.spade import SPADEGenerator
from lungforge.training.state import capture_rng_state, load_training_state, restore_rng_state, save_training_state

CFG = SPADEConfig(image_size=32, ngf=2, ndf=2)


@pytest.fixture()
def spade_ckpt(tmp_path: Path) -> tuple[Path, SPADEGenerator]:
    torch.manual_seed(0)
    model = SPADEGenerator(CFG)
    run = save_checkpoint(
        tmp_path / "run",
        kind="spade",
        preset="custom",
        model_config=CFG,
        state_dict=model.state_dict(),
        step=7,
        store_fingerprint="abc123",
        extra={"note": "test"},
    )
    return run, model


def test_save_writes_config_and_embedded_metadata(spade_ckpt: tuple[Path, SPADEGenerator]) -> None:
    run, _ = spade_ckpt
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((run / "config.json").read_text())
    assert meta["format"] == FORMAT and meta["kind"] == "spade" and meta["step"] == 7
    assert meta["model_config"] == config_to_dict(CFG) and meta["image_size"] == 32
    assert meta["labels"]["5"] == "nodule" and meta["store_fingerprint"] == "abc123"
    assert meta["extra"] == {"note": "test"}
    from safetensors import safe_open

    with safe_open(str(run / "model.safetensors"), framework="pt") as fh:
        assert json.loads(fh.metadata()["lungforge_config"]) == meta


def test_load_round_trip_dir_and_single_file(spade_ckpt: tuple[Path, SPADEGenerator], tmp_path: Path) -> None:
    run, model = spade_ckpt
    ckpt = load_checkpoint(run, expect_kind="spade", expect_preset="custom")
    assert isinstance(ckpt, LoadedCheckpoint)
    assert ckpt.config == CFG and ckpt.step == 7 and ckpt.kind == "spade"
    assert ckpt.sha256 == hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    rebuilt = build_model(ckpt)
    assert not rebuilt.training
    onehot = torch.zeros(1, 6, 32, 32)
    onehot[:, 1] = 1
    assert torch.equal(rebuilt(onehot), model.eval()(onehot))

    single = tmp_path / "alone" / "g.safetensors"
    single.parent.mkdir()
    single.write_bytes((run / "model.safetensors").read_bytes())
    assert load_checkpoint(single).config == CFG


def test_kind_and_preset_mismatch(spade_ckpt: tuple[Path, SPADEGenerator]) -> None:
    run, _ = spade_ckpt
    with pytest.raises(CheckpointError, match="holds a 'spade' model, expected 'sdm'"):
        load_checkpoint(run, expect_kind="sdm")
    with pytest.raises(CheckpointError, match="preset 'custom', expected 'tiny'"):
        load_checkpoint(run, expect_preset="tiny")


def test_missing_files(tmp_path: Path, spade_ckpt: tuple[Path, SPADEGenerator]) -> None:
    with pytest.raises(CheckpointError, match="nothing does not exist"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no weights file model.safetensors"):
        load_checkpoint(tmp_path / "empty")
    torch.save({}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="neither a directory nor a .safetensors"):
        load_checkpoint(tmp_path / "x.pt")


def test_truncated_and_corrupt_weights(spade_ckpt: tuple[Path, SPADEGenerator]) -> None:
    run, _ = spade_ckpt
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(run)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(run)


def test_config_json_disagreeing_with_embedded(spade_ckpt: tuple[Path, SPADEGenerator]) -> None:
    run, _ = spade_ckpt
    meta = json.loads((run / "config.json").read_text())
    meta["step"] = 99
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"disagrees.*\['step'\]"):
        load_checkpoint(run)


def test_label_set_and_format_mismatch(tmp_path: Path) -> None:
    from lungforge.models.checkpoint import checkpoint_meta, write_safetensors

    model = SPADEGenerator(CFG)
    meta = checkpoint_meta(kind="spade", preset="x", model_config=CFG, step=0, store_fingerprint=None)
    write_safetensors(tmp_path / "labels.safetensors", model.state_dict(), {**meta, "labels": {"0": "background"}})
    with pytest.raises(CheckpointError, match="trained on labels"):
        load_checkpoint(tmp_path / "labels.safetensors")
    write_safetensors(tmp_path / "fmt.safetensors", model.state_dict(), {**meta, "format": "other/2"})
    with pytest.raises(CheckpointError, match="format 'other/2'"):
        load_checkpoint(tmp_path / "fmt.safetensors")
    bad_cfg = {**meta, "model_config": {**meta["model_config"], "bogus": 1}}
    write_safetensors(tmp_path / "cfg.safetensors", model.state_dict(), bad_cfg)
    with pytest.raises(CheckpointError, match="unknown SPADEConfig keys"):
        load_checkpoint(tmp_path / "cfg.safetensors")


def test_shapes_not_fitting_config(tmp_path: Path) -> None:
    wider = SPADEGenerator(SPADEConfig(image_size=32, ngf=4, ndf=2))
    save_checkpoint(
        tmp_path / "run",
        kind="spade",
        preset="custom",
        model_config=CFG,
        state_dict=wider.state_dict(),
        step=0,
        store_fingerprint=None,
    )
    with pytest.raises(CheckpointError, match="does not fit a spade model.*wrong shape"):
        load_checkpoint(tmp_path / "run")
    state = SPADEGenerator(CFG).state_dict()
    state.pop("conv_img.bias")
    save_checkpoint(tmp_path / "run2", kind="spade", preset="custom", model_config=CFG, state_dict=state, step=0, store_fingerprint=None)
    with pytest.raises(CheckpointError, match="1 missing \\(e.g. conv_img.bias\\)"):
        load_checkpoint(tmp_path / "run2")


def test_save_rejects_config_of_other_kind(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="needs a SDMConfig"):
        save_checkpoint(
            tmp_path, kind="sdm", preset="tiny", model_config=get_preset("tiny").spade, state_dict={}, step=0, store_fingerprint=None
        )


def test_save_overwrites_atomically_without_leftovers(spade_ckpt: tuple[Path, SPADEGenerator]) -> None:
    run, model = spade_ckpt
    (run / "resume.pt").write_bytes(b"keep")
    save_checkpoint(run, kind="spade", preset="custom", model_config=CFG, state_dict=model.state_dict(), step=8, store_fingerprint=None)
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.safetensors", "resume.pt"]
    assert load_checkpoint(run).step == 8


def test_training_state_round_trip_with_rng(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    rng = np.random.default_rng(5)
    state = {
        "step": 12,
        "optimizer": opt.state_dict(),
        "ema": {k: v.clone() for k, v in model.state_dict().items()},
        "rng": capture_rng_state(),
        "data_rng": rng.bit_generator.state,
        "sampler": {"epoch": 1, "position": 40},
    }
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], rng.random(3))
    path = tmp_path / "run" / "resume.pt"
    save_training_state(path, state)
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)

    loaded = load_training_state(path)
    restore_rng_state(loaded["rng"])
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = loaded["data_rng"]
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]
    assert np.array_equal(rng2.random(3), expected[3])
    assert loaded["step"] == 12 and loaded["sampler"] == {"epoch": 1, "position": 40}
    opt2 = torch.optim.Adam(model.parameters())
    opt2.load_state_dict(loaded["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_training_state_rejects_non_plain_values_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\['x'\] is a ndarray"):
        save_training_state(tmp_path / "resume.pt", {"x": np.zeros(2)})
    assert not (tmp_path / "resume.pt").exists() and not list(tmp_path.iterdir())
    with pytest.raises(CheckpointError, match="--resume given but no training state at"):
        load_training_state(tmp_path / "resume.pt")
    (tmp_path / "resume.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_training_state(tmp_path / "resume.pt")


def test_sha256_file_streams(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10_000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, chunk_bytes=1000) == hashlib.sha256(data).hexdigest()
