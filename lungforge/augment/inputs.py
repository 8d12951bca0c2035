"""What `augment` reads and checks before any output is touched: the real store, the generator
(weights or a model-free control) and the sample planner with its nodule sources."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lungforge.augment.controls import CONTROLS, ControlGenerator
from lungforge.augment.inpainter import Inpainter
from lungforge.augment.lidc import LidcLibrary
from lungforge.augment.nodule_library import SHAPE_MIN_AREA_PX, NoduleLibrary, SizePool
from lungforge.augment.options import AugmentOptions
from lungforge.augment.plan import SamplePlanner, SourceMaps
from lungforge.augment.slice_generator import SliceGenerator
from lungforge.augment.synthesizer import SamplingSettings, Synthesizer
from lungforge.core.device import check_precision
from lungforge.core.errors import InputError
from lungforge.core.output_paths import refuse_overlap
from lungforge.models.catalog import resolve_weights
from lungforge.models.checkpoint import load_checkpoint
from lungforge.models.presets import SDMConfig
from lungforge.store import SPLIT_IDS, VOLUME_SCHEMA, Store, open_store, schema_of


@dataclass(frozen=True, eq=False)
class AugmentInputs:
    """Everything read and validated before any output is touched; `options` as the generator
    runs them (:meth:`AugmentOptions.as_run`), what the output store records."""

    real: Store
    synthesizer: SliceGenerator
    planner: SamplePlanner
    options: AugmentOptions


def _generator(options: AugmentOptions, real: Store, device: torch.device) -> tuple[SliceGenerator, AugmentOptions]:
    """The model named by --weights, or a model-free control (`paste`, `mislabeled`, `blob`) at
    --size, and the options as it runs them (sampler settings for diffusion weights only).

    An inpainting SDM (its checkpoint's mode) draws into the real slices at --size (default: the
    real store's native size); a whole-slice model generates at its own size.
    """
    if options.weights in CONTROLS:
        run = options.as_run(diffusion=False, weights_kind="a model-free control")
        if options.weights in ("paste", "blob") and options.nodules > 0 and options.shape != "real":
            raise InputError(f"--weights {options.weights} copies real nodule pixels: it needs --shape real, got --shape {options.shape}")
        return ControlGenerator(options.weights, real, options.size or real.shape_hw[0]), run
    weights_path = resolve_weights(options.weights)
    refuse_overlap(options.out, "--weights", weights_path, "augment")
    ckpt = load_checkpoint(weights_path)
    diffusion = isinstance(ckpt.config, SDMConfig)
    run = options.as_run(diffusion, f"a {ckpt.kind.upper()} checkpoint (a GAN: one forward pass)")
    precision = check_precision(options.precision, device)
    settings = run.sampling() if diffusion else SamplingSettings()
    if isinstance(ckpt.config, SDMConfig) and ckpt.config.inpaint:
        return Inpainter(ckpt, real, options.size or real.shape_hw[0], device, precision, settings, compile=options.compile), run
    synthesizer = Synthesizer(ckpt, device, precision, settings, compile=options.compile)
    if options.size is not None and options.size != synthesizer.image_size:
        raise InputError(
            f"--size {options.size}: {options.weights} generates {synthesizer.image_size} px images; --size is for the model-free controls and inpainting weights"
        )
    return synthesizer, run


def load_inputs(options: AugmentOptions, device: torch.device) -> AugmentInputs:
    """Open the real store and the weights, and check the layout request can be met (no writes).

    The real store is held shared (`open_store(lock_for_reading=True)`) until its `close()`, so no
    lungforge writer replaces it while its label maps are read.
    """
    if schema_of(options.data) == VOLUME_SCHEMA:
        raise InputError(
            f"--data {options.data}: is a store of 3-D volumes; augment draws into slices (insert nodules into volumes "
            "with lungforge augment-volumes)"
        )
    real = open_store(options.data, lock_for_reading=True)
    try:
        return _load_inputs(options, device, real)
    except BaseException:
        real.close()
        raise


def _load_inputs(options: AugmentOptions, device: torch.device, real: Store) -> AugmentInputs:
    if real.kind != "real":
        raise InputError(
            f"--data {options.data}: store kind is {real.kind!r}, expected a 'real' store (synthetic slices cannot seed new ones)"
        )
    synthesizer, options = _generator(options, real, device)
    maps = SourceMaps(real, synthesizer.image_size)
    library: NoduleLibrary | LidcLibrary | None = None
    sizes = None
    if options.nodules > 0 and options.shape == "real":
        # at their own size every real mask is usable; rescaled to --diameter only those with a shape
        smallest = 1 if options.diameter_mm is None else SHAPE_MIN_AREA_PX
        library = NoduleLibrary.from_store(real, min_area_px=smallest, seed=options.seed, split=SPLIT_IDS["train"])
    elif options.nodules > 0 and options.shape == "lidc":
        # LIDC scans are LUNA16's: the contours of the store's test patients stay out.
        test_series = np.unique(real.meta("series")[real.meta("split") == SPLIT_IDS["test"]])
        library = LidcLibrary.load(exclude_series={real.series_uids[i] for i in test_series})
    if options.nodules > 0 and options.diameter_mm is None and options.shape != "real":
        sizes = SizePool.from_store(real, split=SPLIT_IDS["train"])  # real shapes keep their own size
    planner = SamplePlanner(
        maps,
        options.layout_request(),
        n_nodule=options.nodules,
        seed=options.seed,
        library=library,
        sizes=sizes,
        adapt=synthesizer.adapt if isinstance(synthesizer, ControlGenerator) else None,
    )
    planner.check_feasible()
    if options.nodules > 0:
        synthesizer.check_room(planner, options.diameter_mm, options.weights)
    return AugmentInputs(real, synthesizer, planner, options)
