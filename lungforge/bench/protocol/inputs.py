"""Open and check the stores a benchmark compares: one real store and named synthetic stores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungforge.core.errors import InputError, SchemaError
from lungforge.store import NO_SOURCE, Store, open_store

REFERENCE = "A"


@dataclass(frozen=True)
class SyntheticSpec:
    """A `--synthetic NAME=STORE` argument: condition name and store path."""

    name: str
    path: Path

    @classmethod
    def parse(cls, text: str) -> SyntheticSpec:
        """Parse `B=spade.zarr`; the name must be a short identifier other than the reference A."""
        name, sep, path = text.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise InputError(f"--synthetic must look like NAME=STORE (e.g. C=sdm.zarr), got {text!r}")
        if not name.replace("_", "").replace("-", "").isalnum() or name == REFERENCE:
            raise InputError(f"--synthetic name must be alphanumeric and not {REFERENCE!r} (the real-only condition), got {name!r}")
        return cls(name=name, path=Path(path))


def parse_synthetic(texts: list[str]) -> list[SyntheticSpec]:
    """Parse several `NAME=STORE` arguments; names must be unique."""
    specs = [SyntheticSpec.parse(t) for t in texts]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"--synthetic names must be unique, got {', '.join(duplicates)} more than once")
    return specs


def open_real(path: str | os.PathLike) -> Store:
    """Open a store and check that it holds real slices; held shared until the process ends (see
    `open_store(lock_for_reading=True)`), so no lungforge writer replaces it during the benchmark."""
    store = open_store(path, lock_for_reading=True)
    if store.kind != "real":
        store.close()
        raise SchemaError(f"{path}: kind is {store.kind!r}, expected 'real' for --real")
    return store


def open_synthetic(path: str | os.PathLike, real: Store, *, need_nodules: bool = True) -> Store:
    """Open a synthetic store made from `real`'s label maps and check it fits the benchmark.

    It must be kind 'synthetic', record `real`'s fingerprint as its input (so `meta/source` and
    the nodule sources index `real`), have the real store's label set, sources inside the real
    store and (when `need_nodules`) at least one nodule slice. Held shared like `open_real`.
    """
    store = open_store(path, lock_for_reading=True)
    try:
        _check_synthetic(path, store, real, need_nodules)
    except BaseException:
        store.close()
        raise
    return store


def _check_synthetic(path: str | os.PathLike, store: Store, real: Store, need_nodules: bool) -> None:
    if store.kind != "synthetic":
        raise SchemaError(f"{path}: kind is {store.kind!r}, expected 'synthetic' for --synthetic")
    made_from = store.input_fingerprint()
    if made_from != real.fingerprint():
        if made_from is not None and made_from == real.legacy_fingerprint():
            raise InputError(
                f"{path}: records --real {real.path} by its name-based fingerprint {made_from} (lungforge before content "
                "fingerprints), which cannot show whether the real store changed since; make it again with `lungforge augment`"
            )
        recorded = "records no input fingerprint" if made_from is None else f"was made from a real store with fingerprint {made_from}"
        raise InputError(
            f"{path}: {recorded}, but --real {real.path} has content fingerprint {real.fingerprint()}; "
            "bench a synthetic store against the real store it was made from, unchanged"
        )
    if store.attrs.get("labels") != real.attrs.get("labels"):
        raise SchemaError(f"{path}: label set {store.attrs.get('labels')} differs from the real store's {real.attrs.get('labels')}")
    source = store.meta("source")
    if source.size and (source.min() < 0 or source.max() >= len(real)):
        raise SchemaError(
            f"{path}: meta/source spans [{source.min()}, {source.max()}], expected indices into the real store's {len(real)} slices"
        )
    n_rows = real.nodules()["slice"].size
    table = store.nodules()
    for column in ("shape_source", "size_source"):
        rows = table[column]
        if rows.size and (rows.min() < NO_SOURCE or rows.max() >= n_rows):
            raise SchemaError(
                f"{path}: nodules/{column} spans [{rows.min()}, {rows.max()}], expected -1 or rows of the real store's {n_rows} nodules"
            )
    if need_nodules and not store.meta("has_nodule").any():
        raise SchemaError(f"{path}: has no nodule slices; detect/localize need synthetic slices with nodules")


def nodule_rows(store: Store) -> list[np.ndarray]:
    """Per slice, the rows (K,) int64 of its nodules in the store's nodule table, in table order."""
    slices = store.nodules()["slice"]
    order = np.argsort(slices, kind="stable")
    bounds = np.searchsorted(slices[order], np.arange(len(store) + 1))
    return [order[bounds[i] : bounds[i + 1]].astype(np.int64) for i in range(len(store))]


def nodule_boxes(store: Store) -> list[np.ndarray]:
    """Per slice, its nodule boxes (K, 4) float32 x0, y0, x1, y1 in pixels of the stored H, W
    (in the order of :func:`nodule_rows`)."""
    boxes = store.nodules()["bbox"].astype(np.float32)
    return [boxes[rows] for rows in nodule_rows(store)]
