"""Synthetic-slice production: plan layouts, sample in batches, verify nodules, commit whole shards.

Pipeline per rank: a planner thread lays out the next blocks while the main thread only feeds
the generator, and a writer thread commits finished blocks (:mod:`lungforge.augment.writer`).
Samples whose nodules are too faint are re-sampled with fresh derived seeds, batched together
with the next samples, up to `retries` times; then the best attempt is kept, flagged
`verified=False`. `meta/attempts` records the draws made per slice. A generator whose image does
not depend on the seed (SPADE without noise input, the model-free controls) is never re-drawn.

Scale (torchrun): the output's blocks are its shards; rank r owns blocks r, r+K, ...; rank 0
creates the store and, after all ranks finish, merges the blocks' nodule parts and finalizes.
Sample i depends only on (seed, i), so the store is the same for any batch size or rank count.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, nullcontext

import numpy as np

from lungforge.augment.inputs import AugmentInputs, load_inputs
from lungforge.augment.lidc import LidcLibrary
from lungforge.augment.options import AugmentOptions
from lungforge.augment.output_guard import check_output
from lungforge.augment.output_store import merge_parts, open_output, owned_blocks, pending_blocks, record_of_complete
from lungforge.augment.plan import PlannedSample, SamplePlanner, sample_seed
from lungforge.augment.slice_generator import SliceGenerator
from lungforge.augment.summary import AugmentReport, summarize_augment_run
from lungforge.augment.weakest_contrast import weakest_contrast_hu
from lungforge.augment.writer import BlockWriter, FinishedBlock
from lungforge.core.device import resolve_device
from lungforge.core.locks import hold_lock
from lungforge.core.process_group import DistInfo, barrier, dist_info_from_env, mean_across_ranks, process_group
from lungforge.store import SPLIT_IDS, Store, copied_nodules

NODULE_COLUMNS = ("slice", "bbox", "diameter_mm", "requested_mm", "shape_source", "size_source", "lidc_annotation")
PLAN_AHEAD_BLOCKS = 2
WRITE_QUEUE_BLOCKS = 2
Progress = Callable[[int, int, int], None]
"""progress(slices_done, slices_total, images_sampled) for this rank's blocks."""


class _Assembly:
    """One output block being filled: the best attempt so far of each of its samples."""

    def __init__(self, block: int, samples: list[PlannedSample], size: int) -> None:
        n = len(samples)
        self.block = block
        self.samples = samples
        self.image = np.zeros((n, size, size), dtype=np.uint8)
        self.seed = np.zeros(n, dtype=np.int64)
        self.score = np.full(n, -np.inf)
        self.first_try = np.zeros(n, dtype=bool)
        self.attempts = np.zeros(n, dtype=np.int32)
        self.remaining = n

    def record(self, pos: int, image: np.ndarray, seed: int, score: float, attempt: int, passed: bool, final: bool) -> None:
        if attempt == 0:
            self.first_try[pos] = passed
        if score > self.score[pos] or attempt == 0:
            self.image[pos], self.seed[pos], self.score[pos] = image, seed, score
        self.attempts[pos] = attempt + 1
        if final:
            self.remaining -= 1

    def finished(self, real: Store, threshold: float | None, generator: SliceGenerator) -> FinishedBlock:
        """The block ready to write; a `generator` drawing in windows adds each nodule's window (`nodules/window`)."""
        samples = self.samples
        source = np.array([s.source for s in samples], dtype=np.int64)
        has_nodule = np.array([s.has_nodule for s in samples], dtype=bool)
        verified = ~has_nodule | (self.score >= threshold if threshold is not None else True)
        rows = [(s.index, n) for s in samples for n in s.nodules]
        meta = {
            "series": real.meta("series")[source],
            "z": real.meta("z")[source],
            "spacing": np.array([s.spacing_mm for s in samples], dtype=np.float32),
            "split": np.full(len(samples), SPLIT_IDS["train"], dtype=np.uint8),
            "fold": real.meta("fold")[source],
            "has_nodule": has_nodule,
            "source": source,
            "seed": self.seed,
            "verified": verified,
            "attempts": self.attempts,
        }
        part = {
            "slice": np.array([i for i, _ in rows], dtype=np.int64),
            "bbox": np.array([n.bbox for _, n in rows], dtype=np.float32).reshape(-1, 4),
            "diameter_mm": np.array([n.achieved_mm for _, n in rows], dtype=np.float32),
            "requested_mm": np.array([n.requested_mm for _, n in rows], dtype=np.float32),
            "shape_source": np.array([n.shape_source for _, n in rows], dtype=np.int64),
            "size_source": np.array([n.size_source for _, n in rows], dtype=np.int64),
            "lidc_annotation": np.array([n.lidc_annotation for _, n in rows], dtype=np.int64),
            "has_nodule": has_nodule,
            "first_try": self.first_try | ~has_nodule,
            "verified": verified,
        }
        if generator.window is not None:
            part["window"] = np.array([w for s in samples for w in generator.windows(s)], dtype=np.int32).reshape(-1, 4)
        label = np.stack([s.label for s in samples])
        return FinishedBlock(self.block, samples[0].index, self.image, label, meta, part)


def _planned_blocks(planner: SamplePlanner, blocks: list[int], shard: int, total: int) -> Iterator[tuple[int, list[PlannedSample]]]:
    """Yield (block, samples) in order, planning up to PLAN_AHEAD_BLOCKS ahead on a background thread."""

    def plan(b: int) -> list[PlannedSample]:
        return [planner.plan(i) for i in range(b * shard, min((b + 1) * shard, total))]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lungforge-planner") as pool:
        ahead: deque[tuple[int, Future[list[PlannedSample]]]] = deque()
        todo = iter(blocks)
        for b in todo:
            ahead.append((b, pool.submit(plan, b)))
            if len(ahead) >= PLAN_AHEAD_BLOCKS:
                break
        while ahead:
            b, future = ahead.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append((nxt, pool.submit(plan, nxt)))
            yield b, future.result()


