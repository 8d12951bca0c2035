"""The k-fold driver shared by `bench detect` and `bench localize` (docs/benchmark.md), and the rule of
a learning curve's training subsets.

For every (fold, condition) not already saved in the fold log, a task-specific runner trains on
the other folds' real slices (+ that condition's synthetic slices whose source patient is not in
the fold) and tests on the fold's real slices. Conditions: A (real only) + one per synthetic store
(+ "A + the real source slices" where sources lie outside the benchmark: :mod:`.sources`).

Learning curves (`--real-nodules K1,K2,…,all`): in each fold the real training slices are cut to
K whole nodules (all their slices) plus nodule-free slices in the store's proportion
(:func:`kept_real_slices`, seeded per fold and nested: the K of a smaller point are among those of
a larger one), the same for every condition; a synthetic slice joins only if every real nodule it
copies is among the kept ones or outside the benchmark (:func:`copies_kept`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from lungforge.bench.protocol.budget import curve_steps, reference_steps
from lungforge.bench.protocol.fold_controls import FOLD_CONTROLS, ControlSet, fold_control_names
from lungforge.bench.protocol.fold_options import FoldConfig
from lungforge.bench.protocol.foldlog import FoldLog, run_signature
from lungforge.bench.protocol.folds import OUTSIDE, leak_groups, real_groups
from lungforge.bench.protocol.inputs import REFERENCE
from lungforge.bench.protocol.leakage import check_leakage
from lungforge.bench.protocol.ranks import rank_and_world, run_shared
from lungforge.bench.protocol.repeats import average_rows, repeat_seed
from lungforge.bench.protocol.results import FoldRow, TaskResult
from lungforge.bench.protocol.selection import selected
from lungforge.bench.protocol.sources import SOURCES, check_synthetic_positives, external_source_slices, joined_counts, train_split_outside
from lungforge.core.errors import InputError
from lungforge.store import NO_SOURCE, Store, nodule_ids


@dataclasses.dataclass(frozen=True)
class FoldRunner:
    """`runner(fold, condition) -> per-fold metrics` of one task, and `runner.steps(fold)`: the
    optimiser steps every condition of `fold` trains (known before any training)."""

    run: Callable[[int, str], FoldRow]
    steps: Callable[[int], int]

    def __call__(self, fold: int, condition: str) -> FoldRow:
        return self.run(fold, condition)


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


def compared_conditions(real: Store, synthetic: dict[str, Store], config: FoldConfig, controls_to_make: tuple[str, ...] = ()) -> list[str]:
    """The conditions a k-fold run of `config` compares with A, in the order it runs them, known
    before it trains: `controls_to_make` (the control stores `bench all --controls` makes first,
    :mod:`~lungforge.bench.protocol.controls`), every synthetic store, the comparator
    :data:`~lungforge.bench.protocol.sources.SOURCES` where some of them draw on real patients
    outside the benchmark, then the fold controls with `config.fold_controls`. The control
    stores draw on the real train split (augment's source label maps and nodules), so they count
    as external wherever the benchmark leaves train patients out (`--real-split test`)."""
    groups = real_groups(real, config.folds, config.real_split)
    names = [*controls_to_make, *synthetic]
    external = external_source_slices(real, synthetic, groups).any() or (bool(controls_to_make) and train_split_outside(real, groups))
    return [*names, *([SOURCES] if external else []), *fold_control_names(names, config.fold_controls)]


def point_label(k: int | None) -> str:
    """The name of a learning-curve point: `"16"` or `"all"`."""
    return ALL if k is None else str(k)


def kept_real_slices(real: Store, groups: np.ndarray, fold: int, k: int | None, seed: int) -> np.ndarray:
    """(N,) bool: the real training slices of `fold` at learning-curve point `k` (K whole nodules).

    The training fold's nodules (:func:`~lungforge.store.nodule_ids`) are put in an order
    drawn from a generator seeded by (seed, fold) and the first `k` kept with all their slices
    (every nodule slice when `k` is None or not smaller); nodule-free training slices likewise,
    the first round(kept nodule slices × free / nodule slices) of them, so the share of
    nodule-free slices stays the store's. The order does not depend on `k`, so the subsets are
    nested, and not on the condition.
    """
    train = (groups != fold) & (groups >= 0)
    has = real.meta("has_nodule")
    nodule_slices, free = train & has, np.flatnonzero(train & ~has)
    rows, ids = real.nodules()["slice"], nodule_ids(real)
    in_train = train[rows]
    rng = np.random.default_rng([seed, fold, 0x4B])
    order, free = rng.permutation(np.unique(ids[in_train])), rng.permutation(free)
    kept = np.zeros(len(real), bool)
    if k is not None and k < order.size:
        kept[rows[in_train & np.isin(ids, order[:k])]] = True
        free = free[: round(kept.sum() * free.size / max(int(nodule_slices.sum()), 1))]
    else:
        kept |= nodule_slices
    kept[free] = True
    return kept


def kept_nodules(real: Store, kept: np.ndarray) -> np.ndarray:
    """The distinct real nodule ids (sorted) with a row on a `kept` (N,) bool slice."""
    return np.unique(nodule_ids(real)[kept[real.nodules()["slice"]]])


def copies_kept(synthetic: Store, real: Store, kept: np.ndarray, external: np.ndarray | None = None) -> np.ndarray:
    """(N_syn,) bool: synthetic slices whose copied real nodules are all kept or external.

    A synthetic slice copies the nodules of the real slice its label map comes from (when that
    slice has any: the slice itself must be kept) and, per nodule, the real nodules whose rows
    its shape (and texture) and size came from (`nodules/shape_source`, `size_source`; -1 copies
    none: that nodule must be among :func:`kept_nodules`). `external` (N_real,) bool marks real
    slices of patients outside the benchmark: they never leak, so what they give is always
    allowed and K limits only benchmarked patients' nodules.
    """
    external = np.zeros(len(real), bool) if external is None else external
    has = real.meta("has_nodule")
    source = synthetic.meta("source")
    ok = kept[source] | ~has[source] | external[source]
    table, real_slice, ids = synthetic.nodules(), real.nodules()["slice"], nodule_ids(real)
    allowed = np.isin(ids, kept_nodules(real, kept)) | external[real_slice]
    for column in ("shape_source", "size_source"):
        rows = table[column]
        copied = rows != NO_SOURCE
        bad = copied.copy()
        bad[copied] = ~allowed[rows[copied]]
        ok[table["slice"][bad]] = False
    return ok


@dataclasses.dataclass(frozen=True)
class FoldTraining:
    """Which slices may train in one fold: the rule every task applies the same way.

    `kept` (N_real,) bool: real slices kept at the fold's learning-curve point (the caller also
    drops the test fold's own slices); `joins` maps each synthetic condition to its (N_syn,) bool
    slices that may join: none of their sources is a test-fold patient (`leaks`, from
    :func:`~lungforge.bench.protocol.folds.leak_groups`) and every real nodule they copy is kept
    or outside the benchmark. `real_nodules`: distinct real nodules on the kept slices.
    """

    kept: np.ndarray
    joins: dict[str, np.ndarray]
    real_nodule_slices: int
    real_nodules: int


def fold_training(
    real: Store, synthetic: dict[str, Store], leaks: dict[str, np.ndarray], groups: np.ndarray, fold: int, config: FoldConfig
) -> FoldTraining:
    """The :class:`FoldTraining` of `fold` under `config`'s `real_nodules` point and seed."""
    kept = kept_real_slices(real, groups, fold, config.real_nodules, config.seed)
    external = groups == OUTSIDE
    joins = {name: ~leaks[name][:, fold] & copies_kept(store, real, kept, external) for name, store in synthetic.items()}
    return FoldTraining(kept, joins, int((kept & real.meta("has_nodule")).sum()), int(kept_nodules(real, kept).size))


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


class FoldSet(ControlSet, Protocol):
    """What a task trains and tests on (PatchSet, SliceSet): items with the fold `group` (n,) of
    their patient and the store `slice` (n,) they come from, that a fold control can build on."""

    @property
    def group(self) -> np.ndarray: ...
    @property
    def slice(self) -> np.ndarray: ...

    def select(self, mask: np.ndarray) -> Any: ...

    def __len__(self) -> int: ...


S = TypeVar("S", bound=FoldSet)
TrainAndTest = Callable[[int, list[Any], int, int], FoldRow]
"""`train_and_test(fold, training sets, optimiser steps, training seed) -> per-fold metrics` of one task."""


def fold_runner(
    real: Store,
    synthetic: dict[str, Store],
    groups: np.ndarray,
    config: FoldConfig,
    real_set: S,
    synthetic_sets: dict[str, S],
    train_and_test: TrainAndTest,
) -> FoldRunner:
    """The runner of one task: for (fold, condition) it keeps the real items of the other folds
    that the fold's :class:`FoldTraining` keeps, adds the condition's synthetic items that may
    join (for :data:`~lungforge.bench.protocol.sources.SOURCES`, `synthetic_sets[SOURCES]`: the
    external real source items, in every fold), sizes the optimiser steps from A
    (:func:`reference_steps`, or the curve's one :func:`curve_steps` budget with
    `config.fixed_budget`), calls `train_and_test` once per repeat
    (:func:`~lungforge.bench.protocol.repeats.repeat_seed`), averages the rows and adds the wall
    time (`seconds`), the real nodule slices and distinct nodules kept and the synthetic slices
    joined to the row. A fold control (:data:`~lungforge.bench.protocol.fold_controls.FOLD_CONTROLS`)
    adds what it builds from A's items and the joining items of the condition it is built from
    (:meth:`~lungforge.bench.protocol.fold_controls.FoldControl.built_from`, named in its row as
    `built_from`) instead of that store's items (its joined counts are items, not distinct slices). A condition that took no
    optimiser step (no training item) is an InputError naming it, K and the fold."""
    leaks = {name: leak_groups(store, real, groups) for name, store in synthetic.items()}
    full = [int((real_set.group != f).sum()) for f in range(config.folds)]
    fixed = curve_steps(full, config.epochs, config.batch_size) if config.fixed_budget else None

    def reference_mask(fold: int, kept: np.ndarray) -> np.ndarray:
        return (real_set.group != fold) & kept[real_set.slice]

    def steps(fold: int) -> int:
        kept = kept_real_slices(real, groups, fold, config.real_nodules, config.seed)
        return fixed or reference_steps(int(reference_mask(fold, kept).sum()), config.epochs, config.batch_size)

    def run(fold: int, condition: str) -> FoldRow:
        control = FOLD_CONTROLS.get(condition)
        source = condition if control is None else control.built_from(list(synthetic))
        rule = fold_training(real, {c: synthetic[c] for c in synthetic if c == source}, leaks, groups, fold, config)
        reference = real_set.select(reference_mask(fold, rule.kept))
        train: list[S | ControlSet] = [reference]
        joined = {"synthetic_positives": 0, "synthetic_negatives": 0}
        built: dict[str, str] = {}
        if source != REFERENCE:
            items = synthetic_sets[source]
            if source != SOURCES:
                items = items.select(rule.joins[source][items.slice])
            if control is None:
                joined = joined_counts(synthetic.get(source, real), items.slice)
                train.append(items)
            else:
                made = control.items(reference, items, np.random.default_rng([config.seed, fold, condition_stream(condition)]))
                positive = np.asarray(made.positive, dtype=np.bool_)
                joined = {"synthetic_positives": int(positive.sum()), "synthetic_negatives": int((~positive).sum())}
                built = {"built_from": source}
                train.append(made)
        steps = fixed or reference_steps(len(reference), config.epochs, config.batch_size)
        started = time.perf_counter()
        row = average_rows([train_and_test(fold, train, steps, repeat_seed(config.seed, r)) for r in range(config.repeats)])
        check_trained(row, condition, config, fold)
        return {
            **row,
            "seconds": round(time.perf_counter() - started, 3),
            "real_nodule_slices": rule.real_nodule_slices,
            "real_nodules": rule.real_nodules,
            **joined,
            **built,
        }

    return FoldRunner(run, steps)


def check_joins(real: Store, synthetic: dict[str, Store], groups: np.ndarray, config: FoldConfig) -> None:
    """Refuse, before any training, a synthetic condition that adds no nodule slice to some fold
    (:func:`~lungforge.bench.protocol.sources.check_synthetic_positives`) unless the config allows it."""
    leaks = {name: leak_groups(store, real, groups) for name, store in synthetic.items()}
    rules = [fold_training(real, synthetic, leaks, groups, fold, config) for fold in range(config.folds)]
    joins = {name: [rule.joins[name] for rule in rules] for name in synthetic}
    used = {name: selected(store, config.select) for name, store in synthetic.items()}
    check_synthetic_positives(joins, synthetic, used, config.allow_empty_synthetic)


def check_trained(row: FoldRow, condition: str, config: FoldConfig, fold: int) -> None:
    """InputError when `row` took 0 optimiser steps: its random weights would be scored."""
    if not row.get("optimizer_steps"):
        raise InputError(
            f"condition {condition} at K = {point_label(config.real_nodules)} took 0 optimiser steps in fold {fold} "
            "(no training item); use a larger --real-nodules point or more data"
        )


def cross_validate(
    task: str,
    real: Store,
    synthetic: dict[str, Store],
    config: FoldConfig,
    make_runner: Callable[[np.ndarray], FoldRunner],
    out: Path | None = None,
    progress: Any = None,
) -> TaskResult:
    """Run every unfinished (fold, condition) of `task`; finished folds in `out` are reused. In a
    joined process group (torchrun) each rank trains its share of them and all ranks return every
    row (:func:`~lungforge.bench.protocol.ranks.run_shared`).

    Conditions: A, every synthetic store, then the fold controls with `config.fold_controls`.
    A generator condition whose weights saw a test-fold patient is refused first
    (:func:`~lungforge.bench.protocol.leakage.check_leakage`) unless the config allows it.
    So is a synthetic condition that adds no nodule slice to some fold (:func:`check_joins`)
    unless `allow_empty_synthetic`. Where synthetic stores draw on patients outside the
    benchmark, the comparator :data:`~lungforge.bench.protocol.sources.SOURCES` runs last.
    `make_runner(groups)` receives the fold group of every real slice (−1 outside the
    benchmark), loads its data once (with the SOURCES set from :func:`external_source_slices`
    when that condition runs) and builds the runner with :func:`fold_runner`.
    """
    groups = real_groups(real, config.folds, config.real_split)
    leakage = check_leakage(real, synthetic, groups, config.allow_generator_leakage)
    check_joins(real, synthetic, groups, config)
    rank, _ = rank_and_world()
    log = FoldLog(out, log_name(task, config), run_signature(task, config, real, synthetic), write_run=rank == 0)
    conditions = [REFERENCE, *compared_conditions(real, synthetic, config)]
    todo = [(f, c) for f in range(config.folds) for c in conditions if log.get(c, f) is None]
    if todo:
        runner = make_runner(groups)
        steps = {fold: runner.steps(fold) for fold in sorted({f for f, _ in todo})}
        planned = sum(steps[f] for f, _ in todo)
        # The bar counts optimiser steps, so its time remaining is an ETA weighted by each training's length.
        bar = progress.add_task(task, total=planned, status="") if progress else None
        if progress:
            progress.console.print(f"{task}: {len(todo)} trainings (folds × conditions), {planned:,} optimiser steps planned")

        def run(fold: int, condition: str) -> dict[str, Any]:
            if progress:
                progress.update(bar, status=f"fold {fold} {condition}")
            row = {"fold": fold, "condition": condition, **runner(fold, condition)}
            log.put(condition, fold, row)
            if progress:
                progress.advance(bar, steps[fold])
            return row

        for (fold, condition), row in run_shared(todo, run).items():
            log.remember(condition, fold, row)
        if progress:
            progress.update(bar, completed=planned, status="")
    # every (fold, condition) is in the log now: run above, or finished by an earlier run
    folds = {c: [cast("FoldRow", log.get(c, f)) for f in range(config.folds)] for c in conditions}
    return TaskResult(task, config, tuple(conditions), folds, leakage)
