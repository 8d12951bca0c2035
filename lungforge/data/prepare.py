"""`lungforge prepare`: LUNA16 scans → windowed slices and label maps in a Zarr store (recipe: docs/prepare.md).

Scans are processed one at a time (in a process pool when `workers > 1`) and streamed to the
store in whole shards, in scan order, so the store is the same for any number of workers. The
pool's workers also compress and write the shards' images and labels (the main process only
assembles blocks, writes the small meta columns and commit records), so zstd does not serialise
the run on one core. After every shard flush, once its block is written, a commit record
(`parts/`) says which scans are done; `resume` continues from the last record and ends with the
same store as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import threading
import time
import zlib
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

from lungforge.data import luna16
from lungforge.data.input_checks import geometry_difference, hu_problem, shared_data
from lungforge.data.input_manifest import input_manifest, manifest_difference
from lungforge.data.masks import (
    auto_lung_labels,
    body_mask,
    compose_labels,
    nodule_mask,
    seg_to_labels,
    window_to_uint8,
)
from lungforge.data.orientation import Reorientation
from lungforge.data.store import SHARD, SPLIT_IDS, Store, create_store, is_store, open_store
from lungforge.errors import InputError, LungforgeError, ScanError
from lungforge.labels import LEFT_LUNG, RIGHT_LUNG, SegValues
from lungforge.locks import hold_lock
from lungforge.seeds import check_seed


@dataclass(frozen=True)
class PrepareOptions:
    """Options of the preparation recipe; saved in the store's `params` attribute."""

    lungs: Literal["seg", "auto"] = "seg"
    seg_values: SegValues = SegValues()
    nodule_slices: Literal["center", "all"] = "center"
    keep_nodule_free: float = 0.25
    test_patients: int | float | None = None
    seed: int = 0
    limit: int | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def params(self) -> dict[str, Any]:
        """The options that determine the store's content (not `workers`)."""
        out = dataclasses.asdict(self)
        out.pop("workers")
        return out


