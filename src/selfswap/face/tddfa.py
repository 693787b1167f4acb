"""3DMM regression with 3DDFA_V2 (MobileNetV1, ONNX) on the BFM no-neck model.

The network looks at a 120x120 BGR crop of a square region of interest (ROI) around the
face and predicts 62 normalised numbers: a 3x4 camera matrix (12), 40 shape and 10
expression coefficients. We fold the camera and the ROI into one 3x4 affine `camera` that
maps BFM model-space vertices straight to image pixels (x right, y down) plus a depth that
grows towards the viewer, so everything downstream works in image coordinates.
"""

from __future__ import annotations

import math
import pickle
from functools import cached_property

import cv2
import numpy as np

from selfswap.face.bfm import N_EXPRESSION, N_SHAPE, load_bfm
from selfswap.models import model_path

INPUT_SIZE = 120


def roi_from_box(box: np.ndarray) -> np.ndarray:
    """Square ROI (x0, y0, x1, y1) from a detector box, as 3DDFA_V2 was trained with."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    old = (x1 - x0 + y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + old * 0.14
    size = old * 1.58
    return np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)


def roi_from_landmarks(points: np.ndarray) -> np.ndarray:
    """Square ROI from 2D landmarks: the square around them, scaled by √2."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    cx, cy = (lo + hi) / 2
    size = float((hi - lo).max()) * math.sqrt(2)
    return np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)


