"""Issue 19, items 13 and 14: out-of-range options refused before anything is made, one-line errors
for a truncated `zarr.json`, a full disk during export and `view --out DIR`, `prepare --workers`
capped at what can be used; issue 20: `phantom --size` bounded, `train --workers` capped. Each
test failed before the fix."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from lungforge.augment.options import AugmentOptions
from lungforge.bench.protocol.detect import DetectConfig
from lungforge.bench.protocol.localize import LocalizeConfig
from lungforge.bench.scoring.fid import FidConfig
from lungforge.bench.scoring.segmenter import SegmenterConfig
from lungforge.core import cpus
from lungforge.core.cpus import available_cpus, capped_workers
from lungforge.core.errors import ConfigError, OutputError, SchemaError
from lungforge.core.seeds import SEED_MAX, check_seed
from lungforge.export import ExportOptions, export_store
from lungforge.phantom.scans import make_phantom
from lungforge.preparation.pipeline import PrepareOptions, planned_workers, prepare
from lungforge.store import MAX_SLICES, create_store, open_store
from lungforge.training import run as training_run
from lungforge.view import MAX_SHEET_PX, ViewOptions, parse_index, sheet_capacity, sheet_pixels, write_view


# -- seeds --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [-1, SEED_MAX + 1, 2**64, True, 1.5])
def test_check_seed_refuses(seed) -> None:
    with pytest.raises(ValueError, match=r"seed must be an integer in 0\.\.9223372036854775807"):
        check_seed(seed)


def test_seed_bounds_reach_numpy_and_torch() -> None:
    import torch

    for seed in (0, SEED_MAX):
        assert check_seed(seed) == seed
        np.random.default_rng(seed).random()
        np.random.SeedSequence([seed, 1]).generate_state(1)
        assert torch.Generator().manual_seed(seed).initial_seed() == seed


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: PrepareOptions(seed=seed),
        lambda seed: AugmentOptions(data=Path("r"), weights="paste", out=Path("o"), nodules=1, seed=seed),
        lambda seed: ViewOptions(seed=seed),
        lambda seed: DetectConfig(seed=seed),
        lambda seed: LocalizeConfig(seed=seed),
        lambda seed: FidConfig(seed=seed),
        lambda seed: SegmenterConfig(seed=seed),
    ],
    ids=["prepare", "augment", "view", "detect", "localize", "fid", "segmenter"],
)
def test_options_refuse_a_negative_seed(make) -> None:
    make(0)
    with pytest.raises(ValueError, match="seed must be"):
        make(-1)


def test_phantom_refuses_a_negative_seed_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed must be"):
        make_phantom(tmp_path / "ph", scans=1, size=32, seed=-1)
    assert not (tmp_path / "ph").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["phantom", "OUT", "--scans", "1", "--size", "32", "--seed", "-1"],
        ["prepare", "LUNA", "--out", "OUT", "--seed", "-1"],
        ["augment", "--data", "REAL", "--weights", "paste", "--out", "OUT", "--nodules", "2", "--seed", "-1"],
        ["bench", "detect", "--real", "REAL", "--synthetic", "S=REAL", "--out", "OUT", "--seed", str(2**63)],
        ["view", "REAL", "--out", "OUT", "--random", "2", "--seed", "-1"],
        ["train", "sdm", "--data", "REAL", "--out", "OUT", "--seed", "-1"],
        ["augment", "--data", "REAL", "--weights", "paste", "--out", "OUT", "--nodules", str(10**12)],
        ["augment", "--data", "REAL", "--weights", "paste", "--out", "OUT", "--nodules", "2", "--size", "60000"],
        ["export", "REAL", "--format", "png", "--out", "OUT", "--size", "60000"],
        ["view", "REAL", "--out", "OUT", "--tile", "100000"],
        ["view", "REAL", "--out", "OUT", "--index", "0-99999999999"],
    ],
    ids=[
        "phantom-seed",
        "prepare-seed",
        "augment-seed",
        "bench-seed",
        "view-seed",
        "train-seed",
        "augment-nodules",
        "augment-size",
        "export-size",
        "view-tile",
        "view-index",
    ],
)
def test_cli_usage_errors_before_anything_is_made(cli, stores, luna, tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out"
    places = {"OUT": out, "REAL": stores["real"], "LUNA": luna}
    result = cli(*[places.get(a, a) for a in args])
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("out*"))


# -- sizes and slice counts -------------------------------------------------------------------------
def test_augment_options_bound_slices_and_size() -> None:
    base = dict(data=Path("r"), weights="paste", out=Path("o"))
    AugmentOptions(**base, nodules=MAX_SLICES)
    with pytest.raises(ValueError, match="at most 10,000,000 slices"):
        AugmentOptions(**base, nodules=MAX_SLICES, nodule_free=1)
    AugmentOptions(**base, nodules=1, size=2048)
    with pytest.raises(ValueError, match=r"size must be 16\.\.2048 pixels, got 60000"):
        AugmentOptions(**base, nodules=1, size=60000)


def test_export_options_bound_size() -> None:
    ExportOptions(format="png", size=2048)
    with pytest.raises(ValueError, match=r"size must be 8\.\.2048 px, got 60000"):
        ExportOptions(format="png", size=60000)


def test_phantom_size_bounded_by_the_api_and_the_cli(cli, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^size must be 32\.\.2048 pixels, got 60000$") as caught:
        make_phantom(tmp_path / "api", scans=1, size=60000)
    assert caught.value.field == "size"
    result = cli("phantom", tmp_path / "cli", "--size", "2049")
    assert result.code == 2 and "--size" in result.stderr and "2048" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_create_store_refuses_more_than_a_store_holds(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="at most 10,000,000 slices"):
        create_store(tmp_path / "big.zarr", kind="synthetic", height=8, width=8, capacity=10**12, params={})
    assert list(tmp_path.iterdir()) == []


# -- truncated metadata ---------------------------------------------------------------------------
@pytest.mark.parametrize("array", ["image", "meta/split", "nodules/bbox", "series/uid"])
def test_truncated_array_metadata_is_one_schema_error(stores, tmp_path: Path, array: str) -> None:
    copy = Path(shutil.copytree(stores["real"], tmp_path / "real.zarr"))
    meta = copy / array / "zarr.json"
    meta.write_bytes(meta.read_bytes()[: meta.stat().st_size // 2])
    with pytest.raises(SchemaError, match=f"unreadable metadata {array}/zarr.json"):
        open_store(copy)


def test_info_on_a_truncated_array_zarr_json(cli, stores, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(stores["real"], tmp_path / "real.zarr"))
    meta = copy / "image" / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:100])
    result = cli("info", copy)
    assert result.code == 1
    assert result.error_lines == [f"error: {copy}: unreadable metadata image/zarr.json " + result.error_lines[0].split("zarr.json ", 1)[1]]


# -- view -----------------------------------------------------------------------------------------
def test_parse_index_counts_before_expanding() -> None:
    with pytest.raises(ValueError, match="index lists 100,000,000,000 slices, more than the 10"):
        parse_index("0-99999999999", max_items=10)
    assert parse_index("0-9", max_items=10) == tuple(range(10))


def test_sheet_bounds() -> None:
    assert sheet_pixels(1, 256, 4) <= MAX_SHEET_PX
    with pytest.raises(ValueError, match="--tile 100000 px"):
        ViewOptions(tile_px=100000)
    with pytest.raises(ValueError, match="--tile 100000 px"):
        sheet_capacity(100000)
    capacity = sheet_capacity(256)
    assert sheet_pixels(capacity + 1, 256, 1) > MAX_SHEET_PX
    with pytest.raises(ValueError, match="PNG readers accept"):
        ViewOptions(index=tuple(range(capacity + 1)), tile_px=256, columns=4)


def test_view_into_a_folder_names_it_and_writes_nothing(stores, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=f"^{tmp_path}: is a folder"):
        write_view(stores["real"], tmp_path, ViewOptions(limit=2, tile_px=32))
    assert list(tmp_path.iterdir()) == []


def test_view_failed_write_leaves_no_temp_file(stores, tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    def full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(OutputError, match=r"sheet\.png: cannot write \(No space left on device\)"):
        write_view(stores["real"], tmp_path / "sheet.png", ViewOptions(limit=2, tile_px=32))
    assert list(tmp_path.iterdir()) == []


# -- export ---------------------------------------------------------------------------------------
def test_export_disk_full_removes_partial_and_names_the_export(stores, tmp_path: Path, monkeypatch) -> None:
    from lungforge.export.png import PngWriter

    written = []

    def add(self, item):
        written.append(item)
        if len(written) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(PngWriter, "add", add)
    out = tmp_path / "png"
    with pytest.raises(OutputError, match=rf"^{out}: cannot write \(No space left on device\); nothing was exported"):
        export_store(stores["real"], out, ExportOptions(format="png"))
    # Only the export's empty OS lock file stays beside it (it never blocks a later export).
    assert [p.name for p in tmp_path.iterdir()] == ["png.lock"]


def test_export_error_starts_without_an_empty_line(cli, stores, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    result = cli("export", stores["real"], "--format", "png", "--out", tmp_path / "mine")
    assert result.code == 1
    assert result.stderr.startswith("error: ")


# -- prepare --workers ------------------------------------------------------------------------------
def test_workers_capped_at_cpus_and_scans(luna, tmp_path: Path) -> None:
    scans = len(list(luna.glob("subset*/*.mhd")))
    assert planned_workers(luna, PrepareOptions(workers=64)) == min(available_cpus(), scans)
    assert planned_workers(luna, PrepareOptions(workers=64, limit=1)) == 1
    assert planned_workers(luna, PrepareOptions(workers=1)) == 1
    report = prepare(luna, tmp_path / "r.zarr", PrepareOptions(workers=64, test_patients=0, limit=1))
    assert report.workers == 1


def test_prepare_cli_notes_the_cap(cli, luna, tmp_path: Path) -> None:
    result = cli("prepare", luna, "--out", tmp_path / "r.zarr", "--test-patients", "1", "--limit", "2", "--workers", "64")
    assert result.code == 0
    cap = min(available_cpus(), 2)
    assert f"note: --workers 64: using {cap} (one per CPU and per scan; {available_cpus()} CPUs)" in result.stderr


# -- train --workers --------------------------------------------------------------------------------
def test_dataloader_workers_capped_at_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "available_cpus", lambda: 3)
    assert [capped_workers(n) for n in (0, 2, 3, 64)] == [0, 2, 3, 3]


def test_train_runs_capped_workers_and_notes_it(cli, stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "available_cpus", lambda: 1)
    workers: list[int] = []
    batches = training_run.train_batches

    def spy(slices, spec, **kwargs):
        workers.append(spec.workers)
        return batches(slices, spec, **kwargs)

    monkeypatch.setattr(training_run, "train_batches", spy)
    result = cli(
        "train",
        "spade",
        "--data",
        stores["real"],
        "--out",
        tmp_path / "run",
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--grid-samples",
        "1",
        "--workers",
        "64",
        "--device",
        "cpu",
    )
    assert result.code == 0, result.stderr
    assert "note: --workers 64: using 1 (one per CPU; 1 CPUs)" in result.stderr
    assert workers == [1]


# -- epochs and steps (issue 27, item 4) --------------------------------------------------------------
class _RecordingProgress:
    """A stand-in for the CLI's progress bar that records what a task announces and advances."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.console = self

    def print(self, message: str) -> None:
        self.events.append(("print", message))

    def add_task(self, name: str, total: int, status: str = "", completed: int = 0) -> int:
        self.events.append(("total", total))
        return 0

    def update(self, task: int, **fields: object) -> None:
        self.events.append(("update", fields.get("status")))

    def advance(self, task: int, steps: int = 1) -> None:
        self.events.append(("advance", steps))


