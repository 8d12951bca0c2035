import torch
from torch import nn

from lungforge.bench.networks.batchnorm import recalibrate_batchnorm


def test_running_stats_become_the_data_statistics():
    model = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False), nn.BatchNorm2d(3))
    nn.init.ones_(model[0].weight)
    data = torch.randn(40, 1, 4, 4) * 3 + 5
    batches = list(data.split(8))
    recalibrate_batchnorm(model, batches)
    bn = model[1]
    assert not model.training and bn.momentum == 0.1
    torch.testing.assert_close(bn.running_mean, torch.full((3,), data.mean().item()), atol=1e-4, rtol=0)
    per_batch_var = torch.stack([b.var(unbiased=True) for b in batches]).mean()
    torch.testing.assert_close(bn.running_var, per_batch_var.expand(3), atol=1e-3, rtol=1e-4)
