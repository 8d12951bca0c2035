"""`lungforge augment-volumes`: model-free 3-D nodule insertion into real volumes (docs/augment.md,
"Volumes"), the 3-D counterpart of the `paste` and `blob` controls.

Per output volume v, everything is drawn from (seed, v) alone (:func:`~lungforge.augment.plan.sample_seed`):
up to :data:`MAX_HOSTS` hosts of the requested split in a random order; on the first that can
hold them all, the volume's nodules (largest first), each from one donor nodule of a train
patient (of the host's LUNA16 fold when that fold has one, as the 2-D planner does), drawn at its
requested diameter (:mod:`~lungforge.augment.volume_nodules`) and placed by the placement rules
(:mod:`~lungforge.augment.volume_placement`). The host's volumes are copied and each nodule is
rendered into the crop of its padded patch only: outside the edit boxes the output is the
host's bit for bit, and the label volume gets label 5 on each inserted mask.

Writing: one output volume at a time (:class:`~lungforge.store.VolumeWriter`), then its commit
record (`parts/volume-<v>.npz`: its scan row, the host's real nodules and the inserted rows), so a
run killed at any moment resumes after the last record and ends with the same store (the same
content fingerprint) as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.augment.plan import sample_seed
from lungforge.augment.volume_nodules import (
    MAX_ANISOTROPY,
    Donor,
    VolumeNodule,
    blob_nodule,
    cut_donor,
    equivalent_diameter_mm,
    paste_nodule,
    z_extent,
    z_voxels,
)
from lungforge.augment.volume_options import VolumeInsertOptions, VolumeInsertReport, output_defining
from lungforge.augment.volume_placement import HostMaps, Placed, host_maps, place
from lungforge.core.errors import InputError, LayoutError, SchemaError
from lungforge.core.labels import NODULE
from lungforge.core.locks import hold_lock
from lungforge.core.output_paths import refuse_overlap
from lungforge.store import SCHEMA, SPLIT_IDS, VOLUME_SCHEMA, VolumeStore, VolumeWriter, create_volume_store, open_volume_store, schema_of
from lungforge.store import resume_volume_store as reopen_volume_store
from lungforge.store.volume_schema import INSERTED_COLUMNS, NODULE_COLUMNS, SCAN_COLUMNS

MAX_HOSTS = 16
"""Hosts tried per output volume before the request is declared impossible."""
NODULE_TRIES = 8
"""Draws (donors, blob shapes) per nodule before a host is given up."""
DONOR_MIN_VOXELS = 8
"""Real nodules with fewer mask voxels carry no 3-D shape worth scaling: never donors."""
NO_ANNOTATION = -1
"""`nodules/annotation` of an inserted nodule (it has no line in annotations.csv)."""
Progress = Callable[[int, int], None]
"""progress(volumes_done, volumes_total)."""


@dataclass(frozen=True, eq=False)
class Insertion:
    """One planned nodule: where it goes (`placed`), the diameter asked for (mm) and its donor
    (row of the input's nodule table and its scan)."""

    placed: Placed
    requested_mm: float
    donor_nodule: int
    donor_scan: int


@dataclass(frozen=True, eq=False)
class PlannedVolume:
    """Output volume `index`: its host (row of the input's scans), seed and nodules."""

    index: int
    seed: int
    host: int
    insertions: tuple[Insertion, ...]


class VolumePlanner:
    """Plans output volume v from (options.seed, v) alone (module docstring).

    `hosts` are the input's scans of the requested split; `donors` the rows of its nodule table
    of train patients with at least :data:`DONOR_MIN_VOXELS` mask voxels spanning two slices.
    """

    def __init__(self, real: VolumeStore, options: VolumeInsertOptions) -> None:
        self.real = real
        self.options = options
        self.spacing_mm = real.spacing_mm
        split = real.split
        self.hosts = np.arange(len(real)) if options.split == "all" else np.flatnonzero(split == SPLIT_IDS[options.split])
        if self.hosts.size == 0:
            raise InputError(f"{real.path}: no {options.split} volumes to insert nodules into")
        table = real.nodules()
        self.table = table
        tall = (table["bbox"][:, 3] - table["bbox"][:, 0]) >= 2
        usable = (split[table["scan"]] == SPLIT_IDS["train"]) & (table["voxels"] >= DONOR_MIN_VOXELS) & tall
        self.donors = np.flatnonzero(usable)
        if self.donors.size == 0:
            raise InputError(
                f"{real.path}: no train nodule of >= {DONOR_MIN_VOXELS} voxels over two slices to copy "
                f"(augment-volumes --weights {options.weights} takes each nodule's shape or HU from one)"
            )
        self._fold_of_donor = real.fold[table["scan"][self.donors]]
        self._maps: tuple[int, np.ndarray, HostMaps | None] | None = None

    def _host(self, host: int) -> tuple[np.ndarray, HostMaps | None]:
        """The host's label volume and distance maps (the last host's kept: hosts repeat)."""
        if self._maps is None or self._maps[0] != host:
            label = np.asarray(self.real.label(host)[...])
            self._maps = (host, label, host_maps(label, self.spacing_mm, wall=self.options.placement == "peripheral"))
        return self._maps[1], self._maps[2]

    def _donor(self, row: int, diameter_mm: float | None) -> Donor:
        """Donor nodule `row` cut with room for its feather once scaled to `diameter_mm`."""
        box = self.table["bbox"][row]
        z_extent_box = int(box[3] - box[0])
        target = z_voxels(diameter_mm, self.spacing_mm) if diameter_mm is not None else z_extent_box
        zoom = max(target / z_extent_box / MAX_ANISOTROPY, 1e-3)
        margin = math.ceil((self.options.feather_voxels + 2) / zoom) + 1
        scan = int(self.table["scan"][row])
        return cut_donor(self.real.image(scan), self.real.label(scan), box, margin)

    def _nodule(self, donor: Donor, diameter_mm: float, rng: np.random.Generator) -> VolumeNodule | None:
        """The drawn nodule of `donor` at `diameter_mm`, or None when this draw misses (then redraw)."""
        feather = self.options.feather_voxels
        if self.options.weights == "blob":
            return blob_nodule(diameter_mm, self.spacing_mm, donor.median_hu(), rng, feather)
        return paste_nodule(donor, diameter_mm, self.spacing_mm, feather, z_voxels(diameter_mm, self.spacing_mm))

    def _draw(self, host: int, rng: np.random.Generator) -> tuple[int, float, VolumeNodule] | None:
        """(donor row, requested mm, nodule): a donor of the host's fold when it has one, else any."""
        fold = self.real.fold[host]
        pool = self.donors[self._fold_of_donor == fold]
        pool = pool if pool.size else self.donors
        for _ in range(NODULE_TRIES):
            row = int(pool[rng.integers(pool.size)])
            requested = rng.uniform(*self.options.diameter_mm) if self.options.diameter_mm is not None else None
            donor = self._donor(row, requested)
            diameter = float(requested) if requested is not None else float(equivalent_diameter_mm(donor.voxels, self.spacing_mm))
            nodule = self._nodule(donor, diameter, rng)
            if nodule is not None and abs(z_extent(nodule.mask) * self.spacing_mm - diameter) <= self.spacing_mm:
                return row, diameter, nodule
        return None

    def _on_host(self, host: int, count: int, rng: np.random.Generator) -> tuple[Insertion, ...] | None:
        """`count` nodules drawn and placed in `host`, largest first; None when one finds no place."""
        label, maps = self._host(host)
        if maps is None:
            return None
        drawn = []
        for _ in range(count):
            one = self._draw(host, rng)
            if one is None:
                return None
            drawn.append(one)
        placed: list[Placed] = []
        out = []
        for row, diameter, nodule in sorted(drawn, key=lambda d: -d[1]):
            spot = place(maps, nodule, diameter, self.options.placement, placed, rng, label.shape, label)
            if spot is None:
                return None
            placed.append(spot)
            out.append(Insertion(spot, diameter, row, int(self.table["scan"][row])))
        return tuple(out)

    def plan(self, index: int) -> PlannedVolume:
        """The plan of output volume `index` (deterministic); LayoutError when no host tried holds it."""
        seed = sample_seed(self.options.seed, index)
        rng = np.random.default_rng(seed)
        count = self.options.nodules_in(index)
        order = rng.permutation(self.hosts)[:MAX_HOSTS]
        for host in order:
            insertions = self._on_host(int(host), count, rng)
            if insertions is not None:
                return PlannedVolume(index, seed, int(host), insertions)
        what = "a nodule" if count == 1 else f"{count} nodules"
        size = "" if self.options.diameter_mm is None else f" of {self.options.diameter_mm[0]:g}-{self.options.diameter_mm[1]:g} mm"
        raise LayoutError(
            f"{self.real.path}: no {self.options.split} volume of the {order.size} tried can hold {what}{size} "
            f"with placement {self.options.placement!r} (whole nodule inside one lung, clear of other nodules)"
        )

    def check_feasible(self) -> PlannedVolume:
        """Before anything is written: refuse a `--diameter` MIN under two voxels, plan volume 0
        and, for a range, a volume of nodules of its largest diameter (LayoutError). Returns the
        plan of volume 0."""
        if self.options.diameter_mm is not None:
            lo, hi = self.options.diameter_mm
            if lo < 2 * self.spacing_mm:
                raise LayoutError(
                    f"--diameter {lo:g}:{hi:g} mm: MIN is below two voxels of {self.real.path} "
                    f"({self.spacing_mm:g} mm spacing); use MIN >= {2 * self.spacing_mm:g}"
                )
            worst = VolumePlanner(self.real, dataclasses.replace(self.options, diameter_mm=(hi, hi)))
            worst.plan(0)
            self._maps = worst._maps  # the same host's distance maps: plan(0) below starts with it
        return self.plan(0)


def render_volume(real: VolumeStore, plan: PlannedVolume) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """The host's HU (Z, Y, X) int16 and labels (Z, Y, X) uint8 with `plan`'s nodules inserted,
    each rendered into its own patch crop, and per nodule its mask box, edit box (host voxels,
    half-open), voxel count and mask centroid (continuous z, y, x)."""
    image, label = real.read(plan.host)
    rows = []
    for insertion in plan.insertions:
        placed = insertion.placed
        crop = tuple(slice(int(a), int(b)) for a, b in zip(placed.start, placed.stop))
        edited, edit = placed.nodule.render(image[crop], label[crop])
        image[crop] = edited
        label[crop][placed.nodule.mask] = NODULE
        where = np.nonzero(edit)
        edit_box = [*(placed.start + [w.min() for w in where]), *(placed.start + [w.max() + 1 for w in where])]
        rows.append(
            {
                "bbox": placed.mask_box(),
                "edit_box": np.array(edit_box, dtype=np.int64),
                "voxels": int(placed.nodule.mask.sum()),
                "centre": placed.start + np.argwhere(placed.nodule.mask).mean(axis=0),
            }
        )
    return image, label, rows


def _record(real: VolumeStore, plan: PlannedVolume, rendered: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Output volume `plan.index`'s commit record: its scan row (the host's), the host's real
    nodule rows and the inserted rows (`nodule_*` and `inserted_*`, the latter without `nodule`)."""
    host = plan.host
    table = real.nodules()
    own = np.flatnonzero(table["scan"] == host)
    spacing = real.spacing_mm
    centres = np.array([r["centre"] for r in rendered], dtype=np.float64).reshape(-1, 3)
    voxels = np.array([r["voxels"] for r in rendered], dtype=np.int64)
    achieved = equivalent_diameter_mm(voxels, spacing)
    nodules = {
        "center_mm": np.concatenate([table["center_mm"][own], real.index_to_world(host, centres)]),
        "center_voxel": np.concatenate([table["center_voxel"][own], centres]),
        "diameter_mm": np.concatenate([table["diameter_mm"][own], achieved]),
        "annotation": np.concatenate([table["annotation"][own], np.full(len(rendered), NO_ANNOTATION)]),
        "voxels": np.concatenate([table["voxels"][own], voxels]),
        "bbox": np.concatenate([table["bbox"][own], np.array([r["bbox"] for r in rendered]).reshape(-1, 6)]),
    }
    inserted = {
        "host": np.full(len(rendered), host, dtype=np.int64),
        "requested_mm": np.array([i.requested_mm for i in plan.insertions]),
        "achieved_mm": np.asarray(achieved, dtype=np.float64),
        "edit_box": np.array([r["edit_box"] for r in rendered]).reshape(-1, 6),
        "donor_scan": np.array([i.donor_scan for i in plan.insertions], dtype=np.int64),
        "donor_nodule": np.array([i.donor_nodule for i in plan.insertions], dtype=np.int64),
        "seed": np.full(len(rendered), plan.seed, dtype=np.int64),
    }
    scan = {name: np.asarray(real.array(f"scans/{name}")[host]) for name in SCAN_COLUMNS}
    return {
        "index": np.asarray(plan.index),
        "uid": np.asarray(real.uids[host]),
        **{f"scan_{k}": v for k, v in scan.items()},
        **{f"nodule_{k}": v for k, v in nodules.items()},
        **{f"inserted_{k}": v for k, v in inserted.items()},
    }


def _check_output(options: VolumeInsertOptions) -> None:
    """Refuse an --out that overlaps --data, exists without --resume/--overwrite, or holds real data."""
    refuse_overlap(options.out, "--data", options.data, "augment-volumes")
    out = options.out
    if not out.exists():
        return
    if not (options.resume or options.overwrite):
        raise SchemaError(f"{out}: already exists; pass --resume to continue it or --overwrite to replace it")
    schema = schema_of(out)
    if options.overwrite and schema in (SCHEMA, VOLUME_SCHEMA):
        kind = json.loads((out / "zarr.json").read_text()).get("attributes", {}).get("kind")
        if kind == "real":
            raise SchemaError(f"{out}: is a real store; augment-volumes never overwrites real data (choose another --out)")


def _open_input(data: Path) -> VolumeStore:
    """The real volume store at `data`, held shared; a one-line error for anything else."""
    schema = schema_of(data)
    if schema == SCHEMA:
        raise InputError(
            f"{data}: is a store of 2-D slices; augment-volumes needs a volume store (lungforge prepare LUNA16 --out V.zarr "
            "--volumes); for slices use lungforge augment"
        )
    real = open_volume_store(data, lock_for_reading=True)
    if real.attrs.get("kind") != "real":
        real.close()
        raise InputError(f"{data}: is a {real.attrs.get('kind')!r} volume store; augment-volumes inserts into real volumes only")
    return real


def _open_target(options: VolumeInsertOptions, real: VolumeStore) -> VolumeWriter:
    """The output being resumed (refused when its options or input differ), or a new one."""
    params = options.as_params()
    fingerprint = real.fingerprint()
    if options.resume and options.out.exists():
        if schema_of(options.out) != VOLUME_SCHEMA:
            raise SchemaError(f"{options.out}: exists and is not a lungforge volume store; cannot --resume it")
        writer = reopen_volume_store(options.out)
        if writer.attrs.get("kind") != "synthetic":
            raise SchemaError(f"{options.out}: is not a synthetic volume store; cannot --resume it")
        if output_defining(writer.attrs.get("params", {})) != output_defining(params):
            raise SchemaError(f"{options.out}: was started with other options {writer.attrs.get('params')}; use --overwrite to start over")
        source = writer.attrs.get("input", {})
        if source.get("fingerprint") != fingerprint:
            raise SchemaError(
                f"{options.out}: was started from volume store {source.get('path')} (fingerprint {source.get('fingerprint')}), "
                f"--data {options.data} has fingerprint {fingerprint}; resume with the same --data"
            )
        return writer
    return create_volume_store(
        options.out,
        spacing_mm=real.spacing_mm,
        params=params,
        overwrite=options.overwrite,
        extra_attrs={
            "kind": "synthetic",
            "input": {"path": str(options.data), "fingerprint": fingerprint},
            "orientation": real.attrs.get("orientation"),
            "generator": {
                "weights": options.weights,
                "kind": options.weights,
                "mode": "insert-3d",
                "model_free": True,
                "blob_hu": "median HU of the donor nodule's own voxels" if options.weights == "blob" else None,
            },
        },
    )


def augment_volumes(options: VolumeInsertOptions, progress: Progress | None = None) -> VolumeInsertReport:
    """Insert `options.nodules` nodules into real volumes of `options.data` and write them to the
    synthetic volume store `options.out` (module docstring); resumable with `options.resume`.

    An impossible request (LayoutError), a wrong input (InputError, SchemaError) or an output
    that may not be written (SchemaError) fails before anything is written.
    """
    started = time.perf_counter()
    _check_output(options)
    real = _open_input(options.data)
    try:
        planner = VolumePlanner(real, options)
        first = planner.check_feasible()
        with hold_lock(options.out, "store"):
            writer = _open_target(options, real)
            written = 0
            if not writer.attrs.get("complete"):
                records = [record for _, record in sorted(writer.records().items())]
                writer.drop_volumes_from(len(records))
                for v in range(len(records), options.volumes):
                    plan = first if v == 0 else planner.plan(v)
                    image, label, rendered = render_volume(real, plan)
                    writer.write_scan(v, image, label)
                    record = _record(real, plan, rendered)
                    writer.save_record(f"volume-{v:06d}", record)
                    records.append(record)
                    written += 1
                    if progress is not None:
                        progress(v + 1, options.volumes)
                _finalize(writer, records, real)
        return _report(options, open_volume_store(options.out), written, time.perf_counter() - started)
    finally:
        real.close()


def _finalize(writer: VolumeWriter, records: list[dict[str, np.ndarray]], real: VolumeStore) -> None:
    """The scan, nodule and inserted tables from the commit records; leakage records; finish."""
    scans = {name: np.stack([r[f"scan_{name}"] for r in records]) for name in SCAN_COLUMNS}
    nodules: dict[str, np.ndarray] = {"scan": np.concatenate([np.full(r["nodule_voxels"].shape[0], int(r["index"])) for r in records])}
    for name in NODULE_COLUMNS:
        if name != "scan":
            nodules[name] = np.concatenate([r[f"nodule_{name}"].reshape(-1, *NODULE_COLUMNS[name].shape) for r in records])
    inserted: dict[str, np.ndarray] = {}
    first_row, rows = 0, []
    for r in records:
        n_all, n_new = r["nodule_voxels"].shape[0], r["inserted_host"].shape[0]
        rows.append(np.arange(first_row + n_all - n_new, first_row + n_all))
        first_row += n_all
    inserted["nodule"] = np.concatenate(rows)
    for name in INSERTED_COLUMNS:
        if name != "nodule":
            inserted[name] = np.concatenate([r[f"inserted_{name}"].reshape(-1, *INSERTED_COLUMNS[name].shape) for r in records])
    uids = real.uids
    donors = sorted({uids[int(s)] for s in inserted["donor_scan"]})
    writer.finalize(
        [str(r["uid"]) for r in records],
        scans,
        nodules,
        attrs={"leakage": {"host_series": sorted({str(r["uid"]) for r in records}), "donor_series": donors}},
        inserted=inserted,
    )


def _report(options: VolumeInsertOptions, store: VolumeStore, written: int, seconds: float) -> VolumeInsertReport:
    inserted = store.inserted()
    table = store.nodules()
    requested, achieved = inserted["requested_mm"].astype(np.float64), inserted["achieved_mm"].astype(np.float64)
    error = 100.0 * np.abs(achieved - requested) / requested
    boxes = table["bbox"][inserted["nodule"]]
    z_error = np.abs((boxes[:, 3] - boxes[:, 0]) * store.spacing_mm - requested)
    inserted_now = sum(options.nodules_in(v) for v in range(options.volumes - written, options.volumes))
    return VolumeInsertReport(
        out=str(store.path),
        weights=options.weights,
        volumes=len(store),
        nodules=int(requested.size),
        written_this_run=written,
        spacing_mm=store.spacing_mm,
        diameter_error_pct_mean=round(float(error.mean()), 2),
        diameter_error_pct_max=round(float(error.max()), 2),
        z_extent_error_mm_max=round(float(z_error.max()), 3),
        fingerprint=store.fingerprint(),
        seconds=round(seconds, 3),
        nodules_per_minute=round(60.0 * inserted_now / max(seconds, 1e-9), 2),
    )
