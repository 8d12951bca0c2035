"""`export_store`: write a store's slices (or a volume store's scans) in a consumer's format,
atomically (temp folder, then rename), under a lock on the output and never into its input store."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from lungforge.core.errors import InputError, OutputError
from lungforge.core.locks import hold_lock
from lungforge.core.output_paths import refuse_overlap
from lungforge.export.context import MARKER, NNUNET_FORMATS, ExportContext, ExportOptions, provenance
from lungforge.export.nnunet import with_dataset_id
from lungforge.export.slices import ExportSlice, iter_slices, select_indices
from lungforge.export.volumes import ExportVolume, iter_volumes, select_scans
from lungforge.store import VOLUME_SCHEMA, Store, VolumeStore, open_store, open_volume_store, schema_of

WRITERS = {
    "coco": ("lungforge.export.coco", "CocoWriter"),
    "yolo": ("lungforge.export.yolo", "YoloWriter"),
    "nnunet": ("lungforge.export.nnunet", "NnunetWriter"),
    "nifti": ("lungforge.export.nifti", "NiftiWriter"),
    "png": ("lungforge.export.png", "PngWriter"),
    "nnunet3d": ("lungforge.export.nnunet3d", "Nnunet3dWriter"),
    "monai-detection": ("lungforge.export.monai_detection", "MonaiDetectionWriter"),
}


class Writer(Protocol):
    """A format: created on an empty folder, given every slice in row order, then finished.

    `notes` are what a writer chose for the user to know (e.g. a data.yaml key it filled in).
    """

    notes: list[str]

    def add(self, item: ExportSlice) -> None: ...

    def finish(self) -> list[str]:
        """Write the index files; return the top-level entries of the dataset."""
        ...


class VolumeWriter(Protocol):
    """A volume format: created on an empty folder, given every scan in order, then finished."""

    notes: list[str]

    def add(self, item: ExportVolume) -> None: ...

    def finish(self) -> list[str]:
        """Write the index files; return the top-level entries of the dataset."""
        ...


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: counts per split, nodule boxes, and the nodules too small for the
    export size that were kept as their nearest pixel (`nodules_kept_as_pixel`)."""

    format: str
    out: str
    store: str
    split: str
    size: int | None
    height: int
    width: int
    nodule_only: bool
    images: int
    images_by_split: dict[str, int]
    nodules: int
    nodules_kept_as_pixel: int
    files: list[str]
    notes: list[str]


@dataclass(frozen=True)
class VolumeExportReport:
    """What a volume export wrote: scans per split at the store's isotropic `spacing_mm`, nodules
    (one box each), and `nodules_without_voxels`: annotations with no voxel at that spacing (boxed
    by the annotation, absent from the label maps)."""

    format: str
    out: str
    store: str
    split: str
    nodule_only: bool
    spacing_mm: float
    scans: int
    scans_by_split: dict[str, int]
    nodules: int
    nodules_without_voxels: int
    files: list[str]
    notes: list[str]


def export_store(
    store_path: str | os.PathLike,
    out: str | os.PathLike,
    options: ExportOptions,
    *,
    overwrite: bool = False,
    progress: Any | None = None,
) -> ExportReport | VolumeExportReport:
    """Export the slices of `store_path` chosen by `options` into `out` (nnU-Net: `out/DatasetNNN_Name`);
    for `nnunet3d` and `monai-detection`, the scans of the volume store `store_path`.

    Everything is written into a hidden `.<name>.partial` folder beside the target, which is
    renamed into place only after the last file and the `lungforge-export.json` marker are
    written: a killed export leaves no folder that looks complete. An existing target is replaced
    only with `overwrite` and only if it is an earlier lungforge export (or empty). The export
    resolves `out` (a symlink alias is written through) and holds its lock (`<out>.lock` beside
    it) from its checks to the rename, so a second export into the same place fails with LockError instead of mixing files;
    an output that is, contains or lies inside the store is refused. An nnU-Net export without a
    dataset id gets one here (:func:`lungforge.export.nnunet.with_dataset_id`).
    `progress` is an optional Rich Progress.
    """
    store = _open(Path(store_path), options)
    try:
        # Resolved once: a symlink alias of `out` takes the same lock and is written through.
        out = Path(out).resolve()
        # Checked before the lock file is made beside `out`, so nothing is created inside the store.
        refuse_overlap(options.target(out), "STORE", store.path, "export")
        with hold_lock(out, "export"):
            notes: list[str] = []
            if options.format in NNUNET_FORMATS:
                chosen = options.dataset_id is None
                options = with_dataset_id(out, options)
                if chosen:
                    notes.append(f"nnU-Net dataset id {options.dataset_id} chosen (no --dataset-id given)")
            target = options.target(out)
            refuse_overlap(target, "STORE", store.path, "export")
            _check_target(target, overwrite, options)
            if isinstance(store, VolumeStore):
                return _write_volumes(store, target, options, progress, notes)
            return _write(store, target, options, progress, notes)
    finally:
        store.close()


