"""`lungforge bench fid | detect | localize | all`: the paper's evaluation (thin wrappers over lungforge.bench)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from lungforge.cli.bench_options import (
    SIZE_HELP,
    EmptySyntheticOpt,
    FoldsOpt,
    JsonOpt,
    LeakageOpt,
    OutOpt,
    PatchOpt,
    PrimaryOpt,
    QuickOpt,
    RealNodulesOpt,
    RealOpt,
    RepeatsOpt,
    SeedOpt,
    SegmenterStepsOpt,
    SelectOpt,
    SplitOpt,
    SyntheticOpt,
    curve_points,
    open_stores,
    size_option,
    synthetic_specs,
)
from lungforge.cli.params import DeviceOpt, build_config, finite, usage_errors
from lungforge.core.choices import (
    MAX_EPOCHS,
    MAX_SIZE_PX,
    MIN_FID_SIZE_PX,
    MIN_LOCALIZE_SIZE_PX,
    MIN_PATCH_PX,
    OFFICIAL_FOLDS,
    Backbone,
    Features,
    FidSplit,
    LocalizePreset,
)

bench_app = typer.Typer(
    help="Evaluate synthetic stores: FID, and nodule detection / localization with k-fold CV (paper §3).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


def _given(params: dict[str, Any]) -> dict[str, Any]:
    """A command's options without those left at None (their config field keeps its default, or its preset's)."""
    return {name: value for name, value in params.items() if value is not None}


def _run_task(
    task: str,
    run: Callable[..., Any],
    make: Callable[..., Any],
    metric: str,
    metrics: tuple[str, ...],
    params: dict[str, Any],
    **values: Any,
) -> None:
    """Run one task, `detect` or `localize` (or its learning curve over `--real-nodules`) with the
    config `make` builds from the command's options `params` (:func:`build_config`, `values`
    first); print the table or JSON (the result and its summary); with a curve and `--out`, write
    its figure there. Under torchrun the ranks share the (fold, condition) runs and rank 0 reports."""
    from contextlib import nullcontext

    from lungforge.bench.protocol.curves import curve_figure, curve_table, learning_curve
    from lungforge.bench.protocol.detect import QUICK_LABEL
    from lungforge.bench.protocol.primary import primary_comparison
    from lungforge.bench.scoring.summary import PrimaryError, summarize
    from lungforge.cli.bench_print import print_curve, print_leakage, print_summary
    from lungforge.cli.console import err_console, print_json, print_wrote, progress
    from lungforge.core.device import resolve_device
    from lungforge.core.process_group import dist_info_from_env, process_group

    points = curve_points(params["curve"])
    config = build_config(make, _given(params), **values)
    real_store, stores = open_stores(params["real"], params["synthetic"])
    with usage_errors(only=PrimaryError):
        spec = primary_comparison(params["primary"], real_store, stores, config, points)
    out, json_out = params["out"], params["json_out"]
    info = dist_info_from_env()
    device = resolve_device(params["device"], info.local_rank)
    with process_group(info, device), progress() if info.is_main else nullcontext() as bar:
        if points is None:
            result = run(real_store, stores, config, device, out, bar)
        else:
            result = learning_curve(run, real_store, stores, config, points, device, out, bar)
    if not info.is_main:
        return
    print_leakage(result.leakage)
    figure = None
    if points is not None and out is not None:
        figure = curve_figure(result, metric, Path(out) / f"{task}_curve.png", f"{task}: {metric} against K")
    if points is None:
        summary = summarize(result, metrics, metric, spec)
        if json_out:
            print_json({**result.to_dict(), "summary": summary.to_dict()})
        else:
            print_summary(task, summary, metrics)
    else:
        table = curve_table(result, metrics, metric, spec)
        if json_out:
            print_json({**result.to_dict(), "summary": {point: s.to_dict() for point, s in table.items()}})
        else:
            print_curve(result, table, task)
    if figure is not None:
        print_wrote(figure, json_out)
    if config.quick:
        err_console.print(f"[yellow]{QUICK_LABEL}[/yellow]")


@bench_app.command("fid")
def fid(
    ctx: typer.Context,
    real: RealOpt,
    synthetic: Annotated[list[str], typer.Option("--synthetic", help="Synthetic store, as STORE or NAME=STORE; repeat for several.")],
    real_split: Annotated[FidSplit, typer.Option(help="Real slices to compare with: all, train or test patients.")] = "all",
    inception_weights: Annotated[
        Path | None, typer.Option(help="Local pt_inception-2015-12-05-6726825d.pth (else the torch hub cache, else a download).")
    ] = None,
    features: Annotated[Features, typer.Option(help="'inception' (FID) or 'random' (tests only; not comparable).")] = "inception",
    size: Annotated[
        int,
        size_option(
            MIN_FID_SIZE_PX,
            "Working resolution in pixels: every store (real and synthetic) is resized to it, antialiased, before the network.",
        ),
    ] = 256,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 50,
    select: SelectOpt = "first-draw",
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Fréchet Inception Distance of synthetic vs real slices: nodule, nodule-free and all slices."""
    from lungforge.bench.scoring.fid import FidConfig, compute_fid, make_extractor
    from lungforge.cli.bench_print import print_fid, print_fid_warnings
    from lungforge.cli.console import print_json, progress
    from lungforge.core.device import resolve_device

    named = [s if "=" in s else f"{Path(s).stem}={s}" for s in synthetic]
    real_store, stores = open_stores(real, named, need_nodules=False)
    config = build_config(FidConfig, ctx.params)
    dev = resolve_device(device)
    extractor, dims = make_extractor(config, inception_weights, dev)
    with progress(transient=True) as bar:
        result = compute_fid(real_store, stores, config, extractor, dims, dev, bar)
    print_fid_warnings(result.warnings)
    if json_out:
        print_json(result.to_dict())
    else:
        print_fid(result)


