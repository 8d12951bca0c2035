from typing import ClassVar

import pytest
import torch

from lungforge.diffusion.samplers import SAMPLERS, draw_noise, sample
from lungforge.diffusion.schedule import NoiseSchedule
from lungforge.models.layers import labels_to_onehot
from lungforge.models.presets import SDMConfig
from lungforge.models.sdm_unet import SDMUNet

ALPHAS_CUMPROD = torch.from_numpy(NoiseSchedule.linear().alphas_cumprod).float()


class Oracle(torch.nn.Module):
    """Returns the exact ε for a known x0 (and v = 0), whatever the label map."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x, t, onehot):
        a = ALPHAS_CUMPROD[t.cpu()].reshape(-1, 1, 1, 1)
        x0 = self.x0.repeat(x.shape[0] // self.x0.shape[0], 1, 1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return torch.cat([eps, torch.zeros_like(eps)], dim=1)


def generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps", [1, 4, 20])
def test_oracle_model_recovers_x0(sampler, steps):
    x0 = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 1.8 - 0.9
    done = []
    out = sample(
        Oracle(x0),
        torch.zeros(2, 6, 8, 8),
        sampler=sampler,
        steps=steps,
        guidance=1.5,
        generators=generators([0, 1]),
        progress=lambda i, n: done.append((i, n)),
    )
    torch.testing.assert_close(out, x0, atol=1e-3, rtol=0)
    assert done == [(i, steps) for i in range(1, steps + 1)]


@pytest.fixture(scope="module")
def small_model():
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
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samples_do_not_depend_on_the_batch(sampler, small_model):
    label = torch.randint(0, 6, (4, 16, 16), generator=torch.Generator().manual_seed(0))
    onehot = labels_to_onehot(label)
    seeds = [10, 11, 12, 13]
    batched = sample(small_model, onehot, sampler=sampler, steps=3, generators=generators(seeds))
    single = torch.cat(
        [sample(small_model, onehot[i : i + 1], sampler=sampler, steps=3, generators=generators([s])) for i, s in enumerate(seeds)]
    )
    assert batched.shape == (4, 1, 16, 16)
    assert batched.min() >= -1 and batched.max() <= 1
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(batched[0], batched[1])


def test_draw_noise_is_per_sample():
    together = draw_noise((3, 1, 4, 4), generators=generators([5, 6, 7]))
    torch.testing.assert_close(together[1:2], draw_noise((1, 1, 4, 4), generators=generators([6])))
    with pytest.raises(ValueError, match="2 generators.*3 samples"):
        draw_noise((3, 1, 4, 4), generators=generators([1, 2]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampler": "euler"}, "euler"),
        ({"steps": 0}, "got 0"),
        ({"steps": 1001}, "got 1001"),
        ({"guidance": -1.0}, "-1.0"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    x0 = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=message):
        sample(Oracle(x0), torch.zeros(1, 6, 4, 4), **kwargs)


def test_explicit_noise_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 4\)"):
        sample(Oracle(torch.zeros(1, 1, 4, 4)), torch.zeros(1, 6, 4, 4), noise=torch.zeros(1, 1, 5, 5))


class _HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Records every op that reads a tensor's value on the host (a GPU sync on CUDA)."""

    READS: ClassVar[set] = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default, torch.ops.aten.is_nonzero.default}

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.READS:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampling_loop_never_reads_a_tensor_on_the_host(sampler, small_model):
    onehot = labels_to_onehot(torch.randint(0, 6, (2, 16, 16), generator=torch.Generator().manual_seed(0)))
    reads = _HostReads()
    with reads:
        sample(small_model, onehot, sampler=sampler, steps=4, generators=generators([0, 1]))
    assert reads.reads == []


@pytest.mark.gpu
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampling_loop_does_not_synchronise_the_gpu(sampler, small_model):
    device = torch.device("cuda")
    model = small_model.to(device)
    onehot = labels_to_onehot(torch.randint(0, 6, (2, 16, 16), device=device))
    gens = [torch.Generator(device=device).manual_seed(s) for s in (0, 1)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sample(model, onehot, sampler=sampler, steps=4, generators=gens)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        small_model.to("cpu")
