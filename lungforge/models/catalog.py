"""Weights registry: the shipped manifest, a user registry, the local cache, downloads and sha256 checks.

An entry names ONE self-describing `.safetensors` checkpoint (its config embedded in the
safetensors metadata, see `lungforge.models.checkpoint`). Entries come from the shipped
`weights/manifest.toml` (override with `$LUNGFORGE_MANIFEST`) with the user registry
`$LUNGFORGE_HOME/registry.toml` (imported weights) merged over it. Downloads land in
`$LUNGFORGE_HOME/weights/<name>.safetensors` (default home `~/.cache/lungforge`); every file is
checked against its recorded size and sha256, and its embedded config against the entry's kind
and preset, before it is used (so an SPADE file registered as `sdm` is refused, not run).

Writers serialize on lock files in `$LUNGFORGE_HOME/locks/` (:mod:`lungforge.core.locks`): `import`
holds `registry.lock` from its existence check to the registry write, and `pull` holds
`<name>.download.lock` while it downloads, so concurrent imports of one name cannot both
succeed and a registry entry always matches its file.
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from lungforge.core.errors import RegistryError
from lungforge.core.locks import hold_lock

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ProgressFn = Callable[[int, "int | None"], None]
"""Called with (bytes done, bytes expected or None) while a download runs."""

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
LOCK_TIMEOUT_S = 600.0
"""How long an import or pull waits for another process's import or download of the same thing."""


@dataclass(frozen=True)
class WeightsEntry:
    """One registered checkpoint file. `size` in bytes (0 = unknown); `path` is a shipped local file
    relative to the manifest's directory; `recipe` records how it was trained (command, seed,
    steps); `source` says which registry defined it."""

    name: str
    kind: Literal["sdm", "spade"]
    preset: str
    url: str = ""
    sha256: str = ""
    size: int = 0
    licence: str = ""
    description: str = ""
    path: str = ""
    recipe: str = ""
    source: Literal["manifest", "user"] = "manifest"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of re-hashing one entry's file: `ok`, `mismatch` or `missing` (not cached/shipped)."""

    name: str
    status: Literal["ok", "mismatch", "missing"]
    path: Path
    expected_sha256: str
    actual_sha256: str | None = None
    detail: str = ""


def lungforge_home() -> Path:
    """`$LUNGFORGE_HOME`, default `~/.cache/lungforge`."""
    return Path(os.environ.get("LUNGFORGE_HOME") or Path.home() / ".cache" / "lungforge").expanduser()


def shipped_weights_dir() -> Path:
    """The shipped `weights/` folder: `lungforge/weights/` in a wheel install (package data), else
    the source checkout's top-level `weights/` (editable install or PYTHONPATH)."""
    packaged = Path(__file__).parents[1] / "weights"
    return packaged if (packaged / "manifest.toml").is_file() else Path(__file__).parents[2] / "weights"


def shipped_manifest() -> Path:
    """`$LUNGFORGE_MANIFEST`, default the `weights/manifest.toml` shipped with lungforge."""
    override = os.environ.get("LUNGFORGE_MANIFEST")
    return Path(override).expanduser() if override else shipped_weights_dir() / "manifest.toml"


def weights_sha256(path: Path) -> str:
    """sha256 of the weights of `path`: a `.safetensors` file, or a run dir's `model.safetensors`."""
    from lungforge.core.fileio import sha256_file
    from lungforge.models.checkpoint import MODEL_FILE

    path = Path(path)
    return sha256_file(path / MODEL_FILE if path.is_dir() else path)


