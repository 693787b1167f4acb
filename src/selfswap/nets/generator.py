"""The SAMAE generator: a U-Net that paints the masked-out face back.

Inputs (all at crop size R): the masked image (3), the mask (1), the rendered normal map (3)
and silhouette (1) of the mesh to paint; plus an identity code (the 128-D face descriptor)
and an appearance code (skin tone and light). The codes form a style vector that modulates
every residual block at every resolution.

For CPU budgets the U-Net starts with space-to-depth (pixel unshuffle): the full-resolution
level costs one cheap 1x1 projection instead of 3x3 convolutions at R×R; the last layer
shuffles back. The price is some high-frequency detail, which the skip of the unmasked image
and the final composite keep outside the mask. Inside it, an optional full-resolution head
(`full_res_head`, issue #14 item 2) refines the shuffled output with a few thin 3x3
convolutions at R×R that see the guidance (the source texture above all) pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from selfswap.nets.blocks import ResBlock, SelfAttention, group_norm

GUIDANCE_CHANNELS = 8  # masked RGB, mask, normal map, silhouette
TEXTURE_CHANNELS = 4  # the source's pixels on the swap geometry (RGB) and their visibility


@dataclass
class GeneratorConfig:
    size: int = 128
    stem_factor: int = 2  # space-to-depth factor before the U-Net levels
    # A thin top level (R/2, 24 channels) and the width lower down: at R = 128 this is
    # 10.8 M parameters and 1.7 GFLOPs per forward, and a full training step runs at
    # ~5.4 samples/s on 2 CPU cores (benchmarks/bench_train.py).
    channels: list[int] = field(default_factory=lambda: [24, 64, 128, 192, 256])
    blocks_per_level: int = 1
    attention: bool = True  # self-attention at the lowest resolution
    id_dim: int = 128
    appearance_dim: int = 16
    style_dim: int = 256
    # also take the source texture rendered through the 3DMM and its visibility
    # (`selfswap.geometry.texture`) as guidance
    source_texture: bool = False
    # channels of a residual refinement head at full resolution R (0 = none): it sees the
    # shuffled output and the guidance pixel for pixel, and its last convolution starts at
    # zero, so a model trained without it continues unchanged
    full_res_head: int = 0

    @property
    def guidance_channels(self) -> int:
        return GUIDANCE_CHANNELS + (TEXTURE_CHANNELS if self.source_texture else 0)


class StyleMapper(nn.Module):
    """Identity code + appearance code → style vector `(B, style_dim)`."""

    def __init__(self, id_dim: int, appearance_dim: int, style_dim: int) -> None:
        super().__init__()
        self.appearance_dim = appearance_dim
        self.net = nn.Sequential(
            nn.Linear(id_dim + appearance_dim, style_dim),
            nn.SiLU(),
            nn.Linear(style_dim, style_dim),
            nn.SiLU(),
            nn.Linear(style_dim, style_dim),
        )

    def forward(self, z_id: torch.Tensor, z_app: torch.Tensor | None) -> torch.Tensor:
        z_id = F.normalize(z_id, dim=1) * z_id.shape[1] ** 0.5
        if self.appearance_dim:
            if z_app is None:
                z_app = z_id.new_zeros(z_id.shape[0], self.appearance_dim)
            z_id = torch.cat([z_id, z_app], dim=1)
        return self.net(z_id)


class Generator(nn.Module):
    """`forward(guidance (B,8,R,R), z_id (B,128), z_app (B,A)|None) -> (B,3,R,R)` in [0, 1]."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or GeneratorConfig()
        s, chans = cfg.stem_factor, cfg.channels
        self.style = StyleMapper(cfg.id_dim, cfg.appearance_dim, cfg.style_dim)
        self.stem = nn.Conv2d(cfg.guidance_channels * s * s, chans[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        for i, c in enumerate(chans):
            c_in = chans[max(i - 1, 0)] if i else chans[0]
            blocks = [ResBlock(c_in if j == 0 else c, c, 0) for j in range(cfg.blocks_per_level)]
            self.down_blocks.append(nn.ModuleList(blocks))
            if i < len(chans) - 1:
                self.downsamples.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(chans[-1], chans[-1], cfg.style_dim)])
        self.attention = SelfAttention(chans[-1]) if cfg.attention else None
        self.mid2 = ResBlock(chans[-1], chans[-1], cfg.style_dim)
        self.up_blocks = nn.ModuleList()
        for i in reversed(range(len(chans))):
            c = chans[i]
            c_in = chans[i + 1] if i + 1 < len(chans) else chans[-1]
            blocks = [ResBlock(c_in + c, c, cfg.style_dim)]
            blocks += [ResBlock(c, c, cfg.style_dim) for _ in range(cfg.blocks_per_level - 1)]
            self.up_blocks.append(nn.ModuleList(blocks))
        self.out_norm = group_norm(chans[0])
        self.out = nn.Conv2d(chans[0], 3 * s * s, 3, padding=1)
        if s > 1:
            icnr_(self.out, s)
        self.head = (
            FullResHead(cfg.guidance_channels, cfg.full_res_head) if cfg.full_res_head else None
        )

    def forward(
        self, guidance: torch.Tensor, z_id: torch.Tensor, z_app: torch.Tensor | None = None
    ) -> torch.Tensor:
        s = self.config.stem_factor
        style = self.style(z_id, z_app)
        h = self.stem(F.pixel_unshuffle(guidance, s) if s > 1 else guidance)
        skips = []
        for i, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        for block in self.mid:
            h = block(h, style)
        if self.attention is not None:
            h = self.attention(h)
        h = self.mid2(h, style)
        for blocks, skip in zip(self.up_blocks, reversed(skips)):
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = torch.cat([h, skip], dim=1)
            for block in blocks:
                h = block(h, style)
        h = self.out(F.silu(self.out_norm(h)))
        if s > 1:
            h = F.pixel_shuffle(h, s)
        if self.head is not None:
            h = h + self.head(h, guidance)
        return torch.sigmoid(h)


