import pytest
import torch

from lungforge.diffusion.guidance import drop_condition, guided_output


class CountingModel(torch.nn.Module):
    """ε depends on x, t and the label map; v on the label map only; counts forward calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, t, onehot):
        self.calls += 1
        eps = 0.5 * x + onehot[:, 1:2] * 0.3 + t.float().reshape(-1, 1, 1, 1) * 1e-3
        v = onehot[:, 2:3] - 0.5
        return torch.cat([eps, v], dim=1)


@pytest.fixture
def case():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 4, 4, generator=g)
    t = torch.tensor([1, 500, 999])
    onehot = torch.nn.functional.one_hot(torch.randint(0, 6, (3, 4, 4), generator=g), 6).permute(0, 3, 1, 2).float()
    return x, t, onehot


def test_drop_condition_zeroes_whole_maps():
    onehot = torch.ones(1000, 6, 2, 2)
    dropped = drop_condition(onehot, 0.2, torch.Generator().manual_seed(0))
    per_sample = dropped.flatten(1).sum(1)
    assert set(per_sample.unique().tolist()) == {0.0, 24.0}
    assert 0.15 < (per_sample == 0).float().mean() < 0.25
    again = drop_condition(onehot, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)
    assert torch.equal(drop_condition(onehot, 0.0), onehot)
    assert torch.count_nonzero(drop_condition(onehot, 1.0)) == 0


def test_drop_probability_is_validated():
    with pytest.raises(ValueError, match="1.5"):
        drop_condition(torch.ones(1, 6, 2, 2), 1.5)


def test_scale_zero_and_one(case):
    x, t, onehot = case
    model = CountingModel()
    cond, uncond = model(x, t, onehot), model(x, t, torch.zeros_like(onehot))
    one = guided_output(model, x, t, onehot, 1.0)
    zero = guided_output(model, x, t, onehot, 0.0)
    torch.testing.assert_close(one, cond)
    torch.testing.assert_close(zero[:, :1], uncond[:, :1])
    torch.testing.assert_close(zero[:, 1:], cond[:, 1:])


def test_batched_passes_equal_separate_passes(case):
    x, t, onehot = case
    model = CountingModel()
    cond, uncond = model(x, t, onehot), model(x, t, torch.zeros_like(onehot))
    model.calls = 0
    guided = guided_output(model, x, t, onehot, 1.5)
    assert model.calls == 1
    torch.testing.assert_close(guided[:, :1], uncond[:, :1] + 1.5 * (cond[:, :1] - uncond[:, :1]))
    torch.testing.assert_close(guided[:, 1:], cond[:, 1:])
