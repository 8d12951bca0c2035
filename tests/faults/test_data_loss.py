"""Issue 13, items 1-5: faults that lost or silently mixed data. Each test failed before the fix.

Setup as in the issue: a 6-scan 64-px phantom prepared with 2 test patients; random-init
micro SDM checkpoints (fast on CPU) as generators.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.core.errors import CorruptStoreError, InputError, LockError, SchemaError
from lungforge.core.locks import lock_path
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import count_store, open_store
from lungforge.store.verify import verify_store

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ph(phantom_factory) -> Path:
    return phantom_factory(scans=6, size=64, seed=0)


@pytest.fixture(scope="module")
def real(ph, tmp_path_factory) -> Path:
    """`lungforge prepare ph --out real.zarr --test-patients 2` (treat as read-only; copy to damage)."""
    out = tmp_path_factory.mktemp("faults") / "real.zarr"
    prepare(ph, out, PrepareOptions(test_patients=2))
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """Two random-init 64-px micro SDM checkpoint dirs with different weights ("a", "b")."""
    import torch

    from lungforge.models.checkpoint import save_checkpoint
    from lungforge.models.presets import SDMConfig
    from lungforge.models.sdm_unet import SDMUNet

    root = tmp_path_factory.mktemp("fault_weights")
    config = SDMConfig(
        image_size=64,
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_head_channels=8,
        norm_groups=4,
        label_embed_channels=8,
    )
    out = {}
    for seed, name in enumerate("ab"):
        torch.manual_seed(seed)
        out[name] = save_checkpoint(
            root / name,
            kind="sdm",
            preset="tiny",
            model_config=config,
            state_dict=SDMUNet(config).state_dict(),
            step=0,
            store_fingerprint=None,
        )
    return out


def _options(data: Path, weights: Path, out: Path, **kw) -> AugmentOptions:
    base = dict(nodule_free=8, steps=2, shard_size=4, batch_size=4, device="cpu", seed=3)
    return AugmentOptions(data=data, weights=str(weights), out=out, **{**base, **kw})


def _snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes."""
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


class _Killed(Exception):
    pass


def _kill_after_first_block(done: int, total: int, sampled: int) -> None:
    if done >= 4:
        raise _Killed


def _killed_run(options: AugmentOptions) -> None:
    with pytest.raises(_Killed):
        augment(options, progress=_kill_after_first_block)
    assert open_store(options.out, require_complete=False).meta("done").tolist() == [True] * 4 + [False] * 4


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lungforge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})},
    )


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


# -- item 1: augment never writes over its inputs or over real data -----------------------------


def test_augment_out_equal_to_data_is_refused_and_real_store_untouched(real, weights, tmp_path):
    victim = tmp_path / "real.zarr"
    shutil.copytree(real, victim)
    before = _snapshot(victim)
    with pytest.raises(InputError, match="--out .* is --data"):
        augment(_options(victim, weights["a"], victim, overwrite=True))
    assert _snapshot(victim) == before
    assert open_store(victim).kind == "real"


@pytest.mark.parametrize("relation", ["inside data", "contains data", "inside weights"])
def test_augment_out_overlapping_an_input_is_refused(real, weights, tmp_path, relation):
    data = tmp_path / "in" / "real.zarr"
    shutil.copytree(real, data)
    run_dir = tmp_path / "weights"
    shutil.copytree(weights["a"], run_dir)
    out = {"inside data": data / "synth.zarr", "contains data": tmp_path / "in", "inside weights": run_dir / "synth.zarr"}[relation]
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match="augment never writes over its inputs"):
        augment(_options(data, run_dir, out, overwrite=True))
    assert _snapshot(tmp_path) == before  # not even a lock file is left inside an input


def test_augment_overwrite_of_another_real_store_is_refused(real, weights, tmp_path):
    other = tmp_path / "other_real.zarr"
    shutil.copytree(real, other)
    before = _snapshot(other)
    with pytest.raises(SchemaError, match="is a real store; augment never overwrites real data"):
        augment(_options(real, weights["a"], other, overwrite=True))
    assert _snapshot(other) == before


