"""Options and report of `lungforge prepare`, and the seeded split of patients into train and test."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lungforge.core.choices import VOLUME_SPACING_MM, VOLUME_SPACING_RANGE_MM, Lungs, NoduleSlices
from lungforge.core.errors import ConfigError, LungforgeError
from lungforge.core.labels import SegValues
from lungforge.core.seeds import check_seed


@dataclass(frozen=True)
class PrepareOptions:
    """Options of the preparation recipe; saved in the store's `params` attribute."""

    lungs: Lungs = "seg"
    seg_values: SegValues = SegValues()
    nodule_slices: NoduleSlices = "center"
    keep_nodule_free: float = 0.25
    test_patients: int | float | None = None
    seed: int = 0
    limit: int | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        """ConfigError naming the field for a value outside its choices or range."""
        if self.nodule_slices not in ("center", "all"):
            raise ConfigError("nodule_slices", f"nodule_slices must be one of center, all, got {self.nodule_slices!r}")
        if not (math.isfinite(self.keep_nodule_free) and 0.0 <= self.keep_nodule_free <= 1.0):
            raise ConfigError("keep_nodule_free", f"keep_nodule_free must be a fraction in [0, 1], got {self.keep_nodule_free}")
        _check_inputs(self)

    def params(self) -> dict[str, Any]:
        """The options that determine the store's content (not `workers`)."""
        out = dataclasses.asdict(self)
        out.pop("workers")
        return out


@dataclass(frozen=True)
class VolumeOptions:
    """Options of `prepare --volumes` (3-D volumes at one isotropic `spacing_mm`, cropped to the
    body's box grown by `margin_mm`); saved in the volume store's `params` attribute. The
    inputs, lungs and split options mean what they mean for :class:`PrepareOptions`."""

    spacing_mm: float = VOLUME_SPACING_MM
    margin_mm: float = 5.0
    lungs: Lungs = "seg"
    seg_values: SegValues = SegValues()
    test_patients: int | float | None = None
    seed: int = 0
    limit: int | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        """ConfigError naming the field for a value outside its choices or range."""
        lo, hi = VOLUME_SPACING_RANGE_MM
        if not (math.isfinite(self.spacing_mm) and lo <= self.spacing_mm <= hi):
            raise ConfigError("spacing_mm", f"spacing_mm must be {lo:g}..{hi:g} mm, got {self.spacing_mm}")
        if not (math.isfinite(self.margin_mm) and 0.0 <= self.margin_mm <= MAX_MARGIN_MM):
            raise ConfigError("margin_mm", f"margin_mm must be 0..{MAX_MARGIN_MM:g} mm, got {self.margin_mm}")
        _check_inputs(self)

    def params(self) -> dict[str, Any]:
        """The options that determine the store's content (not `workers`)."""
        out = dataclasses.asdict(self)
        out.pop("workers")
        return out


MAX_MARGIN_MM = 50.0
"""The widest margin around the body a volume may keep, mm."""


def _check_inputs(options: PrepareOptions | VolumeOptions) -> None:
    """ConfigError for the options both preparations share: lungs, seg values, split, limit, workers, seed."""
    if options.lungs not in ("seg", "auto"):
        raise ConfigError("lungs", f"lungs must be one of seg, auto, got {options.lungs!r}")
    if not isinstance(options.seg_values, SegValues):
        raise ConfigError("seg_values", f"seg_values must be a SegValues, got {type(options.seg_values).__name__}")
    patients = options.test_patients
    if isinstance(patients, float) and not (math.isfinite(patients) and 0.0 <= patients < 1.0):
        raise ConfigError("test_patients", f"test_patients must be a count >= 0 or a fraction in [0, 1), got {patients}")
    if isinstance(patients, int) and (isinstance(patients, bool) or patients < 0):
        raise ConfigError("test_patients", f"test_patients must be a count >= 0 or a fraction in [0, 1), got {patients!r}")
    if options.limit is not None and options.limit < 1:
        raise ConfigError("limit", f"limit must be >= 1 scans, got {options.limit}")
    if options.workers < 1:
        raise ConfigError("workers", f"workers must be >= 1, got {options.workers}")
    try:
        check_seed(options.seed)
    except ValueError as exc:
        raise ConfigError("seed", str(exc)) from None


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
    store another voxel order, see :mod:`lungforge.luna16.orientation`); `workers` the worker
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


@dataclass
class VolumeReport:
    """What a `prepare --volumes` run produced: `scans_done` volumes of `voxels` voxels in all at
    `spacing_mm`, `nodules` nodule rows (every annotation of a written scan) of which
    `nodules_labelled` have a non-empty mask; the other fields as in :class:`PrepareReport`
    (`lost_nodules`: the annotations whose mask is empty)."""

    store: str
    scans_total: int
    scans_done: int
    spacing_mm: float
    voxels: int
    nodules: int
    nodules_labelled: int
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
        return PAPER_TEST_PATIENTS if n_scans >= PAPER_SCANS else round(PAPER_TEST_PATIENTS / PAPER_SCANS * n_scans)
    if isinstance(test_patients, float):
        return round(test_patients * n_scans)
    return int(test_patients)


def split_patients(uids: list[str], test_patients: int | float | None, seed: int) -> set[str]:
    """The seeded set of test patients (series uids) among `uids` (see :func:`test_patient_count`)."""
    n = len(uids)
    n_test = test_patient_count(test_patients, n)
    if n_test >= n and n > 0:
        raise LungforgeError(
            f"--test-patients {test_patients} leaves no training patient among {n} scans; pass fewer or a fraction such as 0.2"
        )
    order = np.random.default_rng(seed).permutation(n)
    return {uids[i] for i in order[:n_test]}
