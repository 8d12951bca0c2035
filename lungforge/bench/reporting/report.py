"""`bench all`: FID, detect and localize on the same stores, written as report.json, report.md
(paper Table 1 layout) and PNG figures."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from lungforge.bench.protocol.controls import make_controls, separation, separation_sentence
from lungforge.bench.protocol.detect import QUICK_LABEL, DetectConfig, run_detect
from lungforge.bench.protocol.curves import curve_figure, curve_table, learning_curve
from lungforge.bench.scoring.fid import FidConfig, InceptionUnavailable, compute_fid, make_extractor
from lungforge.bench.scoring.fidelity import compute_fidelity, fidelity_markdown
from lungforge.bench.reporting.figures import fold_metrics, localization_examples, sample_grid
from lungforge.bench.protocol.folds import leak_groups, real_groups
from lungforge.bench.reporting.gallery import nodule_gallery
from lungforge.bench.protocol.inputs import REFERENCE, SyntheticSpec, open_real, open_synthetic
from lungforge.bench.protocol.leakage import leakage_warning
from lungforge.bench.protocol.localize import LocalizeConfig, run_localize
from lungforge.bench.scoring.segmenter import SegmenterConfig
from lungforge.bench.scoring.metrics import DETECT_EXTRA_METRICS, DETECT_METRICS, LOCALIZE_EXTRA_METRICS, LOCALIZE_METRICS
from lungforge.bench.protocol.selection import selected, selection_summary
from lungforge.choices import Selection
from lungforge.bench.scoring.stats import paper_p_note, summarize
from lungforge.data.store import Store
from lungforge.errors import InputError

TITLE = "lungforge downstream benchmark"


def json_safe(obj: Any) -> Any:
    """`obj` with NaN/inf floats replaced by None, so the JSON is standard (no bare NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def report_title(quick: bool) -> str:
    return f"{TITLE} — {QUICK_LABEL}" if quick else TITLE


def run_all(
    real_path: Path,
    specs: list[SyntheticSpec],
    out: Path,
    detect: DetectConfig,
    localize: LocalizeConfig,
    fid: FidConfig,
    device: torch.device,
    inception_weights: Path | None = None,
    allow_download: bool = True,
    progress: Any = None,
    controls: bool = False,
    fidelity: SegmenterConfig | None = None,
    curve: list[int | None] | None = None,
) -> dict[str, Any]:
    """Run fid (if weights are available), label fidelity (unless `fidelity` is None), detect and
    localize; write the report into `out`.

    With `controls`, the `mislabeled` and `paste` control stores are made under `out/controls`
    (:mod:`lungforge.bench.protocol.controls`) and benched first, and the report says whether the
    protocol separates them. With `curve` (learning-curve points K, None: all) detect and localize
    run at every point with one budget (:mod:`lungforge.bench.protocol.curves`), the tables at K = all (or
    the largest K), and a curve figure per task. Finished folds under `out/detect` and `out/localize` are reused by
    a rerun with the same arguments. Returns the report dict (also written as `out/report.json`).
    """
    out.mkdir(parents=True, exist_ok=True)
    real = open_real(real_path)
    synthetic = {s.name: open_synthetic(s.path, real) for s in specs}
    if controls:
        control_specs = make_controls(real_path, real, synthetic, out, detect.seed)
        specs = [*control_specs, *specs]
        synthetic = {**{s.name: open_synthetic(s.path, real) for s in control_specs}, **synthetic}
    if not synthetic:
        raise InputError("bench all needs at least one --synthetic NAME=STORE or --controls")
    quick = detect.quick or localize.quick
    try:
        extractor, dims = make_extractor(fid, inception_weights, device, allow_download)
        fid_section: dict[str, Any] = {"available": True, **compute_fid(real, synthetic, fid, extractor, dims, device, progress)}
    except InceptionUnavailable as exc:
        fid_section = {"available": False, "reason": str(exc)}
    fidelity_section = compute_fidelity(real, synthetic, fidelity, device, progress) if fidelity is not None else None
    curves: dict[str, Any] = {}
    if curve is None:
        detect_result = run_detect(real, synthetic, detect, device, out, progress)
        localize_result = run_localize(real, synthetic, localize, device, out, progress)
    else:
        curves["detect"] = learning_curve(run_detect, real, synthetic, detect, curve, device, out, progress)
        curves["localize"] = learning_curve(run_localize, real, synthetic, localize, curve, device, out, progress)
        detect_result = curves["detect"]["results"][curves["detect"]["points"][-1]]
        localize_result = curves["localize"]["results"][curves["localize"]["points"][-1]]
    title = report_title(quick)
    figures_dir = out / "figures"
    figures_dir.mkdir(exist_ok=True)
    figures = [
        sample_grid(real, synthetic, figures_dir / "samples.png", title),
        fold_metrics(detect_result, DETECT_METRICS, figures_dir / "detect_folds.png", f"detect — {title}"),
        fold_metrics(localize_result, LOCALIZE_METRICS, figures_dir / "localize_folds.png", f"localize — {title}"),
        localization_examples(real, localize_result, localize.size, figures_dir / "localize_examples.png", f"localize — {title}"),
        nodule_gallery(real, synthetic, figures_dir / "nodule_gallery.png", f"nodules in the detector's {detect.patch}-px field at {detect.size} px — {title}", detect.patch / detect.size),
        *[
            curve_figure(c, CURVE_METRICS[task], figures_dir / f"{task}_curve.png", f"{task}: {CURVE_METRICS[task]} against K — {title}")
            for task, c in curves.items()
        ],
    ]
    report = {
        "warning": leakage_warning(detect_result["leakage"]),
        "title": title,
        "quick": quick,
        "device": str(device),
        "real": str(real_path),
        "synthetic": {s.name: str(s.path) for s in specs},
        "fid": {**fid_section, "config": asdict(fid)},
        "fidelity": fidelity_section,
        "selection": selection_report(real, synthetic, detect.select, detect.folds, detect.real_split),
        "detect": {**detect_result, "summary": summarize(detect_result, DETECT_METRICS + DETECT_EXTRA_METRICS, "accuracy"),
                   "budget": budget(detect_result)},
        "localize": {**localize_result, "summary": summarize(localize_result, LOCALIZE_METRICS + LOCALIZE_EXTRA_METRICS, "AP50"),
                     "budget": budget(localize_result)},
        "controls": None,
        "curves": {task: {**{k: v for k, v in c.items() if k != "results"}, "table": curve_table(c, CURVE_METRICS[task])} for task, c in curves.items()} or None,
        "figures": [str(p.relative_to(out)) for p in figures],
    }
    if controls:
        report["controls"] = {"detect": separation(detect_result, "accuracy"), "localize": separation(localize_result, "AP50")}
    report = json_safe(report)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False, default=str))
    (out / "report.md").write_text(markdown(report))
    return report


