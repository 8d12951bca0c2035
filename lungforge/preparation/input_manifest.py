"""What a `prepare` run reads, fingerprinted, so that `--resume` continues only from the same inputs.

Per scan: the sha256 of its `.mhd` header and the name, size and mtime of every file beside it
with the same stem (its `.raw`/`.zraw`), and the same for its seg mask; plus the sha256 of
`annotations.csv`. The manifest is saved in the store's `inputs` attribute when the run starts.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

from lungforge.luna16 import scans as luna16


def _files_by_stem(folder: Path) -> dict[str, list[Path]]:
    by_stem: dict[str, list[Path]] = defaultdict(list)
    if folder.is_dir():
        for file in folder.iterdir():
            by_stem[file.name.rsplit(".", 1)[0]].append(file)
    return by_stem


def _digest_files(files: list[Path]) -> str:
    """sha256 over each header's bytes and each other file's (name, size, mtime)."""
    digest = hashlib.sha256()
    for file in sorted(files, key=lambda f: f.name):
        stat = file.stat()
        digest.update(f"{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        if file.suffix == ".mhd":
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def input_manifest(root: Path, refs: list[luna16.ScanRef]) -> dict[str, Any]:
    """{"scans": {uid: digest}, "annotations_sha256": str | None} of the scans `refs` under `root`."""
    root = Path(root)
    seg = _files_by_stem(root / luna16.SEG_DIR)
    folders: dict[Path, dict[str, list[Path]]] = {}
    scans = {}
    for ref in refs:
        siblings = folders.setdefault(ref.mhd.parent, _files_by_stem(ref.mhd.parent))
        scans[ref.uid] = _digest_files(siblings[ref.uid] + seg.get(ref.uid, []))
    return {"scans": scans, "annotations_sha256": _sha256(root / luna16.ANNOTATIONS_FILE)}


def manifest_difference(root: Path, started: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """The first way `now` differs from the manifest the run `started` with (one phrase), or None."""
    if started is None:
        return "the run was started by a lungforge that did not record its inputs"
    before, after = started.get("scans", {}), now["scans"]
    added = sorted(set(after) - set(before))
    if added:
        return f"{len(added)} scans were added since the run started (first {added[0]})"
    removed = sorted(set(before) - set(after))
    if removed:
        return f"{len(removed)} scans were removed since the run started (first {removed[0]})"
    changed = sorted(uid for uid in after if after[uid] != before[uid])
    if changed:
        return f"{len(changed)} scans changed since the run started (header, data file or seg mask; first {changed[0]})"
    if started.get("annotations_sha256") != now["annotations_sha256"]:
        return f"{Path(root) / luna16.ANNOTATIONS_FILE} changed since the run started"
    return None
