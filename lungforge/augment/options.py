"""Options of an augment run (`lungforge augment`), as one frozen dataclass saved with the output."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from lungforge.augment.layout import LayoutRequest, NoduleShape, Placement
from lungforge.augment.synthesizer import SamplingSettings
from lungforge.core.choices import MAX_GUIDANCE, MAX_SIZE_PX, check_range
from lungforge.core.device import PRECISIONS, Precision
from lungforge.core.errors import ConfigError
from lungforge.core.json_params import json_params
from lungforge.core.seeds import check_seed
from lungforge.diffusion.samplers import SAMPLERS, Sampler
from lungforge.store import MAX_SLICES, SHARD

OUTPUT_DEFINING = (
    "nodules",
    "nodule_free",
    "diameter_mm",
    "per_slice",
    "placement",
    "shape",
    "sampler",
    "steps",
    "guidance",
    "precision",
    "seed",
    "min_contrast_hu",
    "retries",
    "shard_size",
    "size",
)
"""Options that change the output's content: a resumed run must repeat them exactly.

Batch size, device, rank count and compilation are absent on purpose: per-sample seeds make
the output independent of them (on one device type and precision, up to float rounding).
"""
SAMPLING = ("sampler", "steps", "guidance")
"""The diffusion sampler's options: set for diffusion (SDM) weights only (:meth:`AugmentOptions.as_run`)."""


