"""The training driver shared by SDM and SPADE: data stream, checkpoints, resume, logs, grids.

A run directory holds `model.safetensors` + `config.json` (the latest checkpoint), `resume.pt`
(everything needed to continue bit-for-bit), `metrics.jsonl` (one line per step) and
`samples/step_NNNNNNN.png` grids. Per-step randomness comes from a generator seeded by
(seed, rank, step), so a resumed run draws exactly what an uninterrupted one would. Options
and results are in :mod:`lungforge.training.options`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from lungforge.core.cpus import capped_workers
from lungforge.core.device import Precision, check_precision, resolve_device
from lungforge.core.errors import CheckpointError, InputError
from lungforge.core.fileio import replace_together
from lungforge.core.process_group import DistInfo, barrier, dist_info_from_env, mean_across_ranks, process_group
from lungforge.data.dataset import SliceDataset
from lungforge.models.checkpoint import RESUME_FILE, WRITE_ERRORS, TrainingRecord, checkpoint_meta, checkpoint_writers
from lungforge.models.presets import Preset, SDMConfig, SPADEConfig, config_to_dict
from lungforge.store import SPLIT_IDS, Store, nodule_ids, open_store
from lungforge.training.data import LoaderSpec, check_label_ids, open_train_split, train_batches
from lungforge.training.grid import save_grid
from lungforge.training.options import StepReport, TrainOptions, TrainResult
from lungforge.training.state import capture_rng_state, load_training_state, restore_rng_state, training_state_writer
from lungforge.training.windows import InpaintWindows, window_batches

Kind = Literal["sdm", "spade"]
STATE_FORMAT = "lungforge.train/1"
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"


class Trainer(Protocol):
    """One kind of model being trained (see `loop_sdm.SDMTrainer`, `loop_spade.SPADETrainer`)."""

    @property
    def kind(self) -> Kind: ...

    @property
    def config(self) -> SDMConfig | SPADEConfig: ...

    def train_step(self, image: Tensor, label: Tensor, generator: torch.Generator, context: Tensor | None = None) -> dict[str, float]:
        """One optimiser step on image (B, 1, S, S) in [-1, 1] and label (B, S, S); returns losses with `loss`.

        `context` (B, 2, S, S): an inpainting SDM's windows' known image and edit mask (None otherwise).
        """

    def sample(self, label: Tensor, generator: torch.Generator, context: Tensor | None = None) -> Tensor:
        """Images (B, 1, S, S) in [-1, 1] for label maps (B, S, S) (and `context`), with the weights a checkpoint ships."""

    def checkpoint_weights(self) -> dict[str, Tensor]:
        """The state dict written to `model.safetensors`."""

    def hyperparameters(self) -> dict[str, Any]:
        """Resolved optimiser/EMA settings, recorded beside the weights."""

    def state_dict(self) -> dict[str, Any]:
        """Plain training state (weights, optimisers, EMA, scaler) for `resume.pt`."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


TrainerFactory = Callable[[Preset, TrainOptions, torch.device, Precision, DistInfo], Trainer]


def step_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of one rank's step: seeded by (seed, rank, step) alone, so resume is exact."""
    entropy = int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator(device=device).manual_seed(entropy & 0x7FFF_FFFF_FFFF_FFFF)


def _grid_inputs(items: SliceDataset | InpaintWindows, count: int, seed: int) -> dict[str, Tensor]:
    """A fixed set of train label maps (count, S, S) chosen by seed, used for every grid of a run.

    For an inpainting run the items are windows, and their `context` (count, 2, S, S) comes along.
    """
    rng = np.random.default_rng([seed, 0x6A1D])
    picks = np.sort(rng.choice(len(items), size=min(count, len(items)), replace=False))
    if isinstance(items, InpaintWindows):
        chosen = [items[(int(i), False, int(i))] for i in picks]
        return {"label": torch.stack([c["label"] for c in chosen]), "context": torch.stack([c["context"] for c in chosen])}
    return {"label": torch.stack([items[int(i)]["label"] for i in picks])}


