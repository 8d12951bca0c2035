"""Fréchet Inception Distance between a real and a synthetic store (pytorch-fid's network and maths).

Features: pytorch-fid's InceptionV3 2048-d pool features of images in [0, 1], grayscale repeated
to 3 channels. Every store is first resized (bilinear, antialiased) to one working size
(`FidConfig.size`, recorded in the result); only then does the network's own resize to 299 run,
so stores kept at different resolutions (SPADE 512², SDM 256²) are compared on equal terms. The FID weights are loaded
from a local file (never fetched behind the user's back except as the documented last resort).
Nodule and nodule-free slices are scored separately, plus all slices together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg
from torch import nn
from torch.nn import functional as F

from lungforge.bench.protocol.selection import selected
from lungforge.core.choices import MAX_SIZE_PX, MIN_FID_SIZE_PX, Features, FidSplit, Selection, check_choice, check_range
from lungforge.core.errors import CheckpointError, InputError, torch_load_reason
from lungforge.core.seeds import check_seed
from lungforge.data.resize import resize_images_uint8
from lungforge.store import SPLIT_IDS, Store

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_DIMS = 2048
RANDOM_DIMS = 64
MIN_RELIABLE = 2048
SUBSETS = ("nodule", "nodule_free", "all")


class InceptionUnavailable(InputError):
    """The FID Inception weights file is not available locally and could not be downloaded."""


def hub_weights_path() -> Path:
    """Where torch hub keeps the FID weights: `torch.hub.get_dir()/checkpoints/<name>`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_NAME


def find_inception_weights(explicit: Path | None = None, allow_download: bool = True) -> Path:
    """The FID weights file: `explicit`, else the torch hub cache, else a download into that cache."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise InceptionUnavailable(f"--inception-weights {explicit}: no such file (expected {FID_WEIGHTS_NAME})")
        return Path(explicit)
    cached = hub_weights_path()
    if cached.is_file():
        return cached
    reason = "download disabled"
    if allow_download:
        from pytorch_fid.inception import FID_WEIGHTS_URL

        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(cached), progress=False)
            return cached
        except Exception as exc:  # offline machines raise URLError, socket errors, ...
            reason = f"download failed: {type(exc).__name__}"
    raise InceptionUnavailable(
        f"FID Inception weights not found ({reason}); put {FID_WEIGHTS_NAME} in {cached.parent} or pass --inception-weights FILE"
    )


def fid_inception_module() -> nn.Module:
    """The FID variant of torchvision's InceptionV3 (pytorch-fid's patched blocks), random weights."""
    from pytorch_fid import inception as pfi

    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


def load_fid_inception(path: Path) -> nn.Module:
    """pytorch-fid's `InceptionV3([3])` (2048-d pool features) with the weights in `path`.

    pytorch-fid builds its network through `fid_inception_v3()`, which always downloads; we hand
    it a builder that loads the local file instead, so the wrapper (resize to 299, scaling to
    [-1, 1], block layout) stays pytorch-fid's own.
    """
    from pytorch_fid import inception as pfi

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or pickled-object files
        raise CheckpointError(f"{path}: not a loadable FID Inception state dict ({torch_load_reason(exc)})") from None
    net = fid_inception_module()
    expected = net.state_dict()
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, expected the FID Inception state dict")
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or extra or shapes:
        detail = f"{len(missing)} keys missing, {len(extra)} unexpected, {len(shapes)} of other shape"
        first = (missing or extra or shapes)[0]
        raise CheckpointError(f"{path}: is not the FID InceptionV3 network {FID_WEIGHTS_NAME} ({detail}; e.g. {first!r})")
    net.load_state_dict(state)
    original = pfi.fid_inception_v3
    pfi.fid_inception_v3 = lambda: net
    try:
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FID_DIMS]], resize_input=True, normalize_input=True)
    finally:
        pfi.fid_inception_v3 = original
    return model.eval()


class RandomFeatures(nn.Module):
    """A fixed random projection of 16×16 average-pooled images: for tests only, not comparable FID."""

    projection: torch.Tensor

    def __init__(self, dims: int = RANDOM_DIMS, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(3 * 16 * 16, dims, generator=generator) / 16.0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pooled = F.adaptive_avg_pool2d(x, (16, 16)).flatten(1)
        return [torch.tanh(pooled @ self.projection)[:, :, None, None]]


@dataclass
class Moments:
    """Running count, sum and outer-product sum of feature vectors (float64), for mean and cov."""

    dims: int
    n: int = 0
    total: np.ndarray = field(init=False)
    outer: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.total = np.zeros(self.dims)
        self.outer = np.zeros((self.dims, self.dims))

    def add(self, features: np.ndarray) -> None:
        f = features.astype(np.float64)
        self.n += f.shape[0]
        self.total += f.sum(axis=0)
        self.outer += f.T @ f

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (D,) and unbiased covariance (D, D), as numpy.mean / numpy.cov(rowvar=False)."""
        mu = self.total / self.n
        cov = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, cov


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2): pytorch-fid's own function."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    # its singular-matrix notice must not pollute --json stdout; scipy warns about its sqrtm call
    # (deprecations, and singular products when there are fewer images than feature dimensions)
    with contextlib.redirect_stdout(None), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


def _blocks(indices: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, indices.size, batch_size):
        yield indices[start : start + batch_size]


