"""What the `bench` commands print when not asked for JSON: tables and verdicts on stdout, warnings on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from rich.markup import escape
from rich.table import Table

from lungforge.cli.console import err_console, out_console, print_result

if TYPE_CHECKING:  # the bench modules import torch: not for `--help`
    from lungforge.bench.protocol.leakage import GeneratorExposure
    from lungforge.bench.protocol.results import CurveResult, TaskResult
    from lungforge.bench.reporting.bench_report import BenchReport
    from lungforge.bench.scoring.fid import FidResult
    from lungforge.bench.scoring.fidelity import FidelityResult


def _yellow(text: str, prefix: str = "") -> None:
    """`text` on stderr, yellow, or after a yellow `prefix`."""
    line = f"[yellow]{prefix}[/yellow] {escape(text)}" if prefix else f"[yellow]{escape(text)}[/yellow]"
    err_console.print(line, highlight=False, soft_wrap=True)


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def print_leakage(leakage: dict[str, GeneratorExposure]) -> None:
    """The leakage warning of a task's generator exposures, if any."""
    from lungforge.bench.protocol.leakage import leakage_warning

    warning = leakage_warning(leakage)
    if warning:
        _yellow(warning)


def print_curve(curve: CurveResult, metric: str, task: str) -> None:
    """A learning curve's table (:func:`~lungforge.bench.protocol.curves.curve_markdown`)."""
    from lungforge.bench.protocol.curves import curve_markdown

    print_result("\n".join(curve_markdown(curve, metric, task)))


def print_summary(title: str, result: TaskResult, metrics: tuple[str, ...], test_metric: str) -> None:
    """One row per condition: `metrics` as mean ± std in %, then the comparison of `test_metric` with A."""
    from lungforge.bench.protocol.results import json_safe
    from lungforge.bench.reporting.markdown import COMPARISON_HEADERS, comparison_cells
    from lungforge.bench.scoring.stats import summarize

    summary = json_safe(summarize(result.folds, metrics, test_metric))
    table = Table("condition", *metrics, *(f"{h} ({test_metric})" for h in COMPARISON_HEADERS), title=title)
    for condition, row in summary.items():
        stats = [row["metrics"][m] for m in metrics]
        cells = ["n/a" if v["mean"] is None else f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}" for v in stats]
        table.add_row(condition, *cells, *comparison_cells(row["comparison"]))
    out_console.print(table)


def print_fid_warnings(warnings: list[str]) -> None:
    """One yellow line per FID warning (too few images)."""
    for warning in warnings:
        _yellow(warning, "warning:")


def print_fid(result: FidResult) -> None:
    """FID per synthetic store and subset at the working size (random features: a warning on stderr)."""
    if not result.comparable:
        err_console.print("[yellow]random features: NOT comparable to published FID[/yellow]")
    size = result.config.size
    for name, scores in result.scores.items():
        cells = ", ".join(f"{k} {v.fid:.2f}" if v.fid is not None else f"{k} n/a" for k, v in scores.items())
        print_result(f"FID {name} at {size}×{size} px: {cells}")


def print_fidelity(result: FidelityResult, quick: bool) -> None:
    """Label fidelity per condition (the real ceiling first) with the FD note as its caption; where the
    segmenters came from on stderr."""
    from lungforge.bench.scoring.fidelity import FEATURE_NOTE, REAL

    size = result.config.size
    table = Table("condition", "slices", "unscored", "mIoU %", "lungs IoU %", "nodule IoU %", "nodule hit %", "FD nodule", "FD nodule-free",
                  title=f"label fidelity at {size}×{size} px" + (" (quick)" if quick else ""), caption=f"FD: {FEATURE_NOTE}")
    for name, s in result.scores.items():
        iou, hits, fd = s["iou"], s["nodule_hits"], s["feature_distance"]
        lungs = [v for v in (iou["left_lung"], iou["right_lung"]) if v is not None]
        table.add_row(
            f"{name} (ceiling)" if name == REAL else name, str(s["slices"]), str(s["unscored"]), _pct(s["miou"]), _pct(sum(lungs) / len(lungs) if lungs else None),
            _pct(iou["nodule"]), f"{_pct(hits['rate'])} of {hits['nodules']}",
            *(["–", "–"] if fd is None else [f"{fd[k]['fd']:.3f}" if fd[k]["fd"] is not None else "n/a" for k in ("nodule", "nodule_free")]),
        )
    out_console.print(table)
    for seg in result.segmenters:
        err_console.print(f"segmenter {seg.half + 1}/2 {'reused from' if seg.cached else 'trained and cached in'} {seg.path}", highlight=False, soft_wrap=True)


def print_report_warnings(report: BenchReport) -> None:
    """`bench all`'s warnings: FID missing or unreliable, generator leakage allowed."""
    if not report.fid.available:
        _yellow(report.fid.reason or "", "FID unavailable:")
    print_fid_warnings(report.fid.warnings)
    if report.warning:
        _yellow(report.warning)


def print_report(report: BenchReport, out: Path) -> None:
    """`bench all`'s verdict on the controls and on each generator (with `--controls`) and what it wrote, on stdout."""
    from lungforge.bench.protocol.controls import separation_sentence
    from lungforge.bench.protocol.verdict import verdict_sentence

    if report.controls:
        for task, section in (("detect", report.detect), ("localize", report.localize)):
            print_result(separation_sentence(task, report.controls[task], folds=section.result.config.folds))
    for task, verdicts in (report.verdicts or {}).items():
        for verdict in verdicts:
            print_result(verdict_sentence(task, verdict))
    print_result(f"{report.title}: wrote {out / 'report.md'}, {out / 'report.json'} and {len(report.figures)} figures")