@dataclass
class ScanSlices:
    """The kept slices of one scan: images/labels (K, H, W) uint8 and their metadata."""

    uid: str
    image: np.ndarray
    label: np.ndarray
    z: np.ndarray
    has_nodule: np.ndarray
    spacing_rc_mm: tuple[float, float]
    nodule_rows: list[tuple[int, tuple[float, float, float, float], float]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PrepareReport:
    """What a prepare run produced.

    `skipped` lists {"file", "reason"} of every bad scan (unreadable, implausible values, a seg
    mask laid out otherwise, data shared with another series, outside subset0..9); `lost_nodules`
    every annotated nodule of a written scan that yields no labelled slice ({"series",
    "center_mm", "diameter_mm", "reason"}); `absent_series` the annotations of series not in the
    folder ({"series", "annotations", "uids"}: counts and the uids); `duplicate_annotations` the
    exact duplicate rows of annotations.csv that were dropped ({"line", "same_as", "series"});
    `reoriented` how many written scans were turned into the display orientation (their files
    store another voxel order, see :mod:`lungforge.data.orientation`); `workers` the worker
    processes used (:func:`planned_workers`).
    """

    store: str
    scans_total: int
    scans_done: int
    slices: int
    nodule_slices: int
    nodules: int
    skipped: list[dict[str, str]]
    seconds: float
    lost_nodules: list[dict[str, Any]] = field(default_factory=list)
    absent_series: dict[str, Any] = field(default_factory=lambda: {"series": 0, "annotations": 0, "uids": []})
    duplicate_annotations: list[dict[str, Any]] = field(default_factory=list)
    reoriented: int = 0
    workers: int = 1


def parse_test_patients(text: str) -> int | float:
    """`144` → 144 patients; `0.15` → 15 % of the scans. ValueError on anything else."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--test-patients must be a count or a fraction in [0, 1), got {text!r}") from None
    if not np.isfinite(value) or value < 0 or (value >= 1 and not value.is_integer()):
        raise ValueError(f"--test-patients must be a count or a fraction in [0, 1), got {text!r}")
    return int(value) if value >= 1 or value == 0 else value


PAPER_SCANS = 888
PAPER_TEST_PATIENTS = 144


def test_patient_count(test_patients: int | float | None, n_scans: int) -> int:
    """How many of `n_scans` patients are test patients.

    None: the paper's 144, or its share 144/888 of the scans when there are fewer than 888; a
    float: that fraction of the scans; an int: exactly that many.
    """
    if test_patients is None:
        return PAPER_TEST_PATIENTS if n_scans >= PAPER_SCANS else int(round(PAPER_TEST_PATIENTS / PAPER_SCANS * n_scans))
    if isinstance(test_patients, float):
        return int(round(test_patients * n_scans))
    return int(test_patients)


def split_patients(uids: list[str], test_patients: int | float | None, seed: int) -> set[str]:
    """The seeded set of test patients (series uids) among `uids` (see :func:`test_patient_count`)."""
    n = len(uids)
    n_test = test_patient_count(test_patients, n)
    if n_test >= n and n > 0:
        raise LungforgeError(
            f"--test-patients {test_patients} leaves no training patient among {n} scans; "
            "pass fewer or a fraction such as 0.2"
        )
    order = np.random.default_rng(seed).permutation(n)
    return {uids[i] for i in order[:n_test]}


def _scan_rng(seed: int, uid: str) -> np.random.Generator:
    """A generator that depends only on the seed and the scan (not on order or workers)."""
    return np.random.default_rng([seed, zlib.crc32(uid.encode())])


def process_scan(
    root: Path, ref: luna16.ScanRef, annotations: list[luna16.Annotation], options: PrepareOptions
) -> ScanSlices:
    """Run the recipe on one scan. Raises :class:`ScanError` naming the file and the problem.

    The scan (and its seg mask) is turned into the display orientation first, so slices, label
    maps, boxes and spacing all follow it whatever the file's direction.
    """
    volume = luna16.read_volume(ref.mhd)
    problem = hu_problem(volume.hu)
    if problem:
        raise ScanError(f"{ref.mhd}: {problem}")
    turn = Reorientation.from_direction(volume.direction, str(ref.mhd))
    seg_path = root / luna16.SEG_DIR / f"{ref.uid}.mhd"
    if options.lungs == "seg":
        seg = luna16.read_seg(root, ref.uid)
        if seg is None:
            raise ScanError(f"{seg_path}: no seg mask for this scan (use --lungs auto to segment classically)")
        scan_geometry = luna16.Geometry(volume.hu.shape, volume.origin_mm, volume.spacing_mm, volume.direction)
        difference = geometry_difference(scan_geometry, luna16.read_geometry(seg_path))
        if difference:
            raise ScanError(f"{seg_path}: {difference}")
    volume = _display(volume, turn)
    hu = volume.hu
    if options.lungs == "seg":
        lungs = _contiguous(turn.apply(seg))
        lung_values = (options.seg_values.left, options.seg_values.right)
    else:
        lungs = auto_lung_labels(
            hu,
            body_mask(window_to_uint8(hu)),
            volume.spacing_mm,
            left_is_high_x=bool(volume.direction[0, 0] > 0),
            superior_is_high_z=bool(volume.direction[2, 2] > 0),
        )
        lung_values = (LEFT_LUNG, RIGHT_LUNG)
    n_z = hu.shape[0]
    lung_present = _slices_holding(lungs, lung_values)
    if not lung_present.any():
        if options.lungs == "seg":
            raise ScanError(
                f"{seg_path}: no voxel holds the lung values left={lung_values[0]} right={lung_values[1]} (check --seg-values)"
            )
        raise ScanError(f"{ref.mhd}: --lungs auto found no lung (no air region of ≥ 30 mm² inside the body on any slice)")

    nodules = []
    if annotations:
        centres = luna16.world_to_index(
            np.stack([a.center_mm for a in annotations]), volume.origin_mm, volume.spacing_mm, volume.direction
        )
        size_xyz = np.array(hu.shape[::-1])
        for ann, centre in zip(annotations, centres):
            if np.any(centre < -0.5) or np.any(centre > size_xyz - 0.5):
                raise ScanError(
                    f"annotations.csv: nodule of {ref.uid} at {np.round(ann.center_mm, 1).tolist()} mm lies outside "
                    f"the volume (voxel {np.round(centre, 1).tolist()}, size {size_xyz.tolist()})"
                )
            box, mask = nodule_mask(hu, centre, ann.diameter_mm, volume.spacing_mm, volume.direction)
            touched = box[0].start + np.flatnonzero(mask.any(axis=(1, 2)))
            centre_z = int(np.clip(np.rint(centre[2]), 0, n_z - 1))
            nodules.append((ann, box, mask, touched, centre_z))

    touched_any = np.zeros(n_z, dtype=bool)
    wanted = np.zeros(n_z, dtype=bool)
    for _, _, _, touched, centre_z in nodules:
        touched_any[touched] = True
        touched_any[centre_z] = True
        if options.nodule_slices == "center":
            wanted[centre_z] = True
        else:
            wanted[touched] = True
    nodule_z = np.flatnonzero(wanted & lung_present)
    free = np.flatnonzero(lung_present & ~touched_any)
    n_keep = int(round(options.keep_nodule_free * free.size))
    free_kept = np.sort(_scan_rng(options.seed, ref.uid).choice(free, size=n_keep, replace=False)) if n_keep else free[:0]
    kept = np.union1d(nodule_z, free_kept).astype(np.int64)

    image = window_to_uint8(hu[kept])
    nodule_px = np.zeros(image.shape, dtype=bool)
    per_nodule: list[tuple[float, np.ndarray, np.ndarray]] = []
    for ann, box, mask, _, _ in nodules:
        z_local = np.flatnonzero((kept >= box[0].start) & (kept < box[0].stop))
        sub = mask[kept[z_local] - box[0].start]
        nodule_px[z_local[:, None, None], np.arange(box[1].start, box[1].stop)[None, :, None], np.arange(box[2].start, box[2].stop)[None, None, :]] |= sub
        per_nodule.append((ann.diameter_mm, z_local, sub))
    lungs_kept = seg_to_labels(lungs[kept], options.seg_values) if options.lungs == "seg" else lungs[kept]
    label = compose_labels(body_mask(image), lungs_kept, nodule_px)
    del hu, lungs

    rows: list[tuple[int, tuple[float, float, float, float], float]] = []
    labelled = np.zeros(len(nodules), dtype=bool)
    for j, ((diameter, z_local, sub), (_, box, _, _, _)) in enumerate(zip(per_nodule, nodules)):
        for k, plane in zip(z_local, sub):
            if not plane.any():
                continue
            r = np.flatnonzero(plane.any(axis=1))
            c = np.flatnonzero(plane.any(axis=0))
            bbox = (float(box[2].start + c[0]), float(box[1].start + r[0]), float(box[2].start + c[-1] + 1), float(box[1].start + r[-1] + 1))
            rows.append((int(k), bbox, float(diameter)))
            labelled[j] = True
    has_nodule = nodule_px.any(axis=(1, 2))
    # A nodule slice whose nodule vanished under the threshold is neither a nodule slice nor
    # nodule-free: drop it (its nodule is reported as lost below).
    keep_mask = has_nodule | np.isin(kept, free_kept)
    if not keep_mask.all():
        remap = np.cumsum(keep_mask) - 1
        rows = [(int(remap[k]), b, d) for k, b, d in rows if keep_mask[k]]
        image, label, kept, has_nodule = image[keep_mask], label[keep_mask], kept[keep_mask], has_nodule[keep_mask]
    rows.sort(key=lambda row: row[0])
    lost = [
        {
            "series": ref.uid,
            "center_mm": [round(float(v), 2) for v in ann.center_mm],
            "diameter_mm": round(ann.diameter_mm, 2),
            "reason": _loss_reason(mask, touched, centre_z, options.nodule_slices),
        }
        for (ann, _, mask, touched, centre_z), done in zip(nodules, labelled)
        if not done
    ]
    if annotations and kept.size == 0:
        reasons = "; ".join(f"{n['diameter_mm']} mm: {n['reason']}" for n in lost)
        raise ScanError(f"{ref.mhd}: its {len(annotations)} annotated nodules yield no slice ({reasons})")
    return ScanSlices(
        uid=ref.uid,
        image=image,
        label=label,
        z=kept.astype(np.int32),
        has_nodule=has_nodule,
        spacing_rc_mm=(float(volume.spacing_mm[1]), float(volume.spacing_mm[0])),
        nodule_rows=rows,
        lost=lost,
    )


def _contiguous(array: np.ndarray) -> np.ndarray:
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def _display(volume: luna16.Volume, turn: Reorientation) -> luna16.Volume:
    """`volume` in the display orientation (the same object when it already is)."""
    if turn.is_identity:
        return volume
    origin, spacing, direction = turn.geometry(volume.hu.shape, volume.origin_mm, volume.spacing_mm, volume.direction)
    return luna16.Volume(hu=_contiguous(turn.apply(volume.hu)), origin_mm=origin, spacing_mm=spacing, direction=direction)


def display_shape(mhd: Path) -> tuple[tuple[int, int, int], bool]:
    """The (Z, Y, X) shape `mhd` is stored with in display orientation, from its header alone,
    and whether its file order differs from it (ScanError when the header is invalid)."""
    geometry = luna16.read_geometry(mhd)
    turn = Reorientation.from_direction(geometry.direction, str(mhd))
    return turn.shape(geometry.shape_zyx), not turn.is_identity


def _loss_reason(mask: np.ndarray, touched: np.ndarray, centre_z: int, mode: str) -> str:
    """Why an annotated nodule yields no labelled slice (for the summary and --json)."""
    if not mask.any():
        return "mask empty at this resolution (no voxel of its sphere is denser than the threshold)"
    if mode == "center" and centre_z not in touched:
        return f"mask misses its central slice z={centre_z}"
    if mode == "center":
        return f"no lung on its central slice z={centre_z}"
    return "no lung on any slice its mask touches"


def _slices_holding(volume: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """(Z,) bool: which axial slices of a (Z, Y, X) volume contain any of `values`."""
    present = np.zeros(volume.shape[0], dtype=bool)
    for value in values:
        present |= (volume == value).reshape(volume.shape[0], -1).any(axis=1)
    return present


def _work(args: tuple[Path, luna16.ScanRef, list[luna16.Annotation], PrepareOptions, tuple[int, int]]) -> ScanSlices | ScanError:
    root, ref, annotations, options, shape_hw = args
    try:
        (_, height, width), _ = display_shape(ref.mhd)
        if (height, width) != shape_hw:
            raise ScanError(
                f"{ref.mhd}: in-plane size {height}×{width} differs from the store's {shape_hw[0]}×{shape_hw[1]} "
                "(the size of most scans)"
            )
        return process_scan(root, ref, annotations, options)
    except ScanError as exc:
        return exc
    except MemoryError:
        return ScanError(f"{ref.mhd}: out of memory while processing")


def store_shape(shapes: list[tuple[int, int]]) -> tuple[int, int]:
    """The store's (H, W): the in-plane size of most scans (ties: the earliest scan's), so one odd
    header skips that scan alone."""
    return Counter(shapes).most_common(1)[0][0]


def _exit_with_parent() -> None:
    """Worker initializer: exit as soon as the prepare process is gone, even after `kill -9`.

    multiprocessing keeps a pipe open to every worker as its parent's sentinel (also under the
    forkserver, which itself exits with the parent); a daemon thread waits for its EOF.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_after, args=(parent,), name="lungforge-parent-watch", daemon=True).start()


