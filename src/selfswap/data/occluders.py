"""Synthetic occluders with known masks, for training and measuring occlusion handling
(issue #17): things drawn over a face image, returned with their exact coverage.

`occlude(image, landmarks68, rng, kinds, textures)` draws one occluder of a kind chosen from
`kinds` over the face the 68 landmarks locate and returns `(image, alpha)`: the occluded
image and the occluder's coverage `(H, W)` float32 in [0, 1]. Works at any scale (a 128-px
training crop or a whole photo): sizes are fractions of the face's eye-to-mouth geometry.

Kinds used in training (`TRAIN_KINDS`): synthetic hands and arms, polygons and ellipses,
hair strands, glasses (rims and tinted lenses), and `realhand`: real hands cut out of
*training* photos (`cut_hands`, cached by `python -m selfswap.data.occluders` under
`~/.cache/selfswap/occluder-cutouts`), given as RGBA images (`cutouts`). Kinds held out for
evaluation (`EVAL_KINDS`): microphones, held objects (rounded rectangles), scarves over the
lower face, and real hand cut-outs of evaluation-only photos (`cutout`, celeba-wild-dev).
Training textures come from the training faces' own photos (`textures`); evaluation draws
with another set (e.g. the scikit-image sample pictures), so no evaluation occluder looks
like a training one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

#: Synthetic training kinds; `realhand` (real cut-outs of training photos) joins them when
#: cut-outs are given (`training_kinds`).
TRAIN_KINDS = ("hand", "object", "hair", "glasses")
EVAL_KINDS = ("mic", "held", "scarf", "cutout")

#: Skin tones (RGB) of synthetic hands, from dark to light, jittered when drawn.
SKIN = np.array(
    [[70, 45, 35], [105, 70, 50], [141, 95, 70], [175, 125, 95], [198, 150, 120],
     [224, 180, 150], [236, 200, 175]], np.float32,
)  # fmt: skip
HAIR = np.array(
    [[20, 15, 12], [45, 30, 20], [80, 55, 35], [130, 95, 60], [190, 160, 110], [120, 50, 25],
     [150, 150, 150]], np.float32,
)  # fmt: skip


def face_frame(landmarks68: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Centre (nose), scale (eye-to-mouth distance) and eye centres `(2, 2)` of a face."""
    p = np.asarray(landmarks68, np.float64)
    eyes = np.stack([p[36:42].mean(0), p[42:48].mean(0)])
    mouth = p[48:68].mean(0)
    scale = float(np.linalg.norm(eyes.mean(0) - mouth))
    return p[30].copy(), max(scale, 1.0), eyes


def _texture(rng: np.random.Generator, shape: tuple[int, int], textures: Sequence[np.ndarray]):
    """A `(h, w, 3)` float32 fill: a random patch of one of `textures`, or procedural."""
    h, w = shape
    choice = rng.random()
    if textures and choice < 0.6:
        t = textures[rng.integers(len(textures))]
        scale = rng.uniform(0.5, 2.0) * max(h / t.shape[0], w / t.shape[1], 0.05)
        t = cv2.resize(t, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        th, tw = t.shape[:2]
        if th < h or tw < w:
            t = cv2.resize(t, (max(w, tw), max(h, th)))
            th, tw = t.shape[:2]
        y, x = rng.integers(0, th - h + 1), rng.integers(0, tw - w + 1)
        return t[y : y + h, x : x + w].astype(np.float32)
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    fill = np.broadcast_to(colour, (h, w, 3)).astype(np.float32).copy()
    if choice < 0.8:  # stripes or checks
        period = rng.uniform(3, 20)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:h, :w]
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0
        fill[wave] = rng.uniform(0, 255, 3)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
    return fill + noise[..., None] * rng.uniform(0, 25)


