"""report.md of `bench all` (paper Table 1 layout), written from a :class:`BenchReport`, and the
table cells the CLI prints too."""

from __future__ import annotations

from pathlib import Path

from lungforge.bench.protocol.controls import separation_sentence
from lungforge.bench.protocol.curves import curve_markdown
from lungforge.bench.protocol.detect import QUICK_LABEL
from lungforge.bench.protocol.inputs import REFERENCE
from lungforge.bench.protocol.verdict import verdict_sentence
from lungforge.bench.reporting.bench_report import TEST_METRIC, BenchReport, FidSection, TaskReport
from lungforge.bench.reporting.cells import TEST_NAMES, comparison_cells, pct
from lungforge.bench.scoring.fidelity import fidelity_markdown
from lungforge.bench.scoring.metrics import DETECT_EXTRA_METRICS, DETECT_METRICS, LOCALIZE_EXTRA_METRICS, LOCALIZE_METRICS
from lungforge.bench.scoring.stats import paper_p_note

TABLE_TESTS = ("rank_sum", "signed_rank", "corrected_t", "delong", "bootstrap_auroc")
"""The tests report.md's task tables show (every test is in report.json)."""
COMPARISON_HEADERS = ("Δ vs A (pts) [95 % CI]", *(f"p {TEST_NAMES[t]}" for t in TABLE_TESTS))
DETECT_HEADERS = ("Accuracy (%)", "Precision (%)", "Rec./Sen. (%)", "Specificity (%)", "F1 (%)")
LOCALIZE_HEADERS = ("AP50 (%)", "AP60 (%)", "AR50 (%)", "AR60 (%)", "AR70 (%)")
DETECT_EXTRA_HEADERS = ("AUROC (%)", "Recall < 6 mm (%)", "Recall 6–10 mm (%)", "Recall ≥ 10 mm (%)")
LOCALIZE_EXTRA_HEADERS = ("CPM (%)", *(f"Sens @ {r} FP/slice (%)" for r in ("1/8", "1/4", "1/2", "1", "2", "4", "8")))


def metric_table(section: TaskReport, metrics: tuple[str, ...], headers: tuple[str, ...]) -> list[str]:
    """Markdown rows: one per condition, metrics as mean ± std in %, then the comparison of the
    primary metric with A (mean per-fold difference with bootstrap CI, then per test the raw p
    with its floor and its Holm adjustment, or "primary"), then the excluded folds' notes."""
    lines = [
        "| condition | " + " | ".join((*headers, *COMPARISON_HEADERS)) + " |",
        "|---" * (len(metrics) + len(COMPARISON_HEADERS) + 1) + "|",
    ]
    summary = section.summary
    for condition in section.result.conditions:
        row = summary.conditions[condition]
        cells = [pct(row.metrics[m]) for m in metrics] + comparison_cells(row.comparison, TABLE_TESTS)
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return [*lines, *(["", *(f"- {note}" for note in summary.notes)] if summary.notes else [])]


def extra_table(section: TaskReport, metrics: tuple[str, ...], headers: tuple[str, ...]) -> list[str]:
    """Markdown rows of the metrics beside the paper's: mean ± std in % over the scored folds where the
    metric is defined (n), one row per condition."""
    lines = ["| condition | " + " | ".join(headers) + " |", "|---" * (len(metrics) + 1) + "|"]
    for condition in section.result.conditions:
        stats = section.summary.conditions[condition].metrics
        lines.append(f"| {condition} | " + " | ".join(f"{pct(stats[m])} (n={stats[m].n})" for m in metrics) + " |")
    return lines


def primary_line(section: TaskReport) -> str:
    """The task's primary comparison and the rule for every other p."""
    summary = section.summary
    primary = "none" if summary.primary is None else f"{summary.primary.condition} vs A at K = {summary.primary.point}"
    return (
        f"Primary comparison (fixed before the run, on {summary.metric}): {primary}; every other p is Holm-adjusted over "
        f"the run's comparisons (every condition, at every K of a curve), test by test. "
        f"Corrected t: n_test/n_train = 1/(folds − 1) = {summary.test_train_ratio:.3g}."
    )


