import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.scoring.fid import (
    FID_WEIGHTS_NAME,
    FidConfig,
    InceptionUnavailable,
    Moments,
    RandomFeatures,
    compute_fid,
    fid_inception_module,
    find_inception_weights,
    frechet_distance,
    load_fid_inception,
)
from lungforge.core.errors import CheckpointError


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_frechet_distance_equals_pytorch_fid():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(0.5, 1.3, size=(60, 8))
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2))
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_streamed_moments_equal_numpy_mean_and_cov():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.5, size=(97, 5))
    m = Moments(5)
    for part in np.array_split(x, 4):
        m.add(part)
    mu, cov = m.mean_cov()
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), atol=1e-10)


def test_missing_weights_name_the_expected_place(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(InceptionUnavailable, match=f"put {FID_WEIGHTS_NAME} in .*hub/checkpoints"):
        find_inception_weights(None, allow_download=False)
    with pytest.raises(InceptionUnavailable, match="no such file"):
        find_inception_weights(tmp_path / "nope.pth")
    cached = tmp_path / "hub" / "checkpoints" / FID_WEIGHTS_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_inception_weights(None, allow_download=False) == cached


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(InceptionUnavailable, match="download failed: OSError"):
        find_inception_weights(None)


def test_inception_file_of_another_network_is_rejected(tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="is not the FID InceptionV3 network"):
        load_fid_inception(wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_fid_inception(garbage)


def test_local_fid_inception_state_dict_loads_into_pytorch_fid_wrapper(tmp_path):
    reference = fid_inception_module()
    path = tmp_path / FID_WEIGHTS_NAME
    torch.save(reference.state_dict(), path)
    model = load_fid_inception(path)
    assert torch.equal(model.blocks[3][1].branch1x1.conv.weight, reference.Mixed_7b.branch1x1.conv.weight)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert out[0].shape == (2, 2048, 1, 1)


def test_random_features_fid_end_to_end(stores):
    real = open_real(stores["real"])
    syn = {"B": open_synthetic(stores["B"], real)}
    config = FidConfig(features="random", batch_size=16)
    result = compute_fid(real, syn, config, RandomFeatures(), 64, torch.device("cpu"))
    assert result.comparable is False
    scores = result.scores["B"]
    assert scores["nodule"].n_real == 20 and scores["nodule_free"].n_real == 20 and scores["all"].n_synthetic == 40
    assert all(v.fid is not None and v.fid >= 0 for v in scores.values())
    assert any("biased below 2048" in w for w in result.warnings)
    same = compute_fid(real, {"R": real}, config, RandomFeatures(), 64, torch.device("cpu"))
    assert same.scores["R"]["all"].fid == pytest.approx(0.0, abs=1e-6)


def _synthetic_copy(real_path, out, size):
    """A synthetic store holding the real store's slices resized (antialiased) to size×size."""
    from lungforge.data.resize import resize_images_uint8, resize_label_maps
    from lungforge.store import create_store, open_store

    real = open_store(real_path)
    n = len(real)
    h, w = real.shape_hw
    store = create_store(
        out,
        kind="synthetic",
        height=size,
        width=size,
        capacity=n,
        params={"test": True},
        extra_attrs={"input": {"path": str(real_path), "fingerprint": real.fingerprint()}},
    )
    meta = {k: real.meta(k) for k in ("series", "z", "split", "fold", "has_nodule")}
    meta.update(
        spacing=real.meta("spacing") * (h / size),
        source=np.arange(n),
        seed=np.arange(n),
        verified=np.ones(n, bool),
        attempts=np.ones(n, np.int32),
        done=np.ones(n, bool),
    )
    store.write_block(0, resize_images_uint8(real.image[...], size), resize_label_maps(real.label[...], size), meta)
    table = real.nodules()
    table["bbox"] = table["bbox"] * (size / w)
    table["requested_mm"] = table["diameter_mm"].copy()
    table["shape_source"] = table["size_source"] = np.full(table["slice"].size, -1, np.int64)
    table["lidc_annotation"] = np.full(table["slice"].shape, -1, dtype=np.int64)
    store.finalize(n, real.series_uids, table)
    return out


class _Recorder(torch.nn.Module):
    """Random features that remember the input sizes they were given."""

    def __init__(self):
        super().__init__()
        self.features = RandomFeatures()
        self.shapes = set()

    def forward(self, x):
        self.shapes.add(tuple(x.shape[-2:]))
        return self.features(x)


def test_fid_resizes_every_store_to_one_working_size(tmp_path, store_builder):
    real_path = store_builder(tmp_path / "real.zarr", "real", n_series=4, per_series=8, size=128, seed=3)
    small = _synthetic_copy(real_path, tmp_path / "small.zarr", 64)
    real = open_real(real_path)
    stores = {"small": open_synthetic(small, real)}
    recorder = _Recorder()
    result = compute_fid(real, stores, FidConfig(size=64, features="random", batch_size=8), recorder, 64, torch.device("cpu"))
    assert recorder.shapes == {(64, 64)}
    assert result.config.size == 64 and result.to_dict()["size"] == 64
    # the same images stored at 128 and at 64 pixels score the same at the working size
    assert result.scores["small"]["all"].fid == pytest.approx(0.0, abs=1e-6)


def test_fid_scores_exactly_the_slices_the_detectors_train_on(stores, store_builder, tmp_path):
    """Issue 17 item 6: with --select first-draw a re-drawn slice is scored by neither FID nor the detectors."""
    real = open_real(stores["real"])
    attempts = np.where(np.arange(40) % 4 == 0, 3, 1).astype(np.int32)  # every 4th slice re-drawn
    path = store_builder(tmp_path / "redrawn.zarr", "synthetic", seed=4, made_from=stores["real"], meta={"attempts": attempts})
    syn = {"B": open_synthetic(path, real)}
    first = compute_fid(real, syn, FidConfig(features="random", batch_size=16), RandomFeatures(), 64, torch.device("cpu"))
    assert first.config.select == "first-draw" and first.scores["B"]["all"].n_synthetic == 30
    every = compute_fid(real, syn, FidConfig(features="random", batch_size=16, select="all"), RandomFeatures(), 64, torch.device("cpu"))
    assert every.scores["B"]["all"].n_synthetic == 40


def test_augment_draws_once_per_slice_by_default():
    import inspect

    from lungforge.augment.options import AugmentOptions
    from lungforge.cli.augment import augment as augment_command

    assert inspect.signature(AugmentOptions).parameters["retries"].default == 0
    assert inspect.signature(augment_command).parameters["retries"].default == 0
