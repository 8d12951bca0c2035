"""augment with inpainting weights: real slices outside the edit regions, context wired, windows, refusals."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lungforge.augment.generate import augment
from lungforge.augment.inpainter import Inpainter
from lungforge.augment.options import AugmentOptions
from lungforge.augment.synthesizer import SamplingSettings
from lungforge.core.errors import InputError
from lungforge.core.labels import NODULE
from lungforge.diffusion.guidance import with_context
from lungforge.diffusion.samplers import sample
from lungforge.models.checkpoint import load_checkpoint, save_checkpoint
from lungforge.models.inpaint_window import context_channels, grow
from lungforge.models.presets import SDMConfig
from lungforge.models.sdm_unet import SDMUNet
from lungforge.store import open_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MARGIN_PX = 2


def _config(window: int) -> SDMConfig:
    return SDMConfig(
        image_size=window,
        context_channels=2,
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_head_channels=8,
        norm_groups=4,
        label_embed_channels=8,
    )


def _random_model(config: SDMConfig, seed: int = 0) -> SDMUNet:
    """An SDM whose every weight is random (the zero-initialised output conv too), so its output depends on its inputs."""
    torch.manual_seed(seed)
    model = SDMUNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def _save(root: Path, window: int) -> Path:
    config = _config(window)
    return save_checkpoint(
        root,
        kind="sdm",
        preset="tiny",
        model_config=config,
        state_dict=_random_model(config).state_dict(),
        step=0,
        store_fingerprint=None,
        edit_margin_px=MARGIN_PX,
    )


@pytest.fixture(scope="module")
def inpaint_weights(tmp_path_factory) -> Path:
    return _save(tmp_path_factory.mktemp("inpaint_weights") / "w16", 16)


def _options(real: Path, weights: Path, out: Path, **kw) -> AugmentOptions:
    base = dict(
        nodules=5, nodule_free=2, diameter_mm=(15.0, 30.0), shape="sphere", steps=2, batch_size=3, shard_size=4, device="cpu", seed=7
    )
    return AugmentOptions(data=real, weights=str(weights), out=out, **{**base, **kw})


@pytest.fixture(scope="module")
def run(prepared_store, inpaint_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("inpaint_run") / "synth.zarr"
    augment(_options(prepared_store, inpaint_weights, out))
    return out


def test_outside_the_edit_regions_the_output_is_the_real_slice(run, prepared_store):
    synth, real = open_store(run), open_store(prepared_store)
    source = synth.meta("source")
    changed_any = False
    for i in range(len(synth)):
        image, label = synth.read(i)
        real_image = np.asarray(real.image[int(source[i])])
        edit = grow(label == NODULE, MARGIN_PX)
        np.testing.assert_array_equal(image[~edit], real_image[~edit], err_msg=f"slice {i}")
        changed_any |= bool((image[edit] != real_image[edit]).any())
    assert changed_any  # the model did draw into the edit regions
    assert synth.attrs["generator"]["mode"] == "inpaint" and synth.attrs["generator"]["window"] == 16
    assert synth.attrs["generator"]["edit_margin_px"] == MARGIN_PX
    assert synth.shape_hw == real.shape_hw  # output at the real store's native size


def test_each_nodule_records_the_window_that_holds_it(run):
    table = open_store(run).nodules()
    window, bbox = table["window"], table["bbox"]
    assert window.dtype == np.int32 and window.shape == (5, 4)
    assert ((window[:, 2] - window[:, 0]) == 16).all() and ((window[:, 3] - window[:, 1]) == 16).all()
    assert (window[:, :2] <= bbox[:, :2]).all() and (window[:, 2:] >= bbox[:, 2:]).all()
    assert (window >= 0).all() and (window <= 64).all()


def test_batch_size_does_not_change_the_store(run, prepared_store, inpaint_weights, tmp_path):
    other = tmp_path / "b1.zarr"
    augment(_options(prepared_store, inpaint_weights, other, batch_size=1, per_slice=2, nodules=3))
    again = tmp_path / "b4.zarr"
    augment(_options(prepared_store, inpaint_weights, again, batch_size=4, per_slice=2, nodules=3))
    a, b = open_store(other), open_store(again)
    np.testing.assert_array_equal(a.image[...], b.image[...])
    for name, values in a.nodules().items():
        np.testing.assert_array_equal(values, b.nodules()[name], err_msg=name)
    assert a.nodules()["window"].shape == (6, 4)


def test_resume_after_a_kill_matches_an_uninterrupted_run(prepared_store, inpaint_weights, tmp_path):
    clean = tmp_path / "clean.zarr"
    augment(_options(prepared_store, inpaint_weights, clean, min_contrast_hu=-1e6))
    out = tmp_path / "resume.zarr"
    options = _options(prepared_store, inpaint_weights, out, min_contrast_hu=-1e6)

    class Killed(Exception):
        pass

    def kill_after_first_block(done: int, total: int, sampled: int) -> None:
        if done >= 4:
            raise Killed

    with pytest.raises(Killed):
        augment(options, progress=kill_after_first_block)
    assert open_store(out, require_complete=False).meta("done").tolist() == [True] * 4 + [False] * 3
    report = augment(dataclasses.replace(options, resume=True, batch_size=2))
    assert report.written_this_run == 3 and report.blocks_skipped == 1
    a, b = open_store(clean), open_store(out)
    np.testing.assert_array_equal(a.image[...], b.image[...])
    np.testing.assert_array_equal(a.nodules()["window"], b.nodules()["window"])


def test_another_context_gives_another_fill(prepared_store):
    config = _config(16)
    model = _random_model(config)
    label = torch.zeros(1, 6, 16, 16)
    label[:, 1] = 1.0
    edit = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    edit[..., 5:11, 5:11] = True
    fills = []
    for known in (torch.full((1, 1, 16, 16), -0.8), torch.full((1, 1, 16, 16), 0.6)):
        generator = torch.Generator().manual_seed(3)
        x = sample(with_context(model, context_channels(known, edit)), label, sampler="ddim", steps=3, guidance=1.5, generator=generator)
        fills.append(x[edit[:, :1].expand_as(x)])
    assert not torch.allclose(fills[0], fills[1], atol=1e-3)
    with pytest.raises(ValueError, match="takes 2 context channels, got 0"):
        model(torch.zeros(1, 1, 16, 16), torch.zeros(1, dtype=torch.long), label)


def test_window_larger_than_the_slices_is_refused(prepared_store, tmp_path):
    weights = _save(tmp_path / "w128", 128)
    with pytest.raises(InputError, match="window 128 px is larger than its 64×64 px slices"):
        augment(_options(prepared_store, weights, tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()
    ckpt = load_checkpoint(weights)
    with pytest.raises(InputError, match="larger than"):
        Inpainter(ckpt, open_store(prepared_store), 64, torch.device("cpu"), settings=SamplingSettings(steps=2))


def test_edit_region_reaching_past_the_window_is_refused(prepared_store, inpaint_weights, tmp_path):
    with pytest.raises(InputError, match="planned nodule: edit region x .* reaches past the 16 px window"):
        augment(_options(prepared_store, inpaint_weights, tmp_path / "x.zarr", diameter_mm=(40.0, 80.0)))
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.slow
def test_two_ranks_write_the_same_store_as_one(run, prepared_store, inpaint_weights, tmp_path):
    out = tmp_path / "two.zarr"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "lungforge",
        "augment",
        "--data",
        str(prepared_store),
        "--weights",
        str(inpaint_weights),
        "--out",
        str(out),
        "--nodules",
        "5",
        "--nodule-free",
        "2",
        "--diameter",
        "15:30",
        "--shape",
        "sphere",
        "--steps",
        "2",
        "--shard-size",
        "4",
        "--device",
        "cpu",
        "--seed",
        "7",
        "--batch-size",
        "2",
    ]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = open_store(run), open_store(out)
    np.testing.assert_array_equal(a.image[...], b.image[...])
    for name, values in a.nodules().items():
        np.testing.assert_array_equal(values, b.nodules()[name], err_msg=name)
