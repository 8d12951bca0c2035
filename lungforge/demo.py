"""`lungforge demo`: phantom → prepare → augment (the demo generators) → bench --quick --controls
(label fidelity of the generators beside the real ceiling, FID if its weights exist, detect,
localize on a two-point learning curve: a few real nodule slices per fold, then all).

Runs offline on a laptop CPU in minutes. Every step is the real code path at small sizes; the
demo weights are tiny models trained on phantom data (see weights/manifest.toml), so the
synthetic images and the quick benchmark show the pipeline working, not the paper's results.
The generators and the control stores get the same layout request (real shapes, real mask sizes,
one draw per slice; the controls at the real store's size), so the conditions A, mislabeled,
paste, blob and the chosen generators (default SDM-inpaint, the inpainting SDM drawing nodules
into the real slices; SPADE and SDM on request) differ in the images alone, and the per-fold
controls hosts and classic say what extra real backgrounds and classical augmentation give; the
bench runs at the phantom's resolution with patches of 1/8 of the slice side (32 px at the bench
default of 256).

Detection trains 60 epochs in batches of 16 (`detect_epochs`; the quick budget left A at
chance on the demo's few slices); localization uses the CPU-sized Faster R-CNN
(:meth:`LocalizeConfig.cpu_preset`, `localize_epochs` epochs): the quick preset's anchors reach
none of the phantom's 1–7 px nodules (docs/localization.md). One fixed budget serves both curve
points and every condition. After the bench it checks its own bar — detection A above chance and
A's AP50 above 0 on all real nodules — and when it is missed the report's first line says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from lungforge.core.choices import Sampler, check_choice
from lungforge.core.errors import ConfigError, LungforgeError
from lungforge.core.seeds import check_seed

if TYPE_CHECKING:
    from lungforge.bench.protocol.inputs import SyntheticSpec
    from lungforge.bench.reporting.bench_report import BenchReport, TaskReport

DemoGenerator = Literal["SPADE", "SDM", "SDM-inpaint"]
DIFFUSION_GENERATORS: tuple[DemoGenerator, ...] = ("SDM", "SDM-inpaint")
"""The demo generators that sample (and take `sampler`, `steps`)."""
DEMO_SAMPLER_STEPS = 10
LOCALIZE_EPOCHS_MEASURED = (20, 40, 80)
"""`--localize-epochs` budgets measured on the default demo phantom (textured nodules, 20 scans at
128 px): A's AP50 at K = all was 0 at each, because most of its nodules look like the vessels of
their slice (docs/localization.md). The report's first line says so when AP50 is 0."""
DEMO_VOLUME_SPACING_MM = 2.0
"""The demo's volume spacing: near the 128-px phantom's in-plane 2.4–3.2 mm, so volumes stay small."""
DEMO_VOLUME_NODULES = 8
StepResult = tuple[Path, dict[str, Any]]
"""What a step produced (a path) and its details."""


