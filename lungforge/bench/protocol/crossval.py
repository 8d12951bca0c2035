"""The k-fold driver shared by `bench detect` and `bench localize` (docs/benchmark.md), and the rule of
a learning curve's training subsets.

For every (fold, condition) not already saved in the fold log, a task-specific runner trains on
the other folds' real slices (+ that condition's synthetic slices whose source patient is not in
the fold) and tests on the fold's real slices. Conditions: A (real only) + one per synthetic store.

Learning curves (`--real-nodules K1,K2,…,all`): in each fold the real training slices are cut to
K nodule slices plus nodule-free slices in the store's proportion (:func:`kept_real_slices`,
seeded per fold and nested: the K of a smaller point are among those of a larger one), the same
for every condition; a synthetic slice joins only if every real nodule it copies is among the
kept ones (:func:`copies_kept`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

import numpy as np

from lungforge.bench.protocol.budget import curve_steps, reference_steps
from lungforge.bench.protocol.foldlog import FoldLog, run_signature
from lungforge.bench.protocol.folds import leak_groups, real_groups
from lungforge.bench.protocol.inputs import REFERENCE
from lungforge.bench.protocol.leakage import check_leakage
from lungforge.bench.protocol.results import FoldRow, TaskResult
from lungforge.choices import MAX_SIZE_PX, RealSplit, Selection, check_choice, check_range
from lungforge.data.store import NO_SOURCE, Store
from lungforge.seeds import check_seed

FoldRunner = Callable[[int, str], FoldRow]
"""`runner(fold, condition) -> per-fold metrics` for one task."""


@dataclass(frozen=True)
class FoldOptions:
    """The options every k-fold task config shares with the same meaning and default
    (:class:`~lungforge.bench.protocol.detect.DetectConfig`, :class:`~lungforge.bench.protocol.localize.LocalizeConfig`):
    which synthetic slices train, the seed, the quick label and the learning-curve settings."""

    select: Selection = "first-draw"
    """Synthetic slices every condition trains on: 'first-draw' or 'all'."""
    seed: int = 0
    quick: bool = False
    real_nodules: int | None = None
    """Learning-curve point: real training nodule slices per fold (None: all)."""
    fixed_budget: bool = False
    """Train every point, fold and condition the same steps (:func:`~lungforge.bench.protocol.budget.curve_steps`)."""
    allow_generator_leakage: bool = False
    """Bench generators whose weights saw test-fold patients (the report says so)."""


class FoldConfig(Protocol):
    """The fields every k-fold task's config has (DetectConfig, LocalizeConfig)."""

    size: int
    folds: int
    real_split: str
    select: str
    epochs: int
    batch_size: int
    quick: bool
    seed: int
    real_nodules: int | None
    fixed_budget: bool
    allow_generator_leakage: bool


def check_fold_config(config: FoldConfig, min_size: int) -> None:
    """ConfigError (a ValueError) naming the first shared field of a task config out of its choices
    or range: seed, real_split, select, size (`min_size`..MAX_SIZE_PX px), folds (2..10), epochs,
    batch_size (>= 1), real_nodules (>= 1 or None)."""
    check_seed(config.seed)
    check_choice("real_split", config.real_split, RealSplit)
    check_choice("select", config.select, Selection)
    check_range("size", config.size, min_size, MAX_SIZE_PX)
    check_range("folds", config.folds, 2, 10)
    for name in ("epochs", "batch_size"):
        check_range(name, getattr(config, name), 1)
    if config.real_nodules is not None:
        check_range("real_nodules", config.real_nodules, 1)


ALL = "all"
"""The `--real-nodules` point that keeps every real training slice."""


def parse_real_nodules(text: str) -> list[int | None]:
    """`"4,16,all"` → [4, 16, None] (None: every real nodule slice), sorted ascending, all last.

    Raises ValueError naming the bad item: not a positive integer in ASCII digits or `all`, or a repeat."""
    points: list[int | None] = []
    for item in (t.strip() for t in text.split(",")):
        if item == ALL:
            point = None
        elif item.isascii() and item.isdigit() and int(item) > 0:  # str.isdigit alone accepts '²', which int() refuses
            point = int(item)
        else:
            raise ValueError(f"items must be positive integers or {ALL!r}, got {item!r}")
        if point in points:
            raise ValueError(f"{item!r} is given twice")
        points.append(point)
    return sorted(points, key=lambda k: (k is None, k or 0))


