"""Shared fixtures: phantom datasets in LUNA16 layout, a store prepared from one and hand-built stores, made once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lungforge.core.labels import BODY, LEFT_LUNG, NODULE, RIGHT_LUNG
from lungforge.phantom.scans import make_phantom
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.preparation.volume_pipeline import VolumeOptions, prepare_volumes
from lungforge.store import NO_SOURCE, SHARD, create_store, empty_nodules, open_store

PhantomFactory = Callable[..., Path]


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures("one_torch_thread")`):
    on a shared 2-core machine OpenMP spinning makes 2 threads far slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_nnunet_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's folder variables of the machine running the tests are not the tests' (exports
    check dataset ids in them; a test that needs them sets its own)."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def phantom_factory(tmp_path_factory: pytest.TempPathFactory) -> PhantomFactory:
    """`phantom_factory(scans=4, size=64, seed=0) -> Path`; each distinct call is written once.

    The returned directories are shared across tests: copy before corrupting files.
    """
    made: dict[tuple[int, int, int], Path] = {}

    def factory(scans: int = 4, size: int = 64, seed: int = 0) -> Path:
        key = (scans, size, seed)
        if key not in made:
            out = tmp_path_factory.mktemp(f"phantom_{scans}x{size}_seed{seed}")
            make_phantom(out, scans=scans, size=size, seed=seed)
            made[key] = out
        return made[key]

    return factory


@pytest.fixture(scope="session")
def phantom_dir(phantom_factory: PhantomFactory) -> Path:
    """A 4-scan, 96×96 phantom dataset (seed 0) in subset0..subset3; treat as read-only."""
    return phantom_factory(scans=4, size=96, seed=0)


@pytest.fixture(scope="session")
def prepared_store(phantom_factory: PhantomFactory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 64×64 real store prepared from the 4-scan, 64-px phantom (seed 0): 3 train patients, 1 test.

    Shared by every test of the session: treat as read-only, copy it before writing to it.
    """
    out = tmp_path_factory.mktemp("prepared_store") / "real.zarr"
    prepare(phantom_factory(scans=4, size=64, seed=0), out, PrepareOptions(test_patients=0.25))
    return out


