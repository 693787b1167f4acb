"""The source's own pixels on the swap geometry: a textured 3DMM render with visibility.

The 3DMM gives a dense correspondence between two photos: vertex k of the source mesh
(posed in the source photo) and vertex k of the swap mesh (source shape, target expression,
target pose, posed in the target crop) are the same point of the face. So the swap mesh is
rendered into the target crop with each vertex carrying, as a vertex attribute, *where it
lies in the source photo*; the rasteriser interpolates those coordinates per pixel and the
source photo is resampled there (`cv2.remap`; bilinear, or a sharper filter where the render is
shown at full size). Every crop pixel gets the source's real pixel, not a per-vertex colour,
so the texture keeps the photo's full detail (as far as the 3DMM fit is right).

A surface point is only usable where the source photo saw it. Its visibility, in [0, 1], is
the product of
- **occlusion**: the point is in front in the source view. The source mesh is rendered with
  depth into an R×R tile framing its bounding box (a shadow map); a point whose interpolated
  source depth lies more than `depth_tolerance` (times the face size) behind that z-buffer
  is hidden (by the nose, the cheek of a turned head...), with a soft ramp over one more
  tolerance. The four shadow-map texels around the point vote with bilinear weights
  (percentage-closer filtering) and the tolerance grows with the surface's slope in the
  source view (half a texel's worth), so that texel rounding neither speckles steep
  surfaces nor cuts occluders short: against a shadow map of 4× the resolution, these
  settings misclassified 2–3 % of the face pixels at 30°–45° of yaw at R = 128;
- **facing**: the surface faced the source camera. The cameras are affine (3DDFA_V2), so
  the view direction is +z everywhere and the facing term is the interpolated z of the
  source-view unit normal, ramped by `smoothstep(grazing[0], grazing[1], n_z)`: grazing
  surfaces are smeared in the photo and get low weight;
- **inside**: the point projects inside the source photo;
- **coverage**: the pixel is on the swap mesh (zero elsewhere).

Faces are nearly symmetric, so what the source photo did not see (the far side of a turned
head, behind the nose) can be taken from the side it did see: with `mirror` each point is
also painted from its mirror image across the face (`mirror_weights`: the mean face
reflected across its middle plane, located in a frontal triangulation), and that mirrored
paint fills the point as far as the point itself was hidden and its mirror image seen.

The source may be the whole photo (with `Geometry` posed in it) or its aligned crop (with the
crop geometry); where the source face is much larger than the target's, the photo is first
reduced (area filter) around the face so that the resampling does not alias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import cv2
import numpy as np

from selfswap.geometry.mesh import Geometry
from selfswap.geometry.render import Renderer, RenderOutput

if TYPE_CHECKING:
    import torch

#: What `render_source_texture` accepts as source images (see there).
SourceImages = Union[np.ndarray, Sequence[np.ndarray], "torch.Tensor"]

#: The mirrored paint takes the light of the side it fills from the ratio of the direct to
#: the mirrored paint around it, smoothed over this share of the crop side (`_match_shading`).
MIRROR_SHADING_SIGMA = 0.08
#: ... computed on a grid of at most this side (a smooth field; resized to the crop).
_SMOOTH_GRID = 64

#: Source faces up to this many times larger (in pixels) than the target face are sampled
#: as they are; above it the source is area-reduced to the target's scale first.
_MAX_MINIFICATION = 1.5
#: Points resampled per row of an OpenCV map (`_sample`).
_MAP_ROW = 1024


def _as_images(images: SourceImages, batch: int) -> list[np.ndarray]:
    """`(H, W, C)` arrays, one per face, from the accepted input forms."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"a tensor of images must be (B, C, H, W), got {tuple(images.shape)}")
        images = images.detach().cpu().permute(0, 2, 3, 1).numpy()
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"images must be (B, H, W, C), got {tuple(images.shape)}")
        images = list(images)
    images = [np.asarray(i) for i in images]
    if len(images) != batch:
        raise ValueError(f"{len(images)} source images for {batch} geometries")
    for image in images:
        if image.ndim != 3 or image.shape[2] > 4:
            raise ValueError(f"each image must be (H, W, C) with C <= 4, got {image.shape}")
    return images


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _sample(
    image: np.ndarray,
    map_x: np.ndarray,
    map_y: np.ndarray,
    box: np.ndarray,
    target_size: float,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Samples `(P, C)` float32 of `image` at pixel coordinates `map_x`, `map_y` `(P,)`
    (`interpolation`: an OpenCV flag), reading only the region `box` (x0, y0, x1, y1) around
    the source face and reducing it first when the source face (its side, `box`) is much
    larger than the target face (`target_size` pixels)."""
    h, w = image.shape[:2]
    x0, y0 = max(int(np.floor(box[0])) - 2, 0), max(int(np.floor(box[1])) - 2, 0)
    x1, y1 = min(int(np.ceil(box[2])) + 3, w), min(int(np.ceil(box[3])) + 3, h)
    if x1 <= x0 or y1 <= y0:  # the face lies wholly outside the photo
        return np.zeros((*map_x.shape, image.shape[2]), np.float32)
    region = image[y0:y1, x0:x1]
    map_x, map_y = map_x - x0, map_y - y0
    minification = max(box[2] - box[0], box[3] - box[1]) / max(target_size, 1.0)
    if minification > _MAX_MINIFICATION:
        rw = max(round((x1 - x0) / minification), 1)
        rh = max(round((y1 - y0) / minification), 1)
        sx, sy = rw / (x1 - x0), rh / (y1 - y0)
        region = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
        map_x, map_y = (map_x + 0.5) * sx - 0.5, (map_y + 0.5) * sy - 0.5
    if region.dtype not in (np.uint8, np.float32):
        region = region.astype(np.float32)
    # OpenCV's maps are 2-D with sides under 2^15: the points go in rows of _MAP_ROW
    count = len(map_x)
    rows = max(-(-count // _MAP_ROW), 1)
    maps = np.zeros((2, rows * _MAP_ROW), np.float32)
    maps[0, :count], maps[1, :count] = map_x, map_y
    out = cv2.remap(
        np.ascontiguousarray(region),
        maps[0].reshape(rows, _MAP_ROW),
        maps[1].reshape(rows, _MAP_ROW),
        interpolation,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(rows * _MAP_ROW, -1)[:count].astype(np.float32)


def _slope_bias(facing: np.ndarray, texels: float = 0.5, limit: float = 4.0) -> np.ndarray:
    """Extra depth tolerance for surfaces at an angle to the source camera: across one
    shadow-map texel their depth changes by tan(angle) texels (n_z = `facing` = cos), so a
    texel's depth may sit that far in front of the point on the same surface."""
    cos = np.clip(np.abs(facing), 1.0 / limit, 1.0)
    return texels * np.minimum(np.sqrt(1.0 - cos * cos) / cos, limit)


def _occlusion(
    shadow,
    item: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    depth: np.ndarray,
    tolerance: np.ndarray | float,
) -> np.ndarray:
    """How unoccluded `(P,)` points are, in [0, 1]: points of faces `item` at tile positions
    `x`, `y` and tile depth `depth` against the shadow map (`RenderOutput` with silhouette
    and depth, `(B, 1, R, R)`). Percentage-closer filtering: each of the four texels around
    the point votes with its bilinear weight, so the edge of a shadow is anti-aliased and a
    steep surface is not self-shadowed by texel rounding."""
    r = shadow.depth.shape[-1]
    depth_map = shadow.depth[:, 0].reshape(-1)
    covered = shadow.silhouette[:, 0].reshape(-1) > 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    out = np.zeros(len(x), np.float32)
    for dx, dy, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        tx, ty = x0 + dx, y0 + dy
        valid = (tx >= 0) & (tx < r) & (ty >= 0) & (ty < r)
        flat = (item * r + ty.clip(0, r - 1)) * r + tx.clip(0, r - 1)
        # a texel off the source mesh (the point is at its rim) does not occlude
        behind = np.where(valid & covered[flat], depth_map[flat] - depth, 0.0)
        out += weight * np.clip(2.0 - behind / tolerance, 0.0, 1.0)
    return out


@dataclass(frozen=True)
class SourceView:
    """Source photos made ready to paint from (`source_view`), for one renderer: a batch of B
    photos with their 3DMM fits' shadow map and per-vertex attributes. It depends on the
    source alone, so one view serves every target it is painted onto."""

    images: list[np.ndarray]
    attributes: np.ndarray  # (B, N, 4): photo x, photo y, tile depth, facing per vertex
    shadow: RenderOutput  # silhouette and depth (B, 1, R, R) of the source mesh in its tile
    scale: np.ndarray  # (B,) tile pixels per photo pixel
    offset: np.ndarray  # (B, 2): tile = photo * scale + offset
    boxes: np.ndarray  # (B, 4) x0, y0, x1, y1 of the source mesh in the photo

    def __len__(self) -> int:
        return len(self.images)

    def repeat(self, count: int) -> SourceView:
        """A view of one photo (B = 1) as `count` identical ones."""
        if len(self) != 1:
            raise ValueError(f"only a view of one photo repeats, this one has {len(self)}")
        if count == 1:
            return self

        def many(a):
            return None if a is None else np.repeat(a, count, axis=0)

        shadow = RenderOutput(many(self.shadow.silhouette), depth=many(self.shadow.depth))
        return SourceView(
            self.images * count, many(self.attributes), shadow, many(self.scale),
            many(self.offset), many(self.boxes),
        )  # fmt: skip


def source_view(
    renderer: Renderer, source_images: SourceImages, source_geometry: Geometry
) -> SourceView:
    """The source photos `source_images` (see `render_source_texture`) with their fits
    `source_geometry`, posed in those images' pixels, ready to paint from (one render)."""
    images = _as_images(source_images, len(source_geometry))
    r = renderer.size
    source = source_geometry.vertices(renderer.mesh)  # (B, N, 3) in source image pixels
    # Shadow map of the source view: the source mesh framed by its bounding box in an R×R
    # tile (photo pixels → tile pixels by a per-face scale and shift, depth scaled alike).
    lo, hi = source[..., :2].min(axis=1), source[..., :2].max(axis=1)  # (B, 2)
    centre = (lo + hi) / 2
    scale = (r - 2) / np.maximum((hi - lo).max(axis=1), 1e-3)  # (B,) tile px per photo px
    offset = (r - 1) / 2 - centre * scale[:, None]  # tile = photo * scale + offset
    framed = source * scale[:, None, None]
    framed[..., :2] += offset[:, None]
    shadow = renderer.render(framed, normals=False, depth=True)
    facing = renderer.vertex_normals(source)[..., 2]
    attributes = np.concatenate(
        [source[..., :2], framed[..., 2:3], facing[..., None]], axis=-1
    )  # (B, N, 4): photo x, photo y, tile depth, facing
    return SourceView(images, attributes, shadow, scale, offset, np.concatenate([lo, hi], 1))


def paint(
    renderer: Renderer,
    views: Sequence[SourceView],
    target_geometry: Geometry,
    mirrors: Sequence[float] | None = None,
    extra_attributes: np.ndarray | None = None,
    *,
    depth_tolerance: float = 0.01,
    grazing: tuple[float, float] = (0.05, 0.35),
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], RenderOutput]:
    """Each source view painted onto the target-view geometry (see `render_source_texture`,
    whose arguments these are; `mirrors`: one `mirror` per view, default 0), with one render
    of the target for all of them. `extra_attributes` `(B, N, C)`: other per-vertex values
    to render in the same pass. Returns `(texture (B, C, R, R), visibility (B, 1, R, R))`
    per view, and the render's silhouette with the extra attributes (None without)."""
    batch = len(target_geometry)
    mirrors = [0.0] * len(views) if mirrors is None else list(mirrors)
    if len(mirrors) != len(views):
        raise ValueError(f"{len(mirrors)} mirror settings for {len(views)} source views")
    for view in views:
        if len(view) != batch:
            raise ValueError(
                f"batch sizes differ: {len(view)} source and {batch} target geometries"
            )
    r = renderer.size
    mesh = renderer.mesh
    target = target_geometry.vertices(mesh)  # (B, N, 3) in target crop pixels
    target_size = (target[..., :2].max(axis=1) - target[..., :2].min(axis=1)).max(axis=1)
    channels = [view.attributes for view in views]
    channels += [mirrored(v.attributes, mesh) for v, m in zip(views, mirrors) if m > 0]
    if extra_attributes is not None:
        channels.append(np.broadcast_to(extra_attributes, (batch, *extra_attributes.shape[-2:])))
    out = renderer.render(target, normals=False, attributes=np.concatenate(channels, axis=-1))

    def painted(view: SourceView, slot: int, only: np.ndarray | None = None):
        at = RenderOutput(out.silhouette, attributes=out.attributes[:, 4 * slot : 4 * slot + 4])
        return _paint(
            at, view.images, view.shadow, view.scale, view.offset, view.boxes, target_size,
            depth_tolerance * (r - 2), grazing, interpolation, only,
        )  # fmt: skip

    results = []
    flipped_slot = len(views)
    for slot, (view, mirror) in enumerate(zip(views, mirrors)):
        texture, visibility = painted(view, slot)
        if mirror > 0:
            # each point also from its mirror image across the face's plane of symmetry:
            # where the point was not fully seen, and on the lattice its shading gain is
            # measured on
            step = _shading_step(r)
            need = visibility < 1.0
            need[:, ::step, ::step] = True
            flipped, seen = painted(view, flipped_slot, need)
            flipped_slot += 1
            flipped = _match_shading(texture, visibility, flipped, seen, step)
            fill = (1.0 - visibility) * seen * float(mirror)
            total = visibility + fill
            mixed = texture * visibility[:, None] + flipped * fill[:, None]
            texture = np.where(total[:, None] > 0, mixed / np.maximum(total, 1e-6)[:, None], 0.0)
            texture = texture.astype(np.float32)
            visibility = total.astype(np.float32)
        results.append((texture, visibility[:, None]))
    extra = None
    if extra_attributes is not None:
        extra = out.attributes[:, 4 * flipped_slot :]
    return results, RenderOutput(out.silhouette, attributes=extra)


