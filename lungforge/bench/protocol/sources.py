"""External sources: real patients outside the benchmark that synthetic slices are built from.

With `--real-split test` the benchmark's folds hold only the test-split patients; the train
split (the generators' side) is outside every fold, so nothing drawn from it can leak into a
test fold. A synthetic slice built from such patients (its label map, the nodules whose shape or
size it copies) joins every fold at every learning-curve point: `--real-nodules K` limits only
the benchmarked patients' nodules (:func:`~lungforge.bench.protocol.crossval.copies_kept`).

Where some synthetic store draws on external patients, the benchmark adds the comparator
:data:`SOURCES`, "A + the real source slices": A's training data plus the external real slices
the synthetic stores were built from (their label maps' slices and the slices of the nodules they
copy), unchanged, with their real labels: what the real data alone would add.

A synthetic condition that adds no nodule slice to some fold measures nothing there (its fold
equals A's up to a few nodule-free slices): :func:`check_synthetic_positives` refuses it in one
line naming the condition and folds, unless `allow_empty_synthetic`.
"""

from __future__ import annotations

import numpy as np

from lungforge.bench.protocol.folds import OUTSIDE
from lungforge.core.errors import InputError
from lungforge.store import NO_SOURCE, SPLIT_IDS, Store

SOURCES = "A+sources"
"""The comparator condition: A plus the external real source slices (not a valid --synthetic name)."""


def external_source_slices(real: Store, synthetic: dict[str, Store], groups: np.ndarray) -> np.ndarray:
    """(N_real,) bool: real slices of patients outside the benchmark (`groups` == -1) that some
    synthetic store's slice starts from (`meta/source`) or whose nodule some synthetic nodule
    copies (`nodules/shape_source`, `size_source`)."""
    used = np.zeros(len(real), bool)
    real_slice = real.nodules()["slice"]
    for store in synthetic.values():
        used[store.meta("source")] = True
        table = store.nodules()
        for column in ("shape_source", "size_source"):
            rows = table[column]
            used[real_slice[rows[rows != NO_SOURCE]]] = True
    return used & (groups == OUTSIDE)


def train_split_outside(real: Store, groups: np.ndarray) -> bool:
    """Whether the benchmark leaves some real train-split slice outside its folds (`groups` == -1,
    `--real-split test`): what a store augment draws from the train split then starts from."""
    return bool((groups[real.meta("split") == SPLIT_IDS["train"]] == OUTSIDE).any())


def joined_counts(store: Store, slices: np.ndarray) -> dict[str, int]:
    """`synthetic_positives` / `synthetic_negatives`: the distinct slices of `store` among
    `slices` (the store rows of the items that joined a fold) with / without a nodule."""
    rows = np.unique(slices)
    has = store.meta("has_nodule")[rows]
    return {"synthetic_positives": int(has.sum()), "synthetic_negatives": int((~has).sum())}


def check_synthetic_positives(
    joins: dict[str, list[np.ndarray]], synthetic: dict[str, Store], used: dict[str, np.ndarray], allow: bool
) -> None:
    """InputError (one line) for the first synthetic condition that adds no nodule slice to some
    fold, naming it and those folds, unless `allow`. `joins[name][fold]` (N_syn,) bool: its slices
    that may join that fold; `used[name]` (N_syn,) bool: those the benchmark trains on (--select)."""
    if allow:
        return
    for name, per_fold in joins.items():
        positive = used[name] & synthetic[name].meta("has_nodule")
        empty = [fold for fold, join in enumerate(per_fold) if not (join & positive).any()]
        if empty:
            raise InputError(
                f"{name}: adds no synthetic nodule slice to fold(s) {', '.join(map(str, empty))} (every one copies a real nodule "
                "that is not kept there, or comes from a test-fold patient); pass --allow-empty-synthetic to bench it anyway"
            )
