from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lungforge.core.errors import CheckpointError, InputError
from lungforge.core.labels import BODY
from lungforge.models.checkpoint import build_model, load_checkpoint
from lungforge.training.loop_sdm import train_sdm
from lungforge.training.options import TrainOptions
from lungforge.training.state import load_training_state


def _options(store, out, preset, **kw) -> TrainOptions:
    base = dict(steps=4, batch_size=2, checkpoint_every=2, grid_samples=2, sample_steps=2)
    return TrainOptions(data=store, out=out, preset=preset, **{**base, **kw})


def test_writes_checkpoint_state_log_and_grids(prepared_store, micro_preset, tmp_path):
    result = train_sdm(_options(prepared_store, tmp_path / "run", micro_preset, steps=3))
    run = tmp_path / "run"
    assert result.steps == 3 and len(result.losses) == 3 and np.isfinite(result.final_loss)
    ckpt = load_checkpoint(run, expect_kind="sdm")
    assert ckpt.step == 3 and ckpt.preset == "micro"
    assert ckpt.meta["extra"]["train"]["ema_decay"] == 0.9999
    state = load_training_state(run / "resume.pt")
    ema = state["trainer"]["ema"]["shadow"]
    assert all(torch.equal(ckpt.state_dict[k], ema[k]) for k in ckpt.state_dict)  # SDM ships EMA weights
    assert not all(torch.equal(ckpt.state_dict[k], state["trainer"]["model"][k]) for k in ckpt.state_dict)
    assert state["step"] == 3 and state["consumed"] == 6
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert all(line["img_per_s"] > 0 and np.isfinite(line["loss"]) for line in lines)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000002.png", "step_0000003.png"]
    model = build_model(ckpt)
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in ckpt.state_dict.values() if v.is_floating_point()) - sum(
        b.numel() for b in model.buffers()
    )


def test_resume_is_bit_for_bit(prepared_store, micro_preset, tmp_path):
    full = train_sdm(_options(prepared_store, tmp_path / "full", micro_preset))
    half = train_sdm(_options(prepared_store, tmp_path / "half", micro_preset, steps=2))
    rest = train_sdm(_options(prepared_store, tmp_path / "half", micro_preset, resume=True))
    assert rest.start_step == 2 and rest.steps == 4
    assert half.losses + rest.losses == full.losses
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "half" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = load_training_state(tmp_path / "full" / "resume.pt"), load_training_state(tmp_path / "half" / "resume.pt")
    assert all(torch.equal(sa["trainer"]["model"][k], sb["trainer"]["model"][k]) for k in sa["trainer"]["model"])
    lines = (tmp_path / "half" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]


def test_resume_errors(prepared_store, micro_preset, tmp_path):
    with pytest.raises(CheckpointError, match="no training state"):
        train_sdm(_options(prepared_store, tmp_path / "none", micro_preset, resume=True))
    train_sdm(_options(prepared_store, tmp_path / "run", micro_preset, steps=1))
    with pytest.raises(CheckpointError, match="trained with preset 'micro', but --preset is 'tiny'"):
        train_sdm(_options(prepared_store, tmp_path / "run", "tiny", resume=True))
    with pytest.raises(InputError, match="already holds a training run"):
        train_sdm(_options(prepared_store, tmp_path / "run", micro_preset, steps=1))


def test_label_ids_outside_range_fail_clearly(store_factory, micro_preset, tmp_path):
    labels = np.full((2, 16, 16), BODY, np.uint8)
    labels[1, 3, 3] = 7
    path = store_factory(labels, split=np.zeros(2))
    with pytest.raises(InputError, match="ids \\[7\\], expected ids 0..5"):
        train_sdm(_options(path, tmp_path / "run", micro_preset, batch_size=2, flip=False))


def test_fp16_on_cpu_is_refused(prepared_store, micro_preset, tmp_path):
    with pytest.raises(InputError, match="fp16 needs a CUDA device"):
        train_sdm(_options(prepared_store, tmp_path / "run", micro_preset, device="cpu", precision="fp16"))


def _loss_drop(store, preset, out, steps: int, batch_size: int, window: int) -> tuple[float, float]:
    """Mean loss of the first and of the last `window` steps of a run."""
    options = _options(store, out, preset, steps=steps, batch_size=batch_size, lr=2e-3, checkpoint_every=steps, grid_samples=1)
    losses = np.asarray(train_sdm(options).losses)
    return float(losses[:window].mean()), float(losses[-window:].mean())


def test_short_run_lowers_loss(prepared_store, micro_preset, tmp_path):
    first, last = _loss_drop(prepared_store, micro_preset, tmp_path / "run", steps=40, batch_size=4, window=10)
    assert last < 0.6 * first


@pytest.mark.slow
def test_few_hundred_steps_lower_loss_clearly(prepared_store, micro_preset, tmp_path):
    first, last = _loss_drop(prepared_store, micro_preset, tmp_path / "run", steps=300, batch_size=8, window=20)
    assert last < 0.3 * first
