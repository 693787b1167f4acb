"""Temporal smoothing of per-face parameters in video, so swapped faces do not jitter.

- `OneEuroFilter`: the One-Euro adaptive low-pass filter (Casiez, Roussel and Vogel, CHI
  2012) over numpy arrays of any shape. Slow changes (noise on a still face) are smoothed
  strongly, fast ones (a turning head) pass with little lag, because the cut-off frequency
  grows with the signal's speed: `cutoff = min_cutoff + beta * |speed| / scale`. `scale`
  sets the unit of speed (pixels per face size, coefficient standard deviations...), so one
  `beta` suits values of very different magnitudes.
- `scene_cut(prev, frame)`: a hue/saturation histogram distance test between two frames;
  filters are reset at cuts so a face never glides from one shot into the next.
- `FaceTracker`: associates faces across frames by box IoU (optimal assignment) and keeps one
  set of filters per track, one filter per named parameter (box, landmarks, 3DMM...).
- `RegionDetector`: detection for video that looks for each face near where it was in the
  previous frame (a small, downscaled region), and searches the whole frame only now and
  then, so detection costs about the same on a 1080p frame as on a 640x480 one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

Scale = float | np.ndarray | Callable[[np.ndarray, np.ndarray], "float | np.ndarray"]


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential low-pass with this cut-off (Hz) and time step."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter over arrays of a fixed shape.

    min_cutoff: cut-off (Hz) at rest; lower is smoother and lags more.
    beta: how fast the cut-off rises with speed; higher follows motion better.
    d_cutoff: cut-off (Hz) of the speed estimate.
    freq: sampling rate (Hz) used when `__call__` gets no timestamp.
    The speed is taken element-wise and divided by the `scale` given to `__call__`.
    """

    def __init__(
        self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0, freq: float = 25.0
    ) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or freq <= 0 or beta < 0:
            raise ValueError("cut-offs and frequency must be positive, beta non-negative")
        self.min_cutoff, self.beta, self.d_cutoff, self.freq = min_cutoff, beta, d_cutoff, freq
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next value passes unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(
        self, x: np.ndarray, t: float | None = None, scale: float | np.ndarray = 1.0
    ) -> np.ndarray:
        """Filter one sample `x` (any shape; float64 result of the same shape) taken at time
        `t` seconds (default: one `1/freq` step after the previous one)."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            self._t = 0.0 if t is None else t
            return x.copy()
        dt = 1.0 / self.freq if t is None or self._t is None else t - self._t
        if dt <= 0:
            dt = 1.0 / self.freq
        self._t = self._t + dt if t is None else t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        speed = np.abs(self._dx) / np.maximum(np.asarray(scale, np.float64), 1e-12)
        cutoff = self.min_cutoff + self.beta * speed
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        return self._x.copy()


def scene_cut(prev_frame: np.ndarray, frame: np.ndarray, threshold: float = 0.5) -> bool:
    """Whether two consecutive RGB uint8 frames `(H, W, 3)` belong to different shots: the
    Bhattacharyya distance (0 same, 1 disjoint) of their hue/saturation histograms, on
    downscaled copies, exceeds `threshold`."""
    return histogram_distance(prev_frame, frame) > threshold


def _hs_histogram(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    f = 160.0 / max(h, w)
    if f < 1:
        frame = cv2.resize(frame, (max(1, round(w * f)), max(1, round(h * f))), cv2.INTER_AREA)
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [30, 32], [0, 180, 0, 256])
    return cv2.normalize(hist, None, 1.0, 0.0, cv2.NORM_L1)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance in [0, 1] between the hue/saturation histograms of two RGB
    uint8 images."""
    return float(cv2.compareHist(_hs_histogram(a), _hs_histogram(b), cv2.HISTCMP_BHATTACHARYYA))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix `(N, M)` of boxes `(N, 4)` and `(M, 4)` given as x0, y0, x1, y1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def associate(
    prev_boxes: np.ndarray, boxes: np.ndarray, threshold: float = 0.3
) -> list[tuple[int, int]]:
    """Pairs `(i_prev, j_new)` matching boxes by maximal total IoU, each with IoU ≥
    `threshold`."""
    from scipy.optimize import linear_sum_assignment

    iou = box_iou(prev_boxes, boxes)
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(-iou)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if iou[i, j] >= threshold]


