"""Face detection on real public-domain faces (and LFW when the shared data is present)."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib.cbook as cbook
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from selfswap.errors import SelfswapError
from selfswap.face.detect import (
    DEFAULT_DETECTOR,
    DETECTORS,
    Detection,
    UnknownDetectorError,
    available_detectors,
    get_detector,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Approximate face boxes (x0, y0, x1, y1), measured once by eye and by the detectors.
ASTRONAUT_FACE = (175, 70, 275, 170)
HOPPER_FACE = (170, 135, 365, 330)

# MMOD costs seconds per image on CPU: it is checked once, on the astronaut only.
FAST = [name for name in available_detectors() if name != "mmod"]
# dlib HOG at its own threshold (0) also fires weakly (margin < 0.2) on the astronaut's suit
# patch; such hits are tolerated for it, every other detector must find exactly the faces.
WEAK = {"hog": 0.2}


def faces(name: str, detector, image: np.ndarray) -> list[Detection]:
    """Detections, without the known weak texture hits of `WEAK` detectors."""
    found = detector.detect(image)
    return [d for d in found if d.score >= WEAK.get(name, -np.inf)]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@pytest.fixture(scope="module")
def detectors() -> dict:
    return {name: get_detector(name) for name in available_detectors()}


def centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def assert_matches(det: Detection, face: tuple[float, float, float, float], scale: float = 1):
    """The detection lies on the expected face and has about its size."""
    fx, fy = centre(tuple(v * scale for v in face))
    width = (face[2] - face[0]) * scale
    cx, cy = centre(det.box)
    assert abs(cx - fx) < 0.25 * width and abs(cy - fy) < 0.3 * width, (det.box, face)
    assert 0.6 * width < det.width < 1.5 * width, (det.box, face)


def test_registry() -> None:
    assert DEFAULT_DETECTOR in available_detectors()
    assert set(available_detectors()) <= set(DETECTORS)
    assert "hog" in available_detectors()
    with pytest.raises(ValueError, match="known detectors"):
        get_detector("no-such-detector")


@pytest.mark.parametrize("name", ["nonexistent", 5, ["hog"], None, ""])
def test_unknown_detector_is_a_user_error(name: object) -> None:
    """An unknown name (from `--set detector=...` or a config file) is a `SelfswapError` whose
    one sentence names the known detectors (the CLI shows it without a traceback)."""
    with pytest.raises(SelfswapError) as caught:
        get_detector(name)  # type: ignore[arg-type]
    assert isinstance(caught.value, UnknownDetectorError)
    message = str(caught.value)
    assert "\n" not in message and message.count(". ") == 0
    assert all(known in message for known in DETECTORS)
    assert get_detector("default").name == get_detector(DEFAULT_DETECTOR).name


@pytest.mark.parametrize("name", FAST)
def test_astronaut_one_face(name: str, astronaut: np.ndarray, detectors: dict) -> None:
    found = faces(name, detectors[name], astronaut)
    assert len(found) == 1
    assert_matches(found[0], ASTRONAUT_FACE)


def test_mmod_astronaut(astronaut: np.ndarray) -> None:
    if "mmod" not in available_detectors():
        pytest.skip("dlib MMOD model not available")
    found = get_detector("mmod", min_face=80).detect(astronaut)
    assert len(found) == 1
    assert_matches(found[0], ASTRONAUT_FACE)


@pytest.mark.parametrize("name", FAST)
def test_hopper_one_face(name: str, hopper: np.ndarray, detectors: dict) -> None:
    found = faces(name, detectors[name], hopper)
    assert len(found) == 1
    assert_matches(found[0], HOPPER_FACE)


@pytest.mark.parametrize("name", FAST)
def test_two_faces_side_by_side(
    name: str, astronaut: np.ndarray, hopper: np.ndarray, detectors: dict
) -> None:
    left = np.zeros_like(hopper)
    left[: astronaut.shape[0], : astronaut.shape[1]] = astronaut
    both = np.hstack([left, hopper])
    found = faces(name, detectors[name], both)
    assert len(found) == 2
    found = sorted(found, key=lambda d: d.box[0])
    assert_matches(found[0], ASTRONAUT_FACE)
    shifted = (HOPPER_FACE[0] + 512, HOPPER_FACE[1], HOPPER_FACE[2] + 512, HOPPER_FACE[3])
    assert_matches(found[1], shifted)
    scores = [d.score for d in detectors[name].detect(both)]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("name", FAST)
def test_mirrored_face(name: str, astronaut: np.ndarray, detectors: dict) -> None:
    found = faces(name, detectors[name], np.ascontiguousarray(astronaut[:, ::-1]))
    assert len(found) == 1
    w = astronaut.shape[1]
    mirrored = (w - ASTRONAUT_FACE[2], ASTRONAUT_FACE[1], w - ASTRONAUT_FACE[0], ASTRONAUT_FACE[3])
    assert_matches(found[0], mirrored)


@pytest.mark.parametrize("name", FAST)
def test_no_face_in_blank_or_noise(name: str, detectors: dict) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detectors[name].detect(noise) == []
    assert detectors[name].detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detectors[name].detect(skdata.coffee()) == []


@pytest.mark.parametrize("name", FAST)
def test_grey_and_tiny_images(name: str, astronaut: np.ndarray, detectors: dict) -> None:
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    found = faces(name, detectors[name], np.repeat(grey[:, :, None], 3, axis=2))
    assert len(found) == 1
    assert_matches(found[0], ASTRONAUT_FACE)
    assert len(faces(name, detectors[name], grey)) == 1  # 2-D greyscale accepted too
    for shape in [(1, 1, 3), (1, 1), (5, 7, 3), (0, 0, 3)]:
        assert detectors[name].detect(np.zeros(shape, np.uint8)) == []


def test_default_finds_40px_face(astronaut: np.ndarray) -> None:
    """A face ~40 px wide, alone and inside a 640x480 scene, is found by the default."""
    scale = 40 / (ASTRONAUT_FACE[2] - ASTRONAUT_FACE[0])
    small = cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    detector = get_detector(DEFAULT_DETECTOR)
    found = detector.detect(small)
    assert len(found) == 1
    assert_matches(found[0], ASTRONAUT_FACE, scale)

    scene = cv2.resize(skdata.coffee(), (640, 480))
    for x0, y0 in [(20, 30), (400, 250)]:
        image = scene.copy()
        image[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
        found = detector.detect(image)
        assert len(found) == 1
        face = tuple(v * scale + o for v, o in zip(ASTRONAUT_FACE, (x0, y0, x0, y0), strict=True))
        assert_matches(found[0], face)


def test_blazeface_keypoints(astronaut: np.ndarray) -> None:
    if "blazeface_short" not in available_detectors():
        pytest.skip("ai-edge-litert or the BlazeFace model is missing")
    (det,) = get_detector("blazeface_short").detect(astronaut)
    kp = det.keypoints
    assert kp is not None and kp.shape == (6, 2)
    x0, y0, x1, y1 = det.box
    assert np.all((kp[:4, 0] > x0) & (kp[:4, 0] < x1) & (kp[:4, 1] > y0) & (kp[:4, 1] < y1))
    left_eye, right_eye, nose, mouth = kp[:4]
    assert left_eye[0] < nose[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < mouth[1]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(
        0.0, min(a[3], b[3]) - max(a[1], b[1])
    )
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


@pytest.mark.parametrize("name", ["blazeface_short", "blazeface_full", "yunet"])
def test_blazeface_box_follows_dlib_convention(
    name: str, astronaut: np.ndarray, hopper: np.ndarray, detectors: dict
) -> None:
    """Calibrated BlazeFace / YuNet boxes sit where dlib's HOG box does (landmark predictors
    need it)."""
    if name not in detectors:
        pytest.skip(f"the runtime or model of {name} is missing")
    for image in (astronaut, hopper, np.ascontiguousarray(astronaut[:, ::-1])):
        blaze = detectors[name].detect(image)[0]
        hog = detectors["hog"].detect(image)[0]
        assert iou(blaze.box, hog.box) > 0.75
        assert abs(blaze.width - blaze.height) < 1.0


@pytest.mark.lfw
def test_default_on_lfw_eval() -> None:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    names = (DATA / "splits" / "lfw_eval.txt").read_text().split()[::38][:50]
    detector = get_detector(DEFAULT_DETECTOR)
    hits = 0
    for rel in names:
        bgr = cv2.imread(str(DATA / "lfw" / rel))
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        for det in detector.detect(image):
            cx, cy = centre(det.box)
            if np.hypot(cx - w / 2, cy - h / 2) <= 0.25 * min(w, h):
                hits += 1
                break
    assert len(names) == 50
    assert hits >= 49


def test_yunet_landmarks5(astronaut: np.ndarray, hopper: np.ndarray) -> None:
    """YuNet fills ``landmarks5`` (eyes, nose tip, mouth corners; image left first) and the
    first four BlazeFace-style ``keypoints``."""
    if "yunet" not in available_detectors():
        pytest.skip("OpenCV's FaceDetectorYN or the YuNet model is missing")
    detector = get_detector("yunet")
    for image in (astronaut, hopper):
        (det,) = detector.detect(image)
        p = det.landmarks5
        assert p is not None and p.shape == (5, 2)
        x0, y0, x1, y1 = det.box
        assert np.all((p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1))
        left_eye, right_eye, nose, mouth_left, mouth_right = p
        assert left_eye[0] < nose[0] < right_eye[0]
        assert mouth_left[0] < nose[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
        assert det.keypoints is not None and det.keypoints.shape == (4, 2)
        assert np.allclose(det.keypoints[3], (mouth_left + mouth_right) / 2)


# --- large photos (issue 12) -------------------------------------------------------------


def upscaled(image: np.ndarray, width: int) -> np.ndarray:
    """The image resized to ``width`` x 3/4 ``width`` (a phone-size photo of the same scene)."""
    return cv2.resize(image, (width, width * 3 // 4), interpolation=cv2.INTER_CUBIC)


def test_tiles_stay_bounded_on_large_photos() -> None:
    """BlazeFace's tile count grows with the pixel count, not without bound (it used to reach
    millions of 1-px-step tiles above ~2,490 px and never finish)."""
    detector = get_detector("blazeface_short")
    for h, w in [(3055, 1957), (3000, 4000), (6000, 8000)]:
        tiles = detector._tiles(h, w)
        assert 0 < len(tiles) < 6 * (h * w) / 320**2, (h, w, len(tiles))
        # every face from min_face up to what the full-image pass sees fits wholly in a tile
        largest_half = max(t[2] - t[0] for t in tiles) / 2
        assert largest_half >= 16 / 128 * max(h, w)
    assert len(detector._tiles(480, 640)) == 6  # unchanged at the usual size


@pytest.mark.parametrize("width", [2400, 4000])
def test_upscaled_astronaut_one_face(astronaut: np.ndarray, width: int) -> None:
    """A large photo yields its real face only (tiling used to add suit / helmet faces)."""
    found = get_detector(DEFAULT_DETECTOR).detect(upscaled(astronaut, width))
    assert len(found) == 1
    assert_matches(
        found[0],
        (175 * width / 512, 70 * width * 0.75 / 512, 275 * width / 512, 170 * width * 0.75 / 512),
    )


@pytest.mark.slow
def test_upscaled_astronaut_one_face_8000(astronaut: np.ndarray) -> None:
    found = get_detector(DEFAULT_DETECTOR).detect(upscaled(astronaut, 8000))
    assert len(found) == 1


@pytest.mark.parametrize("width", [40, 60])
def test_small_face_in_a_4000x3000_photo(astronaut: np.ndarray, hopper: np.ndarray, width: int):
    """A 40-60 px face pasted into a 4000x3000 scene is found, and nothing else is."""
    scene = upscaled(skdata.coffee(), 4000)
    detector = get_detector(DEFAULT_DETECTOR)
    for image, face, (x0, y0) in [
        (astronaut, ASTRONAUT_FACE, (1000, 700)),
        (hopper, HOPPER_FACE, (3150, 2400)),
    ]:
        scale = width / (face[2] - face[0])
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        photo = scene.copy()
        photo[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
        found = detector.detect(photo)
        assert len(found) == 1, [d.box for d in found]
        assert_matches(found[0], tuple(v * scale + o for v, o in zip(face, (x0, y0) * 2)))


# --- YuNet run by ONNX Runtime, against cv2.FaceDetectorYN --------------------------------

# Measured differences to cv2.FaceDetectorYN (OpenCV 5.0, onnxruntime 1.32, 2-core EPYC) over
# the cases below: boxes <= 1.5e-4 px, landmarks <= 6.1e-5 px, scores <= 1.2e-7 (float32
# rounding); the margin leaves room for other CPUs' kernels.
YUNET_PX_TOL = 1e-2
YUNET_SCORE_TOL = 1e-5


def yunet_or_skip() -> None:
    if "yunet" not in available_detectors():
        pytest.skip("OpenCV's FaceDetectorYN or the YuNet model is missing")


def opencv_yunet(bgr: np.ndarray, score_threshold: float = 0.6, nms_iou: float = 0.3):
    """OpenCV's own YuNet detector on a BGR image: (N, 15) rows, empty when no face."""
    from selfswap.models.registry import model_path

    net = cv2.FaceDetectorYN.create(
        str(model_path("yunet_int8bq")), "", (bgr.shape[1], bgr.shape[0]), score_threshold, nms_iou
    )
    _, found = net.detect(bgr)
    return np.zeros((0, 15), np.float32) if found is None else found


