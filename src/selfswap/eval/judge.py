"""The independent identity judge: OpenCV Zoo's YuNet detector + SFace recogniser.

SFace plays no part in training (no loss, no identity code; `tests/test_judge.py` checks
that neither the trainer nor the swap code imports this module), so its scores say what a
network that was never optimised against can see. Protocol, as OpenCV's `FaceRecognizerSF`:
YuNet on the image, its 5 landmarks, a similarity transform onto the ArcFace 112x112
template, SFace on the RGB crop (0..255), cosine of the 128-D features; same person above
about 0.363 (OpenCV's threshold; lower on blurry faces, so the raw cosine is reported).

The published SFace file is int8 block-quantised and lists its float weights as unused
graph inputs, which onnxruntime refuses: at load time the unused inputs are dropped and
every `DequantizeLinear` of a constant is folded into an fp32 weight (faster than
dequantising on every call, and the same numbers).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from selfswap.face.detect import as_rgb_uint8
from selfswap.face.yunet import create_yunet
from selfswap.models.onnx_files import cpu_session, fold_quantization
from selfswap.models.registry import model_path

# ArcFace's 5-point template for a 112x112 crop (eye on the image left first), as in OpenCV.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float64,
)
SAME_PERSON = 0.363  # OpenCV's cosine threshold for SFace
DETECT_MAX_SIDE = 1280  # YuNet runs on the photo scaled down to this long side at most


@dataclass
class JudgedFace:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in pixels of the full image
    landmarks5: np.ndarray  # (5, 2) eyes (image left first), nose tip, mouth corners
    score: float
    embedding: np.ndarray | None = None  # (128,) SFace feature, L2-normalised

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


@cache
def _sface_session():
    import onnx

    model = fold_quantization(onnx.load(str(model_path("sface_int8bq"))))
    return cpu_session(model.SerializeToString())


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity (rotation, uniform scale, shift) taking points
    `src` (N, 2) onto `dst` (N, 2): Umeyama's closed form."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ flip @ vt
    scale = np.trace(np.diag(sigma) @ flip) / max(s.var(0).sum(), 1e-12)
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def align_112(image_rgb: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
    """The 112x112 ArcFace crop of a face from its 5 landmarks (similarity transform,
    least squares as in Umeyama's method)."""
    matrix = similarity_transform(np.asarray(landmarks5, np.float64), ARCFACE_112)
    return cv2.warpAffine(image_rgb, matrix, (112, 112), flags=cv2.INTER_LINEAR)


def sface_embeddings(crops: np.ndarray) -> np.ndarray:
    """SFace features `(N, 128)`, L2-normalised, of aligned RGB uint8 crops `(N, 112, 112, 3)`."""
    session = _sface_session()
    name = session.get_inputs()[0].name
    out = []
    for crop in np.asarray(crops):
        blob = crop.astype(np.float32).transpose(2, 0, 1)[None]
        out.append(session.run(None, {name: blob})[0][0])
    feats = np.asarray(out, np.float64).reshape(-1, 128)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


class YuNet:
    """OpenCV's `FaceDetectorYN` on the photo scaled to at most `max_side` px."""

    def __init__(self, score_threshold: float = 0.6, max_side: int = DETECT_MAX_SIDE) -> None:
        self.score_threshold = score_threshold
        self.max_side = max_side
        self._detector = None
        self._lock = threading.Lock()

    def detect(self, image_rgb: np.ndarray) -> list[JudgedFace]:
        """Faces, largest first."""
        image = as_rgb_uint8(image_rgb)
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        with self._lock:
            if self._detector is None:
                self._detector = create_yunet(self.score_threshold)
            self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, rows = self._detector.detect(bgr)
        faces = []
        for row in [] if rows is None else rows:
            x, y, bw, bh = row[:4] / scale
            marks = row[4:14].reshape(5, 2) / scale
            faces.append(JudgedFace(np.array([x, y, x + bw, y + bh]), marks, float(row[14])))
        return sorted(faces, key=lambda f: f.width, reverse=True)


def pick_face(faces: list, near: np.ndarray | None = None):
    """Of faces with a `box` (x0, y0, x1, y1) and a `width`: the one whose box centre is
    nearest (L1) the centre of box `near`, else the widest; None for no faces."""
    if not faces:
        return None
    if near is None:
        return max(faces, key=lambda f: f.width)
    center = np.asarray(near, float).reshape(2, 2).mean(0)
    return min(faces, key=lambda f: np.abs(np.asarray(f.box).reshape(2, 2).mean(0) - center).sum())


class SFaceJudge:
    """YuNet + SFace: `describe(image)` gives the judged face (largest, or the one nearest a
    given box) with its embedding."""

    def __init__(self, detector: YuNet | None = None) -> None:
        self.detector = detector or YuNet()

    def describe(self, image_rgb: np.ndarray, near: np.ndarray | None = None) -> JudgedFace | None:
        image = as_rgb_uint8(image_rgb)
        face = pick_face(self.detector.detect(image), near)
        if face is None:
            return None
        face.embedding = sface_embeddings(align_112(image, face.landmarks5)[None])[0]
        return face

    def embedding(self, image_rgb: np.ndarray) -> np.ndarray | None:
        """SFace embedding of the largest face, or None."""
        face = self.describe(image_rgb)
        return None if face is None else face.embedding
