"""Tests of the weights registry: manifest, cache, downloads from a local HTTP server, import, verify."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from lungforge.core.errors import RegistryError
from lungforge.models.catalog import WeightsRegistry, resolve_weights, weights_sha256
from lungforge.models.checkpoint import load_checkpoint, save_checkpoint
from lungforge.models.presets import SPADEConfig
from lungforge.models.spade import SPADEGenerator

CFG = SPADEConfig(image_size=32, ngf=2, ndf=2)


@dataclass
class _ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)
    ignore_range: bool = False
    ranges: list[str | None] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    """Serves `state.files`, honours `Range: bytes=N-`, and can drop the connection mid-body once."""

    state: _ServerState

    def do_GET(self) -> None:
        data = self.state.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        requested = self.headers.get("Range")
        self.state.ranges.append(requested)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match and not self.state.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.state.cut_once:
            self.state.cut_once.discard(self.path)
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[tuple[str, _ServerState]]:
    state = _ServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture()
def weights_bytes(tmp_path: Path) -> bytes:
    torch.manual_seed(0)
    run = save_checkpoint(
        tmp_path / "src_run",
        kind="spade",
        preset="custom",
        model_config=CFG,
        state_dict=SPADEGenerator(CFG).state_dict(),
        step=3,
        store_fingerprint=None,
    )
    return (run / "model.safetensors").read_bytes()


def _manifest(tmp_path: Path, url: str, data: bytes, **overrides: object) -> Path:
    values = {"kind": "spade", "preset": "custom", "url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    values.update(overrides)
    body = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in values.items())
    path = tmp_path / "manifest.toml"
    path.write_text(f'[weights.demo]\n{body}\ndescription = "test weights"\n')
    return path


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LUNGFORGE_HOME", str(home))
    return home


def test_pull_downloads_verifies_and_caches(tmp_path: Path, home: Path, server, weights_bytes: bytes) -> None:
    url, state = server
    state.files["/w.safetensors"] = weights_bytes
    registry = WeightsRegistry(manifest=_manifest(tmp_path, url + "/w.safetensors", weights_bytes))
    seen: list[tuple[int, int | None]] = []
    path = registry.pull("demo", progress=lambda done, total: seen.append((done, total)))
    assert path == home / "weights" / "demo.safetensors"
    assert path.read_bytes() == weights_bytes
    assert sorted(p.name for p in path.parent.iterdir()) == ["demo.safetensors"]
    assert seen[-1] == (len(weights_bytes), len(weights_bytes))
    assert load_checkpoint(path).config == CFG  # the single file is self-describing
    registry.pull("demo")
    assert len(state.ranges) == 1  # already cached and verified: no second request


def test_corrupted_download_is_refused_and_nothing_cached(tmp_path: Path, home: Path, server, weights_bytes: bytes) -> None:
    url, state = server
    bad = bytearray(weights_bytes)
    bad[-1] ^= 0xFF
    state.files["/w.safetensors"] = bytes(bad)
    registry = WeightsRegistry(manifest=_manifest(tmp_path, url + "/w.safetensors", weights_bytes))
    expected = hashlib.sha256(weights_bytes).hexdigest()
    got = hashlib.sha256(bytes(bad)).hexdigest()
    with pytest.raises(RegistryError, match=f"expected sha256 {expected}, got {got}"):
        registry.pull("demo")
    assert list((home / "weights").iterdir()) == []


def test_wrong_size_download_is_refused(tmp_path: Path, home: Path, server, weights_bytes: bytes) -> None:
    url, state = server
    state.files["/w.safetensors"] = weights_bytes + b"extra"
    registry = WeightsRegistry(manifest=_manifest(tmp_path, url + "/w.safetensors", weights_bytes))
    with pytest.raises(RegistryError, match=f"expected {len(weights_bytes)} bytes"):
        registry.pull("demo")
    assert list((home / "weights").iterdir()) == []


def test_interrupted_download_resumes_with_range(tmp_path: Path, home: Path, server, weights_bytes: bytes) -> None:
    url, state = server
    state.files["/w.safetensors"] = weights_bytes
    state.cut_once.add("/w.safetensors")
    registry = WeightsRegistry(manifest=_manifest(tmp_path, url + "/w.safetensors", weights_bytes))
    with pytest.raises(RegistryError, match="interrupted after .* bytes; run `lungforge weights pull demo` again"):
        registry.pull("demo")
    part = home / "weights" / "demo.safetensors.part"
    partial = part.stat().st_size
    assert 0 < partial < len(weights_bytes)
    assert not (home / "weights" / "demo.safetensors").exists()

    path = registry.pull("demo")
    assert path.read_bytes() == weights_bytes and not part.exists()
    assert state.ranges == [None, f"bytes={partial}-"]


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, home: Path, server, weights_bytes: bytes) -> None:
    url, state = server
    state.files["/w.safetensors"] = weights_bytes
    state.ignore_range = True
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "demo.safetensors.part").write_bytes(weights_bytes[:100])
    registry = WeightsRegistry(manifest=_manifest(tmp_path, url + "/w.safetensors", weights_bytes))
    assert registry.pull("demo").read_bytes() == weights_bytes
    assert state.ranges == ["bytes=100-"]


def test_http_error_and_missing_url(tmp_path: Path, home: Path, server, weights_bytes: bytes) -> None:
    url, _ = server
    registry = WeightsRegistry(manifest=_manifest(tmp_path, url + "/absent", weights_bytes))
    with pytest.raises(RegistryError, match="HTTP 404"):
        registry.pull("demo")
    no_url = WeightsRegistry(manifest=_manifest(tmp_path, "", weights_bytes, sha256="", size=0))
    with pytest.raises(RegistryError, match="cannot be pulled: .* gives no url"):
        no_url.pull("demo")


def test_verify_detects_tampered_and_missing(tmp_path: Path, home: Path, server, weights_bytes: bytes) -> None:
    url, state = server
    state.files["/w.safetensors"] = weights_bytes
    registry = WeightsRegistry(manifest=_manifest(tmp_path, url + "/w.safetensors", weights_bytes))
    assert [r.status for r in registry.verify()] == ["missing"]
    path = registry.pull("demo")
    assert registry.verify("demo")[0].status == "ok"
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01
    path.write_bytes(bytes(data))
    result = registry.verify("demo")[0]
    assert result.status == "mismatch" and result.actual_sha256 == hashlib.sha256(bytes(data)).hexdigest()
    # pull replaces a tampered download with a fresh verified copy
    assert registry.pull("demo").read_bytes() == weights_bytes


def test_import_run_dir_and_resolve(tmp_path: Path, home: Path) -> None:
    run = save_checkpoint(
        tmp_path / "run",
        kind="spade",
        preset="custom",
        model_config=CFG,
        state_dict=SPADEGenerator(CFG).state_dict(),
        step=5,
        store_fingerprint="fp",
    )
    registry = WeightsRegistry(manifest=tmp_path / "no-manifest.toml")
    entry = registry.import_checkpoint(run, "mine")
    cached = home / "weights" / "mine.safetensors"
    assert entry.source == "user" and entry.kind == "spade" and entry.size == cached.stat().st_size
    assert entry.sha256 == weights_sha256(cached)
    ckpt = load_checkpoint(cached)
    assert ckpt.step == 5 and ckpt.meta["store_fingerprint"] == "fp"
    assert "[weights.mine]" in (home / "registry.toml").read_text()

    assert WeightsRegistry(manifest=tmp_path / "no-manifest.toml").entries()["mine"] == entry
    assert resolve_weights("mine", registry=registry) == cached
    assert resolve_weights(str(run), registry=registry) == run
    assert weights_sha256(run) == hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()

    with pytest.raises(RegistryError, match="already exist in the user registry; pass --force"):
        registry.import_checkpoint(run, "mine")
    registry.import_checkpoint(run, "mine", force=True)
    with pytest.raises(RegistryError, match="weights name must match"):
        registry.import_checkpoint(run, "Bad Name")

    cached.write_bytes(cached.read_bytes()[:-10])
    with pytest.raises(RegistryError, match="imported into .* fails verification"):
        resolve_weights("mine", registry=registry)


def test_unknown_names_and_paths(tmp_path: Path, home: Path) -> None:
    registry = WeightsRegistry(manifest=tmp_path / "no-manifest.toml")
    with pytest.raises(RegistryError, match="unknown weights 'nope'; known: none"):
        registry.pull("nope")
    with pytest.raises(RegistryError, match="neither an existing checkpoint path nor a registered weights name"):
        resolve_weights("nope", registry=registry)
    with pytest.raises(RegistryError, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.safetensors"), registry=registry)


def test_manifest_validation(tmp_path: Path, home: Path) -> None:
    path = _manifest(tmp_path, "http://x/w", b"", sha256="")
    with pytest.raises(RegistryError, match="needs its sha256"):
        WeightsRegistry(manifest=path).entries()
    path.write_text('[weights.x]\nkind = "gan"\npreset = "tiny"\n')
    with pytest.raises(RegistryError, match="kind must be 'sdm' or 'spade', got 'gan'"):
        WeightsRegistry(manifest=path).entries()
    path.write_text('[weights.x]\nkind = "sdm"\npreset = "tiny"\nsurprise = 1\n')
    with pytest.raises(RegistryError, match="unknown keys \\['surprise'\\]"):
        WeightsRegistry(manifest=path).entries()


def test_shipped_manifest_lists_paper_entries_without_downloads(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUNGFORGE_MANIFEST", raising=False)
    registry = WeightsRegistry()
    assert registry.manifest == Path(__file__).parents[2] / "weights" / "manifest.toml"
    entries = registry.entries()
    assert {"sdm-paper-luna16", "spade-paper-luna16"} <= set(entries)
    assert entries["sdm-paper-luna16"].kind == "sdm" and entries["spade-paper-luna16"].preset == "paper"
    with pytest.raises(RegistryError, match="No published checkpoint exists yet"):
        registry.pull("spade-paper-luna16")


def test_shipped_weights_found_in_wheel_and_checkout_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lungforge.models import catalog as registry_module

    monkeypatch.delenv("LUNGFORGE_MANIFEST", raising=False)
    checkout = tmp_path / "checkout"
    (checkout / "weights").mkdir(parents=True)
    (checkout / "weights" / "manifest.toml").write_text("")
    monkeypatch.setattr(registry_module, "__file__", str(checkout / "lungforge" / "models" / "catalog.py"))
    assert registry_module.shipped_manifest() == checkout / "weights" / "manifest.toml"
    wheel = tmp_path / "site-packages" / "lungforge"
    (wheel / "weights").mkdir(parents=True)
    (wheel / "weights" / "manifest.toml").write_text("")
    monkeypatch.setattr(registry_module, "__file__", str(wheel / "models" / "catalog.py"))
    assert registry_module.shipped_manifest() == wheel / "weights" / "manifest.toml"


def test_an_entry_whose_kind_differs_from_its_file_is_refused_at_verify_and_use(tmp_path: Path, home: Path, weights_bytes: bytes) -> None:
    """Issue 19 item 7: a SPADE file registered as `sdm` must not run (its --sampler would be ignored)."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "w.safetensors").write_bytes(weights_bytes)
    manifest = _manifest(shipped, "", weights_bytes, kind="sdm", path="w.safetensors")
    registry = WeightsRegistry(manifest=manifest)
    [result] = registry.verify("demo")
    assert (
        result.status == "mismatch"
        and result.detail.startswith("registered as kind 'sdm', but ")
        and "holds a 'spade' model" in result.detail
    )
    with pytest.raises(RegistryError, match="registered as kind 'sdm'"):
        resolve_weights("demo", registry=registry)
    assert (shipped / "w.safetensors").read_bytes() == weights_bytes  # the file itself is kept


def test_a_downloaded_file_of_another_preset_is_refused_and_not_fetched_again(
    tmp_path: Path, home: Path, server, weights_bytes: bytes
) -> None:
    url, state = server
    state.files["/w.safetensors"] = weights_bytes
    registry = WeightsRegistry(manifest=_manifest(tmp_path, url + "/w.safetensors", weights_bytes, preset="paper"))
    with pytest.raises(RegistryError, match="registered as preset 'paper', but .* was trained with preset 'custom'"):
        registry.pull("demo")
    with pytest.raises(RegistryError, match="registered as preset 'paper'"):
        registry.pull("demo")
    assert len(state.ranges) == 1  # the cached file is the registered one: its entry is wrong, no refetch
