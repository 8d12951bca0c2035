import pytest
import torch

from lungforge.models.layers import ResBlock, SPADEGroupNorm, labels_to_onehot
from lungforge.models.presets import PRESETS, SDMConfig
from lungforge.models.sdm_unet import SDMUNet

SMALL = SDMConfig(
    image_size=16,
    model_channels=16,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(8,),
    num_head_channels=16,
    norm_groups=4,
    label_embed_channels=8,
)


def perturbed(config: SDMConfig, seed: int = 0) -> SDMUNet:
    """A model whose zero-initialised layers were given random weights, so every path matters."""
    torch.manual_seed(seed)
    model = SDMUNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def inputs(config: SDMConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    size = config.image_size
    x = torch.randn(batch, config.in_channels, size, size, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    label = torch.randint(0, config.num_classes, (batch, size, size), generator=g)
    return x, t, labels_to_onehot(label, config.num_classes)


def test_labels_to_onehot():
    label = torch.tensor([[[0, 5], [2, 2]]])
    onehot = labels_to_onehot(label)
    assert onehot.shape == (1, 6, 2, 2) and onehot.dtype == torch.float32
    assert torch.equal(onehot.argmax(1), label) and torch.all(onehot.sum(1) == 1)


@pytest.mark.parametrize("bad", [torch.tensor([[[6]]]), torch.tensor([[[-1]]])])
def test_labels_to_onehot_rejects_unknown_ids(bad):
    with pytest.raises(ValueError, match=r"0\.\.5"):
        labels_to_onehot(bad)


def test_labels_to_onehot_rejects_float_maps():
    with pytest.raises(ValueError, match="integer"):
        labels_to_onehot(torch.zeros(1, 4, 4))


def test_tiny_forward_shape_and_zero_initialised_output():
    config = PRESETS["tiny"].sdm
    model = SDMUNet(config)
    x, t, onehot = inputs(config)
    out = model(x, t, onehot)
    assert out.shape == (2, 2, 64, 64)
    assert torch.count_nonzero(out) == 0


def test_label_map_changes_the_output():
    model = perturbed(SMALL)
    x, t, onehot = inputs(SMALL)
    other = torch.roll(onehot, shifts=1, dims=1)
    with torch.no_grad():
        assert not torch.allclose(model(x, t, onehot), model(x, t, other), atol=1e-4)
        assert not torch.allclose(model(x, t, onehot), model(x, t + 100, onehot), atol=1e-4)


def test_only_middle_and_decoder_see_the_labels():
    model = perturbed(SMALL)
    encoder_blocks = [m for m in model.input_blocks.modules() if isinstance(m, ResBlock)]
    decoder = (model.middle_block, model.output_blocks)
    decoder_blocks = [m for s in decoder for m in s.modules() if isinstance(m, ResBlock)]
    assert encoder_blocks and not any(b.label_conditioned for b in encoder_blocks)
    assert not any(isinstance(m, SPADEGroupNorm) for m in model.input_blocks.modules())
    assert decoder_blocks and all(b.label_conditioned for b in decoder_blocks)

    captured = []
    hooks = [stage.register_forward_hook(lambda m, a, out: captured.append(out)) for stage in model.input_blocks]
    x, t, onehot = inputs(SMALL)
    with torch.no_grad():
        model(x, t, onehot)
        model(x, t, torch.zeros_like(onehot))
    for hook in hooks:
        hook.remove()
    half = len(captured) // 2
    for first, second in zip(captured[:half], captured[half:]):
        assert torch.equal(first, second)


def test_gradient_checkpointing_gives_the_same_gradients():
    plain = perturbed(SMALL).train()
    checkpointed = SDMUNet(SMALL, use_checkpoint=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x, t, onehot = inputs(SMALL)
    for model in (plain, checkpointed):
        model(x, t, onehot).square().mean().backward()
    for a, b in zip(plain.parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_runs_under_bf16_autocast():
    model = perturbed(SMALL)
    x, t, onehot = inputs(SMALL)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, onehot)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, model(x, t, onehot).detach(), atol=0.1, rtol=0.1)


def test_paper_model_builds():
    with torch.device("meta"):
        model = SDMUNet(PRESETS["paper"].sdm)
    params = sum(p.numel() for p in model.parameters())
    assert 4e8 < params < 1.5e9
    attention_widths = {m.qkv.in_channels for m in model.modules() if hasattr(m, "qkv")}
    assert attention_widths == {512, 1024}
