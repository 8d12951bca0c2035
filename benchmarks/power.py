"""Power of the detection protocol on phantom data: does it see paste beat A, and mislabeled not?
And does paste beat the realism controls, classic and blob, as a helpful generator must?

    python benchmarks/power.py --json                          # the README configuration
    python benchmarks/power.py --generators --out power-run    # also the shipped demo SDM and SPADE
    python benchmarks/power.py --real-nodules 8,32,all --generators   # the learning curve (docs/results.md)
    python benchmarks/power.py --real-nodules 8,all --generator-from-k  # + an inpainting SDM per fold from its K nodules

Phantom → prepare → `augment --weights paste`, `--weights mislabeled` and `--weights blob` (the same
layout request) → `bench detect` with conditions A, mislabeled, paste, blob (and demo-spade-tiny /
demo-sdm-tiny with --generators) and the fold controls hosts and classic
(:mod:`lungforge.bench.protocol.fold_controls`), K folds, the same optimiser steps, batch size and
positive share for all (`--no-controls`: without blob, hosts and classic, half the conditions).
Prints per condition AUROC mean ± std over folds, the mean per-fold difference against A with its
bootstrap 95 % interval, the corrected t-test p (n_test/n_train = 1/(folds − 1), as everywhere) and
DeLong's p on pooled predictions, each raw and Holm-adjusted (the primary comparison, the first
synthetic condition at the smallest K, unadjusted), the paste − mislabeled comparison, the verdict
of paste and of each generator (:mod:`lungforge.bench.protocol.verdict`: helpful only when ahead of
A, classic and blob, paired signed-rank p < 0.05 each), and the wall and CPU seconds of each stage.
The protocol has power here when paste beats A with p < 0.05 and mislabeled does not. The controls
join the Holm family, raising the others' adjusted p.

With `--real-nodules K1,…,all` the bench runs a learning curve (:mod:`lungforge.bench.protocol.curves`):
each fold's real training data cut to K whole nodules, one optimiser budget for every K and
condition; the table then has one block per K. Paste copies one real nodule whole (shape, pixels
and size), and a slice joins a fold at K as soon as that nodule is among the K kept (or its
patient is outside the benchmark). Every block lists the synthetic nodule slices each fold
joined (`synthetic_positives`); a condition with none in a fold is benched, not refused.

With `--generator-from-k` (information parity) each fold also gets its own generator: the
inpainting SDM (tiny preset, `--from-k-steps` steps) trained on a store of only that fold's
kept real slices at the smallest K (its K nodules and their share of nodule-free slices), its
nodules drawn as spheres of 4–10 mm (no real nodule copied), benched in that fold alone against
A's rows of the same point. The report gives the real nodules each fold's generator saw.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.bench.protocol.controls import separation
from lungforge.bench.protocol.crossval import kept_nodules, kept_real_slices, parse_real_nodules, point_label
from lungforge.bench.protocol.curves import curve_figure, curve_table, learning_curve
from lungforge.bench.protocol.detect import DetectConfig, detect_runner, run_detect
from lungforge.bench.protocol.folds import real_groups
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.results import TaskResult, json_safe
from lungforge.bench.protocol.verdict import BARS, Verdict, verdict_of, verdict_sentence, verdicts
from lungforge.bench.scoring.stats import compare, mean_std, nb_ratio
from lungforge.bench.scoring.summary import TaskSummary, summarize
from lungforge.models.checkpoint import MODEL_FILE
from lungforge.phantom.scans import make_phantom
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import SHARD, Store, count_store, create_store
from lungforge.training.loop_sdm import train_sdm
from lungforge.training.options import TrainOptions

METRIC = "auroc"
"""The primary metric of the detection benchmark."""
GENERATORS = {"SPADE": "demo-spade-tiny", "SDM": "demo-sdm-tiny", "SDM-inpaint": "demo-sdm-inpaint-tiny"}
STORES = ("mislabeled", "paste")
"""The control stores of every run; `--controls` adds `blob` (and the fold controls hosts and classic)."""


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU seconds per named stage."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = fn(*args, **kwargs)
        self.stages[name] = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(cpu_seconds() - cpu, 1)}
        return result


class FoldLog:
    """A progress sink for the bench's k-fold driver: one stderr line per finished (fold, condition),
    counting optimiser steps as the driver's bar does; the driver's notes go to `console` (stderr)."""

    console = Console(stderr=True)

    def add_task(self, name: str, total: int, completed: int = 0, status: str = "") -> str:
        self.name, self.total, self.done, self.status = name, total, completed, status
        return name

    def update(self, task: str, completed: int | None = None, status: str | None = None) -> None:
        self.done = self.done if completed is None else completed
        self.status = self.status if status is None else status

    def advance(self, task: str, advance: int = 1) -> None:
        self.done += advance
        print(f"{self.name} {self.done}/{self.total} steps, {self.status} ({cpu_seconds():.0f} s CPU)", file=sys.stderr, flush=True)


def recipe_verdicts(result: TaskResult, metric: str = METRIC) -> list[Verdict]:
    """Paste's verdict (a control in `bench`, the recipe under test here) and every generator's
    (:func:`verdicts`): each against A, classic and blob."""
    return [verdict_of(result, "paste", metric), *verdicts(result, metric)]


def table(summary: TaskSummary, result: TaskResult) -> dict[str, Any]:
    """Per condition: mean ± std of the summary's metric and its comparison against A (every p raw and
    Holm-adjusted, the corrected t with n_test/n_train = 1/(folds − 1)); paste vs mislabeled; excluded folds; per fold the values and the synthetic nodule slices that joined;
    with the realism controls, each recipe's verdict (None without)."""
    metric = summary.metric
    rows = {
        c: {**s.metrics[metric].to_dict(), "vs_A": None if s.comparison is None else s.comparison.to_dict()}
        for c, s in summary.conditions.items()
    }
    controls = separation(result, metric).to_dict() if {"paste", "mislabeled"} <= set(result.conditions) else None
    return json_safe(
        {
            "metric": metric,
            "primary": str(summary.primary),
            "rows": rows,
            "paste_vs_mislabeled": controls,
            "excluded": summary.notes,
            "per_fold": {c: result.values(c, metric) for c in result.conditions},
            "synthetic_positives": {c: result.values(c, "synthetic_positives") for c in result.conditions},
            "verdicts": {v.generator: v.to_dict() for v in recipe_verdicts(result)} if set(BARS) <= set(result.conditions) else None,
        }
    )


