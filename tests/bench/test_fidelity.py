"""The fidelity benchmark on a phantom store with a segmenter trained for a few steps."""

import numpy as np
import pytest
import torch

from lungforge.bench.fidelity import REAL, compute_fidelity, fidelity_markdown
from lungforge.bench.label_metrics import class_iou, confusion_matrix, mean_iou
from lungforge.bench.segmenter import SegmenterConfig, cache_dir, cache_key, load_or_train
from lungforge.bench.slices import read_resized
from lungforge.data.store import SPLIT_IDS, open_store
from lungforge.errors import CheckpointError, InputError

FEW_STEPS = SegmenterConfig.quick_preset(size=64, steps=150)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scored(phantom_store, synthetic_maker, tmp_path_factory):
    """compute_fidelity on the phantom store with three 'synthetic' stores: its own test slices,
    the same label maps with uniform noise as images, and again the test slices."""
    root = tmp_path_factory.mktemp("fidelity_synth")
    rng = np.random.default_rng(0)
    stores = {
        "same": open_store(synthetic_maker(phantom_store, root / "same.zarr")),
        "noise": open_store(synthetic_maker(phantom_store, root / "noise.zarr", lambda x: rng.integers(0, 256, x.shape, dtype=np.uint8))),
    }
    return compute_fidelity(open_store(phantom_store), stores, FEW_STEPS, CPU)


def trivial_miou(store_path) -> float:
    """mIoU of predicting the most frequent class of the test labels everywhere."""
    store = open_store(store_path)
    rows = np.flatnonzero(store.meta("split") == SPLIT_IDS["test"])
    _, labels = read_resized(store, rows, 64)
    majority = np.bincount(labels.ravel()).argmax()
    cm = confusion_matrix(torch.from_numpy(labels), torch.full(labels.shape, int(majority)))
    return mean_iou(class_iou(cm))


def test_a_few_steps_beat_the_trivial_baseline(scored, phantom_store):
    ceiling = scored["scores"][REAL]
    assert ceiling["miou"] > trivial_miou(phantom_store) + 0.2
    assert min(ceiling["iou"]["left_lung"], ceiling["iou"]["right_lung"]) > 0.2  # trivial: 0
    assert ceiling["feature_distance"] is None and ceiling["nodule_hits"]["nodules"] > 0


def test_real_test_slices_as_synthetic_reproduce_the_ceiling(scored):
    same, ceiling = scored["scores"]["same"], scored["scores"][REAL]
    assert same["slices"] == ceiling["slices"]
    assert same["iou"] == ceiling["iou"] and same["nodule_hits"] == ceiling["nodule_hits"]
    for subset in ("nodule", "nodule_free", "all"):
        assert same["feature_distance"][subset]["fd"] == pytest.approx(0.0, abs=1e-6)


def test_noise_images_score_near_zero_on_the_lungs(scored):
    noise = scored["scores"]["noise"]
    ceiling = scored["scores"][REAL]["iou"]
    for lung in ("left_lung", "right_lung"):  # chance level: dark noise pixels called lung
        assert noise["iou"][lung] < 0.15 and noise["iou"][lung] < ceiling[lung] / 4
    assert noise["miou"] < scored["scores"][REAL]["miou"] - 0.3
    assert noise["feature_distance"]["all"]["fd"] > 10 * max(scored["scores"]["same"]["feature_distance"]["all"]["fd"], 1e-3)


def test_markdown_has_the_ceiling_and_every_store(scored):
    md = "\n".join(fidelity_markdown(scored))
    assert "| real (ceiling) |" in md and "| noise |" in md and "NOT comparable with published FID" in md


def test_the_cache_is_hit_on_the_second_call(phantom_store, tmp_path):
    import shutil

    path = shutil.copytree(phantom_store, tmp_path / "real.zarr")
    store = open_store(path)
    config = SegmenterConfig.quick_preset(size=64, steps=3, seed=5)
    first = load_or_train(store, config, CPU)
    second = load_or_train(store, config, CPU)
    assert not first.cached and second.cached and second.path == first.path
    assert first.path.parent == cache_dir(store) == tmp_path / "real.fidelity"
    for k, v in first.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[k], v)
    assert cache_key(store, config) != cache_key(store, SegmenterConfig.quick_preset(size=64, steps=3, seed=6))
    first.path.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="segmenter-.*safetensors: unreadable fidelity segmenter cache"):
        load_or_train(store, config, CPU)


def test_size_must_fit_the_poolings():
    with pytest.raises(InputError, match="divisible by 8, got 60"):
        SegmenterConfig(size=60)