# -- item 2: prepare --resume checks its inputs -------------------------------------------------


def _killed_prepare(ph_copy: Path, out: Path) -> None:
    """A prepare run killed after its first shard (shards of 8 slices), resumable."""
    from lungforge.preparation import writer as prepare_module

    original = prepare_module.ShardWriter._flush

    def flush_then_die(self, count, next_scan_if_empty):
        original(self, count, next_scan_if_empty)
        raise _Killed

    prepare_module.ShardWriter._flush = flush_then_die
    try:
        with pytest.raises(_Killed):
            prepare(ph_copy, out, PrepareOptions(test_patients=2), shard_slices=8)
    finally:
        prepare_module.ShardWriter._flush = original
    assert not open_store(out, require_complete=False).attrs["complete"]


def _scan_files(root: Path) -> list[Path]:
    return sorted((root / "subset0").glob("*.mhd"))


def _add_scan_copy(root: Path, mhd: Path, uid: str = "1.0") -> None:
    """Copy scan `mhd` and its seg mask under `uid` (which sorts before every LUNA16 uid)."""
    for folder in (mhd.parent, root / "seg-lungs-LUNA16"):
        for file in folder.glob(f"{mhd.stem}.*"):
            target = folder / (uid + file.name[len(mhd.stem) :])
            if file.suffix == ".mhd":
                target.write_text(file.read_text().replace(mhd.stem, uid))
            else:
                shutil.copy(file, target)


@pytest.mark.parametrize("change", ["added", "removed", "data changed", "annotations changed"])
def test_prepare_resume_refuses_other_inputs(ph, tmp_path, change):
    root = tmp_path / "ph"
    shutil.copytree(ph, root)
    out = tmp_path / "real.zarr"
    _killed_prepare(root, out)
    first = _scan_files(root)[0]
    if change == "added":
        _add_scan_copy(root, first)
    elif change == "removed":
        raw = first.with_suffix(".raw")
        first.unlink()
        raw.unlink()
    elif change == "data changed":
        raw = first.with_suffix(".raw")
        data = bytearray(raw.read_bytes())
        data[:4] = b"\x00\x01\x02\x03"
        raw.write_bytes(bytes(data))
        os.utime(raw, ns=(raw.stat().st_atime_ns, raw.stat().st_mtime_ns + 10**9))
    else:
        with open(root / "annotations.csv", "a") as fh:
            fh.write(f"{first.stem},0,0,0,5\n")
    before = _snapshot(out)
    with pytest.raises(InputError, match=f"cannot --resume from .*{change.split()[-1]}"):
        prepare(root, out, PrepareOptions(test_patients=2), resume=True, shard_slices=8)
    assert _snapshot(out) == before


def test_prepare_resume_with_same_inputs_still_finishes_identically(ph, tmp_path):
    clean = tmp_path / "clean.zarr"
    prepare(ph, clean, PrepareOptions(test_patients=2), shard_slices=8)
    out = tmp_path / "real.zarr"
    _killed_prepare(ph, out)
    prepare(ph, out, PrepareOptions(test_patients=2), resume=True, shard_slices=8)
    a, b = open_store(clean), open_store(out)
    np.testing.assert_array_equal(a.image[...], b.image[...])
    np.testing.assert_array_equal(a.label[...], b.label[...])
    assert a.series_uids == b.series_uids


def test_prepare_resume_with_added_scan_is_one_line_on_the_cli(ph, tmp_path):
    root = tmp_path / "ph"
    shutil.copytree(ph, root)
    out = tmp_path / "real.zarr"
    _killed_prepare(root, out)
    _add_scan_copy(root, _scan_files(root)[0])
    result = _cli("prepare", str(root), "--out", str(out), "--test-patients", "2", "--resume")
    assert result.returncode == 1
    assert "1 scans were added" in _one_line_error(result)


# -- item 3: augment --resume checks the weights' sha256 and the real store's fingerprint -------