FROM_K = "SDM-inpaint-from-K"


def subset_store(real: Store, kept: np.ndarray, out: Path) -> Path:
    """A real store of only the `kept` (N,) bool slices of `real`, all in its train split (what a
    generator trained for one fold may see), with their nodule rows."""
    rows = np.flatnonzero(kept)
    h, w = real.shape_hw
    store = create_store(out, kind="real", height=h, width=w, capacity=rows.size, params={"subset_of": real.fingerprint()})
    meta = {name: real.meta(name)[rows] for name in ("series", "z", "spacing", "fold", "has_nodule")}
    meta["split"] = np.zeros(rows.size, np.uint8)
    for start in range(0, rows.size, SHARD):
        part = rows[start : start + SHARD]
        image, label = np.asarray(real.image.oindex[part, :, :]), np.asarray(real.label.oindex[part, :, :])
        store.write_block(start, image, label, {k: v[start : start + SHARD] for k, v in meta.items()})
    table = real.nodules()
    keep = kept[table["slice"]]
    nodules = {k: v[keep] for k, v in table.items()}
    nodules["slice"] = np.searchsorted(rows, nodules["slice"])
    store.finalize(rows.size, real.series_uids, nodules)
    return out


def generator_from_k(
    args: argparse.Namespace, root: Path, real_path: Path, config: DetectConfig, k: int | None, clock: Clock
) -> dict[str, Any]:
    """Per fold at point `k`: train the tiny inpainting SDM on that fold's kept slices alone,
    augment from it and bench it in that fold (:func:`detect_runner`). Returns the fold rows and
    the real nodules each fold's generator saw."""
    real = open_real(real_path)
    groups = real_groups(real, config.folds, config.real_split)
    rows, seen = [], []
    for fold in range(config.folds):
        kept = kept_real_slices(real, groups, fold, k, config.seed)
        seen.append(int(kept_nodules(real, kept).size))
        data, weights, out = root / f"from-k-{fold}-real.zarr", root / f"from-k-{fold}", root / f"from-k-{fold}.zarr"
        subset_store(real, kept, data)
        train = TrainOptions(
            data=data,
            out=weights,
            preset="tiny",
            steps=args.from_k_steps,
            batch_size=4,
            device="cpu",
            seed=args.seed,
            window=32,
            checkpoint_every=args.from_k_steps,
        )
        clock(f"train {FROM_K} fold {fold}", train_sdm, train)
        request = dict(
            nodules=args.generator_nodules or args.nodules,
            nodule_free=0,
            shape="sphere",
            diameter_mm=(4.0, 10.0),
            seed=args.seed,
            retries=0,
            device="cpu",
            sampler="ddpm",
            steps=10,
            batch_size=16,
        )
        clock(
            f"augment {FROM_K} fold {fold}", augment, AugmentOptions(data=real_path, weights=str(weights / MODEL_FILE), out=out, **request)
        )
        store = {FROM_K: open_synthetic(out, real)}
        runner = detect_runner(real, store, config, torch.device("cpu"), groups)
        rows.append(clock(f"bench {FROM_K} fold {fold}", runner, fold, FROM_K))
    return {"rows": rows, "generator_nodules": seen}


