"""The finish of a swap at the size it is shown: the source's detail (`swap/detail.py`) and
the colour match at the paste border (`swap/seam.py`), on real faces."""

import cv2
import numpy as np
import pytest

from selfswap.eval.metrics import laplacian_variance
from selfswap.face import align
from selfswap.swap import detail, seam


def _face_crop(image: np.ndarray, face, side: int) -> np.ndarray:
    matrix = align.alignment_matrix(face.landmarks68, side)
    return align.warp_to_crop(image, matrix, side)


@pytest.fixture(scope="module")
def sharp_and_soft(astronaut, analyzer):
    """The astronaut's face at 256 px and the same face through a 128-px crop, upsampled."""
    face = analyzer.analyze(astronaut)[0]
    sharp = _face_crop(astronaut, face, 256).astype(np.float32)
    soft = detail.upsample(cv2.resize(sharp, (128, 128), interpolation=cv2.INTER_AREA), 256)
    return sharp, soft


def test_large_sides_paint_with_the_20k_mesh_not_the_full_bfm():
    """Above 320 px the renderer's own choice is the full 76k-triangle BFM; the detail paints
    with 20k triangles there (the same quality, measured), and as before below."""
    from selfswap.geometry.render import Renderer

    assert [detail.mesh_detail(s) for s in (128, 160, 288, 320)] == ["auto"] * 4
    assert {detail.mesh_detail(s) for s in (352, 416, 512)} == {detail.MESH_TRIANGLES}
    full = Renderer(512, detail="full").n_vertices  # no GL context until it draws
    at_512, at_256 = Renderer(512, detail=detail.mesh_detail(512)), Renderer(256)
    assert at_512.n_vertices == at_256.n_vertices < full / 3


def test_output_side_follows_the_face_size():
    matrix = np.array([[0.5, 0.0, 3.0], [0.0, 0.5, 7.0]])  # frame → crop: the face is 2x
    assert detail.output_side(matrix, 128) == 256
    assert detail.output_side(matrix * 2, 128) == 128  # the crop's own scale
    assert detail.output_side(matrix / 10, 128) == detail.MAX_SIDE
    side = detail.output_side(matrix / 1.4, 128)
    assert side % detail.SIDE_STEP == 0 and 320 <= side <= 384


def test_scaled_matrix_keeps_pixel_centres():
    matrix = np.array([[0.4, 0.1, 5.0], [-0.1, 0.4, 9.0]])
    points = np.array([[10.0, 20.0], [300.0, 120.0]])
    low = align.transform_points(points, matrix)
    high = align.transform_points(points, detail.scaled_matrix(matrix, 128, 384))
    np.testing.assert_allclose(high, (low + 0.5) * 3 - 0.5, atol=1e-9)


def test_detail_restores_what_the_small_crop_lost(sharp_and_soft):
    sharp, soft = sharp_and_soft
    seen = np.ones(sharp.shape[:2], np.float32)
    out = detail.add_detail(soft, sharp / 255.0, seen, 128)
    # as sharp as the real face (its detail replaces the soft face's, it is not added twice:
    # measured 0.92 of the real face's Laplacian variance, the soft face 0.47) and near it
    assert 0.8 < laplacian_variance(out) / laplacian_variance(sharp) < 1.2
    assert laplacian_variance(soft) / laplacian_variance(sharp) < 0.6
    assert np.abs(out - sharp).mean() < 0.5 * np.abs(soft - sharp).mean()
    # the colour and light stay the soft face's: its low frequencies are unchanged
    blur = lambda a: cv2.GaussianBlur(a, (0, 0), 8)  # noqa: E731
    assert np.abs(blur(out) - blur(soft)).mean() < 0.5


def test_no_detail_where_unseen_or_off(sharp_and_soft):
    sharp, soft = sharp_and_soft
    seen = np.ones(sharp.shape[:2], np.float32)
    kept = np.clip(soft, 0, 255)  # bicubic upsampling overshoots a little
    np.testing.assert_array_equal(detail.add_detail(soft, sharp / 255, seen, 128, strength=0), kept)
    np.testing.assert_array_equal(detail.add_detail(soft, sharp / 255, 0 * seen, 128), kept)


def test_membrane_is_exact_for_a_linear_border():
    ys, xs = np.mgrid[0:40, 0:50].astype(np.float64)
    plane = np.stack([0.5 * xs - 0.25 * ys + 3.0, -xs + 2.0 * ys], -1)
    inside = np.zeros((40, 50), bool)
    inside[5:33, 8:44] = True
    border = np.where(inside[..., None], 0.0, plane)
    np.testing.assert_allclose(seam.membrane(border, inside), plane, atol=1e-3)


def test_match_border_removes_a_colour_cast(astronaut, analyzer):
    face = analyzer.analyze(astronaut)[0]
    reference = _face_crop(astronaut, face, 128)
    mask = np.zeros((128, 128), np.float32)
    cv2.circle(mask, (64, 70), 42, 1.0, -1)
    cast = np.clip(reference.astype(np.int16) + np.array([30, -12, 18]), 0, 255).astype(np.uint8)
    fixed = seam.match_border(cast, reference, mask)
    inner = mask > 0
    before = np.abs(cast.astype(float) - reference)[inner].mean()
    after = np.abs(fixed.astype(float) - reference)[inner].mean()
    assert before > 15 and after < 3
    assert seam.match_border(cast, reference, mask, strength=0) is cast
    # factorised from the mask alone beforehand (as a swap does while its generator runs)
    problem = seam.Membrane.of_mask(mask)
    np.testing.assert_array_equal(seam.match_border(cast, reference, mask, problem=problem), fixed)


@pytest.fixture(scope="module")
def engine():
    from selfswap.swap.pipeline import FaceSwapper

    return FaceSwapper.load("default")


def test_swap_with_detail_and_seam(engine, astronaut, grace_hopper):
    """The shipped model into Grace Hopper's 190-px face: the source's detail makes the face
    sharper, the seam match leaves no colour step, and 0 / 0 is the plain paste."""
    from selfswap.eval.metrics import seam_score, sharpness_ratio

    face = max(engine.fast_analyzer.analyze(grace_hopper), key=lambda f: f.width)
    source = engine.source_identity([astronaut])
    plain, crops = engine.swap_frame(grace_hopper, [face], source, detail=0, seam=0)
    masks_crops = engine.swap_faces(grace_hopper, [face], source)
    np.testing.assert_array_equal(crops, masks_crops[0])
    np.testing.assert_array_equal(plain, engine.paste(grace_hopper, *masks_crops))
    sharp, _ = engine.swap_frame(grace_hopper, [face], source, detail=1, seam=0)
    both, _ = engine.swap_frame(grace_hopper, [face], source, detail=1, seam=1)
    box = np.asarray(face.box)
    assert plain.shape == sharp.shape == both.shape == grace_hopper.shape
    # measured 0.128 → 0.155: the astronaut's face is half the size of Grace Hopper's, so
    # its photo holds little detail at her scale
    assert sharpness_ratio(sharp, grace_hopper, box) > 1.15 * sharpness_ratio(
        plain, grace_hopper, box
    )
    assert seam_score(both, grace_hopper, box) < 0.8 * seam_score(sharp, grace_hopper, box)
