"""Levels of detail of the BFM mesh for fast rendering at small crop sizes.

The BFM has 76k triangles; at R = 128 the face covers ~5k pixels, so most triangles are
smaller than a pixel, and a software rasteriser (Mesa llvmpipe) spends its time on
triangle set-up (~0.2 µs per triangle per face here). A level of detail keeps a *subset*
of the BFM vertices with a new triangulation, so it is still a linear model: the same
shape and expression coefficients apply to the kept rows of the bases, and everything
downstream (`selfswap.geometry.mesh`, the renderer) works on it unchanged.

Simplification is a greedy half-edge collapse ordered by quadric error (Garland and
Heckbert) summed over several meshes of the model (the mean face and faces at ±2 std of
the leading shape and expression components), so regions that deform with expression keep
their detail. Boundary vertices (face outline, mouth, eyes) and the 68 keypoints are
locked: the silhouette outline, the open-mouth gap and the landmarks are exactly those of
the full model. Collapses that would break the manifold (link condition), flip or
degenerate a triangle are rejected. Each round collapses an independent set of edges, with
numpy doing the per-edge work. The result depends only on the model and the target, and is
cached under `$SELFSWAP_HOME/cache` (an `.npz` of indices).
"""

from __future__ import annotations

import contextlib
import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from selfswap.errors import SelfswapError
from selfswap.face.bfm import BFM, load_bfm
from selfswap.io.files import atomic_write
from selfswap.paths import selfswap_home

_VERSION = 2
_ROUND_FRACTION = 0.5  # share of the cheapest candidates considered per round
_MIN_COS = 0.3  # smallest cosine between a triangle's normal before and after a collapse


