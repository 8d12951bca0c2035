"""Shared fixtures: small phantom datasets in LUNA16 layout, written once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lungforge.data.phantom import make_phantom

PhantomFactory = Callable[..., Path]


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
