import math

import numpy as np
import pytest
import torch

from lungforge.diffusion.gaussian import GaussianDiffusion
from lungforge.diffusion.guidance import drop_condition
from lungforge.diffusion.schedule import NoiseSchedule
from lungforge.models.layers import labels_to_onehot
from lungforge.models.presets import SDMConfig
from lungforge.models.sdm_unet import SDMUNet

DIFFUSION = GaussianDiffusion(NoiseSchedule.linear())
ALPHAS_CUMPROD = torch.from_numpy(DIFFUSION.schedule.alphas_cumprod)


def oracle_output(x_t, t, x0, v):
    """The exact ε for a known x0, and a chosen variance interpolation v."""
    a = ALPHAS_CUMPROD[t].float().reshape(-1, 1, 1, 1)
    eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    return torch.cat([eps, torch.full_like(eps, v)], dim=1)


def test_q_sample_statistics():
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([-0.8, 0.0, 0.5]).reshape(1, 3, 1, 1).expand(20000, 3, 1, 1)
    for step in (10, 500, 990):
        t = torch.full((20000,), step)
        x_t = DIFFUSION.q_sample(x0, t, torch.randn(x0.shape, generator=g)).double()
        a = DIFFUSION.schedule.alphas_cumprod[step]
        np.testing.assert_allclose(x_t.mean(0).flatten(), np.sqrt(a) * x0[0].flatten().double(), atol=0.03)
        np.testing.assert_allclose(x_t.var(0).flatten(), np.full(3, 1 - a), rtol=0.05)


def test_posterior_mean_interpolates_x0_and_x_t():
    x0, x_t = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    first, _, _ = DIFFUSION.q_posterior(x0, x_t, torch.tensor([0]))
    assert torch.allclose(first, x0)
    mean, var, _ = DIFFUSION.q_posterior(x0, x_t, torch.tensor([500]))
    assert 0 < mean.mean() < 1 and 0 < var.item() < DIFFUSION.schedule.betas[500]


def test_learned_range_spans_posterior_to_beta():
    x_t, t = torch.zeros(1, 1, 1, 1), torch.tensor([300])
    low = DIFFUSION.p_mean_variance(torch.tensor([0.0, -1.0]).reshape(1, 2, 1, 1), x_t, t)
    high = DIFFUSION.p_mean_variance(torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1), x_t, t)
    s = DIFFUSION.schedule
    assert low.variance.item() == pytest.approx(s.posterior_variance[300], rel=1e-5)
    assert high.variance.item() == pytest.approx(s.betas[300], rel=1e-5)


def test_vlb_is_smallest_when_the_variance_matches_the_posterior():
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 1.6 - 0.8
    t = torch.tensor([1, 20, 100, 300])
    x_t = DIFFUSION.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    vbs = [DIFFUSION.vb_terms_bits(oracle_output(x_t, t, x0, v), x0, x_t, t) for v in (-1.0, 0.0, 1.0)]
    assert torch.all(vbs[0] < vbs[1]) and torch.all(vbs[1] < vbs[2])
    assert torch.all(vbs[0].abs() < 1e-4)


def test_decoder_nll_is_used_at_step_zero():
    x0 = (torch.randint(1, 255, (1, 1, 8, 8)) / 127.5 - 1.0).float()
    t = torch.tensor([0])
    x_t = DIFFUSION.q_sample(x0, t, torch.randn(x0.shape))
    vb = DIFFUSION.vb_terms_bits(oracle_output(x_t, t, x0, -1.0), x0, x_t, t)
    # The predicted mean is x0 exactly, so each interior pixel keeps the mass of ±1/255 around it.
    sigma = np.exp(0.5 * DIFFUSION.schedule.posterior_log_variance_clipped[0])
    expected = -np.log2(math.erf(1.0 / 255.0 / sigma / math.sqrt(2.0)))
    assert vb.item() == pytest.approx(expected, rel=1e-4)


class ParamModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.eps_scale = torch.nn.Parameter(torch.tensor(0.5))
        self.v = torch.nn.Parameter(torch.tensor(0.2))

    def forward(self, x, t, onehot):
        return torch.cat([self.eps_scale * x, self.v.expand_as(x)], dim=1)


def test_hybrid_loss_is_finite_positive_and_vlb_trains_only_the_variance():
    model = ParamModel()
    x0 = torch.rand(3, 1, 8, 8) * 2 - 1
    losses = DIFFUSION.training_losses(model, x0, torch.tensor([0, 10, 999]), torch.zeros(3, 6, 8, 8))
    assert set(losses) == {"loss", "mse", "vb"}
    assert all(v.shape == (3,) and torch.isfinite(v).all() for v in losses.values())
    assert torch.all(losses["loss"] > 0) and torch.all(losses["vb"] >= 0)
    torch.testing.assert_close(losses["loss"], losses["mse"] + losses["vb"])
    losses["vb"].sum().backward()
    assert model.eps_scale.grad is None or model.eps_scale.grad == 0
    assert model.v.grad != 0


def test_tiny_sdm_learns_a_label_to_intensity_task():
    config = SDMConfig(
        image_size=16,
        model_channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(8,),
        num_head_channels=16,
        norm_groups=4,
        label_embed_channels=8,
    )
    torch.manual_seed(0)
    model = SDMUNet(config)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        label = torch.zeros(n, 16, 16, dtype=torch.long)
        rows = torch.randint(2, 14, (n,), generator=g)
        label[torch.arange(16)[None, :, None].expand(n, 16, 16) < rows[:, None, None]] = 1
        x0 = torch.where(label == 1, 0.6, -0.6).unsqueeze(1)
        return x0, labels_to_onehot(label)

    x_eval, onehot_eval = batch(16)
    t_eval = torch.randint(0, 1000, (16,), generator=g)
    noise_eval = torch.randn(x_eval.shape, generator=g)

    def eval_loss():
        with torch.no_grad():
            losses = DIFFUSION.training_losses(model.eval(), x_eval, t_eval, onehot_eval, noise_eval)
        return losses["loss"].mean().item()

    before = eval_loss()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(40):
        x0, onehot = batch(4)
        onehot = drop_condition(onehot, 0.2, g)
        t = torch.randint(0, 1000, (4,), generator=g)
        loss = DIFFUSION.training_losses(model, x0, t, onehot, torch.randn(x0.shape, generator=g))["loss"].mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert eval_loss() < 0.5 * before


@pytest.mark.parametrize("step", [1, 10, 500, 999])
def test_ancestral_step_matches_diffusers_learned_range(step):
    from diffusers import DDPMScheduler

    reference = DDPMScheduler(
        num_train_timesteps=1000,
        trained_betas=DIFFUSION.schedule.betas,
        variance_type="learned_range",
        clip_sample=True,
        clip_sample_range=1.0,
        prediction_type="epsilon",
    )
    reference.set_timesteps(1000)
    g = torch.Generator().manual_seed(step)
    x_t = torch.randn(2, 1, 8, 8, generator=g)
    output = torch.randn(2, 2, 8, 8, generator=g).clamp(-1, 1)
    pred = DIFFUSION.p_mean_variance(output, x_t, torch.full((2,), step))
    noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(1))
    expected = reference.step(output, step, x_t, generator=torch.Generator().manual_seed(1)).prev_sample
    torch.testing.assert_close(pred.mean + torch.exp(0.5 * pred.log_variance) * noise, expected, atol=2e-4, rtol=1e-4)