class FullResHead(nn.Module):
    """`forward(logits (B,3,R,R), guidance (B,G,R,R)) -> (B,3,R,R)`: a correction of the
    generator's output logits from 3x3 convolutions at full resolution. The last layer is
    zero at the start, so the head begins as no change."""

    def __init__(self, guidance_channels: int, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3 + guidance_channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, 3, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, logits: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([logits, guidance.to(logits.dtype)], dim=1))


def icnr_(conv: nn.Conv2d, factor: int) -> None:
    """ICNR initialisation (Aitken et al. 2017) of a convolution feeding `pixel_shuffle`:
    the `factor²` sub-pixel filters of each output channel start identical, so the shuffled
    output starts as a nearest-neighbour upsampling instead of a checkerboard."""
    out_channels = conv.out_channels // factor**2
    base = torch.empty(out_channels, *conv.weight.shape[1:])
    nn.init.kaiming_uniform_(base, a=5**0.5)
    with torch.no_grad():
        conv.weight.copy_(base.repeat_interleave(factor**2, dim=0))
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[:: factor**2].repeat_interleave(factor**2))


def compose_guidance(
    image: torch.Tensor,
    mask: torch.Tensor,
    normals: torch.Tensor,
    silhouette: torch.Tensor,
    texture: torch.Tensor | None = None,
    visibility: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generator input `(B, 8, R, R)`: image `(B,3,R,R)` in [0,1] with the mask `(B,1,R,R)`
    (1 = hidden) blanked out, the mask, normals `(B,3,R,R)` in [-1,1], silhouette; with a
    source texture `(B,3,R,R)` in [0,1] and its visibility `(B,1,R,R)`, `(B, 12, R, R)`
    (the texture weighted by its visibility)."""
    parts = [image * (1 - mask), mask, normals, silhouette]
    if texture is not None:
        if visibility is None:
            raise ValueError("a source texture needs its visibility")
        parts += [texture * visibility, visibility]
    return torch.cat(parts, dim=1)


def composite(generated: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Generated pixels inside the mask, original pixels outside."""
    return generated * mask + image * (1 - mask)