def _open(path: Path, options: ExportOptions) -> Store | VolumeStore:
    """The store to export, locked for reading (no writer replaces it meanwhile): a volume store
    for the volume formats, a slice store for the others; a store of the other kind is refused
    naming the formats it has."""
    is_volumes = schema_of(path) == VOLUME_SCHEMA
    if is_volumes != options.volumes and schema_of(path) is not None:
        wanted = "volume formats nnunet3d, monai-detection" if is_volumes else "slice formats coco, yolo, nnunet, nifti, png"
        kind = "a volume store (prepare --volumes)" if is_volumes else "a slice store"
        raise InputError(f"{path}: is {kind}; format {options.format!r} does not read it; use --format with one of the {wanted}")
    if options.volumes:
        return open_volume_store(path, lock_for_reading=True)
    return open_store(path, lock_for_reading=True)


def _write(store: Store, target: Path, options: ExportOptions, progress: Any | None, notes: list[str]) -> ExportReport:
    """Write the dataset into `.<target>.partial`, then rename it to `target`."""
    indices = select_indices(store, options.split, options.nodule_only)
    if indices.size == 0:
        raise InputError(
            f"{store.path}: no slices match split={options.split}, nodule_only={options.nodule_only}; choose another --split"
            + (" or leave out --nodule-only" if options.nodule_only else "")
        )
    h, w = (options.size, options.size) if options.size else store.shape_hw
    context = ExportContext(options=options, height=h, width=w, provenance=provenance(store, options))
    partial = _fresh_partial(target)
    with _removed_on_error(partial, target):
        module, name = WRITERS[options.format]
        writer: Writer = getattr(importlib.import_module(module), name)(partial, context)
        task = progress.add_task(f"export {options.format}", total=int(indices.size), status="") if progress else None
        by_split = {"train": 0, "test": 0}
        nodules = kept_as_pixel = 0
        for item in iter_slices(store, indices, options.size):
            writer.add(item)
            by_split[item.split] += 1
            nodules += len(item.boxes)
            kept_as_pixel += int(item.restored.sum())
            if progress is not None:
                progress.update(task, advance=1, status=f"{nodules} nodules")
        files = writer.finish()
        if kept_as_pixel:
            notes.append(
                f"{kept_as_pixel} of {nodules} nodules have no pixel left at {h}×{w}: each keeps its nearest pixel "
                "(mask, box and label map; counted in nodules_kept_as_pixel)"
            )
        report = ExportReport(
            format=options.format,
            out=str(target),
            store=str(store.path),
            split=options.split,
            size=options.size,
            height=h,
            width=w,
            nodule_only=options.nodule_only,
            images=int(indices.size),
            images_by_split=by_split,
            nodules=nodules,
            nodules_kept_as_pixel=kept_as_pixel,
            files=files + [MARKER],
            notes=notes + writer.notes,
        )
        (partial / MARKER).write_text(json.dumps({"report": asdict(report), "provenance": context.provenance}, indent=2))
        _swap_into_place(partial, target)
    return report