def box_size(value: np.ndarray, box: np.ndarray) -> float:
    """A `Scale` for image-space values: the face box's mean side in pixels."""
    return float(max(1.0, ((box[2] - box[0]) + (box[3] - box[1])) / 2))


def camera_scale(value: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A `Scale` for a `(3, 4)` camera: its linear part in its own magnitude, its
    translation column in face box sizes."""
    s = np.ones((3, 4))
    s[:, :3] = max(float(np.linalg.norm(value[:2, :3], axis=1).mean()), 1e-12)
    s[:, 3] = box_size(value, box)
    return s


@dataclass(frozen=True)
class FilterConfig:
    """One-Euro settings for one named parameter; `scale` is a number, an array broadcast
    against the value, or a function `(value, box) → scale`."""

    min_cutoff: float = 1.0
    beta: float = 1.0
    d_cutoff: float = 1.0
    scale: Scale = 1.0


#: Defaults for the parameters of `selfswap.face.types.Face`, in units that make one
#: `beta` sensible: face box sizes per second for image-space values, coefficient standard
#: deviations for the 3DMM (shape about 2.5e5, expression about 0.8).
DEFAULT_FILTERS: dict[str, FilterConfig] = {
    "box": FilterConfig(1.0, 4.0, 1.0, box_size),
    "landmarks68": FilterConfig(1.0, 4.0, 1.0, box_size),
    "landmarks5": FilterConfig(1.0, 4.0, 1.0, box_size),
    "camera": FilterConfig(1.0, 4.0, 1.0, camera_scale),
    "shape": FilterConfig(0.3, 0.5, 1.0, 2.5e5),
    "expression": FilterConfig(1.5, 2.0, 1.0, 0.8),
}


@dataclass
class Track:
    """One face followed across frames: its id, last raw box and filters."""

    id: int
    box: np.ndarray
    filters: dict[str, OneEuroFilter] = field(default_factory=dict)
    missing: int = 0


class FaceTracker:
    """Keeps each face's identity across frames and smooths its parameters.

    freq: frame rate (Hz) for frames given without a time. iou_threshold: minimum box IoU to
    continue a track. max_missing: frames a track survives without a matching face (a missed
    detection does not restart its filters). filters: per-parameter settings, over
    `DEFAULT_FILTERS`; parameters without settings pass unfiltered.
    """

    def __init__(
        self,
        freq: float = 25.0,
        iou_threshold: float = 0.3,
        max_missing: int = 5,
        filters: Mapping[str, FilterConfig] | None = None,
    ) -> None:
        self.freq, self.iou_threshold, self.max_missing = freq, iou_threshold, max_missing
        self.configs = {**DEFAULT_FILTERS, **(filters or {})}
        self.tracks: list[Track] = []
        self._next_id = 0
        self._clock = -1.0 / freq

    def reset(self) -> None:
        """Forget every track (call at a scene cut; ids keep increasing)."""
        self.tracks = []

    def update(
        self,
        faces: Sequence[Mapping[str, np.ndarray]],
        t: float | None = None,
        cut: bool = False,
    ) -> list[tuple[int, dict[str, np.ndarray]]]:
        """Smooth one frame's faces.

        faces: one mapping per face, with a "box" `(4,)` (x0, y0, x1, y1) and any other
        arrays to smooth (e.g. "landmarks68", "camera", "shape", "expression").
        t: the frame's time in seconds (default: 1/freq after the previous frame).
        cut: a scene cut before this frame (resets all tracks).
        Returns, per face in input order, its track id and its smoothed parameters.
        """
        if cut:
            self.reset()
        # one clock for all tracks, so a track that skipped frames sees the real time step
        self._clock = self._clock + 1.0 / self.freq if t is None else float(t)
        t = self._clock
        boxes = np.array([np.asarray(f["box"], np.float64)[:4] for f in faces]).reshape(-1, 4)
        prev = np.array([tr.box for tr in self.tracks]).reshape(-1, 4)
        pairs = associate(prev, boxes, self.iou_threshold)
        track_of = {j: self.tracks[i] for i, j in pairs}
        matched = {i for i, _ in pairs}
        for i, track in enumerate(self.tracks):
            if i not in matched:
                track.missing += 1
        self.tracks = [tr for tr in self.tracks if tr.missing <= self.max_missing]
        out = []
        for j, face in enumerate(faces):
            track = track_of.get(j)
            if track is None:
                track = Track(self._next_id, boxes[j])
                self._next_id += 1
                self.tracks.append(track)
            track.box, track.missing = boxes[j], 0
            out.append((track.id, self._smooth(track, face, boxes[j], t)))
        return out

    def _smooth(
        self, track: Track, face: Mapping[str, np.ndarray], box: np.ndarray, t: float
    ) -> dict[str, np.ndarray]:
        result = {}
        for key, value in face.items():
            config = self.configs.get(key)
            if config is None or value is None:
                result[key] = value
                continue
            value = np.asarray(value, np.float64)
            flt = track.filters.get(key)
            if flt is None:
                flt = track.filters[key] = OneEuroFilter(
                    config.min_cutoff, config.beta, config.d_cutoff, self.freq
                )
            scale = config.scale(value, box) if callable(config.scale) else config.scale
            result[key] = flt(value, t, scale)
        return result


#: Ratio between the region sizes `RegionDetector` uses.
_LADDER = 2**0.25


class BlinkGate:
    """How far each tracked face's eyes depart from their usual opening (the median of its
    last `seconds` of frames, `selfswap.geometry.regions.eye_opening`), as the gated eyes'
    strength (`regions.departure_strength`): a blink or a squint takes the footage's eyes,
    a face's habitual eye shape does not (the swap's `eye_gate`)."""

    def __init__(self, fps: float, seconds: float = 2.0) -> None:
        self.window = max(int(round(fps * seconds)), 1)
        self._history: dict[int, deque[float]] = {}

    def reset(self) -> None:
        self._history.clear()

    def usual(self, track: int) -> float:
        """A track's usual opening (NaN before its first frame)."""
        history = self._history.get(track)
        return float(np.median(history)) if history else float("nan")

    def update(self, track_ids: Sequence[int], landmarks68: Sequence[np.ndarray]) -> np.ndarray:
        """The strengths `(N,)` for these tracks' faces now, this frame counted."""
        from selfswap.geometry.regions import departure_strength, eye_opening

        openings, usual = [], []
        for track, marks in zip(track_ids, landmarks68):
            opening = float(eye_opening(np.asarray(marks)[None])[0])
            self._history.setdefault(track, deque(maxlen=self.window)).append(opening)
            openings.append(opening)
            usual.append(self.usual(track))
        return departure_strength(np.array(openings), np.array(usual))


