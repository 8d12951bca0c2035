"""No generator leakage (issue 17 item 4): weights record the patients they saw, augment copies
the record into the synthetic store, and bench refuses a generator that saw a test-fold patient."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lungforge.bench.protocol.detect import DetectConfig, run_detect
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.leakage import leakage_warning
from lungforge.core.errors import InputError
from lungforge.models.checkpoint import checkpoint_meta, load_checkpoint
from lungforge.models.presets import get_preset
from lungforge.store import SPLIT_IDS, open_store
from lungforge.training.run import training_record

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


@pytest.fixture(scope="module")
def real_store(stores):
    return open_real(stores["real"])


def _generator_store(tmp_path, store_builder, real_path, block: dict) -> Path:
    return store_builder(
        tmp_path / "gen.zarr", "synthetic", seed=5, made_from=real_path, attrs={"generator": {"weights": "w", "sha256": "0" * 64, **block}}
    )


def _config(**kw) -> DetectConfig:
    return dataclasses.replace(DetectConfig.quick_preset(size=64), epochs=1, **kw)


def test_training_records_the_train_split_patients_in_the_checkpoint(stores):
    store = open_store(stores["real"])
    seen = training_record(store)
    train = store.meta("split") == SPLIT_IDS["train"]
    assert set(seen.series) == {store.series_uids[i] for i in np.unique(store.meta("series")[train])} and len(seen.series) == 6
    assert seen.nodule_slices == int((train & store.meta("has_nodule")).sum())
    preset = get_preset("tiny")
    meta = checkpoint_meta(kind="sdm", preset="tiny", model_config=preset.sdm, step=1, store_fingerprint=store.fingerprint(), seen=seen)
    assert meta["train_series"] == list(seen.series) and meta["train_nodule_slices"] == seen.nodule_slices


def test_the_demo_weights_record_their_phantom_patients_and_the_synthesizer_passes_them_on():
    from lungforge.augment.synthesizer import Synthesizer

    ckpt = load_checkpoint(WEIGHTS / "demo-spade-tiny.safetensors")
    assert len(ckpt.meta["train_series"]) == 32 and ckpt.meta["train_nodule_slices"] == 50
    block = Synthesizer(ckpt, torch.device("cpu")).provenance("demo-spade-tiny")
    assert block["train_series"] == ckpt.meta["train_series"] and block["train_store_fingerprint"] == ckpt.meta["store_fingerprint"]


def test_the_inpainting_demo_weights_record_the_same_patients_and_the_inpainter_passes_them_on(real_store):
    from lungforge.augment.inpainter import Inpainter
    from lungforge.augment.synthesizer import SamplingSettings

    slice_ckpt = load_checkpoint(WEIGHTS / "demo-sdm-tiny.safetensors")
    ckpt = load_checkpoint(WEIGHTS / "demo-sdm-inpaint-tiny.safetensors")
    assert ckpt.meta["train_series"] == slice_ckpt.meta["train_series"] and ckpt.meta["train_nodule_slices"] == 50
    block = Inpainter(ckpt, real_store, real_store.shape_hw[0], torch.device("cpu"), settings=SamplingSettings()).provenance(
        "demo-sdm-inpaint-tiny"
    )
    assert block["mode"] == "inpaint" and block["train_series"] == ckpt.meta["train_series"]


def test_bench_refuses_a_generator_that_saw_test_fold_patients_with_the_count(tmp_path, store_builder, stores, real_store):
    path = _generator_store(tmp_path, store_builder, stores["real"], {"kind": "sdm", "train_series": ["1.2.3.0", "1.2.3.1", "1.2.3.9"]})
    syn = {"C": open_synthetic(path, real_store)}
    with pytest.raises(
        InputError, match=r"^C: its generator's weights saw 3 of the benchmark's test-fold patients .*--allow-generator-leakage"
    ):
        run_detect(real_store, syn, _config(), torch.device("cpu"))
    # leakage-free protocol: only the test-split patients (series 2, 3, 6, 7) are benched
    result = run_detect(real_store, syn, _config(real_split="test"), torch.device("cpu"))
    assert result.leakage["C"].test_patients == 0
    allowed = run_detect(real_store, syn, _config(allow_generator_leakage=True), torch.device("cpu"))
    assert allowed.leakage["C"].test_patients == 3
    assert leakage_warning(allowed.leakage).startswith("GENERATOR LEAKAGE ALLOWED") and "C (3 test-fold patients)" in leakage_warning(
        allowed.leakage
    )


def test_old_weights_trained_on_the_benched_store_saw_its_train_split(tmp_path, store_builder, stores, real_store):
    block = {"kind": "spade", "train_store_fingerprint": real_store.fingerprint()}
    syn = {"C": open_synthetic(_generator_store(tmp_path, store_builder, stores["real"], block), real_store)}
    with pytest.raises(InputError, match="saw 6 of the benchmark's test-fold patients"):
        run_detect(real_store, syn, _config(), torch.device("cpu"))


def test_weights_without_a_record_are_refused_unless_allowed(tmp_path, store_builder, stores, real_store):
    syn = {
        "C": open_synthetic(
            _generator_store(tmp_path, store_builder, stores["real"], {"kind": "sdm", "train_store_fingerprint": "ffff"}), real_store
        )
    }
    with pytest.raises(InputError, match="record no training patients"):
        run_detect(real_store, syn, _config(), torch.device("cpu"))
    allowed = run_detect(real_store, syn, _config(allow_generator_leakage=True), torch.device("cpu"))
    assert "record no training patients: C" in leakage_warning(allowed.leakage)


def test_weights_record_the_distinct_real_nodules_they_saw_and_the_curve_reports_them(stores, real_store):
    from lungforge.bench.protocol.folds import real_groups
    from lungforge.bench.protocol.leakage import exposure
    from lungforge.bench.protocol.results import CurveResult, TaskResult
    from lungforge.store import nodule_ids

    seen = training_record(real_store)
    train = real_store.meta("split") == SPLIT_IDS["train"]
    assert seen.nodules == np.unique(nodule_ids(real_store)[train[real_store.nodules()["slice"]]]).size > 0
    meta = checkpoint_meta(kind="sdm", preset="tiny", model_config=get_preset("tiny").sdm, step=1, store_fingerprint="f", seen=seen)
    assert meta["train_nodules"] == seen.nodules
    block = {"generator": {"kind": "sdm", "train_series": list(seen.series), "train_nodule_slices": 30, "train_nodules": 12}}
    store = type("S", (), {"attrs": block})()
    found = exposure(store, real_store, real_groups(real_store, 2, "test"))  # type: ignore[arg-type]
    assert (found.nodules, found.nodule_slices) == (12, 30) and found.as_dict()["nodules"] == 12
    curve = CurveResult({"all": TaskResult("detect", _config(), ("A", "C"), {"A": [], "C": []}, {"C": found})})
    assert curve.generator_nodules == {"C": 12} and curve.to_dict()["generator_nodule_slices"] == {"C": 30}
