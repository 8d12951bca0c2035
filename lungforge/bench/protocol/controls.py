"""`bench --controls`: make the control stores — positive (`paste`), negative (`mislabeled`) and
`blob` — and say whether the protocol separates paste from mislabeled.

The controls copy the layout request of the first synthetic store (slice counts, nodules per
slice, diameter range, placement, seed), with real nodule shapes, at the REAL store's
resolution: a control is the real data plus what it adds, never the real data resampled through
a generator's smaller size. With no synthetic store they are sized like the real train split.
A rerun into the same folder reuses (or finishes) them, and refuses controls made from another
real store. The per-fold controls `hosts` and `classic` are built from these stores inside each
fold (:mod:`lungforge.bench.protocol.fold_controls`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.augment.options import AugmentOptions
from lungforge.bench.protocol.control_names import CONTROL_NAMES
from lungforge.bench.protocol.inputs import SyntheticSpec
from lungforge.bench.protocol.results import TaskResult, json_safe
from lungforge.bench.scoring.stats import Comparison, compare, nb_ratio
from lungforge.bench.scoring.summary import fold_exclusion
from lungforge.core.errors import InputError
from lungforge.store import SPLIT_IDS, Store, open_store

SEPARATION_P = 0.05
CONTROLS_DIR = "controls"
REQUEST = ("nodules", "nodule_free", "diameter_mm", "per_slice", "placement", "seed", "min_contrast_hu")
"""The layout request the controls copy from the first synthetic store's augment options (not its size)."""


def reference_request(reference: Store, seed: int) -> dict[str, Any]:
    """The layout request (:data:`REQUEST` fields) of synthetic store `reference`, read back from
    the augment options it records (`params`, :meth:`AugmentOptions.from_params`); a store that
    `augment` did not write gives its slice counts, the default layout and `seed`."""
    try:
        options = AugmentOptions.from_params(reference.attrs.get("params", {}))
    except (ValueError, TypeError):  # not augment's options: unknown keys, or no data/weights/out
        has = reference.meta("has_nodule")
        return dict(nodules=int(has.sum()), nodule_free=int((~has).sum()), seed=seed)
    return {name: getattr(options, name) for name in REQUEST}


def control_options(real_path: Path, real: Store, reference: Store | None, out_dir: Path, seed: int) -> list[AugmentOptions]:
    """AugmentOptions of every control store (:data:`CONTROL_NAMES`) into `out_dir`, copying
    `reference`'s request, at the real store's size."""
    if reference is not None:
        request = reference_request(reference, seed)
    else:
        train = real.meta("split") == SPLIT_IDS["train"]
        n = int((train & real.meta("has_nodule")).sum())
        request = dict(nodules=n, nodule_free=n, seed=seed)
    request["size"] = real.shape_hw[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        AugmentOptions(
            data=real_path,
            weights=name,
            out=out_dir / f"{name}.zarr",
            shape="real",
            retries=0,
            device="cpu",
            resume=(out_dir / f"{name}.zarr").exists(),
            **request,
        )
        for name in CONTROL_NAMES
    ]


def make_controls(real_path: Path, real: Store, synthetic: dict[str, Store], out: Path, seed: int) -> list[SyntheticSpec]:
    """Write (or finish, or reuse) the control stores under `out/controls`; their specs."""
    from lungforge.augment.generate import augment

    taken = sorted(set(CONTROL_NAMES) & set(synthetic))
    if taken:
        raise InputError(f"--synthetic name {taken[0]!r} is a control's name; rename it or drop --controls")
    reference = next(iter(synthetic.values()), None)
    specs = []
    for options in control_options(real_path, real, reference, out / CONTROLS_DIR, seed):
        check_made_from(options.out, real_path, real)
        augment(options)
        specs.append(SyntheticSpec(name=options.weights, path=options.out))
    return specs


def check_made_from(control: Path, real_path: Path, real: Store) -> None:
    """InputError when the control store at `control` exists and was made from a real store other
    than `real` (by fingerprint): naming both stores, before its layout is compared with this run's."""
    if not control.exists():
        return
    store = open_store(control, require_complete=False)
    try:
        made_from = store.attrs.get("input", {})
    finally:
        store.close()
    if made_from.get("fingerprint") != real.fingerprint():
        raise InputError(
            f"{control}: this control was made from real store {made_from.get('path')} (fingerprint {made_from.get('fingerprint')}), "
            f"--real {real_path} has fingerprint {real.fingerprint()}; rerun with --real {made_from.get('path')}, or give another --out"
        )


@dataclass(frozen=True)
class Separation:
    """Paste against mislabeled on `metric` over the same scored folds: `comparison` is
    :func:`compare`'s; `separated` when the paired signed-rank p < 0.05 with paste ahead."""

    metric: str
    comparison: Comparison
    separated: bool

    def to_dict(self) -> dict[str, Any]:
        """{"metric", the comparison's fields, "separated"}."""
        return json_safe({**self.comparison.to_dict(), "metric": self.metric, "separated": self.separated})


def separation(result: TaskResult, metric: str) -> Separation:
    """Paste against mislabeled on `metric` over the scored folds of `result` (:func:`fold_exclusion`)."""
    scored = [fold_exclusion(row) is None for row in result.folds["paste"]]  # every condition shares the test folds
    values = {c: [v if keep else float("nan") for v, keep in zip(result.values(c, metric), scored)] for c in ("paste", "mislabeled")}
    comparison = compare(
        values["paste"], values["mislabeled"], nb_ratio(result.config.folds), condition="paste", reference_name="mislabeled", metric=metric
    )
    p = comparison.p["signed_rank"]
    separated = bool(np.isfinite(p) and p < SEPARATION_P and comparison.diff_mean > 0)
    return Separation(metric, comparison, separated)


def separation_sentence(task: str, sep: Separation, folds: int) -> str:
    """One sentence for the report: does `task` tell the positive control from the negative one?"""
    diff, p, floor = sep.comparison.diff_mean, sep.comparison.p["signed_rank"], sep.comparison.p_min["signed_rank"]
    effect = f"paste − mislabeled {100 * diff:+.2f} pts {sep.metric}" if np.isfinite(diff) else f"no finite {sep.metric}"
    p_text = f"{p:.3g}" if np.isfinite(p) else "n/a"
    floor_text = f"{floor:.3g}" if np.isfinite(floor) else "n/a"
    if sep.separated:
        return f"{task}: at this data size and with {folds} folds the protocol separates the positive control from the negative one ({effect}, paired signed-rank p = {p_text})."
    return (
        f"{task}: at this data size and with {folds} folds the protocol does NOT separate the positive control (paste) from the "
        f"negative one (mislabeled) ({effect}, paired signed-rank p = {p_text}, smallest reachable {floor_text}), "
        "so a null result for a generator here means nothing."
    )