@torch.no_grad()
def store_moments(
    store: Store,
    indices: np.ndarray,
    extractor: nn.Module,
    dims: int,
    batch_size: int,
    device: torch.device,
    progress: Any = None,
    label: str = "",
    *,
    size: int,
) -> dict[str, Moments]:
    """Feature moments of slices `indices` of `store`, by subset (nodule, nodule_free, all).

    Slices are streamed from the store in batches, resized (antialiased) to (size, size) and fed
    as (B, 3, size, size) floats in [0, 1].
    """
    has = store.meta("has_nodule")
    moments = {s: Moments(dims) for s in SUBSETS}
    task = progress.add_task(f"fid {label}", total=int(indices.size), status="") if progress else None
    for block in _blocks(np.sort(indices), batch_size):
        images = resize_images_uint8(np.asarray(store.image.oindex[block, :, :]), size)
        x = torch.from_numpy(images).to(device).float().div(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
        feats = extractor(x)[0].squeeze(-1).squeeze(-1).cpu().numpy()
        nod = has[block]
        moments["all"].add(feats)
        moments["nodule"].add(feats[nod])
        moments["nodule_free"].add(feats[~nod])
        if progress:
            progress.advance(task, block.size)
    return moments


@dataclass(frozen=True)
class FidConfig:
    """Options of `bench fid`; `size` is the working resolution (pixels) every store is resized to."""

    size: int = 256
    real_split: FidSplit = "all"
    features: Features = "inception"
    batch_size: int = 50
    seed: int = 0
    select: Selection = "first-draw"
    """Synthetic slices scored: the detectors' rule by default, and `bench all` passes the detector's rule, so FID scores exactly
    the slices the detectors train on (:mod:`lungforge.bench.protocol.selection`)."""

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check_choice("real_split", self.real_split, FidSplit)
        check_choice("features", self.features, Features)
        check_choice("select", self.select, Selection)
        check_range("size", self.size, MIN_FID_SIZE_PX, MAX_SIZE_PX)
        check_range("batch_size", self.batch_size, 1)


@dataclass(frozen=True)
class FidScore:
    """FID of one subset of slices: `fid` None when either side has fewer than 2 images; image counts."""

    fid: float | None
    n_real: int
    n_synthetic: int


@dataclass(frozen=True)
class FidResult:
    """FID of every synthetic store, per subset (nodule, nodule_free, all): `scores` {name: {subset:
    :class:`FidScore`}}, `dims` the feature size, `warnings` one line per subset with too few images."""

    config: FidConfig
    dims: int
    scores: dict[str, dict[str, FidScore]]
    warnings: list[str]

    @property
    def comparable(self) -> bool:
        """Inception features: comparable with published FID (random features are not)."""
        return self.config.features == "inception"

    def to_dict(self) -> dict[str, Any]:
        """{"features", "comparable", "size", "real_split", "select", "dims", "scores": {name: {subset:
        {"fid", "n_real", "n_synthetic"}}}, "warnings"}."""
        c = self.config
        return {
            "features": c.features,
            "comparable": self.comparable,
            "size": c.size,
            "real_split": c.real_split,
            "select": c.select,
            "dims": self.dims,
            "scores": {
                name: {subset: dataclasses.asdict(score) for subset, score in subsets.items()} for name, subsets in self.scores.items()
            },
            "warnings": list(self.warnings),
        }


def real_indices(real: Store, real_split: FidSplit) -> np.ndarray:
    """Indices of the real slices of `real_split` (all, train or test patients)."""
    if real_split == "all":
        return np.arange(len(real))
    if real_split not in SPLIT_IDS:
        raise InputError(f"--real-split must be all, train or test, got {real_split!r}")
    return np.flatnonzero(real.meta("split") == SPLIT_IDS[real_split])


def make_extractor(config: FidConfig, weights: Path | None, device: torch.device, allow_download: bool = True) -> tuple[nn.Module, int]:
    """The feature network on `device` and its feature dimension."""
    if config.features == "random":
        return RandomFeatures(seed=config.seed).to(device).eval(), RANDOM_DIMS
    if config.features != "inception":
        raise InputError(f"--features must be inception or random, got {config.features!r}")
    return load_fid_inception(find_inception_weights(weights, allow_download)).to(device), FID_DIMS


def compute_fid(
    real: Store,
    synthetic: dict[str, Store],
    config: FidConfig,
    extractor: nn.Module,
    dims: int,
    device: torch.device,
    progress: Any = None,
) -> FidResult:
    """FID of every synthetic store's selected slices (`config.select`) against the real slices,
    per subset (nodule, nodule_free, all); a subset with fewer than 2 images on either side has
    fid None, one with fewer than 2048 a warning."""
    notes: list[str] = []
    if config.size < 2:
        raise InputError(f"FID working size must be >= 2 pixels, got {config.size}")
    real_m = store_moments(
        real, real_indices(real, config.real_split), extractor, dims, config.batch_size, device, progress, "real", size=config.size
    )
    scores: dict[str, dict[str, FidScore]] = {}
    for name, store in synthetic.items():
        used = np.flatnonzero(selected(store, config.select)) if store.kind == "synthetic" else np.arange(len(store))
        syn_m = store_moments(store, used, extractor, dims, config.batch_size, device, progress, name, size=config.size)
        scores[name] = {}
        for subset in SUBSETS:
            r, s = real_m[subset], syn_m[subset]
            value = None
            if min(r.n, s.n) >= 2:
                value = frechet_distance(*s.mean_cov(), *r.mean_cov())
            if min(r.n, s.n) < MIN_RELIABLE:
                notes.append(
                    f"{name} {subset}: {s.n} synthetic / {r.n} real images; FID is biased below {MIN_RELIABLE} images"
                    + ("" if value is not None else " and undefined below 2")
                )
            scores[name][subset] = FidScore(value if value is not None and np.isfinite(value) else None, r.n, s.n)
    return FidResult(config, dims, scores, notes)
