"""Putting generated faces back into the frame: feathered masks, paste-back, colour matching.

A generated face is an R×R crop in the canonical alignment; `matrix` is the 2x3 similarity
that maps frame pixels to crop pixels (`selfswap.face.align.alignment_matrix`). Paste-back
warps the crop and a feathered version of its mask back into the frame through the inverse
transform and blends them, working only on the frame region the feathered mask can reach:
every pixel outside `paste_region` — and every pixel where the warped mask is 0 — is left
bit-identical.

Feathering: the crop-space mask `(R, R)` in [0, 1] is eroded by `erode·R` pixels (default:
the blur radius, half the feather width, so the soft edge stays inside the given mask) and
blurred with a Gaussian whose transition (about 4 sigma) spans `feather·R` pixels. It is also
made 0 within the blur radius of the crop border so that no seam appears where the crop ends.

Colour matching moves the generated crop's colour statistics (mean and standard deviation
per Lab channel, weighted by the mask) towards those of the target's original crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from selfswap.face.align import invert, transform_points, warp_from_crop

#: Default feather width and erosion, as fractions of the crop side R.
FEATHER = 0.06
#: Limits on the per-channel std ratio of colour matching (robustness on flat regions).
STD_RATIO = (0.5, 2.0)
#: How the face is resampled into the frame. Bilinear resampling at the sub-pixel offsets of
#: a paste blurs what it moves (two bilinear warps keep 44 % of a photo's Laplacian variance,
#: two bicubic 85 %, two Lanczos 94 %, on 20 in-the-wild photos); the mask stays bilinear.
#: See docs/decisions.md, "Resampling at the size it is shown".
FACE_INTERPOLATION = cv2.INTER_LANCZOS4


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 as is; float images are taken to be in [0, 1]."""
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


def feather_mask(
    mask: np.ndarray, feather: float = FEATHER, erode: float | None = None
) -> np.ndarray:
    """Soft-edged version of a crop-space mask.

    mask: `(R, R)` float in [0, 1] (or bool/uint8 0/1 or 0/255).
    feather: width of the soft edge as a fraction of R; 0 keeps a hard edge.
    erode: erosion as a fraction of R; None erodes by the blur radius (`feather / 2`), so
        the soft edge stays inside the mask.
    Returns `(R, R)` float32 in [0, 1], 0 on a margin along the crop border.
    """
    m = np.asarray(mask)
    if m.dtype == np.uint8 and m.max(initial=0) > 1:
        m = m.astype(np.float32) / 255.0
    m = np.clip(m.astype(np.float32), 0.0, 1.0)
    if m.ndim != 2:
        raise ValueError(f"mask must be (R, R), got {m.shape}")
    size = max(m.shape)
    sigma = feather * size / 4.0
    radius = int(math.ceil(2 * sigma)) if sigma > 0.3 else 0
    erode_px = radius if erode is None else int(round(erode * size))
    if erode_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1,) * 2)
        m = cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    if radius:
        margin = radius + 1
        m[:margin] = 0
        m[-margin:] = 0
        m[:, :margin] = 0
        m[:, -margin:] = 0
        m = cv2.GaussianBlur(m, (2 * radius + 1,) * 2, sigma, borderType=cv2.BORDER_CONSTANT)
    else:
        m[[0, -1]] = 0
        m[:, [0, -1]] = 0
    return np.clip(m, 0.0, 1.0)


