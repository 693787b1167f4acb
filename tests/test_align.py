"""Alignment to the canonical crop and back."""

from __future__ import annotations

import numpy as np
import pytest

from selfswap.face import align


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    m = align.similarity_transform(src, dst)
    assert np.allclose(m[:, :2], rot, atol=1e-9)
    assert np.allclose(m[:, 2], shift, atol=1e-9)
    assert align.matrix_scale(m) == pytest.approx(scale)


def test_inverse_roundtrip():
    m = align.similarity_transform(np.eye(3, 2) * 10, np.eye(3, 2) * 25 + 3)
    points = np.array([[1.0, 2.0], [50.0, -7.0]])
    back = align.transform_points(align.transform_points(points, m), align.invert(m))
    assert np.allclose(back, points)


@pytest.mark.parametrize("size", [128, 256, 512])
def test_crop_puts_face_on_template(analyzer_no_id, astronaut, size):
    face = analyzer_no_id.analyze(astronaut)[0]
    m = align.alignment_matrix(face.landmarks68, size)
    crop = align.warp_to_crop(astronaut, m, size)
    assert crop.shape == (size, size, 3)
    ref = align.transform_points(align.reference_points(face.landmarks68), m)
    # A similarity cannot fit five points exactly; residuals stay within a few % of R.
    assert np.abs(ref - align.TEMPLATE * size).max() < 0.04 * size
    # The whole 68-landmark face, chin included, fits inside the crop with margin.
    pts = align.transform_points(face.landmarks68, m)
    assert pts.min() > 0.1 * size and pts.max() < 0.92 * size


def test_paste_back_restores_pixels(analyzer_no_id, astronaut):
    face = analyzer_no_id.analyze(astronaut)[0]
    m = align.alignment_matrix(face.landmarks68, 256)
    crop = align.warp_to_crop(astronaut, m, 256)
    back = align.warp_from_crop(crop, m, astronaut.shape[1], astronaut.shape[0])
    x0, y0, x1, y1 = face.box.astype(int)
    diff = np.abs(back[y0:y1, x0:x1].astype(int) - astronaut[y0:y1, x0:x1]).mean()
    assert diff < 6  # two bilinear resamplings


def test_camera_to_crop_matches_point_transform(analyzer_no_id, astronaut):
    face = analyzer_no_id.analyze(astronaut)[0]
    m = align.alignment_matrix(face.landmarks68, 128)
    verts_img = face.vertices()[::500]
    from selfswap.face.bfm import load_bfm
    from selfswap.face.tddfa import project

    model = load_bfm().vertices(face.shape, face.expression)[::500]
    verts_crop = project(align.camera_to_crop(face.camera, m), model)
    assert np.allclose(verts_crop[:, :2], align.transform_points(verts_img[:, :2], m), atol=1e-2)
    assert np.allclose(verts_crop[:, 2], verts_img[:, 2] * align.matrix_scale(m), atol=1e-2)
