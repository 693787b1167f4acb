"""The outline term of the training loss: edges on the ring around the face region's
outline, inside the mask (the band a paste of the whole mask shows).

Runs on the prepared 64-px crops of the two public-domain faces (Collins and Hopper)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_train_config as tiny
from selfswap.config import ConfigError, load_config
from selfswap.train import losses
from selfswap.train.config import TrainConfig
from selfswap.train.loop import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def batch(train_faces, tmp_path_factory) -> dict[str, torch.Tensor]:
    """One training batch of real faces with their masks."""
    cfg = tiny(train_faces, tmp_path_factory.mktemp("outline") / "run", "steps=1")
    trainer = Trainer(cfg, log=lambda *_: None)
    return next(iter(trainer.loader()))


def _blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


def test_band_is_a_ring_on_the_outline_inside_the_mask(batch):
    region, mask = batch["face_region"], batch["mask"]
    width = 5
    band = losses.outline_band(region, mask, width)
    assert band.shape == mask.shape and float(band.min()) >= 0 and float(band.max()) <= 1
    assert bool((band <= mask + 1e-6).all())  # never outside what the generator paints
    deep = -F.max_pool2d(-region, 2 * width + 3, stride=1, padding=width + 1)
    far = 1 - F.max_pool2d(region, 2 * width + 3, stride=1, padding=width + 1)
    assert float((band * (deep > 0.99)).max()) == 0  # not the middle of the face
    assert float((band * (far > 0.99)).max()) == 0  # nor beyond the ring
    for b in range(len(band)):  # every face has one, a ring and not a disc
        edge = (region[b] > 0.5) & (F.max_pool2d(1 - region[b : b + 1], 3, 1, 1)[0] > 0.5)
        covered = band[b][edge & (mask[b] > 0.5)]
        assert len(covered) and float(covered.mean()) > 0.9
        assert 0.05 < float((band[b] > 0.5).float().mean()) < 0.6
    assert float(losses.outline_band(region, mask, 0).abs().max()) == 0


def test_edges_cost_only_in_the_band_and_not_for_a_colour_shift(batch):
    image = batch["image"]
    band = losses.outline_band(batch["face_region"], batch["mask"], 5)
    assert float(losses.band_gradient_loss(image, image, band)) == 0
    # a uniform colour offset leaves every edge where it was
    shifted = (image + 0.1).clamp(max=1.0)
    level = float(losses.band_gradient_loss(shifted, image, band))
    blurred = _blur(image)
    soft = float(losses.band_gradient_loss(blurred, image, band))
    assert soft > 0.005 and level < 0.2 * soft
    # blurring only outside the band costs nothing; only inside it, the full price
    outside = torch.where(band > 0, image, blurred)
    inside = torch.where(band > 0, blurred, image)
    assert float(losses.band_gradient_loss(outside, image, band)) < 0.05 * soft
    assert float(losses.band_gradient_loss(inside, image, band)) > 0.5 * soft
    # a sharper guess costs less than a blurrier one
    blurrier = float(losses.band_gradient_loss(_blur(blurred), image, band))
    assert blurrier > soft


def test_gradient_sharpens_a_blurred_band(batch):
    image = batch["image"]
    band = losses.outline_band(batch["face_region"], batch["mask"], 5)
    guess = _blur(image).requires_grad_(True)
    loss = losses.band_gradient_loss(guess, image, band)
    loss.backward()
    before = float(loss.detach())
    # pixels a few px off the band (a difference's partner, the half-size scale) only
    near = F.max_pool2d(band, 7, stride=1, padding=3) > 0
    assert float(guess.grad[(~near).expand_as(guess)].abs().max()) == 0
    assert float(guess.grad[(band > 0).expand_as(guess)].abs().max()) > 0
    with torch.no_grad():
        stepped = guess - 0.005 * guess.grad.sign()
    assert float(losses.band_gradient_loss(stepped, image, band)) < before


def test_config_defaults_off_and_rejects_negative_weights():
    assert TrainConfig().loss.outline == 0
    cfg = load_config(TrainConfig, None, ["loss.outline=2", "loss.outline_width=0.1"]).validate()
    assert cfg.loss.outline == 2 and cfg.loss.outline_width == 0.1
    with pytest.raises(ConfigError, match="outline"):
        load_config(TrainConfig, None, ["loss.outline=-1"]).validate()


def test_two_steps_train_with_the_term_on(train_faces, tmp_path):
    cfg = tiny(
        train_faces,
        tmp_path / "run",
        "steps=2",
        "generator.source_texture=true",
        "loss.outline=2",
    )
    trainer = Trainer(cfg, log=lambda *_: None)
    seen = []
    for step_batch in trainer.loader():
        logs = trainer.train_step(step_batch)
        assert np.isfinite(logs["outline"]) and logs["outline"] > 0, logs
        seen.append(logs["outline"])
        if trainer.step >= 2:
            break
    assert len(seen) == 2
