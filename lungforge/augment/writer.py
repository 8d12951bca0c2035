"""Background commits of finished output blocks, so the sampling loop never waits on Zarr.

A block is committed in an order that makes a kill at any moment safe: image, label and meta
first, then the block's nodule rows as an atomic part file, and `meta/done` LAST. Resume
trusts a block only when its `done` flags are all set.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from lungforge.store import Store


def part_name(block: int) -> str:
    """Name of block `block`'s commit record in the store's `parts/`."""
    return f"block-{block:06d}"


@dataclass(frozen=True, eq=False)
class FinishedBlock:
    """One output block ready to commit: slices [start, start + n).

    image, label (n, H, W) uint8; meta: columns of the store schema except `done`;
    part: the block's nodule rows and per-slice verification record.
    """

    block: int
    start: int
    image: np.ndarray
    label: np.ndarray
    meta: dict[str, np.ndarray]
    part: dict[str, np.ndarray]


def commit_block(store: Store, block: FinishedBlock) -> None:
    """Write `block` to `store`: data and meta, then its part file, then `meta/done`."""
    store.write_block(block.start, block.image, block.label, block.meta)
    store.save_part(part_name(block.block), block.part)
    store.write_meta(block.start, {"done": np.ones(block.image.shape[0], dtype=bool)})


class BlockWriter:
    """Commits blocks on one background thread; `submit` blocks only when `max_pending` are queued.

    An error in the writer thread is raised in the caller at the next `submit` or at `close`.
    Leaving the context with an error still commits the blocks already submitted.
    """

    def __init__(self, store: Store, max_pending: int = 2) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.store = store
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lungforge-writer")
        self._pending: deque[Future[None]] = deque()

    def submit(self, block: FinishedBlock) -> None:
        """Queue `block` for commit, first waiting for the oldest commits if the queue is full."""
        while len(self._pending) >= self.max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(commit_block, self.store, block))

    def close(self) -> None:
        """Wait for every queued commit (raising the first error) and stop the thread."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
            return
        # The caller failed: still commit the blocks it finished (they are whole and valid), so a
        # resume has less to redo; their own errors give way to the caller's.
        for future in self._pending:
            future.exception()
        self._pending.clear()
        self._pool.shutdown(wait=True)