def _check_resume_state(state: dict[str, Any], path: Path, kind: Kind, preset: Preset, fingerprint: str) -> None:
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} has format {state.get('format')!r}, expected {STATE_FORMAT!r}")
    if state.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {state.get('kind')!r} run, but `train {kind}` was asked for")
    if state.get("preset") != preset.name:
        raise CheckpointError(
            f"{path} was trained with preset {state.get('preset')!r}, but --preset is {preset.name!r}; "
            f"pass --preset {state.get('preset')} or use another --out"
        )
    config = preset.sdm if kind == "sdm" else preset.spade
    if state.get("model_config") != config_to_dict(config):
        raise CheckpointError(f"{path} was trained with a different {preset.name!r} model config than this lungforge's")
    if state.get("store_fingerprint") != fingerprint:
        raise CheckpointError(f"{path} was trained on store fingerprint {state.get('store_fingerprint')}, but --data has {fingerprint}")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines past `step` (written after the checkpoint a resumed run restarts from)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(f"{line}\n" for line in kept))


def fit(
    kind: Kind,
    factory: TrainerFactory,
    options: TrainOptions,
    on_step: Callable[[StepReport], None] | None = None,
) -> TrainResult:
    """Train a model of `kind` on the train split of `options.data` into `options.out`.

    Works alone or under torchrun (one process per GPU/CPU rank; rank 0 writes files).
    """
    if kind == "spade" and options.window is not None:
        raise InputError("--inpaint/--window apply to SDM training only")
    info = dist_info_from_env()
    device = resolve_device(options.device, info.local_rank)
    precision = check_precision(options.precision, device)
    preset = options.preset_resolved()
    config = preset.sdm if kind == "sdm" else preset.spade
    if kind == "sdm" and options.vgg_weights is not None:
        raise InputError("--vgg-weights applies to SPADE only")
    if kind == "spade" and options.compile:
        raise InputError("--compile applies to SDM training only")
    with process_group(info, device):
        return _fit(kind, factory, options, on_step, info, device, precision, preset, config)


@dataclass(frozen=True)
class _RunInputs:
    """What a run reads before it writes: the store (held shared until the run ends), its train
    slices, the items trained on (slices or inpainting windows), the resume state and the seed."""

    store: Store
    slices: SliceDataset
    items: SliceDataset | InpaintWindows
    store_fingerprint: str
    seen: TrainingRecord
    state: dict[str, Any] | None
    seed: int


def training_record(store: Store) -> TrainingRecord:
    """The patients (series uids, sorted), nodule slices and distinct nodules
    (:func:`~lungforge.store.nodule_ids`) of `store`'s train split: what weights trained on
    it see (:func:`~lungforge.training.data.open_train_split`)."""
    train = store.meta("split") == SPLIT_IDS["train"]
    uids = store.series_uids
    series = sorted({uids[i] for i in np.unique(store.meta("series")[train])})
    nodules = np.unique(nodule_ids(store)[train[store.nodules()["slice"]]]).size
    return TrainingRecord(series=tuple(series), nodule_slices=int((train & store.meta("has_nodule")).sum()), nodules=int(nodules))


def _open_run(kind: Kind, options: TrainOptions, preset: Preset, config: SDMConfig | SPADEConfig) -> _RunInputs:
    store = open_store(options.data, lock_for_reading=True)  # held until the run ends: no writer replaces it meanwhile
    inpaint = isinstance(config, SDMConfig) and config.inpaint
    slices = open_train_split(store, None if inpaint else config.image_size)
    store_fingerprint = store.fingerprint()
    out = Path(options.out)
    resume_path = out / RESUME_FILE
    state: dict[str, Any] | None = None
    if options.resume:
        state = load_training_state(resume_path)
        _check_resume_state(state, resume_path, kind, preset, store_fingerprint)
    elif resume_path.exists():
        raise InputError(f"{out} already holds a training run ({RESUME_FILE}); pass --resume to continue it or choose another --out")
    seed = int(state["seed"]) if state is not None else options.seed
    if state is not None and inpaint and state.get("edit_margin_px") != options.edit_margin_px:
        raise CheckpointError(
            f"{resume_path} was trained with --edit-margin {state.get('edit_margin_px')}, this run asks for {options.edit_margin_px}"
        )
    items = InpaintWindows(slices, config.image_size, options.edit_margin_px, seed) if inpaint else slices
    return _RunInputs(store, slices, items, store_fingerprint, training_record(store), state, seed)


