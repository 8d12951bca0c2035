"""The choice types and shared bounds of lungforge's options, in one place, with no heavy imports.

Configs check their fields against these in `__post_init__` (:func:`check_choice`,
:func:`check_range`), and the CLI annotates its options with the same `Literal` types, so click
checks them and `--help` lists them (``<all|test>``).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from lungforge.core.errors import ConfigError

MAX_SIZE_PX = 2048
"""Largest slice side (pixels) lungforge makes or resizes slices to: 4× LUNA16's 512 px. One
float32 slice is then 16 MB, so batches of such slices stay in memory."""
MAX_STEPS = 10_000_000
"""Most optimiser steps one training may ask for (train, the fidelity segmenters): the paper's SDM
trains for a few 100,000, and 10 million steps at 10 steps/s take 12 days."""
VOLUME_SPACING_MM = 1.0
"""Default isotropic voxel spacing of a volume store (`prepare --volumes`), mm."""
VOLUME_SPACING_RANGE_MM = (0.5, 4.0)
"""Isotropic spacings a volume store may be made at: finer than 0.5 mm grows a LUNA16 chest past
300 M voxels per scan; coarser than 4 mm loses nodules (LUNA16's smallest are 3 mm)."""
OFFICIAL_FOLDS = 10
"""LUNA16's official folds: the most cross-validation folds a benchmark can have (fewer merge them)."""
MIN_FOLDS = 2
"""Fewest cross-validation folds."""
MAX_EPOCHS = 10_000
"""Most epochs a benchmark task may ask for (the paper trains 20–30)."""
MIN_PATCH_PX = 8
"""Smallest detection patch side and so the smallest `bench detect` working size (pixels)."""
MIN_LOCALIZE_SIZE_PX = 32
"""Smallest `bench localize` working size (pixels)."""
MIN_FID_SIZE_PX = 32
"""Smallest `bench fid` working size (pixels)."""
MAX_GUIDANCE = 20.0
"""Largest classifier-free guidance scale: published SDM and Stable Diffusion settings stay below
10, and far larger scales push every pixel to the ends of the intensity range."""

RealSplit = Literal["all", "test"]
"""Real patients a cross-validation runs over: every patient (the paper), or the test split only."""
FidSplit = Literal["all", "train", "test"]
"""Real slices FID compares with."""
Selection = Literal["first-draw", "all"]
"""Synthetic slices every condition trains on: first generator draws only, or re-drawn ones too."""
Backbone = Literal["resnet50", "resnet18", "resnet18-stride2"]
"""Faster R-CNN backbone (both with FPN)."""
LocalizePreset = Literal["paper", "cpu"]
"""`bench localize` settings: the paper's detector, or the CPU-sized one."""
Features = Literal["inception", "random"]
"""FID features: InceptionV3 (comparable with published FID) or random (tests only)."""
Placement = Literal["any", "central", "peripheral", "left", "right"]
"""Where `augment` places nodules: anywhere in lung, away from the pleura, touching it, or in one lung."""
VolumeControl = Literal["paste", "blob"]
"""Model-free 3-D insertion of `augment-volumes`: a real nodule's voxels, or a constant-HU ellipsoid."""
HostSplit = Literal["train", "test", "all"]
"""Patients whose volumes `augment-volumes` inserts nodules into."""
NoduleShape = Literal["real", "sphere", "lidc"]
"""Nodule outlines: real train nodules, model outlines (LIDC-like ellipses with lobes) or LIDC contours."""
Sampler = Literal["ddpm", "ddim", "dpmpp"]
"""Diffusion samplers: ancestral DDPM, DDIM, DPM-Solver++ 2M."""
SAMPLERS: tuple[Sampler, ...] = get_args(Sampler)
Precision = Literal["fp32", "bf16", "fp16"]
"""Compute precision of a model's forward (fp16 needs CUDA)."""
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
PresetName = Literal["tiny", "paper"]
"""Named model presets of `train`: 'tiny' (64 px, CPU) and 'paper' (SDM 256 px, SPADE 512 px)."""
Lungs = Literal["seg", "auto"]
"""Where `prepare` takes lungs and trachea from: seg-lungs-LUNA16 masks, or classical segmentation."""
NoduleSlices = Literal["center", "all"]
"""Nodule slices `prepare` keeps: the one nearest each centre (the paper), or every slice a mask touches."""
ExportFormat = Literal["coco", "yolo", "nnunet", "nifti", "png", "nnunet3d", "monai-detection"]
"""Dataset layouts `export` writes: the first five from a slice store, the last two from a volume store."""
VOLUME_EXPORT_FORMATS: tuple[ExportFormat, ...] = ("nnunet3d", "monai-detection")
"""Export formats of 3-D volumes: they read a volume store (`prepare --volumes`), the others a slice store."""
ExportSplit = Literal["train", "test", "all"]
"""Slices (or scans, from a volume store) `export` writes: a store's train split, test split, or all."""


def check_choice(field: str, value: Any, choices: Any) -> None:
    """ConfigError (a ValueError) naming `field` when `value` is not one of the `Literal` type `choices`."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(field, f"{field} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def check_range(field: str, value: float, low: float, high: float | None = None) -> None:
    """ConfigError (a ValueError) naming `field` when `value` is below `low` or above `high`."""
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise ConfigError(field, f"{field} must be {bound}, got {value!r}")
