"""Multi-scale patch discriminator (hinge GAN) with features for feature matching."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


@dataclass
class DiscriminatorConfig:
    scales: int = 2  # full resolution and half
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    in_channels: int = 4  # RGB + mask: the critic knows where to look


class PatchDiscriminator(nn.Module):
    """One scale: strided convolutions to a map of real/fake logits."""

    def __init__(self, in_channels: int, channels: list[int]) -> None:
        super().__init__()
        layers = []
        c_in = in_channels
        for i, c in enumerate(channels):
            stride = 2 if i < len(channels) - 1 else 1
            layers.append(spectral_norm(nn.Conv2d(c_in, c, 4, stride=stride, padding=1)))
            c_in = c
        self.layers = nn.ModuleList(layers)
        self.logits = spectral_norm(nn.Conv2d(c_in, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.logits(x), features


class MultiScaleDiscriminator(nn.Module):
    """`forward(image (B,3,R,R), mask (B,1,R,R)) -> [(logits, features) per scale]`."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or DiscriminatorConfig()
        self.scales = nn.ModuleList(
            PatchDiscriminator(cfg.in_channels, cfg.channels) for _ in range(cfg.scales)
        )

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor
    ) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        x = torch.cat([image * 2 - 1, mask], dim=1)
        outputs = []
        for i, disc in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 2)
            outputs.append(disc(x))
        return outputs