def selection_report(real: Store, synthetic: dict[str, Store], rule: Selection, folds: int, real_split: str) -> dict[str, Any]:
    """Per synthetic condition: :func:`selection_summary` plus the selected slices dropped from
    each fold's training because their label map or a nodule source is a test-fold patient."""
    groups = real_groups(real, folds, real_split)  # type: ignore[arg-type]
    section = {}
    for name, store in synthetic.items():
        leaks = leak_groups(store, real, groups) & selected(store, rule)[:, None]
        section[name] = {**selection_summary(store, rule), "dropped_per_fold": leaks.sum(axis=0).tolist()}
    return section


def budget(result: dict[str, Any]) -> dict[str, Any]:
    """Optimiser steps per fold of every condition, and whether they are all equal to A's."""
    steps = {c: [f.get("optimizer_steps") for f in result["folds"][c]] for c in result["conditions"]}
    return {"steps": steps, "equal": all(v == steps[REFERENCE] for v in steps.values())}


def _pct(stat: dict[str, float | None]) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"


def _p(value: float | None) -> str:
    """A p-value; None for condition A itself or when undefined (NaN became None)."""
    return "–" if value is None else f"{value:.3g}"


def _interval(low: float | None, high: float | None) -> str:
    return "[n/a]" if low is None or high is None else f"[{100 * low:+.2f}, {100 * high:+.2f}]"


def comparison_cells(comparison: dict[str, Any] | None) -> list[str]:
    """Cells Δ vs reference in points [bootstrap 95 % CI], rank-sum p (min), signed-rank p (min),
    corrected resampled t-test p [its 95 % CI in points]."""
    if comparison is None:
        return ["–", "–", "–", "–"]
    diff = "n/a" if comparison["diff_mean"] is None else f"{100 * comparison['diff_mean']:+.2f} {_interval(*comparison['diff_ci95'])}"
    return [
        diff,
        f"{_p(comparison['p_rank_sum'])} (≥ {_p(comparison['p_rank_sum_min'])})",
        f"{_p(comparison['p_signed_rank'])} (≥ {_p(comparison['p_signed_rank_min'])})",
        f"{_p(comparison['p_corrected_t'])} {_interval(*comparison['corrected_t_ci95'])}",
    ]


COMPARISON_HEADERS = ("Δ vs A (pts) [95 % CI]", "p rank-sum (min)", "p signed-rank (min)", "p corrected t [95 % CI]")


