"""Paste-back of aligned crops into the frame, feathering and colour matching, on real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from selfswap.eval.metrics import laplacian_variance
from selfswap.face.align import alignment_matrix, transform_points, warp_from_crop, warp_to_crop
from selfswap.swap.blend import (
    color_match,
    feather_mask,
    paste_back,
    paste_back_many,
    paste_region,
)


def face_mask(landmarks68: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Crop-space mask `(R, R)` float: the convex hull of the 68 landmarks, brows raised."""
    pts = transform_points(landmarks68, matrix)
    brows = pts[17:27] - [0, 0.08 * size]
    hull = cv2.convexHull(np.concatenate([pts, brows]).astype(np.float32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1)
    return mask.astype(np.float32)


@pytest.fixture(scope="module")
def faces(astronaut, grace_hopper, analyzer_no_id):
    """(image, landmarks68) of each public-domain face."""
    out = {}
    for name, image in (("astronaut", astronaut), ("grace_hopper", grace_hopper)):
        found = analyzer_no_id.analyze(image)
        assert len(found) == 1
        out[name] = (image, found[0].landmarks68)
    return out


def outside(image: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = region
    keep = np.ones(image.shape[:2], bool)
    keep[y0:y1, x0:x1] = False
    return image[keep]


@pytest.mark.parametrize(("name", "size"), [("astronaut", 256), ("grace_hopper", 512)])
def test_paste_back_of_the_unmodified_crop_reproduces_the_frame(faces, name, size) -> None:
    image, landmarks = faces[name]
    matrix = alignment_matrix(landmarks, size)
    crop = warp_to_crop(image, matrix, size)
    mask = face_mask(landmarks, matrix, size)
    out = paste_back(image, crop, matrix, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, image)

    soft = feather_mask(mask)
    region = paste_region(matrix, soft, image.shape[1], image.shape[0])
    assert region is not None
    x0, y0, x1, y1 = region
    assert (x1 - x0) * (y1 - y0) < 0.5 * image.shape[0] * image.shape[1]
    # outside the bounding region, and wherever the warped mask is 0: bit-identical
    assert np.array_equal(outside(out, region), outside(image, region))
    alpha = warp_from_crop(soft, matrix, image.shape[1], image.shape[0])
    assert np.array_equal(out[alpha == 0], image[alpha == 0])
    # inside: within interpolation error (bilinear resampling there and back; the crops are
    # at least at the frame's resolution)
    diff = np.abs(out[y0:y1, x0:x1].astype(int) - image[y0:y1, x0:x1].astype(int))
    assert diff.mean() < 2.0
    core = alpha > 0.99
    round_trip = warp_from_crop(crop, matrix, image.shape[1], image.shape[0])
    error = np.abs(out.astype(int) - image.astype(int))[core].mean()
    assert error <= np.abs(round_trip.astype(int) - image.astype(int))[core].mean() + 0.1
    assert error < 3.0


def test_paste_back_keeps_the_detail_of_a_face(faces) -> None:
    """Grace Hopper's face through a 512 crop (1.44 crop pixels per photo pixel) and back:
    the Lanczos paste keeps 0.766 of the photo's Laplacian variance over the face (bicubic
    0.768), a bilinear one 0.647 (what swaps looked like before: soft)."""
    image, landmarks = faces["grace_hopper"]
    size = 512
    matrix = alignment_matrix(landmarks, size)
    crop = warp_to_crop(image, matrix, size)
    mask = np.zeros((size, size), np.float32)
    mask[size // 4 : size * 4 // 5, size // 4 : size * 3 // 4] = 1
    out = paste_back(image, crop, matrix, mask)
    (x0, y0), (x1, y1) = landmarks.min(0).astype(int), landmarks.max(0).astype(int)
    kept = laplacian_variance(out[y0:y1, x0:x1]) / laplacian_variance(image[y0:y1, x0:x1])
    assert 0.72 < kept < 1.05


def test_a_new_face_replaces_the_masked_area_only(faces) -> None:
    image, landmarks = faces["astronaut"]
    size = 128
    matrix = alignment_matrix(landmarks, size)
    mask = face_mask(landmarks, matrix, size)
    crop = np.zeros((size, size, 3), np.float32)
    crop[...] = (0.0, 1.0, 0.0)  # float crops in [0, 1] are accepted
    out = paste_back(image, crop, matrix, mask, feather=0.1)
    soft = feather_mask(mask, feather=0.1)
    alpha = warp_from_crop(soft, matrix, image.shape[1], image.shape[0])
    core = alpha > 0.999
    assert core.sum() > 1000
    assert np.all(np.abs(out[core].astype(int) - [0, 255, 0]) <= 1)
    assert np.array_equal(out[alpha == 0], image[alpha == 0])
    edge = (alpha > 0.3) & (alpha < 0.7)  # a soft edge: half-way colours
    green = out[edge][:, 1].astype(int)
    assert np.all(green > image[edge][:, 1].astype(int) - 1)
    assert np.any((green > 40) & (green < 250))


def test_feather_mask() -> None:
    mask = np.zeros((128, 128), np.float32)
    mask[20:110, 30:100] = 1
    soft = feather_mask(mask, feather=0.08)
    assert soft.dtype == np.float32 and soft.shape == mask.shape
    assert soft.min() >= 0 and soft.max() <= 1
    assert soft[65, 65] == pytest.approx(1.0, abs=1e-4)
    assert np.all(soft[mask == 0] < 0.01)  # eroded: the soft edge stays inside the mask
    ramp = soft[65, 30:66]
    assert np.all(np.diff(ramp) >= -1e-6) and 0.2 < ramp[8] < 0.9
    full = feather_mask(np.ones((64, 64)), feather=0.1)
    assert full[0].max() == 0 and full[:, -1].max() == 0 and full[32, 32] > 0.99
    hard = feather_mask(mask, feather=0.0)
    assert set(np.unique(hard)) <= {0.0, 1.0}


def test_color_match_moves_the_lab_mean_towards_the_reference(faces) -> None:
    size = 128
    image, landmarks = faces["astronaut"]
    matrix = alignment_matrix(landmarks, size)
    reference = warp_to_crop(image, matrix, size)
    mask = face_mask(landmarks, matrix, size)
    image2, landmarks2 = faces["grace_hopper"]
    generated = warp_to_crop(image2, alignment_matrix(landmarks2, size), size)

    def lab_mean(crop: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(crop.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
        return lab[mask > 0.5].mean(0)

    before = np.linalg.norm(lab_mean(generated) - lab_mean(reference))
    half = np.linalg.norm(
        lab_mean(color_match(generated, reference, mask, 0.5)) - lab_mean(reference)
    )
    full = np.linalg.norm(
        lab_mean(color_match(generated, reference, mask, 1.0)) - lab_mean(reference)
    )
    assert before > 5
    assert full < 0.15 * before
    assert full < half < 0.75 * before
    assert np.array_equal(color_match(generated, reference, mask, 0.0), generated)
    # through paste_back: the pasted face takes the target's colours
    plain = paste_back(image, generated, matrix, mask)
    matched = paste_back(image, generated, matrix, mask, color_reference=reference)
    alpha = warp_from_crop(feather_mask(mask), matrix, image.shape[1], image.shape[0]) > 0.99
    err_plain = np.abs(plain[alpha].mean(0) - image[alpha].mean(0)).sum()
    err_matched = np.abs(matched[alpha].mean(0) - image[alpha].mean(0)).sum()
    assert err_matched < 0.5 * err_plain


def test_paste_back_many_on_both_faces(astronaut, grace_hopper, analyzer_no_id) -> None:
    height = 400
    both = np.concatenate(
        [
            cv2.resize(x, (round(x.shape[1] * height / x.shape[0]), height), cv2.INTER_AREA)
            for x in (astronaut, grace_hopper)
        ],
        1,
    )
    found = analyzer_no_id.analyze(both)
    assert len(found) == 2
    size = 128
    matrices = np.stack([alignment_matrix(f.landmarks68, size) for f in found])
    masks = np.stack([face_mask(f.landmarks68, m, size) for f, m in zip(found, matrices)])
    crops = np.zeros((2, size, size, 3), np.uint8)
    crops[0, ..., 0] = 255
    crops[1, ..., 2] = 255
    out = paste_back_many(both, crops, matrices, masks)
    one_by_one = paste_back(
        paste_back(both, crops[0], matrices[0], masks[0]), crops[1], matrices[1], masks[1]
    )
    assert np.array_equal(out, one_by_one)
    w, h = both.shape[1], both.shape[0]
    touched = np.zeros((h, w), bool)
    for m, mask in zip(matrices, masks):
        x0, y0, x1, y1 = paste_region(m, feather_mask(mask), w, h)
        touched[y0:y1, x0:x1] = True
        assert not np.array_equal(out[y0:y1, x0:x1], both[y0:y1, x0:x1])
    assert np.array_equal(out[~touched], both[~touched])
    with pytest.raises(ValueError):
        paste_back_many(both, crops[:1], matrices, masks)


def test_a_face_cut_by_the_frame_border(faces) -> None:
    image, landmarks = faces["astronaut"]
    frame = np.ascontiguousarray(image[:, 220:])  # the face's left part is outside
    size = 128
    matrix = alignment_matrix(landmarks - [220, 0], size)
    mask = face_mask(landmarks - [220, 0], matrix, size)
    crop = np.full((size, size, 3), 255, np.uint8)
    out = paste_back(frame, crop, matrix, mask, color_reference=warp_to_crop(frame, matrix, size))
    x0, y0, x1, y1 = paste_region(matrix, feather_mask(mask), frame.shape[1], frame.shape[0])
    assert x0 == 0 and x1 < frame.shape[1]
    assert np.array_equal(outside(out, (x0, y0, x1, y1)), outside(frame, (x0, y0, x1, y1)))
    assert not np.array_equal(out[y0:y1, x0:x1], frame[y0:y1, x0:x1])
    gone = np.array([[1.0, 0, 5000], [0, 1.0, 5000]])  # the crop lies far outside the frame
    assert np.array_equal(paste_back(frame, crop, gone, mask), frame)
