"""The bench configs refuse bad values themselves, not only the CLI."""

import pytest

from lungforge.bench.protocol.detect import DetectConfig
from lungforge.bench.protocol.localize import LocalizeConfig
from lungforge.bench.scoring.fid import FidConfig
from lungforge.bench.scoring.segmenter import SegmenterConfig
from lungforge.core.choices import MAX_SIZE_PX


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DetectConfig(select="typo"), r"^select must be one of 'first-draw', 'all', got 'typo'"),
        (lambda: DetectConfig(real_split="train"), r"^real_split must be one of 'all', 'test', got 'train'"),
        (lambda: DetectConfig(depth=10), r"^depth must be 6n\+2"),
        (lambda: DetectConfig(size=64, patch=96), r"^patch must be in 8\.\.64, got 96"),
        (lambda: DetectConfig(folds=11), r"^folds must be in 2\.\.10, got 11"),
        (lambda: DetectConfig(real_nodules=0), r"^real_nodules must be >= 1, got 0"),
        (lambda: LocalizeConfig(backbone="vgg"), r"^backbone must be one of 'resnet50', 'resnet18', 'resnet18-stride2', got 'vgg'"),
        (lambda: LocalizeConfig(optimizer="adam"), r"^optimizer must be one of 'sgd', 'adamw', got 'adam'"),
        (lambda: LocalizeConfig(nodule_free_ratio=-1.0), r"^nodule_free_ratio must be >= 0.0, got -1.0"),
        (lambda: LocalizeConfig.quick_preset(select="every"), r"^select must be one of"),
        (lambda: FidConfig(features="vgg"), r"^features must be one of 'inception', 'random', got 'vgg'"),
        (lambda: FidConfig(real_split="val"), r"^real_split must be one of 'all', 'train', 'test', got 'val'"),
        (lambda: FidConfig(seed=-1), r"^seed must be an integer"),
        (lambda: DetectConfig(size=4096), r"^size must be in 8\.\.2048, got 4096"),
        (lambda: LocalizeConfig.quick_preset(size=2056), r"^size must be in 32\.\.2048, got 2056"),
        (lambda: FidConfig(size=4096), r"^size must be in 32\.\.2048, got 4096"),
        (lambda: SegmenterConfig(size=4096), r"^size must be in 8\.\.2048, got 4096"),
        (lambda: SegmenterConfig(size=0), r"^size must be in 8\.\.2048, got 0"),
    ],
)
def test_a_bad_value_is_refused_by_the_config_object(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_defaults_and_quick_presets_are_valid():
    assert DetectConfig().select == "first-draw" and DetectConfig.quick_preset().quick
    assert LocalizeConfig.quick_preset(real_split="test").backbone == "resnet18"
    cpu = LocalizeConfig.cpu_preset(size=128, epochs=5)
    assert (cpu.backbone, cpu.optimizer, cpu.rotations, cpu.folds, cpu.epochs, cpu.quick) == (
        "resnet18-stride2",
        "adamw",
        True,
        2,
        5,
        False,
    )
    paper = LocalizeConfig()
    assert (paper.backbone, paper.optimizer, paper.rotations, paper.lr, paper.size) == ("resnet50", "sgd", False, 0.01, 256)
    assert FidConfig().features == "inception"


def test_the_configs_accept_the_size_cap_itself():
    assert DetectConfig(size=MAX_SIZE_PX).size == SegmenterConfig(size=MAX_SIZE_PX).size == MAX_SIZE_PX
