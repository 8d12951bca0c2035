"""`bench all`: FID, label fidelity, detect and localize on the same stores, written as
report.json, report.md (:mod:`lungforge.bench.reporting.markdown`) and PNG figures."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lungforge.bench.protocol.controls import CONTROL_NAMES, make_controls, separation
from lungforge.bench.protocol.curves import check_points, curve_figure, curve_table, learning_curve
from lungforge.bench.protocol.detect import DetectConfig, run_detect
from lungforge.bench.protocol.fold_options import FoldOptions
from lungforge.bench.protocol.foldlog import RESUME_ADVICE
from lungforge.bench.protocol.folds import leak_groups, real_groups
from lungforge.bench.protocol.inputs import open_synthetic
from lungforge.bench.protocol.localize import LocalizeConfig, run_localize
from lungforge.bench.protocol.primary import primary_comparison
from lungforge.bench.protocol.results import CurveResult, TaskResult
from lungforge.bench.protocol.selection import selected, selection_summary
from lungforge.bench.protocol.verdict import verdicts
from lungforge.bench.reporting.bench_report import TEST_METRIC, BenchReport, Budget, CurveSection, FidSection, TaskReport, report_title
from lungforge.bench.reporting.figures import fold_metrics, localization_examples, sample_grid
from lungforge.bench.reporting.gallery import nodule_gallery
from lungforge.bench.reporting.markdown import markdown
from lungforge.bench.scoring.fid import FidConfig, InceptionUnavailable, compute_fid, make_extractor
from lungforge.bench.scoring.fidelity import compute_fidelity
from lungforge.bench.scoring.metrics import DETECT_EXTRA_METRICS, DETECT_METRICS, LOCALIZE_EXTRA_METRICS, LOCALIZE_METRICS
from lungforge.bench.scoring.segmenter import SegmenterConfig
from lungforge.bench.scoring.summary import summarize
from lungforge.core.choices import RealSplit, Selection
from lungforge.core.errors import InputError
from lungforge.core.fileio import atomic_write_bytes, named_write
from lungforge.store import Store

SUMMARY_METRICS = {"detect": DETECT_METRICS + DETECT_EXTRA_METRICS, "localize": LOCALIZE_METRICS + LOCALIZE_EXTRA_METRICS}


@dataclass(frozen=True)
class AllConfig:
    """What `bench all` runs: each part's config and the report's own options.

    `detect` and `localize` hold the same :class:`FoldOptions` (the run's shared options,
    :attr:`shared`). `fidelity` None skips label fidelity. With `controls` the control stores are
    made and benched. `curve`: learning-curve points K (None: all), or None for one run.
    `primary`: `COND@K`, each task's primary comparison (default the first synthetic store, else
    the positive control paste, at the smallest K; :func:`~lungforge.bench.protocol.primary.primary_comparison`). `inception_weights`: a local FID Inception file; `allow_download` lets
    torchvision fetch it otherwise."""

    detect: DetectConfig
    localize: LocalizeConfig
    fid: FidConfig
    fidelity: SegmenterConfig | None = None
    controls: bool = False
    curve: list[int | None] | None = None
    primary: str | None = None
    inception_weights: Path | None = None
    allow_download: bool = True

    def __post_init__(self) -> None:
        for name in (f.name for f in dataclasses.fields(FoldOptions)):
            if getattr(self.detect, name) != getattr(self.localize, name):
                raise ValueError(
                    f"detect and localize must share {name}, got {getattr(self.detect, name)!r} and {getattr(self.localize, name)!r}"
                )

    @property
    def shared(self) -> FoldOptions:
        """The options detect and localize share (folds, real patients, selection, seed, ...)."""
        return self.detect


def run_all(
    real: Store, synthetic: dict[str, Store], out: Path, config: AllConfig, device: torch.device, progress: Any = None
) -> BenchReport:
    """Run fid (if weights are available), label fidelity (unless `config.fidelity` is None),
    detect and localize on the opened stores; write the report into `out`.

    With `config.controls`, the control stores (`mislabeled`, `paste`, `blob`) are made under `out/controls`
    (:mod:`lungforge.bench.protocol.controls`) and benched first, the per-fold controls `hosts` and
    `classic` (:mod:`lungforge.bench.protocol.fold_controls`) last, and the report says whether the
    protocol separates paste from mislabeled and which generators beat A, classic and blob. With
    `config.curve` detect and localize run at every point with one budget
    (:mod:`lungforge.bench.protocol.curves`), the tables at K = all (or the largest K), and a curve
    figure per task. Finished folds under `out/detect` and `out/localize` are reused by a rerun with
    the same arguments. The report is also written as `out/report.json` and `out/report.md`.
    """
    shared, curve, detect, localize = config.shared, config.curve, config.detect, config.localize
    if curve is not None:
        check_points(real, shared.folds, shared.real_split, curve)
    if config.controls:
        detect, localize = dataclasses.replace(detect, fold_controls=True), dataclasses.replace(localize, fold_controls=True)
    to_make = CONTROL_NAMES if config.controls else ()
    spec = primary_comparison(config.primary, real, synthetic, detect, curve, to_make)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: store.path for name, store in synthetic.items()}
    if config.controls:
        control_specs = make_controls(real.path, real, synthetic, out, shared.seed)
        paths = {**{s.name: s.path for s in control_specs}, **paths}
        synthetic = {**{s.name: open_synthetic(s.path, real) for s in control_specs}, **synthetic}
    if not synthetic:
        raise InputError("bench all needs at least one --synthetic NAME=STORE or --controls")
    fid_section = fid_report(real, synthetic, config.fid, device, config.inception_weights, config.allow_download, progress)
    fidelity_result = compute_fidelity(real, synthetic, config.fidelity, device, progress) if config.fidelity is not None else None
    curves: dict[str, CurveResult] = {}
    if curve is None:
        results = {
            "detect": run_detect(real, synthetic, detect, device, out, progress),
            "localize": run_localize(real, synthetic, localize, device, out, progress),
        }
    else:
        curves = {
            "detect": learning_curve(run_detect, real, synthetic, detect, curve, device, out, progress),
            "localize": learning_curve(run_localize, real, synthetic, localize, curve, device, out, progress),
        }
        results = {task: c.last for task, c in curves.items()}
    tables = {task: curve_table(c, SUMMARY_METRICS[task], TEST_METRIC[task], spec) for task, c in curves.items()}
    summaries = {
        task: tables[task][curves[task].points[-1]]
        if task in tables
        else summarize(results[task], SUMMARY_METRICS[task], TEST_METRIC[task], spec)
        for task in results
    }
    figures = report_figures(out / "figures", real, synthetic, results, curves, detect, report_title(shared.quick))
    report = BenchReport(
        device=str(device),
        real=real.path,
        synthetic=paths,
        fid=fid_section,
        fidelity=fidelity_result,
        selection=selection_report(real, synthetic, shared.select, shared.folds, shared.real_split),
        detect=TaskReport(results["detect"], summaries["detect"], Budget.of(results["detect"])),
        localize=TaskReport(results["localize"], summaries["localize"], Budget.of(results["localize"])),
        controls={task: separation(r, TEST_METRIC[task]) for task, r in results.items()} if config.controls else None,
        curves={task: CurveSection(c, TEST_METRIC[task], tables[task]) for task, c in curves.items()} or None,
        figures=[str(p.relative_to(out)) for p in figures],
        verdicts={task: verdicts(r, TEST_METRIC[task]) for task, r in results.items()} if config.controls else None,
    )
    texts = {"report.json": json.dumps(report.to_dict(), indent=2, allow_nan=False, default=str), "report.md": markdown(report)}
    for name, text in texts.items():
        with named_write(out / name, RESUME_ADVICE):
            atomic_write_bytes(out / name, text.encode())
    return report


def fid_report(
    real: Store,
    synthetic: dict[str, Store],
    config: FidConfig,
    device: torch.device,
    weights: Path | None,
    allow_download: bool,
    progress: Any = None,
) -> FidSection:
    """FID of every condition, or why it is missing when the Inception weights are unavailable."""
    try:
        extractor, dims = make_extractor(config, weights, device, allow_download)
    except InceptionUnavailable as exc:
        return FidSection(config, None, str(exc))
    return FidSection(config, compute_fid(real, synthetic, config, extractor, dims, device, progress))


def report_figures(
    folder: Path,
    real: Store,
    synthetic: dict[str, Store],
    results: dict[str, TaskResult],
    curves: dict[str, CurveResult],
    detect: DetectConfig,
    title: str,
) -> list[Path]:
    """The report's PNG figures in `folder`: samples, per-fold metrics, localization examples, the
    nodule gallery and one learning curve per task in `curves`."""
    folder.mkdir(exist_ok=True)
    loc = results["localize"]
    return [
        sample_grid(real, synthetic, folder / "samples.png", title),
        fold_metrics(results["detect"], DETECT_METRICS, folder / "detect_folds.png", f"detect — {title}"),
        fold_metrics(loc, LOCALIZE_METRICS, folder / "localize_folds.png", f"localize — {title}"),
        localization_examples(real, loc, loc.config.size, folder / "localize_examples.png", f"localize — {title}"),
        nodule_gallery(
            real,
            synthetic,
            folder / "nodule_gallery.png",
            f"nodules in the detector's {detect.patch}-px field at {detect.size} px — {title}",
            detect.patch / detect.size,
        ),
        *[
            curve_figure(c, TEST_METRIC[task], folder / f"{task}_curve.png", f"{task}: {TEST_METRIC[task]} against K — {title}")
            for task, c in curves.items()
        ],
    ]


def selection_report(real: Store, synthetic: dict[str, Store], rule: Selection, folds: int, real_split: RealSplit) -> dict[str, Any]:
    """Per synthetic condition: :func:`selection_summary` plus the selected slices dropped from
    each fold's training because their label map or a nodule source is a test-fold patient."""
    groups = real_groups(real, folds, real_split)
    section = {}
    for name, store in synthetic.items():
        leaks = leak_groups(store, real, groups) & selected(store, rule)[:, None]
        section[name] = {**selection_summary(store, rule), "dropped_per_fold": leaks.sum(axis=0).tolist()}
    return section