class WeightsRegistry:
    """Entries of the shipped manifest and the user registry, and the files they name."""

    def __init__(self, home: Path | None = None, manifest: Path | None = None) -> None:
        self.home = Path(home) if home is not None else lungforge_home()
        self.manifest = Path(manifest) if manifest is not None else shipped_manifest()

    @property
    def user_registry(self) -> Path:
        return self.home / "registry.toml"

    def entries(self) -> dict[str, WeightsEntry]:
        """All entries by name, user entries replacing shipped ones of the same name."""
        merged = _read_entries(self.manifest, "manifest") if self.manifest.is_file() else {}
        if self.user_registry.is_file():
            merged.update(_read_entries(self.user_registry, "user"))
        return merged

    def entry(self, name: str) -> WeightsEntry:
        """The entry called `name`; RegistryError listing the known names otherwise."""
        entries = self.entries()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise RegistryError(f"unknown weights {name!r}; known: {known} (see `lungforge weights list`)")
        return entries[name]

    def cache_path(self, name: str) -> Path:
        return self.home / "weights" / f"{name}.safetensors"

    def local_path(self, entry: WeightsEntry) -> Path:
        """Where the entry's file is or will be: the shipped file for `path` entries, else the cache."""
        return self.manifest.parent / entry.path if entry.path else self.cache_path(entry.name)

    def check(self, entry: WeightsEntry) -> VerifyResult:
        """Re-hash the entry's local file and compare size and sha256 with the recorded ones."""
        path = self.local_path(entry)
        if not path.is_file():
            return VerifyResult(entry.name, "missing", path, entry.sha256)
        size = path.stat().st_size
        if entry.size and size != entry.size:
            return VerifyResult(entry.name, "mismatch", path, entry.sha256, None, f"expected {entry.size} bytes, got {size}")
        from lungforge.core.fileio import sha256_file

        actual = sha256_file(path)
        if actual != entry.sha256:
            return VerifyResult(entry.name, "mismatch", path, entry.sha256, actual, f"expected sha256 {entry.sha256}, got {actual}")
        problem = _entry_disagrees(entry, path)
        if problem:
            return VerifyResult(entry.name, "mismatch", path, entry.sha256, actual, problem)
        return VerifyResult(entry.name, "ok", path, entry.sha256, actual)

    def verify(self, name: str | None = None) -> list[VerifyResult]:
        """Check one entry or every entry; nothing is downloaded."""
        entries = [self.entry(name)] if name is not None else sorted(self.entries().values(), key=lambda e: e.name)
        return [self.check(e) for e in entries]

    def pull(self, name: str, progress: ProgressFn | None = None) -> Path:
        """Return the verified local file of `name`, downloading (or resuming) it first when needed."""
        entry = self.entry(name)
        result = self.check(entry)
        if result.status == "ok":
            return result.path
        if entry.path or entry.source == "user":
            return self._pull_checked(entry, result, progress)
        with hold_lock(self.cache_path(name), "weights download", LOCK_TIMEOUT_S, self.home / "locks" / f"{name}.download.lock"):
            # Another process may have finished the download while this one waited.
            return self._pull_checked(entry, self.check(entry), progress)

    def _pull_checked(self, entry: WeightsEntry, result: VerifyResult, progress: ProgressFn | None) -> Path:
        name = entry.name
        if result.status == "ok":
            return result.path
        if entry.path or entry.source == "user":
            where = "shipped with lungforge" if entry.path else f"imported into {self.user_registry}"
            problem = "is missing" if result.status == "missing" else f"fails verification ({result.detail})"
            raise RegistryError(f"weights {name!r} ({where}) at {result.path} {problem}")
        if result.actual_sha256 == entry.sha256:  # the registered file itself: its entry is wrong
            raise RegistryError(f"weights {name!r} in {self.manifest}: {result.detail}")
        if not entry.url:
            advice = entry.description or "train one with `lungforge train` and `lungforge weights import` it"
            raise RegistryError(f"weights {name!r} cannot be pulled: {self.manifest} gives no url. {advice}")
        if result.status == "mismatch":
            result.path.unlink()
        path = self._download(entry, progress)
        problem = _entry_disagrees(entry, path)
        if problem:
            raise RegistryError(f"weights {name!r} in {self.manifest}: {problem}")
        return path

    def resolve(self, name_or_path: str, progress: ProgressFn | None = None) -> Path:
        """An existing path as is (run dir or `.safetensors`), else a registry name pulled and verified."""
        path = Path(name_or_path).expanduser()
        if path.exists():
            return path
        if name_or_path in self.entries():
            return self.pull(name_or_path, progress)
        if os.sep in name_or_path or path.suffix:
            raise RegistryError(f"weights file {path} does not exist")
        known = ", ".join(sorted(self.entries())) or "none"
        raise RegistryError(f"{name_or_path!r} is neither an existing checkpoint path nor a registered weights name (known: {known})")

    def import_checkpoint(self, source: Path, name: str, *, force: bool = False) -> WeightsEntry:
        """Validate a run dir or `.safetensors`, copy it into the cache as one self-describing file, register it."""
        if not NAME_PATTERN.match(name):
            raise RegistryError(f"weights name must match {NAME_PATTERN.pattern}, got {name!r}")
        with hold_lock(self.user_registry, "weights registry", LOCK_TIMEOUT_S, self.home / "locks" / "registry.lock"):
            return self._import_locked(Path(source), name, force)

    def _import_locked(self, source: Path, name: str, force: bool) -> WeightsEntry:
        from lungforge.core.fileio import sha256_file
        from lungforge.models.checkpoint import load_checkpoint, read_checkpoint_meta, write_safetensors

        existing = self.entries().get(name)
        if existing is not None and not force:
            raise RegistryError(f"weights {name!r} already exist in the {existing.source} registry; pass --force to replace")
        ckpt = load_checkpoint(Path(source))
        _, meta = read_checkpoint_meta(Path(source))
        target = self.cache_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(target, ckpt.state_dict, meta)
        entry = WeightsEntry(
            name=name,
            kind=ckpt.kind,
            preset=ckpt.preset,
            sha256=sha256_file(target),
            size=target.stat().st_size,
            description=f"imported from {Path(source).resolve()} (step {ckpt.step})",
            source="user",
        )
        users = _read_entries(self.user_registry, "user") if self.user_registry.is_file() else {}
        users[name] = entry
        _write_entries(self.user_registry, users)
        return entry

    def _download(self, entry: WeightsEntry, progress: ProgressFn | None) -> Path:
        target = self.cache_path(entry.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        offset = part.stat().st_size if part.is_file() else 0
        if entry.size and offset > entry.size:
            part.unlink()
            offset = 0
        if not (entry.size and offset == entry.size):
            _fetch(entry, part, offset, progress)
        self._verify_part(entry, part)
        os.replace(part, target)
        return target

    def _verify_part(self, entry: WeightsEntry, part: Path) -> None:
        from lungforge.core.fileio import sha256_file

        size = part.stat().st_size
        problem = ""
        if entry.size and size != entry.size:
            problem = f"expected {entry.size} bytes, got {size}"
        else:
            actual = sha256_file(part)
            if actual != entry.sha256:
                problem = f"expected sha256 {entry.sha256}, got {actual}"
        if problem:
            part.unlink()
            raise RegistryError(f"download of {entry.name!r} from {entry.url} refused: {problem}; nothing was cached")


def resolve_weights(name_or_path: str, *, registry: WeightsRegistry | None = None, progress: ProgressFn | None = None) -> Path:
    """What `augment` and `bench` call: an existing run dir / `.safetensors`, or a registry name
    (pulled if needed and always sha256-verified before use)."""
    return (registry or WeightsRegistry()).resolve(name_or_path, progress)


def _entry_disagrees(entry: WeightsEntry, path: Path) -> str:
    """Why the checkpoint at `path` cannot be what `entry` registers (its kind or preset differs, or
    its config is refused), or "" when it fits."""
    from lungforge.core.errors import CheckpointError
    from lungforge.models.checkpoint import checkpoint_config

    try:
        _, kind, preset, _ = checkpoint_config(path)
    except CheckpointError as exc:
        return str(exc)
    if kind != entry.kind:
        return f"registered as kind {entry.kind!r}, but {path} holds a {kind!r} model"
    if preset != entry.preset:
        return f"registered as preset {entry.preset!r}, but {path} was trained with preset {preset!r}"
    return ""


def _fetch(entry: WeightsEntry, part: Path, offset: int, progress: ProgressFn | None) -> None:
    """Stream `entry.url` into `part`, asking for the bytes after `offset` with an HTTP Range request."""
    from lungforge.core.version import __version__

    headers = {"User-Agent": f"lungforge/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(entry.url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # the part file already holds everything the server has; verification decides
        raise RegistryError(f"download of {entry.name!r} from {entry.url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryError(f"download of {entry.name!r} from {entry.url} failed: {reason}") from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range request and sends the whole file
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else (entry.size or None)
        done = offset
        with open(part, "ab" if offset else "wb") as fh:
            try:
                while chunk := response.read(CHUNK_BYTES):
                    fh.write(chunk)
                    done += len(chunk)
                    if entry.size and done > entry.size:
                        break
                    if progress is not None:
                        progress(done, total)
            except (OSError, http.client.HTTPException):
                pass  # handled below as an interrupted download: the part file is kept for resuming
            fh.flush()
            os.fsync(fh.fileno())
    if total is not None and done < total:
        raise RegistryError(
            f"download of {entry.name!r} interrupted after {done} of {total} bytes; "
            f"run `lungforge weights pull {entry.name}` again to resume"
        )


def _read_entries(path: Path, source: Literal["manifest", "user"]) -> dict[str, WeightsEntry]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"weights registry {path} is not readable TOML: {exc}") from None
    table = data.get("weights", {})
    if not isinstance(table, dict):
        raise RegistryError(f"weights registry {path}: 'weights' must be a table of entries")
    allowed = {f.name for f in fields(WeightsEntry)} - {"name", "source"}
    entries = {}
    for name, values in table.items():
        if not isinstance(values, dict):
            raise RegistryError(f"weights registry {path}: entry {name!r} must be a table")
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise RegistryError(f"weights registry {path}: entry {name!r} has unknown keys {unknown}, expected some of {sorted(allowed)}")
        try:
            entry = WeightsEntry(name=name, source=source, **values)
        except TypeError as exc:
            raise RegistryError(f"weights registry {path}: entry {name!r}: {exc}") from None
        _validate_entry(path, entry)
        entries[name] = entry
    return entries


def _validate_entry(path: Path, entry: WeightsEntry) -> None:
    where = f"weights registry {path}: entry {entry.name!r}"
    if not NAME_PATTERN.match(entry.name):
        raise RegistryError(f"{where}: name must match {NAME_PATTERN.pattern}")
    if entry.kind not in ("sdm", "spade"):
        raise RegistryError(f"{where}: kind must be 'sdm' or 'spade', got {entry.kind!r}")
    if not isinstance(entry.size, int) or entry.size < 0:
        raise RegistryError(f"{where}: size must be a byte count >= 0, got {entry.size!r}")
    if entry.sha256 and not SHA256_PATTERN.match(entry.sha256):
        raise RegistryError(f"{where}: sha256 must be 64 lowercase hex digits, got {entry.sha256!r}")
    if (entry.url or entry.path or entry.source == "user") and not entry.sha256:
        raise RegistryError(f"{where}: a file to use needs its sha256")
    if entry.url and entry.path:
        raise RegistryError(f"{where}: give either url or path, not both")


def _write_entries(path: Path, entries: dict[str, WeightsEntry]) -> None:
    import tomli_w

    from lungforge.core.fileio import atomic_write_bytes

    table = {}
    for name, entry in sorted(entries.items()):
        values = asdict(entry)
        del values["name"], values["source"]
        table[name] = {k: v for k, v in values.items() if v != "" or k in ("url", "sha256")}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, tomli_w.dumps({"weights": table}).encode())
