"""The schema of a volume store (`lungforge.volumes/1`): per-scan and per-nodule columns, array
attributes and the 3-D chunking (docs/store-format.md, "Volume stores")."""

from __future__ import annotations

from typing import Any

from lungforge.core.labels import labels_attr
from lungforge.store.schema import SPLIT_IDS, WINDOW_HU, Column

CHUNK_VOXELS = 64
"""Edge of a chunk, voxels: chunks are 64³ (the unit of reading)."""
SLAB_SLICES = CHUNK_VOXELS
"""Axial slices per shard: a shard is a slab of 64 slices over the whole (Y, X) plane rounded up to
whole chunks (the unit of writing; a scan's arrays have one writer, the slabs keep files few)."""
NO_BOX = -1
"""`nodules/bbox` of a nodule whose mask is empty (listed in the `lost_nodules` attribute)."""

_PER_SCAN = ["scan"]
_PER_NODULE = ["nodule"]
SCAN_COLUMNS: dict[str, Column] = {
    "split": Column("uint8", (), {"axes": _PER_SCAN, "codes": {str(v): k for k, v in SPLIT_IDS.items()}}),
    "fold": Column("int8", (), {"axes": _PER_SCAN, "units": "LUNA16 subset number 0..9"}),
    "origin_mm": Column(
        "float64",
        (3,),
        {"axes": ["scan", "xyz"], "columns": ["x", "y", "z"], "units": "mm", "meaning": "world position of voxel (0, 0, 0)"},
    ),
    "direction": Column(
        "float64",
        (3, 3),
        {"axes": ["scan", "world", "index"], "meaning": "columns: world directions of the x, y, z index axes (ITK direction matrix)"},
    ),
    "source_spacing_mm": Column(
        "float64", (3,), {"axes": ["scan", "xyz"], "columns": ["x", "y", "z"], "units": "mm", "meaning": "voxel spacing of the LUNA16 file"}
    ),
}
"""`scans/<name>`: one row per stored scan, row i describing `volumes/<i>/*` (with `scans/uid`)."""
NODULE_COLUMNS: dict[str, Column] = {
    "scan": Column("int64", (), {"axes": _PER_NODULE, "indexes": "scans (rows of scans/*, groups volumes/<i>)"}),
    "center_mm": Column(
        "float64",
        (3,),
        {"axes": ["nodule", "xyz"], "columns": ["x", "y", "z"], "units": "mm", "meaning": "world centre from annotations.csv"},
    ),
    "center_voxel": Column(
        "float64",
        (3,),
        {
            "axes": ["nodule", "zyx"],
            "columns": ["z", "y", "x"],
            "units": "voxels",
            "meaning": "continuous index of the centre in its volume",
        },
    ),
    "diameter_mm": Column("float32", (), {"axes": _PER_NODULE, "units": "mm", "meaning": "annotated diameter"}),
    "annotation": Column("int64", (), {"axes": _PER_NODULE, "units": "line of annotations.csv (1-based; line 1 is the header)"}),
    "voxels": Column(
        "int64", (), {"axes": _PER_NODULE, "units": "voxels", "meaning": "voxels of the nodule's mask (0: empty, see lost_nodules)"}
    ),
    "bbox": Column(
        "int32",
        (6,),
        {
            "axes": ["nodule", "box"],
            "columns": ["z0", "y0", "x0", "z1", "y1", "x1"],
            "units": "voxels",
            "z1_y1_x1": "exclusive",
            "none": NO_BOX,
        },
    ),
}
"""`nodules/<name>`: one row per annotated nodule of a stored scan (every annotation, labelled or not)."""

INSERTED_COLUMNS: dict[str, Column] = {
    "nodule": Column("int64", (), {"axes": ["inserted"], "indexes": "nodules (rows of nodules/*)"}),
    "host": Column("int64", (), {"axes": ["inserted"], "indexes": "scans of the input store (the host volume)"}),
    "requested_mm": Column("float32", (), {"axes": ["inserted"], "units": "mm", "meaning": "requested diameter"}),
    "achieved_mm": Column(
        "float32", (), {"axes": ["inserted"], "units": "mm", "meaning": "equivalent diameter of the mask (sphere of equal volume)"}
    ),
    "edit_box": Column(
        "int32",
        (6,),
        {
            "axes": ["inserted", "box"],
            "columns": ["z0", "y0", "x0", "z1", "y1", "x1"],
            "units": "voxels",
            "z1_y1_x1": "exclusive",
            "meaning": "box of every voxel the insertion may change; outside all boxes the volume is the host's",
        },
    ),
    "donor_scan": Column("int64", (), {"axes": ["inserted"], "indexes": "scans of the input store (the donor volume)"}),
    "donor_nodule": Column("int64", (), {"axes": ["inserted"], "indexes": "nodules of the input store (the donor nodule)"}),
    "seed": Column("int64", (), {"axes": ["inserted"], "meaning": "seed of the output volume's draws"}),
}
"""`inserted/<name>`: one row per inserted nodule of a synthetic volume store (kind "synthetic");
its row `nodule` of `nodules/*` holds its centre, achieved diameter, voxels and mask box."""

VOLUME_ARRAY_ATTRS: dict[str, dict[str, Any]] = {
    "image": {"axes": ["z", "y", "x"], "units": "HU (not windowed)", "window_hu": list(WINDOW_HU)},
    "label": {"axes": ["z", "y", "x"], "codes": labels_attr()},
    "scans/uid": {"axes": _PER_SCAN, "meaning": "LUNA16 seriesuid of the scan"},
    **{f"scans/{name}": column.attrs for name, column in SCAN_COLUMNS.items()},
    **{f"nodules/{name}": column.attrs for name, column in NODULE_COLUMNS.items()},
    **{f"inserted/{name}": column.attrs for name, column in INSERTED_COLUMNS.items()},
}
"""Zarr attributes of each array; `image` and `label` are those of every `volumes/<i>/image|label`."""
VOLUME_DTYPES = {"image": "int16", "label": "uint8"}
