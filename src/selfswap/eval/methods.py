"""Swap methods the harness compares: trained models, a classic landmark-warp + Poisson
blend (OpenCV) and "no swap" (the unchanged target: the floor for identity transfer and the
ceiling for leakage)."""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
from scipy.spatial import Delaunay

from selfswap.errors import NoFaceError
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.provenance import embed_watermark


class SwapMethod(Protocol):
    name: str

    def swap(self, source: np.ndarray | list[np.ndarray], target: np.ndarray) -> np.ndarray:
        """Put the person of `source` (a photo, or several photos of one person) into every
        face of `target`; RGB uint8 in and out."""
        ...


class ModelMethod:
    """A selfswap model (`"default"`, an exported file or a training run)."""

    def __init__(self, name: str, model: str, options: dict | None = None) -> None:
        """`options`: `SwapConfig` fields as text or values, e.g. `{"paste": "mask"}`."""
        from selfswap.api import Swapper
        from selfswap.config import apply_overrides, from_dict, to_dict
        from selfswap.swap.options import SwapConfig

        self.name = name
        self.model = model
        overrides = [f"{k}={v}" for k, v in (options or {}).items()]
        data = apply_overrides(to_dict(SwapConfig(model=model)), overrides)
        self.swapper = Swapper.from_config(from_dict(SwapConfig, data, "--method options"))

    def swap(self, source: np.ndarray | list[np.ndarray], target: np.ndarray) -> np.ndarray:
        return self.swapper.swap_image(source, target).image


class NoSwap:
    name = "no swap"
    reconstructs = False  # self-reconstruction of the unchanged image is trivially perfect

    def swap(self, source: np.ndarray | list[np.ndarray], target: np.ndarray) -> np.ndarray:
        return target


def piecewise_affine_warp(
    image: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray, out_shape: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` so that `src_points` land on `dst_points`, triangle by triangle over the
    Delaunay triangulation of `dst_points`. Returns (warped image, mask of covered pixels)."""
    height, width = out_shape[:2]
    tri = Delaunay(dst_points)
    x0, y0 = np.floor(dst_points.min(0)).astype(int).clip(0)
    x1, y1 = np.ceil(dst_points.max(0)).astype(int) + 1
    x1, y1 = min(x1, width), min(y1, height)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    pixels = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    simplex = tri.find_simplex(pixels)
    inside = simplex >= 0
    pixels, simplex = pixels[inside], simplex[inside]
    transform = tri.transform[simplex]  # (n, 3, 2): barycentric coordinates of each pixel
    bary2 = np.einsum("nij,nj->ni", transform[:, :2], pixels - transform[:, 2])
    bary = np.concatenate([bary2, 1 - bary2.sum(1, keepdims=True)], 1)
    corners = np.asarray(src_points, np.float64)[tri.simplices[simplex]]  # (n, 3, 2)
    source_xy = np.einsum("ni,nij->nj", bary, corners)
    map_x = np.full((height, width), -1, np.float32)
    map_y = np.full((height, width), -1, np.float32)
    px, py = pixels[:, 0].astype(int), pixels[:, 1].astype(int)
    map_x[py, px], map_y[py, px] = source_xy[:, 0], source_xy[:, 1]
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = np.zeros((height, width), np.uint8)
    mask[py, px] = 255
    return warped, mask


class PoissonSwap:
    """The classic swap: warp the source's face onto the target's 68 landmarks (piecewise
    affine) and blend it in with OpenCV's Poisson `seamlessClone`."""

    name = "landmark warp + Poisson"

    def __init__(self, analyzer: FaceAnalyzer | None = None) -> None:
        self.analyzer = analyzer or FaceAnalyzer(AnalyzerConfig(embedding="none"))

    def swap(self, source: np.ndarray | list[np.ndarray], target: np.ndarray) -> np.ndarray:
        if isinstance(source, list):  # the warp copies one photo: the first
            source = source[0]
        sources = self.analyzer.analyze(source)
        targets = self.analyzer.analyze(target)
        if not sources or not targets:
            raise NoFaceError("No face found in the source or the target.")
        src = max(sources, key=lambda f: f.width).landmarks68
        out = target
        for face in targets:
            out = self._blend_one(source, src, out, face.landmarks68)
        return embed_watermark(out)

    @staticmethod
    def _blend_one(source, src_pts, target, dst_pts) -> np.ndarray:
        pad = 8  # seamlessClone needs the mask clear of the image border
        padded = cv2.copyMakeBorder(target, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        warped, mask = piecewise_affine_warp(source, src_pts, dst_pts + pad, padded.shape)
        mask = cv2.erode(mask, np.ones((5, 5), np.uint8))
        ys, xs = np.nonzero(mask)
        if len(xs) < 16:
            return target
        center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
        blended = cv2.seamlessClone(warped, padded, mask, center, cv2.NORMAL_CLONE)
        return blended[pad:-pad, pad:-pad]
