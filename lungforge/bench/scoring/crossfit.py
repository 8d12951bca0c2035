"""Cross-fitting of the label-fidelity segmenter: no slice is scored by a segmenter that trained on
its label map, its image or any of its nodules.

The real patients are dealt into two halves (seeded; train-split and test-split patients each
alternately, so both halves get both kinds). Segmenter h trains on the TRAIN-split slices of half
h. A slice's sources are the real patients of its label map (and image: paste and mislabeled
reuse the real image of `meta/source`) and of its nodules' shape and size (`nodules/shape_source`,
`size_source`, LIDC contour scan), as in :func:`lungforge.bench.protocol.folds.leak_groups`. A slice whose
sources touch the training patients of one half is scored by the other half's segmenter; one
touching both is not scored at all (counted); one touching neither (test-patient sources only)
is scored by the segmenter of the half its label-map patient was NOT dealt to, as if it trained. Real train slices,
the ceiling, are scored the same way: each half by the other half's segmenter.
"""

from __future__ import annotations

import numpy as np

from lungforge.bench.protocol.folds import OUTSIDE, leak_groups
from lungforge.core.errors import InputError
from lungforge.store import SPLIT_IDS, Store

HALVES = 2
UNSCORED = -1


def patient_halves(real: Store, seed: int) -> np.ndarray:
    """(N,) half (0 or 1) of every real slice's patient: within each split, the patients in a
    seeded random order are dealt alternately to half 0 and half 1."""
    series = real.meta("series").astype(np.int64)
    series_split = np.full(len(real.series_uids), -1, np.int64)
    series_split[series] = real.meta("split")
    half_of = np.full(len(real.series_uids), OUTSIDE, np.int64)
    rng = np.random.default_rng(seed)
    for split in sorted(SPLIT_IDS.values()):
        ids = rng.permutation(np.flatnonzero(series_split == split))
        half_of[ids] = np.arange(ids.size) % HALVES
    return half_of[series]


def train_halves(real: Store, seed: int) -> np.ndarray:
    """(N,) training half of every real slice: its patient's half for train-split slices, -1 otherwise.

    Raises InputError when the train split has fewer than two patients (a half would be empty).
    """
    train = real.meta("split") == SPLIT_IDS["train"]
    patients = np.unique(real.meta("series")[train]).size
    if patients < HALVES:
        raise InputError(
            f"{real.path}: {patients} train-split patient(s); cross-fitted label fidelity needs at least {HALVES} "
            "(one segmenter per half, each scoring the other half)"
        )
    return np.where(train, patient_halves(real, seed), OUTSIDE)


def real_scorers(real: Store, seed: int) -> np.ndarray:
    """(N,) segmenter scoring each real slice for the ceiling: the other half for train-split slices,
    -1 (not part of the ceiling) for the rest."""
    halves = train_halves(real, seed)
    return np.where(halves == OUTSIDE, UNSCORED, HALVES - 1 - halves)


def synthetic_scorers(synthetic: Store, real: Store, seed: int) -> np.ndarray:
    """(N_syn,) segmenter (0 or 1) allowed to score each synthetic slice, -1 where its sources touch
    the training patients of both halves (see the module docstring)."""
    touch = leak_groups(synthetic, real, train_halves(real, seed))
    fallback = HALVES - 1 - patient_halves(real, seed)[synthetic.meta("source")]
    scorer = np.where(touch[:, 0], 1, np.where(touch[:, 1], 0, fallback))
    return np.where(touch.all(axis=1), UNSCORED, scorer)
