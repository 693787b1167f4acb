"""`Face`: the one face-analysis result passed everywhere; plain data, easy to serialise."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from selfswap.face.bfm import load_bfm
from selfswap.face.tddfa import project


@dataclass
class Face:
    """One detected face in image pixel coordinates.

    `camera` maps BFM model-space vertices to image pixels (x right, y down) and a depth that
    grows towards the viewer; with `shape` and `expression` it gives the dense mesh.
    `landmarks5` follow dlib's 5-point predictor (the identity chip's input);
    `landmarks68` follow the iBUG 300-W layout.
    """

    box: np.ndarray  # (4,) x0, y0, x1, y1
    score: float
    landmarks5: np.ndarray  # (5, 2)
    landmarks68: np.ndarray  # (68, 2)
    shape: np.ndarray  # (40,) BFM shape coefficients
    expression: np.ndarray  # (10,) BFM expression coefficients
    camera: np.ndarray  # (3, 4) BFM model space → image
    yaw: float  # degrees; pitch and roll likewise
    pitch: float
    roll: float
    embedding: np.ndarray | None = None  # (128,) dlib face descriptor
    detector: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def scale(self) -> float:
        """Isotropic scale of the camera (image pixels per BFM unit)."""
        return float(np.linalg.norm(self.camera[:2, :3], axis=1).mean())

    @property
    def translation(self) -> np.ndarray:
        """Image position (x, y) of the BFM origin."""
        return self.camera[:2, 3].copy()

    def vertices(
        self, shape: np.ndarray | None = None, expression: np.ndarray | None = None
    ) -> np.ndarray:
        """Dense mesh `(N, 3)` in image coordinates, optionally with other coefficients."""
        bfm = load_bfm()
        model = bfm.vertices(
            self.shape if shape is None else shape,
            self.expression if expression is None else expression,
        )
        return project(self.camera, model)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (arrays become nested lists)."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, np.ndarray):
                value = np.round(value.astype(np.float64), 4).tolist()
            elif isinstance(value, float):
                value = round(value, 4)
            out[key] = value
        out["scale"] = round(self.scale, 6)
        out["translation"] = np.round(self.translation, 3).tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Face:
        arrays = {"box", "landmarks5", "landmarks68", "shape", "expression", "camera", "embedding"}
        kwargs = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in arrays and value is not None:
                value = np.asarray(value, np.float32)
            kwargs[f.name] = value
        return cls(**kwargs)