def test_augment_resume_with_other_weights_is_refused(real, weights, tmp_path):
    options = _options(real, weights["a"], tmp_path / "synth.zarr")
    _killed_run(options)
    before = _snapshot(options.out)
    # same name on disk, other bytes: the sha256 decides, not the name
    renamed = tmp_path / "a"
    shutil.copytree(weights["b"], renamed)
    with pytest.raises(SchemaError, match="was started with weights .* sha256"):
        augment(dataclasses.replace(options, weights=str(renamed), resume=True))
    assert _snapshot(options.out) == before


def test_augment_resume_with_other_real_store_is_refused(real, weights, phantom_factory, tmp_path):
    other = tmp_path / "other.zarr"
    prepare(phantom_factory(scans=6, size=64, seed=1), other, PrepareOptions(test_patients=2))
    options = _options(real, weights["a"], tmp_path / "synth.zarr")
    _killed_run(options)
    before = _snapshot(options.out)
    with pytest.raises(SchemaError, match="was started from real store .* fingerprint"):
        augment(dataclasses.replace(options, data=other, resume=True))
    assert _snapshot(options.out) == before


def test_augment_resume_with_same_weights_under_another_path_finishes(real, weights, tmp_path):
    options = _options(real, weights["a"], tmp_path / "synth.zarr")
    _killed_run(options)
    copy = tmp_path / "copy_of_a"
    shutil.copytree(weights["a"], copy)
    report = augment(dataclasses.replace(options, weights=str(copy), resume=True))
    assert report.written_this_run == 4 and open_store(options.out).meta("done").all()


# -- item 4: stores detect corruption -----------------------------------------------------------


def test_new_stores_checksum_every_chunk(real):
    for name in ("image", "label", "meta/split", "series/uid"):
        meta = json.loads((real / name / "zarr.json").read_text())
        codecs = meta["codecs"][0]["configuration"]["codecs"] if name in ("image", "label") else meta["codecs"]
        assert [c["name"] for c in codecs][-1] == "crc32c", name


def test_deleted_shard_is_an_error_not_zeros(real, tmp_path):
    damaged = tmp_path / "real.zarr"
    shutil.copytree(real, damaged)
    (damaged / "image" / "c" / "0" / "0" / "0").unlink()
    store = open_store(damaged)
    with pytest.raises(CorruptStoreError, match=r"chunk image/c/0/0/0 is missing"):
        store.read(0)
    (damaged / "meta" / "fold" / "c" / "0").unlink()
    with pytest.raises(CorruptStoreError, match=r"chunk meta/fold/c/0 is missing"):
        count_store(open_store(damaged))


def test_overwritten_bytes_fail_the_checksum(real, tmp_path):
    damaged = tmp_path / "real.zarr"
    shutil.copytree(real, damaged)
    shard = damaged / "label" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[40:44] = bytes(255 - b for b in data[40:44])
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError, match="label.* fails its crc32c checksum"):
        np.asarray(open_store(damaged).label[...])


def test_verify_reads_every_chunk_and_names_the_damage(real, tmp_path):
    assert verify_store(real).ok
    damaged = tmp_path / "real.zarr"
    shutil.copytree(real, damaged)
    shard = damaged / "image" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[40:44] = bytes(255 - b for b in data[40:44])
    shard.write_bytes(bytes(data))
    (damaged / "meta" / "z" / "c" / "0").unlink()
    result = verify_store(damaged)
    assert not result.ok
    assert any(p.startswith("image: chunk 0 (slice 0) in shard image/c/0/0/0") for p in result.problems), result.problems
    assert any(p.startswith("meta/z: meta/z/c/0") and "missing" in p for p in result.problems), result.problems


def test_verify_checks_counts_against_metadata(real, tmp_path):
    damaged = tmp_path / "real.zarr"
    shutil.copytree(real, damaged)
    store = open_store(damaged, "r+")
    has = store.meta("has_nodule").copy()
    row = int(np.flatnonzero(has)[0])
    has[row] = False
    store.write_meta(0, {"has_nodule": has})
    problems = verify_store(damaged).problems
    assert any(p.startswith("meta/has_nodule:") and f"first slice {row}" in p for p in problems), problems
    assert any(p.startswith("nodules/slice:") for p in problems), problems


