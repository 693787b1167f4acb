"""Parts of the face (mouth, eyes) as soft regions of the 3DMM surface, rendered in any view,
and the source texture's pixels over them taken from the target photo (issue #14).

The source texture (`selfswap.geometry.texture`) carries the source photo's own mouth and
eyes onto the target's geometry: a closed-lipped source paints closed lips over a target's
toothy smile, a talking source an open mouth over closed lips (the 3DMM's ten expression
coefficients fit a mouth's opening only roughly, so the lip vertices sample whatever the
source shows there). The generator copies those pixels (half of its training samples take
the texture from the target's own photo, mouth state included), and the swap loses the
target's expression: the texture models' 3DMM expression error was +21 % over the old
default on the in-the-wild pairs.

Taking the texture away there (`hide_regions`, visibility 0) does not work with those models:
they never saw a hole that size inside the face and paint a dark blur (on the first 40
in-the-wild dev pairs expression error 0.398 → 0.468, worse). What they did see is the
target's own pixels as texture, so over the part the texture comes from the *target* photo,
through its own 3DMM fit onto the same geometry (`render_source_texture` with the target as
the photo), its colours brought to the source texture's (`match_colours`) and blended in with
the part's soft weights (`blend_textures`). For the mouth only as far as the two mouths differ
in how open they are (`mouth_strength`): where the source's is as open as the target's, its
own lips stay, which keeps most of the identity.

A part is defined once on the BFM's mean face, seen from the front (model x, y): the polygon
of its 68-landmark points (outer lips 48–59; each eye 36–41, 42–47), grown by `grow` and
faded out over `feather` (both in units of the mean face's distance between the eye
centres). Every vertex gets that weight; it moves with the vertex, so the region follows the
lips and eyelids of whatever shape, expression and pose is rendered, with the z-buffer's
occlusion. Everything here is a pure function of geometry, landmarks and textures: training
can call it on its own batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selfswap.face.bfm import BFM
from selfswap.geometry.mesh import Geometry

#: The outer lips' 68-landmark points: the mouth parts' polygon.
_LIPS = (tuple(range(48, 60)),)
#: Each eye's 68-landmark points: the eye parts' polygons.
_EYES = (tuple(range(36, 42)), tuple(range(42, 48)))
#: The parts and their 68-landmark polygons (indices into `BFM.keypoints68`).
POLYGONS: dict[str, tuple[tuple[int, ...], ...]] = {
    "mouth": _LIPS,
    "mouth_ring": _LIPS,
    "wide_mouth": _LIPS,
    "eyes": _EYES,
    "blinks": _EYES,
}
#: Option values (`SwapConfig.expression_parts`) → parts.
CHOICES: dict[str, tuple[str, ...]] = {
    "none": (),
    "mouth": ("mouth", "mouth_ring"),
    "wide-mouth": ("wide_mouth",),
    "eyes": ("eyes",),
    "both": ("mouth", "mouth_ring", "eyes"),
    "mouth-blinks": ("mouth", "mouth_ring", "blinks"),
}
#: The parts gated by how much the two mouths differ (`mouth_strength`).
MOUTHS = ("mouth", "mouth_ring", "wide_mouth")
#: The parts gated by how open the eyes are (`eye_strength`: on a photo, the target's when
#: they are nearly shut; in a video, as far as they leave their usual opening).
EYES_GATED = ("blinks",)


@dataclass(frozen=True)
class PartShape:
    """How far a part reaches beyond its landmark polygon, in eye distances of the mean
    face: fully inside up to `grow`, fading to 0 over a further `feather`."""

    grow: float
    feather: float


#: On the first 40 in-the-wild dev pairs (texture+FaceNet model, detail and seam off, mouth
#: from the target for every pair, no colour match) the mouth's (grow, feather) traded
#: expression error for the judge's similarity to the source: (-0.05, 0.10) 0.389 / 0.419,
#: (0, 0.10) 0.379 / 0.408, (0.10, 0.15) 0.350 / 0.388, (0.20, 0.20) 0.333 / 0.366, from
#: 0.398 / 0.433 without. The eyes cost much more identity for little expression (0.386 /
#: 0.370): not a default.
#: `wide_mouth` reaches over the lips' surroundings too (the cheeks' and chin's share of the
#: expression): on all 293 wild pairs (shipped model, mirror on) expression 0.302 against
#: the mouth's 0.322, at SFace to the source 0.360 against 0.374 and closer to the source
#: 79.2 % against 85.7 % (docs/decisions.md): for when the expression matters more than the
#: likeness.
SHAPES: dict[str, PartShape] = {
    "mouth": PartShape(grow=0.10, feather=0.15),
    "wide_mouth": PartShape(grow=0.20, feather=0.20),
    "eyes": PartShape(grow=0.05, feather=0.10),
}
SHAPES["mouth_ring"] = SHAPES["wide_mouth"]
SHAPES["blinks"] = SHAPES["eyes"]
#: How much of the target a part takes at most (1 unless given). `mouth_ring` is
#: `wide_mouth`'s region at half strength around the mouth's own (the default `mouth`):
#: the target's cheeks and chin around the lips mixed half-and-half with the source's. On
#: all 293 wild pairs (shipped model, mirror on), against the lips alone: expression 0.322
#: → 0.311, SFace to the source 0.374 → 0.370, closer to the source 85.7 → 83.6 %; the
#: whole ring (`wide-mouth`) costs three times the likeness for twice the expression.
FACTORS: dict[str, float] = {"mouth_ring": 0.5}


def _segment_distance(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Distance `(N,)` of 2-D points `(N, 2)` to the closed polyline `polygon` `(K, 2)`."""
    a = polygon
    b = np.roll(polygon, -1, axis=0)
    ab = b - a  # (K, 2)
    ap = points[:, None, :] - a[None]  # (N, K, 2)
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    nearest = a[None] + t[..., None] * ab[None]
    return np.sqrt(((points[:, None, :] - nearest) ** 2).sum(-1)).min(axis=1)


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of `points` `(N, 2)` lie inside `polygon` `(K, 2)`."""
    x, y = points[:, 0:1], points[:, 1:2]
    ax, ay = polygon[:, 0][None], polygon[:, 1][None]
    bx, by = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    crosses = (ay > y) != (by > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = ax + (y - ay) * (bx - ax) / (by - ay)
    return ((crosses & (x < at)).sum(axis=1) % 2) == 1


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def part_distance(bfm: BFM, part: str) -> np.ndarray:
    """Per vertex of `bfm` `(N,)`: signed distance (negative inside) of its frontal position on
    the mean face to the part's landmark polygon(s), in eye distances of the mean face."""
    if part not in POLYGONS:
        raise ValueError(f"unknown face part {part!r}; choose from {', '.join(POLYGONS)}")
    xy = bfm.mean[:, :2].astype(np.float64)
    keypoints = xy[bfm.keypoints68]
    eyes = np.linalg.norm(keypoints[36:42].mean(0) - keypoints[42:48].mean(0))
    best = np.full(len(xy), np.inf)
    for indices in POLYGONS[part]:
        polygon = keypoints[list(indices)]
        d = _segment_distance(xy, polygon)
        best = np.minimum(best, np.where(_inside(xy, polygon), -d, d))
    return (best / eyes).astype(np.float32)