def selection_lines(report: BenchReport) -> list[str]:
    """The conditions' slices: the selection rule, what it keeps, and the leakage drops per fold."""
    section = report.selection
    rule = next(iter(section.values()))["rule"] if section else "first-draw"
    lines = [
        "## Conditions, selection and training budget",
        "",
        f"Selection rule for every condition: `{rule}` "
        + (
            "(only slices whose image is the generator's first and only draw, `meta/attempts` = 1)."
            if rule == "first-draw"
            else "(every slice as written)."
        ),
        "A synthetic slice is dropped from a fold's training when its label map or any of its nodules' shape or size comes from that fold's test patients.",
        "",
        "| condition | generator | slices | used | nodule slices used | re-sampled | unverified | --retries | dropped per fold (leakage) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in section.items():
        lines.append(
            f"| {name} | {row['generator']} | {row['slices']} | {row['used']} | {row['nodule_slices_used']} | "
            f"{100 * row['resampled_share']:.1f} % | {100 * row['unverified_share']:.1f} % | {row['retries']} | "
            + ", ".join(str(d) for d in row["dropped_per_fold"])
            + " |"
        )
    uneven = sorted(n for n, r in section.items() if r["resampled_share"] > 0)
    if uneven and rule == "first-draw":
        lines += [
            "",
            f"Note: {', '.join(uneven)} re-drew slices (`--retries` > 0); the rule drops them, which keeps only slices whose first draw "
            "passed the visibility check there. For a strictly equal comparison make every store with `--retries 0`.",
        ]
    lines.append("")
    for task, task_report in (("detect", report.detect), ("localize", report.localize)):
        budget = task_report.budget
        verdict = "the same for every condition" if budget.equal else "NOT equal across conditions"
        lines.append(
            f"- {task}: optimiser steps per fold {budget.steps[REFERENCE]} ({verdict}; epochs × ⌈A's training set / batch⌉, one schedule over them); "
            + batch_sentence(task_report)
            + "."
        )
    return [*lines, ""]


def batch_sentence(section: TaskReport) -> str:
    """The batch size and positive share per batch every fold row recorded, for every condition."""
    rows = [r for rows in section.result.folds.values() for r in rows]
    sizes = sorted({r["batch_size"] for r in rows if r.get("batch_size") is not None})
    shares = sorted({round(r["positive_share"], 3) for r in rows if r.get("positive_share") is not None})
    return (
        f"batch {', '.join(map(str, sizes)) or 'n/a'} items with positive share {', '.join(f'{v:g}' for v in shares) or 'n/a'} "
        "(items repeated where a set is smaller; batch-norm statistics re-estimated on as many batches drawn the same way)"
    )


def controls_lines(report: BenchReport) -> list[str]:
    """The controls verdict: does the protocol separate paste from mislabeled (effect, paired p),
    and is each generator helpful (ahead of A, classic and blob)?"""
    if not report.controls:
        return []
    lines = ["## Controls: can this protocol see an effect?", ""]
    for task, task_report in (("detect", report.detect), ("localize", report.localize)):
        lines += [f"- {separation_sentence(task, report.controls[task], task_report.result.config.folds)}"]
    if report.verdicts:
        # rows of fold logs written before `built_from` was recorded were sized from paste
        sized_from = sorted(
            {row.get("built_from", "paste") for t in (report.detect, report.localize) for row in t.result.folds.get("classic", [])}
        )
        lines += [
            "",
            "## Verdict: helpful only when ahead of A, classic and blob",
            "",
            "hosts = the joined host slices labelled nodule-free; classic = A's own nodules classically augmented, as many per fold as "
            f"{' / '.join(sized_from) or 'paste'} adds; blob = constant-intensity ellipses of the requested sizes in the same hosts "
            "(docs/controls.md).",
            "",
        ]
        lines += [f"- {verdict_sentence(task, v)}" for task, vs in report.verdicts.items() for v in vs]
        if not any(v for vs in report.verdicts.values() for v in vs):
            lines.append("- no generator condition beside the controls")
    return [*lines, ""]


def curve_lines(report: BenchReport) -> list[str]:
    """The learning-curve section: per task the budget, the primary comparison and one row per point K and condition."""
    if not report.curves:
        return []
    lines = ["## Learning curves (real training nodules K per fold)", ""]
    for task, section in report.curves.items():
        lines += curve_markdown(section.curve, section.metric, task, section.table)
    return lines


def fid_lines(fid: FidSection) -> list[str]:
    """The FID section: one row per synthetic store (nodule, nodule-free, all), or why it is missing."""
    lines = ["## FID (lower is better)", ""]
    if fid.result is None:
        return [*lines, f"Unavailable: {fid.reason}", ""]
    result = fid.result
    if not result.comparable:
        lines += [f"Features: {result.config.features} (**not comparable** to published FID).", ""]
    lines += [f"Every store resized (antialiased) to {result.config.size}×{result.config.size} px before the feature network.", ""]
    lines += ["| synthetic | nodule | nodule-free | all |", "|---|---|---|---|"]
    for name, scores in result.scores.items():
        cells = [
            f"{s.fid:.2f} ({s.n_synthetic} vs {s.n_real})" if s.fid is not None else f"n/a ({s.n_synthetic} vs {s.n_real})"
            for s in (scores["nodule"], scores["nodule_free"], scores["all"])
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, "", *(f"- warning: {w}" for w in result.warnings), ""]


def task_lines(report: BenchReport) -> list[str]:
    """Table 1-I (detect) and Table 1-II (localize) with the metrics beside the paper's."""
    d, loc = report.detect, report.localize
    dc, lc = d.result.config, loc.result.config
    return [
        f"## I. Nodule detection ({dc.folds}-fold CV, {dc.patch}×{dc.patch} patches at "
        f"{dc.size}×{dc.size} px, SE-ResNet-{dc.depth}; Δ and p: {TEST_METRIC['detect']} vs A, paired by fold)",
        "",
        *metric_table(d, DETECT_METRICS, DETECT_HEADERS),
        "",
        primary_line(d),
        "",
        paper_p_note(),
        "",
        "Beside the paper's metrics: AUROC of the classifier's logits; recall of the positive test patches by their "
        "nodule's diameter (`nodules/diameter_mm`); n = folds where the metric is defined (a fold with no nodule of a size has none).",
        "",
        *extra_table(d, DETECT_EXTRA_METRICS, DETECT_EXTRA_HEADERS),
        "",
        f"## II. Nodule localization ({lc.folds}-fold CV, Faster R-CNN {lc.backbone}-FPN; "
        f"Δ and p: {TEST_METRIC['localize']} vs A, paired by fold)",
        "",
        *metric_table(loc, LOCALIZE_METRICS, LOCALIZE_HEADERS),
        "",
        primary_line(loc),
        "",
        "Beside the paper's metrics: FROC over ALL test slices of a fold, nodule-free ones included (AP/AR use its nodule "
        "slices only): sensitivity at 1/8 … 8 false positives per slice and their mean, LUNA16's CPM read per slice. A "
        "detection hits a nodule when its box centre lies inside the nodule's box; each nodule counts once.",
        "",
        *extra_table(loc, LOCALIZE_EXTRA_METRICS, LOCALIZE_EXTRA_HEADERS),
        "",
    ]


def markdown(report: BenchReport) -> str:
    """report.md: FID table, label fidelity, selection and budget, Table 1-I (detect), Table 1-II
    (localize), the controls verdict, the learning curves, figure links."""
    quick_note = ["", f"**{QUICK_LABEL}**: 2 folds, few epochs, small models.", ""] if report.quick else [""]
    warning = [f"**{report.warning}**", ""] if report.warning else []
    lines = [*warning, f"# {report.title}", *quick_note, f"Real store: `{report.real}`; device {report.device}.", ""]
    lines += ["Conditions: A = real only; " + ", ".join(f"{n} = A + `{p}`" for n, p in report.synthetic.items()) + ".", ""]
    lines += fid_lines(report.fid)
    if report.fidelity is not None:
        lines += ["## Label fidelity (mIoU, nodule hit rate; higher is better)", "", *fidelity_markdown(report.fidelity), ""]
    lines += [
        *selection_lines(report),
        *task_lines(report),
        *controls_lines(report),
        *curve_lines(report),
        "## Figures",
        "",
        *[f"![{Path(f).stem}]({f})" for f in report.figures],
        "",
    ]
    return "\n".join(lines)
