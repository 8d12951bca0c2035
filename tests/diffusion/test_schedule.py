import numpy as np
import pytest

from lungforge.diffusion.schedule import NoiseSchedule, linear_betas, respace, space_timesteps


def test_linear_betas_span_the_improved_ddpm_range():
    betas = linear_betas(1000)
    assert betas.dtype == np.float64 and betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert linear_betas(500)[-1] == pytest.approx(0.04)


def test_posterior_variance_is_zero_at_the_first_step():
    s = NoiseSchedule.linear()
    assert s.posterior_variance[0] == 0
    assert np.isfinite(s.posterior_log_variance_clipped).all()
    np.testing.assert_allclose(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])


@pytest.mark.parametrize("steps", [1, 2, 25, 250])
def test_space_timesteps_picks_evenly(steps):
    chosen = space_timesteps(1000, steps)
    assert len(np.unique(chosen)) == steps and chosen[-1] == 999
    assert np.all(np.diff(chosen) > 0)
    if steps > 1:
        assert chosen[0] == 0
        gaps = np.diff(chosen)
        assert gaps.max() - gaps.min() <= 1


@pytest.mark.parametrize("steps", [5, 50, 1000])
def test_respacing_preserves_alphas_cumprod(steps):
    base = NoiseSchedule.linear()
    spaced = respace(base, steps)
    assert spaced.num_timesteps == steps
    np.testing.assert_allclose(spaced.alphas_cumprod, base.alphas_cumprod[spaced.timesteps], rtol=1e-12)


def test_respacing_to_all_steps_is_the_identity():
    base = NoiseSchedule.linear()
    spaced = respace(base, 1000)
    np.testing.assert_allclose(spaced.betas, base.betas, rtol=1e-10)
    np.testing.assert_array_equal(spaced.timesteps, np.arange(1000))


@pytest.mark.parametrize("steps", [0, 1001])
def test_step_counts_outside_the_schedule_are_rejected(steps):
    with pytest.raises(ValueError, match=f"1..1000.*{steps}"):
        space_timesteps(1000, steps)