def _plane_quadrics(vertices: np.ndarray, faces: np.ndarray, n: int) -> np.ndarray:
    """Sum of area-weighted plane quadrics `(n, 4, 4)` of the faces around each vertex."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    normal = np.cross(b - a, c - a)
    area2 = np.linalg.norm(normal, axis=1, keepdims=True)
    unit = normal / np.maximum(area2, 1e-30)
    plane = np.concatenate([unit, -(unit * a).sum(1, keepdims=True)], axis=1)
    q = plane[:, :, None] * plane[:, None, :] * (area2[:, :, None] / 2)
    t = len(faces)
    incidence = sp.csr_matrix(
        (np.ones(3 * t), (faces.T.ravel(), np.tile(np.arange(t), 3))), shape=(n, t)
    )
    return np.asarray(incidence @ q.reshape(t, 16)).reshape(n, 4, 4)


def _boundary_vertices(faces: np.ndarray, n: int) -> np.ndarray:
    f = np.asarray(faces, np.int64)
    a, b = f.ravel(), f[:, [1, 2, 0]].ravel()
    keys, counts = np.unique(np.minimum(a, b) * n + np.maximum(a, b), return_counts=True)
    single = keys[counts == 1]
    locked = np.zeros(n, bool)
    locked[single // n] = True
    locked[single % n] = True
    return locked


def _sample_meshes(bfm: BFM) -> list[np.ndarray]:
    """Mean face and faces at ±2 typical std of leading shape/expression components."""
    meshes = [bfm.mean.astype(np.float64)]
    shape_std = [5.8e5]
    expression_std = [1.6, 1.5]
    for k, s in enumerate(shape_std):
        for sign in (-2, 2):
            meshes.append(meshes[0] + sign * s * bfm.shape_basis[:, :, k])
    for k, s in enumerate(expression_std):
        for sign in (-2, 2):
            meshes.append(meshes[0] + sign * s * bfm.expression_basis[:, :, k])
    return meshes


def simplify(
    vertices: list[np.ndarray],
    faces: np.ndarray,
    targets: list[int],
    locked: np.ndarray,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Half-edge collapse of a triangle mesh down to each of `targets` triangle counts.

    Args:
        vertices: one or more `(N, 3)` positions of the same topology; costs are summed
            over them, validity is checked on the first.
        faces: `(T, 3)` triangles.
        targets: triangle counts, e.g. `[20000, 10000]`; each snapshot is taken as soon as
            the mesh has at most that many triangles.
        locked: `(N,)` bool, vertices that must survive.

    Returns:
        For each target, `kept` `(N',)` sorted indices of the surviving vertices and
        `faces` `(T', 3)` int32 indexing into `kept`.
    """
    n = len(vertices[0])
    faces = np.asarray(faces, np.int64).copy()
    quadrics = [_plane_quadrics(v, faces, n) for v in vertices]
    homogeneous = [np.concatenate([v, np.ones((n, 1))], 1) for v in vertices]
    base = vertices[0]
    locked = np.asarray(locked, bool)
    snapshots: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    pending = sorted(targets, reverse=True)
    while pending:
        while pending and len(faces) <= pending[0]:
            snapshots[pending.pop(0)] = _snapshot(faces, locked)
        if not pending:
            break
        # Directed candidate edges u → v (u disappears into v), from the adjacency.
        u = faces.ravel()
        v = faces[:, [1, 2, 0]].ravel()
        adj = sp.csr_matrix((np.ones(len(u), np.float32), (u, v)), shape=(n, n))
        adj = (adj + adj.T).tocsr()
        adj.data[:] = 1.0
        rows = np.repeat(np.arange(n), np.diff(adj.indptr))
        free = ~locked[rows]
        cu, cv = rows[free], adj.indices[free].astype(np.int64)
        cost = np.zeros(len(cu))
        for q, h in zip(quadrics, homogeneous):
            x = h[cv]
            cost += np.einsum("ei,eij,ej->e", x, q[cu] + q[cv], x)
        # The two cheapest targets of each source vertex are tested, the best valid wins.
        best = np.lexsort((cost, cu))
        cu, cv, cost = cu[best], cv[best], cost[best]
        first = np.r_[True, cu[1:] != cu[:-1]]
        second = np.r_[False, first[:-1]] & ~first
        pick = first | second
        cu, cv, cost = cu[pick], cv[pick], cost[pick]
        # Link condition: an interior edge must have exactly two common neighbours.
        ok = np.asarray((adj @ adj)[cu, cv]).ravel() == 2
        # Flip and degeneracy test on the triangles around u that do not contain v.
        flat = faces.ravel()
        order = np.argsort(flat, kind="stable")
        starts = np.searchsorted(flat[order], np.arange(n + 1))
        counts = starts[cu + 1] - starts[cu]
        pair_cand = np.repeat(np.arange(len(cu)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        tri = faces[order[np.repeat(starts[cu], counts) + offsets] // 3]
        pu, pv = cu[pair_cand], cv[pair_cand]
        keep = ~(tri == pv[:, None]).any(1)
        moved = np.where(tri == pu[:, None], pv[:, None], tri)
        p_old, p_new = base[tri[keep]], base[moved[keep]]
        n_old = np.cross(p_old[:, 1] - p_old[:, 0], p_old[:, 2] - p_old[:, 0])
        n_new = np.cross(p_new[:, 1] - p_new[:, 0], p_new[:, 2] - p_new[:, 0])
        dot = (n_old * n_new).sum(1)
        sq_old, sq_new = (n_old * n_old).sum(1), (n_new * n_new).sum(1)
        good = (dot > 0) & (dot * dot > _MIN_COS**2 * sq_old * sq_new) & (sq_new > 1e-6 * sq_old)
        ok &= np.bincount(pair_cand[keep][~good], minlength=len(cu)) == 0
        cu, cv, cost = cu[ok], cv[ok], cost[ok]
        if len(cu) == 0:
            break
        first = np.r_[True, cu[1:] != cu[:-1]]
        cu, cv, cost = cu[first], cv[first], cost[first]
        # Greedy set of compatible collapses among the cheapest of this round: no removed
        # vertex lies in the closed neighbourhood (of u and v) of another collapse, so the
        # collapses of one round change disjoint triangles, never remove a target, and
        # keep their link conditions and flip tests true.
        by_cost = np.argsort(cost, kind="stable")
        by_cost = by_cost[: max(1, int(len(by_cost) * _ROUND_FRACTION))]
        budget = max(1, (len(faces) - pending[0] + 1) // 2)  # a collapse removes 2 faces
        indptr, indices = adj.indptr.tolist(), adj.indices.tolist()
        claimed = bytearray(n)  # in the neighbourhood of an accepted collapse
        removed = bytearray(n)  # the u of an accepted collapse
        win = []
        cu_list, cv_list = cu.tolist(), cv.tolist()
        for i in by_cost.tolist():
            a, b = cu_list[i], cv_list[i]
            if claimed[a] or removed[b]:
                continue
            ring = indices[indptr[a] : indptr[a + 1]] + indices[indptr[b] : indptr[b + 1]]
            if any(removed[w] for w in ring):
                continue
            removed[a] = claimed[a] = claimed[b] = 1
            for w in ring:
                claimed[w] = 1
            win.append(i)
            if len(win) >= budget:
                break
        if not win:
            break
        win = np.asarray(win)
        remap = np.arange(n)
        remap[cu[win]] = cv[win]
        for q in quadrics:
            q[cv[win]] += q[cu[win]]
        faces = remap[faces]
        faces = faces[
            (faces[:, 0] != faces[:, 1])
            & (faces[:, 1] != faces[:, 2])
            & (faces[:, 2] != faces[:, 0])
        ]
    for target in pending:
        snapshots[target] = _snapshot(faces, locked)
    return [snapshots[t] for t in targets]


def _snapshot(faces: np.ndarray, locked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kept = np.union1d(np.unique(faces), np.flatnonzero(locked))
    return kept, np.searchsorted(kept, faces).astype(np.int32)


def subset(bfm: BFM, kept: np.ndarray, triangles: np.ndarray) -> BFM:
    """The BFM restricted to vertices `kept` `(N',)`, with `triangles` indexing into them;
    keypoints are remapped (they must be among the kept vertices)."""
    position = np.full(bfm.n_vertices, -1, np.int64)
    position[kept] = np.arange(len(kept))
    keypoints = position[bfm.keypoints68]
    if (keypoints < 0).any():
        raise ValueError("a keypoint vertex was not kept")
    return BFM(
        mean=np.ascontiguousarray(bfm.mean[kept]),
        shape_basis=np.ascontiguousarray(bfm.shape_basis[kept]),
        expression_basis=np.ascontiguousarray(bfm.expression_basis[kept]),
        triangles=np.ascontiguousarray(triangles, np.int32),
        keypoints68=keypoints,
    )


#: The levels computed (together, in one pass) and cached.
LEVELS = (20000, 10000)


def _cache_file(bfm: BFM) -> Path:
    digest = hashlib.sha256(bfm.triangles.tobytes() + bfm.mean.tobytes()).hexdigest()[:16]
    levels = "-".join(str(t) for t in LEVELS)
    return selfswap_home() / "cache" / f"bfm_lod_v{_VERSION}_{digest}_{levels}.npz"


def _valid_level(bfm: BFM, target: int, kept: np.ndarray, triangles: np.ndarray) -> bool:
    """Whether cached indices describe a usable level of detail of `bfm`: increasing vertex
    indices in range that include the keypoints, and at most `target` triangles over them."""
    if kept.ndim != 1 or kept.dtype.kind not in "iu" or len(kept) < 3:
        return False
    if triangles.ndim != 2 or triangles.shape[1] != 3 or triangles.dtype.kind not in "iu":
        return False
    if not 0 < len(triangles) <= target:
        return False
    if kept[0] < 0 or kept[-1] >= bfm.n_vertices or np.any(np.diff(kept) <= 0):
        return False
    if triangles.min() < 0 or triangles.max() >= len(kept):
        return False
    return bool(np.isin(bfm.keypoints68, kept).all())


def _read_cache(bfm: BFM, path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]] | None:
    """The cached levels, or None when the file is missing or unusable in any way (it is
    only a cache: anything wrong with it means computing the levels again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            levels = {t: (data[f"kept_{t}"], data[f"triangles_{t}"]) for t in LEVELS}
    except Exception:  # truncated or foreign file: zipfile, OSError, KeyError, ValueError...
        return None
    if not all(_valid_level(bfm, t, *levels[t]) for t in LEVELS):
        return None
    return {t: (k.astype(np.int64), tri.astype(np.int32)) for t, (k, tri) in levels.items()}


@lru_cache(maxsize=1)
def _levels() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    bfm = load_bfm()
    path = _cache_file(bfm)
    cached = _read_cache(bfm, path)
    if cached is not None:
        return cached
    locked = _boundary_vertices(bfm.triangles, bfm.n_vertices)
    locked[bfm.keypoints68] = True
    results = simplify(_sample_meshes(bfm), bfm.triangles, list(LEVELS), locked)
    levels = dict(zip(LEVELS, results))
    arrays = {}
    for t, (kept, triangles) in levels.items():
        arrays[f"kept_{t}"], arrays[f"triangles_{t}"] = kept, triangles

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    # this replaces a corrupt cache file too; a read-only cache only costs the
    # recomputation next time
    with contextlib.suppress(OSError, SelfswapError):
        atomic_write(path, write)
    return levels


def lod_indices(target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """`(kept, triangles)` of the level of detail of `load_bfm()` with at most
    `target_faces` triangles, one of `LEVELS` (computed once, then read from the cache)."""
    if target_faces not in LEVELS:
        raise ValueError(f"level of detail must be one of {LEVELS}, got {target_faces}")
    return _levels()[target_faces]


def bfm_lod(target_faces: int | None) -> BFM:
    """`load_bfm()` (None, or a target at least the full triangle count) or its level of
    detail with about `target_faces` triangles."""
    bfm = load_bfm()
    if target_faces is None or target_faces >= len(bfm.triangles):
        return bfm
    return _bfm_lod(int(target_faces))


@lru_cache(maxsize=8)
def _bfm_lod(target_faces: int) -> BFM:
    return subset(load_bfm(), *lod_indices(target_faces))
