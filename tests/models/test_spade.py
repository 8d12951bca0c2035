"""Tests of the SPADE generator, multiscale discriminator, losses and optimisers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lungforge.core.errors import InputError
from lungforge.core.labels import NUM_CLASSES
from lungforge.models.presets import SPADEConfig, get_preset
from lungforge.models.spade import (
    MultiscaleDiscriminator,
    SPADEGenerator,
    VGGLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    make_optimizers,
)

SIZE = 64


@pytest.fixture(scope="module")
def cfg() -> SPADEConfig:
    return get_preset("tiny").spade


def _onehot(batch: int, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (batch, size // 8, size // 8), generator=g)
    labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)
    return F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()


def test_generator_shape_and_range(cfg: SPADEConfig) -> None:
    torch.manual_seed(0)
    gen = SPADEGenerator(cfg)
    out = gen(_onehot(2))
    assert out.shape == (2, 1, SIZE, SIZE)
    assert out.min() >= -1 and out.max() <= 1
    assert gen.start_size == SIZE // 32


def test_generator_depends_on_label_map() -> None:
    torch.manual_seed(0)
    gen = SPADEGenerator(SPADEConfig(image_size=32, ngf=4)).eval()
    a, b = gen(_onehot(1, size=32, seed=1)), gen(_onehot(1, size=32, seed=2))
    assert not torch.allclose(a, b)


def test_generator_noise_is_seeded() -> None:
    cfg = SPADEConfig(image_size=32, ngf=4, ndf=4, z_dim=8)
    gen = SPADEGenerator(cfg).eval()
    onehot = _onehot(1, size=32)
    a = gen(onehot, generator=torch.Generator().manual_seed(3))
    b = gen(onehot, generator=torch.Generator().manual_seed(3))
    c = gen(onehot, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_generator_more_upsampling_and_bad_size() -> None:
    gen = SPADEGenerator(SPADEConfig(image_size=64, ngf=2, num_upsampling_layers="more")).eval()
    assert gen.start_size == 1
    assert gen(_onehot(1, size=64)).shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match="multiple of 2\\*\\*5.*got 48"):
        SPADEGenerator(SPADEConfig(image_size=48, ngf=2))


def test_resblocks_use_spectral_norm_and_learned_shortcut() -> None:
    gen = SPADEGenerator(SPADEConfig(image_size=32, ngf=2))
    keys = gen.state_dict().keys()
    assert "head_0.conv_0.parametrizations.weight.original" in keys
    assert not hasattr(gen.head_0, "conv_s")
    assert gen.up_blocks[0].learned_shortcut and hasattr(gen.up_blocks[0], "conv_s")
    norms = [m for m in gen.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.affine for m in norms)


def test_discriminator_scales_and_features(cfg: SPADEConfig) -> None:
    disc = MultiscaleDiscriminator(cfg)
    out = disc(torch.zeros(2, 1, SIZE, SIZE), _onehot(2))
    assert len(out) == cfg.num_d
    for scale in out:
        assert len(scale) == cfg.n_layers_d + 1
        assert scale[-1].shape[:2] == (2, 1)
    assert out[1][0].shape[-1] < out[0][0].shape[-1]
    assert out[0][0].shape[1] == cfg.ndf


def test_hinge_losses_on_hand_made_logits() -> None:
    real = [[torch.tensor([[2.0, 0.5]])], [torch.tensor([[-1.0, 1.0]])]]
    fake = [[torch.tensor([[-2.0, 0.0]])], [torch.tensor([[0.5, -0.5]])]]
    # real: relu(1-x) means 0.25 and 1.0 → 0.625; fake: relu(1+x) means 0.5 and 1.0 → 0.75
    assert discriminator_loss(real, fake).item() == pytest.approx(1.375)
    # G: −mean(fake) per scale: 1.0 and 0.0 → 0.5
    assert generator_loss(fake).item() == pytest.approx(0.5)


def test_feature_matching() -> None:
    feats = [[torch.ones(1, 2, 3, 3), torch.zeros(1, 1, 2, 2)], [torch.full((1, 2, 2, 2), 3.0), torch.ones(1, 1, 1, 1)]]
    assert feature_matching_loss(feats, feats).item() == 0.0
    shifted = [[f + 1.0 for f in scale[:-1]] + [scale[-1] + 100.0] for scale in feats]
    # logits (last entry) are excluded; one layer per scale off by 1 → mean over 2 scales of 1.0
    assert feature_matching_loss(shifted, feats).item() == pytest.approx(1.0)


def test_one_generator_and_one_discriminator_step_change_parameters() -> None:
    torch.manual_seed(0)
    cfg = SPADEConfig(image_size=32, ngf=4, ndf=8)
    gen, disc = SPADEGenerator(cfg), MultiscaleDiscriminator(cfg)
    opt_g, opt_d = make_optimizers(gen, disc)
    assert opt_g.param_groups[0]["lr"] == 1e-4 and opt_d.param_groups[0]["lr"] == 4e-4
    assert opt_g.param_groups[0]["betas"] == (0.0, 0.9)
    onehot, real = _onehot(2, size=32), torch.rand(2, 1, 32, 32) * 2 - 1

    g_before = [p.detach().clone() for p in gen.parameters()]
    d_before = [p.detach().clone() for p in disc.parameters()]
    fake = gen(onehot)
    pred_fake = disc(fake, onehot)
    with torch.no_grad():
        pred_real = disc(real, onehot)
    g_total = generator_loss(pred_fake) + cfg.lambda_feat * feature_matching_loss(pred_fake, pred_real)
    assert torch.isfinite(g_total)
    opt_g.zero_grad()
    g_total.backward()
    opt_g.step()
    assert any(not torch.equal(a, b) for a, b in zip(g_before, gen.parameters()))

    d_total = discriminator_loss(disc(real, onehot), disc(fake.detach(), onehot))
    opt_g.zero_grad(set_to_none=True)
    opt_d.zero_grad()
    d_total.backward()
    assert all(p.grad is None for p in gen.parameters())  # D's loss must not reach G
    opt_d.step()
    assert any(not torch.equal(a, b) for a, b in zip(d_before, disc.parameters()))


def test_vgg_loss_refuses_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        VGGLoss(tmp_path / "vgg19.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(InputError, match="not a torchvision vgg19 state dict"):
        VGGLoss(bad)


def test_vgg_loss_loads_local_features_and_scores(tmp_path: Path) -> None:
    from torchvision.models import vgg

    torch.manual_seed(0)
    features = vgg.make_layers(vgg.cfgs["E"])  # the 80 MB feature part only; the classifier is ignored
    path = tmp_path / "vgg19_features.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    loss = VGGLoss(path)
    assert not any(p.requires_grad for p in loss.parameters())
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0
    assert loss(x, -x).item() > 0.0
    loss.train()
    assert not loss.features.training
