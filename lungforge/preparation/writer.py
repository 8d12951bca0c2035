"""Streaming prepared scans into the store in whole shards, with a commit record after each."""

from __future__ import annotations

import json
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.core.errors import ScanError
from lungforge.preparation.scan_recipe import ScanSlices
from lungforge.store import SPLIT_IDS, Store, open_store


def _write_slices(task: tuple[Path, int, np.ndarray, np.ndarray]) -> None:
    """Worker task: compress and write one block's images and labels (whole shards it owns)."""
    path, start, image, label = task
    open_store(path, mode="r+", require_complete=False).write_slices(start, image, label)


NODULE_RECORD = 8
"""Columns of a committed nodule row: slice, x0, y0, x1, y1, diameter mm, series id, annotation index."""


def _with_nodule_columns(rows: np.ndarray) -> np.ndarray:
    """Commit rows of a writer from before nodule ids (6 columns) get series -1 and a distinct
    negative annotation index per row, so each such row counts as its own nodule."""
    if rows.shape[1] == NODULE_RECORD:
        return rows
    own = -1.0 - rows[:, 0:1]
    return np.hstack([rows, np.full_like(own, -1.0), own])


# Blocks handed to the pool but not yet committed; more make the main process wait (memory bound).
MAX_PENDING_WRITES = 2


