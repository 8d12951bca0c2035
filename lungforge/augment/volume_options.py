"""Options and report of `lungforge augment-volumes`, model-free 3-D nodule insertion into real
volumes (:mod:`lungforge.augment.volume_insert`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from lungforge.augment.layout import MAX_DIAMETER_MM
from lungforge.core.choices import HostSplit, Placement, VolumeControl
from lungforge.core.errors import ConfigError
from lungforge.core.json_params import json_params
from lungforge.core.seeds import check_seed

MAX_FEATHER_VOXELS = 8
OUTPUT_DEFINING = ("weights", "nodules", "per_volume", "diameter_mm", "placement", "split", "seed", "feather_voxels")
"""Options that change the output's content: a resumed run must repeat them exactly."""


@dataclass(frozen=True)
class VolumeInsertOptions:
    """What to insert, where and how.

    `weights` "paste" copies one real train nodule per insertion (its 3-D mask and HU from its
    donor volume, resampled to the requested diameter, feathered in over `feather_voxels`
    voxels); "blob" writes a constant-HU ellipsoid (the same donor's median nodule HU) with a
    partial-volume edge. `nodules` nodules in all, `per_volume` per output volume (the last
    volume takes the remainder), so ⌈nodules / per_volume⌉ output volumes. `diameter_mm`
    (MIN, MAX) mm, drawn uniformly; None = each donor's own equivalent diameter. Hosts come from
    the `split` patients of `data` (donors always from train patients); output volume v draws
    everything from (seed, v) alone.
    """

    data: Path
    out: Path
    weights: VolumeControl = "paste"
    nodules: int = 1
    per_volume: int = 1
    diameter_mm: tuple[float, float] | None = None
    placement: Placement = "any"
    split: HostSplit = "train"
    seed: int = 0
    feather_voxels: int = 2
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        """ConfigError naming the field for a value outside its choices or range."""
        if self.nodules < 1:
            raise ConfigError("nodules", f"nodules must be >= 1 (nodules to insert in all), got {self.nodules}")
        if self.per_volume < 1:
            raise ConfigError("per_volume", f"per_volume must be >= 1, got {self.per_volume}")
        choices = {"weights": get_args(VolumeControl), "placement": get_args(Placement), "split": get_args(HostSplit)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(name, f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.diameter_mm is not None:
            lo, hi = self.diameter_mm
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi <= MAX_DIAMETER_MM):
                raise ConfigError("diameter_mm", f"diameter range must satisfy 0 < MIN <= MAX <= {MAX_DIAMETER_MM:g} mm, got {lo}:{hi}")
        if not 1 <= self.feather_voxels <= MAX_FEATHER_VOXELS:
            raise ConfigError("feather_voxels", f"feather_voxels must be 1..{MAX_FEATHER_VOXELS}, got {self.feather_voxels}")
        if self.resume and self.overwrite:
            raise ConfigError("resume", "resume and overwrite exclude each other; set one of them")
        try:
            check_seed(self.seed)
        except ValueError as exc:
            raise ConfigError("seed", str(exc)) from None

    @property
    def volumes(self) -> int:
        """Output volumes: ⌈nodules / per_volume⌉."""
        return -(-self.nodules // self.per_volume)

    def nodules_in(self, volume: int) -> int:
        """Nodules inserted into output volume `volume` (per_volume; the last one the remainder)."""
        return min(self.per_volume, self.nodules - volume * self.per_volume)

    def as_params(self) -> dict[str, Any]:
        """All options as JSON-ready values (the output store's `params` attribute)."""
        return json_params(self)


def output_defining(params: dict[str, Any]) -> dict[str, Any]:
    """The subset of `params` (:meth:`VolumeInsertOptions.as_params`) a resume must match."""
    return {name: params.get(name) for name in OUTPUT_DEFINING}


@dataclass(frozen=True)
class VolumeInsertReport:
    """What an `augment-volumes` run left in its store: `volumes` and `nodules` in all,
    `written_this_run` volumes (the others were done before a resume), the achieved equivalent
    diameter's error against the request (mean and max |achieved − requested| / requested, %),
    the z-extent error (max |extent − requested|, mm) and the speed."""

    out: str
    weights: str
    volumes: int
    nodules: int
    written_this_run: int
    spacing_mm: float
    diameter_error_pct_mean: float
    diameter_error_pct_max: float
    z_extent_error_mm_max: float
    fingerprint: str
    seconds: float
    nodules_per_minute: float
