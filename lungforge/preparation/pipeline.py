"""`lungforge prepare`: LUNA16 scans → windowed slices and label maps in a Zarr store (recipe: docs/prepare.md).

Scans are processed one at a time (in a process pool when `workers > 1`) and streamed to the
store in whole shards, in scan order, so the store is the same for any number of workers. The
pool's workers also compress and write the shards' images and labels (the main process only
assembles blocks, writes the small meta columns and commit records), so zstd does not serialise
the run on one core. After every shard flush, once its block is written, a commit record
(`parts/`) says which scans are done; `resume` continues from the last record and ends with the
same store as an uninterrupted run.

The recipe for one scan is :mod:`lungforge.preparation.scan_recipe`; options, report and the patient
split are :mod:`lungforge.preparation.options`; the pool :mod:`lungforge.preparation.workers`;
the shard writer :mod:`lungforge.preparation.writer`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lungforge.core.cpus import capped_workers
from lungforge.core.errors import InputError, LungforgeError, ScanError
from lungforge.core.locks import hold_lock
from lungforge.luna16 import scans as luna16
from lungforge.preparation.input_checks import shared_data
from lungforge.preparation.input_manifest import input_manifest, manifest_difference
from lungforge.preparation.options import PrepareOptions, PrepareReport, VolumeOptions, split_patients
from lungforge.preparation.scan_recipe import display_shape
from lungforge.preparation.workers import ordered_results, slice_work, worker_pool
from lungforge.preparation.writer import ShardWriter
from lungforge.store import SHARD, Store, create_store, is_store, open_store

__all__ = ["PrepareInputs", "PrepareOptions", "PrepareReport", "planned_workers", "prepare", "read_inputs", "store_shape"]

DISPLAY_ORIENTATION = (
    "LPS: columns run towards the patient's left, rows towards posterior, z towards superior "
    "(radiological display: the left lung on the image's right, anterior up)"
)
"""The `orientation` attribute of prepared stores (see :mod:`lungforge.luna16.orientation`)."""


@dataclass(frozen=True)
class PrepareInputs:
    """What a run reads from the LUNA16 folder before the first scan is processed."""

    root: Path
    refs: list[luna16.ScanRef]
    refused: list[dict[str, str]]
    manifest: dict[str, Any]
    annotations: dict[str, list[luna16.Annotation]]
    duplicate_rows: list[dict[str, Any]]
    absent_series: dict[str, Any]
    headers: dict[str, tuple[tuple[int, int, int], bool]]
    params: dict[str, Any]


def prepare(
    luna16_dir: str | Path,
    out: str | Path,
    options: PrepareOptions = PrepareOptions(),
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Any | None = None,
    shard_slices: int = SHARD,
) -> PrepareReport:
    """Prepare a LUNA16 directory into the store `out`; see the module docstring.

    `progress` is an optional Rich Progress. Bad scans are skipped and listed in the report.
    `resume` refuses inputs (scan list, scan and seg files, annotations) other than those the run
    started with. `<out>.lock` is held throughout: a second writer of `out` gets a LockError.
    """
    started = time.perf_counter()
    workers = planned_workers(luna16_dir, options)
    with hold_lock(Path(out), "store"), worker_pool(workers) as pool:
        report = _prepare(
            luna16_dir,
            out,
            options,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            shard_slices=shard_slices,
            started=started,
            pool=pool,
            workers=workers,
        )
    return dataclasses.replace(report, workers=workers)


def planned_workers(luna16_dir: str | Path, options: PrepareOptions | VolumeOptions) -> int:
    """The worker processes `prepare` runs: `options.workers`, capped at one per available CPU
    and one per scan (more would only wait)."""
    scans = len(luna16.discover_scans(Path(luna16_dir)))
    if options.limit is not None:
        scans = min(scans, options.limit)
    return max(1, min(capped_workers(options.workers), scans))


def _prepare(
    luna16_dir: str | Path,
    out: str | Path,
    options: PrepareOptions,
    *,
    resume: bool,
    overwrite: bool,
    progress: Any | None,
    shard_slices: int,
    started: float,
    pool: ProcessPoolExecutor | None,
    workers: int,
) -> PrepareReport:
    inputs = read_inputs(Path(luna16_dir), options.limit, options.params())
    out = Path(out)
    refs = inputs.refs
    scans_total = len(refs) + len(inputs.refused)
    test_uids = split_patients([r.uid for r in refs], options.test_patients, options.seed)
    store = _open_target(out, inputs, resume=resume, overwrite=overwrite, shard_slices=shard_slices)
    if store.attrs.get("complete"):
        return _report(store, scans_total, started)
    writer = ShardWriter(store, len(refs), test_uids, {r.uid: r.subset for r in refs}, pool)
    next_scan, next_offset = writer.restore()
    task_id = progress.add_task("prepare", total=len(refs), completed=next_scan, status="") if progress else None
    tasks = [(inputs.root, ref, inputs.annotations.get(ref.uid, []), options, store.shape_hw) for ref in refs[next_scan:]]
    for i, result in enumerate(ordered_results(tasks, pool, workers, slice_work)):
        index = next_scan + i
        writer.add(index, result, offset=next_offset if i == 0 else 0)
        if progress is not None:
            progress.update(task_id, advance=1, status=f"{writer.written + writer.buffered} slices, {len(writer.skipped)} skipped")
    writer.finish()
    skipped = inputs.refused + [{"file": f, "reason": r} for _, f, r in writer.skipped]
    store.finalize(
        writer.written,
        writer.series_uids,
        writer.nodule_table(),
        attrs={
            "skipped": skipped,
            "lost_nodules": [nodule for _, nodule in writer.lost],
            "absent_series": inputs.absent_series,
            "duplicate_annotations": inputs.duplicate_rows,
            "reoriented": sum(inputs.headers[uid][1] for uid in writer.series_uids),
            "orientation": DISPLAY_ORIENTATION,
            "folds_from": "LUNA16 subset number",
        },
    )
    return _report(open_store(out), scans_total, started)


def read_inputs(root: Path, limit: int | None, params: dict[str, Any]) -> PrepareInputs:
    """The scans to prepare (the first `limit`; those refused for a wrong folder or shared data
    listed apart), the annotations, the scans' headers and the params that identify the run
    (the options' `params`, with the input folder and the orientation added)."""
    refs = luna16.discover_scans(root)
    misplaced = luna16.misplaced_scans(root)
    all_uids = {r.uid for r in refs} | {mhd.stem for mhd, _ in misplaced}
    sharing = _shared_data(refs)
    if limit is not None:
        refs = refs[:limit]
    refused = [{"file": str(mhd), "reason": reason} for mhd, reason in misplaced]
    refused += [{"file": str(r.mhd), "reason": sharing[r.uid]} for r in refs if r.uid in sharing]
    manifest = input_manifest(root, refs)  # every scan read, also those refused for sharing data
    refs = [r for r in refs if r.uid not in sharing]
    if not refs:
        first = refused[0]
        raise InputError(f"{root}: no scan left to prepare ({len(refused)} refused; first {first['file']}: {first['reason']})")
    annotations, duplicate_rows = luna16.load_annotations(root)
    absent = sorted(set(annotations) - all_uids)
    absent_series = {"series": len(absent), "annotations": sum(len(annotations[u]) for u in absent), "uids": absent}
    headers: dict[str, tuple[tuple[int, int, int], bool]] = {}
    for ref in refs:
        with contextlib.suppress(ScanError):
            headers[ref.uid] = display_shape(ref.mhd)
    if not headers:
        raise InputError(f"{root}: none of the {len(refs)} scans has a readable header")
    # The orientation is part of the params: a run started by a lungforge that stored file
    # order cannot be resumed into a store of mixed orientations.
    params = {**params, "luna16_dir": str(root.resolve()), "orientation": "LPS"}
    return PrepareInputs(root, refs, refused, manifest, annotations, duplicate_rows, absent_series, headers, params)


def _open_target(out: Path, inputs: PrepareInputs, *, resume: bool, overwrite: bool, shard_slices: int) -> Store:
    """The store to write: the one being resumed (refused when its options or inputs differ), or
    a new one sized for every readable header, (H, W) that of most scans."""
    if resume and out.exists() and is_store(out):
        store = open_store(out, mode="r+", require_complete=False)
        if store.attrs.get("params") != _jsonable(inputs.params):
            raise LungforgeError(f"{out}: was prepared with other options {store.attrs.get('params')}; use --overwrite to start over")
        difference = manifest_difference(inputs.root, store.attrs.get("inputs"), inputs.manifest)
        if difference:
            raise InputError(f"{out}: cannot --resume from {inputs.root}: {difference}; use --overwrite to start over")
        return store
    if resume and out.exists():
        raise LungforgeError(f"{out}: exists and is not a lungforge store; cannot --resume it")
    height, width = store_shape([shape[1:] for shape, _ in inputs.headers.values()])
    return create_store(
        out,
        kind="real",
        height=height,
        width=width,
        capacity=sum(shape[0] for shape, _ in inputs.headers.values()),
        params=_jsonable(inputs.params),
        overwrite=overwrite,
        shard_slices=shard_slices,
        extra_attrs={"inputs": inputs.manifest},
    )


def store_shape(shapes: list[tuple[int, int]]) -> tuple[int, int]:
    """The store's (H, W): the in-plane size of most scans (ties: the earliest scan's), so one odd
    header skips that scan alone."""
    return Counter(shapes).most_common(1)[0][0]


def _shared_data(refs: list[luna16.ScanRef]) -> dict[str, str]:
    """{uid: reason} of the scans whose data file is another scan's (same file or same bytes)."""
    files = {}
    for ref in refs:
        with contextlib.suppress(ScanError):
            files[ref.uid] = luna16.data_file(ref.mhd)
    shared = shared_data(files)
    return {
        uid: f"holds the same voxel data as {', '.join(f'{other} ({files[other]})' for other in others)}: "
        "one of these series is mislabelled, so none of them is used"
        for uid, others in shared.items()
    }


def _report(store: Store, scans_total: int, started: float) -> PrepareReport:
    has_nodule = store.meta("has_nodule")
    return PrepareReport(
        store=str(store.path),
        scans_total=scans_total,
        scans_done=len(store.series_uids),
        slices=len(store),
        nodule_slices=int(has_nodule.sum()),
        nodules=int(store.nodules()["slice"].size),
        skipped=list(store.attrs.get("skipped", [])),
        seconds=round(time.perf_counter() - started, 3),
        lost_nodules=list(store.attrs.get("lost_nodules", [])),
        absent_series=dict(store.attrs.get("absent_series", {"series": 0, "annotations": 0, "uids": []})),
        duplicate_annotations=list(store.attrs.get("duplicate_annotations", [])),
        reoriented=int(store.attrs.get("reoriented", 0)),
    )


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params))
