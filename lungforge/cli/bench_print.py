"""What the `bench` commands print when not asked for JSON: tables and verdicts on stdout, warnings on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.markup import escape
from rich.table import Table

from lungforge.cli.console import err_console, out_console, print_result

if TYPE_CHECKING:  # the bench modules import torch: not for `--help`
    from lungforge.bench.protocol.leakage import GeneratorExposure
    from lungforge.bench.protocol.results import CurveResult
    from lungforge.bench.reporting.bench_report import BenchReport
    from lungforge.bench.scoring.fid import FidResult
    from lungforge.bench.scoring.fidelity import FidelityResult
    from lungforge.bench.scoring.summary import TaskSummary


def _yellow(text: str, prefix: str = "") -> None:
    """`text` on stderr, yellow, or after a yellow `prefix`."""
    line = f"[yellow]{prefix}[/yellow] {escape(text)}" if prefix else f"[yellow]{escape(text)}[/yellow]"
    err_console.print(line, highlight=False, soft_wrap=True)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def print_leakage(leakage: dict[str, GeneratorExposure]) -> None:
    """The leakage warning of a task's generator exposures, if any."""
    from lungforge.bench.protocol.leakage import leakage_warning

    warning = leakage_warning(leakage)
    if warning:
        _yellow(warning)


TERMINAL_TESTS = ("corrected_t", "delong")
"""The tests the terminal tables show (raw/Holm); every test is in `--json` and report.md."""


def _comparison_table(title: str, metric: str, rows: list[tuple[str, ...]], with_point: bool) -> Table:
    """A compact table (fits 80 columns): [K], condition, metric mean±std, Δ [CI], p of :data:`TERMINAL_TESTS`."""
    heads = [*(["K"] if with_point else []), "condition", f"{metric} %", "Δ pts [95% CI]", "p t/Holm", "p DeLong/Holm"]
    table = Table(*heads, title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for row in rows:
        table.add_row(*row)
    return table


def _cells(summary: TaskSummary, condition: str) -> tuple[str, ...]:
    from lungforge.bench.reporting.cells import delta, p_cell, pct

    row = summary.conditions[condition]
    return (
        condition,
        pct(row.metrics[summary.metric], compact=True),
        delta(row.comparison, compact=True),
        *(p_cell(row.comparison, t, compact=True) for t in TERMINAL_TESTS),
    )


def _legend(summary: TaskSummary, families: str) -> None:
    primary = "none" if summary.primary is None else str(summary.primary)
    out_console.print(
        f"p: raw/Holm-adjusted over {families}; * the primary comparison ({primary}, raw p); t: corrected resampled t-test "
        f"(n_test/n_train {summary.test_train_ratio:.3g}); DeLong on pooled out-of-fold predictions.",
        highlight=False,
        soft_wrap=False,
        markup=False,
    )
    for note in summary.notes:
        _yellow(note, "note:")


def print_curve(curve: CurveResult, table: dict[str, TaskSummary], task: str) -> None:
    """A learning curve's table: one row per point K and condition, in 80 columns."""
    first = next(iter(table.values()))
    rows = [(point, *_cells(summary, c)) for point, summary in table.items() for c in summary.conditions]
    out_console.print(
        _comparison_table(f"{task}: {first.metric} against K (budget {curve.optimizer_steps} steps)", first.metric, rows, True)
    )
    _legend(first, "every K and condition")
    for point, summary in table.items():
        for note in summary.notes:
            _yellow(f"K = {point}: {note}", "note:")


def print_summary(title: str, summary: TaskSummary, metrics: tuple[str, ...]) -> None:
    """One row per condition: the primary metric with its comparison against A, then the other
    `metrics` as means in %, each table within 80 columns."""
    from lungforge.bench.reporting.cells import pct

    out_console.print(_comparison_table(title, summary.metric, [_cells(summary, c) for c in summary.conditions], False))
    _legend(summary, "every condition")
    others = [m for m in metrics if m != summary.metric]
    table = Table("condition", *others, title=f"{title}: means over scored folds (%)", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for condition, row in summary.conditions.items():
        table.add_row(condition, *(pct(row.metrics[m], compact=True) for m in others))
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
    table = Table(
        "condition",
        "slices",
        "unscored",
        "mIoU %",
        "lungs IoU %",
        "nodule IoU %",
        "nodule hit %",
        "FD nodule",
        "FD nodule-free",
        title=f"label fidelity at {size}×{size} px" + (" (quick)" if quick else ""),
        caption=f"FD: {FEATURE_NOTE}",
    )
    for name, scored in result.scores.items():
        s = scored.summary
        iou, hits, fd = s.iou, s.nodule_hits, s.feature_distance
        lungs = [v for v in (iou["left_lung"], iou["right_lung"]) if v is not None]
        table.add_row(
            f"{name} (ceiling)" if name == REAL else name,
            str(s.slices),
            str(scored.unscored),
            _pct(s.miou),
            _pct(sum(lungs) / len(lungs) if lungs else None),
            _pct(iou["nodule"]),
            f"{_pct(hits.rate)} of {hits.nodules}",
            *(["–", "–"] if fd is None else [f"{fd[k].fd:.3f}" if fd[k].fd is not None else "n/a" for k in ("nodule", "nodule_free")]),
        )
    out_console.print(table)
    for seg in result.segmenters:
        err_console.print(
            f"segmenter {seg.half + 1}/2 {'reused from' if seg.cached else 'trained and cached in'} {seg.path}",
            highlight=False,
            soft_wrap=True,
        )


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