@bench_app.command("detect")
def detect(
    ctx: typer.Context,
    real: RealOpt,
    synthetic: SyntheticOpt = None,
    folds: FoldsOpt = OFFICIAL_FOLDS,
    real_split: SplitOpt = "all",
    size: Annotated[int, size_option(MIN_PATCH_PX, SIZE_HELP)] = 256,
    epochs: Annotated[int, typer.Option(min=1, max=MAX_EPOCHS, help="Training epochs per fold and condition.")] = 30,
    batch_size: Annotated[int, typer.Option(min=2, help="Patches per step.")] = 64,
    depth: Annotated[int, typer.Option(min=8, help="SE-ResNet depth 6n+2 (8, 14, 20, 32, 56, 110).")] = 20,
    patch: PatchOpt = 32,
    select: SelectOpt = "first-draw",
    curve: RealNodulesOpt = None,
    allow_generator_leakage: LeakageOpt = False,
    allow_empty_synthetic: EmptySyntheticOpt = False,
    repeats: RepeatsOpt = 1,
    primary: PrimaryOpt = None,
    out: OutOpt = None,
    quick: QuickOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Nodule / non-nodule classification of 32×32 patches with an SE-ResNet (paper Table 1-I).

    Every condition trains the same optimiser steps (epochs × ⌈A's training patches / batch⌉), on
    batches of the same size and nodule share; conditions are compared on AUROC."""
    from lungforge.bench.protocol.detect import DetectConfig, run_detect
    from lungforge.bench.scoring.metrics import DETECT_METRICS

    make = DetectConfig.quick_preset if quick else DetectConfig
    _run_task("detect", run_detect, make, "auroc", (*DETECT_METRICS, "auroc"), ctx.params)


@bench_app.command("localize")
def localize(
    ctx: typer.Context,
    real: RealOpt,
    synthetic: SyntheticOpt = None,
    folds: FoldsOpt = OFFICIAL_FOLDS,
    real_split: SplitOpt = "all",
    size: Annotated[int, size_option(MIN_LOCALIZE_SIZE_PX, SIZE_HELP)] = 256,
    preset: Annotated[
        LocalizePreset,
        typer.Option(
            help="paper: ResNet-50 FPN, 20 epochs (GPU runs); cpu: the CPU-sized detector for nodules of 1–30 px, 40 epochs (docs/localization.md)."
        ),
    ] = "paper",
    epochs: Annotated[
        int | None, typer.Option(min=1, max=MAX_EPOCHS, help="Training epochs per fold and condition (default: the preset's).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Slices per step.")] = 4,
    backbone: Annotated[
        Backbone | None,
        typer.Option(
            help="resnet50 (the paper's Faster R-CNN), resnet18 (lighter), both FPN, or resnet18-stride2 (the cpu preset's); default: the preset's."
        ),
    ] = None,
    backbone_weights: Annotated[
        Path | None, typer.Option(help="Local torchvision ResNet state dict for the backbone (default: random init).")
    ] = None,
    nodule_free_ratio: Annotated[
        float, typer.Option(min=0.0, callback=finite, help="Nodule-free slices added as negatives, per nodule slice.")
    ] = 0.0,
    select: SelectOpt = "first-draw",
    curve: RealNodulesOpt = None,
    allow_generator_leakage: LeakageOpt = False,
    allow_empty_synthetic: EmptySyntheticOpt = False,
    repeats: RepeatsOpt = 1,
    primary: PrimaryOpt = None,
    out: OutOpt = None,
    quick: QuickOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Nodule bounding boxes on whole slices with Faster R-CNN: AP50/60, AR50/60/70 (paper Table 1-II).

    Every condition trains the same optimiser steps (epochs × ⌈A's training slices / batch⌉)."""
    from lungforge.bench.protocol.localize import LocalizeConfig, run_localize
    from lungforge.bench.scoring.froc import CPM
    from lungforge.bench.scoring.metrics import LOCALIZE_METRICS

    if preset == "cpu" and quick:
        raise typer.BadParameter("--preset cpu is its own small setting; leave out --quick", param_hint="--preset")
    make = LocalizeConfig.cpu_preset if preset == "cpu" else LocalizeConfig.quick_preset if quick else LocalizeConfig
    weights = str(backbone_weights) if backbone_weights else None
    _run_task("localize", run_localize, make, "AP50", (*LOCALIZE_METRICS, CPM), ctx.params, backbone_weights=weights)


@bench_app.command("all")
def all_(
    ctx: typer.Context,
    real: RealOpt,
    out: Annotated[Path, typer.Option("--out", help="Report folder: report.md, report.json, figures/*.png, per-fold results.")],
    synthetic: SyntheticOpt = None,
    folds: FoldsOpt = OFFICIAL_FOLDS,
    real_split: SplitOpt = "all",
    size: Annotated[int, size_option(max(MIN_LOCALIZE_SIZE_PX, MIN_FID_SIZE_PX), SIZE_HELP)] = 256,
    inception_weights: Annotated[
        Path | None, typer.Option(help="Local FID Inception weights; without them the FID section says why it is missing.")
    ] = None,
    features: Annotated[Features, typer.Option(help="FID features: 'inception' or 'random' (tests only; not comparable).")] = "inception",
    segmenter_steps: SegmenterStepsOpt = None,
    patch: PatchOpt = 32,
    select: SelectOpt = "first-draw",
    controls: Annotated[
        bool,
        typer.Option(
            "--controls",
            help="Also bench model-free controls: under OUT/controls, with the first store's layout request at the real store's size, "
            "'paste' (real nodule patches blended into real slices), 'mislabeled' (nodule labels on unchanged slices) and 'blob' "
            "(constant ellipses of the requested sizes); per fold 'hosts' (the joined host slices labelled nodule-free) and 'classic' "
            "(A's own nodules classically augmented, as many positives as the first synthetic store adds, else paste). The report says whether paste and mislabeled separate "
            "and calls a generator helpful only when it beats A, classic and blob.",
        ),
    ] = False,
    curve: RealNodulesOpt = None,
    allow_generator_leakage: LeakageOpt = False,
    allow_empty_synthetic: EmptySyntheticOpt = False,
    repeats: RepeatsOpt = 1,
    primary: PrimaryOpt = None,
    quick: QuickOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """FID, label fidelity, detection and localization on the same stores; writes report.md / report.json / PNG figures."""
    from lungforge.bench.protocol.detect import DetectConfig
    from lungforge.bench.protocol.localize import LocalizeConfig
    from lungforge.bench.reporting.report import AllConfig, run_all
    from lungforge.bench.scoring.fid import FidConfig
    from lungforge.bench.scoring.summary import PrimaryError
    from lungforge.cli.bench_print import print_report, print_report_warnings
    from lungforge.cli.console import print_json, progress
    from lungforge.core.device import resolve_device
    from lungforge.core.process_group import dist_info_from_env

    if dist_info_from_env().enabled:
        raise typer.BadParameter(
            "bench all runs in one process; under torchrun run `bench detect` and `bench localize`, whose ranks share the folds",
            param_hint="torchrun",
        )
    specs = synthetic_specs(synthetic)
    if not specs and not controls:
        raise typer.BadParameter("give at least one NAME=STORE (or --controls)", param_hint="--synthetic")
    points = curve_points(curve)
    params = _given(ctx.params)
    config = AllConfig(
        detect=build_config(DetectConfig.quick_preset if quick else DetectConfig, params),
        localize=build_config(LocalizeConfig.quick_preset if quick else LocalizeConfig, params),
        fid=build_config(FidConfig, params),
        fidelity=_segmenter_config(params),
        controls=controls,
        curve=points,
        primary=primary,
        inception_weights=inception_weights,
    )
    real_store, stores = open_stores(real, synthetic)
    with progress() as bar, usage_errors(only=PrimaryError):
        report = run_all(real_store, stores, out, config, resolve_device(device), bar)
    print_report_warnings(report)
    if json_out:
        print_json(report.to_dict())
    else:
        print_report(report, out)


def _segmenter_config(params: dict[str, Any]) -> Any:
    """The fidelity segmenters' config from a command's options (its quick preset with `--quick`)."""
    from lungforge.bench.scoring.segmenter import SegmenterConfig

    steps = params.get("segmenter_steps")
    make = SegmenterConfig.quick_preset if params["quick"] else SegmenterConfig
    return build_config(make, params, **({"steps": steps} if steps else {}))


@bench_app.command("fidelity")
def fidelity(
    ctx: typer.Context,
    real: RealOpt,
    synthetic: SyntheticOpt = None,
    size: Annotated[
        int, typer.Option(min=32, max=MAX_SIZE_PX, help="Working resolution in pixels (divisible by 8); every store is resized to it.")
    ] = 256,
    segmenter_steps: SegmenterStepsOpt = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Narrow segmenters, 150 steps each (about a minute on a CPU at 64–128 px); labelled as quick.")
    ] = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Label fidelity, offline and cross-fitted: two UNets, each trained on half of the real train
    patients, segment the other half's real slices (the ceiling) and the synthetic slices whose sources
    they did not train on; per-class IoU, mIoU, nodule hit rate by size, and a segmenter-feature
    Fréchet distance.

    The segmenters are cached beside --real (`<real>.fidelity/`), keyed by the store's fingerprint,
    the options, the seed and the half: trained once, reused.
    """
    from lungforge.bench.scoring.fidelity import compute_fidelity
    from lungforge.cli.bench_print import print_fidelity
    from lungforge.cli.console import print_json, progress
    from lungforge.core.device import resolve_device

    if size % 8:
        raise typer.BadParameter(f"must be divisible by 8, got {size}", param_hint="--size")
    config = _segmenter_config(_given(ctx.params))
    real_store, stores = open_stores(real, synthetic, need_nodules=False)
    with progress(transient=True) as bar:
        result = compute_fidelity(real_store, stores, config, resolve_device(device), bar)
    if json_out:
        print_json(result.to_dict())
    else:
        print_fidelity(result, quick)
