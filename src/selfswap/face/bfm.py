"""The Basel Face Model (no-neck v3, as used by 3DDFA_V2): mean shape and linear bases.

Vertices are in BFM model space (x right, y up, z towards the viewer), roughly in
micrometres-scaled units as 3DDFA_V2 uses them; `TDDFA` poses and projects them.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import cache

import numpy as np

from selfswap.models import model_path

N_SHAPE = 40
N_EXPRESSION = 10


@dataclass(frozen=True)
class BFM:
    mean: np.ndarray  # (N, 3) float32
    shape_basis: np.ndarray  # (N, 3, 40) float32
    expression_basis: np.ndarray  # (N, 3, 10) float32
    triangles: np.ndarray  # (T, 3) int32, indices into the N vertices
    keypoints68: np.ndarray  # (68,) int64, vertex index of each 68-landmark point

    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    def vertices(self, shape: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """Model-space vertices `(..., N, 3)` for coefficients `(..., 40)` and `(..., 10)`."""
        shape = np.asarray(shape, np.float32)
        expression = np.asarray(expression, np.float32)
        offset = np.einsum("nck,...k->...nc", self.shape_basis, shape)
        offset += np.einsum("nck,...k->...nc", self.expression_basis, expression)
        return self.mean + offset


@cache
def load_bfm() -> BFM:
    """Load the BFM from the model cache (see `selfswap models pull`)."""
    with open(model_path("bfm_noneck_v3"), "rb") as f:
        raw = pickle.load(f)  # noqa: S301 - verified by sha256 in the model registry
    n = raw["u"].shape[0] // 3
    mean = raw["u"].reshape(n, 3).astype(np.float32)
    shape_basis = raw["w_shp"][:, :N_SHAPE].reshape(n, 3, N_SHAPE).astype(np.float32)
    expression_basis = raw["w_exp"][:, :N_EXPRESSION].reshape(n, 3, N_EXPRESSION)
    # `tri` indexes the original (with-neck) BFM numbering; the kept vertices are exactly
    # its unique indices, in order, so searchsorted maps them onto 0..N-1.
    tri = raw["tri"]
    triangles = np.searchsorted(np.unique(tri), tri).T.astype(np.int32)
    keypoints68 = (raw["keypoints"].reshape(68, 3)[:, 0] // 3).astype(np.int64)
    return BFM(
        mean=np.ascontiguousarray(mean),
        shape_basis=np.ascontiguousarray(shape_basis),
        expression_basis=np.ascontiguousarray(expression_basis.astype(np.float32)),
        triangles=np.ascontiguousarray(triangles),
        keypoints68=keypoints68,
    )
