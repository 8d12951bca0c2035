"""Generator leakage: did a generator's weights see a patient that a benchmark fold tests on?

A synthetic store's `generator` block records the fingerprint of the store its weights were
trained on, the series uids of those training patients (`train_series`) and how many nodule
slices and distinct nodules they held (`train_nodule_slices`, `train_nodules`), copied from the
checkpoint's config. With
`--real-split all` every benchmark patient is in some test fold, so a generator trained on the
real store's train split has seen test-fold patients: `bench` refuses such a condition unless
leakage is explicitly allowed (and then the report's first line says so). Weights that do not
record their patients (checkpoints from before the record) are refused alike, unless they were
trained on the benchmark's own real store, whose train split then is what they saw. Model-free
controls have no weights; their per-fold source exclusion is :mod:`lungforge.bench.protocol.folds`'s. A
store without a generator block (not written by `augment`) names no weights and is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lungforge.bench.protocol.folds import OUTSIDE
from lungforge.core.errors import InputError
from lungforge.store import SPLIT_IDS, Store, nodule_ids


@dataclass(frozen=True)
class GeneratorExposure:
    """What one condition's generator saw: `kind` its model (sdm, spade, a control, or None for a
    store without a generator block), `recorded` (the store says which patients, or they were
    inferred from the real store), `series` the training series uids (None: unknown),
    `nodule_slices` its training nodule slices and `nodules` the distinct nodules on them (None:
    unknown), `test_patients` how many of the benchmark's test-fold patients are among them
    (None: unknown), `model_free` for controls."""

    kind: str | None
    model_free: bool
    recorded: bool
    series: tuple[str, ...] | None
    nodule_slices: int | None
    test_patients: int | None
    train_store: str | None
    nodules: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model_free": self.model_free,
            "recorded": self.recorded,
            "nodule_slices": self.nodule_slices,
            "nodules": self.nodules,
            "test_patients": self.test_patients,
            "train_store": self.train_store,
        }


def exposure(store: Store, real: Store, groups: np.ndarray) -> GeneratorExposure:
    """The generator exposure of synthetic `store` against the benchmark patients (`groups` != -1)."""
    block = store.attrs.get("generator") or {}
    kind = block.get("kind")
    if block.get("model_free"):
        return GeneratorExposure(kind, True, True, (), 0, 0, None, 0)
    fingerprint = block.get("train_store_fingerprint")
    series, slices, nodules = block.get("train_series"), block.get("train_nodule_slices"), block.get("train_nodules")
    if fingerprint is not None and fingerprint == real.fingerprint() and (series is None or nodules is None):
        train = real.meta("split") == SPLIT_IDS["train"]
        series = series if series is not None else [real.series_uids[i] for i in np.unique(real.meta("series")[train])]
        slices = slices if slices is not None else int((train & real.meta("has_nodule")).sum())
        nodules = int(np.unique(nodule_ids(real)[train[real.nodules()["slice"]]]).size)
    if series is None:
        return GeneratorExposure(kind, False, False, None, slices, None, fingerprint, nodules)
    uids = real.series_uids
    benched = {uids[i] for i in np.unique(real.meta("series")[groups != OUTSIDE])}
    return GeneratorExposure(kind, False, True, tuple(series), slices, len(benched & set(series)), fingerprint, nodules)


def check_leakage(real: Store, synthetic: dict[str, Store], groups: np.ndarray, allow: bool) -> dict[str, GeneratorExposure]:
    """Every condition's :class:`GeneratorExposure`; InputError (one line, with the count) for the
    first generator that saw a test-fold patient or does not record its patients, unless `allow`."""
    found = {name: exposure(store, real, groups) for name, store in synthetic.items()}
    if allow:
        return found
    for name, seen in found.items():
        if seen.test_patients:
            raise InputError(
                f"{name}: its generator's weights saw {seen.test_patients} of the benchmark's test-fold patients "
                f"(trained on store {seen.train_store}); use --real-split test, or --allow-generator-leakage to bench it anyway"
            )
        if not seen.recorded and seen.kind is not None:
            raise InputError(
                f"{name}: its generator's weights record no training patients (trained on store {seen.train_store}), so test-fold "
                "leakage cannot be ruled out; re-record the checkpoint, or pass --allow-generator-leakage"
            )
    return found


def leakage_warning(found: dict[str, GeneratorExposure]) -> str | None:
    """The report's first line when leakage was allowed and is present or unknown; else None."""
    leaking = [f"{n} ({s.test_patients} test-fold patients)" for n, s in found.items() if s.test_patients]
    unknown = [n for n, s in found.items() if not s.recorded and s.kind is not None]
    if not leaking and not unknown:
        return None
    parts = []
    if leaking:
        parts.append("generator weights saw test-fold patients: " + ", ".join(leaking))
    if unknown:
        parts.append("generator weights record no training patients: " + ", ".join(unknown))
    return "GENERATOR LEAKAGE ALLOWED (--allow-generator-leakage): " + "; ".join(parts) + "."