def assert_same_faces(mine: np.ndarray, reference: np.ndarray) -> None:
    assert mine.shape == reference.shape, (mine[:, 14], reference[:, 14])
    assert np.abs(mine[:, :4] - reference[:, :4]).max(initial=0) < YUNET_PX_TOL
    assert np.abs(mine[:, 4:14] - reference[:, 4:14]).max(initial=0) < YUNET_PX_TOL
    assert np.abs(mine[:, 14] - reference[:, 14]).max(initial=0) < YUNET_SCORE_TOL


@pytest.fixture(scope="module")
def yunet_images(astronaut: np.ndarray, hopper: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """BGR test images and their face counts."""
    left = np.zeros_like(hopper)
    left[: astronaut.shape[0], : astronaut.shape[1]] = astronaut
    both = np.hstack([left, hopper])
    return {
        name: (cv2.cvtColor(image, cv2.COLOR_RGB2BGR), n)
        for name, image, n in [
            ("astronaut", astronaut, 1),
            ("hopper", hopper, 1),
            ("both", both, 2),
        ]
    }


@pytest.mark.parametrize("name", ["astronaut", "hopper", "both"])
@pytest.mark.parametrize("size", [None, (640, 480), (333, 251), (1000, 700)])
def test_yunet_onnxruntime_same_faces_as_opencv(
    name: str, size: tuple[int, int] | None, yunet_images: dict
) -> None:
    """One YuNet pass by ONNX Runtime finds the faces `cv2.FaceDetectorYN` finds, at sizes
    that are not multiples of 32 too (the input is padded as OpenCV pads it)."""
    yunet_or_skip()
    from selfswap.face.yunet import YuNetOnnx

    bgr, count = yunet_images[name]
    if size is not None:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    reference = opencv_yunet(bgr)
    assert len(reference) == count  # the comparison is on real faces
    assert_same_faces(YuNetOnnx().detect(bgr), reference)


def test_yunet_onnxruntime_same_candidates_as_opencv(yunet_images: dict) -> None:
    """At a low score threshold (many candidates, several kept by NMS) and on a face-free
    scene, the ONNX Runtime pass still gives OpenCV's rows, in OpenCV's order."""
    yunet_or_skip()
    from selfswap.face.yunet import YuNetOnnx

    low = YuNetOnnx(score_threshold=0.05, nms_iou=0.3)
    bgr = cv2.resize(yunet_images["astronaut"][0], (333, 251), interpolation=cv2.INTER_AREA)
    reference = opencv_yunet(bgr, 0.05)
    assert len(reference) >= 5
    assert_same_faces(low.detect(bgr), reference)
    coffee = cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR)
    assert_same_faces(low.detect(coffee), opencv_yunet(coffee, 0.05))
    assert YuNetOnnx().detect(coffee).shape == (0, 15) and len(opencv_yunet(coffee)) == 0


