"""Export a store to the formats detectors and segmenters train on: COCO, YOLO, nnU-Net, NIfTI, PNG;
and a volume store to 3-D ones: nnU-Net 3-D and MONAI detection."""

from lungforge.export.context import ExportOptions
from lungforge.export.run import ExportReport, VolumeExportReport, export_store

__all__ = ["ExportOptions", "ExportReport", "VolumeExportReport", "export_store"]
