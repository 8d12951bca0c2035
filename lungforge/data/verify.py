"""`lungforge info --verify`: read every chunk of a store and check its counts against its metadata.

Each problem is one line naming the array and the chunk (or the rows) at fault. Stores written
before checksums existed (no `integrity` attribute) are still read and counted, but a chunk absent
from them may be a legitimately unwritten all-zero chunk, so absence is not reported there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from lungforge.data.store import SPLIT_IDS, Store, open_store
from lungforge.errors import CorruptStoreError
from lungforge.labels import NODULE, labels_attr

MAX_PROBLEMS = 50
"""Problems listed in full; the rest are counted."""


@dataclass(frozen=True)
class StoreVerification:
    """Outcome of :func:`verify_store`: `ok` when `problems` is empty.

    `checksums`: the store was written with crc32c checksums and every chunk (see
    :mod:`lungforge.data.store`); `objects_read`: shards and unsharded chunks read.
    """

    path: str
    ok: bool
    checksums: bool
    arrays: int
    objects_read: int
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.more = 0

    def add(self, line: str) -> None:
        if len(self.lines) < MAX_PROBLEMS:
            self.lines.append(line)
        else:
            self.more += 1


def verify_store(path: str | os.PathLike) -> StoreVerification:
    """Read every shard/chunk of the complete store at `path` and check its tables agree.

    Raises SchemaError only when the store cannot be opened at all; damage is reported.
    """
    store = open_store(path)
    problems = _Problems()
    n = len(store)
    nodule_px = np.zeros(n, dtype=bool)
    label_max = 0
    read = 0
    readable: set[str] = set()
    for name in store.array_names():
        array = store.array(name)
        intact = True
        for key, region, present in store.stored_blocks(name):
            if not present and store.checked:
                problems.add(f"{name}: {key} (rows {region[0].start}..{region[0].stop - 1}) is missing")
                intact = False
                continue
            read += 1
            try:
                data = np.asarray(array[region])
            except CorruptStoreError:
                intact = False
                _locate(store, name, key, region, problems)
                continue
            if name == "label" and data.size:
                nodule_px[region[0]] = (data == NODULE).any(axis=(1, 2))
                label_max = max(label_max, int(data.max()))
        if intact:
            readable.add(name)
    _check_counts(store, readable, nodule_px, label_max, problems)
    return StoreVerification(
        path=str(store.path),
        ok=not problems.lines,
        checksums=store.checked,
        arrays=len(store.array_names()),
        objects_read=read,
        problems=problems.lines,
        more_problems=problems.more,
    )


def _locate(store: Store, name: str, key: str, region: tuple[slice, ...], problems: _Problems) -> None:
    """Name the damaged inner chunks of a shard (one row each), or the chunk `key` itself."""
    array = store.array(name)
    if not array.shards:
        problems.add(f"{name}: chunk {key} (rows {region[0].start}..{region[0].stop - 1}) fails its checksum")
        return
    for row in range(region[0].start, region[0].stop):
        try:
            array[row]
        except CorruptStoreError:
            problems.add(f"{name}: chunk {row} (slice {row}) in shard {key} fails its checksum or is missing")


def _check_counts(store: Store, readable: set[str], nodule_px: np.ndarray, label_max: int, problems: _Problems) -> None:
    """Cross-check the tables that could be read in full."""
    n = len(store)
    h, w = store.shape_hw
    uids = store.series_uids if "series/uid" in readable else None
    if uids is not None and len(set(uids)) != len(uids):
        dup = sorted({u for u in uids if uids.count(u) > 1})
        problems.add(f"series/uid: {len(dup)} uids listed more than once (first {dup[0]})")
    if "meta/series" in readable and uids is not None:
        series = store.meta("series")
        bad = np.flatnonzero((series < 0) | (series >= len(uids)))
        if bad.size:
            problems.add(f"meta/series: {bad.size} rows point outside series/uid ({len(uids)} uids), first row {bad[0]}")
    if "meta/split" in readable:
        bad = np.flatnonzero(~np.isin(store.meta("split"), list(SPLIT_IDS.values())))
        if bad.size:
            problems.add(f"meta/split: {bad.size} rows are neither train (0) nor test (1), first row {bad[0]}")
    if "meta/fold" in readable:
        fold = store.meta("fold")
        bad = np.flatnonzero((fold < 0) | (fold > 9))
        if bad.size:
            problems.add(f"meta/fold: {bad.size} rows outside 0..9, first row {bad[0]}")
    if "meta/done" in readable and not store.meta("done").all():
        problems.add(f"meta/done: {int((~store.meta('done')).sum())} of {n} slices are not marked done")
    if "label" in readable:
        if label_max >= len(labels_attr()):
            problems.add(f"label: value {label_max} is not a label id (0..{len(labels_attr()) - 1})")
        if "meta/has_nodule" in readable:
            has = store.meta("has_nodule")
            bad = np.flatnonzero(has != nodule_px)
            if bad.size:
                problems.add(f"meta/has_nodule: {bad.size} slices disagree with their label maps' nodule pixels, first slice {bad[0]}")
    table_names = [f"nodules/{k}" for k in ("slice", "bbox")]
    if all(t in readable for t in table_names):
        table = store.nodules()
        rows = table["slice"]
        lengths = {k: v.shape[0] for k, v in table.items()}
        if len(set(lengths.values())) > 1:
            problems.add(f"nodules: columns have different row counts {lengths}")
            return
        bad = np.flatnonzero((rows < 0) | (rows >= n))
        if bad.size:
            problems.add(f"nodules/slice: {bad.size} rows point outside the {n} slices, first row {bad[0]}")
            return
        if "meta/has_nodule" in readable:
            listed = np.zeros(n, dtype=bool)
            listed[rows] = True
            bad = np.flatnonzero(listed != store.meta("has_nodule"))
            if bad.size:
                problems.add(f"nodules/slice: {bad.size} slices disagree with meta/has_nodule, first slice {bad[0]}")
        x0, y0, x1, y1 = table["bbox"].T
        bad = np.flatnonzero(~((0 <= x0) & (x0 < x1) & (x1 <= w) & (0 <= y0) & (y0 < y1) & (y1 <= h)))
        if bad.size:
            problems.add(f"nodules/bbox: {bad.size} boxes outside the {w}×{h} slice or empty, first row {bad[0]}")