@pytest.mark.parametrize("config", [DetectConfig, LocalizeConfig])
def test_bench_epochs_are_capped(config) -> None:
    with pytest.raises(ConfigError, match=r"^epochs must be in 1..10000, got 99999999999999999999$"):
        config(epochs=99999999999999999999)
    with pytest.raises(ConfigError, match=r"^steps must be in 1..10000000, got 10000001$"):
        SegmenterConfig(steps=10_000_001)


def test_bench_epochs_without_bound_are_bad_usage(cli, stores) -> None:
    result = cli("bench", "detect", "--real", stores["real"], "--epochs", "99999999999999999999")
    message = " ".join(result.stderr.split())
    assert result.code == 2 and "Invalid value for '--epochs'" in message and "10000" in message  # the CLI's bound is the config's


def test_bench_prints_its_planned_steps_before_training(stores) -> None:
    import dataclasses

    import torch

    from lungforge.bench.protocol.detect import run_detect
    from lungforge.bench.protocol.inputs import open_real

    config = dataclasses.replace(DetectConfig.quick_preset(size=64), epochs=1)
    progress = _RecordingProgress()
    result = run_detect(open_real(stores["real"]), {}, config, torch.device("cpu"), None, progress)
    taken = sum(row["optimizer_steps"] for row in result.folds["A"])
    assert progress.events[0] == ("total", taken)
    assert progress.events[1] == ("print", f"detect: 2 trainings (folds × conditions), {taken:,} optimiser steps planned")
    assert [steps for kind, steps in progress.events if kind == "advance"] == [row["optimizer_steps"] for row in result.folds["A"]]
