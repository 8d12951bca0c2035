"""augment holds its --data store shared while it reads it (issue 19, item 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lungforge.augment.generate import augment
from lungforge.augment.inputs import load_inputs
from lungforge.augment.options import AugmentOptions
from lungforge.core.errors import LockError
from lungforge.core.locks import hold_lock
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import open_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _options(real: Path, weights: Path, out: Path) -> AugmentOptions:
    return AugmentOptions(
        data=real,
        weights=str(weights),
        out=out,
        nodules=2,
        nodule_free=1,
        diameter_mm=(15.0, 30.0),
        shape="sphere",
        batch_size=3,
        shard_size=4,
        device="cpu",
        seed=7,
    )


@pytest.fixture()
def real(prepared_store, tmp_path) -> Path:
    return Path(shutil.copytree(prepared_store, tmp_path / "real.zarr"))


def test_prepare_overwrite_of_the_data_being_read_is_refused_and_leaves_it_alone(real, phantom_factory, micro_weights, tmp_path):
    inputs = load_inputs(_options(real, micro_weights["spade"], tmp_path / "s.zarr"), torch.device("cpu"))
    fingerprint = inputs.real.fingerprint()
    luna = phantom_factory(scans=4, size=64, seed=0)  # the phantom `prepared_store` was prepared from
    with pytest.raises(LockError, match=r"real\.zarr: another lungforge process is reading this store"):
        prepare(luna, real, PrepareOptions(test_patients=0.25, seed=5), overwrite=True)
    assert open_store(real).fingerprint() == fingerprint and not any(tmp_path.glob(".real.zarr.*"))
    inputs.real.close()
    with hold_lock(real, "store"):
        pass


def test_augment_refuses_data_that_is_being_written_and_releases_it_when_done(real, micro_weights, tmp_path):
    out = tmp_path / "s.zarr"
    with hold_lock(real, "store"), pytest.raises(LockError, match=r"real\.zarr: another lungforge process is writing this store"):
        augment(_options(real, micro_weights["spade"], out))
    assert not out.exists()
    augment(_options(real, micro_weights["spade"], out))
    with hold_lock(real, "store"):  # free once augment returned
        pass
