"""Mesh composition: BFM vertices from (shape, expression), posed by a 3x4 affine camera.

Coordinates follow `selfswap.face.tddfa`: a camera maps BFM model space (x right, y up, z
towards the viewer) to image pixels (x right, y down) and a depth that grows towards the
viewer, in the same pixel units. `crop_cameras` composes a camera with the alignment of
`selfswap.face.align`, so the same mesh can be posed in the original image or in the
canonical R×R crop. Everything is batched: leading dimensions are free, `B` below.

A swap's geometry is the *source's* shape with the *target's* expression and camera
(`swap_geometry`); training uses a face's own coefficients (`face_geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selfswap.face.align import camera_to_crop
from selfswap.face.bfm import BFM, N_EXPRESSION, N_SHAPE, load_bfm


@dataclass(frozen=True)
class Geometry:
    """Batched 3DMM geometry: what the renderer draws.

    Attributes:
        shape: `(B, 40)` BFM shape coefficients.
        expression: `(B, 10)` BFM expression coefficients.
        camera: `(B, 3, 4)` affine cameras, model space → pixels (image or crop).
    """

    shape: np.ndarray
    expression: np.ndarray
    camera: np.ndarray

    def __post_init__(self) -> None:
        shape = np.asarray(self.shape, np.float32).reshape(-1, N_SHAPE)
        expression = np.asarray(self.expression, np.float32).reshape(-1, N_EXPRESSION)
        camera = np.asarray(self.camera, np.float32).reshape(-1, 3, 4)
        if not len(shape) == len(expression) == len(camera):
            raise ValueError(
                f"batch sizes differ: shape {len(shape)}, expression {len(expression)}, "
                f"camera {len(camera)}"
            )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "camera", camera)

    def __len__(self) -> int:
        return len(self.shape)

    def to_crop(self, matrices: np.ndarray) -> Geometry:
        """The same geometry posed in aligned crops; `matrices` `(B, 2, 3)` or `(2, 3)`
        map image pixels to crop pixels (`selfswap.face.align.alignment_matrix`)."""
        return Geometry(self.shape, self.expression, crop_cameras(self.camera, matrices))

    def vertices(self, bfm: BFM | None = None) -> np.ndarray:
        """Posed vertices `(B, N, 3)`: pixel x, pixel y, depth towards the viewer."""
        return mesh_vertices(self.shape, self.expression, self.camera, bfm)

    def model_vertices(self, bfm: BFM | None = None) -> np.ndarray:
        """Unposed model-space vertices `(B, N, 3)`."""
        return compose(self.shape, self.expression, bfm)


_BASES: dict[int, tuple[BFM, np.ndarray]] = {}


def _stacked_basis(bfm: BFM) -> np.ndarray:
    """Shape and expression bases side by side, `(50, 3N)`, for one matmul per batch."""
    hit = _BASES.get(id(bfm))
    if hit is None or hit[0] is not bfm:
        basis = np.concatenate([bfm.shape_basis, bfm.expression_basis], axis=2)  # (N, 3, 50)
        hit = (bfm, np.ascontiguousarray(basis.reshape(-1, N_SHAPE + N_EXPRESSION).T))
        _BASES[id(bfm)] = hit
    return hit[1]


def compose(shape: np.ndarray, expression: np.ndarray, bfm: BFM | None = None) -> np.ndarray:
    """Model-space vertices `(..., N, 3)` from shape `(..., 40)` and expression `(..., 10)`.

    One `(B, 50) @ (50, 3N)` matmul for the whole batch (several times faster than
    `BFM.vertices`' einsum)."""
    bfm = bfm or load_bfm()
    shape = np.asarray(shape, np.float32)
    expression = np.asarray(expression, np.float32)
    lead = np.broadcast_shapes(shape.shape[:-1], expression.shape[:-1])
    coeffs = np.concatenate(
        [
            np.broadcast_to(shape, (*lead, N_SHAPE)),
            np.broadcast_to(expression, (*lead, N_EXPRESSION)),
        ],
        axis=-1,
    ).reshape(-1, N_SHAPE + N_EXPRESSION)
    out = coeffs @ _stacked_basis(bfm)
    out = out.reshape(-1, bfm.n_vertices, 3)
    out += bfm.mean
    return out.reshape(*lead, bfm.n_vertices, 3)


def pose(vertices: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Apply affine cameras `(..., 3, 4)` to vertices `(..., N, 3)` → `(..., N, 3)`."""
    camera = np.asarray(camera, np.float32)
    vertices = np.asarray(vertices, np.float32)
    return np.matmul(vertices, np.swapaxes(camera[..., :3], -1, -2)) + camera[..., None, :, 3]


def mesh_vertices(
    shape: np.ndarray, expression: np.ndarray, camera: np.ndarray, bfm: BFM | None = None
) -> np.ndarray:
    """Posed vertices `(..., N, 3)` for coefficients `(..., 40)`, `(..., 10)` and cameras
    `(..., 3, 4)`: pixel x (right), pixel y (down), depth (towards the viewer)."""
    return pose(compose(shape, expression, bfm), camera)


def crop_cameras(cameras: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Image cameras `(..., 3, 4)` composed with alignments `(..., 2, 3)` (image → crop
    pixels) into crop cameras `(..., 3, 4)`; depth is scaled like x and y."""
    cameras = np.asarray(cameras, np.float32)
    matrices = np.asarray(matrices, np.float64)
    lead = np.broadcast_shapes(cameras.shape[:-2], matrices.shape[:-2])
    cams = np.broadcast_to(cameras, (*lead, 3, 4)).reshape(-1, 3, 4)
    mats = np.broadcast_to(matrices, (*lead, 2, 3)).reshape(-1, 2, 3)
    out = np.stack([camera_to_crop(c, m) for c, m in zip(cams, mats)])
    return out.reshape(*lead, 3, 4).astype(np.float32)


def face_geometry(faces, matrices: np.ndarray | None = None) -> Geometry:
    """Geometry of analysed faces (objects with `.shape`, `.expression`, `.camera`, e.g.
    `selfswap.face.types.Face`), optionally posed into crops by `matrices` `(B, 2, 3)`."""
    geometry = Geometry(
        np.stack([f.shape for f in faces]),
        np.stack([f.expression for f in faces]),
        np.stack([f.camera for f in faces]),
    )
    return geometry if matrices is None else geometry.to_crop(matrices)


def swap_geometry(
    source_shape: np.ndarray, target_expression: np.ndarray, target_camera: np.ndarray
) -> Geometry:
    """The geometry a swap paints: the source's face shape `(B, 40)` wearing the target's
    expression `(B, 10)` in the target's pose `(B, 3, 4)` (camera of the target image or
    crop)."""
    return Geometry(source_shape, target_expression, target_camera)


def landmarks68(vertices: np.ndarray, bfm: BFM | None = None) -> np.ndarray:
    """The 68 landmark points `(..., 68, 2)` (pixel x, y) of posed vertices `(..., N, 3)`."""
    bfm = bfm or load_bfm()
    return np.asarray(vertices)[..., bfm.keypoints68, :2]


class NormalEstimator:
    """Per-vertex normals of posed meshes of one topology (area-weighted sums of the
    triangle normals around each vertex), batched.

    Args:
        triangles: `(T, 3)` vertex indices.
        n_vertices: N.
    """

    def __init__(self, triangles: np.ndarray, n_vertices: int) -> None:
        import scipy.sparse as sp

        self.triangles = np.ascontiguousarray(triangles, np.int64)
        t = len(self.triangles)
        self._corners = [np.ascontiguousarray(self.triangles[:, i]) for i in range(3)]
        self._incidence = sp.csr_matrix(
            (
                np.ones(3 * t, np.float32),
                (self.triangles.T.reshape(-1), np.tile(np.arange(t), 3)),
            ),
            shape=(n_vertices, t),
        )

    def __call__(self, vertices: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Normals `(..., N, 3)` of vertices `(..., N, 3)`, in the same frame, oriented
        by the triangles' winding (`cross(b - a, c - a)`); unit length if `normalize`
        (zero for isolated vertices)."""
        v = np.asarray(vertices, np.float32)
        lead = v.shape[:-2]
        v = v.reshape(-1, *v.shape[-2:])
        a = v[:, self._corners[0]]
        e1 = v[:, self._corners[1]] - a
        e2 = v[:, self._corners[2]] - a
        x1, y1, z1 = e1[..., 0], e1[..., 1], e1[..., 2]
        x2, y2, z2 = e2[..., 0], e2[..., 1], e2[..., 2]
        face = np.stack([y1 * z2 - z1 * y2, z1 * x2 - x1 * z2, x1 * y2 - y1 * x2], axis=-1)
        out = np.stack([self._incidence @ f for f in face]).astype(np.float32, copy=False)
        if normalize:
            length = np.sqrt(np.einsum("bnc,bnc->bn", out, out))[..., None]
            np.divide(out, length, out=out, where=length > 0)
        return out.reshape(*lead, *out.shape[-2:])