class ShardWriter:
    """Buffers scan results and writes them in whole shards with a commit record after each."""

    def __init__(self, store: Store, n_scans: int, test_uids: set[str], folds: dict[str, int], pool: ProcessPoolExecutor | None = None):
        self.store = store
        self.pool = pool
        self.commits: deque[tuple[Future | None, str, dict[str, np.ndarray]]] = deque()
        self.shard = store.shard_slices
        self.test_uids = test_uids
        self.folds = folds
        self.n_scans = n_scans
        self.written = 0
        self.series_uids: list[str] = []
        self.skipped: list[tuple[int, str, str]] = []
        self.lost: list[tuple[int, dict[str, Any]]] = []  # (scan index, lost nodule)
        self.nodules: list[np.ndarray] = []  # committed rows: slice, x0, y0, x1, y1, diameter, series id, annotation index
        self.buffer: list[tuple[int, int, ScanSlices, int]] = []  # (scan index, offset, result, series id)
        self.buffered = 0
        self.flushes = 0

    def restore(self) -> tuple[int, int]:
        """Load commit records; returns (next scan index, slices of it already written)."""
        parts = self.store.load_parts()
        if not parts:
            return 0, 0
        last = parts[max(parts)]
        self.written = int(last["written"])
        self.series_uids = [str(u) for u in last["series_uids"]]
        self.skipped = [(int(i), str(f), str(r)) for i, f, r in zip(last["skipped_index"], last["skipped_file"], last["skipped_reason"])]
        if "lost_json" in last:
            self.lost = [(int(i), json.loads(str(text))) for i, text in zip(last["lost_index"], last["lost_json"])]
        self.nodules = [_with_nodule_columns(p["nodules"]) for _, p in sorted(parts.items())]
        self.flushes = len(parts)
        return int(last["next_scan"]), int(last["next_offset"])

    def add(self, index: int, result: ScanSlices | ScanError, offset: int = 0) -> None:
        if isinstance(result, ScanError):
            file, _, reason = str(result).partition(": ")
            self.skipped.append((index, file, reason or str(result)))
            return
        if offset == 0:
            self.series_uids.append(result.uid)
            self.lost += [(index, nodule) for nodule in result.lost]
        series_id = self.series_uids.index(result.uid)
        if len(result.z) > offset:
            self.buffer.append((index, offset, result, series_id))
            self.buffered += len(result.z) - offset
        while self.buffered >= self.shard:
            self._flush(self.shard * (self.buffered // self.shard), next_scan_if_empty=index + 1)
        self._commit(keep=MAX_PENDING_WRITES)

    def finish(self) -> None:
        if self.buffered:
            self._flush(self.buffered, next_scan_if_empty=self.n_scans)
        self._commit(keep=0)

    def _commit(self, keep: int) -> None:
        """Save, in order, the commit records of written blocks; wait until at most `keep` are pending."""
        while self.commits and (len(self.commits) > keep or self.commits[0][0] is None or self.commits[0][0].done()):
            written, name, record = self.commits.popleft()
            if written is not None:
                written.result()
            self.store.save_part(name, record)

    def _flush(self, count: int, next_scan_if_empty: int) -> None:
        images: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        meta_cols: dict[str, list[np.ndarray]] = {k: [] for k in ("series", "z", "spacing", "split", "fold", "has_nodule")}
        rows: list[tuple[float, ...]] = []
        taken = 0
        while taken < count:
            index, offset, res, series_id = self.buffer[0]
            n = min(len(res.z) - offset, count - taken)
            sl = slice(offset, offset + n)
            images.append(res.image[sl])
            labels.append(res.label[sl])
            meta_cols["series"].append(np.full(n, series_id))
            meta_cols["z"].append(res.z[sl])
            meta_cols["spacing"].append(np.tile(res.spacing_rc_mm, (n, 1)))
            meta_cols["split"].append(np.full(n, SPLIT_IDS["test"] if res.uid in self.test_uids else SPLIT_IDS["train"]))
            meta_cols["fold"].append(np.full(n, self.folds[res.uid]))
            meta_cols["has_nodule"].append(res.has_nodule[sl])
            for k, bbox, diam, annotation in res.nodule_rows:
                if offset <= k < offset + n:
                    rows.append((self.written + taken + k - offset, *bbox, diam, series_id, annotation))
            taken += n
            if offset + n == len(res.z):
                self.buffer.pop(0)
            else:
                self.buffer[0] = (index, offset + n, res, series_id)
        start = self.written
        image, label = np.concatenate(images), np.concatenate(labels)
        self.store.write_meta(start, {k: np.concatenate(v) for k, v in meta_cols.items()})
        if self.pool is None:
            self.store.write_slices(start, image, label)
            written = None
        else:
            written = self.pool.submit(_write_slices, (self.store.path, start, image, label))
        self.written += count
        self.buffered -= count
        next_scan, next_offset = (self.buffer[0][0], self.buffer[0][1]) if self.buffer else (next_scan_if_empty, 0)
        # Series known at resume: all before the first buffered scan, plus that scan if some of
        # its slices are already written (resume continues it at `next_offset`).
        known = self.buffer[0][3] + (next_offset > 0) if self.buffer else len(self.series_uids)
        done_series = self.series_uids[:known]
        nodules = np.asarray(rows, dtype=np.float64).reshape(-1, NODULE_RECORD)
        self.nodules.append(nodules)
        skipped = [s for s in self.skipped if s[0] < next_scan]
        lost = [n for n in self.lost if n[0] < next_scan]
        self.commits.append(
            (
                written,
                f"flush-{self.flushes:06d}",
                {
                    "written": np.asarray(self.written, dtype=np.int64),
                    "next_scan": np.asarray(next_scan, dtype=np.int64),
                    "next_offset": np.asarray(next_offset, dtype=np.int64),
                    "series_uids": np.asarray(done_series, dtype=str),
                    "nodules": nodules,
                    "skipped_index": np.asarray([s[0] for s in skipped], dtype=np.int64),
                    "skipped_file": np.asarray([s[1] for s in skipped], dtype=str),
                    "skipped_reason": np.asarray([s[2] for s in skipped], dtype=str),
                    "lost_index": np.asarray([n[0] for n in lost], dtype=np.int64),
                    "lost_json": np.asarray([json.dumps(n[1]) for n in lost], dtype=str),
                },
            )
        )
        self.flushes += 1

    def nodule_table(self) -> dict[str, np.ndarray]:
        """The store's nodule table; `nodule` numbers the (series, annotation) pairs in that order."""
        rows = np.concatenate(self.nodules) if self.nodules else np.zeros((0, NODULE_RECORD))
        _, nodule = np.unique(rows[:, 6:8].astype(np.int64), axis=0, return_inverse=True)
        return {
            "slice": rows[:, 0].astype(np.int64),
            "bbox": rows[:, 1:5].astype(np.float32),
            "diameter_mm": rows[:, 5].astype(np.float32),
            "nodule": nodule.reshape(-1).astype(np.int64),
        }
