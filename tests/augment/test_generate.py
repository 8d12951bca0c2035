"""augment(): layouts in the written store, determinism, resume, verification and bad inputs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.augment.plan import SEED_MASK, PlannedSample, sample_seed
from lungforge.augment.synthesizer import checked_uint8
from lungforge.augment.weakest_contrast import weakest_contrast_hu
from lungforge.augment.writer import BlockWriter, FinishedBlock
from lungforge.core.errors import CheckpointError, ConfigError, GeneratorError, InputError, LayoutError, SchemaError
from lungforge.core.labels import LEFT_LUNG, LUNG_LABELS, NODULE
from lungforge.data.resize import resize_label_maps
from lungforge.models.checkpoint import CONFIG_FILE, MODEL_FILE, read_checkpoint_meta, write_safetensors
from lungforge.store import create_store, open_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _options(real: Path, weights: Path, out: Path, **kw) -> AugmentOptions:
    base = dict(
        nodules=5,
        nodule_free=2,
        diameter_mm=(15.0, 30.0),
        shape="sphere",
        steps=2,
        batch_size=3,
        shard_size=4,
        device="cpu",
        seed=7,
    )
    return AugmentOptions(data=real, weights=str(weights), out=out, **{**base, **kw})


def _arrays(path: Path) -> dict[str, np.ndarray]:
    store = open_store(path)
    out = {"image": np.asarray(store.image[...]), "label": np.asarray(store.label[...])}
    for name in ("series", "z", "spacing", "split", "fold", "has_nodule", "source", "seed", "verified", "done"):
        out[f"meta/{name}"] = store.meta(name)
    out.update({f"nodules/{k}": v for k, v in store.nodules().items()})
    return out


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def run(prepared_store, micro_weights, tmp_path_factory):
    """One augment run (5 nodule + 2 nodule-free slices) shared by the layout tests."""
    out = tmp_path_factory.mktemp("augment_run") / "synth.zarr"
    report = augment(_options(prepared_store, micro_weights["sdm"], out))
    return out, report


def test_sample_seed_is_deterministic_and_distinct():
    seeds = [sample_seed(3, i, a) for i in range(50) for a in range(3)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s <= SEED_MASK for s in seeds)
    assert sample_seed(3, 10) == sample_seed(3, 10, 0) != sample_seed(4, 10)


def test_written_store_layouts(run, prepared_store):
    out, report = run
    store, real = open_store(out), open_store(prepared_store)
    assert store.kind == "synthetic" and len(store) == 7 and store.shape_hw == (64, 64)
    has = store.meta("has_nodule")
    np.testing.assert_array_equal(has, [True] * 5 + [False] * 2)
    assert store.meta("done").all() and (store.meta("split") == 0).all()
    source = store.meta("source")
    assert not real.meta("has_nodule")[source].any() and (real.meta("split")[source] == 0).all()
    for name in ("series", "z", "fold"):
        np.testing.assert_array_equal(store.meta(name), real.meta(name)[source])
    assert store.series_uids == real.series_uids
    table = store.nodules()
    np.testing.assert_array_equal(table["slice"], np.arange(5))
    for i in range(7):
        label = np.asarray(store.label[i])
        source_label = resize_label_maps(np.asarray(real.label[int(source[i])])[None], 64)[0]
        np.testing.assert_array_equal(label[label != NODULE], source_label[label != NODULE])
        components, count = ndimage.label(label == NODULE, structure=np.ones((3, 3)))
        rows = np.flatnonzero(table["slice"] == i)
        assert count == rows.size == (1 if i < 5 else 0)
        for k, row in zip(range(1, count + 1), rows):
            nodule = components == k
            r, c = np.nonzero(nodule)
            np.testing.assert_array_equal(table["bbox"][row], [c.min(), r.min(), c.max() + 1, r.max() + 1])
            spacing = store.meta("spacing")[i]
            achieved = 2 * np.sqrt(nodule.sum() * spacing[0] * spacing[1] / np.pi)
            assert achieved == pytest.approx(table["diameter_mm"][row], rel=1e-4)
            assert abs(achieved - table["requested_mm"][row]) <= 0.25 * table["requested_mm"][row]
            assert 15.0 <= table["requested_mm"][row] <= 30.0
            assert np.isin(source_label[nodule], LUNG_LABELS).mean() >= 0.9
    attrs = store.attrs
    assert attrs["generator"]["kind"] == "sdm" and attrs["generator"]["steps"] == 2
    # the unset sampler and guidance are recorded as the diffusion defaults the run used
    assert {k: attrs["params"][k] for k in ("sampler", "steps", "guidance")} == {"sampler": "ddpm", "steps": 2, "guidance": 1.5}
    assert attrs["params"]["seed"] == 7 and attrs["input"]["fingerprint"] == real.fingerprint()
    assert isinstance(attrs["min_contrast_hu"], float)
    assert report.slices == 7 and report.nodules == 5 and report.written_this_run == 7
    assert report.diameter_error_pct_max <= 25.0
    assert sum(report.nodules_by_size.values()) == 5
    json.dumps(dataclasses.asdict(report))


def test_spacing_scaled_to_output_size(run, prepared_store):
    out, _ = run
    store, real = open_store(out), open_store(prepared_store)
    scale = real.shape_hw[0] / 64
    np.testing.assert_allclose(store.meta("spacing"), real.meta("spacing")[store.meta("source")] * scale, rtol=1e-6)


def test_same_output_for_any_batch_size(run, prepared_store, micro_weights, tmp_path):
    out, _ = run
    other = tmp_path / "b1.zarr"
    augment(_options(prepared_store, micro_weights["sdm"], other, batch_size=1, shard_size=4))
    _assert_same(_arrays(out), _arrays(other))


def test_placement_left_is_respected(prepared_store, micro_weights, tmp_path):
    out = tmp_path / "left.zarr"
    augment(
        _options(
            prepared_store, micro_weights["sdm"], out, nodules=3, nodule_free=0, placement="left", per_slice=2, diameter_mm=(12.0, 18.0)
        )
    )
    store, real = open_store(out), open_store(prepared_store)
    assert store.nodules()["slice"].tolist() == [0, 0, 1, 1, 2, 2]
    for i in range(3):
        label = np.asarray(store.label[i])
        source_label = resize_label_maps(np.asarray(real.label[int(store.meta("source")[i])])[None], 64)[0]
        assert (source_label[label == NODULE] == LEFT_LUNG).all()


def test_resume_rewrites_only_unfinished_blocks(prepared_store, micro_weights, tmp_path):
    clean = tmp_path / "clean.zarr"
    augment(_options(prepared_store, micro_weights["sdm"], clean, min_contrast_hu=-1e6))
    out = tmp_path / "resume.zarr"
    options = _options(prepared_store, micro_weights["sdm"], out, min_contrast_hu=-1e6)

    class Killed(Exception):
        pass

    def kill_after_first_block(done: int, total: int, sampled: int) -> None:
        if done >= 4:
            raise Killed

    with pytest.raises(Killed):
        augment(options, progress=kill_after_first_block)
    partial = open_store(out, require_complete=False)
    assert partial.meta("done").tolist() == [True] * 4 + [False] * 3
    report = augment(dataclasses.replace(options, resume=True, batch_size=2))
    assert report.written_this_run == 3 and report.blocks_skipped == 1
    _assert_same(_arrays(clean), _arrays(out))


def test_resume_with_other_options_is_refused(run, prepared_store, micro_weights, tmp_path):
    out = tmp_path / "mismatch.zarr"
    options = _options(prepared_store, micro_weights["sdm"], out)
    augment(options)
    store = open_store(out, "r+")
    store.write_meta(0, {"done": np.zeros(4, dtype=bool)})
    with pytest.raises(SchemaError, match="steps"):
        augment(dataclasses.replace(options, resume=True, steps=3))


def test_resume_of_complete_store_writes_nothing(run, prepared_store, micro_weights, tmp_path):
    out = tmp_path / "again.zarr"
    options = _options(prepared_store, micro_weights["sdm"], out, nodules=2, nodule_free=1)
    augment(options)
    before = _arrays(out)
    report = augment(dataclasses.replace(options, resume=True))
    assert report.written_this_run == 0 and report.images_sampled == 0 and report.nodules == 2
    _assert_same(before, _arrays(out))


@pytest.mark.parametrize("threshold, passed", [(1e6, False), (-1e6, True)])
def test_verification_flags_and_retries(prepared_store, micro_weights, tmp_path, threshold, passed):
    out = tmp_path / "verify.zarr"
    report = augment(_options(prepared_store, micro_weights["sdm"], out, nodules=3, nodule_free=1, min_contrast_hu=threshold, retries=2))
    store = open_store(out)
    np.testing.assert_array_equal(store.meta("verified"), [passed] * 3 + [True])
    assert report.verified_final == report.verified_first_try == float(passed)
    assert report.images_sampled == (4 if passed else 3 * 3 + 1)
    np.testing.assert_array_equal(store.meta("attempts"), [1] * 4 if passed else [3, 3, 3, 1])
    assert store.attrs["min_contrast_hu"] == threshold
    seeds = store.meta("seed")
    allowed = [{sample_seed(7, i, a) for a in range(3)} for i in range(3)]
    assert all(int(s) in ok for s, ok in zip(seeds, allowed))
    assert seeds[3] == sample_seed(7, 3)


def test_spade_weights_generate_deterministically(prepared_store, micro_weights, tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    augment(_options(prepared_store, micro_weights["spade"], a, nodules=2, nodule_free=2, steps=None))
    augment(_options(prepared_store, micro_weights["spade"], b, nodules=2, nodule_free=2, steps=None, batch_size=4))
    _assert_same(_arrays(a), _arrays(b))
    store = open_store(a)
    assert store.attrs["generator"]["kind"] == "spade" and store.attrs["generator"]["sampler"] is None
    assert [store.attrs["params"][k] for k in ("sampler", "steps", "guidance")] == [None, None, None]
    images = np.asarray(store.image[...])
    assert not (images[0] == images[1]).all()


@pytest.mark.parametrize(("option", "value"), [("sampler", "ddim"), ("steps", 2), ("guidance", 1.5)])
def test_sampler_options_are_refused_for_spade_weights(prepared_store, micro_weights, tmp_path, option, value):
    """SPADE draws in one forward pass: a sampler option would be ignored, so it is refused, naming the weights' kind."""
    out = tmp_path / "s.zarr"
    options = _options(prepared_store, micro_weights["spade"], out, nodules=2, nodule_free=2, **{"steps": None, option: value})
    with pytest.raises(ConfigError, match=f"^{option} is for diffusion \\(SDM\\) weights; .* is a SPADE checkpoint") as caught:
        augment(options)
    assert caught.value.field == option and not out.exists()


