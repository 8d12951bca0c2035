"""What an augment run produced: counts, nodule sizes, diameter accuracy, visibility pass rates, speed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SIZE_EDGES_MM = (0.0, 5.0, 10.0, 20.0, 30.0, np.inf)


def size_bins(diameters_mm: np.ndarray) -> dict[str, int]:
    """Nodule counts per diameter bin (mm), with the bin names of `lungforge info`."""
    counts, _ = np.histogram(np.asarray(diameters_mm, dtype=np.float64), bins=np.asarray(SIZE_EDGES_MM))
    return {
        (f"{int(lo)}-{int(hi)} mm" if np.isfinite(hi) else f">={int(lo)} mm"): int(c)
        for lo, hi, c in zip(SIZE_EDGES_MM[:-1], SIZE_EDGES_MM[1:], counts)
    }


@dataclass(frozen=True)
class AugmentReport:
    """Summary of an augment run (the `--json` output).

    Pass rates are over nodule slices: `verified_first_try` passed with their first seed,
    `verified_final` after re-sampling; None when there are no nodule slices. Diameter errors
    compare each nodule's achieved with its requested diameter (mean absolute and max, in %).
    `images_per_s` counts every sampled image of this run, re-samplings included, over the
    whole run; `first_batch_seconds` is rank 0's first generator call (with `--compile`, the
    compilation), None when nothing was sampled.
    """

    out: str
    slices: int
    nodule_slices: int
    nodule_free_slices: int
    written_this_run: int
    blocks_skipped: int
    nodules: int
    nodules_by_size: dict[str, int]
    diameter_error_pct_mean: float | None
    diameter_error_pct_max: float | None
    verified_first_try: float | None
    verified_final: float | None
    min_contrast_hu: float | None
    images_sampled: int
    images_per_s: float
    seconds: float
    first_batch_seconds: float | None = None
    generator: dict[str, Any] = field(default_factory=dict)


def summarize_augment_run(
    parts: dict[str, dict[str, np.ndarray]],
    **fields: Any,
) -> AugmentReport:
    """An :class:`AugmentReport` from the blocks' part records plus the run's other `fields`."""

    def column(name: str, dtype: str) -> np.ndarray:
        chunks = [p[name] for p in parts.values()]
        return np.concatenate(chunks).astype(dtype) if chunks else np.zeros(0, dtype=dtype)

    has_nodule = column("has_nodule", "bool")
    known = all("first_try" in p for p in parts.values())
    first = column("first_try", "bool")[has_nodule] if known else np.zeros(0, dtype=bool)
    final = column("verified", "bool")[has_nodule]
    achieved = column("diameter_mm", "float64")
    requested = column("requested_mm", "float64")
    error_pct = 100.0 * np.abs(achieved - requested) / requested if requested.size else np.zeros(0)
    return AugmentReport(
        slices=int(has_nodule.size),
        nodule_slices=int(has_nodule.sum()),
        nodule_free_slices=int((~has_nodule).sum()),
        nodules=int(achieved.size),
        nodules_by_size=size_bins(achieved),
        diameter_error_pct_mean=float(error_pct.mean()) if error_pct.size else None,
        diameter_error_pct_max=float(error_pct.max()) if error_pct.size else None,
        verified_first_try=float(first.mean()) if first.size else None,
        verified_final=float(final.mean()) if final.size else None,
        **fields,
    )
