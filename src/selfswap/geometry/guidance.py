"""Debug view of the geometry guidance and SAMAE masks (`selfswap guidance`).

`guidance_grid` lays out, for the largest face of a target image (and optionally a source):

row 1  aligned crop | mesh overlay | normal map | face region | shape-agnostic mask
row 2  five random training variants (mesh scaling + perforation confusion)
row 3  (with a source) source crop | source shape, target pose | the two outlines |
       swap normal map | swap mask | source texture on the swap geometry |
       its visibility

The source texture (`selfswap.geometry.texture`) is the source photo carried by the 3DMM
onto the swap geometry in the target crop, shown over the target crop in proportion to its
visibility; the visibility tile is black where the source did not see the surface, with the
swap mesh outlined in cyan.

Masked pixels are shown grey, as the generator sees them. Outlines: red = the target's
true face region, cyan = the region that defined the mask (scaled mesh, or source mesh),
yellow = perforations (real pixels left visible).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from selfswap.errors import ImageError, NoFaceError

_LABEL_H = 18
_GREY = np.array([128, 128, 128], np.float32)
_RED, _CYAN, _YELLOW, _GREEN = (255, 60, 60), (0, 230, 255), (255, 230, 0), (80, 255, 80)


def _largest_face(image_rgb: np.ndarray, analyzer, what: str):
    faces = analyzer.analyze(image_rgb)
    if not faces:
        raise NoFaceError(f"no face found in the {what} image")
    return max(faces, key=lambda f: f.width)


def _normals_rgb(normals: np.ndarray, silhouette: np.ndarray) -> np.ndarray:
    """`(3, R, R)` normals in [-1, 1] → `(R, R, 3)` uint8, black outside."""
    rgb = (normals.transpose(1, 2, 0) + 1.0) * 127.5
    return (rgb * (silhouette[0, :, :, None] > 0)).clip(0, 255).astype(np.uint8)


def _masked(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[0, :, :, None].astype(np.float32)
    return (crop.astype(np.float32) * (1 - m) + _GREY * m).astype(np.uint8)


def _outline(image: np.ndarray, region: np.ndarray, colour, thickness: int = 1) -> np.ndarray:
    binary = (region[0] > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.ascontiguousarray(image).copy()
    cv2.drawContours(out, contours, -1, colour, thickness, cv2.LINE_AA)
    return out


def _overlay(crop: np.ndarray, normals_rgb: np.ndarray, silhouette: np.ndarray) -> np.ndarray:
    inside = silhouette[0, :, :, None] > 0
    blend = 0.45 * crop.astype(np.float32) + 0.55 * normals_rgb.astype(np.float32)
    return np.where(inside, blend, crop).astype(np.uint8)


def _tile(image: np.ndarray, label: str, size: int) -> np.ndarray:
    tile = np.full((size + _LABEL_H, size, 3), 255, np.uint8)
    if image.shape[0] != size:  # nearest neighbour: show the crop's pixels as they are
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
    tile[_LABEL_H:] = image
    scale = 0.38 if size >= 200 else 0.3
    cv2.putText(
        tile, label, (3, _LABEL_H - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
        cv2.LINE_AA,
    )  # fmt: skip
    return tile


def _blank(size: int) -> np.ndarray:
    return np.full((size + _LABEL_H, size, 3), 255, np.uint8)


def guidance_grid(
    target_rgb: np.ndarray,
    source_rgb: np.ndarray | None = None,
    size: int = 256,
    seed: int = 0,
    config=None,
    variants: int = 5,
) -> np.ndarray:
    """A labelled grid `(H, W, 3)` uint8 showing the guidance and masks of the largest face
    in `target_rgb` `(h, w, 3)`, and the swap geometry and mask when `source_rgb` is given.

    Args:
        target_rgb: the target image, RGB uint8.
        source_rgb: the source image (whose face shape is swapped in), or None.
        size: crop side R.
        seed: seed of the random training variants.
        config: `selfswap.samae.SamaeConfig` (default settings if None).
        variants: number of random training variants shown (row 2).

    Raises:
        NoFaceError: no face in the target (or source).
    """
    from selfswap.face.align import alignment_matrix, transform_points, warp_to_crop
    from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
    from selfswap.geometry.mesh import face_geometry, landmarks68, swap_geometry
    from selfswap.geometry.render import Renderer
    from selfswap.geometry.texture import render_source_texture
    from selfswap.samae.masks import MaskBuilder, shape_agnostic_mask

    shown = max(size, 256)  # tiles are shown at least 256 px wide, labels fit
    analyzer = FaceAnalyzer(AnalyzerConfig(embedding="none"))
    target = _largest_face(target_rgb, analyzer, "target")
    matrix = alignment_matrix(target.landmarks68, size)
    crop = warp_to_crop(target_rgb, matrix, size)
    geometry = face_geometry([target], matrix[None])
    with Renderer(size) as renderer:
        builder = MaskBuilder(renderer, config)
        out = renderer.render_geometry(geometry)
        normals = _normals_rgb(out.normals[0], out.silhouette[0])
        overlay = _overlay(crop, normals, out.silhouette[0])
        for x, y in transform_points(target.landmarks68, matrix):
            cv2.circle(overlay, (round(x), round(y)), 1, _YELLOW, -1, cv2.LINE_AA)
        for x, y in landmarks68(geometry.vertices(renderer.mesh), renderer.mesh)[0]:
            cv2.circle(overlay, (round(x), round(y)), 1, _GREEN, -1, cv2.LINE_AA)
        train = builder.training(
            face_geometry([target] * variants, np.repeat(matrix[None], variants, 0)), seed
        )
        region = train.face_region[0]
        dimmed = (crop * 0.45).astype(np.uint8)
        region_view = np.where(region[0, :, :, None] > 0, crop, dimmed)
        agnostic = shape_agnostic_mask(region, builder.config.mask)
        row1 = [
            _tile(crop, "aligned crop", shown),
            _tile(overlay, "mesh overlay (green 3DMM, yellow dlib)", shown),
            _tile(normals, "normal map", shown),
            _tile(_outline(region_view, region, _RED), "face region", shown),
            _tile(_outline(_masked(crop, agnostic), region, _RED), "shape-agnostic mask", shown),
        ]
        row2 = []
        for i in range(variants):
            view = _masked(crop, train.mask[i])
            view = _outline(view, train.face_region[i], _RED)
            view = _outline(view, train.mask_region[i], _CYAN)
            if train.perforations[i].any():
                view = _outline(view, train.perforations[i], _YELLOW)
            w, h, jw, jh = train.scaling[i]
            holes = cv2.connectedComponents((train.perforations[i, 0] > 0).astype(np.uint8))[0]
            label = f"train w{w:.2f} h{h:.2f} jw{jw:.2f} jh{jh:.2f} p{holes - 1}"
            row2.append(_tile(view, label, shown))
        rows = [row1, row2]
        if source_rgb is not None:
            source = _largest_face(source_rgb, analyzer, "source")
            source_matrix = alignment_matrix(source.landmarks68, size)
            source_crop = warp_to_crop(source_rgb, source_matrix, size)
            source_geometry = face_geometry([source], source_matrix[None])
            source_out = renderer.render_geometry(source_geometry)
            source_overlay = _overlay(
                source_crop,
                _normals_rgb(source_out.normals[0], source_out.silhouette[0]),
                source_out.silhouette[0],
            )
            swap = builder.swap(geometry, source.shape)
            swap_normals = _normals_rgb(swap.normals[0], swap.silhouette[0])
            outlines = _outline(crop, swap.target_region[0], _RED)
            outlines = _outline(outlines, swap.source_region[0], _CYAN)
            swap_view = _outline(_masked(crop, swap.mask[0]), swap.target_region[0], _RED)
            swap_view = _outline(swap_view, swap.source_region[0], _CYAN)
            texture, visibility = render_source_texture(
                renderer,
                source_rgb,
                face_geometry([source]),
                swap_geometry(source.shape[None], geometry.expression, geometry.camera),
            )
            seen = visibility[0].transpose(1, 2, 0)
            textured = crop * (1 - seen) + texture[0].transpose(1, 2, 0) * 255 * seen
            seen_view = np.repeat(seen * 255, 3, axis=2).astype(np.uint8)
            seen_view = _outline(seen_view, swap.silhouette[0], _CYAN)
            rows.append(
                [
                    _tile(source_overlay, "source crop + its mesh", shown),
                    _tile(
                        _overlay(crop, swap_normals, swap.silhouette[0]),
                        "source shape, target pose",
                        shown,
                    ),
                    _tile(outlines, "red target / cyan source mesh", shown),
                    _tile(swap_normals, "swap normal map", shown),
                    _tile(swap_view, "swap mask", shown),
                    _tile(textured.astype(np.uint8), "source texture on swap mesh", shown),
                    _tile(seen_view, "source visibility (cyan: swap mesh)", shown),
                ]
            )
    width = max(len(r) for r in rows)
    lines = [np.concatenate(r + [_blank(shown)] * (width - len(r)), axis=1) for r in rows]
    return np.concatenate(lines, axis=0)


def _load(path: str | Path, what: str) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageError(f"cannot read the {what} image {path}: {exc}") from exc


def run_guidance(
    target_path: str | Path,
    source_path: str | Path | None,
    out_path: str | Path,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Load the images, build `guidance_grid` and write it as a PNG (atomically: a temporary
    file in the same folder, then `os.replace`). Returns the output path."""
    from PIL import Image

    target = _load(target_path, "target")
    source = None if source_path is None else _load(source_path, "source")
    grid = guidance_grid(target, source, size=size, seed=seed)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(grid).save(f, format="PNG")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
