"""`lungforge view`: pictures of a store to judge by eye.

:mod:`.slices`: a contact sheet of a slice store's slices (CT beside CT + label overlay + boxes).
:mod:`.volumes`: for each nodule of a volume store, its axial, coronal and sagittal slices.
"""

from lungforge.view.slices import (
    MAX_SHEET_PX,
    PANEL_GAP_PX,
    ViewOptions,
    check_sheet,
    parse_index,
    render_rows,
    select_rows,
    sheet_capacity,
    sheet_pixels,
    write_view,
)
from lungforge.view.volumes import VolumeViewOptions, nodule_panels, write_volume_view

__all__ = [
    "MAX_SHEET_PX",
    "PANEL_GAP_PX",
    "ViewOptions",
    "VolumeViewOptions",
    "check_sheet",
    "nodule_panels",
    "parse_index",
    "render_rows",
    "select_rows",
    "sheet_capacity",
    "sheet_pixels",
    "write_view",
    "write_volume_view",
]