class RegionDetector:
    """Face detection for video that looks where the faces were.

    Wraps a detector (`detect(image) -> list[Detection]`, best first, and a `name`; see
    `selfswap.face.detect`) and is used in its place (e.g. as a `FaceAnalyzer`'s detector).
    Each face given to `follow` (the previous frame's) is looked for in its own region: its
    box grown by `margin` box sizes on every side, as a square whose size and place are
    rounded to a coarse grid (so it stays put while the face moves little, and the detector's
    boxes jitter no more than on the whole frame), downscaled to at most `side` pixels. The
    cost is that of a small image whatever the frame size, and the detector sees the face
    large and whole. The detection in a region that overlaps the followed box most (IoU at
    least `min_iou`) continues that face; `lost` says whether a followed face was not found
    in the last call. (The default margin was chosen on two talking-head clips: with it the
    swapped face's landmark jitter is that of searching every whole frame; 0.6 gave 13 % more
    on one of them.)

    With `whole` set, or when nothing is followed, the whole image is also searched (with
    the wrapped detector as it is) for faces that are not followed yet; its detections of
    faces already found in their region are dropped, so a followed face's box always comes
    from a region pass and does not jump when the whole frame is searched.
    """

    def __init__(
        self, detector: Any, margin: float = 0.4, side: int = 256, min_iou: float = 0.3
    ) -> None:
        if margin < 0 or side < 32 or not 0 < min_iou <= 1:
            raise ValueError("margin >= 0, side >= 32 and 0 < min_iou <= 1 are required")
        self.detector = detector
        self.margin, self.side, self.min_iou = margin, side, min_iou
        self.whole = True
        self.lost = False
        self.boxes: list[np.ndarray] = []

    @property
    def name(self) -> str:
        return self.detector.name

    def follow(self, boxes: Sequence[np.ndarray], whole: bool = False) -> None:
        """Look for these faces `(x0, y0, x1, y1)` near their place in the next image; with
        `whole`, also search the whole image for others."""
        self.boxes = [np.asarray(b, np.float64)[:4] for b in boxes]
        self.whole = whole

    def detect(self, image_rgb: np.ndarray) -> list:
        """Faces in an RGB uint8 image `(H, W, 3)`, best score first, in its pixels."""
        found: list = []
        self.lost = False
        for box in self.boxes:
            hit = self._in_region(image_rgb, box)
            if hit is None:
                self.lost = True
            elif not found or box_iou(np.array([d.box for d in found]), hit.box).max() < 0.5:
                found.append(hit)
        if self.whole or not self.boxes:
            known = np.array([d.box for d in found]).reshape(-1, 4)
            for d in self.detector.detect(image_rgb):
                if not len(known) or box_iou(known, d.box).max() < self.min_iou:
                    found.append(d)
        return sorted(found, key=lambda d: -d.score)

    def _in_region(self, image: np.ndarray, box: np.ndarray):
        """The detection continuing the face at `box`, in image pixels, or None."""
        height, width = image.shape[:2]
        x0, y0, x1, y1 = box
        # A square region on a coarse grid of sizes and places, so that it stays put while
        # the face moves little: the detector then sees the same pixels at the same scale and
        # its boxes jitter no more than on the whole frame.
        half = (0.5 + self.margin) * max(x1 - x0, y1 - y0, 8.0)
        half = _LADDER ** math.ceil(math.log(half, _LADDER))
        step = half / 4
        cx, cy = round((x0 + x1) / 2 / step) * step, round((y0 + y1) / 2 / step) * step
        rx0, ry0 = max(round(cx - half), 0), max(round(cy - half), 0)
        rx1, ry1 = min(round(cx + half), width), min(round(cy + half), height)
        if rx1 - rx0 < 16 or ry1 - ry0 < 16:
            return None
        region = image[ry0:ry1, rx0:rx1]
        scale = min(1.0, self.side / (2 * half))
        if scale < 1.0:
            size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        else:
            region = np.ascontiguousarray(region)
        stretch = np.array([region.shape[1] / (rx1 - rx0), region.shape[0] / (ry1 - ry0)])
        detections = self.detector.detect(region)
        if not detections:
            return None
        offset = np.array([rx0, ry0], np.float64)
        boxes = np.array([d.box for d in detections], np.float64)
        boxes = boxes / np.tile(stretch, 2) + np.tile(offset, 2)
        iou = box_iou(box, boxes)[0]
        best = int(iou.argmax())
        if iou[best] < self.min_iou:
            return None

        def to_image(points: np.ndarray | None) -> np.ndarray | None:
            if points is None:
                return None
            return (np.asarray(points, np.float64) / stretch + offset).astype(np.float32)

        d = detections[best]
        return replace(
            d,
            box=tuple(float(v) for v in boxes[best]),
            landmarks5=to_image(d.landmarks5),
            keypoints=to_image(d.keypoints),
        )
