"""Appearance encoder: face pixels → a small code of skin tone and illumination.

The code must not carry identity or face shape, or the swap would leak the target's
identity through it. Three things stop it (DESIGN.md §1): the input is low resolution
(32×32) and heavily augmented geometrically during training (random flip, rotation, scale,
shift — identity lives in geometry, tone and light survive it); everything is pooled
globally before the bottleneck, so no spatial layout survives; and the bottleneck is narrow
(16 numbers by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AppearanceConfig:
    dim: int = 16
    input_size: int = 32
    width: int = 32
    augment: bool = True  # geometric augmentation of the input during training
    max_rotation: float = 25.0  # degrees
    max_scale: float = 0.25  # relative
    max_shift: float = 0.15  # fraction of the crop


class AppearanceEncoder(nn.Module):
    """`forward(image (B,3,R,R) in [0,1], face_mask (B,1,R,R)) -> (B, dim)`."""

    def __init__(self, config: AppearanceConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or AppearanceConfig()
        w = cfg.width
        self.features = nn.Sequential(
            nn.Conv2d(4, w, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),
            nn.SiLU(),
        )
        # Masked mean and standard deviation of the features: global statistics only.
        self.head = nn.Sequential(nn.Linear(8 * w + 6, 4 * w), nn.SiLU(), nn.Linear(4 * w, cfg.dim))

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random flip, rotation, scale and shift of `(B, C, H, W)`, one draw per sample."""
        cfg = self.config
        b = x.shape[0]

        def uniform(scale: float) -> torch.Tensor:
            return (torch.rand(b, generator=generator, device="cpu") * 2 - 1) * scale

        angle = torch.deg2rad(uniform(cfg.max_rotation))
        scale = 1 + uniform(cfg.max_scale)
        flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, uniform(cfg.max_shift)], 1),
                torch.stack([sin * flip, cos, uniform(cfg.max_shift)], 1),
            ],
            1,
        ).to(x)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)

    def forward(
        self,
        image: torch.Tensor,
        face_mask: torch.Tensor,
        augment: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        cfg = self.config
        size = (cfg.input_size, cfg.input_size)
        x = torch.cat([image, face_mask], dim=1)
        x = F.interpolate(x, size=size, mode="area")
        if (self.training if augment is None else augment) and cfg.augment:
            x = self.augment(x, generator)
        rgb, mask = x[:, :3], x[:, 3:]
        h = self.features(torch.cat([rgb * mask, mask], dim=1))
        m = F.interpolate(mask, size=h.shape[-2:], mode="area")
        total = m.sum(dim=(2, 3)).clamp_min(1e-3)
        mean = (h * m).sum(dim=(2, 3)) / total
        std = (((h - mean[..., None, None]) ** 2 * m).sum(dim=(2, 3)) / total).sqrt()
        m_rgb = mask.sum(dim=(2, 3)).clamp_min(1e-3)
        rgb_mean = (rgb * mask).sum(dim=(2, 3)) / m_rgb
        rgb_std = (((rgb - rgb_mean[..., None, None]) ** 2 * mask).sum(dim=(2, 3)) / m_rgb).sqrt()
        return self.head(torch.cat([mean, std, rgb_mean, rgb_std], dim=1))