def produce_blocks(
    inputs: AugmentInputs,
    store: Store,
    blocks: list[int],
    options: AugmentOptions,
    threshold: float | None,
    progress: Progress | None = None,
) -> int:
    """Generate, verify and commit `blocks`; returns the number of images sampled (retries included)."""
    total_slices = sum(min((b + 1) * options.shard_size, options.total) - b * options.shard_size for b in blocks)
    size = inputs.synthesizer.image_size
    planned = _planned_blocks(inputs.planner, blocks, options.shard_size, options.total)
    queue: deque[tuple[_Assembly, int, int]] = deque()
    open_blocks: list[_Assembly] = []
    sampled = done = 0
    with BlockWriter(store, WRITE_QUEUE_BLOCKS) as writer:
        while True:
            while len(queue) < options.batch_size:
                nxt = next(planned, None)
                if nxt is None:
                    break
                assembly = _Assembly(nxt[0], nxt[1], size)
                open_blocks.append(assembly)
                queue.extend((assembly, pos, 0) for pos in range(len(nxt[1])))
            if not queue:
                break
            batch = [queue.popleft() for _ in range(min(options.batch_size, len(queue)))]
            samples = [a.samples[pos] for a, pos, _ in batch]
            seeds = [s.seed if attempt == 0 else sample_seed(options.seed, s.index, attempt) for s, (_, _, attempt) in zip(samples, batch)]
            images = inputs.synthesizer.render(samples, seeds)
            sampled += len(batch)
            scores = weakest_contrast_hu(images, samples)
            retry = []
            for (assembly, pos, attempt), image, seed, score in zip(batch, images, seeds, scores):
                passed = threshold is None or bool(score >= threshold)
                final = passed or attempt >= options.retries or not inputs.synthesizer.seeded
                assembly.record(pos, image, seed, float(score), attempt, passed, final)
                if not final:
                    retry.append((assembly, pos, attempt + 1))
            queue.extendleft(reversed(retry))
            for assembly in [a for a in open_blocks if a.remaining == 0]:
                open_blocks.remove(assembly)
                writer.submit(assembly.finished(inputs.real, threshold, inputs.synthesizer))
                done += len(assembly.samples)
            if progress is not None:
                progress(done, total_slices, sampled)
    return sampled


def augment(options: AugmentOptions, progress: Progress | None = None) -> AugmentReport | None:
    """Run (or resume) an augment job; under torchrun every rank calls this.

    Returns the report on rank 0 and None on the other ranks. Nothing is written when the
    inputs, weights or layout request are invalid, when `out` exists without resume/overwrite,
    overlaps an input or is a real store. Rank 0 holds `<out>.lock` for the whole run, so a
    second augment into the same `out` is refused (LockError) while the first one lives, and
    every rank holds `<data>.lock` shared, so `prepare --overwrite` of `data` is refused meanwhile.
    """
    info = dist_info_from_env()
    check_output(options)
    with hold_lock(options.out, "store") if info.is_main else nullcontext():
        return _augment(options, info, progress)


def _augment(options: AugmentOptions, info: DistInfo, progress: Progress | None) -> AugmentReport | None:
    started = time.perf_counter()
    device = resolve_device(options.device, info.local_rank)
    inputs = load_inputs(options, device)
    options = inputs.options
    with closing(inputs.real), process_group(info, device):
        store = open_output(options, inputs, info)
        threshold = store.attrs.get("min_contrast_hu")
        shard = options.shard_size
        n_blocks = -(-options.total // shard)
        complete = bool(store.attrs.get("complete"))
        blocks = [] if complete else pending_blocks(store, owned_blocks(n_blocks, info), shard)
        sampled = produce_blocks(inputs, store, blocks, options, threshold, progress if info.is_main else None)
        written = sum(min((b + 1) * shard, options.total) - b * shard for b in blocks)
        sampled_all = round(mean_across_ranks(sampled, info, device) * info.world_size)
        written_all = round(mean_across_ranks(written, info, device) * info.world_size)
        blocks_run = round(mean_across_ranks(len(blocks), info, device) * info.world_size)
        barrier(info)
        if not info.is_main:
            return None
        if complete:
            parts = {"store": record_of_complete(store)}
        else:
            parts = merge_parts(store, n_blocks)
        seconds = time.perf_counter() - started
        report = summarize_augment_run(
            parts,
            out=str(options.out),
            written_this_run=written_all,
            blocks_skipped=n_blocks - blocks_run,
            min_contrast_hu=threshold,
            images_sampled=sampled_all,
            images_per_s=sampled_all / seconds if seconds > 0 else 0.0,
            seconds=seconds,
            first_batch_seconds=inputs.synthesizer.first_call_seconds,
            generator=store.attrs.get("generator", {}),
        )
        if not complete:
            columns = NODULE_COLUMNS + (("window",) if inputs.synthesizer.window is not None else ())
            table = {k: np.concatenate([p[k] for p in parts.values()]) for k in columns}
            table["nodule"] = copied_nodules(inputs.real, table["shape_source"])
            attrs: dict = {"verification": {"verified_first_try": report.verified_first_try, "verified_final": report.verified_final}}
            if isinstance(inputs.planner.library, LidcLibrary):
                attrs["lidc"] = inputs.planner.library.provenance(table["lidc_annotation"])
            store.finalize(options.total, inputs.real.series_uids, table, attrs)
        return report
