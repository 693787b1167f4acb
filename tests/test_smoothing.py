"""Temporal smoothing: One-Euro filter, scene cuts, face tracks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from selfswap.swap.smoothing import (
    FaceTracker,
    OneEuroFilter,
    associate,
    box_iou,
    histogram_distance,
    scene_cut,
)


def pan_strip(astronaut: np.ndarray, grace_hopper: np.ndarray, height: int = 480) -> np.ndarray:
    """Both public-domain faces side by side, `height` pixels high."""
    images = [
        cv2.resize(x, (round(x.shape[1] * height / x.shape[0]), height), cv2.INTER_AREA)
        for x in (astronaut, grace_hopper)
    ]
    return np.concatenate(images, 1)


def test_one_euro_reduces_jitter_on_a_noisy_constant() -> None:
    rng = np.random.default_rng(0)
    raw = 5.0 + rng.normal(size=(200, 68, 2))
    flt = OneEuroFilter(min_cutoff=0.5, beta=0.05, freq=25)
    out = np.array([flt(x) for x in raw])
    assert out.shape == raw.shape
    assert out[50:].std() < 0.45 * raw[50:].std()
    assert abs(out[50:].mean() - 5.0) < 0.05


def test_one_euro_follows_a_step_quickly_and_faster_than_a_plain_low_pass() -> None:
    rng = np.random.default_rng(1)
    signal = np.r_[np.zeros(30), np.full(30, 10.0)] + rng.normal(size=60) * 0.3
    one_euro = OneEuroFilter(min_cutoff=0.5, beta=0.05, freq=25)
    low_pass = OneEuroFilter(min_cutoff=0.5, beta=0.0, freq=25)
    fast = np.array([one_euro(x) for x in signal])
    slow = np.array([low_pass(x) for x in signal])
    frames_to_90 = int(np.argmax(fast[30:] > 9.0))
    assert 0 < frames_to_90 <= 5  # 0.2 s at 25 fps
    assert slow[30 + frames_to_90] < 6.0


def test_one_euro_uses_timestamps_scale_and_reset() -> None:
    flt = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    assert np.allclose(flt(np.ones(3), t=0.0), 1.0)  # the first value passes
    y = flt(np.full(3, 2.0), t=0.04, scale=1e6)  # huge scale: no speed-up, plain low-pass
    assert np.all((y > 1.0) & (y < 1.5))
    flt.reset()
    assert np.allclose(flt(np.full(3, 7.0)), 7.0)


def test_scene_cut_between_the_faces_but_not_while_panning(astronaut, grace_hopper) -> None:
    strip = pan_strip(astronaut, grace_hopper)
    a = strip[:, :640]
    b = strip[:, 10:650]  # the next frame of a 10-pixel pan
    other = cv2.resize(grace_hopper, (640, 480), interpolation=cv2.INTER_AREA)
    first = cv2.resize(astronaut, (640, 480), interpolation=cv2.INTER_AREA)
    assert not scene_cut(a, b)
    assert scene_cut(first, other)
    assert histogram_distance(a, a) < 1e-6


def test_box_iou_and_association() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    b = np.array([[21, 21, 31, 31], [1, 0, 11, 10], [100, 100, 110, 110]], float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 1] == pytest.approx(90 / 110)
    assert iou[0, 2] == 0
    assert sorted(associate(a, b)) == [(0, 1), (1, 0)]
    assert associate(np.zeros((0, 4)), b) == []


def test_tracker_keeps_ids_per_face_and_resets_at_cuts() -> None:
    rng = np.random.default_rng(2)
    tracker = FaceTracker(freq=25)
    left, right = np.array([100.0, 100, 200, 200]), np.array([400.0, 100, 500, 200])
    ids = []
    for i in range(20):
        faces = [
            {"box": right + rng.normal(size=4), "landmarks68": np.full((68, 2), 450.0)},
            {"box": left + rng.normal(size=4) + i, "landmarks68": np.full((68, 2), 150.0)},
        ]
        if i % 2:
            faces.reverse()  # the detector's order changes; the tracks must not
        out = tracker.update(faces)
        by_x = sorted(out, key=lambda o: o[1]["box"][0])
        ids.append([o[0] for o in by_x])
        assert all(o[1]["landmarks68"].shape == (68, 2) for o in out)
    assert all(pair == ids[0] for pair in ids)
    # a frame without the right face, then it comes back: same track, filters kept
    tracker.update([{"box": left + 20}])
    out = tracker.update([{"box": left + 21}, {"box": right}])
    assert sorted(o[0] for o in out) == sorted(ids[0])
    # after a scene cut the faces start new tracks
    out = tracker.update([{"box": left}], cut=True)
    assert out[0][0] not in ids[0]
    assert np.allclose(out[0][1]["box"], left)
