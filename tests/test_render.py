"""Mesh composition and the z-buffer renderer, on real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from selfswap.face.align import alignment_matrix, transform_points
from selfswap.face.bfm import load_bfm
from selfswap.geometry.mesh import (
    Geometry,
    NormalEstimator,
    compose,
    crop_cameras,
    face_geometry,
    landmarks68,
    mesh_vertices,
    pose,
    swap_geometry,
)
from selfswap.geometry.render import Renderer, RendererError, _create_context

R = 256


@pytest.fixture(scope="module")
def face(astronaut, analyzer_no_id):
    faces = analyzer_no_id.analyze(astronaut)
    assert faces, "the astronaut must have a face"
    return max(faces, key=lambda f: f.width)


@pytest.fixture(scope="module")
def renderer():
    with Renderer(R) as r:
        yield r


@pytest.fixture(scope="module")
def crop(face):
    """Alignment matrix and crop geometry of the astronaut at R."""
    matrix = alignment_matrix(face.landmarks68, R)
    return matrix, face_geometry([face], matrix[None])


def hull_mask(points: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(out, hull, 1)
    return out.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_compose_matches_bfm_and_pose_matches_alignment(face):
    bfm = load_bfm()
    model = compose(face.shape, face.expression)
    np.testing.assert_allclose(
        model, bfm.vertices(face.shape, face.expression), rtol=1e-4, atol=1.0
    )
    matrix = alignment_matrix(face.landmarks68, R)
    in_image = mesh_vertices(face.shape, face.expression, face.camera)
    in_crop = pose(model, crop_cameras(face.camera, matrix))
    np.testing.assert_allclose(in_crop[:, :2], transform_points(in_image[:, :2], matrix), atol=1e-2)
    assert (np.sign(in_crop[:, 2] - in_crop[:, 2].mean()) == np.sign(
        in_image[:, 2] - in_image[:, 2].mean()
    )).mean() > 0.999  # fmt: skip


def test_swap_geometry_takes_source_shape_target_expression_and_pose(face):
    source = np.full(40, 1e5, np.float32)
    swap = swap_geometry(source, face.expression, face.camera)
    assert isinstance(swap, Geometry) and len(swap) == 1
    np.testing.assert_array_equal(swap.shape[0], source)
    np.testing.assert_array_equal(swap.expression[0], face.expression)
    np.testing.assert_array_equal(swap.camera[0], face.camera)


def test_silhouette_covers_the_landmark_hull(face, renderer, crop):
    matrix, geometry = crop
    out = renderer.render_geometry(geometry)
    silhouette = out.silhouette[0, 0] > 0.5
    hull = hull_mask(transform_points(face.landmarks68, matrix), R)
    inside = silhouette[hull].mean()
    ratio = silhouette.sum() / hull.sum()
    assert inside >= 0.95, f"only {inside:.1%} of the landmark hull is inside the mesh"
    assert 1.0 <= ratio <= 1.6, f"silhouette area is {ratio:.2f}x the hull's"
    # the forehead: the mesh reaches above the eyebrows
    brow_top = transform_points(face.landmarks68[17:27], matrix)[:, 1].min()
    assert np.flatnonzero(silhouette.any(axis=1))[0] < brow_top - 0.03 * R


def test_normals_unit_inside_zero_outside_and_facing_the_viewer(face, renderer, crop):
    matrix, geometry = crop
    out = renderer.render_geometry(geometry)
    inside = out.silhouette[0, 0] > 0.5
    n = out.normals[0]
    length = np.linalg.norm(n, axis=0)
    assert np.abs(length[inside] - 1).max() < 1e-3
    assert np.abs(n[:, ~inside]).max() == 0
    assert n[2][inside].mean() > 0.6  # towards the viewer
    points = transform_points(face.landmarks68, matrix)
    # x right, y up: the image-left cheek faces left, the forehead up, under the chin down
    left_cheek = np.round(points[1] + [0.04 * R, 0]).astype(int)
    right_cheek = np.round(points[15] - [0.04 * R, 0]).astype(int)
    assert n[0, left_cheek[1], left_cheek[0]] < -0.2
    assert n[0, right_cheek[1], right_cheek[0]] > 0.2
    forehead = np.round(points[19:25].mean(0) - [0, 0.08 * R]).astype(int)
    assert n[1, forehead[1], forehead[0]] > 0.1
    chin = np.round(points[8] - [0, 0.02 * R]).astype(int)
    assert n[1, chin[1], chin[0]] < -0.1


def test_depth_is_nearest_at_the_nose(face, renderer, crop):
    matrix, geometry = crop
    out = renderer.render_geometry(geometry, depth=True)
    inside = out.silhouette[0, 0] > 0.5
    depth = out.depth[0, 0]
    assert np.abs(depth[~inside]).max() == 0
    nose = np.round(transform_points(face.landmarks68[30:31], matrix)[0]).astype(int)
    nose_depth = depth[nose[1] - 1 : nose[1] + 2, nose[0] - 1 : nose[0] + 2].max()
    assert nose_depth >= np.quantile(depth[inside], 0.97)


def test_batches_equal_single_renders_and_tiles_do_not_bleed(renderer, crop):
    _, geometry = crop
    v = geometry.vertices(renderer.mesh)
    shifted = v.copy()
    shifted[..., 0] += 0.6 * R  # half out of its tile, to the right
    batch = np.concatenate([shifted, v, v * [1.1, 1.0, 1.0]])
    out = renderer.render(batch, depth=True)
    for i in range(3):
        alone = renderer.render(batch[i : i + 1], depth=True)
        np.testing.assert_array_equal(out.silhouette[i], alone.silhouette[0])
        np.testing.assert_allclose(out.normals[i], alone.normals[0], atol=1e-3)
    # the shifted face is cut at its tile's edge and its neighbour is untouched
    assert out.silhouette[0, 0, :, -1].any()
    np.testing.assert_array_equal(out.silhouette[1], renderer.render(v).silhouette[0])


def test_level_of_detail_matches_the_full_mesh(crop):
    _, geometry = crop
    with Renderer(128, detail="full") as full, Renderer(128) as lod:
        assert lod.mesh.n_vertices < full.mesh.n_vertices / 4
        matrix_scale = 128 / R
        g = Geometry(geometry.shape, geometry.expression, geometry.camera * matrix_scale)
        a, b = full.render_geometry(g), lod.render_geometry(g)
        assert iou(a.silhouette, b.silhouette) > 0.98
        both = (a.silhouette[0, 0] > 0) & (b.silhouette[0, 0] > 0)
        cosine = (a.normals[0] * b.normals[0]).sum(0)[both]
        assert np.median(cosine) > 0.995
        # full-mesh vertices are accepted too (the kept ones are picked)
        full_vertices = g.vertices(full.mesh)
        np.testing.assert_array_equal(lod.silhouette(full_vertices), b.silhouette)


def test_changing_only_shape_changes_the_silhouette(face, renderer, crop):
    _, geometry = crop
    wider = geometry.shape.copy()
    wider[:, 0] += 2 * 5.8e5  # first shape component, about 2 std
    changed = Geometry(wider, geometry.expression, geometry.camera)
    a = renderer.silhouette(geometry.vertices(renderer.mesh))
    b = renderer.silhouette(changed.vertices(renderer.mesh))
    assert iou(a, b) < 0.97


def test_changing_only_expression_moves_the_mouth_not_the_forehead(face, renderer, crop):
    matrix, geometry = crop
    opened = geometry.expression.copy()
    opened[:, 0] -= 3.2  # first expression component, negative = jaw opens (~2 std)
    changed = Geometry(geometry.shape, opened, geometry.camera)
    a = renderer.render_geometry(geometry)
    b = renderer.render_geometry(changed)
    diff = (np.abs(a.normals[0] - b.normals[0]).sum(0) > 0.05) | (
        a.silhouette[0, 0] != b.silhouette[0, 0]
    )
    points = transform_points(face.landmarks68, matrix)
    x0, y0 = points[48:68].min(0) - 0.02 * R
    x1, y1 = points[48:68].max(0) + 0.02 * R
    mouth = diff[int(y0) : int(y1), int(x0) : int(x1)]
    brow_y = points[17:27, 1].min()
    forehead = diff[: int(brow_y - 0.03 * R), int(points[17, 0]) : int(points[26, 0])]
    assert mouth.mean() > 0.2, "opening the jaw must change the mouth region"
    assert forehead.mean() < 0.01, "opening the jaw must leave the forehead alone"
    # the mouth opens downwards: the lower lip landmark moves down in the crop
    lips = landmarks68(np.concatenate([geometry.vertices(), changed.vertices()]))
    assert lips[1, 57, 1] > lips[0, 57, 1] + 2


def test_torch_output_and_normal_estimator(renderer, crop):
    import torch

    _, geometry = crop
    out = renderer.render_geometry(geometry, depth=True, as_tensor=True)
    assert isinstance(out.normals, torch.Tensor) and out.normals.dtype == torch.float32
    assert out.normals.shape == (1, 3, R, R) and out.silhouette.shape == (1, 1, R, R)
    assert out.depth.shape == (1, 1, R, R)
    # a flat square facing +z: every normal is ±z
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    normals = NormalEstimator(np.array([[0, 1, 2], [0, 2, 3]]), 4)(square)
    np.testing.assert_allclose(np.abs(normals), [[0, 0, 1]] * 4, atol=1e-6)


def test_missing_egl_device_gives_a_clear_error():
    with pytest.raises(RendererError, match="libegl1"):
        _create_context(device_index=9999)


@pytest.mark.lfw
def test_lfw_silhouettes_cover_the_landmark_hull(shared_data, analyzer_no_id):
    from PIL import Image

    names = (shared_data / "splits" / "lfw_eval.txt").read_text().split()[:6]
    paths = [p for n in names for p in sorted((shared_data / "lfw").glob(f"*/{n}*"))[:1]]
    if not paths:
        paths = sorted((shared_data / "lfw").glob("*/*.jpg"))[:6]
    covered = []
    with Renderer(128) as r:
        for path in paths:
            image = np.asarray(Image.open(path).convert("RGB"))
            faces = analyzer_no_id.analyze(image)
            if not faces:
                continue
            f = max(faces, key=lambda x: x.width)
            matrix = alignment_matrix(f.landmarks68, 128)
            sil = r.render_geometry(face_geometry([f], matrix[None])).silhouette[0, 0] > 0
            hull = hull_mask(transform_points(f.landmarks68, matrix), 128)
            covered.append(sil[hull].mean())
    assert len(covered) >= 3
    assert np.median(covered) >= 0.9


def _render_in_child(renderer, vertices, queue):
    try:
        renderer.silhouette(vertices)
        queue.put("rendered")
    except RendererError as exc:
        queue.put(str(exc))


def test_forked_child_of_a_gl_process_gets_an_error_not_a_hang(renderer, crop):
    import multiprocessing

    _, geometry = crop
    vertices = geometry.vertices(renderer.mesh)
    renderer.silhouette(vertices)  # this process has used OpenGL
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_render_in_child, args=(Renderer(R), vertices, queue))
    child.start()
    try:
        message = queue.get(timeout=60)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert "spawn" in message


def test_vertex_attributes_are_interpolated_and_leave_other_outputs_alone(renderer, crop):
    _, geometry = crop
    v = geometry.vertices(renderer.mesh)
    batch = np.concatenate([v, v * [0.9, 0.9, 0.9]])
    plain = renderer.render(batch, depth=True)
    # each vertex carries its own crop position: the interpolated value is the pixel centre
    out = renderer.render(batch, depth=True, attributes=batch[..., :2])
    assert out.attributes.shape == (2, 2, R, R) and out.attributes.dtype == np.float32
    for name in ("silhouette", "normals", "depth"):
        np.testing.assert_array_equal(getattr(out, name), getattr(plain, name))
    inside = out.silhouette[:, 0] > 0.5
    rows, cols = np.mgrid[:R, :R]
    assert np.abs(out.attributes[:, 0] - cols)[inside].max() < 1e-2
    assert np.abs(out.attributes[:, 1] - rows)[inside].max() < 1e-2
    assert np.abs(out.attributes[:, :, ~inside[0]][0]).max() == 0
    # one to four channels, without normals or depth, and full-BFM vertices are picked
    for c in (1, 3, 4):
        values = np.concatenate([batch, batch[..., :1] - batch[..., 1:2]], -1)[..., :c] / R
        alone = renderer.render(batch[1:], normals=False, attributes=values[1:])
        both = renderer.render(batch, normals=False, attributes=values)
        assert both.attributes.shape == (2, c, R, R)
        np.testing.assert_allclose(both.attributes[1:], alone.attributes, atol=1e-4)
    full = geometry.vertices()
    picked = renderer.render(full, normals=False, attributes=full[..., 2:])
    np.testing.assert_allclose(
        picked.attributes[0, 0], renderer.render(v, depth=True).depth[0, 0], atol=1e-3
    )
    with pytest.raises(ValueError, match="attributes"):
        renderer.render(v, attributes=np.zeros((1, v.shape[1], 17), np.float32))


def test_many_attributes_in_one_render_equal_four_at_a_time(renderer, crop):
    _, geometry = crop
    v = geometry.vertices(renderer.mesh)
    batch = np.concatenate([v, v * [0.9, 0.9, 0.9]])
    rng = np.random.default_rng(0)
    for channels in (5, 14, 16):
        values = rng.random((2, v.shape[1], channels), dtype=np.float32)
        one = renderer.render(batch, depth=True, attributes=values)
        assert one.attributes.shape == (2, channels, R, R)
        for start in range(0, channels, 4):
            part = renderer.render(batch, depth=True, attributes=values[..., start : start + 4])
            np.testing.assert_array_equal(one.attributes[:, start : start + 4], part.attributes)
            np.testing.assert_array_equal(one.depth, part.depth)
