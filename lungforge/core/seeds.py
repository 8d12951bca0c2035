"""The range every lungforge seed takes, checked where options enter the Python API."""

from __future__ import annotations

SEED_MAX = 2**63 - 1
"""Largest seed: numpy's SeedSequence refuses negative seeds and torch's `manual_seed` any over
2**64 - 1; the signed 64-bit bound also lets a seed be stored in an int64 array or tensor."""


def check_seed(seed: int, name: str = "seed") -> int:
    """Return `seed` when it is an integer in 0..SEED_MAX; raise ValueError naming it otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{name} must be an integer in 0..{SEED_MAX} (2**63 - 1), got {seed!r}")
    return seed