def crop_roi(image_bgr: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """The ROI resampled to the network's 120x120 input; outside the image is black."""
    x0, y0, x1, y1 = roi
    sx, sy = (x1 - x0) / INPUT_SIZE, (y1 - y0) / INPUT_SIZE
    # Pixel centres of the output map onto the ROI (same convention as crop-then-resize).
    m = np.array([[sx, 0, x0 + 0.5 * sx - 0.5], [0, sy, y0 + 0.5 * sy - 0.5]], np.float32)
    return cv2.warpAffine(
        image_bgr,
        m,
        (INPUT_SIZE, INPUT_SIZE),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )


def camera_to_image(params_camera: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Fold the network's 3x4 camera (120x120 crop space, y up) and the ROI into one
    3x4 affine from BFM model space to image pixels (x right, y down, z towards viewer)."""
    x0, y0, x1, y1 = roi
    sx, sy = (x1 - x0) / INPUT_SIZE, (y1 - y0) / INPUT_SIZE
    s = (sx + sy) / 2
    scale = np.diag([sx, -sy, s]).astype(np.float64)
    shift = np.array([x0 - sx, y0 + INPUT_SIZE * sy, -s], np.float64)
    out = scale @ params_camera.astype(np.float64)
    out[:, 3] += shift
    return out.astype(np.float32)


def pose_from_camera(params_camera: np.ndarray) -> tuple[float, float, float, float]:
    """(yaw, pitch, roll) in degrees and the isotropic scale of a 3x4 camera matrix."""
    r1, r2 = params_camera[0, :3], params_camera[1, :3]
    scale = (np.linalg.norm(r1) + np.linalg.norm(r2)) / 2
    r1 = r1 / np.linalg.norm(r1)
    r2 = r2 / np.linalg.norm(r2)
    r3 = np.cross(r1, r2)
    rot = np.stack([r1, r2, r3])
    if rot[2, 0] > 0.998:
        yaw, pitch, roll = math.pi / 2, math.atan2(-rot[0, 1], -rot[0, 2]), 0.0
    elif rot[2, 0] < -0.998:
        yaw, pitch, roll = -math.pi / 2, math.atan2(rot[0, 1], rot[0, 2]), 0.0
    else:
        yaw = math.asin(float(np.clip(rot[2, 0], -1, 1)))
        c = math.cos(yaw)
        pitch = math.atan2(rot[2, 1] / c, rot[2, 2] / c)
        roll = math.atan2(rot[1, 0] / c, rot[0, 0] / c)
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll), float(scale)


def project(camera: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Apply a 3x4 affine camera to `(..., N, 3)` vertices."""
    return vertices @ camera[:, :3].T + camera[:, 3]


class TDDFA:
    """3DDFA_V2 regressor: image + face boxes → shape, expression and image-space camera."""

    @cached_property
    def _session(self):
        from selfswap.models.onnx_files import cpu_session

        # Idle ONNX Runtime threads spin by default and starve PyTorch running next to them.
        return cpu_session(model_path("tddfa_mb1"), spinning=False)

    @cached_property
    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        with open(model_path("tddfa_param_stats"), "rb") as f:
            stats = pickle.load(f)  # noqa: S301 - verified by sha256 in the model registry
        return stats["mean"].astype(np.float32), stats["std"].astype(np.float32)

    def coefficient_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Population standard deviations of the (40,) shape and (10,) expression coefficients
        (3DDFA_V2's parameter statistics): divide by them to compare coefficients fairly."""
        std = self._stats[1]
        return std[12:52].copy(), std[52:62].copy()

    def _regress(self, image_bgr: np.ndarray, rois: np.ndarray) -> np.ndarray:
        crops = np.stack([crop_roi(image_bgr, roi) for roi in rois]).astype(np.float32)
        batch = ((crops - 127.5) / 128.0).transpose(0, 3, 1, 2)
        session = self._session
        name = session.get_inputs()[0].name
        params = np.concatenate([session.run(None, {name: b[None]})[0] for b in batch])
        mean, std = self._stats
        return params * std + mean

    def fit(self, image_rgb: np.ndarray, boxes: np.ndarray, refine: bool = True) -> list[dict]:
        """Fit the 3DMM to each detector box `(K, 4)`."""
        rois = np.stack([roi_from_box(b) for b in boxes]) if len(boxes) else np.zeros((0, 4))
        return self.fit_rois(image_rgb, rois, refine)

    def fit_landmarks(
        self, image_rgb: np.ndarray, landmarks: list[np.ndarray], refine: bool = True
    ) -> list[dict]:
        """Fit the 3DMM to faces given by 2D landmarks (any layout), one array per face."""
        rois = np.stack([roi_from_landmarks(p) for p in landmarks]) if landmarks else None
        return self.fit_rois(image_rgb, rois if rois is not None else np.zeros((0, 4)), refine)

    def fit_rois(self, image_rgb: np.ndarray, rois: np.ndarray, refine: bool = True) -> list[dict]:
        """Fit the 3DMM in each square ROI `(K, 4)`. With `refine`, a second pass re-crops
        around the first pass's own 68 landmarks, as 3DDFA_V2 does for accuracy."""
        if len(rois) == 0:
            return []
        image_bgr = np.ascontiguousarray(image_rgb[..., ::-1])
        params = self._regress(image_bgr, rois)
        if refine:
            points = [self._landmarks(p, r)[:, :2] for p, r in zip(params, rois)]
            rois = np.stack([roi_from_landmarks(p) for p in points])
            params = self._regress(image_bgr, rois)
        results = []
        for p, roi in zip(params, rois):
            camera_crop = p[:12].reshape(3, 4)
            yaw, pitch, roll, _ = pose_from_camera(camera_crop)
            results.append(
                {
                    "shape": p[12 : 12 + N_SHAPE].copy(),
                    "expression": p[12 + N_SHAPE : 12 + N_SHAPE + N_EXPRESSION].copy(),
                    "camera": camera_to_image(camera_crop, roi),
                    "yaw": yaw,
                    "pitch": pitch,
                    "roll": roll,
                    "roi": roi,
                }
            )
        return results

    @staticmethod
    def _landmarks(params: np.ndarray, roi: np.ndarray) -> np.ndarray:
        bfm = load_bfm()
        idx = bfm.keypoints68
        shape = params[12 : 12 + N_SHAPE]
        expression = params[12 + N_SHAPE : 12 + N_SHAPE + N_EXPRESSION]
        model = (
            bfm.mean[idx] + bfm.shape_basis[idx] @ shape + bfm.expression_basis[idx] @ expression
        )
        return project(camera_to_image(params[:12].reshape(3, 4), roi), model)
