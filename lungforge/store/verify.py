"""`lungforge info --verify`: read every chunk of a store and check it against its checksums, its
recorded content and its tables.

Opening the store already refuses one whose group attributes changed after it was finished, or
that lacks the `content` record its checksums require (:meth:`Store.attribute_problem`). Checks:
every chunk present and matching its crc32c; every array's content equal to what was recorded
when the store was finished (:meth:`Store.recorded_digests`: catches chunks rewritten with valid
checksums, or shards swapped in from another store); the tables' counts and codes;
`meta/has_nodule` against each slice's nodule (label 5) pixels; and every box against its
slice's label map: each box must equal, pixel for pixel, the tight box of the nodule it covers
(the 8-connected label-5 components of its slice it covers pixels of: one, or several pieces of
one mask; in the store's own pixels), and each component must lie in exactly one box.

Each problem is one line naming the array and the chunk (or the rows) at fault. Stores written
before checksums existed (no `integrity` attribute) are still read and counted, but a chunk absent
from them may be a legitimately unwritten all-zero chunk, so absence is not reported there, and
damage inside a chunk cannot be told from data; nor do they record content. Stores finished
before attribute digests were recorded get every check, but their attributes have nothing to be
compared with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import ndimage

from lungforge.core.errors import CorruptStoreError
from lungforge.core.labels import NODULE, labels_attr
from lungforge.store import SPLIT_IDS, Store, open_store

MAX_PROBLEMS = 50
"""Problems listed in full; the rest are counted."""


@dataclass(frozen=True)
class StoreVerification:
    """Outcome of :func:`verify_store`: `ok` when `problems` is empty.

    `checksums`: the store was written with crc32c checksums and every chunk (see
    :mod:`lungforge.store`); `content_recorded`: it records its arrays' content digests;
    `attributes_recorded`: its content record covers its group attributes (they matched, or the
    store could not have been opened);
    `objects_read`: shards and unsharded chunks read; `boxes_checked`: nodule boxes compared
    with their slices' label maps.
    """

    path: str
    ok: bool
    checksums: bool
    content_recorded: bool
    attributes_recorded: bool
    arrays: int
    objects_read: int
    boxes_checked: int
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0


class Problems:
    """Problem lines, the first MAX_PROBLEMS kept, the rest counted."""

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

    Raises SchemaError when the store cannot be opened (its attributes changed after it was
    finished, or its content record is missing, included); damage to arrays is reported.
    """
    store = open_store(path)
    problems = Problems()
    n = len(store)
    nodule_px = np.zeros(n, dtype=bool)
    label_max = 0
    read = 0
    readable: set[str] = set()
    boxes = _BoxCheck(store)
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
                boxes.check(region[0].start, data)
        if intact:
            readable.add(name)
    check_content(store, problems)
    _check_counts(store, readable, nodule_px, label_max, problems)
    if "label" in readable:
        boxes.report(problems)
    return StoreVerification(
        path=str(store.path),
        ok=not problems.lines,
        checksums=store.checked,
        content_recorded=store.recorded_digests() is not None,
        attributes_recorded=store.recorded_attribute_digests() is not None,
        arrays=len(store.array_names()),
        objects_read=read,
        boxes_checked=boxes.checked,
        problems=problems.lines,
        more_problems=problems.more,
    )


class RecordsContent(Protocol):
    """A store that can digest its arrays and recall the digests recorded when it was finished."""

    def recorded_digests(self) -> dict[str, str] | None: ...

    def content_digests(self) -> dict[str, str]: ...


def check_content(store: RecordsContent, problems: Problems) -> None:
    """Each array's content digest against the one recorded when the store was finished."""
    recorded = store.recorded_digests()
    if recorded is None:
        return
    try:
        now = store.content_digests()
    except CorruptStoreError as exc:
        problems.add(f"content: cannot be fingerprinted ({exc})")
        return
    for name in sorted(set(recorded) | set(now)):
        if recorded.get(name) != now.get(name):
            problems.add(
                f"{name}: content differs from what was recorded when the store was finished "
                f"(digest {now.get(name)}, recorded {recorded.get(name)}): chunks rewritten or swapped in from another store"
            )