def paste_region(
    matrix: np.ndarray, soft_mask: np.ndarray, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Frame region `(x0, y0, x1, y1)` (exclusive ends, clipped to the frame) that a crop-space
    mask `(R, R)` touches once warped back through the inverse of `matrix` (frame → crop);
    None when it touches nothing."""
    ys, xs = np.nonzero(soft_mask > 0)
    if len(xs) == 0:
        return None
    # the support's bounding box in crop space, one pixel wider for bilinear interpolation
    x0, x1, y0, y1 = xs.min() - 1, xs.max() + 1, ys.min() - 1, ys.max() + 1
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
    pts = transform_points(corners, invert(matrix))
    fx0, fy0 = np.floor(pts.min(0)).astype(int) - 1
    fx1, fy1 = np.ceil(pts.max(0)).astype(int) + 2
    fx0, fy0 = max(fx0, 0), max(fy0, 0)
    fx1, fy1 = min(fx1, width), min(fy1, height)
    if fx0 >= fx1 or fy0 >= fy1:
        return None
    return int(fx0), int(fy0), int(fx1), int(fy1)


def color_match(
    generated: np.ndarray, reference: np.ndarray, mask: np.ndarray, strength: float = 1.0
) -> np.ndarray:
    """Move `generated`'s colour statistics towards `reference`'s inside `mask`.

    generated, reference: `(R, R, 3)` RGB, uint8 (or float in [0, 1]); reference is the
    target's original aligned crop. mask: `(R, R)` in [0, 1]; statistics are taken where it
    is above 0.5. strength: 0 returns the input, 1 a full mean/std transfer in Lab (std
    ratio limited to `STD_RATIO`); the whole crop is transformed.
    Returns `(R, R, 3)` uint8.
    """
    gen8 = _as_uint8(generated)
    if strength <= 0:
        return gen8.copy()
    inside = (np.asarray(mask) > 0.5).astype(np.uint8)
    if cv2.countNonZero(inside) < 16:
        return gen8.copy()
    # OpenCV's 8-bit Lab (L·255/100, a + 128, b + 128) is a per-channel affine image of Lab,
    # so a mean/std transfer there is one in Lab; it is much faster than float Lab.
    gen = cv2.cvtColor(gen8, cv2.COLOR_RGB2Lab)
    ref = cv2.cvtColor(_as_uint8(reference), cv2.COLOR_RGB2Lab)
    mu_g, sd_g = (v.ravel() for v in cv2.meanStdDev(gen, mask=inside))
    mu_r, sd_r = (v.ravel() for v in cv2.meanStdDev(ref, mask=inside))
    ratio = np.clip(sd_r / np.maximum(sd_g, 0.5), *STD_RATIO)
    s = float(min(strength, 1.0))
    gain = 1.0 + s * (ratio - 1.0)
    offset = s * (mu_r - mu_g * ratio)
    affine = np.concatenate([np.diag(gain), offset[:, None]], 1)  # (3, 4), per channel
    out = cv2.transform(gen, affine)  # uint8, rounded and saturated
    return cv2.cvtColor(out, cv2.COLOR_Lab2RGB)


def paste_into(
    frame: np.ndarray,
    crop: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray,
    *,
    feather: float = FEATHER,
    erode: float | None = None,
    color_reference: np.ndarray | None = None,
    color_strength: float = 1.0,
) -> tuple[int, int, int, int] | None:
    """`paste_back` in place: blends into `frame` (`(H, W, 3)` uint8, modified) and returns the
    region it touched (see `paste_region`), or None."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.dtype} {frame.shape}")
    crop8 = _as_uint8(crop)
    size = crop8.shape[0]
    if crop8.shape != (size, size, 3) or np.shape(mask) != (size, size):
        raise ValueError(f"crop (R, R, 3) and mask (R, R) expected, got {crop8.shape}, "
                         f"{np.shape(mask)}")  # fmt: skip
    if color_reference is not None:
        crop8 = color_match(crop8, color_reference, mask, color_strength)
    soft = feather_mask(mask, feather, erode)
    height, width = frame.shape[:2]
    region = paste_region(matrix, soft, width, height)
    if region is None:
        return None
    x0, y0, x1, y1 = region
    m = np.array(matrix, np.float64)
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # frame ROI → crop
    w, h = x1 - x0, y1 - y0
    alpha = warp_from_crop(soft, m, w, h)[..., None]
    face = warp_from_crop(crop8, m, w, h, FACE_INTERPOLATION).astype(np.float32)
    roi = frame[y0:y1, x0:x1]
    base = roi.astype(np.float32)
    blended = np.rint(base + alpha * (face - base))
    # exact where alpha is 0: base + 0 * (...) == base
    roi[...] = np.clip(blended, 0, 255).astype(np.uint8)
    return region


def paste_back(
    frame: np.ndarray,
    crop: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray,
    *,
    feather: float = FEATHER,
    erode: float | None = None,
    color_reference: np.ndarray | None = None,
    color_strength: float = 1.0,
) -> np.ndarray:
    """The frame with one generated face pasted back.

    frame: `(H, W, 3)` uint8 RGB (not modified). crop: `(R, R, 3)` RGB uint8 or float in
    [0, 1]. matrix: `(2, 3)` frame → crop similarity. mask: `(R, R)` in [0, 1], where the crop
    replaces the frame. feather / erode: see `feather_mask`. color_reference: the target's
    original crop `(R, R, 3)`; when given, the crop's colours are matched to it with
    `color_strength` in [0, 1]. Returns a new `(H, W, 3)` uint8 frame.
    """
    out = frame.copy()
    paste_into(
        out,
        crop,
        matrix,
        mask,
        feather=feather,
        erode=erode,
        color_reference=color_reference,
        color_strength=color_strength,
    )
    return out


def paste_back_many(
    frame: np.ndarray,
    crops: Sequence[np.ndarray] | np.ndarray,
    matrices: Sequence[np.ndarray] | np.ndarray,
    masks: Sequence[np.ndarray] | np.ndarray,
    *,
    feather: float = FEATHER,
    erode: float | None = None,
    color_references: Sequence[np.ndarray] | np.ndarray | None = None,
    color_strength: float = 1.0,
) -> np.ndarray:
    """Paste several faces, in order (a later face is blended over an earlier one where they
    overlap). crops `(N, R, R, 3)`, matrices `(N, 2, 3)`, masks `(N, R, R)`,
    color_references `(N, R, R, 3)` or None. Returns a new `(H, W, 3)` uint8 frame."""
    if not len(crops) == len(matrices) == len(masks):
        raise ValueError("crops, matrices and masks must have the same length")
    if color_references is not None and len(color_references) != len(crops):
        raise ValueError("color_references must have one crop per face")
    out = frame.copy()
    for i in range(len(crops)):
        paste_into(
            out,
            crops[i],
            matrices[i],
            masks[i],
            feather=feather,
            erode=erode,
            color_reference=None if color_references is None else color_references[i],
            color_strength=color_strength,
        )
    return out
