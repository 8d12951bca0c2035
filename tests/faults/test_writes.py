"""Writes that fail (issue 13, item 10): read-only output, full disk, an unbuildable checkpoint.

Each is one line naming the path and the problem, exit 1, and what was written stays resumable:
after "freeing space" `--resume` ends with the store an undisturbed run writes.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr.storage._local as zarr_local

from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.core.errors import OutputError
from lungforge.models.checkpoint import checkpoint_meta, save_checkpoint, write_safetensors
from lungforge.models.presets import SPADEConfig
from lungforge.models.spade import SPADEGenerator
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import is_store, open_store

OPTIONS = PrepareOptions(test_patients=1)
SPADE = SPADEConfig(image_size=32, ngf=4, ndf=4, label_hidden=8)


def fail_chunk_writes(monkeypatch: pytest.MonkeyPatch, code: int, after: int = 0, once: Path | None = None) -> None:
    """Make Zarr chunk writes raise OSError(`code`), as a full or read-only disk does: every one
    after the first `after`, and only once the file `once` exists (metadata writes pass)."""
    put = zarr_local._put
    count = [0]

    def failing_put(path: Path, value, exclusive: bool = False):
        if f"{os.sep}c{os.sep}" in str(path) and (once is None or once.exists()):
            count[0] += 1
            if count[0] > after:
                raise OSError(code, os.strerror(code), str(path))
        return put(path, value, exclusive=exclusive)

    monkeypatch.setattr(zarr_local, "_put", failing_put)


def arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a finished store, by name."""
    store = open_store(path)
    out = {"image": store.image[...], "label": store.label[...], "uids": np.asarray(store.series_uids)}
    for name in (
        "series",
        "z",
        "spacing",
        "split",
        "fold",
        "has_nodule",
        *(("source", "seed", "verified") if store.kind == "synthetic" else ()),
    ):
        out[name] = store.meta(name)
    out.update({f"nodules/{k}": v for k, v in store.nodules().items()})
    return out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_read_only_out_is_one_line(luna: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_chunk_writes(monkeypatch, errno.EROFS, after=0)
    out = luna.parent / "real.zarr"
    result = cli("prepare", luna, "--out", out)
    assert result.code == 1
    assert len(result.error_lines) == 1 and "Traceback" not in result.stderr
    assert f"{out}: cannot write" in result.stderr and "Read-only file system" in result.stderr


def test_disk_full_during_prepare_resumes_to_the_same_store(luna: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(luna, tmp_path / "clean.zarr", OPTIONS, shard_slices=4)
    out = tmp_path / "full.zarr"
    with monkeypatch.context() as patch:
        fail_chunk_writes(patch, errno.ENOSPC, after=20)  # past the first commit records
        with pytest.raises(OutputError) as caught:
            prepare(luna, out, OPTIONS, shard_slices=4)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{out}: cannot write") and "No space left on device" in message
    assert any((out / "parts").glob("*.npz")), "the shards written before the disk filled are committed"
    prepare(luna, out, OPTIONS, resume=True, shard_slices=4)
    assert_same(arrays(tmp_path / "clean.zarr"), arrays(out))


@pytest.fixture()
def augment_inputs(luna: Path, tmp_path: Path) -> dict[str, Path]:
    prepare(luna, tmp_path / "real.zarr", PrepareOptions(test_patients=1))
    torch.manual_seed(0)
    save_checkpoint(
        tmp_path / "spade",
        kind="spade",
        preset="tiny",
        model_config=SPADE,
        state_dict=SPADEGenerator(SPADE).state_dict(),
        step=0,
        store_fingerprint=None,
    )
    return {"real": tmp_path / "real.zarr", "spade": tmp_path / "spade"}


def _augment_options(inputs: dict[str, Path], out: Path, **extra) -> AugmentOptions:
    return AugmentOptions(
        data=inputs["real"],
        weights=str(inputs["spade"]),
        out=out,
        nodules=4,
        nodule_free=2,
        shape="sphere",
        diameter_mm=(15.0, 25.0),
        shard_size=2,
        device="cpu",
        retries=0,
        **extra,
    )


def test_disk_full_during_augment_resumes_to_the_same_store(augment_inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    augment(_augment_options(augment_inputs, tmp_path / "clean.zarr"))
    out = tmp_path / "full.zarr"
    with monkeypatch.context() as patch:
        fail_chunk_writes(patch, errno.ENOSPC, once=out / "parts" / "block-000001.npz")  # block 0 is done
        with pytest.raises(OutputError, match="No space left on device") as caught:
            augment(_augment_options(augment_inputs, out))
    assert "\n" not in str(caught.value) and str(out) in str(caught.value)
    assert open_store(out, require_complete=False).meta("done")[:2].all()
    report = augment(_augment_options(augment_inputs, out, resume=True))
    assert report.blocks_skipped >= 1
    assert_same(arrays(tmp_path / "clean.zarr"), arrays(out))


def test_checkpoint_with_negative_channels_is_one_line(augment_inputs, tmp_path: Path, cli) -> None:
    meta = checkpoint_meta(kind="spade", preset="tiny", model_config=SPADE, step=0, store_fingerprint=None)
    meta["model_config"]["ngf"] = -4
    weights = tmp_path / "negative.safetensors"
    write_safetensors(weights, SPADEGenerator(SPADE).state_dict(), meta)
    out = tmp_path / "synth.zarr"
    result = cli("augment", "--data", augment_inputs["real"], "--weights", weights, "--out", out, "--nodules", "2", "--device", "cpu")
    assert result.code == 1 and "Traceback" not in result.stderr
    assert result.error_lines == [f"error: checkpoint {weights}: invalid SPADEConfig: ngf must be > 0 (a whole number), got -4"]
    assert not out.exists() and is_store(augment_inputs["real"])
    assert json.loads((augment_inputs["real"] / "zarr.json").read_text())["attributes"]["complete"]


def test_store_creation_cut_short_leaves_no_store_and_resume_starts_clean(
    phantom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill during store creation (here: an interrupt after the first array) leaves nothing at
    --out, so `prepare --resume` starts afresh and ends equal to an undisturbed run."""
    import lungforge.store.create as store_module

    out = tmp_path / "real.zarr"
    build = store_module._build_empty
    calls = [0]

    def interrupted_build(path: Path, *args, **kwargs) -> None:
        calls[0] += 1
        build(path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "_build_empty", interrupted_build)
    with pytest.raises(KeyboardInterrupt):
        prepare(phantom_dir, out, OPTIONS)
    assert calls[0] == 1 and not out.exists()
    assert not list(tmp_path.glob(".real.zarr.creating-*"))
    monkeypatch.setattr(store_module, "_build_empty", build)

    prepare(phantom_dir, out, OPTIONS, resume=True)
    prepare(phantom_dir, tmp_path / "clean.zarr", OPTIONS)
    resumed, clean = open_store(out), open_store(tmp_path / "clean.zarr")
    assert np.array_equal(resumed.image[:], clean.image[:]) and np.array_equal(resumed.label[:], clean.label[:])