@dataclass(frozen=True)
class _Session:
    """What every step of a run uses: the kind and its trainer, the inputs, the options, where it runs."""

    kind: Kind
    trainer: Trainer
    run: _RunInputs
    options: TrainOptions
    info: DistInfo
    device: torch.device
    preset: Preset
    config: SDMConfig | SPADEConfig

    @property
    def out(self) -> Path:
        return Path(self.options.out)

    @property
    def global_batch(self) -> int:
        """Images per step over all ranks."""
        return self.options.batch_size * self.info.world_size


@dataclass
class _Timing:
    """Losses and seconds of the steps run here; the first step (warm-up, compilation) counted apart."""

    losses: list[float] = field(default_factory=list)
    first_step_seconds: float | None = None
    later_seconds: float = 0.0

    def add(self, loss: float, seconds: float) -> None:
        self.losses.append(loss)
        if self.first_step_seconds is None:
            self.first_step_seconds = seconds
        else:
            self.later_seconds += seconds

    def images_per_s(self, global_batch: int) -> float:
        """Throughput of the steps after the first, or of the first when it is the only one."""
        if len(self.losses) > 1:
            return (len(self.losses) - 1) * global_batch / self.later_seconds
        return global_batch / self.first_step_seconds if self.first_step_seconds else 0.0


def _fit(
    kind: Kind,
    factory: TrainerFactory,
    options: TrainOptions,
    on_step: Callable[[StepReport], None] | None,
    info: DistInfo,
    device: torch.device,
    precision: Precision,
    preset: Preset,
    config: SDMConfig | SPADEConfig,
) -> TrainResult:
    run = _open_run(kind, options, preset, config)
    # Layers initialise their weights (and dropout draws) from torch's global RNG; it is seeded
    # inside a fork, so a seeded run is reproducible and the caller's RNG state is left as it was.
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if device.type == "cuda" else []):
        torch.manual_seed(run.seed)
        trainer = factory(preset, options, device, precision, info)
        step, consumed = 0, 0
        if run.state is not None:
            trainer.load_state_dict(run.state["trainer"])
            restore_rng_state(run.state["rng"])
            step, consumed = int(run.state["step"]), int(run.state["consumed"])
        session = _Session(kind, trainer, run, options, info, device, preset, config)
        return _train(session, on_step, step, consumed)


def _train(session: _Session, on_step: Callable[[StepReport], None] | None, step: int, consumed: int) -> TrainResult:
    """Run steps `step`..`options.steps` (logging, grids, checkpoints) and summarise them."""
    options, info = session.options, session.info
    start_step = step
    batches = _batches(session, consumed)
    grid = _grid_inputs(session.run.items, options.grid_samples, session.run.seed)
    metrics_path = _start_metrics(session.out, resumed=session.run.state is not None, step=step, info=info)
    timing = _Timing()
    last: dict[str, float] = {}
    with open(metrics_path, "a") if info.is_main else open(os.devnull, "w") as log:
        while step < options.steps:
            last, seconds = _train_step(session, next(batches), step)
            step += 1
            consumed += session.global_batch
            timing.add(last["loss"], seconds)
            rate = session.global_batch / max(seconds, 1e-9)
            log.write(json.dumps({"step": step, **last, "img_per_s": round(rate, 3)}) + "\n")
            log.flush()
            if on_step is not None and info.is_main:
                on_step(StepReport(step=step, total=options.steps, loss=last["loss"], images_per_s=rate, losses=last))
            _save_when_due(session, grid, step, consumed)
    return TrainResult(
        kind=session.kind,
        preset=session.preset.name,
        steps=step,
        start_step=start_step,
        final_loss=last.get("loss", float("nan")),
        images_per_s=timing.images_per_s(session.global_batch),
        first_step_seconds=timing.first_step_seconds or 0.0,
        checkpoint=str(session.out),
        device=str(session.device),
        world_size=info.world_size,
        losses=timing.losses,
    )


