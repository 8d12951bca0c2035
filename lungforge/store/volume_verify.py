"""`lungforge info --verify` on a volume store: read every shard and check it against its
checksums, the content recorded when the store was finished, and the tables.

Checks: every shard present and each of its chunks matching its crc32c; every array's content
equal to the recorded digest (:func:`~lungforge.store.verify.check_content`); label ids within
the label set; split codes, folds and unique uids in the scan table; every nodule row pointing at
a stored scan, its centre inside that volume, its box inside it and, for a nodule with voxels,
holding label-5 voxels; in a synthetic store, each inserted row pointing at a nodule row of its
own whose box lies inside the row's edit box. Each problem is one line naming the array and the shard or rows at fault.
"""

from __future__ import annotations

import os

import numpy as np

from lungforge.core.errors import CorruptStoreError
from lungforge.core.labels import NODULE, labels_attr
from lungforge.store.schema import SPLIT_IDS
from lungforge.store.verify import Problems, StoreVerification, check_content
from lungforge.store.volumes import VolumeStore, open_volume_store


def verify_volume_store(path: str | os.PathLike) -> StoreVerification:
    """Read every shard of the complete volume store at `path` and check its tables agree.

    Raises SchemaError when the store cannot be opened (attributes changed after it was
    finished included); damage to arrays is reported (`boxes_checked`: nodule boxes compared
    with their label volumes).
    """
    store = open_volume_store(path, check_content=False)
    problems = Problems()
    readable: set[str] = set()
    read = 0
    label_max = 0
    for name in store.array_names():
        array = store.array(name)
        intact = True
        for key, region, present in store.stored_blocks(name):
            if not present and store.checked:
                problems.add(f"{name}: {key} is missing")
                intact = False
                continue
            read += 1
            try:
                data = np.asarray(array[region])
            except CorruptStoreError:
                problems.add(f"{name}: {key} fails its crc32c checksum (damaged on disk)")
                intact = False
                continue
            if name.endswith("/label") and data.size:
                label_max = max(label_max, int(data.max()))
        if intact:
            readable.add(name)
    check_content(store, problems)
    if label_max >= len(labels_attr()):
        problems.add(f"label: value {label_max} is not a label id (0..{len(labels_attr()) - 1})")
    boxes = _check_tables(store, readable, problems)
    return StoreVerification(
        path=str(store.path),
        ok=not problems.lines,
        checksums=store.checked,
        content_recorded=store.recorded_digests() is not None,
        attributes_recorded=store.recorded_attribute_digests() is not None,
        arrays=len(store.array_names()),
        objects_read=read,
        boxes_checked=boxes,
        problems=problems.lines,
        more_problems=problems.more,
    )


def _check_tables(store: VolumeStore, readable: set[str], problems: Problems) -> int:
    """Cross-check the scan and nodule tables against each other and the volumes; returns the boxes checked."""
    if not {"scans/uid", "scans/split", "scans/fold"} <= readable:
        return 0
    n = len(store)
    uids = store.uids
    if not store.synthetic and len(set(uids)) != len(uids):  # a synthetic store may use one host for several volumes
        problems.add(f"scans/uid: {len(uids) - len(set(uids))} uids listed more than once")
    bad = np.flatnonzero(~np.isin(store.split, list(SPLIT_IDS.values())))
    if bad.size:
        problems.add(f"scans/split: {bad.size} rows are neither train (0) nor test (1), first row {bad[0]}")
    bad = np.flatnonzero((store.fold < 0) | (store.fold > 9))
    if bad.size:
        problems.add(f"scans/fold: {bad.size} rows outside 0..9, first row {bad[0]}")
    if not {"nodules/scan", "nodules/center_voxel", "nodules/bbox", "nodules/voxels"} <= readable:
        return 0
    table = store.nodules()
    scan = table["scan"]
    bad = np.flatnonzero((scan < 0) | (scan >= n))
    if bad.size:
        problems.add(f"nodules/scan: {bad.size} rows point outside the {n} scans, first row {bad[0]}")
        return 0
    shapes = np.array([store.shape(i) for i in range(n)], dtype=np.float64).reshape(-1, 3)
    centre = table["center_voxel"]
    bad = np.flatnonzero(((centre < -0.5) | (centre > shapes[scan] - 0.5)).any(axis=1))
    if bad.size:
        problems.add(f"nodules/center_voxel: {bad.size} centres lie outside their volumes, first row {bad[0]}")
    boxes = table["bbox"]
    labelled = table["voxels"] > 0
    lo, hi = boxes[:, :3], boxes[:, 3:]
    bad = np.flatnonzero(labelled & ((lo < 0) | (lo >= hi) | (hi > shapes[scan])).any(axis=1))
    if bad.size:
        problems.add(f"nodules/bbox: {bad.size} boxes of labelled nodules are empty or outside their volumes, first row {bad[0]}")
        return 0
    checked = 0
    empty = []
    for row in np.flatnonzero(labelled):
        name = f"volumes/{scan[row]}/label"
        if name not in readable:
            continue
        z0, y0, x0, z1, y1, x1 = (int(v) for v in boxes[row])
        checked += 1
        if not (np.asarray(store.label(int(scan[row]))[z0:z1, y0:y1, x0:x1]) == NODULE).any():
            empty.append(int(row))
    if empty:
        problems.add(f"nodules/bbox: {len(empty)} of {checked} boxes of labelled nodules hold no nodule voxel, first row {empty[0]}")
    if store.synthetic and {"inserted/nodule", "inserted/edit_box"} <= readable:
        _check_inserted(store, problems)
    return checked


def _check_inserted(store: VolumeStore, problems: Problems) -> None:
    """Each inserted row names a nodule row of its own (no annotation line) whose mask box lies
    inside the row's edit box."""
    inserted, table = store.inserted(), store.nodules()
    rows = inserted["nodule"]
    bad = np.flatnonzero((rows < 0) | (rows >= table["scan"].size))
    if bad.size:
        problems.add(f"inserted/nodule: {bad.size} rows point outside the {table['scan'].size} nodules, first row {bad[0]}")
        return
    bad = np.flatnonzero((table["annotation"][rows] != -1) | (np.bincount(rows, minlength=table["scan"].size)[rows] > 1))
    if bad.size:
        problems.add(f"inserted/nodule: {bad.size} rows point at annotated or shared nodule rows, first row {bad[0]}")
    box, edit = table["bbox"][rows], inserted["edit_box"]
    bad = np.flatnonzero((box[:, :3] < edit[:, :3]).any(axis=1) | (box[:, 3:] > edit[:, 3:]).any(axis=1))
    if bad.size:
        problems.add(f"inserted/edit_box: {bad.size} edit boxes do not hold their nodule's mask box, first row {bad[0]}")
