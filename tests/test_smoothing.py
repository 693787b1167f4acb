"""Temporal smoothing: One-Euro filter, scene cuts, face tracks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from selfswap.swap.smoothing import (
    BlinkGate,
    FaceTracker,
    OneEuroFilter,
    RegionDetector,
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


class Recording:
    """The real default face detector, noting the size of every image it is given."""

    def __init__(self) -> None:
        from selfswap.face.detect import get_detector

        self.detector = get_detector("default")
        self.name = self.detector.name
        self.sizes: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray) -> list:
        self.sizes.append(image.shape[:2])
        return self.detector.detect(image)


def hd_frame(astronaut: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
    """A 1080x1920 portrait frame: the astronaut upscaled to the width, moved by (dx, dy)."""
    matrix = np.array([[1080 / 512, 0, dx], [0, 1080 / 512, 420 + dy]], np.float64)
    return cv2.warpAffine(astronaut, matrix, (1080, 1920), borderMode=cv2.BORDER_REPLICATE)


def _eyes_at(landmarks: np.ndarray, opening: float) -> np.ndarray:
    """The landmarks with both eyes' lids moved to an eye aspect ratio of `opening`."""
    from selfswap.geometry.regions import eye_opening

    out = landmarks.astype(np.float64).copy()
    now = float(eye_opening(landmarks[None])[0])
    for eye in (list(range(36, 42)), list(range(42, 48))):
        middle = out[eye, 1].mean()
        out[eye, 1] = middle + (opening / now) * (out[eye, 1] - middle)
    return out


def test_a_blink_is_a_departure_from_the_faces_usual_opening(astronaut) -> None:
    """One blink hardly moves a face's usual opening and takes its eyes; a face whose eyes
    are always narrow does not; each track has its own, and a cut forgets them."""
    from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
    from selfswap.geometry.regions import eye_opening

    face = FaceAnalyzer(AnalyzerConfig(embedding="none")).analyze(astronaut)[0]
    open_, narrow = _eyes_at(face.landmarks68, 0.3), _eyes_at(face.landmarks68, 0.2)
    assert eye_opening(np.stack([open_, narrow])) == pytest.approx([0.3, 0.2], abs=0.01)
    gate = BlinkGate(fps=25, seconds=2.0)
    assert gate.window == 50
    for _ in range(30):
        strengths = gate.update([1, 2], [open_, narrow])
    assert strengths.tolist() == [0.0, 0.0]
    blink = _eyes_at(face.landmarks68, 0.05)
    for _ in range(3):
        strengths = gate.update([1, 2], [blink, narrow])
        assert strengths.tolist() == [1.0, 0.0]
    assert [gate.usual(1), gate.usual(2)] == pytest.approx([0.3, 0.2], abs=0.01)
    gate.reset()
    assert gate.update([1], [blink]).tolist() == [0.0] and np.isnan(gate.usual(2))


def test_region_detector_follows_a_face_on_a_small_image(astronaut) -> None:
    recording = Recording()
    regions = RegionDetector(recording)
    first = regions.detect(hd_frame(astronaut))  # nothing followed yet: the whole frame
    assert len(first) == 1 and recording.sizes == [(1920, 1080)]
    moved = hd_frame(astronaut, dx=25, dy=-15)
    whole = recording.detector.detect(moved)[0]
    regions.follow([first[0].box])
    found = regions.detect(moved)
    assert len(found) == 1 and not regions.lost
    assert max(recording.sizes[1]) <= regions.side  # one small, downscaled region
    assert box_iou(np.array(found[0].box), np.array(whole.box))[0, 0] > 0.8
    width = whole.box[2] - whole.box[0]  # points in frame pixels, moved with the face
    shift = np.asarray(found[0].landmarks5) - np.asarray(first[0].landmarks5)
    assert np.abs(shift.mean(0) - [25, -15]).max() < 0.05 * width
    assert np.abs(np.asarray(found[0].landmarks5) - whole.landmarks5).max() < 0.05 * width


def test_region_detector_reports_lost_faces_and_finds_new_ones(astronaut, grace_hopper) -> None:
    regions = RegionDetector(Recording())
    face = regions.detect(hd_frame(astronaut))[0]
    regions.follow([face.box])
    assert regions.detect(np.full((1920, 1080, 3), 128, np.uint8)) == [] and regions.lost
    frame = hd_frame(astronaut)
    hopper = cv2.resize(grace_hopper, (256, 300), interpolation=cv2.INTER_AREA)
    frame[1500:1800, 700:956] = hopper
    regions.follow([face.box])
    assert len(regions.detect(frame)) == 1  # only near the followed face
    regions.follow([face.box], whole=True)
    both = regions.detect(frame)
    assert len(both) == 2 and not regions.lost  # the new face, the followed one once
    with pytest.raises(ValueError):
        RegionDetector(Recording(), side=8)
