"""`lungforge prepare --volumes`: LUNA16 scans → one isotropic HU volume and label volume per scan
in a volume store (docs/prepare.md, "Volumes"; layout :mod:`lungforge.store.volumes`).

The inputs are read, checked and split exactly as for slices (:func:`~.pipeline.read_inputs`,
:func:`~.options.split_patients` with the same seed): a series is in the same split and fold in
both stores. Scans are processed in worker processes (:func:`~.workers.volume_work`) and written
in scan order by this process; after each scan's two arrays are written, its commit record
(`parts/scan-<k>.npz`: its row of the scan and nodule tables, or why it was skipped) is saved.
`resume` continues after the last record, removing any volume written without one, and ends
with the same store as an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.core.errors import InputError, LungforgeError, ScanError
from lungforge.core.locks import hold_lock
from lungforge.preparation.input_manifest import manifest_difference
from lungforge.preparation.options import VolumeOptions, VolumeReport, split_patients
from lungforge.preparation.pipeline import DISPLAY_ORIENTATION, PrepareInputs, planned_workers, read_inputs
from lungforge.preparation.volume_recipe import ScanVolume
from lungforge.preparation.workers import ordered_results, volume_work, worker_pool
from lungforge.store import (
    SPLIT_IDS,
    VOLUME_SCHEMA,
    VolumeStore,
    VolumeWriter,
    create_volume_store,
    open_volume_store,
    resume_volume_store,
    schema_of,
)
from lungforge.store.volume_schema import NODULE_COLUMNS, SCAN_COLUMNS

__all__ = ["VolumeOptions", "VolumeReport", "prepare_volumes"]

_NODULE_FIELDS = [name for name in NODULE_COLUMNS if name != "scan"]


def prepare_volumes(
    luna16_dir: str | Path,
    out: str | Path,
    options: VolumeOptions = VolumeOptions(),
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Any | None = None,
) -> VolumeReport:
    """Prepare a LUNA16 directory into the volume store `out`; see the module docstring.

    Bad scans are skipped and listed in the report (and the store's `skipped` attribute).
    `resume` refuses other options or inputs than those the run started with. `<out>.lock` is
    held throughout: a second writer of `out` gets a LockError.
    """
    started = time.perf_counter()
    workers = planned_workers(luna16_dir, options)
    with hold_lock(Path(out), "store"), worker_pool(workers) as pool:
        return _prepare(Path(luna16_dir), Path(out), options, resume, overwrite, progress, pool, workers, started)


def _prepare(
    root: Path,
    out: Path,
    options: VolumeOptions,
    resume: bool,
    overwrite: bool,
    progress: Any | None,
    pool: ProcessPoolExecutor | None,
    workers: int,
    started: float,
) -> VolumeReport:
    inputs = read_inputs(root, options.limit, options.params())
    refs = inputs.refs
    scans_total = len(refs) + len(inputs.refused)
    test_uids = split_patients([r.uid for r in refs], options.test_patients, options.seed)
    writer = _open_target(out, inputs, options, resume=resume, overwrite=overwrite)
    if not writer.attrs.get("complete"):
        records = [record for _, record in sorted(writer.records().items())]
        next_scan = int(records[-1]["index"]) + 1 if records else 0
        written = sum(str(r["status"]) == "written" for r in records)
        writer.drop_volumes_from(written)
        task_id = progress.add_task("prepare --volumes", total=len(refs), completed=next_scan, status="") if progress else None
        tasks = [(inputs.root, ref, inputs.annotations.get(ref.uid, []), options) for ref in refs[next_scan:]]
        for i, result in enumerate(ordered_results(tasks, pool, workers, volume_work)):
            index = next_scan + i
            if isinstance(result, ScanError):
                file, _, reason = str(result).partition(": ")
                record = {"status": np.asarray("skipped"), "skipped_file": np.asarray(file), "reason": np.asarray(reason or str(result))}
            else:
                writer.write_scan(written, result.image, result.label)
                split = SPLIT_IDS["test"] if result.uid in test_uids else SPLIT_IDS["train"]
                record = _scan_record(result, written, split, refs[index].subset)
                written += 1
            writer.save_record(f"scan-{index:06d}", {"index": np.asarray(index), **record})
            records.append(record)
            if progress is not None:
                progress.update(task_id, advance=1, status=f"{written} volumes")
        _finalize(writer, records, inputs)
    return _report(open_volume_store(out), scans_total, started, workers)


def _open_target(out: Path, inputs: PrepareInputs, options: VolumeOptions, *, resume: bool, overwrite: bool) -> VolumeWriter:
    """The store to write: the one being resumed (refused when its options or inputs differ), or a new one."""
    params = json.loads(json.dumps(inputs.params))
    if resume and out.exists():
        if schema_of(out) != VOLUME_SCHEMA:
            raise LungforgeError(f"{out}: exists and is not a lungforge volume store; cannot --resume it")
        writer = resume_volume_store(out)
        if writer.attrs.get("params") != params:
            raise LungforgeError(f"{out}: was prepared with other options {writer.attrs.get('params')}; use --overwrite to start over")
        difference = manifest_difference(inputs.root, writer.attrs.get("inputs"), inputs.manifest)
        if difference:
            raise InputError(f"{out}: cannot --resume from {inputs.root}: {difference}; use --overwrite to start over")
        return writer
    return create_volume_store(
        out,
        spacing_mm=options.spacing_mm,
        params=params,
        overwrite=overwrite,
        extra_attrs={"inputs": inputs.manifest, "orientation": DISPLAY_ORIENTATION, "folds_from": "LUNA16 subset number"},
    )


def _scan_record(result: ScanVolume, volume: int, split: int, fold: int) -> dict[str, np.ndarray]:
    """The commit record of a written scan: its row of the scan table and its nodule rows."""
    return {
        "status": np.asarray("written"),
        "volume": np.asarray(volume),
        "uid": np.asarray(result.uid),
        "split": np.asarray(split),
        "fold": np.asarray(fold),
        "origin_mm": result.origin_mm,
        "direction": result.direction,
        "source_spacing_mm": result.source_spacing_mm,
        **{f"nodule_{name}": result.nodules[name] for name in _NODULE_FIELDS},
        "lost_json": np.asarray([json.dumps(lost) for lost in result.lost], dtype=str),
    }


def _finalize(writer: VolumeWriter, records: list[dict[str, np.ndarray]], inputs: PrepareInputs) -> None:
    """Write the scan and nodule tables gathered from the commit records and finish the store."""
    done = [r for r in records if str(r["status"]) == "written"]
    uids = [str(r["uid"]) for r in done]
    scans = {name: np.stack([r[name] for r in done]) if done else np.zeros((0, *c.shape)) for name, c in SCAN_COLUMNS.items()}
    nodules: dict[str, np.ndarray] = {
        "scan": np.concatenate([np.full(r["nodule_voxels"].shape[0], int(r["volume"])) for r in done]) if done else np.zeros(0)
    }
    for name in _NODULE_FIELDS:
        shape = NODULE_COLUMNS[name].shape
        nodules[name] = np.concatenate([r[f"nodule_{name}"].reshape(-1, *shape) for r in done]) if done else np.zeros((0, *shape))
    skipped = inputs.refused + [
        {"file": str(r["skipped_file"]), "reason": str(r["reason"])} for r in records if str(r["status"]) == "skipped"
    ]
    writer.finalize(
        uids,
        scans,
        nodules,
        attrs={
            "skipped": skipped,
            "lost_nodules": [json.loads(str(text)) for r in done for text in r["lost_json"]],
            "absent_series": inputs.absent_series,
            "duplicate_annotations": inputs.duplicate_rows,
            "reoriented": sum(inputs.headers[uid][1] for uid in uids),
        },
    )


def _report(store: VolumeStore, scans_total: int, started: float, workers: int) -> VolumeReport:
    voxels = sum(int(np.prod(store.shape(i))) for i in range(len(store)))
    table = store.nodules()
    attrs = store.attrs
    return VolumeReport(
        store=str(store.path),
        scans_total=scans_total,
        scans_done=len(store),
        spacing_mm=store.spacing_mm,
        voxels=voxels,
        nodules=int(table["scan"].size),
        nodules_labelled=int((table["voxels"] > 0).sum()),
        skipped=list(attrs.get("skipped", [])),
        seconds=round(time.perf_counter() - started, 3),
        lost_nodules=list(attrs.get("lost_nodules", [])),
        absent_series=dict(attrs.get("absent_series", {"series": 0, "annotations": 0, "uids": []})),
        duplicate_annotations=list(attrs.get("duplicate_annotations", [])),
        reoriented=int(attrs.get("reoriented", 0)),
        workers=workers,
    )
