from __future__ import annotations

import numpy as np
import pytest
import torch

from lungforge.core.errors import InputError
from lungforge.models.checkpoint import load_checkpoint
from lungforge.models.spade import MultiscaleDiscriminator, SPADEGenerator
from lungforge.training.loop_spade import train_spade
from lungforge.training.options import TrainOptions
from lungforge.training.state import load_training_state


def test_spade_steps_change_generator_and_discriminator(prepared_store, micro_preset, tmp_path):
    result = train_spade(
        TrainOptions(
            data=prepared_store, out=tmp_path / "run", preset=micro_preset, steps=2, batch_size=2, checkpoint_every=2, grid_samples=2
        )
    )
    assert result.kind == "spade" and len(result.losses) == 2 and np.isfinite(result.losses).all()
    torch.manual_seed(0)  # the run's initialisation seed
    g0, d0 = SPADEGenerator(micro_preset.spade).state_dict(), MultiscaleDiscriminator(micro_preset.spade).state_dict()
    state = load_training_state(tmp_path / "run" / "resume.pt")["trainer"]
    g1, d1 = state["generator"], state["discriminator"]
    changed_g = [k for k in g0 if g0[k].is_floating_point() and not torch.equal(g0[k], g1[k])]
    changed_d = [k for k in d0 if d0[k].is_floating_point() and not torch.equal(d0[k], d1[k])]
    assert any(k.endswith("weight.original") or k.endswith(".weight") for k in changed_g)
    assert any(k.endswith("weight.original") for k in changed_d)
    assert state["opt_g"]["state"] and state["opt_d"]["state"]
    ckpt = load_checkpoint(tmp_path / "run", expect_kind="spade")
    assert ckpt.meta["extra"]["train"]["lr_d"] == 4e-4 and ckpt.meta["extra"]["train"]["betas"] == [0.0, 0.9]
    assert all(torch.equal(ckpt.state_dict[k], g1[k]) for k in ckpt.state_dict)
    assert (tmp_path / "run" / "samples" / "step_0000002.png").is_file()


def test_compile_is_refused_for_spade_before_anything_runs(prepared_store, micro_preset, tmp_path):
    with pytest.raises(InputError, match="--compile applies to SDM training only"):
        train_spade(TrainOptions(data=prepared_store, out=tmp_path / "run", preset=micro_preset, steps=1, device="cpu", compile=True))
    assert not (tmp_path / "run").exists()