def test_a_generator_that_ignores_the_seed_is_never_redrawn(prepared_store, tmp_path):
    """SPADE without a noise input gives the same image for every seed: re-drawing it would only
    record attempts that changed nothing, so it takes one draw per slice, like the controls."""
    import torch

    from lungforge.models.checkpoint import save_checkpoint
    from lungforge.models.presets import SPADEConfig
    from lungforge.models.spade import SPADEGenerator

    torch.manual_seed(0)
    config = SPADEConfig(image_size=64, ngf=4, ndf=4, z_dim=0)
    weights = save_checkpoint(
        tmp_path / "spade0",
        kind="spade",
        preset="tiny",
        model_config=config,
        state_dict=SPADEGenerator(config).state_dict(),
        step=0,
        store_fingerprint=None,
    )
    report = augment(
        _options(prepared_store, weights, tmp_path / "z0.zarr", nodules=3, nodule_free=1, min_contrast_hu=1e6, retries=2, steps=None)
    )
    store = open_store(tmp_path / "z0.zarr")
    assert report.images_sampled == 4
    np.testing.assert_array_equal(store.meta("attempts"), [1, 1, 1, 1])
    assert not store.meta("verified")[:3].any()


def test_existing_output_is_left_alone(prepared_store, micro_weights, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SchemaError, match="already exists"):
        augment(_options(prepared_store, micro_weights["sdm"], out))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_synthetic_input_is_refused(run, micro_weights, tmp_path):
    synthetic, _ = run
    with pytest.raises(InputError, match="expected a 'real' store"):
        augment(_options(synthetic, micro_weights["sdm"], tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()


def test_impossible_diameter_writes_nothing(prepared_store, micro_weights, tmp_path):
    with pytest.raises(LayoutError, match="no label map can host"):
        augment(_options(prepared_store, micro_weights["sdm"], tmp_path / "x.zarr", diameter_mm=(90.0, 100.0), per_slice=12))
    assert not (tmp_path / "x.zarr").exists()


def test_diameter_below_one_host_pixel_writes_nothing(prepared_store, micro_weights, tmp_path):
    with pytest.raises(LayoutError, match=r"--diameter 0.001:0.002 mm: MIN is below one pixel of the host slices .* use MIN >= \d"):
        augment(_options(prepared_store, micro_weights["sdm"], tmp_path / "x.zarr", diameter_mm=(0.001, 0.002)))
    assert not (tmp_path / "x.zarr").exists()


def test_checked_uint8_refuses_non_finite_and_saturated_samples():
    x = torch.zeros(3, 1, 8, 8)
    assert checked_uint8(x, [1, 2, 3], 1.5).shape == (3, 8, 8)
    x[1, 0, 2, 2] = float("nan")
    with pytest.raises(GeneratorError, match=r"NaN or infinite pixels \(seed 2\) at guidance 1.5; nothing of it was written"):
        checked_uint8(x, [1, 2, 3], 1.5)
    x = torch.zeros(2, 1, 8, 8)
    x[1] = torch.sign(torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0))) * 3.0
    with pytest.raises(GeneratorError, match=r"saturated sample \(100% of its pixels at 0 or 255, seed 9\)"):
        checked_uint8(x, [8, 9], 20.0)
    edit = np.zeros((2, 8, 8), dtype=bool)
    edit[:, :2, :2] = True
    x[1, 0, :2, :2] = 0.0  # the pixels drawn are fine; only they count
    assert checked_uint8(x, [8, 9], 20.0, edit).shape == (2, 8, 8)


