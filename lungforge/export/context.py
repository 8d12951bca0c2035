"""What every format writer is given: the export's options, its pixel size and the store's provenance."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lungforge.core.choices import MAX_SIZE_PX, VOLUME_EXPORT_FORMATS, ExportFormat, ExportSplit, check_choice
from lungforge.core.errors import ConfigError
from lungforge.store import Store, VolumeStore

MARKER = "lungforge-export.json"
NNUNET_FORMATS = ("nnunet", "nnunet3d")
"""Formats that write an nnU-Net v2 raw dataset `DatasetNNN_Name/`."""
FIRST_DATASET_ID = 501
"""The lowest nnU-Net dataset id an export picks by itself (nnU-Net's own datasets use lower ones)."""


@dataclass(frozen=True)
class ExportOptions:
    """Options of `lungforge export`; `size` None keeps the store's resolution.

    `nnunet3d` and `monai-detection` export a volume store's scans whole (at its spacing, so no
    `size`); `split` and `nodule_only` then choose scans, not slices.

    `dataset_id` and `dataset_name` name the nnU-Net folder `Dataset{id:03d}_{name}`; a
    `dataset_id` of None is chosen at export time (:func:`lungforge.export.nnunet.with_dataset_id`).
    """

    format: ExportFormat
    split: ExportSplit = "all"
    size: int | None = None
    nodule_only: bool = False
    dataset_id: int | None = None
    dataset_name: str = "Lungforge"

    def __post_init__(self) -> None:
        check_choice("format", self.format, ExportFormat)
        check_choice("split", self.split, ExportSplit)
        if self.size is not None and not 8 <= self.size <= MAX_SIZE_PX:
            raise ConfigError("size", f"size must be 8..{MAX_SIZE_PX} px, got {self.size}")
        if self.dataset_id is not None and not 1 <= self.dataset_id <= 999:
            raise ConfigError("dataset_id", f"dataset_id (nnU-Net) must be 1..999, got {self.dataset_id}")
        if self.size is not None and self.volumes:
            raise ConfigError(
                "size", f"size applies to slice formats only; {self.format!r} keeps the volume store's spacing, got size {self.size}"
            )
        if self.dataset_id is not None and self.format not in NNUNET_FORMATS:
            raise ConfigError(
                "dataset_id", f"dataset_id {self.dataset_id} applies to formats 'nnunet' and 'nnunet3d' only, got format {self.format!r}"
            )
        if not re.fullmatch(r"[A-Za-z0-9-]+", self.dataset_name):
            raise ConfigError("dataset_name", f"dataset_name (nnU-Net) may hold letters, digits and '-', got {self.dataset_name!r}")

    @property
    def volumes(self) -> bool:
        """True for the formats that read a volume store (:data:`VOLUME_EXPORT_FORMATS`)."""
        return self.format in VOLUME_EXPORT_FORMATS

    def target(self, out: Path) -> Path:
        """The directory the export creates: `out` itself, or for nnU-Net `out/DatasetNNN_Name`
        (id 501 while `dataset_id` is still None)."""
        if self.format in NNUNET_FORMATS:
            dataset_id = FIRST_DATASET_ID if self.dataset_id is None else self.dataset_id
            return Path(out) / f"Dataset{dataset_id:03d}_{self.dataset_name}"
        return Path(out)


@dataclass(frozen=True)
class ExportContext:
    """Options, exported slice size (H, W) px (0, 0 for volumes, whose shapes differ per scan), and
    the provenance block written beside the data."""

    options: ExportOptions
    height: int
    width: int
    provenance: dict[str, Any]


def provenance(store: Store | VolumeStore, options: ExportOptions) -> dict[str, Any]:
    """Where the exported data come from: store path, kind, fingerprint, its options and generator."""
    from lungforge.core.version import __version__

    attrs = store.attrs
    block = {
        "store": str(store.path),
        "kind": store.kind if isinstance(store, Store) else attrs.get("kind"),
        "fingerprint": store.fingerprint(),
        "schema": attrs.get("schema"),
        "created": attrs.get("created"),
        "store_lungforge_version": attrs.get("lungforge_version"),
        "params": attrs.get("params", {}),
        "exported_by": f"lungforge {__version__}",
        "export": asdict(options),
    }
    if "generator" in attrs:
        block["generator"] = attrs["generator"]
    return block
