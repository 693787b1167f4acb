"""YuNet (OpenCV Zoo, int8 block-quantised ONNX) run by ONNX Runtime on a pyramid.

YuNet is a small anchor-free detector: one pass over the whole image finds faces from about
16 px (recall 0.8) to about 260 px; larger faces are found less reliably (measured on the
astronaut and Grace Hopper: score 0.95 up to 260 px, 0.67-0.74 at ~470 px, with extra false
boxes). So the image is scanned as a short pyramid instead of in tiles:

- the finest level is scaled so that a ``min_face`` face is ``MODEL_MIN_FACE`` px (never
  upscaled; at least ``FINE_SIDE`` px on the long side), the next levels halve it until the
  long side is at most ``COARSE_SIDE``;
- each level except the coarsest keeps only faces up to ``LEVEL_MAX_FACE`` px at its own
  scale (the next level sees them at half that size, in YuNet's reliable range), which drops
  the large false boxes YuNet draws on big smooth areas;
- faces that are large at the finest level (``CONFIDENT_FACE``) need a higher score
  (``confident_threshold``), as real faces that size get: this drops the false faces YuNet
  finds on blurred blobs (upscaled galaxies and coins);
- levels are merged by NMS.

A 4000x3000 photo with ``min_face=40`` costs four passes (2400x1800, 1200x900, 600x450,
300x225: 1.33x the first), about 0.25-0.7 s measured on the shared 2-core machine, instead of
hundreds of BlazeFace tiles; the cost grows with the pixel count.

``verify`` (on by default when BlazeFace is usable) re-checks every YuNet face with the
BlazeFace short-range model on a crop around it where the face fills about 45% of the model
input: a face must be seen by both detectors. The two make different mistakes on textures, so
this removes the false faces that large photos otherwise give (each extra megapixel is another
chance of one) at a cost of one 128x128 BlazeFace run (~2 ms) per candidate.

Boxes are calibrated to dlib's HOG convention from the 5 landmarks, like BlazeFace's (see
`selfswap.face.detect._dlib_style_box`), so that dlib's landmark predictors work on them.

Each pass runs the network with ONNX Runtime (`YuNetOnnx`), with the pre- and
post-processing of OpenCV's ``cv2.FaceDetectorYN`` (``modules/objdetect/src/face_detect.cpp``)
redone in numpy: the same faces as ``cv2.FaceDetectorYN`` (measured: boxes and landmarks
within 2e-4 px, scores within 2e-7; `tests/test_detect.py`) in 0.5-0.6x its time on one
thread (see benchmarks/results/detection.md). ONNX Runtime refuses the published file as it is (its
``DequantizeLinear`` nodes use ``block_size``), so the int8 weights are dequantised once at
load time into fp32 initializers. ``backend="opencv"`` runs ``cv2.FaceDetectorYN`` instead.
The coarser levels are scanned on a second thread while the finest is
(``YuNetDetector.concurrent_levels``): 640x480 23.5 → 19.8 ms, 4000x3000 326 → 249 ms.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from selfswap.errors import SelfswapError
from selfswap.face.detect import (
    BlazeFaceDetector,
    Detection,
    FaceDetector,
    _clip_box,
    _dlib_style_box,
    _has_model,
    _iou,
    litert_available,
)
from selfswap.models.onnx_files import cpu_session, fold_quantization, keep, open_kept
from selfswap.models.registry import catalog, model_path
from selfswap.paths import selfswap_home

MODEL = "yunet_int8bq"

# Ridge fit on LFW *train* of YuNet's raw box + landmarks against dlib HOG boxes
# (`python benchmarks/bench_detection.py --fit-box yunet`), same features as BlazeFace's.
# Residual std (dx, dy, log scale) on LFW eval: raw box 0.078, 0.045, 0.078; calibrated 0.034,
# 0.039, 0.077 (bias of the raw box: -0.021, 0.056, 0.108).
BOX_FIT = (
    (0.206, -0.021, 0.116, 0.042, 0.264, -0.04, 0.077, 0.029, -0.007),
    (-0.046, 0.213, 0.064, 0.203, 0.009, 0.191, 0.0, -0.006, 0.079),
    (-0.092, -0.051, 0.004, -0.162, -0.024, 0.082, 0.066, 0.118, 0.014),
)


def create_yunet(score_threshold: float = 0.6, nms_iou: float = 0.3, top_k: int = 5000):
    """A `cv2.FaceDetectorYN` on the registered YuNet file. OpenCV's log is set to errors
    only first: its new graph engine otherwise prints a warning on every load."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2.FaceDetectorYN.create(
        str(model_path(MODEL)), "", (320, 320), score_threshold, nms_iou, top_k
    )


