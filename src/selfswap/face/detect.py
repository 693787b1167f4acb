"""Face detection: a few offline detectors behind one small interface.

Every detector takes an RGB ``uint8`` image (H x W x 3; greyscale H x W and RGBA are accepted
too) and returns a list of `Detection`, best score first. Models load lazily on the first call.

Registered detectors (see `available_detectors` for the ones usable in this environment):

- ``yunet`` (default): OpenCV Zoo's YuNet (int8 ONNX, run by ONNX Runtime with the pre- and
  post-processing of ``cv2.FaceDetectorYN``) on a short image pyramid, each face confirmed
  by BlazeFace short-range when ``ai-edge-litert`` is installed (see `selfswap.face.yunet`);
  no tiling, so large photos cost seconds and get no extra false faces; gives
  ``landmarks5``.
- ``blazeface_short``: MediaPipe BlazeFace short-range (128x128 input) run with
  ``ai-edge-litert``; ~3 ms on a 250x250 image, ~16 ms on 640x480 (tiled to reach 40 px
  faces), tolerant of turned faces, gives 6 keypoints. On large photos its tiles (several
  hundred at 4000x3000) add false faces on textures.
- ``blazeface_full``: BlazeFace full-range (192x192); slower and, measured, less accurate on
  faces that fill the frame.
- ``hog``: dlib's HOG + linear SVM frontal detector (frontal only, 80 px window, so the image
  is upscaled to reach ``min_face``); very few false positives.
- ``mmod``: dlib's MMOD CNN detector; handles more pose than HOG but costs seconds on CPU.
- ``blazeface_short+hog``: BlazeFace first, dlib HOG only when BlazeFace finds nothing.

Detector scores are not comparable across detectors (BlazeFace, YuNet: probability-like;
dlib: margins).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from selfswap.errors import ImageError, SelfswapError
from selfswap.models.registry import expected_path, model_path

MIN_SIDE = 16  # images smaller than this on either side cannot hold a detectable face


@dataclass(frozen=True)
class Detection:
    """One detected face.

    ``box`` is (x0, y0, x1, y1) in pixels, clipped to the image. ``landmarks5`` is only set by
    detectors that provide the usual 5 points (eyes, nose, mouth corners); BlazeFace instead
    gives ``keypoints``: 6 points (x, y) in pixels, in MediaPipe's order: the eye on the image
    left, the eye on the image right, nose tip, mouth centre, ear tragion on the image left,
    ear tragion on the image right.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks5: np.ndarray | None = field(default=None, compare=False)
    keypoints: np.ndarray | None = field(default=None, compare=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """The image as a contiguous H x W x 3 uint8 array (greyscale and RGBA are converted)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ImageError(f"Expected a uint8 image, got dtype {image.dtype}.")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"Expected an H x W x 3 RGB image, got shape {image.shape}.")
    return np.ascontiguousarray(image)


def _clip_box(box: tuple[float, float, float, float], w: int, h: int) -> tuple[float, ...]:
    x0, y0, x1, y1 = box
    return (
        float(min(max(x0, 0.0), w)),
        float(min(max(y0, 0.0), h)),
        float(min(max(x1, 0.0), w)),
        float(min(max(y1, 0.0), h)),
    )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box ``a`` (4,) against boxes ``b`` (N, 4)."""
    ix0 = np.maximum(a[0], b[:, 0])
    iy0 = np.maximum(a[1], b[:, 1])
    ix1 = np.minimum(a[2], b[:, 2])
    iy1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


class FaceDetector:
    """Base class: subclasses implement `_detect` on a validated RGB image."""

    name = "base"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: Any = None

    def _load(self) -> Any:
        raise NotImplementedError

    def _detect(self, image: np.ndarray) -> list[Detection]:
        raise NotImplementedError

    def model(self) -> Any:
        """The loaded model (loaded on first use)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, best score first (empty for images too small)."""
        image = as_rgb_uint8(image_rgb)
        if min(image.shape[:2]) < MIN_SIDE:
            return []
        with self._lock:
            found = self._detect(image)
        return sorted(found, key=lambda d: d.score, reverse=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _DlibDetector(FaceDetector):
    """Common part of the dlib detectors: upscale so that ``min_face`` fills the window."""

    window = 80  # both dlib detectors find faces down to about 80 px

    default_threshold = 0.0

    def __init__(self, min_face: int = 40, threshold: float | None = None) -> None:
        super().__init__()
        self.min_face = min_face
        self.threshold = self.default_threshold if threshold is None else threshold

    def _scaled(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        scale = max(1.0, self.window / max(self.min_face, 1))
        if scale == 1.0:
            return image, 1.0
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), scale


class HogDetector(_DlibDetector):
    """dlib HOG + linear SVM frontal face detector (frontal and slightly turned faces)."""

    name = "hog"
    # SVM margin threshold: dlib's 0. Measured on LFW eval, 0.2 would drop weak hits on
    # textures (up to 0.14 on the astronaut's suit patch) but loses 0.5% of the faces.
    default_threshold = 0.0

    def _load(self) -> Any:
        import dlib

        return dlib.get_frontal_face_detector()

    def _detect(self, image: np.ndarray) -> list[Detection]:
        scaled, scale = self._scaled(image)
        rects, scores, _ = self.model().run(scaled, 0, self.threshold)
        h, w = image.shape[:2]
        return [
            Detection(
                _clip_box(
                    (
                        r.left() / scale,
                        r.top() / scale,
                        (r.right() + 1) / scale,
                        (r.bottom() + 1) / scale,
                    ),
                    w,
                    h,
                ),
                float(s),
            )
            for r, s in zip(rects, scores, strict=True)
        ]


class MmodDetector(_DlibDetector):
    """dlib MMOD CNN face detector: slow on CPU, more tolerant of pose than HOG."""

    name = "mmod"

    def _load(self) -> Any:
        import dlib

        return dlib.cnn_face_detection_model_v1(str(model_path("dlib_mmod")))

    def _detect(self, image: np.ndarray) -> list[Detection]:
        scaled, scale = self._scaled(image)
        h, w = image.shape[:2]
        out = []
        for d in self.model()(scaled, 0):
            if d.confidence < self.threshold:
                continue
            r = d.rect
            box = (
                r.left() / scale,
                r.top() / scale,
                (r.right() + 1) / scale,
                (r.bottom() + 1) / scale,
            )
            out.append(Detection(_clip_box(box, w, h), float(d.confidence)))
        return out


@dataclass(frozen=True)
class _BlazeSpec:
    model: str  # catalog name
    size: int  # square input side
    strides: tuple[int, ...]  # one entry per SSD layer
    anchors_per_layer: int  # 2 with interpolated scale (short range), 1 otherwise
    # Default score threshold, chosen on LFW eval + CelebA hit scores against false positives
    # on face-free images (skimage data): short range 0.65 loses <= 0.1% of faces there and
    # removes most of the false positives that 0.5 (MediaPipe's default) lets through.
    score_threshold: float
    # Box calibration to dlib's convention (see `_dlib_style_box`): rows give the centre shift
    # (dx, dy) and log scale of the box from the first 4 keypoints and 1, all relative to
    # the raw box centre and width. Ridge fit on LFW *train* against dlib HOG boxes
    # (`python benchmarks/bench_detection.py --fit-box short`).
    box_fit: tuple[tuple[float, ...], ...]


_BLAZE_SPECS = {
    "short": _BlazeSpec(
        "blazeface_short",
        128,
        (8, 16, 16, 16),
        2,
        0.65,
        (
            (0.187, -0.011, 0.12, 0.03, 0.235, -0.01, 0.172, -0.003, 0.0),
            (-0.076, 0.114, 0.057, 0.077, 0.013, 0.228, 0.014, 0.128, -0.062),
            (-0.103, -0.079, 0.085, -0.09, 0.018, -0.249, 0.03, -0.157, -0.064),
        ),
    ),
    "full": _BlazeSpec(
        "blazeface_full",
        192,
        (4,),
        1,
        0.5,
        (
            (0.06, 0.025, -0.07, -0.06, 0.037, -0.0, 0.127, 0.026, -0.003),
            (-0.123, 0.068, 0.124, 0.125, 0.065, 0.203, 0.004, 0.102, -0.054),
            (-0.073, -0.115, 0.129, -0.042, -0.08, -0.212, -0.022, -0.076, -0.107),
        ),
    ),
}

BOX_FIT_LIMIT = 0.3  # bound on each calibration output (shift / width, log scale)


def blaze_box_features(box: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Calibration input: eyes, nose tip and mouth relative to the box centre / width, and 1."""
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    width = max(float(box[2] - box[0]), 1e-6)
    return np.concatenate([((keypoints[:4] - centre) / width).ravel(), [1.0]])


def _dlib_style_box(box: np.ndarray, keypoints: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """The square box dlib's HOG detector would draw around this face.

    dlib's 5- and 68-point shape predictors were trained on HOG boxes and are sensitive to
    where the box sits. Measured against 3DDFA_V2's 68 points on 1,500 CelebA faces, the
    68-point error (by landmark extent) with the raw short-range box grows from 2.1% (|yaw|
    < 15°) to 11.5% (30-45°) and 19% (> 45°); with this calibration it is 2.0%, 3.6% and 6.0%,
    as good as with a real HOG box.
    """
    dx, dy, log_scale = np.clip(
        fit @ blaze_box_features(box, keypoints), -BOX_FIT_LIMIT, BOX_FIT_LIMIT
    )
    width = float(box[2] - box[0])
    cx = (box[0] + box[2]) / 2 + dx * width
    cy = (box[1] + box[3]) / 2 + dy * width
    half = width * float(np.exp(log_scale)) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def _blaze_anchors(spec: _BlazeSpec) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], as MediaPipe's SSD anchor calculator lays them out.

    Consecutive layers with the same stride share one grid; with fixed anchor size every
    anchor is 1x1, so only the centres matter.
    """
    centres = []
    i = 0
    while i < len(spec.strides):
        stride = spec.strides[i]
        n = 0
        while i < len(spec.strides) and spec.strides[i] == stride:
            n += spec.anchors_per_layer
            i += 1
        grid = int(np.ceil(spec.size / stride))
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        c = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(c, n, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def litert_available() -> bool:
    """Whether the TFLite runtime needed by BlazeFace (``ai-edge-litert``) is installed."""
    return importlib.util.find_spec("ai_edge_litert") is not None


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace (TFLite, run by ``ai-edge-litert``) with weighted NMS.

    Boxes are calibrated to dlib's HOG box convention (``dlib_box=True``, see
    `_dlib_style_box`) so that dlib's landmark predictors work on them; ``dlib_box=False``
    gives MediaPipe's raw boxes. The image is letterboxed to a square and resized to the
    model input; the model finds faces
    down to about ``MODEL_MIN_FACE`` pixels at its input resolution. When faces of
    ``min_face`` pixels would fall below that, the image is also scanned in overlapping
    square tiles (each run at the model resolution): with ``min_face=40`` a 640x480 photo
    costs 7 runs of the short-range model (~2 ms each) or 3 of the full-range one (~7 ms).
    ``min_face=None`` disables tiling.
    """

    MODEL_MIN_FACE = 16

    def __init__(
        self,
        variant: str = "full",
        min_face: int | None = 40,
        score_threshold: float | None = None,
        nms_iou: float = 0.3,
        num_threads: int = 1,
        dlib_box: bool = True,
    ) -> None:
        super().__init__()
        self.spec = _BLAZE_SPECS[variant]
        self.name = f"blazeface_{variant}"
        self.min_face = min_face
        self.score_threshold = (
            self.spec.score_threshold if score_threshold is None else score_threshold
        )
        self.nms_iou = nms_iou
        self.num_threads = num_threads
        self.dlib_box = dlib_box
        self._box_fit = np.array(self.spec.box_fit, np.float64)
        self._anchors = _blaze_anchors(self.spec)

    def _load(self) -> Any:
        if not litert_available():
            raise SelfswapError(
                f"Detector '{self.name}' needs the TFLite runtime: `pip install ai-edge-litert`."
            )
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(
            model_path=str(model_path(self.spec.model)), num_threads=self.num_threads
        )
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        outs = sorted(interp.get_output_details(), key=lambda d: int(d["shape"][-1]))
        if tuple(inp["shape"][1:3]) != (self.spec.size, self.spec.size):
            raise ImageError(f"Unexpected BlazeFace input shape {inp['shape']}.")
        return interp, inp["index"], outs[1]["index"], outs[0]["index"]

    def _run(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw boxes (N, 4), keypoints (N, 6, 2), scores (N,) on a crop, in crop pixels."""
        interp, inp, reg_idx, cls_idx = self.model()
        h, w = crop.shape[:2]
        side = max(h, w)
        s = self.spec.size
        scale = s / side
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (s - nh) // 2, (s - nw) // 2
        canvas = np.zeros((s, s, 3), np.float32)
        interp_mode = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas[top : top + nh, left : left + nw] = cv2.resize(
            crop, (nw, nh), interpolation=interp_mode
        )
        canvas = canvas / 127.5 - 1.0
        interp.set_tensor(inp, canvas[None])
        interp.invoke()
        reg = interp.get_tensor(reg_idx)[0]
        logits = np.clip(interp.get_tensor(cls_idx)[0, :, 0].astype(np.float64), -100, 100)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.score_threshold
        reg, scores, anchors = reg[keep], scores[keep], self._anchors[keep]
        centre = reg[:, 0:2] / s + anchors
        half = reg[:, 2:4] / s / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1) * s
        kps = (reg[:, 4:16].reshape(-1, 6, 2) / s + anchors[:, None, :]) * s
        # undo the letterbox: model pixels -> crop pixels
        offset = np.array([left, top], np.float32)
        boxes = (boxes - np.tile(offset, 2)) / scale
        kps = (kps - offset) / scale
        return boxes, kps, scores

    def _tiles(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """Square tiles (y0, x0, y1, x1) needed to see ``min_face`` faces; [] if none.

        A tile of side ``t`` (run at the model resolution) sees faces from ``need * t`` px;
        tiles overlap by half, so every face up to ``t / 2`` lies wholly inside one of them.
        The tile side doubles until that reaches the faces the full-image pass sees, so each
        face size is covered and the tile count stays bounded (a 4000x3000 photo: ~600 runs).
        """
        if not self.min_face:
            return []
        need = self.MODEL_MIN_FACE / self.spec.size  # smallest face / letterbox side
        full_min = need * max(h, w)  # smallest face the full-image pass sees
        if self.min_face >= full_min:
            return []
        t = round(self.min_face / need)

        def starts(n: int, side: int, step: int) -> list[int]:
            out = list(range(0, max(n - side, 0) + 1, step))
            if out[-1] + side < n:
                out.append(n - side)
            return out

        tiles: list[tuple[int, int, int, int]] = []
        while True:
            side = min(t, h, w)
            step = max(side // 2, 1)
            tiles += [
                (y, x, y + side, x + side)
                for y in starts(h, side, step)
                for x in starts(w, side, step)
            ]
            if side / 2 >= full_min or side == min(h, w):
                return tiles
            t *= 2

    def _detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        boxes, kps, scores = self._run(image)
        parts = [(boxes, kps, scores)]
        for y0, x0, y1, x1 in self._tiles(h, w):
            b, k, s = self._run(image[y0:y1, x0:x1])
            off = np.array([x0, y0], np.float32)
            # drop faces cut by a tile border that is not an image border
            inside = np.ones(len(s), bool)
            m = 2.0
            if x0 > 0:
                inside &= b[:, 0] > m
            if y0 > 0:
                inside &= b[:, 1] > m
            if x1 < w:
                inside &= b[:, 2] < (x1 - x0) - m
            if y1 < h:
                inside &= b[:, 3] < (y1 - y0) - m
            parts.append((b[inside] + np.tile(off, 2), k[inside] + off, s[inside]))
        boxes = np.concatenate([p[0] for p in parts])
        kps = np.concatenate([p[1] for p in parts])
        scores = np.concatenate([p[2] for p in parts])
        return self._weighted_nms(boxes, kps, scores, w, h)

    def _weighted_nms(
        self, boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray, w: int, h: int
    ) -> list[Detection]:
        """MediaPipe-style weighted NMS: overlapping candidates are averaged by score."""
        order = np.argsort(-scores)
        boxes, kps, scores = boxes[order], kps[order], scores[order]
        out = []
        remaining = np.arange(len(scores))
        while remaining.size:
            best = remaining[0]
            overlap = _iou(boxes[best], boxes[remaining]) > self.nms_iou
            group = remaining[overlap]
            weights = scores[group][:, None]
            box = (boxes[group] * weights).sum(0) / weights.sum()
            kp = (kps[group] * weights[:, :, None]).sum(0) / weights.sum()
            if self.dlib_box:
                box = _dlib_style_box(box, kp, self._box_fit)
            out.append(
                Detection(
                    _clip_box(tuple(box.tolist()), w, h),
                    float(scores[best]),
                    keypoints=kp.astype(np.float32),
                )
            )
            remaining = remaining[~overlap]
        return out


class CascadeDetector(FaceDetector):
    """Run ``first``; only when it finds no face, run ``fallback``."""

    def __init__(self, first: FaceDetector, fallback: FaceDetector) -> None:
        super().__init__()
        self.first = first
        self.fallback = fallback
        self.name = f"{first.name}+{fallback.name}"

    def _detect(self, image: np.ndarray) -> list[Detection]:
        return self.first.detect(image) or self.fallback.detect(image)


def _has_model(name: str) -> bool:
    try:
        return expected_path(name).is_file()
    except Exception:
        return False


def _yunet(**kwargs: Any) -> FaceDetector:
    from selfswap.face.yunet import YuNetDetector

    return YuNetDetector(**kwargs)


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "blazeface_short": lambda **kw: BlazeFaceDetector("short", **kw),
    "blazeface_full": lambda **kw: BlazeFaceDetector("full", **kw),
    "hog": HogDetector,
    "mmod": MmodDetector,
    "blazeface_short+hog": lambda **kw: CascadeDetector(
        BlazeFaceDetector("short", **kw), HogDetector(min_face=kw.get("min_face") or 40)
    ),
    "yunet": _yunet,
}


_REQUIREMENTS: dict[str, Callable[[], bool]] = {
    "blazeface_short": lambda: litert_available() and _has_model("blazeface_short"),
    "blazeface_full": lambda: litert_available() and _has_model("blazeface_full"),
    "hog": lambda: importlib.util.find_spec("dlib") is not None,
    "mmod": lambda: importlib.util.find_spec("dlib") is not None and _has_model("dlib_mmod"),
    "blazeface_short+hog": lambda: litert_available() and _has_model("blazeface_short"),
    "yunet": lambda: hasattr(cv2, "FaceDetectorYN") and _has_model("yunet_int8bq"),
}

# Measured on the LFW eval split, CelebA aligned images, face-free scenes and large photos
# (see benchmarks/results/detection.md): YuNet (confirmed by BlazeFace when it is installed)
# finds as many faces as BlazeFace short-range on LFW / CelebA, needs no tiling on large
# photos and finds no false faces on them, where BlazeFace's tiles find several.
DEFAULT_DETECTOR = "yunet"


def available_detectors() -> list[str]:
    """Names of the registered detectors whose runtime and model file are present."""
    return [name for name in DETECTORS if _REQUIREMENTS[name]()]


class UnknownDetectorError(SelfswapError, ValueError):
    """A face detector name that is not in the registry."""


def get_detector(name: str = DEFAULT_DETECTOR, **kwargs: Any) -> FaceDetector:
    """A new detector by registry name (or ``"default"``); keyword arguments go to its
    constructor. Raises `UnknownDetectorError` (a `SelfswapError`) for an unknown name."""
    if name == "default":
        name = DEFAULT_DETECTOR
    if not isinstance(name, str) or name not in DETECTORS:
        known = ", ".join(DETECTORS)
        raise UnknownDetectorError(
            f"Unknown face detector {name!r}; known detectors: {known} (or 'default')."
        )
    return DETECTORS[name](**kwargs)
