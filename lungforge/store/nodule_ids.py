"""Which nodule each nodule row belongs to (`nodules/nodule`), for stores old and new.

A nodule crosses several slices and has one row per slice. Stores record the nodule of each row
in `nodules/nodule` (real: the annotation; synthetic: the input store's nodule whose shape the
row copies, -1 for none). Stores written before that column existed are read with a derived id:
real rows of one series on adjacent slices (`meta/z` one apart) whose boxes overlap are one
nodule (connected components), and a synthetic row is its own copy of nothing (-1).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from lungforge.store.handle import Store
from lungforge.store.schema import NO_SOURCE


def nodule_ids(store: Store) -> np.ndarray:
    """(M,) int64: the nodule of every row of `store`'s nodule table (see the module docstring)."""
    table = store.nodules()
    if "nodule" in table:
        return table["nodule"].astype(np.int64)
    if store.kind == "synthetic":
        return np.full(table["slice"].size, NO_SOURCE, np.int64)
    rows = table["slice"]
    return adjacent_components(store.meta("series")[rows], store.meta("z")[rows], table["bbox"])


def adjacent_components(series: np.ndarray, z: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """(M,) int64 component id of M nodule rows: rows of one `series` (M,) on slices `z` (M,) one
    apart whose boxes (M, 4) x0, y0, x1, y1 px (half-open) overlap are joined; ids are numbered in
    order of each component's first row."""
    m = series.size
    by_slice: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(series.tolist(), z.tolist())):
        by_slice.setdefault(key, []).append(i)
    first, second = [], []
    for (s, zi), here in by_slice.items():
        for j in by_slice.get((s, zi + 1), []):
            for i in here:
                a, b = bbox[i], bbox[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    first.append(i)
                    second.append(j)
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(m, m))
    _, labels = connected_components(graph, directed=False)
    _, order = np.unique(labels, return_index=True)
    rank = np.empty(order.size, np.int64)
    rank[np.argsort(order, kind="stable")] = np.arange(order.size)
    return rank[labels] if m else np.zeros(0, np.int64)


def copied_nodules(real: Store, shape_source: np.ndarray) -> np.ndarray:
    """(M,) int64 `nodules/nodule` of synthetic rows: the real nodule of each `shape_source` row
    of `real`'s nodule table, -1 where the shape copies none."""
    ids = nodule_ids(real)
    out = np.full(shape_source.size, NO_SOURCE, np.int64)
    copied = shape_source != NO_SOURCE
    out[copied] = ids[shape_source[copied]]
    return out
