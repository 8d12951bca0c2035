import pytest
import torch

from lungforge.bench.networks.seresnet import SEResNet, SqueezeExcite


def test_output_is_one_logit_per_patch():
    model = SEResNet(depth=8, width=8)
    assert model(torch.randn(3, 1, 32, 32)).shape == (3,)


def test_depth_sets_blocks_per_stage():
    assert len(SEResNet(depth=20).blocks) == 9
    with pytest.raises(ValueError, match="6n \\+ 2"):
        SEResNet(depth=21)


def test_se_bottleneck_uses_ratio_16():
    se = SqueezeExcite(64, ratio=16)
    assert se.fc1.out_features == 4
    x = torch.randn(2, 64, 8, 8)
    y = se(x)
    assert y.shape == x.shape
    assert torch.all(y.abs() <= x.abs() + 1e-6)  # a gate in (0, 1) only shrinks
