"""Inpainting SDM training: windows at native resolution, context channels, resume and rank streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lungforge.core.errors import CheckpointError, ConfigError, InputError
from lungforge.core.labels import NODULE
from lungforge.models.checkpoint import load_checkpoint
from lungforge.models.inpaint_window import grow
from lungforge.training.data import open_train_split
from lungforge.training.loop_sdm import train_sdm
from lungforge.training.options import TrainOptions, max_edit_margin_px
from lungforge.training.windows import InpaintWindows, WindowBatchSampler

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _options(store, out, preset, **kw) -> TrainOptions:
    base = dict(steps=4, batch_size=2, checkpoint_every=2, grid_samples=2, sample_steps=2, window=16, edit_margin_px=2)
    return TrainOptions(data=store, out=out, preset=preset, **{**base, **kw})


def test_nodule_windows_hold_the_grown_nodule_and_blank_it(prepared_store):
    slices = open_train_split(prepared_store, None)
    windows = InpaintWindows(slices, 16, 2, seed=0)
    assert windows.nodules and windows.nodule_items >= len(windows.nodules)
    assert len(windows) == windows.nodule_items + len(slices)
    for position in range(len(windows.nodules)):
        item = windows[(position, False, position)]
        image, label, context = item["image"], item["label"], item["context"]
        assert image.shape == (1, 16, 16) and label.shape == (16, 16) and context.shape == (2, 16, 16)
        edit = context[1].bool()
        nodule = (label == NODULE).numpy()
        assert nodule.any() and edit.numpy()[nodule].all()
        assert not (edit.numpy() & ~grow(nodule, 2)).any()  # the nodule grown by the 2 px margin, no more
        assert torch.equal(context[0][edit], torch.zeros(int(edit.sum())))
        assert torch.equal(context[0][~edit], image[0][~edit])
        # The window is cut at native resolution: its pixels are the store's own.
        assert float(image.abs().max()) <= 1.0
    jitter = {tuple(windows[(0, False, s)]["context"][1].nonzero()[0].tolist()) for s in range(8)}
    assert len(jitter) > 1  # the nodule sits at another place in its window from draw to draw


def test_lung_windows_edit_a_disk_and_flip_with_the_image(prepared_store):
    windows = InpaintWindows(open_train_split(prepared_store, None), 16, 2, seed=0)
    key = windows.nodule_items + 3
    plain, flipped = windows[(key, False, 11)], windows[(key, True, 11)]
    assert plain["context"][1].sum() > 0
    assert torch.equal(flipped["context"][1], torch.flip(plain["context"][1], dims=(-1,)))
    assert torch.equal(flipped["image"], torch.flip(plain["image"], dims=(-1,)))
    assert torch.equal(windows[(key, False, 11)]["context"], plain["context"])  # same draw, same window


def test_window_stream_is_the_same_for_any_rank_count():
    single = next(iter(WindowBatchSampler(10, 6, seed=1, consumed=4)))
    ranks = [next(iter(WindowBatchSampler(10, 3, seed=1, consumed=4, rank=r, world_size=2))) for r in range(2)]
    assert single == ranks[0] + ranks[1]
    assert [k[2] for k in single] == list(range(4, 10))


def test_window_larger_than_the_slices_is_refused(prepared_store, micro_preset, tmp_path):
    with pytest.raises(InputError, match="window 128 px is larger than its 64×64 px slices"):
        train_sdm(_options(prepared_store, tmp_path / "run", micro_preset, window=128))
    assert not (tmp_path / "run").exists()


def test_margin_without_room_for_a_nodule_is_refused_by_the_options(micro_preset):
    assert max_edit_margin_px(16) == 6
    _options(Path("real.zarr"), Path("run"), micro_preset, edit_margin_px=6)
    for margin in (7, 8, 100):
        with pytest.raises(ConfigError, match=f"edit margin {margin} px leaves no room .* largest margin for --window 16 is 6"):
            _options(Path("real.zarr"), Path("run"), micro_preset, edit_margin_px=margin)


def test_windows_that_keep_no_nodule_are_refused_with_the_count(prepared_store):
    slices = open_train_split(prepared_store, None)
    with pytest.raises(InputError, match=r"only 0 of its 3 train nodules fit a 16 px window with a 8 px edit margin \(at least 2 needed\)"):
        InpaintWindows(slices, 16, 8, seed=0)


def test_inpaint_run_records_its_mode_and_resumes_bit_for_bit(prepared_store, micro_preset, tmp_path):
    full = train_sdm(_options(prepared_store, tmp_path / "full", micro_preset))
    half = train_sdm(_options(prepared_store, tmp_path / "half", micro_preset, steps=2))
    rest = train_sdm(_options(prepared_store, tmp_path / "half", micro_preset, resume=True))
    assert half.losses + rest.losses == full.losses
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "half" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt = load_checkpoint(tmp_path / "full")
    assert ckpt.meta["mode"] == "inpaint" and ckpt.meta["window"] == 16 and ckpt.meta["edit_margin_px"] == 2
    assert ckpt.config.image_size == 16 and ckpt.config.context_channels == 2
    assert a["input_blocks.0.0.weight"].shape[1] == 3  # noisy image + known image + edit mask
    with pytest.raises(CheckpointError, match="--edit-margin 2, this run asks for 4"):
        train_sdm(_options(prepared_store, tmp_path / "half", micro_preset, steps=6, edit_margin_px=4, resume=True))


def test_checkpoint_whose_mode_disagrees_with_its_config_is_refused(prepared_store, micro_preset, tmp_path):
    train_sdm(_options(prepared_store, tmp_path / "run", micro_preset, steps=1, checkpoint_every=1))
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    meta["mode"] = "slice"
    (tmp_path / "run" / "config.json").write_text(json.dumps(meta))
    (tmp_path / "run" / "model.safetensors").rename(tmp_path / "run" / "weights.bin")
    from lungforge.models.checkpoint import write_safetensors

    write_safetensors(tmp_path / "run" / "model.safetensors", load_file(tmp_path / "run" / "weights.bin"), meta)
    with pytest.raises(CheckpointError, match="has mode 'slice', but its model_config builds a 'inpaint' SDM"):
        load_checkpoint(tmp_path / "run")


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_train_an_inpainting_sdm(prepared_store, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29533",
        "-m",
        "lungforge",
        "train",
        "sdm",
        "--data",
        str(prepared_store),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--inpaint",
        "--window",
        "32",
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--checkpoint-every",
        "2",
        "--sample-steps",
        "1",
        "--grid-samples",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["world_size"] == 2
    assert load_checkpoint(out).meta["mode"] == "inpaint"