@pytest.fixture(scope="session")
def volume_store(phantom_factory: PhantomFactory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete volume store at 2 mm of the 3-scan, 64-px phantom (seed 0): 2 train patients, 1 test,
    5 nodules (two in scan 0, three in scan 2).

    Shared by every test of the session: treat as read-only, copy it before writing to it.
    """
    out = tmp_path_factory.mktemp("volume_store") / "volumes.zarr"
    prepare_volumes(phantom_factory(scans=3, size=64, seed=0), out, VolumeOptions(spacing_mm=2.0, test_patients=1, seed=3))
    return out


@pytest.fixture(scope="session")
def paste_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"root", "real", "paste"}: in folder `root`, a real store of the 4-scan 64-px phantom (seed 1, one test
    patient) and an 8-slice `paste` store made from it (the bench golden files hold paths under `root`); read-only."""
    from lungforge.augment.generate import augment
    from lungforge.augment.options import AugmentOptions

    root = tmp_path_factory.mktemp("paste_stores")
    make_phantom(root / "luna16", scans=4, size=64, seed=1)
    prepare(root / "luna16", root / "real.zarr", PrepareOptions(test_patients=1))
    augment(
        AugmentOptions(
            data=root / "real.zarr", weights="paste", out=root / "paste.zarr", nodules=6, nodule_free=2, shard_size=4, device="cpu"
        )
    )
    return {"root": root, "real": root / "real.zarr", "paste": root / "paste.zarr"}


def draw_slice(size: int, nodules: list[tuple[float, float, float]], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image and label (size, size) uint8: body ellipse, two lung ellipses, nodule disks (cy, cx, r px)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    c = size / 2
    label = np.zeros((size, size), np.uint8)
    label[((yy - c) / (0.45 * size)) ** 2 + ((xx - c) / (0.47 * size)) ** 2 <= 1] = BODY
    label[((yy - c) / (0.33 * size)) ** 2 + ((xx - 0.3 * size) / (0.14 * size)) ** 2 <= 1] = RIGHT_LUNG
    label[((yy - c) / (0.33 * size)) ** 2 + ((xx - 0.7 * size) / (0.14 * size)) ** 2 <= 1] = LEFT_LUNG
    for cy, cx, r in nodules:
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = NODULE
    intensity = np.array([0, 40, 40, 20, 150, 210], np.float32)
    image = intensity[label] + rng.normal(0, 6, label.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def build_store(
    path: Path,
    kind: str = "real",
    n_series: int = 10,
    per_series: int = 4,
    size: int = 64,
    seed: int = 0,
    nodule_every: int = 2,
    made_from: Path | None = None,
    meta: dict[str, np.ndarray] | None = None,
    nodule_columns: dict[str, np.ndarray] | None = None,
    attrs: dict | None = None,
) -> Path:
    """A finished store: series s in fold s % 10, split test for series 2, 3, 6, 7 (mod 4 ≥ 2); every `nodule_every`-th
    slice has one nodule. Synthetic stores take source = their own index (same layout as the real), record
    `made_from`'s fingerprint as their input, one attempt per slice and nodules with no shape or size source;
    `meta` and `nodule_columns` override columns; `attrs` are group attributes added (or replaced) when the store is
    finished, so that its content record covers them."""
    rng = np.random.default_rng(seed)
    n = n_series * per_series
    extra = None
    if made_from is not None:
        extra = {"input": {"path": str(made_from), "fingerprint": open_store(made_from).fingerprint()}}
    store = create_store(path, kind=kind, height=size, width=size, capacity=n, params={"test": True}, extra_attrs=extra)
    images, labels, bboxes, nod_slices, diam = [], [], [], [], []
    series = np.repeat(np.arange(n_series), per_series).astype(np.int32)
    has = np.zeros(n, bool)
    for i in range(n):
        nodules = []
        if nodule_every and i % nodule_every == 0:
            side = 0.3 if rng.random() < 0.5 else 0.7
            cy = size * rng.uniform(0.35, 0.65)
            cx = size * side + rng.uniform(-2, 2)
            r = rng.uniform(2.5, 4.0)
            nodules.append((cy, cx, r))
            nod_slices.append(i)
            diam.append(2 * r * 0.7)
            has[i] = True
        img, lab = draw_slice(size, nodules, rng)
        if nodules:  # the tight box of the drawn disk, as prepare and augment record it
            rows, cols = np.nonzero(lab == NODULE)
            bboxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
        images.append(img)
        labels.append(lab)
    columns = {
        "series": series,
        "z": np.tile(np.arange(per_series), n_series).astype(np.int32),
        "spacing": np.full((n, 2), 0.7 * 512 / size, np.float32),
        "split": (series % 4 >= 2).astype(np.uint8),
        "fold": (series % 10).astype(np.int8),
        "has_nodule": has,
    }
    if kind == "synthetic":
        columns.update(
            source=np.arange(n), seed=np.arange(n), verified=np.ones(n, bool), attempts=np.ones(n, np.int32), done=np.ones(n, bool)
        )
    columns.update(meta or {})
    images_a, labels_a = np.stack(images), np.stack(labels)
    for start in range(0, n, SHARD):
        block = {k: v[start : start + SHARD] for k, v in columns.items()}
        store.write_block(start, images_a[start : start + SHARD], labels_a[start : start + SHARD], block)
    table = empty_nodules(kind)  # type: ignore[arg-type]
    table["slice"] = np.array(nod_slices, np.int64)
    table["bbox"] = np.array(bboxes, np.float32).reshape(-1, 4)
    table["diameter_mm"] = np.array(diam, np.float32)
    if kind == "synthetic":
        table["requested_mm"] = table["diameter_mm"].copy()
        table["shape_source"] = np.full(len(nod_slices), NO_SOURCE, np.int64)
        table["size_source"] = np.full(len(nod_slices), NO_SOURCE, np.int64)
        table["lidc_annotation"] = np.full(table["slice"].shape, -1, dtype=np.int64)
        table.update(nodule_columns or {})
    store.finalize(n, [f"1.2.3.{s}" for s in range(n_series)], table, attrs)
    return path


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of a real store and two synthetic stores made from it (B, C), built once per session."""
    root = tmp_path_factory.mktemp("bench_stores")
    real = build_store(root / "real.zarr", "real", seed=0)
    return {
        "real": real,
        "B": build_store(root / "b.zarr", "synthetic", seed=1, made_from=real),
        "C": build_store(root / "c.zarr", "synthetic", seed=2, made_from=real),
    }


@pytest.fixture(scope="session")
def store_builder():
    """The :func:`build_store` function, for tests that need a store of their own."""
    return build_store
