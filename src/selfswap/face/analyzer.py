"""`analyze(image) -> list[Face]`: detection, landmarks, 3DMM and identity in one call."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from selfswap.face import landmarks as lm
from selfswap.face.types import Face
from selfswap.io.images import as_rgb_array

EMBEDDINGS = ("dlib", "torch", "none")


@dataclass
class AnalyzerConfig:
    """Face analysis settings shared by the CLI, the API and dataset preparation."""

    detector: str = "default"
    min_face_size: float = 20.0  # pixels, box width
    min_score: float = -1e9  # detector-specific score threshold
    max_faces: int = 0  # 0: all faces
    embedding: str = "dlib"  # "dlib" (reference), "torch" (PyTorch port, batched) or "none"
    refine_3dmm: bool = True


class FaceAnalyzer:
    """Finds faces and describes each: box, 5/68 landmarks, 3DMM, pose, identity.

    Faces are returned left to right (by box centre), so indices are stable and readable.
    """

    def __init__(self, config: AnalyzerConfig | None = None) -> None:
        self.config = config or AnalyzerConfig()
        if self.config.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}")

    @cached_property
    def detector(self):
        """The configured face detector ("default": `selfswap.face.detect.DEFAULT_DETECTOR`);
        an unknown name raises `UnknownDetectorError`, a `SelfswapError`."""
        from selfswap.face.detect import get_detector

        return get_detector(self.config.detector)

    @cached_property
    def tddfa(self):
        from selfswap.face.tddfa import TDDFA

        return TDDFA()

    @cached_property
    def identity(self):
        from selfswap.face.identity import IdentityEncoder

        return IdentityEncoder()

    def detect(self, image_rgb: np.ndarray):
        """Detections that pass the size and score filters, best first."""
        cfg = self.config
        found = [
            d
            for d in self.detector.detect(image_rgb)
            if d.box[2] - d.box[0] >= cfg.min_face_size and d.score >= cfg.min_score
        ]
        found.sort(key=lambda d: -d.score)
        return found[: cfg.max_faces] if cfg.max_faces else found

    def analyze(self, image) -> list[Face]:
        """All faces in an image (path, PIL image or array), left to right."""
        image_rgb = as_rgb_array(image)
        detections = self.detect(image_rgb)
        if not detections:
            return []
        boxes = [np.asarray(d.box, np.float32) for d in detections]
        points68 = [lm.landmarks68(image_rgb, b) for b in boxes]
        points5 = [lm.landmarks5(image_rgb, b) for b in boxes]
        fits = self.tddfa.fit_landmarks(image_rgb, points68, refine=self.config.refine_3dmm)
        embeddings = self._embed(image_rgb, points5)
        faces = [
            Face(
                box=box,
                score=float(det.score),
                landmarks5=p5,
                landmarks68=p68,
                shape=fit["shape"],
                expression=fit["expression"],
                camera=fit["camera"],
                yaw=fit["yaw"],
                pitch=fit["pitch"],
                roll=fit["roll"],
                embedding=emb,
                detector=self.detector.name,
            )
            for det, box, p5, p68, fit, emb in zip(
                detections, boxes, points5, points68, fits, embeddings
            )
        ]
        faces.sort(key=lambda f: float(f.box[0] + f.box[2]))
        return faces

    def _embed(self, image_rgb: np.ndarray, points5: list[np.ndarray]) -> list:
        mode = self.config.embedding
        if mode == "none":
            return [None] * len(points5)
        if mode == "dlib":
            return [self.identity.embed_dlib(image_rgb, p) for p in points5]
        return list(self.identity.embed([image_rgb] * len(points5), points5))


def analyze(image, config: AnalyzerConfig | None = None) -> list[Face]:
    """Convenience: analyse one image with a fresh analyzer."""
    return FaceAnalyzer(config).analyze(image)
