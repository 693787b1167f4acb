"""Metric functions of the evaluation harness, each testable on cases with known answers."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import linalg, ndimage

from selfswap.face.identity import cosine_similarity

__all__ = [
    "bootstrap_ci",
    "cosine_similarity",
    "expression_error",
    "frechet_distance",
    "pose_error",
    "psnr",
    "retrieval_hits",
    "seam_score",
    "shape_error",
    "sharpness_ratio",
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
    if len(x) < 2 or len(y) < 2:
        raise ValueError("The Fréchet distance needs at least 2 samples on each side.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("The Fréchet distance needs finite features.")
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


def _box_slices(box: np.ndarray, shape: tuple, grow: float = 1.0) -> tuple[slice, slice]:
    """Row and column slices of box (x0, y0, x1, y1) grown by `grow` about its centre,
    clipped to an image of `shape`."""
    x0, y0, x1, y1 = np.asarray(box, float)
    cx, cy, half_w, half_h = (
        (x0 + x1) / 2,
        (y0 + y1) / 2,
        grow * (x1 - x0) / 2,
        grow * (y1 - y0) / 2,
    )
    h, w = shape[:2]
    xa, xb = int(max(0, np.floor(cx - half_w))), int(min(w, np.ceil(cx + half_w)))
    ya, yb = int(max(0, np.floor(cy - half_h))), int(min(h, np.ceil(cy + half_h)))
    return slice(ya, yb), slice(xa, xb)


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian of an RGB uint8 image's luminance (a focus measure)."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F, ksize=3).var())


def sharpness_ratio(output: np.ndarray, original: np.ndarray, box: np.ndarray) -> float:
    """Sharpness of the face in `output` relative to the same face box of `original`, both
    full-size images of the same shape (so at one scale: the photo's own resolution, where
    the user looks): variance of the Laplacian of the output's box over the original's.
    1.0 = as sharp as the photo; a 128-px face pasted into a 500-px face box scores low."""
    rows, cols = _box_slices(box, original.shape)
    if rows.stop - rows.start < 8 or cols.stop - cols.start < 8:
        return float("nan")
    base = laplacian_variance(original[rows, cols])
    return laplacian_variance(output[rows, cols]) / base if base > 0 else float("nan")


def _changed_region(output: np.ndarray, original: np.ndarray, threshold: float) -> np.ndarray:
    """The connected region the swap changed (largest component, holes filled), bool."""
    diff = np.abs(output.astype(np.float32) - original.astype(np.float32)).mean(-1)
    changed = cv2.GaussianBlur(diff, (0, 0), 2.0) > threshold
    labels, count = ndimage.label(changed)
    if count == 0:
        return changed
    sizes = ndimage.sum(changed, labels, range(1, count + 1))
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def seam_score(
    output: np.ndarray, original: np.ndarray, box: np.ndarray, threshold: float = 6.0
) -> float:
    """Colour step at the border of the pasted region, in CIELAB ΔE units: how much the
    colour change the swap made just inside its border differs from the change just
    outside it (0 = no step; larger = a step a viewer sees).

    The border is found without knowing the method: the region of the face box (grown
    1.6x) where the output differs from the original by more than `threshold` grey levels
    (after a 2-px blur, so an invisible watermark does not count). Along that border, the
    mean Lab colour of a band just inside (width w = 4 % of the face width, at least 2 px)
    of the Lab difference output − original is compared with the band just outside,
    locally (Gaussian window of 2w, so the new face's own detail averages out); the score
    is the mean length of that step over the border pixels. Because the border is where
    the change crosses `threshold`, even a perfect blend scores a few ΔE; a feathered or
    Poisson blend that ramps the change up over a wide band stays near that floor, a hard
    paste with a colour shift scores about the shift. NaN when the output did not change
    the face (nothing was pasted)."""
    rows, cols = _box_slices(box, original.shape, grow=1.6)
    out, orig = output[rows, cols], original[rows, cols]
    face_width = float(box[2] - box[0])
    region = _changed_region(out, orig, threshold)
    if region.sum() < 0.05 * face_width**2:
        return float("nan")
    band = max(2.0, 0.04 * face_width)
    inside_dist = ndimage.distance_transform_edt(region)
    outside_dist = ndimage.distance_transform_edt(~region)
    inner = ((inside_dist > 0) & (inside_dist <= band)).astype(np.float32)
    outer = ((outside_dist > 0) & (outside_dist <= band)).astype(np.float32)
    border = (inside_dist > 0) & (inside_dist <= 1.5)
    # the border of the crop is not a seam: drop border pixels near the crop's edge
    edge = np.zeros_like(border)
    m = int(np.ceil(2 * band))
    edge[m:-m, m:-m] = True
    border &= edge
    if border.sum() < 8:
        return float("nan")
    sigma = 2 * band

    def local_mean(lab: np.ndarray, weight: np.ndarray) -> np.ndarray:
        norm = cv2.GaussianBlur(weight, (0, 0), sigma)[border]
        sums = [cv2.GaussianBlur(lab[..., c] * weight, (0, 0), sigma)[border] for c in range(3)]
        return np.stack(sums, -1) / np.maximum(norm, 1e-6)[:, None]

    shift = cv2.cvtColor(out.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB) - cv2.cvtColor(
        orig.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB
    )
    step = local_mean(shift, inner) - local_mean(shift, outer)
    return float(np.linalg.norm(step, axis=-1).mean())