def test_info_verify_exit_codes(real, tmp_path):
    ok = _cli("info", str(real), "--verify", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["verify"]["ok"] is True
    damaged = tmp_path / "real.zarr"
    shutil.copytree(real, damaged)
    (damaged / "label" / "c" / "0" / "0" / "0").unlink()
    bad = _cli("info", str(damaged), "--verify")
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert "damaged:" in bad.stderr and "label: label/c/0/0/0" in bad.stderr


# -- item 5: concurrent writers -----------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import sys
    from filelock import FileLock
    lock = FileLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def hold_in_other_process():
    """`hold(lock_file)` starts a process holding that lock; returns it (kill it to release)."""
    started: list[subprocess.Popen] = []

    def hold(lock_file: Path) -> subprocess.Popen:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in started:
        proc.kill()
        proc.wait()


def test_second_augment_into_same_out_is_refused_and_stale_lock_is_not(real, weights, tmp_path, hold_in_other_process):
    options = _options(real, weights["a"], tmp_path / "synth.zarr")
    holder = hold_in_other_process(lock_path(options.out))
    with pytest.raises(LockError, match="another lungforge process is writing this store"):
        augment(options)
    assert not options.out.exists()
    holder.kill()  # kill -9 of the first writer: its lock file stays, its lock does not
    holder.wait()
    assert lock_path(options.out).exists()
    assert augment(options).slices == 8


def test_second_prepare_into_same_out_is_refused(ph, tmp_path, hold_in_other_process):
    out = tmp_path / "real.zarr"
    hold_in_other_process(lock_path(out))
    with pytest.raises(LockError, match="another lungforge process is writing this store"):
        prepare(ph, out, PrepareOptions(test_patients=2))
    assert not out.exists()


def test_weights_import_waits_for_the_registry_lock(weights, tmp_path, monkeypatch, hold_in_other_process):
    from lungforge.models import catalog as registry_module
    from lungforge.models.catalog import WeightsRegistry

    home = tmp_path / "home"
    registry = WeightsRegistry(home=home)
    holder = hold_in_other_process(home / "locks" / "registry.lock")
    monkeypatch.setattr(registry_module, "LOCK_TIMEOUT_S", 0.2)
    with pytest.raises(LockError, match="weights registry"):
        registry.import_checkpoint(weights["a"], "mine")
    assert not registry.user_registry.exists()
    holder.kill()
    holder.wait()
    entry = registry.import_checkpoint(weights["a"], "mine")
    assert registry.check(entry).status == "ok"


@pytest.mark.slow
def test_two_concurrent_weights_imports_one_wins(weights, tmp_path):
    home = tmp_path / "home"
    env = {"LUNGFORGE_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lungforge", "weights", "import", str(weights[w]), "--name", "same"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env},
        )
        for w in "ab"
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    assert any("already exist" in err for rc, err in results if rc == 1), results
    from lungforge.models.catalog import WeightsRegistry

    registry = WeightsRegistry(home=home)
    assert registry.check(registry.entry("same")).status == "ok"


def test_weights_pull_waits_for_another_download_of_the_same_name(weights, tmp_path, monkeypatch, hold_in_other_process):
    import hashlib

    from lungforge.models import catalog as registry_module
    from lungforge.models.catalog import WeightsRegistry

    source = weights["a"] / "model.safetensors"
    data = source.read_bytes()
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        f'[weights.remote]\nkind = "sdm"\npreset = "tiny"\nurl = "{source.as_uri()}"\n'
        f'sha256 = "{hashlib.sha256(data).hexdigest()}"\nsize = {len(data)}\n'
    )
    home = tmp_path / "home"
    registry = WeightsRegistry(home=home, manifest=manifest)
    holder = hold_in_other_process(home / "locks" / "remote.download.lock")
    monkeypatch.setattr(registry_module, "LOCK_TIMEOUT_S", 0.2)
    with pytest.raises(LockError, match="weights download"):
        registry.pull("remote")
    assert not registry.cache_path("remote").exists()
    holder.kill()
    holder.wait()
    assert registry.pull("remote").read_bytes() == data
