"""Alignment of a face to selfswap's canonical crop, and back.

The canonical crop is an R×R square (R = 128, 256, 512, ...) holding the face with room for
hair, ears and chin: five reference points (eye centres, nose tip, mouth corners) are mapped
by a least-squares similarity transform onto `TEMPLATE` (in units of R). The template is
the widely used 112x112 ArcFace layout, zoomed out by 0.7 and moved up so the eyes sit at
0.44·R: eye distance is 0.22·R, the chin lands near 0.85·R and the top of the head near
0.1·R. See docs/alignment.md.
"""

from __future__ import annotations

import cv2
import numpy as np

_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
     [70.7299, 92.2041]],
    np.float64,
)  # fmt: skip
_ZOOM, _EYE_LINE = 0.70, 0.44

#: Reference points in crop units: left eye, right eye (image left/right), nose tip,
#: left mouth corner, right mouth corner.
TEMPLATE = (_ARCFACE_112 / 112 - [0.5, 0.46]) * _ZOOM + [0.5, _EYE_LINE]


def reference_points(landmarks68: np.ndarray) -> np.ndarray:
    """The five template points (eye centres, nose tip, mouth corners) from 68 landmarks."""
    p = np.asarray(landmarks68, np.float64)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src → dst,
    as a 2x3 matrix (Umeyama's closed form, no reflection)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ fix @ vt
    scale = np.trace(np.diag(d) @ fix) / a.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def alignment_matrix(landmarks68: np.ndarray, size: int) -> np.ndarray:
    """2x3 similarity mapping image pixels to the canonical crop of side `size`."""
    return similarity_transform(reference_points(landmarks68), TEMPLATE * size)


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine transform."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def matrix_scale(matrix: np.ndarray) -> float:
    """The uniform scale factor of a 2x3 similarity transform."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The aligned crop `(size, size, C)`; outside the image is filled by edge replication."""
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def warp_from_crop(
    crop: np.ndarray,
    matrix: np.ndarray,
    width: int,
    height: int,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Crop content put back into image space `(height, width, C)` (zeros outside);
    `interpolation` an OpenCV flag (Lanczos or bicubic keep detail that bilinear blurs)."""
    return cv2.warpAffine(
        crop,
        np.asarray(matrix, np.float64),
        (width, height),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to `(..., 2)` points."""
    m = np.asarray(matrix, np.float64)
    return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def camera_to_crop(camera: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Compose an image-space 3x4 camera with the alignment: BFM vertices → crop pixels
    (x, y) and a depth scaled by the same factor."""
    m = np.asarray(matrix, np.float64)
    out = np.zeros((3, 4))
    out[:2] = m[:, :2] @ camera[:2]
    out[:2, 3] += m[:, 2]
    out[2] = camera[2] * matrix_scale(m)
    return out.astype(np.float32)
