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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

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