def _write_volumes(store: VolumeStore, target: Path, options: ExportOptions, progress: Any | None, notes: list[str]) -> VolumeExportReport:
    """Write the scans into `.<target>.partial`, then rename it to `target`."""
    indices = select_scans(store, options.split, options.nodule_only)
    if indices.size == 0:
        raise InputError(
            f"{store.path}: no scans match split={options.split}, nodule_only={options.nodule_only}; choose another --split"
            + (" or leave out --nodule-only" if options.nodule_only else "")
        )
    context = ExportContext(options=options, height=0, width=0, provenance=provenance(store, options))
    partial = _fresh_partial(target)
    with _removed_on_error(partial, target):
        module, name = WRITERS[options.format]
        writer: VolumeWriter = getattr(importlib.import_module(module), name)(partial, context)
        task = progress.add_task(f"export {options.format}", total=int(indices.size), status="") if progress else None
        by_split = {"train": 0, "test": 0}
        nodules = lost = 0
        for item in iter_volumes(store, indices):
            writer.add(item)
            by_split[item.split] += 1
            nodules += len(item.boxes_voxel)
            lost += int(item.lost.sum())
            if progress is not None:
                progress.update(task, advance=1, status=f"{nodules} nodules")
        files = writer.finish()
        if lost:
            notes.append(
                f"{lost} of {nodules} nodules have no voxel at {store.spacing_mm:g} mm: the label maps lack them and a box, "
                "where written, is the annotation's (its centre and a cube of its diameter)"
            )
        report = VolumeExportReport(
            format=options.format,
            out=str(target),
            store=str(store.path),
            split=options.split,
            nodule_only=options.nodule_only,
            spacing_mm=store.spacing_mm,
            scans=int(indices.size),
            scans_by_split=by_split,
            nodules=nodules,
            nodules_without_voxels=lost,
            files=files + [MARKER],
            notes=notes + writer.notes,
        )
        (partial / MARKER).write_text(json.dumps({"report": asdict(report), "provenance": context.provenance}, indent=2))
        _swap_into_place(partial, target)
    return report


def _fresh_partial(target: Path) -> Path:
    """The empty hidden folder `.<target>.partial` beside `target` (a killed run's is cleared)."""
    partial = target.parent / f".{target.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


@contextlib.contextmanager
def _removed_on_error(partial: Path, target: Path) -> Iterator[None]:
    """Remove the `partial` folder of `target` when the export fails with an error (a kill or
    Ctrl-C leaves it, hidden, for the next run to clear); a failed write (full disk, read-only
    folder) becomes one OutputError naming the path."""
    try:
        yield
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError):
            name = str(exc.filename or "")
            inside = f" {os.path.relpath(name, partial)}" if name.startswith(str(partial) + os.sep) else ""
            raise OutputError(f"{target}: cannot write{inside} ({exc.strerror or exc}); nothing was exported") from None
        raise


def _check_target(target: Path, overwrite: bool, options: ExportOptions) -> None:
    """Refuse a `target` that is not a directory, not a lungforge export, or (without `overwrite`)
    an earlier export; every refusal names the option that keeps what is there."""
    if not target.exists():
        return
    keep = (
        "export under another name with --dataset-name NAME (with no --dataset-id a free id is chosen)"
        if options.format in NNUNET_FORMATS
        else "export into another --out"
    )
    if not target.is_dir():
        raise InputError(f"{target}: exists and is not a directory; {keep}")
    if not any(target.iterdir()):
        return
    if not (target / MARKER).is_file():
        raise InputError(f"{target}: exists and is not a lungforge export; refusing to write into it: {keep}")
    if not overwrite:
        raise InputError(f"{target}: already holds an export{_exported_from(target)}; to keep it, {keep} (--overwrite replaces it)")


def _exported_from(target: Path) -> str:
    """` of STORE` for the earlier export at `target` (from its marker), or '' if the marker does not say."""
    try:
        store = json.loads((target / MARKER).read_text())["provenance"]["store"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return f" of {store}"


def _swap_into_place(partial: Path, target: Path) -> None:
    """Rename the finished `partial` folder to `target`, replacing an earlier export."""
    if target.exists():
        old = target.parent / f".{target.name}.replaced"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(partial, target)
        shutil.rmtree(old)
    else:
        os.replace(partial, target)
