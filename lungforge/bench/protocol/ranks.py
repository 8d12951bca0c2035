"""Sharing a benchmark's runs among torchrun ranks: each rank owns whole (fold, condition) runs of a
task (and of each learning-curve point), and every rank ends with every run's row.

Each run's row depends only on its (fold, condition), the seed and the stores, never on the process
that trains it, so a job of any size gives the rows of a single process (up to floating point
differences of a different thread count). The owner of a run also writes it to the fold log, so an
interrupted job resumes with any number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch.distributed as dist

from lungforge.core.errors import LungforgeError

Run = tuple[int, str]
"""One (fold, condition) run of a task."""


class RankFailed(LungforgeError):
    """Another rank of the job failed; its message is in this one."""


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) in the joined process group; (0, 1) when none is joined."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def owned(runs: Sequence[Run], rank: int, world: int) -> list[Run]:
    """The runs of `runs` that `rank` of `world` trains: every `world`-th one from index `rank`."""
    return list(runs[rank::world])


def run_shared(runs: Sequence[Run], run: Callable[[int, str], dict[str, Any]]) -> dict[Run, dict[str, Any]]:
    """`run(fold, condition)` for this rank's share of `runs`, then every rank's rows on every rank.

    An error on any rank is raised on every rank after the exchange (its own error on the rank that
    failed, :class:`RankFailed` naming it on the others), so no rank waits for a rank that died.
    """
    rank, world = rank_and_world()
    if world == 1:
        return {(fold, condition): run(fold, condition) for fold, condition in runs}
    rows: dict[Run, dict[str, Any]] = {}
    error: BaseException | None = None
    try:
        for fold, condition in owned(runs, rank, world):
            rows[(fold, condition)] = run(fold, condition)
    except Exception as exc:  # every rank must reach the exchange below, whatever stopped this one
        error = exc
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (rows, None if error is None else str(error)))
    if error is not None:
        raise error
    for other, (_, message) in enumerate(gathered):
        if message is not None:
            raise RankFailed(f"bench rank {other} of {world} failed: {message}")
    merged: dict[Run, dict[str, Any]] = {}
    for part, _ in gathered:
        merged.update(part)
    return merged
