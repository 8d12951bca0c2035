"""The fidelity benchmark on a phantom store with cross-fitted segmenters trained for a few steps."""

import numpy as np
import pytest
import torch

from lungforge.bench.protocol.slices import read_resized
from lungforge.bench.scoring import fidelity
from lungforge.bench.scoring.crossfit import patient_halves, real_scorers, synthetic_scorers, train_halves
from lungforge.bench.scoring.fidelity import REAL, compute_fidelity, fidelity_markdown
from lungforge.bench.scoring.label_metrics import class_iou, confusion_matrix, mean_iou
from lungforge.bench.scoring.segmenter import SegmenterConfig, cache_dir, cache_key, load_or_train, train_indices
from lungforge.core.errors import CheckpointError, InputError
from lungforge.store import SPLIT_IDS, open_store

FEW_STEPS = SegmenterConfig.quick_preset(size=64, steps=150)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scored(prepared_store, synthetic_maker, tmp_path_factory):
    """compute_fidelity on the phantom store with two 'synthetic' stores: copies of its train slices,
    and the same label maps with uniform noise as images."""
    root = tmp_path_factory.mktemp("fidelity_synth")
    rng = np.random.default_rng(0)
    stores = {
        "same": open_store(synthetic_maker(prepared_store, root / "same.zarr", split="train")),
        "noise": open_store(
            synthetic_maker(prepared_store, root / "noise.zarr", lambda x: rng.integers(0, 256, x.shape, dtype=np.uint8), split="train")
        ),
    }
    return compute_fidelity(open_store(prepared_store), stores, FEW_STEPS, CPU)


def trivial_miou(store_path) -> float:
    """mIoU of predicting the most frequent class of the train labels (the ceiling's slices) everywhere."""
    store = open_store(store_path)
    rows = np.flatnonzero(store.meta("split") == SPLIT_IDS["train"])
    _, labels = read_resized(store, rows, 64)
    majority = np.bincount(labels.ravel()).argmax()
    cm = confusion_matrix(torch.from_numpy(labels), torch.full(labels.shape, int(majority)))
    return mean_iou(class_iou(cm))


def test_a_few_steps_beat_the_trivial_baseline(scored, prepared_store):
    ceiling = scored.scores[REAL].summary
    assert ceiling.miou > trivial_miou(prepared_store) + 0.2
    assert min(ceiling.iou["left_lung"], ceiling.iou["right_lung"]) > 0.2  # trivial: 0
    assert ceiling.feature_distance is None and ceiling.nodule_hits.nodules > 0


def test_real_train_slices_as_synthetic_reproduce_the_ceiling(scored):
    """Copies of the real train slices are scored by the same (other-half) segmenter as the ceiling."""
    same, ceiling = scored.scores["same"], scored.scores[REAL]
    assert same.summary.slices == ceiling.summary.slices and same.scored_by == ceiling.scored_by and same.unscored == 0
    assert min(ceiling.scored_by) > 0
    assert same.summary.iou == ceiling.summary.iou and same.summary.nodule_hits == ceiling.summary.nodule_hits
    distance = same.summary.feature_distance
    assert distance is not None
    for subset in ("nodule", "nodule_free", "all"):
        assert distance[subset].fd == pytest.approx(0.0, abs=1e-6)


def test_noise_images_score_near_zero_on_the_lungs(scored):
    noise, same, real = (scored.scores[name].summary for name in ("noise", "same", REAL))
    for lung in ("left_lung", "right_lung"):  # chance level: dark noise pixels called lung
        assert noise.iou[lung] < 0.15 and noise.iou[lung] < real.iou[lung] / 4
    assert noise.miou < real.miou - 0.3
    assert noise.feature_distance is not None and same.feature_distance is not None
    assert noise.feature_distance["all"].fd > 10 * max(same.feature_distance["all"].fd, 1e-3)


def test_markdown_has_the_ceiling_and_every_store(scored):
    md = "\n".join(fidelity_markdown(scored))
    assert "| real (ceiling) |" in md and "| noise |" in md and "NOT comparable with published FID" in md
    assert "each trained on half of the real train patients" in md and "| unscored |" in md


def test_the_cache_is_hit_on_the_second_call(prepared_store, tmp_path):
    import shutil

    path = shutil.copytree(prepared_store, tmp_path / "real.zarr")
    store = open_store(path)
    config = SegmenterConfig.quick_preset(size=64, steps=3, seed=5)
    first = load_or_train(store, config, CPU, half=1)
    second = load_or_train(store, config, CPU, half=1)
    assert not first.cached and second.cached and second.path == first.path
    assert first.path.parent == cache_dir(store) == tmp_path / "real.fidelity"
    for k, v in first.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[k], v)
    assert first.info["half"] == 1 and second.info["half"] == 1
    assert cache_key(store, config, 1) != cache_key(store, SegmenterConfig.quick_preset(size=64, steps=3, seed=6), 1)
    assert len({cache_key(store, config, h) for h in (None, 0, 1)}) == 3
    first.path.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="segmenter-.*safetensors: unreadable fidelity segmenter cache"):
        load_or_train(store, config, CPU, half=1)