def metric_table(section: dict[str, Any], metrics: tuple[str, ...], headers: tuple[str, ...]) -> list[str]:
    """Markdown rows: one per condition, metrics as mean ± std in %, then the comparison of the
    test metric with A (mean per-fold difference with bootstrap CI, rank-sum and signed-rank p,
    each with the smallest p reachable with these folds)."""
    lines = ["| condition | " + " | ".join((*headers, *COMPARISON_HEADERS)) + " |", "|---" * (len(metrics) + len(COMPARISON_HEADERS) + 1) + "|"]
    for condition in section["conditions"]:
        row = section["summary"][condition]
        cells = [_pct(row["metrics"][m]) for m in metrics] + comparison_cells(row.get("comparison"))
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return lines


def extra_table(section: dict[str, Any], metrics: tuple[str, ...], headers: tuple[str, ...]) -> list[str]:
    """Markdown rows of the metrics beside the paper's: mean ± std in % over the folds where the
    metric is defined (n), one row per condition."""
    lines = ["| condition | " + " | ".join(headers) + " |", "|---" * (len(metrics) + 1) + "|"]
    for condition in section["conditions"]:
        stats = section["summary"][condition]["metrics"]
        lines.append(f"| {condition} | " + " | ".join(f"{_pct(stats[m])} (n={stats[m]['n']})" for m in metrics) + " |")
    return lines


DETECT_EXTRA_HEADERS = ("AUROC (%)", "Recall < 6 mm (%)", "Recall 6–10 mm (%)", "Recall ≥ 10 mm (%)")
LOCALIZE_EXTRA_HEADERS = ("CPM (%)", *(f"Sens @ {r} FP/slice (%)" for r in ("1/8", "1/4", "1/2", "1", "2", "4", "8")))