def point_label(k: int | None) -> str:
    """The name of a learning-curve point: `"16"` or `"all"`."""
    return ALL if k is None else str(k)


def kept_real_slices(real: Store, groups: np.ndarray, fold: int, k: int | None, seed: int) -> np.ndarray:
    """(N,) bool: the real training slices of `fold` at learning-curve point `k`.

    The training fold's nodule slices are put in an order drawn from a generator seeded by
    (seed, fold) and the first `k` kept (all of them when `k` is None or larger); nodule-free
    training slices likewise, the first round(k × free / nodule) of them, so the share of
    nodule-free slices stays the store's. The order does not depend on `k`, so the subsets are
    nested, and not on the condition.
    """
    train = (groups != fold) & (groups >= 0)
    has = real.meta("has_nodule")
    nodule, free = np.flatnonzero(train & has), np.flatnonzero(train & ~has)
    rng = np.random.default_rng([seed, fold, 0x4B])
    nodule, free = rng.permutation(nodule), rng.permutation(free)
    if k is not None and k < nodule.size:
        n_free = int(round(k * free.size / max(nodule.size, 1)))
        nodule, free = nodule[:k], free[:n_free]
    kept = np.zeros(len(real), bool)
    kept[nodule] = True
    kept[free] = True
    return kept


def copies_kept(synthetic: Store, real: Store, kept: np.ndarray) -> np.ndarray:
    """(N_syn,) bool: synthetic slices whose copied real nodules are all among the `kept` real slices.

    A synthetic slice copies the nodules of the real slice its label map comes from (when that
    slice has any) and, per nodule, the real nodule rows its shape (and texture) and size came
    from (`nodules/shape_source`, `size_source`; -1 copies none).
    """
    has = real.meta("has_nodule")
    source = synthetic.meta("source")
    ok = kept[source] | ~has[source]
    table, real_slice = synthetic.nodules(), real.nodules()["slice"]
    for column in ("shape_source", "size_source"):
        rows = table[column]
        copied = rows != NO_SOURCE
        bad = copied.copy()
        bad[copied] = ~kept[real_slice[rows[copied]]]
        ok[table["slice"][bad]] = False
    return ok


@dataclasses.dataclass(frozen=True)
class FoldTraining:
    """Which slices may train in one fold: the rule every task applies the same way.

    `kept` (N_real,) bool: real slices kept at the fold's learning-curve point (the caller also
    drops the test fold's own slices); `joins` maps each synthetic condition to its (N_syn,) bool
    slices that may join: none of their sources is a test-fold patient (`leaks`, from
    :func:`~lungforge.bench.protocol.folds.leak_groups`) and every real nodule they copy is kept.
    """

    kept: np.ndarray
    joins: dict[str, np.ndarray]
    real_nodule_slices: int


def fold_training(
    real: Store, synthetic: dict[str, Store], leaks: dict[str, np.ndarray], groups: np.ndarray, fold: int, config: FoldConfig
) -> FoldTraining:
    """The :class:`FoldTraining` of `fold` under `config`'s `real_nodules` point and seed."""
    kept = kept_real_slices(real, groups, fold, config.real_nodules, config.seed)
    joins = {name: ~leaks[name][:, fold] & copies_kept(store, real, kept) for name, store in synthetic.items()}
    return FoldTraining(kept, joins, int((kept & real.meta("has_nodule")).sum()))


def condition_stream(name: str) -> int:
    """A random stream of condition `name` derived from the name alone (A: 0), so a condition's
    sampled patches or slices do not change when other conditions are added or reordered."""
    if name == REFERENCE:
        return 0
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "little") + 1