def _exit_after(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(1)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Never fork this process (its OpenMP and zarr threads can deadlock a forked child): fork
    from a clean server that has imported the recipe once, or spawn where there is none."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _worker_pool(workers: int) -> contextlib.AbstractContextManager[ProcessPoolExecutor | None]:
    """A pool of `workers` processes, started now so their start-up overlaps the main process's
    set-up (headers, store creation); None (work in this process) for `workers <= 1`."""
    if workers <= 1:
        return contextlib.nullcontext(None)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(), initializer=_exit_with_parent)
    for _ in range(workers):
        pool.submit(int)
    return pool


def _ordered_results(tasks: list[tuple], pool: ProcessPoolExecutor | None, workers: int) -> Iterator[ScanSlices | ScanError]:
    """Results in task order, at most 2·workers scans in flight (bounded memory)."""
    if pool is None:
        for task in tasks:
            yield _work(task)
        return
    pending: deque[Future] = deque()
    it = iter(tasks)
    for task in it:
        pending.append(pool.submit(_work, task))
        if len(pending) >= 2 * workers:
            break
    while pending:
        result = pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(_work, nxt))
        yield result


def _write_slices(task: tuple[Path, int, np.ndarray, np.ndarray]) -> None:
    """Worker task: compress and write one block's images and labels (whole shards it owns)."""
    path, start, image, label = task
    open_store(path, mode="r+", require_complete=False).write_slices(start, image, label)