def render_source_texture(
    renderer: Renderer,
    source_images: SourceImages,
    source_geometry: Geometry,
    target_geometry: Geometry,
    *,
    depth_tolerance: float = 0.01,
    grazing: tuple[float, float] = (0.05, 0.35),
    interpolation: int = cv2.INTER_LINEAR,
    mirror: float = 0.0,
    as_tensor: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]:
    """Render each source photo, through its 3DMM fit, onto the target-view geometry.

    Args:
        renderer: the renderer of the target crops (side R); its mesh (level of detail) is
            used for both views.
        source_images: the source photos (or aligned crops), one per face: a `(B, H, W, C)`
            array, a sequence of `(H_b, W_b, C)` arrays of any sizes, or a `(B, C, H, W)`
            torch tensor; uint8 (0..255) or float (any range, kept).
        source_geometry: `(B)` the source fits, posed in those images' pixels (e.g.
            `face_geometry(faces)` for photos, `face_geometry(faces, matrices)` for crops).
        target_geometry: `(B)` what to paint, posed in the target crops (R×R pixels),
            typically `swap_geometry(source shape, target expression, target crop camera)`;
            its shape should be the source's (the texture follows vertex correspondence).
        depth_tolerance: how far (in face sizes) a point may lie behind the source view's
            z-buffer and still count as seen (plus a slope-dependent bias); hidden fully at
            twice that.
        grazing: the source-view normal z (cosine to the view direction) ramped from 0
            visibility at `grazing[0]` to 1 at `grazing[1]`.
        interpolation: how the photos are resampled (an OpenCV flag; bilinear, as in
            training, unless the render is shown at full size, where Lanczos keeps detail).
        mirror: in [0, 1], how far the points the source did not see are painted from
            their mirror image across the face, where that image was seen (0: not at all);
            the visibility counts the mirrored paint like the direct one.
        as_tensor: return `torch.Tensor`s instead of numpy arrays.

    Returns:
        `(texture, visibility)`: `texture` `(B, C, R, R)` float32, the source's pixels in
        the target crop (uint8 input scaled to [0, 1]), zero where `visibility` is zero;
        `visibility` `(B, 1, R, R)` float32 in [0, 1], zero off the target mesh.
    """
    if len(source_geometry) != len(target_geometry):
        raise ValueError(
            f"batch sizes differ: {len(source_geometry)} source and {len(target_geometry)} "
            "target geometries"
        )
    view = source_view(renderer, source_images, source_geometry)
    [(texture, visibility)], _ = paint(
        renderer, [view], target_geometry, [mirror],
        depth_tolerance=depth_tolerance, grazing=grazing, interpolation=interpolation,
    )  # fmt: skip
    if as_tensor:
        import torch

        return torch.from_numpy(texture), torch.from_numpy(visibility)
    return texture, visibility


