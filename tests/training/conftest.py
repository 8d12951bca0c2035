"""A real store built once per session: phantom LUNA16 (4 scans, 64 px) → prepare."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungforge.data.phantom import make_phantom
from lungforge.data.prepare import PrepareOptions, prepare


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """Path of a complete 64×64 store with a train split (3 patients) and a test split (1 patient)."""
    root = tmp_path_factory.mktemp("tiny_store")
    make_phantom(root / "luna16", scans=4, size=64, seed=0)
    prepare(root / "luna16", root / "real.zarr", PrepareOptions(test_patients=0.25))
    return root / "real.zarr"
