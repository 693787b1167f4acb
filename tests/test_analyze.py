"""Face analysis on real faces: one face each, frontal pose, sane 3DMM and landmarks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selfswap.face.bfm import load_bfm
from selfswap.face.types import Face


@pytest.fixture(scope="module")
def faces(analyzer, astronaut, grace_hopper):
    return {
        "astronaut": analyzer.analyze(astronaut),
        "grace_hopper": analyzer.analyze(grace_hopper),
    }


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_one_frontal_face(faces, name):
    assert len(faces[name]) == 1
    face = faces[name][0]
    assert abs(face.yaw) < 15 and abs(face.pitch) < 20 and abs(face.roll) < 15
    assert face.landmarks5.shape == (5, 2) and face.landmarks68.shape == (68, 2)
    assert face.shape.shape == (40,) and face.expression.shape == (10,)
    assert face.embedding.shape == (128,)


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_mesh_agrees_with_landmarks(faces, name):
    face = faces[name][0]
    keypoints = face.vertices()[load_bfm().keypoints68, :2]
    error = np.linalg.norm(keypoints - face.landmarks68, axis=1).mean()
    assert error < 0.05 * face.width  # 3DMM keypoints within 5% of the face width
    x0, y0, x1, y1 = face.box
    centre = face.landmarks68.mean(0)
    assert x0 < centre[0] < x1 and y0 < centre[1] < y1


def test_different_people_have_distant_embeddings(faces):
    a, g = faces["astronaut"][0].embedding, faces["grace_hopper"][0].embedding
    assert np.linalg.norm(a - g) > 0.6


def test_faces_left_to_right_on_a_pair(analyzer_no_id, astronaut, grace_hopper):
    pair = np.concatenate([astronaut, grace_hopper[: astronaut.shape[0], :512]], axis=1)
    found = analyzer_no_id.analyze(pair)
    assert len(found) == 2
    assert found[0].box[0] < 512 <= found[1].box[0]


def test_yaw_follows_a_mirror(analyzer_no_id, grace_hopper):
    # Mirroring flips the sign of yaw and roll; a frontal face stays near frontal.
    face = analyzer_no_id.analyze(grace_hopper)[0]
    mirrored = analyzer_no_id.analyze(np.ascontiguousarray(grace_hopper[:, ::-1]))[0]
    assert mirrored.yaw == pytest.approx(-face.yaw, abs=3)
    assert mirrored.roll == pytest.approx(-face.roll, abs=3)


def test_no_face(analyzer_no_id):
    sky = np.full((240, 320, 3), (120, 160, 220), np.uint8)
    assert analyzer_no_id.analyze(sky) == []
    assert analyzer_no_id.analyze(np.zeros((1, 1, 3), np.uint8)) == []


def test_face_serialisation_roundtrip(faces):
    face = faces["astronaut"][0]
    restored = Face.from_dict(json.loads(json.dumps(face.to_dict())))
    assert np.allclose(restored.camera, face.camera, atol=1e-3)
    assert np.allclose(restored.embedding, face.embedding, atol=1e-4)
    assert restored.yaw == pytest.approx(face.yaw, abs=1e-3)


def test_lfw_sample(analyzer_no_id, shared_data):
    names = (shared_data / "splits" / "lfw_eval.txt").read_text().split()[::40][:40]
    found, yaws = 0, []
    for name in names:
        faces = analyzer_no_id.analyze(shared_data / "lfw" / name)
        if faces:
            found += 1
            central = min(faces, key=lambda f: np.abs(f.box.reshape(2, 2).mean(0) - 125).sum())
            yaws.append(central.yaw)
    assert found >= len(names) - 1
    assert max(abs(y) for y in yaws) < 75


def _upscaled(image: np.ndarray, width: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (width, width * 3 // 4), interpolation=cv2.INTER_CUBIC)


def test_phone_size_photo(analyzer_no_id, astronaut):
    """A 4000x3000 photo is analysed in seconds (it used to run for minutes) and yields its one
    real face, with landmarks on it."""
    import time

    photo = _upscaled(astronaut, 4000)
    start = time.perf_counter()
    faces = analyzer_no_id.analyze(photo)
    elapsed = time.perf_counter() - start
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert 4000 * 175 / 512 - 0.3 * face.width < (x0 + x1) / 2 < 4000 * 275 / 512
    inside = (face.landmarks68[:, 0] > x0 - 0.1 * face.width) & (
        face.landmarks68[:, 0] < x1 + 0.1 * face.width
    )
    assert inside.all()
    assert abs(face.yaw) < 20
    assert elapsed < 30, f"analyze took {elapsed:.1f} s on 4000x3000"  # guard against a hang


@pytest.mark.slow
def test_40_megapixel_photo(analyzer_no_id, astronaut):
    """A 40 MP photo still works: one face, found in a bounded time."""
    faces = analyzer_no_id.analyze(_upscaled(astronaut, 7300))
    assert len(faces) == 1
    assert faces[0].detector == analyzer_no_id.detector.name