def source_texture_for_faces(
    renderer: Renderer,
    source_images: Sequence[np.ndarray],
    source_faces: Sequence,
    target_faces: Sequence,
    target_matrices: np.ndarray,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]:
    """`render_source_texture` for analysed faces (`selfswap.face.types.Face`): the source
    photos `(H_b, W_b, C)` with their faces, onto the swap geometry (source shape, target
    expression and pose) in the target crops given by `target_matrices` `(B, 2, 3)`.
    Returns `(texture (B, C, R, R), visibility (B, 1, R, R))`."""
    from selfswap.geometry.mesh import crop_cameras, face_geometry, swap_geometry

    source_geometry = face_geometry(source_faces)
    target = face_geometry(target_faces)
    geometry = swap_geometry(
        source_geometry.shape,
        target.expression,
        crop_cameras(target.camera, np.asarray(target_matrices)),
    )
    return render_source_texture(renderer, source_images, source_geometry, geometry, **kwargs)


def _paint(
    out,
    images: list[np.ndarray],
    shadow,
    scale: np.ndarray,
    offset: np.ndarray,
    boxes: np.ndarray,
    target_size: np.ndarray,
    tolerance: float,
    grazing: tuple[float, float],
    interpolation: int,
    only: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Texture `(B, C, R, R)` and visibility `(B, R, R)` from a target-view render whose
    attributes are photo x, photo y, tile depth and facing (see `render_source_texture`),
    on the pixels `only` `(B, R, R)` says (default all; zero elsewhere)."""
    batch, r = out.silhouette.shape[0], out.silhouette.shape[-1]
    covered = out.silhouette[:, 0] > 0.5  # (B, R, R)
    if only is not None:
        covered &= only
    # Per-pixel terms only on covered pixels (about a third of the crop).
    item, rows, cols = np.nonzero(covered)
    px, py, depth, facing = out.attributes[item, :, rows, cols].T
    heights, widths = np.array([i.shape[:2] for i in images], np.float32).T
    inside = (px >= -0.5) & (py >= -0.5) & (px <= widths[item] - 0.5)
    inside &= py <= heights[item] - 0.5
    occlusion = _occlusion(
        shadow,
        item,
        px * scale[item] + offset[item, 0],
        py * scale[item] + offset[item, 1],
        depth,
        tolerance + _slope_bias(facing),
    )
    seen = inside * occlusion * _smoothstep(*grazing, facing)
    visibility = np.zeros((batch, r, r), np.float32)
    visibility[item, rows, cols] = seen

    channels = images[0].shape[2]
    texture = np.zeros((batch, channels, r, r), np.float32)
    for b, image in enumerate(images):
        if image.shape[2] != channels:
            raise ValueError("all source images must have the same number of channels")
        at = np.flatnonzero((item == b) & (seen > 0))  # only what is seen is resampled
        if not len(at):
            continue
        sampled = _sample(image, px[at], py[at], boxes[b], float(target_size[b]), interpolation)
        if image.dtype == np.uint8:
            sampled *= 1.0 / 255.0
        texture[b][:, rows[at], cols[at]] = sampled.T
    return texture, visibility


_MIRRORS: dict[int, tuple[object, np.ndarray, np.ndarray, object]] = {}


def mirror_weights(mesh) -> tuple[np.ndarray, np.ndarray]:
    """Where each vertex of `mesh` (a BFM or its level of detail) lands when mirrored across
    the mean face's plane of symmetry (x = its mean x in model space), as three vertices
    `(N, 3)` and their barycentric weights `(N, 3)` in a triangulation of the face seen from
    the front (the nearest vertex where the image falls outside it): per-vertex values
    `a` `(..., N, C)` mirrored are `(a[..., idx, :] * weights[..., None]).sum(-2)`."""
    return _mirror_table(mesh)[:2]


def _mirror_table(mesh) -> tuple[np.ndarray, np.ndarray, object]:
    """`mirror_weights`' vertices and weights, and the same as a sparse `(N, N)` matrix
    (three weights a row; what `mirrored` applies), cached per mesh."""
    hit = _MIRRORS.get(id(mesh))
    if hit is None or hit[0] is not mesh:
        from scipy.sparse import csr_matrix
        from scipy.spatial import Delaunay, cKDTree

        vertices = np.asarray(mesh.mean, np.float64).reshape(-1, 3)
        xy = vertices[:, :2]
        flipped = xy.copy()
        flipped[:, 0] = 2.0 * xy[:, 0].mean() - xy[:, 0]
        tri = Delaunay(xy)
        simplex = tri.find_simplex(flipped)
        outside = simplex < 0
        transform = tri.transform[simplex]  # (N, 3, 2)
        bary = np.einsum("nij,nj->ni", transform[:, :2], flipped - transform[:, 2])
        weights = np.concatenate([bary, 1.0 - bary.sum(1, keepdims=True)], axis=1)
        idx = tri.simplices[simplex]
        nearest = cKDTree(xy).query(flipped[outside])[1]
        idx[outside] = nearest[:, None]
        weights[outside] = [1.0, 0.0, 0.0]
        weights = np.clip(weights, 0.0, 1.0)
        weights /= weights.sum(1, keepdims=True)
        idx, weights = idx.astype(np.int64), weights.astype(np.float32)
        rows = np.repeat(np.arange(len(idx)), idx.shape[1])
        matrix = csr_matrix((weights.ravel(), (rows, idx.ravel())), shape=(len(idx),) * 2)
        hit = (mesh, idx, weights, matrix)
        _MIRRORS[id(mesh)] = hit
    return hit[1:]


def mirrored(values: np.ndarray, mesh) -> np.ndarray:
    """Per-vertex `values` `(..., N, C)` read at each vertex's mirror image (see
    `mirror_weights`)."""
    matrix = _mirror_table(mesh)[2]
    n, channels = values.shape[-2:]
    flat = values.reshape(-1, n, channels)
    out = np.stack([matrix @ item for item in flat]) if len(flat) else flat.copy()
    return out.reshape(values.shape).astype(values.dtype)


def _shading_step(side: int) -> int:
    """The lattice step the mirrored paint's shading gain is measured on (a smooth field:
    at most `_SMOOTH_GRID` points a side)."""
    return max(1, -(-side // _SMOOTH_GRID))


def _match_shading(
    texture: np.ndarray,
    visibility: np.ndarray,
    flipped: np.ndarray,
    seen: np.ndarray,
    step: int = 1,
) -> np.ndarray:
    """The mirrored paint `flipped` `(B, C, R, R)` in the light of the side it fills: the
    source's light is seldom symmetric, so a mirrored cheek keeps the other cheek's shading.
    The log ratio of the direct to the mirrored paint where both were seen is spread
    smoothly over the crop (a Gaussian blur of `MIRROR_SHADING_SIGMA` x R, normalised by the
    blurred weights) and applied to the mirrored paint as a gain. The ratio is read on the
    lattice of every `step`-th pixel (where `flipped` must be painted) and the field resized
    to the crop."""
    out = flipped.copy()
    r = texture.shape[-1]
    sigma = max(MIRROR_SHADING_SIGMA * r, 1.0)
    lo, hi = float(min(texture.min(), flipped.min())), float(max(texture.max(), flipped.max()))
    eps = 0.02 * max(hi - lo, 1e-6)  # from black (whatever the range), and finite there
    lattice = (slice(None), slice(None, None, step), slice(None, None, step))
    for b in range(len(texture)):
        direct, mirror = texture[b][lattice], flipped[b][lattice]
        both = (visibility[b][lattice[1:]] > 0.9) & (seen[b][lattice[1:]] > 0.9)
        if both.sum() * step * step < 20:
            continue
        both = both.astype(np.float32)
        ratio = np.log((direct - lo + eps) / (mirror - lo + eps)) * both
        log_gain = _smooth_share(ratio.transpose(1, 2, 0), both, sigma / step)
        if step > 1:
            log_gain = cv2.resize(log_gain, (r, r), interpolation=cv2.INTER_LINEAR)
        gain = np.exp(log_gain.reshape(r, r, -1).transpose(2, 0, 1))
        out[b] = (flipped[b] - lo + eps) * gain + lo - eps
    return np.clip(out, lo, hi).astype(np.float32)


def _smooth_share(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian blur: blur(values x weights) / blur(weights), `values` `(R, R, C)`
    (already multiplied by `weights` `(R, R)`), `sigma` in pixels. The field is smooth, so
    it is computed on a grid of at most `_SMOOTH_GRID` and resized back (a large crop's
    blur costs tens of milliseconds at full size)."""
    r, channels = values.shape[0], values.shape[-1]  # OpenCV drops a single channel's axis
    scale = min(1.0, _SMOOTH_GRID / r)
    if scale < 1.0:
        side = max(round(r * scale), 1)
        values = cv2.resize(values, (side, side), interpolation=cv2.INTER_AREA)
        weights = cv2.resize(weights, (side, side), interpolation=cv2.INTER_AREA)
    sigma = max(sigma * scale, 0.5)
    blurred = cv2.GaussianBlur(values, (0, 0), sigma).reshape(*weights.shape, channels)
    field = blurred / (cv2.GaussianBlur(weights, (0, 0), sigma)[..., None] + 1e-6)
    if scale < 1.0:
        field = cv2.resize(field, (r, r), interpolation=cv2.INTER_LINEAR)
    return field.reshape(r, r, channels)