def test_size_must_fit_the_poolings():
    with pytest.raises(InputError, match="divisible by 8, got 60"):
        SegmenterConfig(size=60)


def source_patients(store, real) -> list[set[int]]:
    """Per slice of `store`, the real patients (series) its label map, image and nodule shape and size come from."""
    series = real.meta("series")
    if store.kind == "real":
        return [{int(p)} for p in series]
    nodule_slice = real.nodules()["slice"]
    patients = [{int(series[s])} for s in store.meta("source")]
    table = store.nodules()
    for slice_, shape, size in zip(table["slice"], table["shape_source"], table["size_source"]):
        for row in (shape, size):
            if row >= 0:
                patients[slice_].add(int(series[nodule_slice[row]]))
    return patients


def test_no_segmenter_scores_a_slice_whose_sources_it_trained_on(prepared_store, synthetic_maker, tmp_path, monkeypatch):
    """A synthetic store of the real train slices whose nodules take their shape from the next real
    nodule (another patient, sometimes of the other half): every slice a segmenter scores comes from
    patients it never trained on; a slice whose sources touch both halves is not scored."""
    real = open_store(prepared_store)
    table = real.nodules()
    train_rows = np.flatnonzero(real.meta("split") == SPLIT_IDS["train"])

    def next_nodule_shape(nodules):
        original = np.flatnonzero(np.isin(table["slice"], train_rows))
        return {"shape_source": (original + 1) % table["slice"].size}

    mixed = open_store(synthetic_maker(prepared_store, tmp_path / "mixed.zarr", split="train", nodule_sources=next_nodule_shape))
    calls = []
    score_rows = fidelity.score_rows

    def spy(score, segmenter, scorer, store, rows, *args):
        calls.append((segmenter.info["half"], store, rows.copy()))
        return score_rows(score, segmenter, scorer, store, rows, *args)

    monkeypatch.setattr(fidelity, "score_rows", spy)
    result = compute_fidelity(real, {"mixed": mixed}, FEW_STEPS, CPU)
    trained = {h: {int(p) for p in real.meta("series")[train_indices(real, FEW_STEPS, h)]} for h in (0, 1)}
    train_patients = {int(p) for p in real.meta("series")[train_rows]}
    assert trained[0] and trained[1] and not trained[0] & trained[1] and trained[0] | trained[1] == train_patients
    scored = {"real": set(), "mixed": set()}
    for half, store, rows in calls:
        sources = source_patients(store, real)
        for row in rows.tolist():
            assert not sources[row] & trained[half], f"segmenter {half} scored slice {row} of {store.path} from {sources[row]}"
        scored["real" if store.kind == "real" else "mixed"] |= set(rows.tolist())
    # the ceiling is the real train slices, each scored once; every other slice that can be scored is
    assert scored["real"] == set(train_rows.tolist())
    both = [i for i, p in enumerate(source_patients(mixed, real)) if p & trained[0] and p & trained[1]]
    assert both and scored["mixed"] == set(range(len(mixed))) - set(both)
    mixed_score = result.scores["mixed"]
    assert mixed_score.unscored == len(both)
    assert sum(mixed_score.scored_by) == mixed_score.summary.slices == len(mixed) - len(both)
    assert [s.half for s in result.segmenters] == [0, 1] and all(s.cached for s in result.segmenters)


def test_halves_deal_train_and_test_patients(prepared_store):
    real = open_store(prepared_store)
    halves = patient_halves(real, 0)
    series, split = real.meta("series"), real.meta("split")
    for s in np.unique(series):
        assert np.unique(halves[series == s]).size == 1  # a patient lies in one half
    train = train_halves(real, 0)
    assert (train[split != SPLIT_IDS["train"]] == -1).all() and set(np.unique(train[split == SPLIT_IDS["train"]])) == {0, 1}
    scorer = real_scorers(real, 0)
    assert ((scorer == 1 - train) | (train == -1)).all() and (scorer[train == -1] == -1).all()
    assert not np.array_equal(patient_halves(real, 0), patient_halves(real, 1)) or np.unique(series).size <= 2


def test_test_patient_sources_are_scored_by_the_half_their_patient_was_not_dealt_to(prepared_store, synthetic_maker, tmp_path):
    real = open_store(prepared_store)
    from_test = open_store(synthetic_maker(prepared_store, tmp_path / "test.zarr"))
    scorer = synthetic_scorers(from_test, real, 0)
    np.testing.assert_array_equal(scorer, 1 - patient_halves(real, 0)[from_test.meta("source")])


def test_one_train_patient_cannot_be_cross_fitted(store_builder, tmp_path):
    path = store_builder(tmp_path / "one.zarr", "real", n_series=2, meta={"split": np.array([0] * 4 + [1] * 4, np.uint8)})
    with pytest.raises(InputError, match="1 train-split patient.*at least 2"):
        train_halves(open_store(path), 0)