_CACHE: dict[tuple, np.ndarray] = {}


def vertex_weights(
    bfm: BFM, parts: tuple[str, ...] | list[str], shapes: dict[str, PartShape] | None = None
) -> np.ndarray:
    """Per vertex of `bfm` `(N,)` float32 in [0, 1]: how much it belongs to any of `parts`
    (the largest of their weights), each shaped by `shapes` (default `SHAPES`)."""
    shapes = SHAPES if shapes is None else shapes
    out = np.zeros(bfm.n_vertices, np.float32)
    for part in parts:
        shape = shapes[part]
        key = (id(bfm), bfm.n_vertices, POLYGONS[part], shape)  # parts alike share it
        weights = _CACHE.get(key)
        if weights is None:
            distance = part_distance(bfm, part)
            weights = 1.0 - _smoothstep(shape.grow, shape.grow + shape.feather, distance)
            _CACHE[key] = weights = weights.astype(np.float32)
        out = np.maximum(out, weights)
    return out


def region_weights(
    renderer,
    geometry: Geometry,
    parts: tuple[str, ...] | list[str],
    shapes: dict[str, PartShape] | None = None,
    strengths: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """How much each pixel of `geometry` (posed in `renderer`'s R×R view) belongs to `parts`:
    `(B, 1, R, R)` float32 in [0, 1], 0 off the mesh and everywhere when `parts` is empty.
    `strengths`: per part, a `(B,)` factor for each face (e.g. `mouth_strength`; default 1)."""
    r = renderer.size
    batch = len(geometry)
    if not parts or not batch:
        return np.zeros((batch, 1, r, r), np.float32)
    attributes = part_attributes(renderer.mesh, parts, shapes)
    out = renderer.render(
        geometry.vertices(renderer.mesh),
        normals=False,
        attributes=np.ascontiguousarray(np.broadcast_to(attributes, (batch, *attributes.shape))),
    )
    return rendered_weights(out, parts, strengths)


def part_attributes(
    mesh, parts: tuple[str, ...] | list[str], shapes: dict[str, PartShape] | None = None
) -> np.ndarray:
    """Per vertex of `mesh`, each part's weight `(N, len(parts))` (see `vertex_weights`):
    the attributes `region_weights` renders."""
    if len(parts) > 4:
        raise ValueError(f"at most 4 parts at once, got {len(parts)}")
    return np.stack([vertex_weights(mesh, (part,), shapes) for part in parts], axis=-1)


def rendered_weights(
    out, parts: tuple[str, ...] | list[str], strengths: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """`region_weights` from a render (`RenderOutput`) of `part_attributes(mesh, parts)`."""
    batch = len(out.silhouette)
    factors = np.ones((batch, len(parts), 1, 1), np.float32)
    for k, part in enumerate(parts):
        factors[:, k] = FACTORS.get(part, 1.0)
        if strengths is not None and part in strengths:
            factors[:, k, 0, 0] *= np.broadcast_to(np.asarray(strengths[part], np.float32), batch)
    weights = (np.clip(out.attributes, 0.0, 1.0) * factors).max(axis=1, keepdims=True)
    return (weights * (out.silhouette > 0.5)).astype(np.float32)


#: The mouth's texture comes from the target as far as the two mouths differ in how open
#: they are (`mouth_opening`): not at all up to `OPEN_RAMP[0]` apart, fully from
#: `OPEN_RAMP[1]` apart, smoothly between (so a talking face's mouth fades in and out with
#: the opening, frame by frame). Where the source's mouth is as open as the target's, its
#: own lips stay. On the 299 in-the-wild dev pairs (texture+FaceNet model, detail and seam
#: on; thresholds chosen on the first 40, the other 259 held out) expression error / judge's
#: similarity to the source: 0.395 / 0.378 without, 0.342 / 0.368 gated where the target's
#: is more open, 0.321 / 0.352 with every target's mouth; the old default 0.323 / 0.183.
#: Gating on the difference either way (a closed target mouth under a talking source's)
#: was chosen with the mirror fill: shipped model, 293 wild pairs, expression 0.339 → 0.322,
#: similarity 0.384 → 0.374 (docs/decisions.md).
OPEN_RAMP = (0.0, 0.04)


def mouth_opening(landmarks68: np.ndarray) -> np.ndarray:
    """How open mouths are, `(B,)` from 68-point landmarks `(B, 68, 2)` (any pixel scale): the
    area inside the inner lips (points 60–67) over the squared mouth width (48 to 54); about
    0 closed, 0.1 a broad toothy smile, 0.2 wide open."""
    p = np.asarray(landmarks68, np.float64).reshape(-1, 68, 2)
    inner = p[:, 60:68]
    x, y = inner[..., 0], inner[..., 1]
    area = 0.5 * np.abs((x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1))
    width = np.linalg.norm(p[:, 54] - p[:, 48], axis=1)
    return (area / np.maximum(width, 1e-6) ** 2).astype(np.float32)


def mouth_strength(source_landmarks68: np.ndarray, target_landmarks68: np.ndarray) -> np.ndarray:
    """Per face `(B,)` in [0, 1]: how much of the mouth to take from the target (see
    `OPEN_RAMP`), from the source's and the target's 68 landmarks `(B, 68, 2)` (or one
    `(68, 2)` each, broadcast)."""
    differ = np.abs(mouth_opening(target_landmarks68) - mouth_opening(source_landmarks68))
    return _smoothstep(*OPEN_RAMP, differ).astype(np.float32)


#: The eyes' texture comes from the target as far as the two pairs of eyes differ in how open
#: they are (`eye_opening`): not at all up to `EYE_RAMP[0]` apart, fully from `EYE_RAMP[1]`.
#: An open eye measures about 0.25–0.35, a closed one under 0.15 (68-point landmarks). On
#: the six dev clips the swap's eyes then follow the footage's with a correlation of 0.62
#: (0.13 without; 0.48 with 0.10–0.20) for SFace to the source 0.335 → 0.293: the eyes
#: carry much of the likeness. In a video the same ramp applies to each face's departure
#: from its own usual opening (`departure_strength`): 0.36 for SFace 0.331; on a photo it
#: is gated by `CLOSED_RAMP` too (docs/decisions.md).
EYE_RAMP = (0.05, 0.12)


def eye_opening(landmarks68: np.ndarray) -> np.ndarray:
    """How open the eyes are, `(B,)` from 68-point landmarks `(B, 68, 2)` (any pixel scale):
    the eye aspect ratio (the two lid-to-lid distances over twice the corner-to-corner one),
    averaged over both eyes; about 0.3 open, under 0.15 closed."""
    p = np.asarray(landmarks68, np.float64).reshape(-1, 68, 2)
    ratios = []
    for eye in (p[:, list(points)] for points in _EYES):
        lids = np.linalg.norm(eye[:, 1] - eye[:, 5], axis=1)
        lids += np.linalg.norm(eye[:, 2] - eye[:, 4], axis=1)
        ratios.append(lids / np.maximum(2 * np.linalg.norm(eye[:, 0] - eye[:, 3], axis=1), 1e-6))
    return ((ratios[0] + ratios[1]) / 2).astype(np.float32)


def departure_strength(opening: np.ndarray, usual: np.ndarray) -> np.ndarray:
    """`(B,)` in [0, 1]: how far eyes of this opening depart from a usual one (`EYE_RAMP`)."""
    differ = np.abs(np.asarray(opening, np.float64) - np.asarray(usual, np.float64))
    return _smoothstep(*EYE_RAMP, differ).astype(np.float32)


#: A photo has no usual opening to depart from, and its eyes differ from the source's in
#: most pairs (narrower or wider eyes are part of the likeness), so on a photo the gated eyes
#: come from the target only where its eyes are (nearly) closed: fully below
#: `CLOSED_RAMP[0]`, not at all above `CLOSED_RAMP[1]` (and as far as the two differ,
#: `EYE_RAMP`). A blink, a laugh's shut eyes, not a habit.
CLOSED_RAMP = (0.15, 0.20)


def eye_strength(source_landmarks68: np.ndarray, target_landmarks68: np.ndarray) -> np.ndarray:
    """Per face `(B,)` in [0, 1]: how much of the eyes to take from the target, from the
    source's and the target's 68 landmarks (as `mouth_strength`): as far as the target's are
    closed (`CLOSED_RAMP`) and differ from the source's (`EYE_RAMP`)."""
    opening = eye_opening(target_landmarks68)
    closed = 1.0 - _smoothstep(*CLOSED_RAMP, opening)
    return (departure_strength(opening, eye_opening(source_landmarks68)) * closed).astype(
        np.float32
    )


def part_strengths(
    parts: tuple[str, ...] | list[str],
    source_landmarks68: np.ndarray | None,
    target_landmarks68: np.ndarray | None,
    eye_gate: np.ndarray | None = None,
) -> dict[str, np.ndarray] | None:
    """`region_weights`' strengths for `parts` of faces with these landmarks: the mouths'
    (`MOUTHS`) by `mouth_strength`, the gated eyes' (`EYES_GATED`) by `eye_strength`, the
    others in full. None (all in full) without landmarks. `eye_gate` `(B,)`: the gated eyes'
    strengths instead (in a video, how far each face's eyes depart from their own usual
    opening, `selfswap.swap.smoothing.BlinkGate`; NaN: by the source's as above)."""
    gates = {MOUTHS: mouth_strength, EYES_GATED: eye_strength}
    gated = [part for part in parts if any(part in group for group in gates)]
    if not gated or source_landmarks68 is None or target_landmarks68 is None:
        return None
    out = {}
    for group, strength in gates.items():
        if any(part in group for part in parts):
            value = strength(source_landmarks68, target_landmarks68)
            if group is EYES_GATED and eye_gate is not None:
                given = np.asarray(eye_gate, np.float32)
                value = np.where(np.isfinite(given), given, value).astype(np.float32)
            out.update({part: value for part in parts if part in group})
    return out


def hide_regions(
    texture: np.ndarray, visibility: np.ndarray, weights: np.ndarray, strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """`(texture, visibility)` of `render_source_texture` with the visibility taken away where
    `weights` `(B, 1, R, R)` say (`visibility · (1 − strength · weights)`) and the texture
    zeroed where nothing is left visible."""
    visibility = (visibility * (1.0 - strength * weights)).astype(np.float32)
    texture = (texture * (visibility > 0)).astype(np.float32)
    return texture, visibility


def parts_of(choice: str) -> tuple[str, ...]:
    """The parts of an option value ("none", "mouth", "wide-mouth", "eyes", "both")."""
    if choice not in CHOICES:
        raise ValueError(f"expression parts must be one of {', '.join(CHOICES)}, not {choice!r}")
    return CHOICES[choice]


def match_colours(
    texture: np.ndarray,
    visibility: np.ndarray,
    reference: np.ndarray,
    reference_visibility: np.ndarray,
    gain_limits: tuple[float, float] = (0.5, 2.0),
) -> np.ndarray:
    """`texture` `(B, C, R, R)` with each channel's mean and spread over the surface both
    photos saw brought to `reference`'s there (the target's skin tone and lighting to the
    source's), so a part taken from one photo does not stand out in the other's face."""
    both = np.minimum(visibility, reference_visibility)  # (B, 1, R, R)
    total = both.sum(axis=(2, 3), keepdims=True)
    if not (total > 1.0).all():
        return texture
    mean = lambda a: (a * both).sum(axis=(2, 3), keepdims=True) / total  # noqa: E731
    mu, ref_mu = mean(texture), mean(reference)
    std = np.sqrt(np.maximum(mean((texture - mu) ** 2), 1e-8))
    ref_std = np.sqrt(np.maximum(mean((reference - ref_mu) ** 2), 1e-8))
    gain = np.clip(ref_std / std, *gain_limits)
    return ((texture - mu) * gain + ref_mu).astype(np.float32)


def blend_textures(
    texture: np.ndarray,
    visibility: np.ndarray,
    other: np.ndarray,
    other_visibility: np.ndarray,
    weights: np.ndarray,
    match: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Two textures of one geometry (`render_source_texture` outputs, `(B, C, R, R)` and
    `(B, 1, R, R)`) mixed by `weights` `(B, 1, R, R)`: `other` where the weight is 1, the
    first where it is 0, each counted as far as its photo saw the surface; `match`: `other`'s
    colours brought to the first's first (`match_colours`). Returns `(texture, visibility)`,
    the texture zero where nothing is visible."""
    if match:
        other = match_colours(other, other_visibility, texture, visibility)
    a = visibility * (1.0 - weights)
    b = other_visibility * weights
    seen = a + b
    mixed = (texture * a + other * b) / np.maximum(seen, 1e-6)
    return (np.clip(mixed, 0.0, None) * (seen > 0)).astype(np.float32), seen.astype(np.float32)
