"""Networks and losses of #5: shapes, ranges, modulation, and the losses' basic facts."""

from __future__ import annotations

import pytest
import torch

from selfswap.nets.appearance import AppearanceConfig, AppearanceEncoder
from selfswap.nets.discriminator import DiscriminatorConfig, MultiScaleDiscriminator
from selfswap.nets.generator import Generator, GeneratorConfig, compose_guidance, composite
from selfswap.train import losses


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def small_generator(**kw) -> Generator:
    return Generator(GeneratorConfig(size=64, channels=[16, 32, 64], style_dim=32, **kw))


def test_generator_output_shape_range_and_identity_modulation():
    g = small_generator()
    x = torch.rand(2, 8, 64, 64)
    z = torch.randn(2, 128)
    app = torch.randn(2, 16)
    y = g(x, z, app).detach()
    assert y.shape == (2, 3, 64, 64) and float(y.min()) >= 0 and float(y.max()) <= 1
    # zero-initialised modulation: train the style path a little, then codes matter
    for p in g.parameters():
        p.data.add_(torch.randn_like(p) * 0.02)
    assert not torch.allclose(g(x, z, app), g(x, torch.randn(2, 128), app))
    assert not torch.allclose(g(x, z, app), g(x, z, torch.randn(2, 16)))


@pytest.mark.parametrize("stem", [1, 2, 4])
def test_generator_stems_and_no_appearance(stem):
    g = small_generator(stem_factor=stem, appearance_dim=0, attention=stem != 4)
    assert g(torch.rand(1, 8, 64, 64), torch.randn(1, 128)).shape == (1, 3, 64, 64)


def test_guidance_and_composite():
    image, mask = torch.rand(1, 3, 8, 8), (torch.rand(1, 1, 8, 8) > 0.5).float()
    guide = compose_guidance(image, mask, torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8))
    assert guide.shape == (1, 8, 8, 8)
    assert torch.all(guide[:, :3] * mask == 0)
    other = torch.rand(1, 3, 8, 8)
    out = composite(other, image, mask)
    assert torch.equal(out * (1 - mask), image * (1 - mask))
    assert torch.equal(out * mask, other * mask)


def test_appearance_code_is_global_and_augmentation_is_seeded():
    enc = AppearanceEncoder(AppearanceConfig(dim=8, width=8))
    image, face = torch.rand(2, 3, 64, 64), torch.ones(2, 1, 64, 64)
    enc.eval()
    assert enc(image, face).shape == (2, 8)
    # pooled statistics only: a horizontal flip of the face changes nothing much
    flipped = enc(image.flip(-1), face.flip(-1))
    assert torch.allclose(enc(image, face), flipped, atol=0.05)
    enc.train()
    a = enc(image, face, generator=torch.Generator().manual_seed(1))
    b = enc(image, face, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_discriminator_scales_and_features():
    d = MultiScaleDiscriminator(DiscriminatorConfig(scales=2, channels=[8, 16, 32]))
    outs = d(torch.rand(2, 3, 64, 64), torch.ones(2, 1, 64, 64))
    assert len(outs) == 2
    (logits0, feats0), (logits1, _) = outs
    assert logits0.shape[0] == 2 and logits0.shape[-1] > logits1.shape[-1]
    assert len(feats0) == 3


def test_losses():
    x = torch.rand(2, 3, 64, 64)
    assert float(losses.ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(losses.ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(losses.ms_ssim(x, torch.rand_like(x))) < 0.5
    loss, logs = losses.reconstruction_loss(x, x, 1.0, 1.0)
    assert float(loss) == pytest.approx(0.0, abs=1e-5) and set(logs) == {"l1", "ms_ssim"}
    e = torch.randn(4, 128)
    assert float(losses.identity_loss(e, e)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.identity_loss(e, -e)) == pytest.approx(2.0, abs=1e-6)
    real, fake = [torch.full((2, 1, 4, 4), 2.0)], [torch.full((2, 1, 4, 4), -2.0)]
    assert float(losses.hinge_discriminator_loss(real, fake)) == 0.0
    assert float(losses.hinge_generator_loss(fake)) == 2.0
    feats = [[torch.ones(1, 2, 3, 3)]]
    assert float(losses.feature_matching_loss(feats, feats)) == 0.0
    y = x.clone().requires_grad_(True)
    losses.ms_ssim(y, x * 0.5).backward()
    assert torch.isfinite(y.grad).all()


def test_icnr_starts_without_checkerboard():
    import torch.nn.functional as F

    from selfswap.nets.generator import icnr_

    conv = torch.nn.Conv2d(8, 3 * 4, 3, padding=1)
    icnr_(conv, 2)
    out = F.pixel_shuffle(conv(torch.randn(1, 8, 6, 6)), 2)
    # every 2x2 block holds one value: a nearest-neighbour upsampling
    assert torch.allclose(out, F.interpolate(out[..., ::2, ::2], scale_factor=2), atol=1e-6)


def test_full_resolution_head_starts_as_no_change_and_then_refines():
    """`full_res_head` (issue #14 item 2) adds thin 3x3 convolutions at full resolution on
    the shuffled output: a generator with it gives the same output as one without it until
    the head learns, and then a different one that depends on the guidance pixel for pixel."""
    plain = small_generator()
    headed = small_generator(full_res_head=8)
    missing, unexpected = headed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("head.") for k in missing)
    x, z = torch.rand(2, 8, 64, 64), torch.randn(2, 128)
    torch.testing.assert_close(headed(x, z), plain(x, z), rtol=0, atol=0)
    # a loss reaches the head's zero layer through its gradient; once that layer has moved,
    # so does the output
    target = torch.rand(2, 3, 64, 64)
    torch.nn.functional.l1_loss(headed(x, z), target).backward()
    last = headed.head.net[-1]
    assert float(last.weight.grad.abs().sum()) > 0
    with torch.no_grad():
        last.weight.add_(torch.randn_like(last.weight) * 0.1)
    refined = headed(x, z)
    assert not torch.allclose(refined, plain(x, z))
    # the head works pixel for pixel: a change of one guidance pixel moves its correction
    # in the 7x7 window of its three 3x3 layers around that pixel and nowhere else
    logits = torch.randn(2, 3, 64, 64)
    poked = x.clone()
    poked[:, 0, 31, 31] += 1
    with torch.no_grad():
        moved = (headed.head(logits, poked) - headed.head(logits, x)).abs().sum(dim=(0, 1)) > 0
    window = torch.zeros(64, 64, dtype=torch.bool)
    window[28:35, 28:35] = True
    assert torch.equal(moved, window)
