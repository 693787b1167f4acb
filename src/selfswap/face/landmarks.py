"""dlib's 5- and 68-point landmark predictors on a face box."""

from __future__ import annotations

from functools import cache

import dlib
import numpy as np

from selfswap.models import model_path


@cache
def _predictor(name: str) -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_path(name)))


def _rectangle(box: np.ndarray) -> dlib.rectangle:
    x0, y0, x1, y1 = (int(round(float(v))) for v in box[:4])
    return dlib.rectangle(x0, y0, x1, y1)


def _predict(name: str, image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    shape = _predictor(name)(image_rgb, _rectangle(box))
    return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


def landmarks68(image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """iBUG 300-W 68 landmarks `(68, 2)` for a face box (x0, y0, x1, y1)."""
    return _predict("dlib_shape_68", image_rgb, box)


def landmarks5(image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib's 5 landmarks `(5, 2)`: image-right eye outer and inner corner, image-left eye
    outer and inner corner, nose base — the input of dlib's identity chip."""
    return _predict("dlib_shape_5", image_rgb, box)