def log_name(task: str, config: FoldConfig) -> str:
    """The fold-log folder of a run: `task`, or `task-k<K>` for a learning-curve point."""
    curve = config.fixed_budget or config.real_nodules is not None
    return f"{task}-k{point_label(config.real_nodules)}" if curve else task


class FoldSet(Protocol):
    """What a task trains and tests on (PatchSet, SliceSet): items with the fold `group` (n,) of
    their patient and the store `slice` (n,) they come from."""

    group: np.ndarray
    slice: np.ndarray

    def select(self, mask: np.ndarray) -> Any: ...

    def __len__(self) -> int: ...


S = TypeVar("S", bound=FoldSet)
TrainAndTest = Callable[[int, list[Any], int], FoldRow]
"""`train_and_test(fold, training sets, optimiser steps) -> per-fold metrics` of one task."""


def fold_runner(
    real: Store, synthetic: dict[str, Store], groups: np.ndarray, config: FoldConfig,
    real_set: S, synthetic_sets: dict[str, S], train_and_test: TrainAndTest,
) -> FoldRunner:
    """The runner of one task: for (fold, condition) it keeps the real items of the other folds
    that the fold's :class:`FoldTraining` keeps, adds the condition's synthetic items that may
    join, sizes the optimiser steps from A (:func:`reference_steps`, or the curve's one
    :func:`curve_steps` budget with `config.fixed_budget`), calls `train_and_test` and adds its
    wall time (`seconds`) and the real nodule slices kept to the row."""
    leaks = {name: leak_groups(store, real, groups) for name, store in synthetic.items()}
    full = [int((real_set.group != f).sum()) for f in range(config.folds)]
    fixed = curve_steps(full, config.epochs, config.batch_size) if config.fixed_budget else None

    def runner(fold: int, condition: str) -> FoldRow:
        rule = fold_training(real, {c: synthetic[c] for c in synthetic if c == condition}, leaks, groups, fold, config)
        reference = real_set.select((real_set.group != fold) & rule.kept[real_set.slice])
        train = [reference]
        if condition != REFERENCE:
            items = synthetic_sets[condition]
            train.append(items.select(rule.joins[condition][items.slice]))
        steps = fixed or reference_steps(len(reference), config.epochs, config.batch_size)
        started = time.perf_counter()
        row = train_and_test(fold, train, steps)
        return {**row, "seconds": round(time.perf_counter() - started, 3), "real_nodule_slices": rule.real_nodule_slices}

    return runner


def cross_validate(
    task: str,
    real: Store,
    synthetic: dict[str, Store],
    config: FoldConfig,
    make_runner: Callable[[np.ndarray], FoldRunner],
    out: Path | None = None,
    progress: Any = None,
) -> TaskResult:
    """Run every unfinished (fold, condition) of `task`; finished folds in `out` are reused.

    A generator condition whose weights saw a test-fold patient is refused first
    (:func:`~lungforge.bench.protocol.leakage.check_leakage`) unless the config allows it.
    `make_runner(groups)` receives the fold group of every real slice (−1 outside the
    benchmark), loads its data once and builds the runner with :func:`fold_runner`.
    """
    groups = real_groups(real, config.folds, config.real_split)  # type: ignore[arg-type]
    leakage = check_leakage(real, synthetic, groups, config.allow_generator_leakage)
    log = FoldLog(out, log_name(task, config), run_signature(task, config, real, synthetic))
    conditions = [REFERENCE, *synthetic]
    todo = [(f, c) for f in range(config.folds) for c in conditions if log.get(c, f) is None]
    total = config.folds * len(conditions)
    bar = progress.add_task(task, total=total, completed=total - len(todo), status="") if progress else None
    if todo:
        runner = make_runner(groups)
        for fold, condition in todo:
            if progress:
                progress.update(bar, status=f"fold {fold} {condition}")
            log.put(condition, fold, {"fold": fold, "condition": condition, **runner(fold, condition)})
            if progress:
                progress.advance(bar)
    folds = {c: [log.get(c, f) for f in range(config.folds)] for c in conditions}
    return TaskResult(task, config, tuple(conditions), folds, leakage)