def _batches(session: _Session, consumed: int) -> Iterator[dict[str, Tensor]]:
    """This rank's endless batches from stream position `consumed` (whole slices or inpainting windows)."""
    options, info, run = session.options, session.info, session.run
    spec = LoaderSpec(batch_size=options.batch_size, seed=run.seed, workers=capped_workers(options.workers), flip=options.flip)
    if isinstance(run.items, InpaintWindows):
        return window_batches(run.items, spec, consumed=consumed, rank=info.rank, world_size=info.world_size)
    return train_batches(run.slices, spec, consumed=consumed, rank=info.rank, world_size=info.world_size)


def _train_step(session: _Session, batch: dict[str, Tensor], step: int) -> tuple[dict[str, float], float]:
    """One optimiser step on `batch`: its losses (means over ranks) and its seconds."""
    device, info = session.device, session.info
    check_label_ids(batch["label"], batch["row"], session.options.data)
    image = batch["image"].to(device, non_blocking=True)
    label = batch["label"].to(device, non_blocking=True)
    extra_inputs = {"context": batch["context"].to(device, non_blocking=True)} if "context" in batch else {}
    started = time.perf_counter()
    losses = session.trainer.train_step(image, label, step_generator(session.run.seed, info.rank, step, device), **extra_inputs)
    mean = {k: mean_across_ranks(v, info, device) for k, v in losses.items()}
    return mean, time.perf_counter() - started


def _save_when_due(session: _Session, grid: dict[str, Tensor], step: int, consumed: int) -> None:
    """After `step`: the checkpoint, resume state and a grid at checkpoint steps (and the last), a grid at sample steps."""
    options, info = session.options, session.info
    if step % options.checkpoint_every == 0 or step == options.steps:
        barrier(info)
        if info.is_main:
            _save_run(session, step, consumed)
            _write_grid(session, grid, step)
        barrier(info)
    elif options.sample_every and step % options.sample_every == 0:
        if info.is_main:
            _write_grid(session, grid, step)
        barrier(info)


def _start_metrics(out: Path, *, resumed: bool, step: int, info: DistInfo) -> Path:
    """`out/metrics.jsonl`, emptied for a new run or cut back to `step` for a resumed one (rank 0)."""
    metrics_path = out / METRICS_FILE
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resumed:
            _truncate_metrics(metrics_path, step)
        elif metrics_path.exists():
            metrics_path.unlink()
    barrier(info)
    return metrics_path


def _write_grid(session: _Session, grid: dict[str, Tensor], step: int) -> None:
    """`samples/step_NNNNNNN.png`: the run's fixed grid label maps beside images sampled with the run's seed."""
    device = session.device
    generator = torch.Generator(device=device).manual_seed(session.run.seed)
    extra = {"context": grid["context"].to(device)} if "context" in grid else {}
    images = session.trainer.sample(grid["label"].to(device), generator, **extra)
    save_grid(session.out / SAMPLES_DIR / f"step_{step:07d}.png", grid["label"], images)


def _save_run(session: _Session, step: int, consumed: int) -> None:
    """Write the checkpoint (`model.safetensors` + `config.json`) and `resume.pt` of `step`, all
    three or none: a failed write (full disk) leaves the previous save whole and raises OutputError."""
    options, run, trainer, world_size = session.options, session.run, session.trainer, session.info.world_size
    extra = {"train": {**options.to_json(), "seed": run.seed, "world_size": world_size, **trainer.hyperparameters()}}
    meta = checkpoint_meta(
        kind=session.kind,
        preset=session.preset.name,
        model_config=session.config,
        step=step,
        store_fingerprint=run.store_fingerprint,
        extra=extra,
        edit_margin_px=options.edit_margin_px,
        seen=run.seen,
    )
    state = {
        "format": STATE_FORMAT,
        "kind": session.kind,
        "preset": session.preset.name,
        "model_config": config_to_dict(session.config),
        "store_fingerprint": run.store_fingerprint,
        "seed": run.seed,
        "edit_margin_px": options.edit_margin_px,
        "step": step,
        "consumed": consumed,
        "batch_size": options.batch_size,
        "world_size": world_size,
        "trainer": trainer.state_dict(),
        "rng": capture_rng_state(),
    }
    writes = {
        **checkpoint_writers(session.out, trainer.checkpoint_weights(), meta),
        session.out / RESUME_FILE: training_state_writer(state),
    }
    replace_together(writes, WRITE_ERRORS)
