"""Model sizes from a checkpoint's config are bounded before anything is built (issue 19, item 7)."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lungforge.core.errors import CheckpointError
from lungforge.models.bounds import PAPER_PARAMETERS, SCALE, check_dimensions, check_parameters, spade_parameters
from lungforge.models.checkpoint import load_checkpoint
from lungforge.models.presets import PRESETS, SPADEConfig
from lungforge.models.sdm_unet import SDMUNet
from lungforge.models.spade import SPADEGenerator

DEMO_SPADE = Path(__file__).resolve().parents[2] / "weights" / "demo-spade-tiny.safetensors"
DEMO_SDM = Path(__file__).resolve().parents[2] / "weights" / "demo-sdm-tiny.safetensors"


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "cfg",
    [
        PRESETS["tiny"].spade,
        SPADEConfig(image_size=64, ngf=4, ndf=4, z_dim=8),
        SPADEConfig(image_size=128, ngf=3, label_hidden=7, num_upsampling_layers="more", z_dim=5),
    ],
)
def test_spade_parameters_are_counted_exactly_without_building(cfg):
    assert spade_parameters(cfg) == _count(SPADEGenerator(cfg))


def test_the_paper_counts_are_those_of_the_built_paper_models():
    with torch.device("meta"):
        assert _count(SDMUNet(PRESETS["paper"].sdm)) == PAPER_PARAMETERS["sdm"]
    assert spade_parameters(PRESETS["paper"].spade) == PAPER_PARAMETERS["spade"]


def test_both_presets_are_within_the_bounds():
    for preset in PRESETS.values():
        assert check_dimensions("sdm", preset.sdm) is None and check_dimensions("spade", preset.spade) is None
        assert check_parameters("spade", preset.spade, spade_parameters(preset.spade)) is None


def test_dimensions_beyond_twice_the_paper_preset_are_named():
    problem = check_dimensions("spade", SPADEConfig(image_size=2048))
    assert problem.field == "image_size" and f"exceeds {SCALE * 512}" in problem.message
    assert check_dimensions("spade", SPADEConfig(image_size=64, num_d=5)).field == "num_d"


def _edited(source: Path, out: Path, **model_config) -> Path:
    with safe_open(str(source), "pt") as fh:
        metadata = fh.metadata()
    config = json.loads(metadata["lungforge_config"])
    config["model_config"].update(model_config)
    metadata["lungforge_config"] = json.dumps(config)
    save_file(load_file(source), str(out), metadata=metadata)
    return out


def test_a_spade_memory_bomb_is_refused_before_anything_is_built(tmp_path):
    """ngf=256 in the 7.5 MB demo file used to build a 1.1 G-parameter generator (~4.4 GB) first."""
    bomb = _edited(DEMO_SPADE, tmp_path / "bomb.safetensors", ngf=256)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(
        CheckpointError, match=r"bomb\.safetensors: model_config\.ngf = 256 \(paper 64\) gives 1,093\.1 M parameters"
    ) as info:
        load_checkpoint(bomb)
    assert "\n" not in str(info.value)
    assert time.perf_counter() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 200_000  # KB: nothing was allocated


def test_an_sdm_with_too_many_levels_is_refused_naming_the_field(tmp_path):
    deep = _edited(DEMO_SDM, tmp_path / "deep.safetensors", channel_mult=[1] * 8, image_size=128)
    with pytest.raises(CheckpointError, match=r"deep\.safetensors: model_config\.channel_mult has 8 levels"):
        load_checkpoint(deep)
    wide = _edited(DEMO_SDM, tmp_path / "wide.safetensors", model_channels=2048, norm_groups=32, num_head_channels=64)
    with pytest.raises(CheckpointError, match=r"wide\.safetensors: model_config\.model_channels = 2048 \(paper 256\) gives"):
        load_checkpoint(wide)