def test_yunet_detector_runs_onnxruntime_like_opencv(yunet_images: dict) -> None:
    """The default YuNet detector runs ONNX Runtime, and its detections equal those of the
    same detector on ``cv2.FaceDetectorYN`` (``backend="opencv"``)."""
    yunet_or_skip()
    from selfswap.face.yunet import YuNetDetector, YuNetOnnx

    mine, theirs = get_detector("yunet"), get_detector("yunet", backend="opencv")
    assert isinstance(mine.model(), YuNetOnnx)
    assert isinstance(theirs.model(), cv2.FaceDetectorYN)
    for bgr, count in yunet_images.values():
        image = cv2.cvtColor(cv2.resize(bgr, (640, 480)), cv2.COLOR_BGR2RGB)
        a, b = mine.detect(image), theirs.detect(image)
        assert len(a) == len(b) == count
        for x, y in zip(a, b, strict=True):
            assert np.abs(np.subtract(x.box, y.box)).max() < YUNET_PX_TOL
            assert np.abs(x.landmarks5 - y.landmarks5).max() < YUNET_PX_TOL
            assert abs(x.score - y.score) < YUNET_SCORE_TOL
    with pytest.raises(SelfswapError, match="backend"):
        YuNetDetector(backend="tflite")


def test_yunet_converted_file_is_kept_and_a_damaged_copy_made_again(
    yunet_images: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file ONNX Runtime runs is converted once and kept; a damaged kept copy is
    converted again rather than failing detection."""
    yunet_or_skip()
    from selfswap.face import yunet

    kept = tmp_path / "yunet.onnx"
    monkeypatch.setattr(yunet, "_kept_model_path", lambda: kept)
    bgr, count = yunet_images["astronaut"]
    assert len(yunet.YuNetOnnx().detect(bgr)) == count
    converted = kept.read_bytes()
    assert converted == yunet._converted_model_bytes()
    kept.write_bytes(converted[:1000])
    assert len(yunet.YuNetOnnx().detect(bgr)) == count
    assert kept.read_bytes() == converted


def test_yunet_levels_on_a_second_thread_find_the_same_faces(yunet_images: dict) -> None:
    """The coarser pyramid levels scanned on a second thread (the default) give exactly the
    faces of scanning them one after the other."""
    yunet_or_skip()
    detector = get_detector("yunet")
    for bgr, count in yunet_images.values():
        image = cv2.cvtColor(cv2.resize(bgr, (1000, 700)), cv2.COLOR_BGR2RGB)
        assert len(detector.levels(*image.shape[:2])) > 1
        detector.concurrent_levels = True
        both = detector.detect(image)
        detector.concurrent_levels = False
        one = detector.detect(image)
        assert len(both) == count
        assert [(d.box, d.score) for d in both] == [(d.box, d.score) for d in one]
        for a, b in zip(both, one, strict=True):
            np.testing.assert_array_equal(a.landmarks5, b.landmarks5)
