"""SAMAE's masking: face region, shape-agnostic mask, random mesh scaling, perforation
confusion, swap mask.

Every function is a pure function of its inputs and, where random, of a seeded generator
(`numpy.random.Generator`, `torch.Generator` or an int seed): the same seed gives the same
masks. Masks are float32 arrays of 0/1 with shape `(..., R, R)` (typically `(B, 1, R, R)`,
like the renderer's outputs); lengths in the configs are fractions of R.

Training and swapping share one path, `build_mask(regions, face, config, rng)`: the union
of the regions that must be hidden becomes a shape-agnostic mask, and, only when a
generator is given, perforations are punched into it.
- training: regions = [silhouette of the randomly *scaled* true mesh]; face = true region;
- swapping: regions = [target face region, source-shaped mesh region]; no generator.
`MaskBuilder` wires that to the renderer and the mesh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from selfswap.face.bfm import BFM
from selfswap.geometry.mesh import Geometry, compose, pose, swap_geometry
from selfswap.samae.config import MaskConfig, MeshScalingConfig, PerforationConfig, SamaeConfig

#: 68-landmark indices used as pivots of the mesh scaling: nose tip, subnasale, chin.
_NOSE_TIP, _SUBNASALE, _CHIN = 30, 33, 8


def as_rng(rng) -> np.random.Generator:
    """A numpy Generator from a Generator, a `torch.Generator` (one draw from it seeds
    ours, so it advances deterministically) or an int seed."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(rng, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=rng).item())
        return np.random.default_rng(seed)
    raise TypeError(f"expected a numpy/torch Generator or an int seed, got {type(rng).__name__}")


def _per_image(fn: Callable[[np.ndarray], np.ndarray], masks: np.ndarray) -> np.ndarray:
    arr = np.asarray(masks)
    flat = arr.reshape(-1, *arr.shape[-2:])
    out = np.stack([fn(m) for m in flat]) if len(flat) else np.zeros_like(flat, np.float32)
    return out.reshape(arr.shape).astype(np.float32, copy=False)


def _binary(mask: np.ndarray) -> np.ndarray:
    return (np.asarray(mask) > 0.5).astype(np.uint8)


# -- face region and shape-agnostic mask ------------------------------------------------------


def _fill(silhouette: np.ndarray) -> np.ndarray:
    binary = _binary(silhouette)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(binary)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out | binary


def face_region(silhouette: np.ndarray) -> np.ndarray:
    """The face region `(..., R, R)` of rendered silhouettes `(..., R, R)`: the silhouette
    with its holes (open mouth, eye gaps) filled."""
    return _per_image(_fill, silhouette)


