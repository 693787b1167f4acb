"""Metric functions of the evaluation harness, each testable on cases with known answers."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from selfswap.face.identity import cosine_similarity

__all__ = [
    "bootstrap_ci",
    "cosine_similarity",
    "expression_error",
    "frechet_distance",
    "pose_error",
    "psnr",
    "retrieval_hits",
    "shape_error",
    "ssim",
]


def pose_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference of (yaw, pitch, roll) in degrees; inputs (..., 3)."""
    return np.abs(np.asarray(a, float) - np.asarray(b, float)).mean(-1)


def _rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2, axis=-1))


def expression_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS difference of standardized 3DMM expression coefficients (..., 10), in units of
    their population standard deviation."""
    return _rms(a, b)


def shape_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS difference of standardized 3DMM shape coefficients (..., 40), in units of their
    population standard deviation."""
    return _rms(a, b)


def retrieval_hits(queries: np.ndarray, gallery: np.ndarray, truth: np.ndarray, k: int):
    """For each query embedding (N, D): is gallery row `truth[i]` among the `k` most similar
    rows of `gallery` (M, D) by cosine similarity? Returns (N,) bool."""
    q = np.asarray(queries, float)
    g = np.asarray(gallery, float)
    sims = cosine_similarity(q[:, None, :], g[None, :, :])  # (N, M)
    true_sim = sims[np.arange(len(q)), truth]
    better = (sims > true_sim[:, None]).sum(1)  # ties count in the query's favour
    return better < k


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    mse = np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two uint8 RGB images (scikit-image, channel-averaged)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=255))


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets x (N, D) and y (M, D):
    |mu_x - mu_y|^2 + tr(Cx + Cy - 2 (Cx Cy)^1/2), the formula of FID."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mu_x, mu_y = x.mean(0), y.mean(0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = linalg.sqrtm(cx @ cy)
    if not np.isfinite(root).all():  # near-singular product: regularise as FID code does
        eps = np.eye(len(cx)) * 1e-6
        root = linalg.sqrtm((cx + eps) @ (cy + eps))
    root = np.real(root)
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(cx + cy - 2 * root))


def bootstrap_ci(
    values: np.ndarray, samples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap confidence interval of the mean, ignoring NaNs."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(samples, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)