def test_a_generator_making_nan_fails_and_leaves_no_finished_store(prepared_store, micro_weights, tmp_path, monkeypatch):
    from lungforge.augment import synthesizer

    monkeypatch.setattr(synthesizer, "sample", lambda *args, **kwargs: torch.full((len(kwargs["generators"]), 1, 64, 64), float("nan")))
    out = tmp_path / "x.zarr"
    with pytest.raises(GeneratorError, match="NaN or infinite pixels"):
        augment(_options(prepared_store, micro_weights["sdm"], out))
    assert not out.exists() or not open_store(out, require_complete=False).attrs.get("complete")


def test_weights_with_another_label_set_are_refused(prepared_store, micro_weights, tmp_path):
    weights, meta = read_checkpoint_meta(micro_weights["sdm"])
    bad = tmp_path / "bad"
    bad.mkdir()
    meta = {**meta, "labels": {**meta["labels"], "5": "tumour"}}
    from safetensors.torch import load_file

    write_safetensors(bad / MODEL_FILE, load_file(weights), meta)
    (bad / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="labels"):
        augment(_options(prepared_store, bad, tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()


def test_options_reject_bad_values(tmp_path):
    with pytest.raises(ValueError, match="nodules"):
        AugmentOptions(data=tmp_path, weights="w", out=tmp_path, nodules=-1)
    with pytest.raises(ValueError, match="nothing to generate"):
        AugmentOptions(data=tmp_path, weights="w", out=tmp_path)
    with pytest.raises(ValueError, match="placement"):
        AugmentOptions(data=tmp_path, weights="w", out=tmp_path, nodules=1, placement="top")  # type: ignore[arg-type]


def test_weakest_contrast(label_64, render_slice, lung_value):
    from lungforge.augment.layout import LayoutRequest, plan_layouts

    rng = np.random.default_rng(0)
    (plan,) = plan_layouts([label_64], (6.0, 6.0), 1, LayoutRequest(per_slice=2, diameter_mm=(15.0, 20.0)), rng)
    bright = render_slice(plan.label, 200)
    faint = render_slice(plan.label, lung_value)
    planned = PlannedSample(0, 0, 0, plan.label, (6.0, 6.0), plan.nodules)
    free = PlannedSample(1, 0, 0, label_64, (6.0, 6.0), ())
    scores = weakest_contrast_hu(np.stack([bright, faint, bright]), [planned, planned, free])
    assert scores[0] == pytest.approx((200 - lung_value) / 255 * 1400)
    assert scores[1] == pytest.approx(0.0)
    assert scores[2] == np.inf


def test_block_writer_raises_commit_errors(tmp_path):
    store = create_store(tmp_path / "s.zarr", kind="synthetic", height=8, width=8, capacity=8, params={}, shard_slices=4)
    block = FinishedBlock(0, 2, np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), np.uint8), {}, {})
    writer = BlockWriter(store)
    writer.submit(block)
    with pytest.raises(ValueError, match="multiple of 4"):
        writer.close()
    assert not store.meta("done").any()


@pytest.mark.skipif(importlib.util.find_spec("pylidc") is None, reason="needs the lidc extra (pylidc)")
def test_lidc_shapes_are_recorded_in_the_store(prepared_store, micro_weights, tmp_path):
    out = tmp_path / "lidc.zarr"
    augment(_options(prepared_store, micro_weights["sdm"], out, nodules=3, nodule_free=1, shape="lidc", min_contrast_hu=-1e6))
    store = open_store(out)
    ids = store.nodules()["lidc_annotation"]
    assert ids.size == 3 and (ids >= 0).all()
    lidc = store.attrs["lidc"]
    assert set(lidc["series"]) == {str(i) for i in ids} and "CC BY 3.0" in lidc["licence"]