def from_k_table(curve_result: TaskResult, from_k: dict[str, Any], metric: str = METRIC) -> dict[str, Any]:
    """The per-fold generators against A of the same point: mean ± std, comparison, joined positives."""
    values = [row[metric] for row in from_k["rows"]]
    reference = curve_result.values("A", metric)
    return {
        **mean_std(values).to_dict(),
        "vs_A": compare(values, reference, nb_ratio(len(values)), metric=metric).to_dict(),
        "per_fold": values,
        "generator_nodules": from_k["generator_nodules"],
        "synthetic_positives": [row["synthetic_positives"] for row in from_k["rows"]],
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    clock = Clock()
    luna, real_path = root / "luna16", root / "real.zarr"
    clock("phantom", make_phantom, luna, scans=args.scans, size=args.size, seed=args.seed)
    prep = PrepareOptions(test_patients=args.test_patients, nodule_slices=args.nodule_slices, seed=args.seed, workers=1)
    clock("prepare", prepare, luna, real_path, prep)
    request = dict(nodules=args.nodules, nodule_free=args.nodule_free, shape="real", seed=args.seed, retries=0, device="cpu")
    stores = {}
    for name in STORES + (("blob",) if args.controls else ()):
        out = root / f"{name}.zarr"
        clock(f"augment {name}", augment, AugmentOptions(data=real_path, weights=name, out=out, size=args.generator_size, **request))
        stores[name] = out
    if args.generators:
        for name, weights in GENERATORS.items():
            out = root / f"{name.lower()}.zarr"
            generator_request = {**request, "nodules": args.generator_nodules or args.nodules}
            sampling = {} if name == "SPADE" else {"sampler": "ddpm", "steps": 10}  # SPADE draws without a sampler
            options = AugmentOptions(data=real_path, weights=weights, out=out, batch_size=16, **generator_request, **sampling)
            clock(f"augment {name}", augment, options)
            stores[name] = out
    real = open_real(real_path)
    synthetic = {name: open_synthetic(path, real) for name, path in stores.items()}
    config = DetectConfig(
        size=args.bench_size,
        folds=args.folds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        depth=args.depth,
        width=args.width,
        patch=args.patch,
        seed=args.seed,
        repeats=args.repeats,
        allow_empty_synthetic=True,  # the table lists the joined positives
        fold_controls=args.controls,
    )
    folds_dir = root / "bench" if args.out is not None else None  # per-fold results, kept with --out
    summary = count_store(real)
    if args.real_nodules:
        points = parse_real_nodules(args.real_nodules)
        curve = clock(
            "bench detect curve", learning_curve, run_detect, real, synthetic, config, points, torch.device("cpu"), folds_dir, FoldLog()
        )
        if args.out is not None:
            curve_figure(curve, METRIC, root / "power_curve.png", f"phantom: detect {METRIC} against K (mean ± std, {args.folds} folds)")
        summaries = curve_table(curve, (METRIC,), METRIC)
        extra = {}
        if args.generator_from_k:
            smallest = points[0]
            point_config = dataclasses.replace(config, real_nodules=smallest, fixed_budget=True)
            from_k = generator_from_k(args, root, real_path, point_config, smallest, clock)
            extra = {"generator_from_k": {"K": point_label(smallest), **from_k_table(curve.results[point_label(smallest)], from_k)}}
        return {
            **extra,
            "config": {**vars(args), "out": str(args.out) if args.out else None},
            "data": {"real_slices": summary.slices, "real_nodule_slices": summary.nodule_slices, "patients": summary.series},
            "optimizer_steps": curve.optimizer_steps,
            "generator_nodules": curve.generator_nodules,
            "curve": {point: table(summaries[point], result) for point, result in curve.results.items()},
            "seconds": clock.stages,
            "total": {k: round(sum(s[k] for s in clock.stages.values()), 1) for k in ("wall_s", "cpu_s")},
            "threads": torch.get_num_threads(),
        }
    result = clock("bench detect", run_detect, real, synthetic, config, torch.device("cpu"), folds_dir, FoldLog())
    return {
        "config": {**vars(args), "out": str(args.out) if args.out else None},
        "data": {"real_slices": summary.slices, "real_nodule_slices": summary.nodule_slices, "patients": summary.series},
        "optimizer_steps": {c: result.values(c, "optimizer_steps") for c in result.conditions},
        "train_patches": {c: result.values(c, "train_patches") for c in result.conditions},
        "detect": table(summarize(result, (METRIC,), METRIC), result),
        "seconds": clock.stages,
        "total": {k: round(sum(s[k] for s in clock.stages.values()), 1) for k in ("wall_s", "cpu_s")},
        "threads": torch.get_num_threads(),
    }


def _cell(c: dict[str, Any] | None) -> str:
    """Δ [CI] | corrected t p (Holm) | DeLong p (Holm), from a comparison's JSON."""
    if c is None:
        return "– | – | –"
    low, high = c["diff_ci95"]
    text = "n/a" if c["diff_mean"] is None or low is None else f"{100 * c['diff_mean']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"

    def p(test: str) -> str:
        entry = c["p"].get(test)
        if entry is None or entry["raw"] is None:
            return "n/a"
        holm = "primary" if c.get("primary") else f"Holm {entry['holm']:.3g}" if entry["holm"] is not None else "Holm n/a"
        return f"{entry['raw']:.3g} ({holm})"

    return f"{text} | {p('corrected_t')} | {p('delong')}"


def markdown(report: dict[str, Any]) -> str:
    """The docs table: (K,) condition, AUROC, Δ vs A [95 % CI], corrected t p and DeLong p (raw, Holm)."""
    blocks = report["curve"] if "curve" in report else {None: report["detect"]}
    head = "| K | " if "curve" in report else "| "
    lines = [
        head + f"condition | {METRIC} (%) | Δ vs A (pts) [95 % CI] | corrected t p | DeLong p |",
        "|---" * (5 + ("curve" in report)) + "|",
    ]
    for point, d in blocks.items():
        lead = f"| {point} | " if point is not None else "| "
        for c, row in d["rows"].items():
            mean = "n/a" if row["mean"] is None else f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f}"
            lines.append(f"{lead}{c} | {mean} | {_cell(row['vs_A'])} |")
        if d["paste_vs_mislabeled"] is not None:
            lines.append(f"{lead}paste − mislabeled | | {_cell(d['paste_vs_mislabeled'])} |")
        lines += [f"\n{note}" for note in d["excluded"]]
    for point, d in blocks.items():  # below the table: helpful only when ahead of A, classic and blob
        task = f"K = {point}" if point is not None else "detect"
        lines += [f"\n{verdict_sentence(task, Verdict(**v))}" for v in (d["verdicts"] or {}).values()]
    lines.append(f"\nPrimary comparison: {next(iter(blocks.values()))['primary']} (raw p); every other p Holm-adjusted.")
    if "curve" in report:
        lines.append(
            f"\nOptimiser budget for every K, fold and condition: {report['optimizer_steps']} steps; "
            f"real nodule slices the generators' weights saw: {report['generator_nodules']}."
        )
    if "generator_from_k" in report:
        g = report["generator_from_k"]
        lines.append(
            f"\n{FROM_K} at K = {g['K']} (a generator per fold; real nodules each saw: {g['generator_nodules']}, "
            f"synthetic nodule slices joined: {g['synthetic_positives']}): {100 * g['mean']:.2f} ± {100 * g['std']:.2f} | {_cell(g['vs_A'])}"
        )
    t = report["total"]
    lines.append(f"\nTotal {t['wall_s']:.0f} s wall, {t['cpu_s']:.0f} s CPU ({report['threads']} torch threads).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=20, help="phantom scans (2 per official fold with 20)")
    parser.add_argument("--size", type=int, default=128, help="phantom slice size in pixels")
    parser.add_argument("--nodule-slices", default="all", help="prepare's nodule slices: center (one per nodule) or all it touches")
    parser.add_argument("--test-patients", type=float, default=0.2, help="prepare's test share (augment sources are train patients)")
    parser.add_argument("--nodules", type=int, default=160, help="nodule slices per control store")
    parser.add_argument("--generator-nodules", type=int, default=None, help="nodule slices per generator store (default: --nodules)")
    parser.add_argument("--nodule-free", type=int, default=0, help="nodule-free slices per control store")
    parser.add_argument("--generator-size", type=int, default=None, help="control stores' size in pixels (default: the real store's)")
    parser.add_argument("--folds", type=int, default=10, help="cross-validation folds")
    parser.add_argument("--bench-size", type=int, default=128, help="bench working size in pixels")
    parser.add_argument("--patch", type=int, default=16, help="detection patch in pixels (size / 8, as 32 at 256)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs over condition A's patches (all conditions: the same steps)")
    parser.add_argument("--batch-size", type=int, default=32, help="patches per step")
    parser.add_argument("--depth", type=int, default=8, help="SE-ResNet depth")
    parser.add_argument("--width", type=int, default=8, help="SE-ResNet base width")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage")
    parser.add_argument("--repeats", type=int, default=1, help="training seeds per fold and condition, averaged")
    parser.add_argument("--real-nodules", default=None, help="learning curve: K1,K2,…,all real training nodules per fold")
    parser.add_argument("--generators", action="store_true", help="also bench the shipped demo SDM and SPADE")
    realism = "the realism controls blob, hosts and classic, and each recipe's verdict against A, classic and blob"
    parser.add_argument("--controls", action=argparse.BooleanOptionalAction, default=True, help=realism)
    parser.add_argument(
        "--generator-from-k",
        action="store_true",
        help="with --real-nodules: also an inpainting SDM per fold trained on only that fold's kept nodules at the smallest K",
    )
    parser.add_argument("--from-k-steps", type=int, default=300, help="training steps of each per-fold inpainting SDM (tiny preset)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: no spinning on a shared machine)")
    parser.add_argument("--out", type=Path, default=None, help="keep the stores here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    if args.generator_from_k and not args.real_nodules:
        parser.error("--generator-from-k needs --real-nodules (it runs at the smallest K)")
    torch.set_num_threads(args.threads)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=False)
        report = run(args, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            report = run(args, Path(tmp))
    print(json.dumps(report, indent=2, default=str) if args.json else markdown(report))


if __name__ == "__main__":
    main()