@dataclass(frozen=True)
class AugmentOptions:
    """What to generate and how.

    Sample order: global indices 0..nodules-1 are nodule slices, nodules..nodules+nodule_free-1
    nodule-free ones. `diameter_mm` (MIN, MAX) in mm: the equivalent diameter of each inserted
    mask (the disk of equal area); None = each real shape's own size (`shape` "real"), else the
    equivalent diameters of the real train nodules' masks. `sampler`, `steps` and `guidance`
    (:data:`SAMPLING`) are for diffusion (SDM) weights; None takes :class:`SamplingSettings`'
    default there, and must stay None for SPADE weights and the controls, which draw without a
    sampler (:meth:`as_run`). `weights` "paste" / "mislabeled" / "blob" selects a model-free control
    (:mod:`lungforge.augment.controls`), made at `size` pixels (None: the real store's size; a
    model generates at its own size). `min_contrast_hu` None = the 5th percentile of real nodule
    contrast (HU). `shard_size` slices per output shard, the unit a rank owns and resume skips.
    `compile` runs the generator through `torch.compile`.
    """

    data: Path
    weights: str
    out: Path
    nodules: int = 0
    nodule_free: int = 0
    diameter_mm: tuple[float, float] | None = None
    per_slice: int = 1
    placement: Placement = "any"
    shape: NoduleShape = "real"
    sampler: Sampler | None = None
    steps: int | None = None
    guidance: float | None = None
    batch_size: int = 32
    device: str = "auto"
    precision: Precision = "fp32"
    seed: int = 0
    compile: bool = False
    min_contrast_hu: float | None = None
    retries: int = 0
    shard_size: int = SHARD
    size: int | None = None
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        """ConfigError naming the field for a value outside its choices or range."""
        for name in ("nodules", "nodule_free"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"{name} must be >= 0, got {getattr(self, name)}")
        if self.nodules + self.nodule_free == 0:
            raise ConfigError("nodules", "nothing to generate: nodules + nodule_free must be > 0")
        if self.nodules + self.nodule_free > MAX_SLICES:
            raise ConfigError(
                "nodules",
                f"nodules + nodule_free must be at most {MAX_SLICES:,} slices (what a store holds), "
                f"got {self.nodules + self.nodule_free:,}",
            )
        choices = {"sampler": SAMPLERS, "precision": PRECISIONS, "placement": get_args(Placement), "shape": get_args(NoduleShape)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed and not (name == "sampler" and self.sampler is None):
                raise ConfigError(name, f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("steps", "batch_size", "shard_size", "per_slice"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(name, f"{name} must be >= 1, got {getattr(self, name)}")
        if self.retries < 0:
            raise ConfigError("retries", f"retries must be >= 0, got {self.retries}")
        if self.guidance is not None:
            if not math.isfinite(self.guidance):
                raise ConfigError("guidance", f"guidance must be a finite number, got {self.guidance}")
            check_range("guidance", self.guidance, 0.0, MAX_GUIDANCE)
        if self.min_contrast_hu is not None and not math.isfinite(self.min_contrast_hu):
            raise ConfigError("min_contrast_hu", f"min_contrast_hu must be a finite number, got {self.min_contrast_hu}")
        if self.size is not None and not 16 <= self.size <= MAX_SIZE_PX:
            raise ConfigError("size", f"size must be 16..{MAX_SIZE_PX} pixels, got {self.size}")
        if not self.weights:
            raise ConfigError("weights", "weights must name a registered model, a checkpoint or a control, got ''")
        if self.resume and self.overwrite:
            raise ConfigError("resume", "resume and overwrite exclude each other; set one of them")
        try:
            check_seed(self.seed)
        except ValueError as exc:
            raise ConfigError("seed", str(exc)) from None
        try:
            self.layout_request()
        except ValueError as exc:
            raise ConfigError("diameter_mm" if self.diameter_mm is not None else "per_slice", str(exc)) from None

    def as_run(self, diffusion: bool, weights_kind: str) -> AugmentOptions:
        """These options as the generator runs them, `diffusion` saying whether it samples
        (SDM weights). A diffusion run fills an unset sampler, steps and guidance with
        :class:`SamplingSettings`' defaults; any other leaves them None, and a ConfigError naming
        the first one set and `weights_kind` (e.g. "a SPADE checkpoint (a GAN: one forward pass)")
        refuses an option that would be ignored."""
        if diffusion:
            default = SamplingSettings()
            return dataclasses.replace(self, **{name: getattr(default, name) for name in SAMPLING if getattr(self, name) is None})
        given = [name for name in SAMPLING if getattr(self, name) is not None]
        if given:
            raise ConfigError(
                given[0],
                f"{given[0]} is for diffusion (SDM) weights; --weights {self.weights} is {weights_kind}, which draws without a sampler",
            )
        return self

    def sampling(self) -> SamplingSettings:
        """The sampler settings of a run :meth:`as_run` made for diffusion weights."""
        if self.sampler is None or self.steps is None or self.guidance is None:
            raise ValueError("sampling settings of options not yet resolved for diffusion weights (AugmentOptions.as_run)")
        return SamplingSettings(self.sampler, self.steps, self.guidance)

    @property
    def total(self) -> int:
        """Slices in the output store."""
        return self.nodules + self.nodule_free

    def layout_request(self) -> LayoutRequest:
        """The nodule layout request of the nodule slices."""
        return LayoutRequest(per_slice=self.per_slice, diameter_mm=self.diameter_mm, placement=self.placement, shape=self.shape)

    def as_params(self) -> dict[str, Any]:
        """All options as JSON-ready values (the output store's `params` attribute)."""
        return json_params(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> AugmentOptions:
        """The options :meth:`as_params` wrote (e.g. a synthetic store's `params` attribute);
        ConfigError for an unknown key or a value its field refuses."""
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(params) - fields)
        if unknown:
            raise ConfigError(unknown[0], f"{unknown[0]} is not an augment option (expected some of {', '.join(sorted(fields))})")
        values = dict(params)
        for name in ("data", "out"):
            if name in values:
                values[name] = Path(values[name])
        if values.get("diameter_mm") is not None:
            values["diameter_mm"] = tuple(values["diameter_mm"])
        return cls(**values)


def output_defining(params: dict[str, Any]) -> dict[str, Any]:
    """The subset of `params` (see :meth:`AugmentOptions.as_params`) a resume must match; the
    sampler settings only where a sampler ran (a store of SPADE or a control written before they
    were recorded as None may hold the ignored defaults)."""
    sampled = params.get("sampler") is not None
    return {name: params.get(name) for name in OUTPUT_DEFINING if sampled or name not in SAMPLING}