class _BoxCheck:
    """Boxes of the nodule table against the label maps, one block of slices at a time.

    A box's nodule is the label-5 components (8-connected, within its slice) it covers any pixel
    of: one, or several where a nodule's mask falls apart into pieces on that slice. The box must
    equal their tight box exactly, and each component must be covered by exactly one box.
    """

    def __init__(self, store: Store) -> None:
        self.checked = 0
        self.empty: list[tuple[int, int]] = []
        self.loose: list[tuple[int, int, str]] = []
        self.unboxed: list[tuple[int, int]] = []
        self.doubled: list[tuple[int, int]] = []
        self.slices = np.zeros(0, dtype=np.int64)
        self.rows = np.zeros(0, dtype=np.int64)
        self.bbox = np.zeros((0, 4), dtype=np.float32)
        try:
            table = store.nodules()
        except CorruptStoreError:
            return  # reported by the chunk checks; boxes are then checked against no table
        slices, bbox = table["slice"], table["bbox"]
        if slices.shape[0] != bbox.shape[0]:
            return  # reported by the table checks
        self.rows = np.flatnonzero((slices >= 0) & (slices < len(store)) & np.isfinite(bbox).all(axis=1))
        self.slices, self.bbox = slices, bbox

    def check(self, start: int, labels: np.ndarray) -> None:
        """Check the slices [start, start + len(labels)) given their (n, H, W) label maps."""
        in_plane = np.zeros((3, 3, 3), dtype=bool)
        in_plane[1] = True  # 8-connected within a slice, never across slices
        components, count = ndimage.label(labels == NODULE, structure=in_plane)
        extents = ndimage.find_objects(components)
        # Each component's tight box x0, y0, x1, y1 (half-open, px).
        tight = np.array([[x.start, y.start, x.stop, y.stop] for _, y, x in extents], dtype=np.int64).reshape(-1, 4)
        covering = np.zeros(count + 1, dtype=np.int64)  # boxes covering each component (id 0: background)
        in_block = (self.slices[self.rows] >= start) & (self.slices[self.rows] < start + len(labels))
        h, w = labels.shape[1:]
        for row in self.rows[in_block]:
            self.checked += 1
            index = int(self.slices[row])
            x0, y0, x1, y1 = (float(v) for v in self.bbox[row])
            c0, r0, c1, r1 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0), min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
            crop = components[index - start, r0:r1, c0:c1] if r1 > r0 and c1 > c0 else np.zeros(0, dtype=np.int32)
            touched = np.unique(crop[crop > 0])
            if not touched.size:
                self.empty.append((int(row), index))
                continue
            covering[touched] += 1
            nodule = tight[touched - 1]
            lo_x, lo_y, hi_x, hi_y = nodule[:, 0].min(), nodule[:, 1].min(), nodule[:, 2].max(), nodule[:, 3].max()
            if (x0, y0, x1, y1) != (lo_x, lo_y, hi_x, hi_y):
                self.loose.append((int(row), index, f"box x {x0:g}..{x1:g}, y {y0:g}..{y1:g}; nodule x {lo_x}..{hi_x}, y {lo_y}..{hi_y}"))
        z_of = np.array([z.start for z, _, _ in extents], dtype=np.int64) + start
        for k in np.flatnonzero(covering[1:] == 0):
            self.unboxed.append((int(z_of[k]), int((components[extents[k]] == k + 1).sum())))
        for k in np.flatnonzero(covering[1:] > 1):
            self.doubled.append((int(z_of[k]), int(covering[k + 1])))

    def report(self, problems: Problems) -> None:
        if self.empty:
            row, index = self.empty[0]
            problems.add(
                f"nodules/bbox: {len(self.empty)} of {self.checked} boxes cover no nodule pixel of their slice, first row {row} (slice {index})"
            )
        if self.loose:
            row, index, detail = self.loose[0]
            problems.add(
                f"nodules/bbox: {len(self.loose)} of {self.checked} boxes are not the tight box of the nodule they cover, "
                f"first row {row} (slice {index}: {detail})"
            )
        if self.unboxed:
            index, pixels = self.unboxed[0]
            problems.add(
                f"label: {len(self.unboxed)} nodules (label-5 components) lie in no box of nodules/bbox, first on slice {index} ({pixels} px)"
            )
        if self.doubled:
            index, boxes = self.doubled[0]
            problems.add(
                f"nodules/bbox: {len(self.doubled)} nodules (label-5 components) lie in more than one box, first on slice {index} ({boxes} boxes)"
            )


def _locate(store: Store, name: str, key: str, region: tuple[slice, ...], problems: Problems) -> None:
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


def _check_counts(store: Store, readable: set[str], nodule_px: np.ndarray, label_max: int, problems: Problems) -> None:
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
        bad = np.flatnonzero(~((x0 >= 0) & (x0 < x1) & (x1 <= w) & (y0 >= 0) & (y0 < y1) & (y1 <= h)))
        if bad.size:
            problems.add(f"nodules/bbox: {bad.size} boxes outside the {w}×{h} slice or empty, first row {bad[0]}")