def _shade(fill: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A linear light gradient over a fill (a rounded object lit from one side)."""
    h, w = fill.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    g = (xx * np.cos(a) + yy * np.sin(a)) / max(h, w)
    g = 1.0 + rng.uniform(0.1, 0.4) * (g - g.mean())
    return fill * g[..., None]


def _compose(image: np.ndarray, alpha: np.ndarray, fill: np.ndarray) -> np.ndarray:
    out = image.astype(np.float32) * (1 - alpha[..., None]) + fill * alpha[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _capsule(mask: np.ndarray, a, b, width: float) -> None:
    """A thick line with round ends (fixed-point, anti-aliased)."""
    p = np.round(np.array([a, b]) * 16).astype(np.int32)
    cv2.line(mask, tuple(p[0]), tuple(p[1]), 255, max(1, round(width)), cv2.LINE_AA, 4)


def _rot(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _hand_shape(mask: np.ndarray, centre, size: float, angle: float, rng) -> np.ndarray:
    """Draws a hand (palm, four fingers, thumb, forearm) into `mask`; returns the finger
    tips' positions (for the shading seams)."""
    r = _rot(angle)
    place = lambda q: centre + r @ (np.asarray(q, np.float64) * size)  # noqa: E731
    palm = np.array([[-0.45, -0.5], [0.45, -0.5], [0.5, 0.35], [0.3, 0.6], [-0.3, 0.6],
                     [-0.5, 0.35]])  # fmt: skip
    pts = np.round(np.array([place(q) for q in palm]) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, shift=4)
    width = size * rng.uniform(0.2, 0.26)
    spread = rng.uniform(0.0, 0.25)
    lengths = np.array([0.75, 0.85, 0.8, 0.62]) * rng.uniform(0.5, 1.1, 4)  # curled or not
    seams = []
    for k, x in enumerate((-0.34, -0.11, 0.12, 0.35)):
        base = np.array([x, -0.45])
        tilt = (k - 1.5) * spread
        tip = base + lengths[k] * np.array([np.sin(tilt), -np.cos(tilt)])
        _capsule(mask, place(base), place(tip), width)
        seams.append((place(base), place(tip)))
    thumb_base = np.array([-0.45 * rng.choice([-1, 1]), 0.2])
    t_angle = rng.uniform(0.6, 1.3) * np.sign(thumb_base[0])
    thumb_tip = thumb_base + 0.6 * np.array([np.sin(t_angle), -np.cos(t_angle)])
    _capsule(mask, place(thumb_base), place(thumb_tip), width * 1.1)
    if rng.random() < 0.7:  # the forearm, out of the image or far down
        _capsule(mask, place([0, 0.5]), place([0, 4.0]), size * rng.uniform(0.7, 0.95))
    return np.array(seams)


def _glasses(shape, eyes: np.ndarray, scale: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Rim mask and lens mask `(H, W)` uint8 of a pair of glasses on these eyes."""
    rims = np.zeros(shape, np.uint8)
    lenses = np.zeros(shape, np.uint8)
    d = eyes[1] - eyes[0]
    angle = float(np.degrees(np.arctan2(d[1], d[0])))
    half = np.linalg.norm(d) * rng.uniform(0.36, 0.48)
    axes = (half, half * rng.uniform(0.55, 0.9))
    thick = max(1, round(scale * rng.uniform(0.03, 0.1)))
    square = rng.random() < 0.5
    for e in eyes:
        c = e + rng.normal(0, 0.03, 2) * scale
        if square:
            box = cv2.boxPoints(((float(c[0]), float(c[1])), (2 * axes[0], 2 * axes[1]), angle))
            pts = np.round(box * 16).astype(np.int32)
            cv2.fillPoly(lenses, [pts], 255, cv2.LINE_AA, 4)
            cv2.polylines(rims, [pts], True, 255, thick, cv2.LINE_AA, 4)
        else:
            centre = tuple(int(v) for v in np.round(c * 16))
            size = tuple(int(v) for v in np.round(np.array(axes) * 16))
            cv2.ellipse(lenses, centre, size, angle, 0, 360, 255, -1, cv2.LINE_AA, 4)
            cv2.ellipse(rims, centre, size, angle, 0, 360, 255, thick, cv2.LINE_AA, 4)
    unit = d / max(np.linalg.norm(d), 1e-6)
    inner = (eyes[0] + unit * axes[0], eyes[1] - unit * axes[0])
    _capsule(rims, inner[0], inner[1], thick)
    for e, sign in ((eyes[0], -1), (eyes[1], 1)):
        outer = e + sign * unit * axes[0]
        _capsule(rims, outer, outer + sign * unit * scale * rng.uniform(0.8, 1.4), thick)
    return rims, lenses


def _hair(shape, centre, scale: float, rng) -> np.ndarray:
    """Strands falling over the forehead and eyes, `(H, W)` uint8."""
    mask = np.zeros(shape, np.uint8)
    side = rng.choice([-1, 1])
    n = int(rng.integers(15, 70))
    x0 = centre[0] + side * rng.uniform(-0.3, 1.0) * scale
    for _ in range(n):
        start = np.array(
            [x0 + rng.normal(0, 0.35) * scale, centre[1] - rng.uniform(1.6, 2.4) * scale]
        )
        end = start + np.array([-side * rng.uniform(0.2, 1.6), rng.uniform(0.8, 2.2)]) * scale
        bend = (start + end) / 2 + rng.normal(0, 0.3, 2) * scale
        t = np.linspace(0, 1, 12)[:, None]
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
        width = max(1, round(scale * rng.uniform(0.01, 0.04)))
        cv2.polylines(mask, [np.round(curve * 16).astype(np.int32)], False, 255, width,
                      cv2.LINE_AA, 4)  # fmt: skip
    return mask


def _polygon(shape, centre, scale: float, rng) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    size = scale * rng.uniform(0.5, 1.6)
    c = centre + rng.normal(0, 0.9, 2) * scale
    if rng.random() < 0.5:
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = size * rng.uniform(0.5, 1.2, n)
        pts = c + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    else:
        axes = tuple(int(v) for v in np.round(size * rng.uniform(0.3, 1.0, 2) * 16))
        centre16 = tuple(int(v) for v in np.round(c * 16))
        cv2.ellipse(mask, centre16, axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA, 4)
    return mask


def _mic(shape, centre, scale: float, rng) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    head = centre + np.array([rng.normal(0, 0.4), rng.uniform(0.8, 1.5)]) * scale
    radius = scale * rng.uniform(0.35, 0.6)
    angle = rng.uniform(-0.6, 0.6)
    cv2.circle(mask, tuple(int(v) for v in np.round(head * 16)), int(radius * 16), 255, -1,
               cv2.LINE_AA, 4)  # fmt: skip
    end = head + _rot(angle) @ np.array([0.0, 5.0 * scale])
    _capsule(mask, head, end, radius * rng.uniform(0.5, 0.8))
    return mask


def _held(shape, centre, scale: float, rng) -> np.ndarray:
    """A held object: a rounded rectangle (phone, cup, card) over part of the face."""
    mask = np.zeros(shape, np.uint8)
    w, h = scale * rng.uniform(0.5, 1.2), scale * rng.uniform(0.8, 2.0)
    c = centre + rng.normal(0, 0.7, 2) * scale
    box = cv2.boxPoints(((float(c[0]), float(c[1])), (w, h), rng.uniform(-40, 40)))
    cv2.fillPoly(mask, [np.round(box * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    k = max(3, int(min(w, h) * 0.3) | 1)
    mask = cv2.morphologyEx(
        mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    return mask


def _scarf(shape, landmarks68: np.ndarray, scale: float, rng) -> np.ndarray:
    """Cloth over the lower face: from just under the nose (or the mouth) down."""
    mask = np.zeros(shape, np.uint8)
    p = np.asarray(landmarks68, np.float64)
    top = p[33, 1] + rng.uniform(0.0, 0.6) * scale
    left, right = p[0, 0] - 0.6 * scale, p[16, 0] + 0.6 * scale
    xs = np.linspace(left, right, 16)
    ys = top + np.sin(np.linspace(0, np.pi, 16)) * -0.15 * scale + rng.normal(0, 0.04, 16) * scale
    pts = np.concatenate([np.stack([xs, ys], 1), [[right, shape[0] + 10], [left, shape[0] + 10]]])
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return mask


def training_kinds(real_cutouts: int, real_share: float = 0.35) -> tuple[str, ...]:
    """The kinds `occlude` draws from in training: `TRAIN_KINDS`, plus `realhand` about
    `real_share` of the time when there are real cut-outs (repeated kinds weigh more)."""
    if not real_cutouts:
        return TRAIN_KINDS
    n = max(1, round(real_share / (1 - real_share) * len(TRAIN_KINDS)))
    return TRAIN_KINDS + ("realhand",) * n


def _cutout(image_shape, centre, scale: float, cutout: np.ndarray, rng):
    """An RGBA cut-out `(h, w, 4)` uint8 placed over the face: fill and alpha."""
    h, w = image_shape
    size = scale * rng.uniform(1.6, 2.6)
    ch, cw = cutout.shape[:2]
    f = size / max(ch, cw)
    m = np.array([[f, 0, 0], [0, f, 0]], np.float64)
    m = np.vstack([m, [0, 0, 1]])
    angle = rng.uniform(-35, 35)
    rot = cv2.getRotationMatrix2D((cw * f / 2, ch * f / 2), angle, 1.0)
    m = np.vstack([rot, [0, 0, 1]]) @ m
    target = centre + rng.normal(0, 0.5, 2) * scale + np.array([0, 0.6 * scale])
    m[:2, 2] += target - np.array([cw * f / 2, ch * f / 2])
    warped = cv2.warpAffine(cutout, m[:2], (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    return warped[..., :3].astype(np.float32), warped[..., 3].astype(np.float32) / 255.0


def occlude(
    image: np.ndarray,
    landmarks68: np.ndarray,
    rng: np.random.Generator,
    kinds: Sequence[str] = TRAIN_KINDS,
    textures: Sequence[np.ndarray] = (),
    cutouts: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, np.ndarray, str]:
    """One occluder over the face: `(occluded image (H, W, 3) uint8, alpha (H, W) float32 in
    [0, 1], kind)`. image: `(H, W, 3)` uint8 RGB; landmarks68: `(68, 2)` pixels."""
    kind = str(rng.choice(list(kinds)))
    shape = image.shape[:2]
    centre, scale, eyes = face_frame(landmarks68)
    soft = max(0.4, scale * 0.012)
    if kind == "cutout":
        fill, alpha = _cutout(shape, centre, scale, cutouts[rng.integers(len(cutouts))], rng)
        fill = fill * rng.uniform(0.8, 1.2)
        return _compose(image, alpha, fill), alpha, kind
    if kind == "realhand":  # a training photo's real hand: flipped, recoloured, resized
        cut = cutouts[rng.integers(len(cutouts))]
        if rng.random() < 0.5:
            cut = cut[:, ::-1]
        fill, alpha = _cutout(shape, centre, scale * rng.uniform(0.8, 1.2), cut, rng)
        fill = fill * rng.uniform(0.85, 1.15, 3) * rng.uniform(0.8, 1.2)
        return _compose(image, alpha, fill), alpha, kind
    if kind == "hand":
        mask = np.zeros(shape, np.uint8)
        size = scale * rng.uniform(0.9, 1.6)
        where = centre + np.array([rng.normal(0, 0.8), rng.uniform(-0.3, 1.6)]) * scale
        seams = _hand_shape(mask, where, size, rng.uniform(-1.2, 1.2) + rng.choice([0, np.pi]) *
                            (rng.random() < 0.15), rng)  # fmt: skip
        tone = SKIN[rng.integers(len(SKIN))] * rng.uniform(0.85, 1.15, 3)
        fill = _shade(np.broadcast_to(tone, (*shape, 3)).astype(np.float32).copy(), rng)
        lines = np.zeros(shape, np.uint8)  # darker seams along the fingers' sides
        for a, b in seams:
            _capsule(lines, a, b, 1)
        fill *= 1 - 0.25 * (cv2.GaussianBlur(lines, (0, 0), 0.8)[..., None] / 255.0)
        noise = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), 1.5)
        fill += noise[..., None] * 6
    elif kind == "hair":
        mask = _hair(shape, centre, scale, rng)
        fill = np.broadcast_to(HAIR[rng.integers(len(HAIR))] * rng.uniform(0.8, 1.2, 3),
                               (*shape, 3)).astype(np.float32)  # fmt: skip
        fill = _shade(fill.copy(), rng)
    elif kind == "glasses":
        rims, lenses = _glasses(shape, eyes, scale, rng)
        frame_colour = rng.choice([rng.uniform(0, 60, 3), rng.uniform(120, 230, 3)])
        dark = rng.random() < 0.5
        lens_alpha = rng.uniform(0.7, 1.0) if dark else rng.uniform(0.0, 0.2)
        lens_colour = rng.uniform(0, 70, 3) if dark else rng.uniform(150, 255, 3)
        a_rim = rims.astype(np.float32) / 255.0
        a_lens = lenses.astype(np.float32) / 255.0 * lens_alpha
        out = _compose(image, a_lens, np.broadcast_to(lens_colour, (*shape, 3)).astype(np.float32))
        out = _compose(out, a_rim, np.broadcast_to(frame_colour, (*shape, 3)).astype(np.float32))
        label = np.maximum(a_rim, a_lens * (a_lens > 0.5))  # clear lenses do not occlude
        return out, label, kind
    else:
        draw = {"object": _polygon, "mic": _mic, "held": _held}.get(kind)
        if kind == "scarf":
            mask = _scarf(shape, landmarks68, scale, rng)
        elif draw is None:
            raise ValueError(f"unknown occluder kind {kind!r}")
        else:
            mask = draw(shape, centre, scale, rng)
        fill = _shade(_texture(rng, shape, textures), rng)
    alpha = cv2.GaussianBlur(mask, (0, 0), soft).astype(np.float32) / 255.0
    alpha = np.where(mask > 0, np.maximum(alpha, mask / 255.0), alpha).astype(np.float32)
    return _compose(image, alpha, fill), alpha, kind


# ---------------------------------------------------------------- real hand cut-outs


def selfie_probability(interp, image: np.ndarray) -> np.ndarray:
    """Person probability `(H, W)` from MediaPipe's selfie segmentation (letterboxed 256²)."""
    h, w = image.shape[:2]
    side = max(h, w)
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[:h, :w] = image
    x = cv2.resize(canvas, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    interp.set_tensor(interp.get_input_details()[0]["index"], x[None])
    interp.invoke()
    p = interp.get_tensor(interp.get_output_details()[0]["index"])[0, :, :, 0]
    return cv2.resize(p, (side, side), interpolation=cv2.INTER_LINEAR)[:h, :w]


def cut_hands(
    image: np.ndarray, tracker, selfie, presence: float = 0.95, min_side: int = 50
) -> list[np.ndarray]:
    """RGBA cut-outs `(h, w, 4)` uint8 of the hands MediaPipe finds in a whole photo
    `(H, W, 3)` uint8 RGB: the hand region of its 21 points (`swap.occlusion.hand_mask`)
    times the selfie segmentation's person probability (ramped 0.3-0.7), padded by 30 %.
    tracker: a `swap.occlusion.HandLandmarker`; selfie: the `selfie_segmentation`
    interpreter. Hands under `presence` or smaller than `min_side` pixels are skipped."""
    from selfswap.swap.occlusion import hand_mask

    h, w = image.shape[:2]
    side = max(h, w)
    out, person = [], None
    for palm in tracker.palms(image, (0, 0, side, side)):
        points, score = tracker.landmarks(image, palm)
        x0, y0 = np.floor(points.min(0)).astype(int)
        x1, y1 = np.ceil(points.max(0)).astype(int)
        if score < presence or min(x1 - x0, y1 - y0) < min_side:
            continue
        pad = int(0.3 * max(x1 - x0, y1 - y0))
        x0, y0, x1, y1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h)
        if x1 - x0 < 8 or y1 - y0 < 8:
            continue
        shift = np.array([[1, 0, -x0], [0, 1, -y0]], np.float64)
        crop = image[y0:y1, x0:x1]
        region = hand_mask([points], shift, max(crop.shape[:2]))[: crop.shape[0], : crop.shape[1]]
        if person is None:
            person = selfie_probability(selfie, image)
        alpha = np.clip(region * np.clip((person[y0:y1, x0:x1] - 0.3) / 0.4, 0, 1) * 255, 0, 255)
        if alpha.mean() < 20:
            continue
        out.append(np.dstack([crop, alpha.astype(np.uint8)]))
    return out


def load_cutouts(folder: Path, limit: int | None = None) -> list[np.ndarray]:
    """The RGBA cut-outs cached in `folder` (`shard-*.npz`), in shard order."""
    out: list[np.ndarray] = []
    for shard in sorted(Path(folder).expanduser().glob("shard-*.npz")):
        with np.load(shard, allow_pickle=False) as f:
            out += [f[k] for k in sorted(f.files)]
    return out[:limit] if limit else out


def _training_photos(source: str, data: Path) -> list[Path]:
    """Training photos of one source, in a fixed shuffled order. Never evaluation data:
    `lfw` = `splits/lfw_train.txt`; `dfl` = the CelebA DFL faceset files listed in
    `splits/celeba_dfl256_identity.csv` (its held-out people excluded)."""
    if source == "lfw":
        names = (data / "splits" / "lfw_train.txt").read_text().split()
        paths = [data / "lfw" / n for n in names]
    elif source == "dfl":
        raw = Path("~/.cache/selfswap/raw/celeba_dfl256").expanduser()
        lines = (data / "splits" / "celeba_dfl256_identity.csv").read_text().splitlines()[1:]
        paths = [raw / line.split(",")[0] for line in lines if line]
    else:
        raise ValueError(f"unknown cut-out source {source!r}")
    order = np.random.default_rng(17).permutation(len(paths))
    return [paths[i] for i in order]


def build_cutouts(args: argparse.Namespace, log=print) -> int:
    """Cut real hands out of training photos into `args.out` (resumable: one shard per
    `args.chunk` photos; shards already written are skipped)."""
    from selfswap.swap.occlusion import HandLandmarker, litert_interpreter

    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tracker, selfie = HandLandmarker(), litert_interpreter("selfie_segmentation")
    start, total = time.perf_counter(), len(load_cutouts(out))
    for source in args.sources:
        photos = _training_photos(source, Path(args.data).expanduser())[: args.photos]
        for first in range(0, len(photos), args.chunk):
            shard = out / f"shard-{source}-{first:06d}.npz"
            if shard.is_file():
                continue
            if time.perf_counter() - start > args.minutes * 60:
                log(f"time budget spent; {total} cut-outs")
                return total
            found = []
            for path in photos[first : first + args.chunk]:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is not None:
                    found += cut_hands(np.ascontiguousarray(image[:, :, ::-1]), tracker, selfie)
            np.savez_compressed(shard.with_suffix(".part.npz"),
                                **{f"{i:03d}": c for i, c in enumerate(found)})  # fmt: skip
            shard.with_suffix(".part.npz").replace(shard)
            total += len(found)
            log(json.dumps({"shard": shard.name, "found": len(found), "total": total,
                            "seconds": round(time.perf_counter() - start)}))  # fmt: skip
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Cut real hands out of training photos (RGBA cache).")
    p.add_argument("--out", default="~/.cache/selfswap/occluder-cutouts")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[3].parent / "shared"
                                         / "data"), help="the shared data folder")  # fmt: skip
    p.add_argument("--sources", nargs="+", default=["dfl", "lfw"], choices=["dfl", "lfw"])
    p.add_argument("--photos", type=int, default=None, help="at most this many per source")
    p.add_argument("--chunk", type=int, default=250, help="photos per shard")
    p.add_argument("--minutes", type=float, default=30.0)
    args = p.parse_args(argv)
    build_cutouts(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