def opencv_yunet_available() -> bool:
    """Whether the installed OpenCV has ``cv2.FaceDetectorYN``."""
    return hasattr(cv2, "FaceDetectorYN")


#: Bump when `_converted_model_bytes` changes, so that copies kept from before are not used.
_CONVERSION_VERSION = 2


def _kept_model_path() -> Path:
    """Where the converted file is kept (`YuNetOnnx`): named by the source's sha256, so a
    different YuNet file gets its own."""
    digest = catalog()[MODEL].sha256[:16]
    return selfswap_home() / "cache" / f"yunet_fp32_v{_CONVERSION_VERSION}_{digest}.onnx"


@cache
def _converted_model_bytes() -> bytes:
    """The YuNet file made loadable by ONNX Runtime: every ``DequantizeLinear`` of constants
    folded into an fp32 initializer, the input's height and width left free."""
    import onnx

    model = fold_quantization(onnx.load(str(model_path(MODEL))))
    graph = model.graph
    del graph.value_info[:]  # shapes recorded for the 640x640 export
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for out in graph.output:
        for k, dim in enumerate(out.type.tensor_type.shape.dim):
            dim.dim_param = f"{out.name}_{k}"
    return model.SerializeToString()


class YuNetOnnx:
    """YuNet run by ONNX Runtime, with the pre- and post-processing of OpenCV's
    ``FaceDetectorYN`` (``modules/objdetect/src/face_detect.cpp``), on BGR images of any size.

    ``detect`` gives what ``cv2.FaceDetectorYN.detect`` does (except for no face: an empty
    array instead of ``None``): rows of x, y, w, h, 5 landmarks (x, y), score, best first.
    """

    DIVISOR = 32  # the network's input sides must be multiples of this
    STRIDES = (8, 16, 32)

    def __init__(
        self,
        score_threshold: float = 0.6,
        nms_iou: float = 0.3,
        top_k: int = 5000,
        threads: int = 1,
    ) -> None:
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.top_k = top_k
        model_path(MODEL)  # a missing or damaged model file is still reported as such
        # converted once and kept: the conversion needs the `onnx` package, whose import
        # alone takes ~1.7 s
        kept = open_kept(_kept_model_path(), threads)
        if kept is None:
            converted = _converted_model_bytes()
            keep(_kept_model_path(), converted)
            kept = converted, cpu_session(converted, threads)
        self.session = kept[1]
        self._input = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        self._outputs = [
            f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in self.STRIDES
        ]
        if not set(self._outputs) <= set(names):
            raise SelfswapError(f"Unexpected YuNet outputs: {names}")

    def blob(self, bgr: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) float32 input: the image zero-padded on the right and bottom to
        multiples of 32, BGR, no scaling (``copyMakeBorder`` + ``blobFromImage``)."""
        h, w = bgr.shape[:2]
        pad_h = -(-h // self.DIVISOR) * self.DIVISOR
        pad_w = -(-w // self.DIVISOR) * self.DIVISOR
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
        blob[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        return blob

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        """(N, 15) float32 faces in a BGR uint8 image (see the class doc)."""
        blob = self.blob(bgr)
        outs = self.session.run(self._outputs, {self._input: blob})
        return self.decode(outs, blob.shape[3])

    def decode(self, outs: list[np.ndarray], pad_w: int) -> np.ndarray:
        """Faces from the 12 outputs (cls, obj, bbox, kps at strides 8, 16, 32) of an input
        ``pad_w`` wide: grid decoding, score threshold, then NMS, as OpenCV does."""
        n = len(self.STRIDES)
        rows = []
        for i, stride in enumerate(self.STRIDES):
            cls, obj = outs[i].reshape(-1), outs[i + n].reshape(-1)
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            idx = np.flatnonzero(score >= self.score_threshold)  # row-major, as OpenCV
            if not len(idx):
                continue
            grid = np.stack([idx % (pad_w // stride), idx // (pad_w // stride)], 1)
            grid = grid.astype(np.float32)
            bbox = outs[i + 2 * n].reshape(-1, 4)[idx]
            kps = outs[i + 3 * n].reshape(-1, 5, 2)[idx]
            size = np.exp(bbox[:, 2:]) * np.float32(stride)
            corner = (grid + bbox[:, :2]) * np.float32(stride) - size / np.float32(2)
            marks = (kps + grid[:, None]) * np.float32(stride)
            rows.append(
                np.hstack([corner, size, marks.reshape(-1, 10), score[idx, None]]).astype(
                    np.float32
                )
            )
        if not rows:
            return np.zeros((0, 15), np.float32)
        faces = np.concatenate(rows)
        if len(faces) == 1:
            return faces
        # OpenCV runs NMS on the boxes truncated to integers (Rect2i)
        boxes = np.trunc(faces[:, :4]).astype(np.float64)
        keep = cv2.dnn.NMSBoxes(
            boxes, faces[:, 14].tolist(), self.score_threshold, self.nms_iou, 1.0, self.top_k
        )
        return faces[np.asarray(keep, np.int64).reshape(-1)]


class YuNetDetector(FaceDetector):
    """YuNet on an image pyramid, optionally confirmed by BlazeFace (see the module doc).

    Gives ``landmarks5``: (5, 2) pixels, in the order eye on the image left, eye on the image
    right, nose tip, mouth corner on the image left, mouth corner on the image right; and
    ``keypoints``: the first four of BlazeFace's six (eyes, nose tip, mouth centre).

    ``backend``: ``"onnxruntime"`` (`YuNetOnnx`, one thread) or ``"opencv"``
    (``cv2.FaceDetectorYN``, the former path); both give the same faces.
    """

    # Faces at least this wide (px at the finest level) need ``confident_threshold``: measured
    # with YuNet alone, real faces that size score >= 0.87 on LFW eval (300 images) and have a
    # 0.5% quantile of 0.83 on CelebA (300), while the false faces on upscaled face-free scenes
    # (galaxies, coins, 150-330 px at 4000x3000) score 0.61-0.74. Smaller faces score lower
    # (recall of 20-24 px faces: 0.95-0.98 at 0.6, 0.92-0.97 at 0.7), so they keep
    # ``score_threshold``.
    CONFIDENT_FACE = 64
    # px at the model's input; measured recall of LFW faces pasted into a scene at 0.6: 0.73 at
    # 16 px, 0.95 at 20 px, 0.98 at 24 px, 0.97-1.0 from 32 px
    MODEL_MIN_FACE = 24
    LEVEL_MAX_FACE = 192  # px at a level's scale, except on the coarsest level
    FINE_SIDE = 640  # the finest level is never smaller than this (long side)
    COARSE_SIDE = 400  # the pyramid stops at a level whose long side is at most this
    #: The coarser levels scanned on a second thread while the finest is (ONNX Runtime
    #: backend; the same faces either way). False: one thread, for measuring.
    concurrent_levels: bool = True

    def __init__(
        self,
        min_face: int | None = 40,
        score_threshold: float = 0.6,
        confident_threshold: float = 0.8,
        nms_iou: float = 0.3,
        verify: bool | None = None,
        verify_threshold: float = 0.5,
        dlib_box: bool = True,
        backend: str = "onnxruntime",
    ) -> None:
        super().__init__()
        if backend not in ("onnxruntime", "opencv"):
            raise SelfswapError(f"YuNet backend must be 'onnxruntime' or 'opencv', not {backend!r}")
        self.name = "yunet"
        self.backend = backend
        self.min_face = min_face
        self.score_threshold = score_threshold
        self.confident_threshold = confident_threshold
        self.nms_iou = nms_iou
        self.verify = verify
        self.verify_threshold = verify_threshold
        self.dlib_box = dlib_box
        self._box_fit = np.array(BOX_FIT, np.float64)
        self._verifier: BlazeFaceDetector | None = None
        self._levels_executor: ThreadPoolExecutor | None = None

    def _level_thread(self) -> ThreadPoolExecutor:
        if self._levels_executor is None:
            self._levels_executor = ThreadPoolExecutor(1, thread_name_prefix="yunet-levels")
        return self._levels_executor

    def _load(self) -> Any:
        if self.backend == "onnxruntime":
            return YuNetOnnx(self.score_threshold, self.nms_iou)
        if not opencv_yunet_available():
            raise SelfswapError("Detector 'yunet' needs OpenCV 4.8 or newer (cv2.FaceDetectorYN).")
        return create_yunet(self.score_threshold, self.nms_iou)

    def _use_verifier(self) -> bool:
        if self.verify is None:
            self.verify = litert_available() and _has_model("blazeface_short")
        return bool(self.verify)

    def levels(self, h: int, w: int) -> list[float]:
        """Scales of the pyramid levels, finest first."""
        side = max(h, w)
        fine = 1.0
        if self.min_face:
            fine = min(1.0, max(self.MODEL_MIN_FACE / self.min_face, self.FINE_SIDE / side))
        scales = [fine]
        # halve down to COARSE_SIDE, but not below a short side that could still hold a face
        while side * scales[-1] > self.COARSE_SIDE and min(h, w) * scales[-1] / 2 >= 16:
            scales.append(scales[-1] / 2)
        return scales

    def _pass(self, bgr: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw boxes (N, 4), landmarks (N, 5, 2), scores (N,) on one pyramid level (BGR),
        in the pixels of the w x h image."""
        net = self.model()
        if isinstance(net, YuNetOnnx):
            found = net.detect(bgr)
        else:
            net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, found = net.detect(bgr)
        if found is None or not len(found):
            return np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0)
        found = found.astype(np.float64)
        sx, sy = w / bgr.shape[1], h / bgr.shape[0]
        boxes = found[:, :4].copy()
        boxes[:, 2:] += boxes[:, :2]
        boxes *= [sx, sy, sx, sy]
        marks = found[:, 4:14].reshape(-1, 5, 2) * [sx, sy]
        return boxes, marks, found[:, 14]

    def _detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        scales = self.levels(h, w)
        levels, level = [], image
        for scale in scales:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            if (level.shape[1], level.shape[0]) != size:  # each level from the previous one
                # INTER_AREA is ~6x slower than INTER_LINEAR at fractional ratios (120 against
                # 18 ms from 4000x3000 to 2400x1800); above 1/2, bilinear hardly aliases
                ratio = size[0] / level.shape[1]
                mode = cv2.INTER_LINEAR if ratio > 0.5 else cv2.INTER_AREA
                level = cv2.resize(level, size, interpolation=mode)
            levels.append(level)

        def scan(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            boxes, marks, scores = self._pass(cv2.cvtColor(levels[k], cv2.COLOR_RGB2BGR), w, h)
            if k < len(scales) - 1:
                keep = (boxes[:, 2] - boxes[:, 0]) * scales[k] <= self.LEVEL_MAX_FACE
                boxes, marks, scores = boxes[keep], marks[keep], scores[keep]
            return boxes, marks, scores

        coarser = None
        if self.concurrent_levels and self.backend == "onnxruntime" and len(levels) > 1:
            # the coarser levels on a thread of their own while this one scans the finest
            # (ONNX Runtime runs sessions concurrently; cv2's detector is not thread-safe)
            coarser = self._level_thread().submit(lambda: [scan(k) for k in range(1, len(levels))])
        parts = [scan(0)]
        parts += coarser.result() if coarser else [scan(k) for k in range(1, len(levels))]
        boxes = np.concatenate([p[0] for p in parts])
        marks = np.concatenate([p[1] for p in parts])
        scores = np.concatenate([p[2] for p in parts])
        large = (boxes[:, 2] - boxes[:, 0]) * scales[0] >= self.CONFIDENT_FACE
        sure = ~large | (scores >= self.confident_threshold)
        boxes, marks, scores = boxes[sure], marks[sure], scores[sure]
        out = []
        for i in self._nms(boxes, scores):
            if self._use_verifier() and not self._confirmed(image, boxes[i]):
                continue
            out.append(self._detection(boxes[i], marks[i], scores[i], w, h))
        return out

    def _nms(self, boxes: np.ndarray, scores: np.ndarray) -> list[int]:
        order = list(np.argsort(-scores))
        keep: list[int] = []
        while order:
            best = order.pop(0)
            keep.append(int(best))
            if order:
                rest = np.array(order)
                order = list(rest[_iou(boxes[best], boxes[rest]) <= self.nms_iou])
        return keep

    def _confirmed(self, image: np.ndarray, box: np.ndarray) -> bool:
        """Whether BlazeFace short-range also sees a face on this box."""
        if self._verifier is None:
            self._verifier = BlazeFaceDetector(
                "short", min_face=None, score_threshold=self.verify_threshold, dlib_box=False
            )
        side = 2.2 * max(box[2] - box[0], box[3] - box[1])
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        n = max(1, round(side))
        crop = np.zeros((n, n, 3), np.uint8)
        h, w = image.shape[:2]
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + n, w), min(y0 + n, h)
        if ix1 <= ix0 or iy1 <= iy0:
            return False
        crop[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = image[iy0:iy1, ix0:ix1]
        found, _, _ = self._verifier._run(crop)
        if not len(found):
            return False
        local = box - np.array([x0, y0, x0, y0], np.float64)
        return bool((_iou(local, found.astype(np.float64)) > 0.3).any())

    def _detection(
        self, box: np.ndarray, marks: np.ndarray, score: float, w: int, h: int
    ) -> Detection:
        keypoints = np.vstack([marks[:3], marks[3:5].mean(0, keepdims=True)])
        if self.dlib_box:
            box = _dlib_style_box(box, keypoints, self._box_fit)
        return Detection(
            _clip_box(tuple(box.tolist()), w, h),
            float(score),
            landmarks5=marks.astype(np.float32),
            keypoints=keypoints.astype(np.float32),
        )
