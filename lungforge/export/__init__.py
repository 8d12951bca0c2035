"""Export a store to the formats detectors and segmenters train on: COCO, YOLO, nnU-Net, NIfTI, PNG."""

from lungforge.export.context import ExportOptions
from lungforge.export.run import ExportReport, export_store

__all__ = ["ExportOptions", "ExportReport", "export_store"]
