"""The source texture on the swap geometry (`selfswap.geometry.texture`), on real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import yawed
from selfswap.eval.metrics import laplacian_variance
from selfswap.face.align import alignment_matrix, transform_points, warp_to_crop
from selfswap.geometry.mesh import Geometry, face_geometry, swap_geometry
from selfswap.geometry.render import Renderer
from selfswap.geometry.texture import render_source_texture, source_texture_for_faces

R = 128


def _largest(analyzer, image):
    faces = analyzer.analyze(image)
    assert faces
    return max(faces, key=lambda f: f.width)


@pytest.fixture(scope="module")
def collins(astronaut, analyzer_no_id):
    """Astronaut photo, face, crop matrix, crop and crop geometry."""
    face = _largest(analyzer_no_id, astronaut)
    matrix = alignment_matrix(face.landmarks68, R)
    return (
        astronaut,
        face,
        matrix,
        warp_to_crop(astronaut, matrix, R),
        face_geometry([face], matrix[None]),
    )


@pytest.fixture(scope="module")
def hopper(grace_hopper, analyzer_no_id):
    face = _largest(analyzer_no_id, grace_hopper)
    matrix = alignment_matrix(face.landmarks68, R)
    return (
        grace_hopper,
        face,
        matrix,
        warp_to_crop(grace_hopper, matrix, R),
        face_geometry([face], matrix[None]),
    )


@pytest.fixture(scope="module")
def renderer():
    with Renderer(R) as r:
        yield r


def inner_face(face, matrix) -> np.ndarray:
    """The convex hull of the brows, eyes, nose and mouth landmarks in the crop, (R, R)."""
    points = transform_points(face.landmarks68[17:], matrix)
    out = np.zeros((R, R), np.uint8)
    cv2.fillConvexPoly(out, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return out.astype(bool)


def test_round_trip_reproduces_the_source_crop(collins, renderer):
    photo, face, matrix, crop, geometry = collins
    silhouette = renderer.render_geometry(geometry, normals=False).silhouette[0, 0] > 0
    inner = inner_face(face, matrix)
    # from the aligned crop and from the whole photo (geometry posed in the photo)
    for image, source in ((crop, geometry), (photo, face_geometry([face]))):
        texture, visibility = render_source_texture(renderer, image, source, geometry)
        vis = visibility[0, 0]
        seen = vis > 0.5
        error = np.abs(texture[0].transpose(1, 2, 0) * 255 - crop)[seen].mean()
        assert error < 0.5, f"mean abs error {error:.2f} / 255 on the visible face"
        assert vis[~silhouette].max() == 0
        assert vis[silhouette].mean() > 0.9
        assert vis[inner].mean() > 0.95, "the frontal inner face must be seen"
        assert (vis[silhouette] > 0.9).mean() > 0.85


@pytest.mark.parametrize("degrees", [30, -30])
def test_yawed_view_loses_visibility_on_the_side_the_source_saw_edge_on(collins, renderer, degrees):
    photo, face, _, _, geometry = collins
    frontal = render_source_texture(renderer, photo, face_geometry([face]), geometry)[1][0, 0]
    turned = yawed(geometry, degrees)
    _, visibility = render_source_texture(renderer, photo, face_geometry([face]), turned)
    vis = visibility[0, 0]
    silhouette = renderer.render_geometry(turned, normals=False).silhouette[0, 0] > 0
    # A +yaw turns the image-left side of the face towards the new camera: that side's
    # surface was edge-on to the (frontal) source camera. Compare the outer thirds.
    columns = np.flatnonzero(silhouette.any(axis=0))
    x0, x1 = columns[0], columns[-1]
    third = (x1 - x0) / 3
    near = silhouette & (np.arange(R) < x0 + third)[None]
    far = silhouette & (np.arange(R) > x1 - third)[None]
    if degrees < 0:
        near, far = far, near
    assert vis[near].mean() < vis[far].mean() - 0.15, (vis[near].mean(), vis[far].mean())
    assert vis[far].mean() > 0.9
    assert vis[silhouette].mean() < frontal[frontal > 0].mean() - 0.03
    assert vis[~silhouette].max() == 0


def test_surface_hidden_by_the_nose_in_the_source_is_not_visible(collins, renderer):
    _, _, _, crop, geometry = collins
    # a synthetic source seen at 45° yaw: the textured astronaut rendered in that view
    turned = yawed(geometry, 45)
    texture, _ = render_source_texture(renderer, crop, geometry, turned)
    source = (texture[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
    _, seen = render_source_texture(renderer, source, turned, geometry)
    _, occlusion_only = render_source_texture(
        renderer, source, turned, geometry, grazing=(-2.0, -1.0)
    )
    # behind the nose in the turned view: the crop's pixels just right of the nose tip
    nose = np.round(geometry.vertices(renderer.mesh)[0, renderer.mesh.keypoints68[30]]).astype(int)
    x, y = nose[0], nose[1]
    hidden = occlusion_only[0, 0, y - 6 : y + 1, x + 5 : x + 9]
    assert hidden.mean() < 0.2, hidden
    assert seen[0, 0, y - 6 : y + 1, x + 5 : x + 9].mean() < 0.2
    # while the near cheek is seen
    cheek = seen[0, 0, y - 4 : y + 4, x - 24 : x - 14]
    assert cheek.mean() > 0.8


def test_hopper_texture_on_the_astronaut_pose(collins, hopper, renderer):
    _, collins_face, collins_matrix, collins_crop, collins_geometry = collins
    hopper_photo, hopper_face, _, hopper_crop, hopper_geometry = hopper
    swap = swap_geometry(hopper_face.shape[None], collins_geometry.expression,
                         collins_geometry.camera)  # fmt: skip
    texture, visibility = render_source_texture(
        renderer, hopper_photo, face_geometry([hopper_face]), swap
    )
    vis = visibility[0, 0]
    silhouette = renderer.render_geometry(swap, normals=False).silhouette[0, 0] > 0
    assert vis[~silhouette].max() == 0, "visibility must stay inside the swap silhouette"
    assert np.abs(texture[0][:, ~silhouette]).max() == 0
    assert vis[silhouette].mean() > 0.85
    # the colours are Hopper's: compare mean inner-face colours (RGB, 0..255)
    seen = (vis > 0.5) & inner_face(collins_face, collins_matrix)
    colour = texture[0][:, seen].mean(axis=1) * 255
    hopper_inner = inner_face(hopper_face, alignment_matrix(hopper_face.landmarks68, R))
    hopper_colour = hopper_crop[hopper_inner].mean(axis=0)
    collins_colour = collins_crop[inner_face(collins_face, collins_matrix)].mean(axis=0)
    to_hopper = np.linalg.norm(colour - hopper_colour)
    to_collins = np.linalg.norm(colour - collins_colour)
    assert to_hopper < 0.5 * to_collins, (colour, hopper_colour, collins_colour)
    # and the same through the Face-level helper
    helper = source_texture_for_faces(
        renderer, [hopper_photo], [hopper_face], [collins_face], collins_matrix[None]
    )
    np.testing.assert_allclose(helper[0], texture, atol=1e-5)
    np.testing.assert_allclose(helper[1], visibility, atol=1e-5)


def test_views_painted_in_one_render_equal_each_painted_alone(collins, hopper, renderer):
    from selfswap.geometry.regions import part_attributes, region_weights, rendered_weights
    from selfswap.geometry.texture import paint, source_view

    collins_photo, collins_face, _, _, collins_geometry = collins
    hopper_photo, hopper_face, _, _, _ = hopper
    swap = swap_geometry(hopper_face.shape[None], collins_geometry.expression,
                         collins_geometry.camera)  # fmt: skip
    hopper_view = source_view(renderer, [hopper_photo], face_geometry([hopper_face]))
    collins_view = source_view(renderer, [collins_photo], face_geometry([collins_face]))
    parts = ("mouth", "eyes")
    painted, out = paint(
        renderer, [hopper_view, collins_view], swap, [1.0, 0.0],
        part_attributes(renderer.mesh, parts),
    )  # fmt: skip
    alone = [
        render_source_texture(renderer, hopper_photo, face_geometry([hopper_face]), swap,
                              mirror=1.0),
        render_source_texture(renderer, collins_photo, face_geometry([collins_face]), swap),
    ]  # fmt: skip
    for (texture, visibility), (expected, seen) in zip(painted, alone):
        np.testing.assert_array_equal(texture, expected)
        np.testing.assert_array_equal(visibility, seen)
    on_face = out.silhouette[0, 0] > 0.5
    assert painted[0][1][0, 0][on_face].mean() > 0.8 and painted[1][1][0, 0][on_face].mean() > 0.8
    np.testing.assert_array_equal(
        rendered_weights(out, parts), region_weights(renderer, swap, parts)
    )
    # a view of one photo serves a batch
    two = swap_geometry(np.repeat(hopper_face.shape[None], 2, 0),
                        np.repeat(collins_geometry.expression, 2, 0),
                        np.repeat(collins_geometry.camera, 2, 0))  # fmt: skip
    [(texture, visibility)], _ = paint(renderer, [hopper_view.repeat(2)], two)
    plain = render_source_texture(renderer, hopper_photo, face_geometry([hopper_face]), swap)
    for item in (0, 1):  # a batch's atlas render differs from one face's by rounding
        np.testing.assert_allclose(texture[item], plain[0][0], atol=1.01 / 255)
        np.testing.assert_allclose(visibility[item], plain[1][0], atol=1e-4)
    with pytest.raises(ValueError, match="batch sizes"):
        paint(renderer, [hopper_view], two)


def test_shapes_dtypes_and_batch_equals_per_item(collins, hopper, renderer):
    import torch

    collins_photo, collins_face, _, collins_crop, collins_geometry = collins
    hopper_photo, hopper_face, _, _, hopper_geometry = hopper
    swap = swap_geometry(hopper_face.shape, collins_geometry.expression, collins_geometry.camera)
    turned = yawed(collins_geometry, 25)
    items = [
        (collins_crop, collins_geometry, collins_geometry),
        (hopper_photo, face_geometry([hopper_face]), swap),
        (collins_photo, face_geometry([collins_face]), turned),
    ]

    def stack(geometries):
        return Geometry(*(np.concatenate([getattr(g, k) for g in geometries])
                          for k in ("shape", "expression", "camera")))  # fmt: skip

    images = [i[0] for i in items]  # different sizes: a list
    texture, visibility = render_source_texture(
        renderer, images, stack([i[1] for i in items]), stack([i[2] for i in items])
    )
    assert texture.shape == (3, 3, R, R) and texture.dtype == np.float32
    assert visibility.shape == (3, 1, R, R) and visibility.dtype == np.float32
    assert visibility.min() >= 0 and visibility.max() <= 1 and texture.max() <= 1
    for b, (image, source, target) in enumerate(items):
        t, v = render_source_texture(renderer, image, source, target)
        np.testing.assert_allclose(texture[b], t[0], atol=5e-3)  # uint8 rounding
        np.testing.assert_allclose(visibility[b], v[0], atol=2e-3)
        assert (np.abs(visibility[b] - v[0]) > 1e-3).mean() < 1e-3
    # float input keeps its range; a (B, C, H, W) tensor in, tensors out
    as_float = collins_crop.astype(np.float32) / 127.5 - 1
    t, v = render_source_texture(renderer, as_float[None], collins_geometry, collins_geometry)
    seen = v[0, 0] > 0.5
    np.testing.assert_allclose(t[0][:, seen], texture[0][:, seen] * 2 - 1, atol=1e-3)
    tensor = torch.from_numpy(as_float).permute(2, 0, 1)[None]
    tt, tv = render_source_texture(
        renderer, tensor, collins_geometry, collins_geometry, as_tensor=True
    )
    assert isinstance(tt, torch.Tensor) and tt.shape == (1, 3, R, R) and tv.dtype == torch.float32
    np.testing.assert_allclose(tt.numpy(), t, atol=1e-5)
    with pytest.raises(ValueError, match="images"):
        render_source_texture(renderer, images[:2], stack([i[1] for i in items]),
                              stack([i[2] for i in items]))  # fmt: skip
    with pytest.raises(ValueError, match="batch sizes"):
        render_source_texture(renderer, images[:1], collins_geometry, stack([swap, swap]))


def test_guidance_grid_shows_the_source_texture_and_its_visibility(astronaut, grace_hopper):
    from selfswap.geometry.guidance import _LABEL_H, guidance_grid

    grid = guidance_grid(astronaut, grace_hopper, size=128, variants=2)
    tile = 256 + _LABEL_H  # tiles are shown at least 256 px wide
    assert grid.shape == (3 * tile, 7 * 256, 3)
    row3 = grid[2 * tile + _LABEL_H :]
    target_tile = row3[:, 2 * 256 : 3 * 256].astype(np.float32)  # target crop + outlines
    textured = row3[:, 5 * 256 : 6 * 256].astype(np.float32)
    visibility = row3[:, 6 * 256 :].astype(np.float32)
    seen = visibility.min(axis=2) > 200  # white, not the cyan outline
    assert 0.15 < seen.mean() < 0.6
    # where the source saw the face, the tile shows Hopper's pixels, not the astronaut's
    assert np.abs(textured - target_tile).max(axis=2)[seen].mean() > 20
    assert np.abs(textured - target_tile).max(axis=2)[visibility.max(axis=2) == 0].mean() < 10


@pytest.mark.parametrize("flag", [cv2.INTER_LINEAR, cv2.INTER_CUBIC])
def test_render_resamples_the_photo_as_asked(hopper, flag):
    """At a crop about the photo's own scale (Grace Hopper at 384, 1.08 crop px per photo px)
    the render of the photo on its own fit is the photo warped into the crop with the same
    interpolation (0.03 grey levels apart where seen); bicubic keeps the photo's detail (the
    Laplacian variance of the bicubic warp), bilinear 0.72 of it."""
    photo, face = hopper[:2]
    side = 384
    matrix = alignment_matrix(face.landmarks68, side)
    with Renderer(side) as renderer:
        texture, visibility = render_source_texture(
            renderer, photo, face_geometry([face]), face_geometry([face], matrix[None]),
            interpolation=flag,
        )  # fmt: skip
    rendered = texture[0].transpose(1, 2, 0) * 255
    seen = visibility[0, 0] > 0.99
    warped = cv2.warpAffine(photo, matrix, (side, side), flags=flag).astype(np.float32)
    assert np.abs(rendered - warped)[seen].mean() < 0.1
    inner = (slice(side * 3 // 10, side * 7 // 10),) * 2
    sharp = cv2.warpAffine(photo, matrix, (side, side), flags=cv2.INTER_CUBIC)
    kept = laplacian_variance(rendered[inner]) / laplacian_variance(sharp[inner])
    if flag == cv2.INTER_CUBIC:
        assert kept > 0.95
    else:
        assert kept < 0.8


def test_mirror_image_of_each_vertex_is_its_counterpart_across_the_face(collins, renderer):
    from selfswap.geometry.texture import mirrored

    _, _, _, _, geometry = collins
    posed = geometry.vertices(renderer.mesh)  # (1, N, 3) in the frontal crop
    flipped = mirrored(posed, renderer.mesh)[0]
    keypoints = renderer.mesh.keypoints68
    # outer and inner eye corners, mouth corners, brow ends: left <-> right in the crop
    for a, b in ((36, 45), (39, 42), (48, 54), (17, 26), (31, 35)):
        for i, j in ((a, b), (b, a)):
            gap = np.linalg.norm(flipped[keypoints[i], :2] - posed[0, keypoints[j], :2])
            assert gap < 2.0, (i, j, gap)  # crop pixels; the face is ~64 px wide
    # the nose bridge stays on the middle line, and mirroring twice comes back
    assert np.linalg.norm(flipped[keypoints[27], :2] - posed[0, keypoints[27], :2]) < 1.5
    twice = mirrored(mirrored(posed, renderer.mesh), renderer.mesh)[0]
    assert np.median(np.linalg.norm(twice - posed[0], axis=1)) < 0.2


def test_mirror_fills_the_side_the_source_did_not_see(collins, renderer):
    _, _, _, crop, geometry = collins
    # a synthetic source seen at 45° yaw (the textured astronaut rendered in that view),
    # painted back onto the frontal crop: the side turned away is hidden
    turned = yawed(geometry, 45)
    texture, _ = render_source_texture(renderer, crop, geometry, turned)
    source = (texture[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
    plain = render_source_texture(renderer, source, turned, geometry)
    assert np.array_equal(
        render_source_texture(renderer, source, turned, geometry, mirror=0.0)[0], plain[0]
    )
    filled, seen = render_source_texture(renderer, source, turned, geometry, mirror=1.0)
    before, after = plain[1][0, 0], seen[0, 0]
    hidden = (before < 0.3) & (after > 0.8)
    assert hidden.sum() > 300, hidden.sum()  # a large part of one side of the face
    assert (after >= before - 1e-6).all() and after.max() <= 1.0
    # where the source saw the face the texture is unchanged
    kept = before > 0.999
    assert np.abs(filled[0][:, kept] - plain[0][0][:, kept]).max() < 1e-3  # (1 - 0.999) x 1
    # the hidden side gets the other side's pixels: they follow the true face there (its
    # brow, eye, cheek and shading; 0.69 measured), which no flat fill can
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    painted = filled[0][:, hidden].T @ luma
    truth = crop[hidden].astype(np.float32) @ luma
    assert np.corrcoef(painted, truth)[0, 1] > 0.5


@pytest.mark.parametrize("r, step", [(64, 1), (128, 2), (128, 4)])
def test_mirrored_paint_takes_the_light_of_the_side_it_fills(r, step):
    """The mirrored paint is lit differently (here 0.6-0.8x as bright, smoothly varying).
    Where both paints were seen the correction gives back the direct paint; past the last
    seen column it continues that light, much closer to the truth than the mirrored paint;
    the same when the light is read on a lattice of every `step`-th pixel."""
    from selfswap.geometry.texture import _match_shading

    rng = np.random.default_rng(0)
    albedo = cv2.GaussianBlur(rng.uniform(0.3, 0.9, (r, r, 3)).astype(np.float32), (0, 0), 2)
    albedo = albedo.transpose(2, 0, 1)[None]
    light = np.linspace(0.5, 1.0, r, dtype=np.float32)[None, None, None, :]
    other = np.linspace(0.6, 0.8, r, dtype=np.float32)[None, None, None, :]
    truth, flipped = albedo * light, albedo * light * other
    visibility = np.zeros((1, r, r), np.float32)
    visibility[..., : r // 2] = 1.0  # the direct paint saw the left half only
    seen = np.ones((1, r, r), np.float32)
    out = _match_shading(truth * (visibility[:, None] > 0), visibility, flipped, seen, step)
    rows = slice(4, r - 4)
    for cols in (slice(4, r // 2 - 4), slice(r // 2, r // 2 + 8)):  # seen; just past it
        box = (slice(None), slice(None), rows, cols)
        before = np.abs(flipped[box] - truth[box]).mean()
        assert np.abs(out[box] - truth[box]).mean() < 0.15 * before, cols
    assert out.min() >= 0 and out.max() <= truth.max() + 1e-6


def test_mirror_at_a_large_side_matches_the_shading_read_on_every_pixel(collins, monkeypatch):
    """At the size a large face is shown (400 px: over 2^15 face pixels, which OpenCV's maps
    cannot hold in one row) the mirrored paint's shading, read on a lattice, is the one read
    on every pixel to within a grey level on average, and the direct paint is untouched."""
    from selfswap.geometry import texture as module

    photo, face = collins[:2]
    side = 400
    matrix = alignment_matrix(face.landmarks68, side)
    source = face_geometry([face])
    turned = yawed(face_geometry([face], matrix[None]), 35)
    with Renderer(side) as renderer:
        plain, before = render_source_texture(renderer, photo, source, turned)
        fast, after = render_source_texture(renderer, photo, source, turned, mirror=1.0)
        monkeypatch.setattr(module, "_SMOOTH_GRID", 10_000)
        exact, _ = render_source_texture(renderer, photo, source, turned, mirror=1.0)
    assert (before[0, 0] > 0).sum() > 2**15
    filled = (after[0, 0] - before[0, 0]) > 0.5
    assert filled.sum() > 400, filled.sum()
    assert np.abs(fast - exact)[0][:, filled].mean() < 1.0 / 255
    kept = before[0, 0] > 0.999
    assert np.abs(fast - plain)[0][:, kept].max() < 1e-3