def _agnostic(region: np.ndarray, config: MaskConfig) -> np.ndarray:
    binary = _binary(region)
    if not config.enabled or not binary.any():
        return binary
    size = binary.shape[0]
    if config.hull:
        hull = cv2.convexHull(cv2.findNonZero(binary))
        binary = binary.copy()
        cv2.fillConvexPoly(binary, hull, 1)
    out = binary
    margin = config.margin * size
    if margin > 0:
        distance = cv2.distanceTransform(1 - binary, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        out = (distance <= margin).astype(np.uint8)
    sigma = config.smooth * size
    if sigma > 0:
        blurred = cv2.GaussianBlur(out.astype(np.float32), (0, 0), sigma)
        out = (blurred >= 0.5).astype(np.uint8)
    return out | binary  # rounding must never uncover the region itself


def shape_agnostic_mask(region: np.ndarray, config: MaskConfig | None = None) -> np.ndarray:
    """Shape-agnostic masks `(..., R, R)` from face regions `(..., R, R)`: convex hull,
    dilation by `margin`·R, Gaussian rounding (σ = `smooth`·R, threshold ½). Always
    contains the region."""
    config = config or MaskConfig()
    return _per_image(lambda m: _agnostic(m, config), region)


# -- random mesh scaling ----------------------------------------------------------------------


def sample_mesh_scaling(config: MeshScalingConfig | None, batch: int, rng=None) -> np.ndarray:
    """Scale factors `(B, 4)`: width, height, jaw width, jaw height; all ones for samples
    not scaled (disabled, no generator, or not drawn with `probability`)."""
    factors = np.ones((batch, 4), np.float32)
    if config is None or not config.enabled or rng is None:
        return factors
    rng = as_rng(rng)
    ranges = np.array([config.width, config.height, config.jaw_width, config.jaw_height])
    draws = rng.uniform(ranges[:, 0], ranges[:, 1], size=(batch, 4))
    chosen = rng.random(batch) < config.probability
    factors[chosen] = draws[chosen]
    return factors


def scale_mesh(vertices: np.ndarray, factors: np.ndarray, bfm: BFM) -> np.ndarray:
    """Scale model-space vertices `(B, N, 3)` of `bfm` in the face's own frame.

    `factors` `(B, 4)`: width (x about the nose tip), height (y about the nose tip), jaw
    width (x below the subnasale, growing linearly to the full factor at the chin) and jaw
    height (y below the subnasale, about it). Depth is left alone: the mask only sees the
    outline.
    """
    v = np.array(vertices, np.float32, copy=True)
    f = np.asarray(factors, np.float32)
    keypoints = v[:, bfm.keypoints68]
    nose = keypoints[:, _NOSE_TIP]
    pivot_y = keypoints[:, _SUBNASALE, 1][:, None]
    chin_y = keypoints[:, _CHIN, 1][:, None]
    x, y = v[..., 0], v[..., 1]
    below = np.clip((pivot_y - y) / np.maximum(pivot_y - chin_y, 1e-6), 0.0, 1.0)
    jaw_x = 1.0 + below * (f[:, 2:3] - 1.0)
    x = nose[:, 0:1] + (x - nose[:, 0:1]) * jaw_x
    y = np.where(y < pivot_y, pivot_y + (y - pivot_y) * f[:, 3:4], y)
    v[..., 0] = nose[:, 0:1] + (x - nose[:, 0:1]) * f[:, 0:1]
    v[..., 1] = nose[:, 1:2] + (y - nose[:, 1:2]) * f[:, 1:2]
    return v


# -- perforation confusion --------------------------------------------------------------------


def _perforate_one(
    mask: np.ndarray, region: np.ndarray, config: PerforationConfig, rng: np.random.Generator
) -> np.ndarray:
    """Perforations (uint8 0/1, a subset of `mask`) for one mask."""
    size = mask.shape[0]
    holes = np.zeros_like(mask)
    if rng.random() >= config.probability or not mask.any() or not region.any():
        return holes
    count = int(rng.integers(config.count[0], config.count[1] + 1))
    inside = cv2.distanceTransform(region, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - region, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    band_px = config.band * size
    near = np.flatnonzero((mask > 0) & (np.where(region > 0, inside, outside) <= max(band_px, 1.0)))
    interior = np.flatnonzero((mask > 0) & (region > 0) & (inside > band_px))
    if len(interior) == 0:
        interior = np.flatnonzero((mask > 0) & (region > 0))
    budget = config.max_area * float(mask.sum())
    for _ in range(count):
        pool = interior if rng.random() < config.holes else near
        radius = rng.uniform(*config.radius) * size
        aspect = rng.uniform(0.6, 1.0)
        angle = rng.uniform(0.0, 180.0)
        if len(pool) == 0:
            continue
        centre = int(pool[rng.integers(len(pool))])
        cy, cx = divmod(centre, size)
        trial = holes.copy()
        axes = (max(1, round(radius)), max(1, round(radius * aspect)))
        cv2.ellipse(trial, (cx, cy), axes, angle, 0, 360, 1, thickness=-1)
        trial &= mask
        if trial.sum() <= budget:
            holes = trial
    return holes


def perforate(
    mask: np.ndarray, region: np.ndarray, config: PerforationConfig | None, rng=None
) -> tuple[np.ndarray, np.ndarray]:
    """Punch perforations into masks.

    Args:
        mask: `(..., R, R)` masks (1 = hidden).
        region: `(..., R, R)` true face regions (where the real face pixels are).
        config: perforation settings; None or disabled leaves the masks alone.
        rng: seeded generator; None leaves the masks alone (deterministic use).

    Returns:
        `(perforated, perforations)`: the masks with perforations removed, and the
        perforations themselves (a subset of the masks), both `(..., R, R)` float32.
    """
    mask = np.asarray(mask, np.float32)
    if config is None or not config.enabled or rng is None:
        return mask, np.zeros_like(mask)
    rng = as_rng(rng)
    masks = _binary(mask).reshape(-1, *mask.shape[-2:])
    regions = _binary(region).reshape(-1, *mask.shape[-2:])
    holes = np.stack([_perforate_one(m, r, config, rng) for m, r in zip(masks, regions)])
    holes = holes.reshape(mask.shape).astype(np.float32)
    return mask * (1.0 - holes), holes


# -- one path for training and swapping -------------------------------------------------------


def build_mask(
    regions: list[np.ndarray],
    face: np.ndarray,
    config: SamaeConfig | None = None,
    rng=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SAMAE mask: shape-agnostic mask of the union of `regions`, perforated when a
    generator is given.

    Args:
        regions: face regions `(..., R, R)` that must all be hidden (training: the scaled
            mesh's; swapping: the target's and the source mesh's).
        face: the true face region `(..., R, R)` of the image (where perforations go).
        config: SAMAE settings (mask and perforation parts are used here).
        rng: generator for perforations; None = deterministic (swap).

    Returns:
        `(mask, unperforated, perforations)`, each `(..., R, R)` float32.
    """
    config = config or SamaeConfig()
    union = np.maximum.reduce([np.asarray(r, np.float32) for r in regions])
    unperforated = shape_agnostic_mask(union, config.mask)
    mask, holes = perforate(unperforated, face, config.perforation, rng)
    return mask, unperforated, holes


def swap_mask(
    target_silhouette: np.ndarray,
    source_silhouette: np.ndarray,
    config: SamaeConfig | MaskConfig | None = None,
) -> np.ndarray:
    """Deterministic swap mask `(..., R, R)`: shape-agnostic mask covering both the target's
    face region and the region of the source-shaped mesh (silhouettes `(..., R, R)`)."""
    if isinstance(config, MaskConfig):
        config = SamaeConfig(mask=config)
    target = face_region(target_silhouette)
    source = face_region(source_silhouette)
    return build_mask([target, source], target, config, rng=None)[0]


# -- wired to the renderer --------------------------------------------------------------------


@dataclass
class TrainingMasks:
    """One training batch's guidance and masks; arrays `(B, C, R, R)` float32."""

    normals: np.ndarray  # (B, 3, R, R) true mesh: what the generator is told to paint
    silhouette: np.ndarray  # (B, 1, R, R) true mesh silhouette
    face_region: np.ndarray  # (B, 1, R, R) true face region
    mask_region: np.ndarray  # (B, 1, R, R) region of the scaled mesh that defines the mask
    mask: np.ndarray  # (B, 1, R, R) final mask (1 = hidden), perforated
    unperforated: np.ndarray  # (B, 1, R, R) the mask before perforation
    perforations: np.ndarray  # (B, 1, R, R) pixels uncovered by perforation confusion
    scaling: np.ndarray  # (B, 4) width, height, jaw width, jaw height factors


@dataclass
class SwapMasks:
    """One swap batch's guidance and masks; arrays `(B, C, R, R)` float32."""

    normals: np.ndarray  # (B, 3, R, R) source shape, target expression and pose
    silhouette: np.ndarray  # (B, 1, R, R) silhouette of that mesh
    target_region: np.ndarray  # (B, 1, R, R) the target's own face region
    source_region: np.ndarray  # (B, 1, R, R) region of the source-shaped mesh
    mask: np.ndarray  # (B, 1, R, R) covers both


class MaskBuilder:
    """Guidance maps and SAMAE masks for batches of crop-posed geometry.

    Args:
        renderer: a `selfswap.geometry.render.Renderer` at the crop size.
        config: SAMAE settings.
    """

    def __init__(self, renderer, config: SamaeConfig | None = None) -> None:
        self.renderer = renderer
        self.config = config or SamaeConfig()

    def training(self, geometry: Geometry, rng) -> TrainingMasks:
        """Masks for self-reconstruction: the true mesh is rendered as guidance, a randomly
        scaled copy defines the mask, perforations are punched with `rng`."""
        rng = as_rng(rng)
        mesh = self.renderer.mesh
        model = compose(geometry.shape, geometry.expression, mesh)
        out = self.renderer.render(pose(model, geometry.camera))
        region = face_region(out.silhouette)
        factors = sample_mesh_scaling(self.config.scaling, len(geometry), rng)
        mask_region = region
        if (factors != 1).any():
            scaled = pose(scale_mesh(model, factors, mesh), geometry.camera)
            mask_region = face_region(self.renderer.silhouette(scaled))
            if self.config.scaling.keep_face_covered:
                mask_region = np.maximum(mask_region, region)
        mask, unperforated, holes = build_mask([mask_region], region, self.config, rng)
        return TrainingMasks(
            normals=out.normals,
            silhouette=out.silhouette,
            face_region=region,
            mask_region=mask_region,
            mask=mask,
            unperforated=unperforated,
            perforations=holes,
            scaling=factors,
        )

    def swap(self, target: Geometry, source_shape: np.ndarray) -> SwapMasks:
        """Guidance and mask for a swap: the source's shape `(B, 40)` (or `(40,)`) with the
        target's expression and crop pose is rendered; the mask covers it and the target's
        own face region. Deterministic."""
        source_shape = np.broadcast_to(np.asarray(source_shape, np.float32), target.shape.shape)
        mesh = self.renderer.mesh
        target_sil = self.renderer.silhouette(target.vertices(mesh))
        swapped = swap_geometry(source_shape, target.expression, target.camera)
        out = self.renderer.render(swapped.vertices(mesh))
        target_region = face_region(target_sil)
        source_region = face_region(out.silhouette)
        mask = build_mask([target_region, source_region], target_region, self.config)[0]
        return SwapMasks(
            normals=out.normals,
            silhouette=out.silhouette,
            target_region=target_region,
            source_region=source_region,
            mask=mask,
        )
