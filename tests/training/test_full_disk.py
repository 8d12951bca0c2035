"""A full disk while training saves: the previous checkpoint and resume state stay whole, the error
is one line naming the file, and `resume` continues from the last complete save."""

from __future__ import annotations

import errno

import pytest
import safetensors.torch
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from lungforge.core.errors import OutputError
from lungforge.models.checkpoint import load_checkpoint
from lungforge.training import state as training_state
from lungforge.training.loop_sdm import train_sdm
from lungforge.training.options import TrainOptions
from lungforge.training.state import load_training_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAILURES = {
    "enospc": (training_state.torch, "save", OSError(errno.ENOSPC, "No space left on device"), "resume.pt: No space left on device"),
    "inline_container": (
        training_state.torch,
        "save",
        RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0\nmore lines"),
        "resume.pt: \\[enforce fail at inline_container.cc:626\\] . unexpected pos 64 vs 0;",
    ),
    "safetensors": (
        safetensors.torch,
        "save_file",
        SafetensorError("Error while serializing: File too large"),
        "model.safetensors: Error while serializing",
    ),
}


def _options(store, out, preset, **kw) -> TrainOptions:
    base = dict(steps=6, batch_size=2, checkpoint_every=2, grid_samples=2, sample_steps=2)
    return TrainOptions(data=store, out=out, preset=preset, **{**base, **kw})


def _fail_on_call(monkeypatch, module, name: str, error: Exception, nth: int) -> None:
    """Make `module.name` raise `error` on its `nth` call (and write part of the file first, as a full disk does)."""
    real, calls = getattr(module, name), {"n": 0}

    def writer(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            target = args[1] if module is training_state.torch else kwargs.get("filename", args[1])
            with open(target, "wb") as fh:
                fh.write(b"\0" * 64)
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, writer)


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failed_save_keeps_the_last_complete_one_and_resume_continues(prepared_store, micro_preset, tmp_path, monkeypatch, failure):
    module, name, error, message = FAILURES[failure]
    run = tmp_path / "run"
    _fail_on_call(monkeypatch, module, name, error, nth=2)  # the save of step 4
    with pytest.raises(OutputError, match=rf"^cannot write {run}/{message}.* left as they were$"):
        train_sdm(_options(prepared_store, run, micro_preset))
    monkeypatch.undo()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temporary files left
    assert load_checkpoint(run).step == 2 and load_training_state(run / "resume.pt")["step"] == 2
    rest = train_sdm(_options(prepared_store, run, micro_preset, resume=True))
    full = train_sdm(_options(prepared_store, tmp_path / "full", micro_preset))
    assert rest.start_step == 2 and rest.losses == full.losses[2:]
    a, b = load_file(run / "model.safetensors"), load_file(tmp_path / "full" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