def selection_lines(report: dict[str, Any]) -> list[str]:
    """The conditions' slices: the selection rule, what it keeps, and the leakage drops per fold."""
    section = report["selection"]
    rule = next(iter(section.values()))["rule"] if section else "first-draw"
    lines = [
        "## Conditions, selection and training budget",
        "",
        f"Selection rule for every condition: `{rule}` "
        + ("(only slices whose image is the generator's first and only draw, `meta/attempts` = 1)." if rule == "first-draw" else "(every slice as written)."),
        "A synthetic slice is dropped from a fold's training when its label map or any of its nodules' shape or size comes from that fold's test patients.",
        "",
        "| condition | generator | slices | used | nodule slices used | re-sampled | unverified | --retries | dropped per fold (leakage) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in section.items():
        lines.append(
            f"| {name} | {row['generator']} | {row['slices']} | {row['used']} | {row['nodule_slices_used']} | "
            f"{100 * row['resampled_share']:.1f} % | {100 * row['unverified_share']:.1f} % | {row['retries']} | "
            + ", ".join(str(d) for d in row["dropped_per_fold"]) + " |"
        )
    uneven = sorted(n for n, r in section.items() if r["resampled_share"] > 0)
    if uneven and rule == "first-draw":
        lines += ["", f"Note: {', '.join(uneven)} re-drew slices (`--retries` > 0); the rule drops them, which keeps only slices whose first draw "
                  "passed the visibility check there. For a strictly equal comparison make every store with `--retries 0`."]
    lines.append("")
    for task in ("detect", "localize"):
        b = report[task]["budget"]
        a_steps = b["steps"][REFERENCE]
        verdict = "the same for every condition" if b["equal"] else "NOT equal across conditions"
        lines.append(f"- {task}: optimiser steps per fold {a_steps} ({verdict}; epochs × ⌈A's training set / batch⌉, one schedule over them).")
    return [*lines, ""]


def controls_lines(report: dict[str, Any]) -> list[str]:
    """The controls verdict: does the protocol separate paste from mislabeled (effect, paired p)?"""
    if not report.get("controls"):
        return []
    lines = ["## Controls: can this protocol see an effect?", ""]
    for task in ("detect", "localize"):
        lines += [f"- {separation_sentence(task, report['controls'][task], report[task]['config']['folds'])}"]
    return [*lines, ""]


CURVE_METRICS = {"detect": "accuracy", "localize": "AP50"}


def curve_lines(report: dict[str, Any]) -> list[str]:
    """The learning-curve section: per task the budget and one row per point K and condition."""
    if not report.get("curves"):
        return []
    lines = ["## Learning curves (real training nodule slices K per fold)", ""]
    for task, curve in report["curves"].items():
        lines += [
            f"### {task}: {CURVE_METRICS[task]} against K", "",
            f"Optimiser budget for every K, fold and condition: {curve['optimizer_steps']} steps.",
        ]
        if curve["generator_nodules"]:
            lines.append("Real nodule slices the generators' weights saw: "
                         + ", ".join(f"{n}: {'unknown' if v is None else v}" for n, v in curve["generator_nodules"].items()) + ".")
        lines += ["", "| K | real nodule slices / fold | condition | mean (%) | Δ vs A (pts) [95 % CI] | p rank-sum (min) | p signed-rank (min) |",
                  "|---|---|---|---|---|---|---|"]
        for point, rows in curve["table"].items():
            for condition, row in rows.items():
                lines.append(f"| {point} | {row['real_nodule_slices']:.1f} | {condition} | {_pct(row)} | " + " | ".join(comparison_cells(row["vs_A"])) + " |")
        lines.append("")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """report.md: FID table, selection and budget, Table 1-I (detect), Table 1-II (localize),
    the controls verdict, figure links."""
    quick_note = ["", f"**{QUICK_LABEL}**: 2 folds, few epochs, small models.", ""] if report["quick"] else [""]
    warning = [f"**{report['warning']}**", ""] if report.get("warning") else []
    lines = [*warning, f"# {report['title']}", *quick_note, f"Real store: `{report['real']}`; device {report['device']}.", ""]
    lines += ["Conditions: A = real only; " + ", ".join(f"{n} = A + `{p}`" for n, p in report["synthetic"].items()) + ".", ""]
    fid = report["fid"]
    lines += ["## FID (lower is better)", ""]
    if not fid["available"]:
        lines += [f"Unavailable: {fid['reason']}", ""]
    else:
        if not fid["comparable"]:
            lines += [f"Features: {fid['features']} (**not comparable** to published FID).", ""]
        lines += [f"Every store resized (antialiased) to {fid['size']}×{fid['size']} px before the feature network.", ""]
        lines += ["| synthetic | nodule | nodule-free | all |", "|---|---|---|---|"]
        for name, scores in fid["scores"].items():
            cells = [
                f"{s['fid']:.2f} ({s['n_synthetic']} vs {s['n_real']})" if s["fid"] is not None else f"n/a ({s['n_synthetic']} vs {s['n_real']})"
                for s in (scores["nodule"], scores["nodule_free"], scores["all"])
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += [""] + [f"- warning: {w}" for w in fid["warnings"]] + [""]
    if report.get("fidelity") is not None:
        lines += ["## Label fidelity (mIoU, nodule hit rate; higher is better)", "", *fidelity_markdown(report["fidelity"]), ""]
    d, loc = report["detect"], report["localize"]
    lines += selection_lines(report)
    lines += [
        f"## I. Nodule detection ({d['config']['folds']}-fold CV, {d['config']['patch']}×{d['config']['patch']} patches at "
        f"{d['config']['size']}×{d['config']['size']} px, SE-ResNet-{d['config']['depth']}; Δ and p: accuracy vs A, paired by fold)",
        "",
        *metric_table(d, DETECT_METRICS, ("Accuracy (%)", "Precision (%)", "Rec./Sen. (%)", "Specificity (%)", "F1 (%)")),
        "",
        paper_p_note(),
        "",
        "Beside the paper's metrics: AUROC of the classifier's logits; recall of the positive test patches by their "
        "nodule's diameter (`nodules/diameter_mm`); n = folds where the metric is defined (a fold with no nodule of a size has none).",
        "",
        *extra_table(d, DETECT_EXTRA_METRICS, DETECT_EXTRA_HEADERS),
        "",
        f"## II. Nodule localization ({loc['config']['folds']}-fold CV, Faster R-CNN {loc['config']['backbone']}-FPN; "
        "Δ and p: AP50 vs A, paired by fold)",
        "",
        *metric_table(loc, LOCALIZE_METRICS, ("AP50 (%)", "AP60 (%)", "AR50 (%)", "AR60 (%)", "AR70 (%)")),
        "",
        "Beside the paper's metrics: FROC over ALL test slices of a fold, nodule-free ones included (AP/AR use its nodule "
        "slices only): sensitivity at 1/8 … 8 false positives per slice and their mean, LUNA16's CPM read per slice. A "
        "detection hits a nodule when its box centre lies inside the nodule's box; each nodule counts once.",
        "",
        *extra_table(loc, LOCALIZE_EXTRA_METRICS, LOCALIZE_EXTRA_HEADERS),
        "",
        *controls_lines(report),
        *curve_lines(report),
        "## Figures",
        "",
        *[f"![{Path(f).stem}]({f})" for f in report["figures"]],
        "",
    ]
    return "\n".join(lines)
