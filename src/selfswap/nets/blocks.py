"""Building blocks shared by the networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4) or 1, channels, affine=False)


class ModulatedNorm(nn.Module):
    """GroupNorm whose per-channel scale and shift come from a style vector (AdaIN-like).

    Shapes: x `(B, C, H, W)`, style `(B, S)`.
    """

    def __init__(self, channels: int, style_dim: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.affine = nn.Linear(style_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(style)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta


class ResBlock(nn.Module):
    """Pre-activation residual block, optionally modulated by a style vector."""

    def __init__(self, c_in: int, c_out: int, style_dim: int = 0) -> None:
        super().__init__()
        self.style_dim = style_dim
        if style_dim:
            self.norm1 = ModulatedNorm(c_in, style_dim)
            self.norm2 = ModulatedNorm(c_out, style_dim)
        else:
            self.norm1 = group_norm(c_in)
            self.norm2 = group_norm(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def _norm(self, norm: nn.Module, x: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
        return norm(x, style) if self.style_dim else norm(x)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self._norm(self.norm1, x, style)))
        h = self.conv2(F.silu(self._norm(self.norm2, h, style)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head spatial self-attention for low resolutions. `(B, C, H, W)` → same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None], v.transpose(1, 2)[:, None]
        )
        return x + self.out(attn[:, 0].transpose(1, 2).reshape(b, c, h, w))
