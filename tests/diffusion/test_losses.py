import pytest
import torch
from torch.distributions import Normal, kl_divergence

from lungforge.diffusion.losses import discretized_gaussian_log_likelihood, normal_kl


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2, lv1, lv2 = torch.randn(4, 10, generator=g).unbind(0)
    expected = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), expected)
    assert torch.all(normal_kl(m1, lv1, m1, lv1).abs() < 1e-6)


def test_discretized_likelihood_sums_to_one_over_the_256_levels():
    levels = torch.linspace(-1.0, 1.0, 256)
    for mean, log_scale in [(0.0, -2.0), (0.3, -4.0), (-0.9, 0.5)]:
        mean_t, log_scale_t = torch.full_like(levels, mean), torch.full_like(levels, log_scale)
        ll = discretized_gaussian_log_likelihood(levels, mean_t, log_scale_t)
        assert ll.exp().sum().item() == pytest.approx(1.0, abs=1e-4)


def test_discretized_likelihood_peaks_at_the_mean():
    levels = torch.linspace(-1.0, 1.0, 256)
    mean, log_scale = torch.full_like(levels, levels[100].item()), torch.full_like(levels, -3.0)
    ll = discretized_gaussian_log_likelihood(levels, mean, log_scale)
    assert ll.argmax() == 100
