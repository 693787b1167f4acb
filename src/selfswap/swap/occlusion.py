"""What of the target face a swap must not paint over (issue #17): the target's inner mouth,
hands, and whatever else covers the face.

Each part gives a soft mask `(N, R, R)` in [0, 1] in face-crop space (the canonical crop of
`selfswap.face.align`), 1 where the target's own pixel stays. `hold_back` multiplies the
paste-back masks by `1 − keep`, so the occluder stays in front of the swapped face; the
paste-back then erodes and feathers the result as usual (`selfswap.swap.blend`), which grows
the kept region by the blur radius (3 % of R) and leaves it bit-identical.

- **keep_mouth**: the inner-lip polygon (68-point landmarks 60–67), grown by `MOUTH_GROW`·R
  and softened; a closed mouth keeps nothing.
- **hands**: MediaPipe palm detection and hand landmarks (TFLite, run with `ai-edge-litert`
  like the BlazeFace detector; the `lite` models by default), once per frame on a square
  `HAND_SEARCH` face widths wide around the faces (one square per group of nearby faces);
  the landmark model only runs for palms whose hand box reaches a face. A hand is the convex
  hull of its 21 points plus its finger bones drawn one finger wide.
- **segmenter**: selfswap's own small occlusion segmenter (`selfswap.nets.occluder`), trained
  on synthetic occlusions and real hand cut-outs over LFW training faces
  (`selfswap.train.occluder`).

`Occlusion` holds the options and the lazily loaded models; `configure(engine, ...)` puts
one on a `FaceSwapper`, whose `swap_frame` calls `hold_back` on its paste masks after the
seam colour match (which must see where the face region ends, not the occluders' rims).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from selfswap.errors import SelfswapError
from selfswap.face import align
from selfswap.swap.options import OCCLUSION_CHOICES

#: keep_mouth: growth of the inner-lip polygon and its soft edge, as fractions of R, and the
#: polygon area (fraction of R²) below which the mouth counts as closed (nothing kept): 16 px²
#: at R = 128; the astronaut's smile is 86, Grace Hopper's closed lips 2.
MOUTH_GROW = 0.012
MOUTH_SOFT = 0.008
MOUTH_OPEN = 0.001

#: hands: palm search square around a face, in face widths (centred on the face box).
HAND_SEARCH = 3.0
#: Palm score (MediaPipe's default 0.5) and hand-presence threshold of the landmark model.
PALM_SCORE = 0.5
HAND_PRESENCE = 0.5
#: At most this many hands per searched square (MediaPipe's default max_num_hands is 2).
MAX_HANDS = 2
#: MediaPipe model variant of the hand tracker: "lite" or "full". On benchmarks/occlusion.py
#: the lite models add 10.1 ms CPU per face (full: 12.5) and keep 62 % of real hands (66 %).
HAND_MODELS = "lite"
#: Faces whose search squares, joined, are at most this much wider than the largest one
#: share one palm detection.
HAND_JOIN = 1.5
#: Extra dilation of a hand's region, in finger widths (the points run along finger axes).
HAND_GROW = 0.25

# The 21 hand points: wrist 0, thumb 1-4, index 5-8, middle 9-12, ring 13-16, pinky 17-20.
_BONES = ((0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16),
          (0, 17, 18, 19, 20), (5, 9, 13, 17))  # fmt: skip


def _check_points(points: np.ndarray, count: int, name: str) -> np.ndarray:
    p = np.asarray(points, np.float64)
    if p.ndim != 3 or p.shape[1:] != (count, 2):
        raise ValueError(f"{name} must be (N, {count}, 2), got {p.shape}")
    return p


def mouth_mask(landmarks68: np.ndarray, size: int) -> np.ndarray:
    """The target's inner mouth to keep. landmarks68: `(N, 68, 2)` in crop pixels; returns
    `(N, R, R)` float32 in [0, 1] (all 0 for a closed mouth)."""
    points = _check_points(landmarks68, 68, "landmarks68")
    grow = max(1, round(MOUTH_GROW * size))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2)
    sigma = MOUTH_SOFT * size
    out = np.zeros((len(points), size, size), np.float32)
    for i, p in enumerate(points):
        inner = np.round(p[60:68] * 16).astype(np.int32)  # 4 fractional bits
        if cv2.contourArea(inner.astype(np.float32) / 16) < MOUTH_OPEN * size * size:
            continue  # closed mouth
        m = np.zeros((size, size), np.uint8)
        cv2.fillPoly(m, [inner], 255, cv2.LINE_AA, shift=4)
        m = cv2.dilate(m, kernel).astype(np.float32) / 255.0
        # a soft edge outside the grown polygon, never below it
        out[i] = np.maximum(m, cv2.GaussianBlur(m, (0, 0), sigma)) if sigma > 0.3 else m
    return out


def hand_mask(hands: list[np.ndarray], matrix: np.ndarray, size: int) -> np.ndarray:
    """Region `(R, R)` float32 of hands (each `(21, 2)` frame pixels) in the crop that
    `matrix` (frame → crop) defines: hull of the points and the finger bones, one finger
    wide, grown by `HAND_GROW` finger widths."""
    out = np.zeros((size, size), np.uint8)
    for hand in hands:
        one = np.zeros((size, size), np.uint8)
        p = align.transform_points(np.asarray(hand, np.float64), matrix)
        # finger width ≈ distance between neighbouring knuckles (index-middle, middle-ring)
        finger = 0.5 * (np.linalg.norm(p[5] - p[9]) + np.linalg.norm(p[9] - p[13]))
        thick = max(1, round(finger))
        fixed = np.round(p * 16).astype(np.int32)
        cv2.fillConvexPoly(one, cv2.convexHull(fixed), 255, cv2.LINE_AA, shift=4)
        for bone in _BONES:
            cv2.polylines(one, [fixed[list(bone)]], False, 255, thick, cv2.LINE_AA, shift=4)
        for q in fixed:
            cv2.circle(one, tuple(int(v) for v in q), 16 * thick // 2, 255, -1, cv2.LINE_AA, 4)
        grow = round(HAND_GROW * finger)
        if grow > 0:
            one = cv2.dilate(one, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
        out = np.maximum(out, one)
    return out.astype(np.float32) / 255.0


def litert_interpreter(name: str, threads: int = 1):
    """A TFLite interpreter of catalog model `name` (allocated), run by `ai-edge-litert`."""
    from selfswap.face.detect import litert_available
    from selfswap.models import model_path

    if not litert_available():
        raise SelfswapError(
            f"Model '{name}' needs the TFLite runtime: `pip install ai-edge-litert`."
        )
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path(name)), num_threads=threads)
    interp.allocate_tensors()
    return interp


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -60, 60)))


class HandLandmarker:
    """MediaPipe's two-stage hand tracker without MediaPipe: palm detection
    (`palm_detection_{variant}`, 192x192) on a square region, then hand landmarks
    (`hand_landmark_{variant}`, 224x224) in the rotated box MediaPipe derives from each palm;
    variant "lite" or "full". Stateless between calls. `hands(image, region)` → list of
    `(21, 2)` points in image pixels."""

    PALM_SIZE, HAND_SIZE = 192, 224

    def __init__(self, threads: int = 1, variant: str = HAND_MODELS) -> None:
        from selfswap.face.detect import _blaze_anchors

        if variant not in ("lite", "full"):
            raise ValueError(f"hand model variant must be 'lite' or 'full', not {variant!r}")
        self.threads = threads
        self.variant = variant
        spec = SimpleNamespace(size=self.PALM_SIZE, strides=(8, 16, 16, 16), anchors_per_layer=2)
        self.anchors = _blaze_anchors(spec)  # the SSD layout MediaPipe's palm model uses

    @property
    def model_names(self) -> tuple[str, str]:
        return f"palm_detection_{self.variant}", f"hand_landmark_{self.variant}"

    @cached_property
    def _palm(self):
        interp = litert_interpreter(self.model_names[0], self.threads)
        outs = sorted(interp.get_output_details(), key=lambda d: int(d["shape"][-1]))
        return interp, interp.get_input_details()[0]["index"], outs[1]["index"], outs[0]["index"]

    @cached_property
    def _hand(self):
        interp = litert_interpreter(self.model_names[1], self.threads)
        outs = {d["name"]: d["index"] for d in interp.get_output_details()}
        # Identity: 21 x (x, y, z) in input pixels; Identity_1: hand presence
        return interp, interp.get_input_details()[0]["index"], outs["Identity"], outs["Identity_1"]

    def palms(self, image: np.ndarray, region: tuple[int, int, int, int]) -> list[np.ndarray]:
        """Palm detections in the square `region` (x0, y0, side, side may leave the image):
        rows `(cx, cy, w, h, wrist_x, wrist_y, middle_x, middle_y)` in image pixels, best
        first, after non-maximum suppression."""
        interp, inp, reg_idx, cls_idx = self._palm
        x0, y0, side, _ = region
        s = self.PALM_SIZE
        to_input = np.array([[s / side, 0, -x0 * s / side], [0, s / side, -y0 * s / side]])
        x = cv2.warpAffine(image, to_input, (s, s), flags=cv2.INTER_AREA
                           if side > s else cv2.INTER_LINEAR, borderValue=0)  # fmt: skip
        interp.set_tensor(inp, (x.astype(np.float32) / 255.0)[None])
        interp.invoke()
        scores = _sigmoid(interp.get_tensor(cls_idx)[0, :, 0])
        keep = np.nonzero(scores >= PALM_SCORE)[0]
        if not len(keep):
            return []
        raw = interp.get_tensor(reg_idx)[0][keep]
        anchors = self.anchors[keep] * s
        centre = raw[:, 0:2] + anchors
        size = raw[:, 2:4]
        wrist = raw[:, 4:6] + anchors
        middle = raw[:, 8:10] + anchors  # keypoint 2: middle finger knuckle
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
        order = np.argsort(-scores[keep])
        chosen: list[int] = []
        for i in order:
            if all(_iou(boxes[i], boxes[j]) < 0.3 for j in chosen):
                chosen.append(int(i))
            if len(chosen) == MAX_HANDS:
                break
        back = side / s
        rows = np.concatenate([centre, size, wrist, middle], 1)[chosen] * back
        rows[:, [0, 4, 6]] += x0
        rows[:, [1, 5, 7]] += y0
        return list(rows)

    @staticmethod
    def hand_box(palm: np.ndarray) -> tuple[float, float, float, float]:
        """MediaPipe's palm → hand box: shifted half a box towards the fingers, squared,
        x2.6. Returns `(cx, cy, side, rotation)` in image pixels and radians."""
        cx, cy, w, h, wx, wy, mx, my = (float(v) for v in palm)
        rotation = np.pi / 2 - np.arctan2(-(my - wy), mx - wx)
        rotation = (rotation + np.pi) % (2 * np.pi) - np.pi
        cx, cy = cx + 0.5 * h * np.sin(rotation), cy - 0.5 * h * np.cos(rotation)
        return cx, cy, 2.6 * max(w, h), rotation

    def landmarks(self, image: np.ndarray, palm: np.ndarray) -> tuple[np.ndarray, float]:
        """The 21 points `(21, 2)` (image pixels) of the hand a palm detection found, and the
        model's hand-presence score."""
        cx, cy, side, rotation = self.hand_box(palm)
        cos, sin = np.cos(rotation), np.sin(rotation)
        s = self.HAND_SIZE
        a = side / s * np.array([[cos, -sin], [sin, cos]])  # input pixels → image pixels
        from_input = np.concatenate([a, (np.array([cx, cy]) - a @ [s / 2, s / 2])[:, None]], 1)
        x = cv2.warpAffine(image, from_input, (s, s), flags=cv2.INTER_LINEAR
                           | cv2.WARP_INVERSE_MAP, borderValue=0)  # fmt: skip
        interp, inp, points_idx, presence_idx = self._hand
        interp.set_tensor(inp, (x.astype(np.float32) / 255.0)[None])
        interp.invoke()
        points = interp.get_tensor(points_idx)[0].reshape(21, 3)[:, :2]
        presence = float(np.ravel(interp.get_tensor(presence_idx))[0])
        return align.transform_points(points, from_input), presence

    def hands(
        self, image: np.ndarray, region: tuple[int, int, int, int], near=None
    ) -> list[np.ndarray]:
        """Hands `(21, 2)` whose palm is found in `region` and whose presence score passes.
        near: face boxes `(M, 4)`; when given, a palm whose hand box (the rotated box's
        bounding square) misses all of them is skipped without running the landmark model
        (it cannot cover a face)."""
        found = []
        for palm in self.palms(image, region):
            if near is not None and not _reaches(self.hand_box(palm), near):
                continue
            points, presence = self.landmarks(image, palm)
            if presence >= HAND_PRESENCE:
                found.append(points)
        return found

    def frame_hands(self, image: np.ndarray, boxes) -> list[np.ndarray]:
        """All hands that may cover one of the face `boxes` `(M, 4)`: one palm detection per
        group of faces whose search squares join into one at most `HAND_JOIN` times wider
        than the largest of them (one for the usual single face or a close pair)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        found: list[np.ndarray] = []
        for group in _group_regions([search_region(b) for b in boxes]):
            found += self.hands(image, group, near=boxes)
        return found


def _reaches(hand_box: tuple[float, float, float, float], boxes: np.ndarray) -> bool:
    """Whether a hand box `(cx, cy, side, rotation)` overlaps any face box `(x0, y0, x1, y1)`
    (the rotated square's bounding square, √2·side/2 from its centre)."""
    cx, cy, side, _ = hand_box
    r = side * 0.7072
    return bool(np.any((boxes[:, 0] < cx + r) & (boxes[:, 2] > cx - r)
                       & (boxes[:, 1] < cy + r) & (boxes[:, 3] > cy - r)))  # fmt: skip


def _group_regions(regions: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Squares to search: each region joined greedily into a group while the group's
    bounding square stays within `HAND_JOIN` times its largest member."""
    groups: list[tuple[list[int], int]] = []  # (bounds x0, y0, x1, y1), largest side
    for x0, y0, side, _ in sorted(regions, key=lambda r: -r[2]):
        for i, (b, largest) in enumerate(groups):
            joined = [min(b[0], x0), min(b[1], y0), max(b[2], x0 + side), max(b[3], y0 + side)]
            if max(joined[2] - joined[0], joined[3] - joined[1]) <= HAND_JOIN * largest:
                groups[i] = (joined, largest)
                break
        else:
            groups.append(([x0, y0, x0 + side, y0 + side], side))
    out = []
    for b, _ in groups:
        side = max(b[2] - b[0], b[3] - b[1])
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        out.append((round(cx - side / 2), round(cy - side / 2), side, side))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def search_region(box: np.ndarray) -> tuple[int, int, int, int]:
    """The square `(x0, y0, side, side)` searched for hands around a face box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = HAND_SEARCH * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return round(cx - side / 2), round(cy - side / 2), round(side), round(side)


@dataclass
class Occlusion:
    """The occlusion options of a swap and the models they need (loaded on first use).

    keep_mouth: keep the target's inner mouth (teeth, tongue). occlusion: "none", "hands"
    (MediaPipe hands), "segmenter" (selfswap's occlusion segmenter) or "both". hand_models:
    the MediaPipe variant, "lite" or "full"."""

    keep_mouth: bool = False
    occlusion: str = "none"
    threads: int = 1
    hand_models: str = HAND_MODELS
    _models: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.occlusion not in OCCLUSION_CHOICES:
            raise SelfswapError(
                f"occlusion must be one of {', '.join(OCCLUSION_CHOICES)}, not {self.occlusion!r}."
            )

    @property
    def active(self) -> bool:
        return self.keep_mouth or self.occlusion != "none"

    @property
    def hand_tracker(self) -> HandLandmarker:
        if "hands" not in self._models:
            self._models["hands"] = HandLandmarker(self.threads, self.hand_models)
        return self._models["hands"]

    @property
    def segmenter(self):
        if "segmenter" not in self._models:
            from selfswap.nets.occluder import OcclusionSegmenter

            self._models["segmenter"] = OcclusionSegmenter.load()
        return self._models["segmenter"]

    def parts(
        self, frame: np.ndarray, faces: list, matrices: np.ndarray, size: int
    ) -> dict[str, np.ndarray]:
        """Each active part's keep mask `(N, R, R)` float32 ("mouth", "hands",
        "segmenter")."""
        parts = {}
        matrices = np.asarray(matrices, np.float64)
        if self.keep_mouth:
            points = np.stack(
                [align.transform_points(f.landmarks68, m) for f, m in zip(faces, matrices)]
            )
            parts["mouth"] = mouth_mask(points, size)
        if self.occlusion in ("hands", "both"):
            hands = self.hand_tracker.frame_hands(frame, [f.box for f in faces])
            parts["hands"] = np.stack([hand_mask(hands, m, size) for m in matrices])
        if self.occlusion in ("segmenter", "both"):
            crops = np.stack([align.warp_to_crop(frame, m, size) for m in matrices])
            parts["segmenter"] = self.segmenter.predict(crops)
        return parts

    def keep(self, frame: np.ndarray, faces: list, matrices: np.ndarray, size: int) -> np.ndarray:
        """Union (max) of the active parts: `(N, R, R)` float32, 1 = keep the target."""
        out = np.zeros((len(faces), size, size), np.float32)
        for part in self.parts(frame, faces, matrices, size).values():
            out = np.maximum(out, part)
        return out


def configure(engine, keep_mouth: bool = False, occlusion: str = "none") -> Occlusion:
    """Give a `FaceSwapper` these occlusion options (models already loaded are reused)."""
    old = getattr(engine, "occlusion", None)
    new = Occlusion(bool(keep_mouth), occlusion)
    if isinstance(old, Occlusion):
        new._models = old._models
    engine.occlusion = new
    return new


def hold_back(engine, frame: np.ndarray, faces: list, matrices, masks: np.ndarray) -> np.ndarray:
    """Paste masks `(N, R, R)` with what `engine.occlusion` keeps of the target taken out:
    `masks · (1 − keep)`. Unchanged when the engine has no occlusion options on."""
    occlusion = getattr(engine, "occlusion", None)
    if occlusion is None or not occlusion.active or not len(faces):
        return masks
    keep = occlusion.keep(frame, faces, matrices, masks.shape[-1])
    return (masks * (1.0 - keep)).astype(masks.dtype, copy=False)