@dataclass(frozen=True)
class DemoOptions:
    """Sizes of the demo (its cost on 2 CPU cores: docs/localization.md).

    The demo SDM is a tiny model trained briefly on phantom data; ancestral DDPM sampling (10
    respaced steps) corrects its errors, where the deterministic ODE samplers (ddim, dpmpp) can
    drift to noisy images with such an undertrained model. `sampler` and `steps` (None: ddpm, 10)
    go to the SDM generators only; set with none of them among `generators` they are refused.
    """

    out: Path
    scans: int = 20
    size: int = 128
    nodules: int = 32
    nodule_free: int = 32
    sampler: Sampler | None = None
    steps: int | None = None
    sdm_weights: str = "demo-sdm-tiny"
    spade_weights: str = "demo-spade-tiny"
    inpaint_weights: str = "demo-sdm-inpaint-tiny"
    generators: tuple[DemoGenerator, ...] = ("SDM-inpaint",)
    """Generators benched beside A and the two controls, among SPADE, SDM and SDM-inpaint."""
    segmenter_steps: int = 150
    detect_epochs: int = 60
    detect_batch: int = 16
    localize_epochs: int = 8
    """Epochs of the CPU-sized Faster R-CNN (LocalizeConfig.cpu_preset) over A's training slices: the
    least that runs every part of localization, since no budget measured learns the default phantom
    (:data:`LOCALIZE_EPOCHS_MEASURED`)."""
    small_k: int = 4
    volumes: bool = False
    """Also run the 3-D path: prepare --volumes (at :data:`DEMO_VOLUME_SPACING_MM`), augment-volumes
    paste (:data:`DEMO_VOLUME_NODULES` nodules), export monai-detection and view."""
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.sampler is not None:
            check_choice("sampler", self.sampler, Sampler)
        for name in self.generators:
            check_choice("generators", name, DemoGenerator)
        if len(set(self.generators)) != len(self.generators):
            raise ConfigError("generators", f"generators must not repeat a name, got {', '.join(self.generators)}")
        if not any(name in DIFFUSION_GENERATORS for name in self.generators):
            for option in ("sampler", "steps"):
                if getattr(self, option) is not None:
                    raise ConfigError(
                        option, f"{option} is for the SDM generators; generators {', '.join(self.generators)} have no sampler"
                    )

    def sampling(self, generator: DemoGenerator) -> dict[str, Any]:
        """The augment sampler options of demo generator `generator`: none for SPADE (a GAN)."""
        if generator not in DIFFUSION_GENERATORS:
            return {}
        return {"sampler": self.sampler or "ddpm", "steps": self.steps or DEMO_SAMPLER_STEPS}

    def generator_weights(self) -> tuple[tuple[DemoGenerator, str], ...]:
        """(condition name, weights) of each chosen generator, in the order they are made and benched."""
        weights = {"SPADE": self.spade_weights, "SDM": self.sdm_weights, "SDM-inpaint": self.inpaint_weights}
        return tuple((name, weights[name]) for name in get_args(DemoGenerator) if name in self.generators)

    @property
    def patch(self) -> int:
        """Detection patch side in pixels at the bench size (`size`): 1/8 of the slice side."""
        return max(8, self.size // 8)


@dataclass
class DemoStep:
    """One finished step: its name, wall time in seconds and what it produced."""

    name: str
    seconds: float
    produced: str
    details: dict[str, Any] = field(default_factory=dict)


def run_demo(options: DemoOptions, on_step: Callable[[DemoStep], None] | None = None, progress: Any = None) -> list[DemoStep]:
    """Run the whole pipeline into `options.out`; returns the steps with their timings."""
    from lungforge.bench.protocol.inputs import SyntheticSpec

    out = Path(options.out)
    if out.exists() and any(out.iterdir()):
        raise LungforgeError(f"{out}: exists and is not empty; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    steps: list[DemoStep] = []

    def run(name: str, step: Callable[[], StepResult]) -> None:
        started = time.perf_counter()
        produced, details = step()
        done = DemoStep(name, round(time.perf_counter() - started, 2), str(produced), details)
        steps.append(done)
        if on_step is not None:
            on_step(done)

    luna, real = out / "luna16-phantom", out / "real.zarr"
    run("phantom", partial(_phantom, luna, options))
    run("prepare", partial(_prepare, luna, real, options))
    if options.volumes:
        volumes = out / "volumes.zarr"
        run("prepare --volumes", partial(_prepare_volumes, luna, volumes, options))
        run("augment-volumes paste", partial(_augment_volumes, volumes, out / "synthetic-volumes.zarr", options))
        run("export monai-detection", partial(_export_volumes, out / "synthetic-volumes.zarr", out / "monai"))
        run("view", partial(_view_volumes, out / "synthetic-volumes.zarr", out / "view-volumes"))
    synthetic: list[SyntheticSpec] = []
    for name, weights in options.generator_weights():
        spec = SyntheticSpec(name=name, path=out / f"synthetic-{name.lower()}.zarr")
        run(f"augment {name}", partial(_augment, real, spec.path, name, weights, options))
        synthetic.append(spec)
    run("bench all --quick --controls --real-nodules", partial(_bench, real, synthetic, out / "report", options, progress))
    return steps


def _phantom(luna: Path, options: DemoOptions) -> StepResult:
    from lungforge.phantom.scans import make_phantom

    info = make_phantom(luna, scans=options.scans, size=options.size, seed=options.seed)
    return luna, {"scans": info["scans"], "nodules": info["nodules"]}


def _prepare(luna: Path, real: Path, options: DemoOptions) -> StepResult:
    from lungforge.preparation.pipeline import PrepareOptions, prepare

    report = prepare(luna, real, PrepareOptions(test_patients=0.2, seed=options.seed, workers=1))
    return real, {"slices": report.slices, "nodule_slices": report.nodule_slices, "skipped": len(report.skipped)}


def _prepare_volumes(luna: Path, volumes: Path, options: DemoOptions) -> StepResult:
    from lungforge.preparation.options import VolumeOptions
    from lungforge.preparation.volume_pipeline import prepare_volumes

    report = prepare_volumes(luna, volumes, VolumeOptions(spacing_mm=DEMO_VOLUME_SPACING_MM, test_patients=0.2, seed=options.seed))
    return volumes, {"scans": report.scans_done, "nodules": report.nodules, "spacing_mm": DEMO_VOLUME_SPACING_MM}


def _augment_volumes(volumes: Path, out: Path, options: DemoOptions) -> StepResult:
    """3-D paste nodules into the train volumes (model-free; no 3-D generator ships yet)."""
    from lungforge.augment.volume_insert import augment_volumes
    from lungforge.augment.volume_options import VolumeInsertOptions

    report = augment_volumes(
        VolumeInsertOptions(data=volumes, out=out, weights="paste", nodules=DEMO_VOLUME_NODULES, per_volume=2, seed=options.seed)
    )
    return out, {"volumes": report.volumes, "nodules": report.nodules, "z_extent_error_mm_max": report.z_extent_error_mm_max}


def _export_volumes(store: Path, out: Path) -> StepResult:
    from lungforge.export.context import ExportOptions
    from lungforge.export.run import VolumeExportReport, export_store

    report = export_store(store, out, ExportOptions(format="monai-detection"))
    return out, {"scans": report.scans if isinstance(report, VolumeExportReport) else 0}


def _view_volumes(store: Path, out: Path) -> StepResult:
    from lungforge.view.volumes import write_volume_view

    pngs, _ = write_volume_view(store, out)
    return out, {"pngs": len(pngs)}


def _augment(real: Path, store: Path, generator: DemoGenerator, weights: str, options: DemoOptions) -> StepResult:
    """One generator's synthetic store: real shapes and mask sizes, one draw per slice."""
    from lungforge.augment.generate import augment
    from lungforge.augment.options import AugmentOptions

    result = augment(
        AugmentOptions(
            data=real,
            weights=weights,
            out=store,
            nodules=options.nodules,
            nodule_free=options.nodule_free,
            shape="real",
            retries=0,
            batch_size=16,
            device=options.device,
            seed=options.seed,
            **options.sampling(generator),
        )
    )
    details = {"slices": result.slices, "verified": result.verified_final, "img_per_s": result.images_per_s} if result else {}
    return store, details


def _bench(real: Path, synthetic: list[SyntheticSpec], report_dir: Path, options: DemoOptions, progress: Any) -> StepResult:
    """`bench all --quick --controls` on the two-point curve with the demo's budget; the report opens with a missed bar."""
    from lungforge.bench.protocol.detect import DetectConfig
    from lungforge.bench.protocol.inputs import open_real, open_synthetic
    from lungforge.bench.protocol.localize import LocalizeConfig
    from lungforge.bench.reporting.report import AllConfig, run_all
    from lungforge.bench.scoring.fid import FidConfig
    from lungforge.bench.scoring.segmenter import SegmenterConfig
    from lungforge.core.device import resolve_device

    # The controls copy benchmarked nodules, so at the small K some fold may get no synthetic
    # nodule slice; the demo benches it anyway and its rows record the slices joined.
    common = dict(size=options.size, folds=2, real_split="all", seed=options.seed, allow_empty_synthetic=True)
    detect = replace(
        DetectConfig.quick_preset(**common, patch=options.patch), epochs=options.detect_epochs, batch_size=options.detect_batch
    )
    config = AllConfig(
        detect=detect,
        localize=LocalizeConfig.cpu_preset(**common, epochs=options.localize_epochs, quick=True),
        fid=FidConfig(size=options.size, real_split="all", features="inception", seed=options.seed),
        fidelity=SegmenterConfig.quick_preset(size=options.size, steps=options.segmenter_steps, seed=options.seed),
        controls=True,
        curve=[options.small_k, None],
        allow_download=False,
    )
    real_store = open_real(real)
    stores = {s.name: open_synthetic(s.path, real_store) for s in synthetic}
    bench = run_all(real_store, stores, report_dir, config, resolve_device(options.device), progress)
    verdict = demo_verdict(bench)
    report = report_dir / "report.md"
    if verdict is not None:
        report.write_text(f"**{verdict}**\n\n" + report.read_text())
    scores = bench.fidelity.scores if bench.fidelity is not None else {}
    fidelity = {name: {"miou": s.summary.miou, "nodule_hit_rate": s.summary.nodule_hits.rate} for name, s in scores.items()}
    details = {
        "fid_available": bench.fid.available,
        "conditions": list(bench.detect.result.conditions),
        "fidelity": fidelity,
        "below_bar": verdict,
        "A": {"accuracy": _reference_mean(bench.detect, "accuracy"), "AP50": _reference_mean(bench.localize, "AP50")},
    }
    return report, details


def _reference_mean(task: TaskReport, metric: str) -> float | None:
    """Condition A's mean `metric` over folds (None when undefined)."""
    from lungforge.bench.protocol.inputs import REFERENCE
    from lungforge.bench.protocol.results import json_safe

    return json_safe(task.summary.conditions[REFERENCE].metrics[metric].mean)


def demo_verdict(report: BenchReport) -> str | None:
    """None when the demo meets its bar (A's detection accuracy above 0.5 and A's AP50 above 0,
    all real nodules); else the sentence the report opens with."""
    accuracy = _reference_mean(report.detect, "accuracy")
    ap50 = _reference_mean(report.localize, "AP50")
    misses = []
    if accuracy is None or accuracy <= 0.5:
        misses.append(f"detection A is at chance ({'n/a' if accuracy is None else f'{100 * accuracy:.1f} %'})")
    if ap50 is None or ap50 <= 0:
        misses.append(
            f"A's AP50 is {'n/a' if ap50 is None else f'{100 * ap50:.1f} %'} (no budget measured lifts it above 0 on the "
            f"default phantom: --localize-epochs {', '.join(map(str, LOCALIZE_EPOCHS_MEASURED))} all gave 0, as most of its "
            "nodules look like the vessels of their slice)"
        )
    if not misses:
        return None
    return (
        "This demo's setting is below its bar: "
        + " and ".join(misses)
        + "; the comparisons of that task mean nothing (docs/results.md and docs/localization.md say why)."
    )


def demo_summary(steps: list[DemoStep]) -> list[dict[str, Any]]:
    """The steps as plain dicts (for --json)."""
    return [asdict(s) for s in steps]
