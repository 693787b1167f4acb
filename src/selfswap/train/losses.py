"""Losses: L1 and MS-SSIM reconstruction, identity, hinge GAN and feature matching.

All take batched tensors in [0, 1] unless stated and return a scalar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Weights of the five MS-SSIM scales (Wang et al. 2003); fewer scales renormalise them.
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor):
    c = x.shape[1]
    c1, c2 = 0.01**2, 0.03**2
    mu_x = F.conv2d(x, window, groups=c)
    mu_y = F.conv2d(y, window, groups=c)
    sxx = F.conv2d(x * x, window, groups=c) - mu_x**2
    syy = F.conv2d(y * y, window, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, window, groups=c) - mu_x * mu_y
    contrast_structure = (2 * sxy + c2) / (sxx + syy + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return luminance, contrast_structure


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """Mean SSIM of `(B, C, H, W)` images in [0, 1] (Gaussian window, sigma 1.5)."""
    window = _gaussian_window(window_size, 1.5, x.shape[1], x.device, x.dtype)
    luminance, cs = _ssim_parts(x, y, window)
    return (luminance * cs).mean()


def ms_ssim(
    x: torch.Tensor, y: torch.Tensor, scales: int = 4, window_size: int = 7
) -> torch.Tensor:
    """Multi-scale SSIM of `(B, C, H, W)` images in [0, 1]; a 7-px window and 4 scales
    suit 128-px crops (the coarsest scale is 16 px)."""
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:scales], device=x.device, dtype=x.dtype)
    weights = weights / weights.sum()
    window = _gaussian_window(window_size, 1.5, x.shape[1], x.device, x.dtype)
    values = []
    for i in range(scales):
        luminance, cs = _ssim_parts(x, y, window)
        if i == scales - 1:
            values.append((luminance * cs).mean(dim=(1, 2, 3)))
        else:
            values.append(cs.mean(dim=(1, 2, 3)))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=1).clamp_min(1e-6)
    return torch.prod(stacked**weights, dim=1).mean()


def reconstruction_loss(
    output: torch.Tensor, target: torch.Tensor, l1_weight: float, ms_ssim_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    l1 = (output - target).abs().mean()
    loss = l1_weight * l1
    logs = {"l1": float(l1)}
    if ms_ssim_weight:
        structural = 1 - ms_ssim(output, target)
        loss = loss + ms_ssim_weight * structural
        logs["ms_ssim"] = float(structural)
    return loss, logs


def identity_loss(embedding: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """1 − cosine similarity between embeddings `(B, D)`."""
    return (1 - F.cosine_similarity(embedding, reference.detach(), dim=1)).mean()


def hinge_discriminator_loss(real_logits: list, fake_logits: list) -> torch.Tensor:
    loss = 0.0
    for real, fake in zip(real_logits, fake_logits):
        loss = loss + F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return loss / len(real_logits)


def hinge_generator_loss(fake_logits: list) -> torch.Tensor:
    return sum(-f.mean() for f in fake_logits) / len(fake_logits)


def feature_matching_loss(real_features: list, fake_features: list) -> torch.Tensor:
    """L1 between discriminator features of real and generated images, all scales/layers."""
    loss, count = 0.0, 0
    for real_scale, fake_scale in zip(real_features, fake_features):
        for real, fake in zip(real_scale, fake_scale):
            loss = loss + (real.detach() - fake).abs().mean()
            count += 1
    return loss / max(count, 1)
