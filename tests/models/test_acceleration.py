import math

import pytest
import torch

from lungforge.augment.synthesizer import onehot_labels
from lungforge.core.device import autocast_forward
from lungforge.diffusion.samplers import sample
from lungforge.models.acceleration import compiled, for_inference, resolve_memory_format
from lungforge.models.layers import AttentionBlock
from lungforge.models.presets import SDMConfig, get_preset
from lungforge.models.sdm_unet import SDMUNet
from lungforge.models.spade import SPADEGenerator

CPU = torch.device("cpu")


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights everywhere (zero-initialised output convs would make every output 0)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


SIZE = 16


@pytest.fixture()
def tiny_sdm() -> SDMUNet:
    """The tiny preset's architecture at 16 px (CPU bf16 is slow without native bf16 units)."""
    config = SDMConfig(
        image_size=SIZE,
        model_channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(8,),
        num_head_channels=16,
        norm_groups=4,
        label_embed_channels=8,
    )
    torch.manual_seed(0)
    return _perturbed(SDMUNet(config))


def _inputs(batch: int = 2, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, size, size, generator=g)
    t = torch.tensor([999, 10][:batch])
    label = torch.randint(0, 6, (batch, size, size), generator=g).numpy().astype("uint8")
    return x, t, onehot_labels(label, CPU)


def test_attention_matches_explicit_softmax_attention():
    torch.manual_seed(0)
    block = _perturbed(AttentionBlock(64, 32, 8))
    x = torch.randn(2, 64, 8, 8)
    b, c, h, w = x.shape
    qkv = block.qkv(block.norm(x).reshape(b, c, h * w)).reshape(b, 3, 2, 32, h * w)
    q, k, v = qkv.unbind(1)  # (b, heads, ch, hw)
    weights = torch.softmax(torch.einsum("bnct,bncs->bnts", q, k) / math.sqrt(32), dim=-1)
    out = torch.einsum("bnts,bncs->bnct", weights, v).reshape(b, c, h * w)
    expected = x + block.proj(out).reshape(b, c, h, w)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_channels_last_inference_matches_the_plain_model(tiny_sdm):
    x, t, onehot = _inputs()
    with torch.no_grad():
        plain = tiny_sdm(x, t, onehot)
        fast = for_inference(tiny_sdm, CPU, memory_format="channels_last")(x, t, onehot)
    assert tiny_sdm.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.abs().max() > 0.1
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)


def test_channels_last_spade_generator_matches_the_plain_model():
    torch.manual_seed(0)
    generator = _perturbed(SPADEGenerator(get_preset("tiny").spade))
    _, _, onehot = _inputs(size=64)
    with torch.no_grad():
        plain = generator(onehot)
        fast = for_inference(generator, CPU, memory_format="channels_last")(onehot)
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)


def test_memory_format_choices():
    assert resolve_memory_format("auto", CPU) == torch.channels_last
    assert resolve_memory_format("contiguous", CPU) == torch.contiguous_format
    with pytest.raises(ValueError, match="got 'nhwc'"):
        resolve_memory_format("nhwc", CPU)


def test_bf16_forward_only_autocast_keeps_the_sampler_in_float32(tiny_sdm):
    _, _, onehot = _inputs()
    seen = []

    def model(x, t, onehot):
        seen.append(x.dtype)
        return tiny_sdm(x, t, onehot)

    gens = lambda: [torch.Generator().manual_seed(s) for s in (0, 1)]  # noqa: E731
    with torch.no_grad():
        plain = sample(tiny_sdm, onehot, sampler="dpmpp", steps=3, generators=gens())
        bf16 = sample(autocast_forward(model, CPU, "bf16"), onehot, sampler="dpmpp", steps=3, generators=gens())
        out = autocast_forward(tiny_sdm, CPU, "bf16")(*_inputs())
    assert out.dtype == torch.float32 and bf16.dtype == torch.float32  # the UNet casts its output back
    assert seen == [torch.float32] * 3  # the sampler hands the model float32 states, not autocast ones
    assert (bf16 - plain).abs().mean() < 0.02
    assert autocast_forward(tiny_sdm, CPU, "fp32") is tiny_sdm


def test_compile_disabled_is_the_module_itself(tiny_sdm):
    assert compiled(tiny_sdm, False) is tiny_sdm


@pytest.mark.slow
def test_compiled_model_matches_the_plain_model(tiny_sdm):
    x, t, onehot = _inputs()
    with torch.no_grad():
        plain = tiny_sdm(x, t, onehot)
        fast = compiled(tiny_sdm, True)(x, t, onehot)
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)