# Blocks handed to the pool but not yet committed; more make the main process wait (memory bound).
MAX_PENDING_WRITES = 2


class _Writer:
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
        self.nodules: list[np.ndarray] = []  # committed rows: slice, x0, y0, x1, y1, diameter
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
        self.nodules = [p["nodules"] for _, p in sorted(parts.items())]
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
        images, labels, meta_cols, rows = [], [], {k: [] for k in ("series", "z", "spacing", "split", "fold", "has_nodule")}, []
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
            for k, bbox, diam in res.nodule_rows:
                if offset <= k < offset + n:
                    rows.append((self.written + taken + k - offset, *bbox, diam))
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
        nodules = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
        self.nodules.append(nodules)
        skipped = [s for s in self.skipped if s[0] < next_scan]
        lost = [n for n in self.lost if n[0] < next_scan]
        self.commits.append((
            written,
            f"flush-{self.flushes:06d}",
            {
                "written": np.int64(self.written),
                "next_scan": np.int64(next_scan),
                "next_offset": np.int64(next_offset),
                "series_uids": np.asarray(done_series, dtype=str),
                "nodules": nodules,
                "skipped_index": np.asarray([s[0] for s in skipped], dtype=np.int64),
                "skipped_file": np.asarray([s[1] for s in skipped], dtype=str),
                "skipped_reason": np.asarray([s[2] for s in skipped], dtype=str),
                "lost_index": np.asarray([n[0] for n in lost], dtype=np.int64),
                "lost_json": np.asarray([json.dumps(n[1]) for n in lost], dtype=str),
            },
        ))
        self.flushes += 1

    def nodule_table(self) -> dict[str, np.ndarray]:
        rows = np.concatenate(self.nodules) if self.nodules else np.zeros((0, 6))
        return {"slice": rows[:, 0].astype(np.int64), "bbox": rows[:, 1:5].astype(np.float32), "diameter_mm": rows[:, 5].astype(np.float32)}


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
    with hold_lock(Path(out), "store"), _worker_pool(workers) as pool:
        report = _prepare(
            luna16_dir, out, options, resume=resume, overwrite=overwrite, progress=progress,
            shard_slices=shard_slices, started=started, pool=pool, workers=workers,
        )
    return dataclasses.replace(report, workers=workers)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def planned_workers(luna16_dir: str | Path, options: PrepareOptions) -> int:
    """The worker processes `prepare` runs: `options.workers`, capped at one per available CPU
    and one per scan (more would only wait)."""
    scans = len(luna16.discover_scans(Path(luna16_dir)))
    if options.limit is not None:
        scans = min(scans, options.limit)
    return max(1, min(options.workers, available_cpus(), scans))


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
    root, out = Path(luna16_dir), Path(out)
    refs = luna16.discover_scans(root)
    misplaced = luna16.misplaced_scans(root)
    all_uids = {r.uid for r in refs} | {mhd.stem for mhd, _ in misplaced}
    sharing = _shared_data(refs)
    if options.limit is not None:
        refs = refs[: options.limit]
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
    uids = [r.uid for r in refs]
    test_uids = split_patients(uids, options.test_patients, options.seed)
    folds = {r.uid: r.subset for r in refs}

    headers: dict[str, tuple[tuple[int, int, int], bool]] = {}
    for ref in refs:
        try:
            headers[ref.uid] = display_shape(ref.mhd)
        except ScanError:
            pass
    if not headers:
        raise InputError(f"{root}: none of the {len(refs)} scans has a readable header")
    shape_hw = store_shape([shape[1:] for shape, _ in headers.values()])
    capacity = sum(shape[0] for shape, _ in headers.values())
    # The orientation is part of the params: a run started by a lungforge that stored file
    # order cannot be resumed into a store of mixed orientations.
    params = {
        **options.params(),
        "luna16_dir": str(root.resolve()),
        "seg_values": dataclasses.asdict(options.seg_values),
        "orientation": "LPS",
    }

    if resume and out.exists() and is_store(out):
        store = open_store(out, mode="r+", require_complete=False)
        if store.attrs.get("params") != _jsonable(params):
            raise LungforgeError(f"{out}: was prepared with other options {store.attrs.get('params')}; use --overwrite to start over")
        difference = manifest_difference(root, store.attrs.get("inputs"), manifest)
        if difference:
            raise InputError(f"{out}: cannot --resume from {root}: {difference}; use --overwrite to start over")
        if store.attrs.get("complete"):
            return _report(store, len(refs) + len(refused), started)
        shape_hw = store.shape_hw
    elif resume and out.exists():
        raise LungforgeError(f"{out}: exists and is not a lungforge store; cannot --resume it")
    else:
        store = create_store(
            out, kind="real", height=shape_hw[0], width=shape_hw[1], capacity=capacity,
            params=_jsonable(params), overwrite=overwrite, shard_slices=shard_slices, extra_attrs={"inputs": manifest},
        )
    writer = _Writer(store, len(refs), test_uids, folds, pool)
    next_scan, next_offset = writer.restore()
    task_id = progress.add_task("prepare", total=len(refs), completed=next_scan, status="") if progress else None
    tasks = [(root, ref, annotations.get(ref.uid, []), options, shape_hw) for ref in refs[next_scan:]]
    for i, result in enumerate(_ordered_results(tasks, pool, workers)):
        index = next_scan + i
        writer.add(index, result, offset=next_offset if i == 0 else 0)
        if progress is not None:
            progress.update(task_id, advance=1, status=f"{writer.written + writer.buffered} slices, {len(writer.skipped)} skipped")
    writer.finish()
    skipped = refused + [{"file": f, "reason": r} for _, f, r in writer.skipped]
    store.finalize(
        writer.written,
        writer.series_uids,
        writer.nodule_table(),
        attrs={
            "skipped": skipped,
            "lost_nodules": [nodule for _, nodule in writer.lost],
            "absent_series": absent_series,
            "duplicate_annotations": duplicate_rows,
            "reoriented": sum(headers[uid][1] for uid in writer.series_uids),
            "orientation": DISPLAY_ORIENTATION,
            "folds_from": "LUNA16 subset number",
        },
    )
    return _report(open_store(out), len(refs) + len(refused), started)


DISPLAY_ORIENTATION = (
    "LPS: columns run towards the patient's left, rows towards posterior, z towards superior "
    "(radiological display: the left lung on the image's right, anterior up)"
)
"""The `orientation` attribute of prepared stores (see :mod:`lungforge.data.orientation`)."""


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
