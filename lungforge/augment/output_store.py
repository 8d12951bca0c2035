"""The synthetic output store of `augment`: created or resumed (same options, weights and real
store), its blocks shared among ranks, and the blocks' commit records merged at the end."""

from __future__ import annotations

import numpy as np

from lungforge.augment.inputs import AugmentInputs
from lungforge.augment.options import AugmentOptions, output_defining
from lungforge.augment.visibility import contrast_threshold_from_store
from lungforge.augment.writer import part_name
from lungforge.core.errors import SchemaError
from lungforge.core.process_group import DistInfo, barrier
from lungforge.store import Store, create_store, open_store


def _open_resumed(options: AugmentOptions, inputs: AugmentInputs) -> Store:
    store = open_store(options.out, "r+", require_complete=False)
    if store.kind != "synthetic":
        raise SchemaError(f"{options.out}: kind is {store.kind!r}, --resume expects a synthetic store written by augment")
    if len(store) != options.total or store.shard_slices != options.shard_size:
        raise SchemaError(
            f"{options.out}: holds {len(store)} slices in shards of {store.shard_slices}, "
            f"this run asks for {options.total} in shards of {options.shard_size}; resume with the same options"
        )
    before = output_defining(store.attrs.get("params", {}))
    now = output_defining(options.as_params())
    changed = sorted(k for k in now if before.get(k) != now[k])
    if changed:
        k = changed[0]
        raise SchemaError(
            f"{options.out}: was started with {k}={before.get(k)!r}, this run has {k}={now[k]!r}; resume with the same options"
        )
    _check_same_inputs(options, inputs, store)
    return store


def _check_same_inputs(options: AugmentOptions, inputs: AugmentInputs, store: Store) -> None:
    """A resume must use the very weights (sha256) and real store (fingerprint) the run started with."""
    generator, source = store.attrs.get("generator", {}), store.attrs.get("input", {})
    sha = inputs.synthesizer.sha256
    if generator.get("sha256") != sha:
        raise SchemaError(
            f"{options.out}: was started with weights {generator.get('weights')!r} (sha256 {generator.get('sha256')}), "
            f"--weights {options.weights} has sha256 {sha}; resume with the same weights"
        )
    fingerprint = inputs.real.fingerprint()
    if source.get("fingerprint") != fingerprint:
        raise SchemaError(
            f"{options.out}: was started from real store {source.get('path')} (fingerprint {source.get('fingerprint')}), "
            f"--data {options.data} has fingerprint {fingerprint}; resume with the same --data"
        )


def _create_output(options: AugmentOptions, inputs: AugmentInputs) -> Store:
    threshold = options.min_contrast_hu
    if threshold is None and options.nodules > 0:
        threshold = contrast_threshold_from_store(inputs.real, size=inputs.synthesizer.image_size)
    size = inputs.synthesizer.image_size
    return create_store(
        options.out,
        kind="synthetic",
        height=size,
        width=size,
        capacity=options.total,
        params=options.as_params(),
        extra_attrs={
            "generator": inputs.synthesizer.provenance(options.weights),
            "input": {"path": str(options.data), "fingerprint": inputs.real.fingerprint()},
            "min_contrast_hu": threshold,
            "sample_order": "indices [0, nodules) are nodule slices, [nodules, nodules + nodule_free) nodule-free",
        },
        overwrite=options.overwrite,
        shard_slices=options.shard_size,
    )


def open_output(options: AugmentOptions, inputs: AugmentInputs, info: DistInfo) -> Store:
    """Rank 0 creates (or reopens with --resume) the output; the other ranks open it after a barrier."""
    store = None
    if info.is_main:
        if options.resume and options.out.exists():
            store = _open_resumed(options, inputs)
        else:
            store = _create_output(options, inputs)
    barrier(info)
    if store is None:
        store = open_store(options.out, "r+", require_complete=False)
    return store


def owned_blocks(n_blocks: int, info: DistInfo) -> list[int]:
    """Blocks of rank `info.rank`: r, r + K, r + 2K, ..."""
    return list(range(info.rank, n_blocks, info.world_size))


def pending_blocks(store: Store, blocks: list[int], shard: int) -> list[int]:
    """The blocks of `blocks` whose `meta/done` flags are not all set."""
    done = store.meta("done")
    return [b for b in blocks if not done[b * shard : (b + 1) * shard].all()]


def merge_parts(store: Store, n_blocks: int) -> dict[str, dict[str, np.ndarray]]:
    parts = store.load_parts()
    missing = [b for b in range(n_blocks) if part_name(b) not in parts]
    if missing:
        raise SchemaError(f"{store.path}: blocks {missing[:5]} have no commit record; rerun with --resume")
    return {name: parts[name] for name in sorted(parts) if name.startswith("block-")}


def record_of_complete(store: Store) -> dict[str, np.ndarray]:
    """A part-like record of an already finished store (its first-try results are no longer known)."""
    table = store.nodules()
    return {**table, "has_nodule": store.meta("has_nodule"), "verified": store.meta("verified")}
