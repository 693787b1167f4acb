"""The parts of the face that keep the target's expression (`selfswap.geometry.regions`,
`FaceSwapper.source_texture`, `SwapConfig.expression_parts`), on the public-domain faces: the
astronaut smiles with her teeth showing, Grace Hopper's lips are closed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import yawed
from selfswap.errors import SelfswapError
from selfswap.face import align
from selfswap.geometry import regions
from selfswap.geometry.mesh import Geometry, face_geometry

R = 128
LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def engine():
    from selfswap.swap.pipeline import FaceSwapper

    return FaceSwapper.load("default")


def _largest(engine, image):
    return max(engine.analyzer.analyze(image), key=lambda f: f.width)


def _polygon(points: np.ndarray) -> np.ndarray:
    mask = np.zeros((R, R), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask > 0


@pytest.fixture(scope="module")
def collins(engine, astronaut):
    """The astronaut's face, its crop matrix, crop and landmarks in the crop."""
    face = _largest(engine, astronaut)
    matrix = align.alignment_matrix(face.landmarks68, R)
    crop = align.warp_to_crop(astronaut, matrix, R)
    return face, matrix, crop, align.transform_points(face.landmarks68, matrix)


@pytest.fixture(scope="module")
def hopper(engine, grace_hopper):
    face = _largest(engine, grace_hopper)
    return face, align.alignment_matrix(face.landmarks68, R)


def _swap_geometry(source, face, matrix) -> Geometry:
    """Source shape, the target face's expression, posed in its crop (what a swap paints)."""
    return Geometry(
        source.shape[None].astype(np.float32),
        np.asarray(face.expression, np.float32)[None],
        align.camera_to_crop(face.camera, matrix)[None],
    )


def test_parts_lie_on_their_landmarks(engine, collins):
    face, matrix, _, points = collins
    renderer = engine.masks.renderer
    geometry = face_geometry([face], matrix[None])
    mouth = regions.region_weights(renderer, geometry, ("mouth",))[0, 0]
    eyes = regions.region_weights(renderer, geometry, ("eyes",))[0, 0]
    both = regions.region_weights(renderer, geometry, ("mouth", "eyes"))[0, 0]
    lips, eye = _polygon(points[48:60]), _polygon(points[36:42]) | _polygon(points[42:48])
    # measured 0.79 of the lips (the 3DMM's lips sit a little off dlib's) and all of the eyes
    assert (mouth[lips] > 0.5).mean() > 0.7 and (eyes[eye] > 0.5).mean() > 0.95
    assert mouth[eye].max() == 0 and eyes[lips].max() == 0
    np.testing.assert_array_equal(both, np.maximum(mouth, eyes))
    silhouette = renderer.render_geometry(geometry, normals=False).silhouette[0, 0]
    assert both[silhouette < 0.5].max() == 0
    # regions, not the face: each part is a small share of it, with a soft edge
    assert (mouth > 0.5).sum() < 0.15 * (silhouette > 0.5).sum()  # measured 0.11
    assert ((mouth > 0.05) & (mouth < 0.95)).sum() > 0.3 * (mouth >= 0.95).sum()
    assert regions.region_weights(renderer, geometry, ()).max() == 0


def test_mouth_strength_follows_how_much_the_two_mouths_differ(collins, hopper):
    smile, closed = collins[0].landmarks68, hopper[0].landmarks68
    opening = regions.mouth_opening(np.stack([smile, closed]))
    assert opening[0] > 0.06 and opening[1] < 0.01  # measured 0.091 and 0.003
    # either way round: an open target under closed source lips, closed under open
    assert regions.mouth_strength(closed[None], smile[None])[0] == pytest.approx(1.0)
    assert regions.mouth_strength(smile[None], closed[None])[0] == pytest.approx(1.0)
    assert regions.mouth_strength(smile[None], smile[None])[0] == 0.0
    # a small difference takes a little of the target's mouth (the ramp is smooth)
    parted = closed.copy()
    parted[65:68, 1] += 0.15 * (opening[0] ** 0.5) * np.linalg.norm(closed[54] - closed[48])
    small = regions.mouth_strength(closed[None], parted[None])[0]
    assert 0.0 < small < 1.0, small
    # scale and position of the landmarks do not matter
    moved = 2.5 * np.stack([smile, closed]) + 40.0
    np.testing.assert_allclose(regions.mouth_opening(moved), opening, rtol=1e-5)
    assert regions.part_strengths(("eyes",), closed[None], smile[None]) is None


def test_an_open_target_mouth_comes_from_the_target(engine, astronaut, grace_hopper, collins):
    """Grace Hopper's closed lips onto the astronaut's smile: with `mouth` the texture over
    the mouth follows the astronaut's own pixels (teeth, parted lips), elsewhere it is the
    source's, unchanged."""
    face, matrix, crop, _ = collins
    source = engine.source_identity([grace_hopper])
    geometry = _swap_geometry(source, face, matrix)
    plain = engine.source_texture(source, geometry, 1, "none")
    mouth = engine.source_texture(source, geometry, 1, "mouth", None, astronaut, [face])
    parts = regions.parts_of("mouth")
    weights = regions.region_weights(engine.masks.renderer, geometry, parts)[0, 0]
    outside, inside = weights == 0, weights > 0.5
    for a, b in zip(plain, mouth):
        np.testing.assert_allclose(a[..., outside], b[..., outside], atol=1e-6)
    target = crop @ LUMA / 255.0
    luma = [t[0].transpose(1, 2, 0) @ LUMA for t, _ in (plain, mouth)]
    correlation = [np.corrcoef(x[inside], target[inside])[0, 1] for x in luma]
    assert correlation[1] > 0.8 and correlation[0] < 0.4  # measured 0.93 and 0.15
    assert np.abs(mouth[0] - plain[0])[..., inside].mean() > 0.05
    # the source texture's own function gives the unchanged texture (with the swap's mirror)
    from selfswap.geometry.texture import render_source_texture
    from selfswap.swap.pipeline import MIRROR

    own = render_source_texture(
        engine.masks.renderer, [source.texture_photo], face_geometry([source.texture_face]),
        geometry, mirror=MIRROR,
    )  # fmt: skip
    for a, b in zip(own, plain):
        np.testing.assert_array_equal(a, b)


def test_a_closed_target_mouth_under_an_open_source_comes_from_the_target(
    engine, astronaut, grace_hopper, hopper
):
    """The astronaut's smile onto Grace Hopper's closed lips: the mouths differ, so the mouth
    comes from her (her closed lips, not the astronaut's teeth), and only the mouth; the
    eyes likewise when asked for."""
    face, matrix = hopper
    source = engine.source_identity([astronaut])
    geometry = _swap_geometry(source, face, matrix)
    plain = engine.source_texture(source, geometry, 1, "none")
    mouth = engine.source_texture(source, geometry, 1, "mouth", None, grace_hopper, [face])
    parts = regions.parts_of("mouth")
    weights = regions.region_weights(engine.masks.renderer, geometry, parts)[0, 0]
    np.testing.assert_allclose(mouth[0][..., weights == 0], plain[0][..., weights == 0], atol=1e-6)
    assert np.abs(mouth[0] - plain[0])[..., weights > 0.5].mean() > 0.05
    # the eyes, when asked for, come from her too, and only they
    eyes = engine.source_texture(source, geometry, 1, "eyes", None, grace_hopper, [face])
    weights = regions.region_weights(engine.masks.renderer, geometry, ("eyes",))[0, 0]
    np.testing.assert_allclose(eyes[0][..., weights == 0], plain[0][..., weights == 0], atol=1e-6)
    assert np.abs(eyes[0] - plain[0])[..., weights > 0.5].mean() > 0.05


def test_shut_eyes_come_from_the_target_and_a_habit_stays_the_sources(
    engine, astronaut, grace_hopper, collins, hopper
):
    """`mouth-blinks` on a photo: a target's closed eyes come from the target; the
    astronaut's, wider open than Grace Hopper's, stay Hopper's (a habit is part of the
    likeness, not a blink); given a gate (a video's) they come from the astronaut."""
    wide, open_ = collins[0].landmarks68, hopper[0].landmarks68
    opening = regions.eye_opening(np.stack([wide, open_]))
    assert 0.3 < opening[0] < 0.4 and 0.2 < opening[1] < 0.3  # measured 0.352 and 0.260
    np.testing.assert_allclose(regions.eye_opening(3.0 * np.stack([wide, open_]) - 7), opening,
                               rtol=1e-5)  # fmt: skip
    closed = open_.copy()
    for eye in (list(range(36, 42)), list(range(42, 48))):
        middle = open_[eye, 1].mean()
        closed[eye, 1] = middle + 0.1 * (open_[eye, 1] - middle)
    assert regions.eye_opening(closed[None])[0] < 0.05
    assert regions.eye_strength(open_[None], closed[None])[0] == pytest.approx(1.0)
    assert regions.eye_strength(open_[None], open_[None])[0] == 0.0
    assert regions.eye_strength(open_[None], wide[None])[0] == 0.0  # 0.65 apart, but open
    assert regions.eye_strength(wide[None], open_[None])[0] == 0.0  # 0.09 apart, but open
    half = open_.copy()  # lids 70 % of the way shut: 0.08 apart, nearly closed
    for eye in (list(range(36, 42)), list(range(42, 48))):
        middle = open_[eye, 1].mean()
        half[eye, 1] = middle + 0.7 * (open_[eye, 1] - middle)
    assert 0.15 < regions.eye_opening(half[None])[0] < 0.2
    assert 0.0 < regions.eye_strength(wide[None], half[None])[0] < 1.0
    strengths = regions.part_strengths(regions.parts_of("mouth-blinks"), open_[None], closed[None])
    assert strengths["blinks"][0] == pytest.approx(1.0) and strengths["mouth"][0] == 0.0
    # strengths given (a video's `BlinkGate`) replace the gate by the source's; NaN keeps it
    parts = regions.parts_of("mouth-blinks")
    given = regions.part_strengths(parts, open_[None], np.stack([wide, closed, wide]),
                                   np.array([0.0, 0.5, np.nan]))  # fmt: skip
    assert given["blinks"] == pytest.approx([0.0, 0.5, 0.0], abs=1e-6)
    assert (
        given["mouth"].tolist()
        == regions.mouth_strength(open_[None], np.stack([wide, closed, wide])).tolist()
    )
    assert regions.departure_strength(np.array([0.3, 0.25, 0.1]), np.array([0.3, 0.3, 0.3])
                                      ).tolist() == [0.0, 0.0, 1.0]  # fmt: skip
    # in the swap's texture: onto the astronaut nothing changes on a photo; with a video's
    # gate the eyes change, and only they
    face, matrix, _, _ = collins
    source = engine.source_identity([grace_hopper])
    geometry = _swap_geometry(source, face, matrix)
    mouth = engine.source_texture(source, geometry, 1, "mouth", None, astronaut, [face])
    both = engine.source_texture(source, geometry, 1, "mouth-blinks", None, astronaut, [face])
    for a, b in zip(mouth, both):
        np.testing.assert_array_equal(a, b)
    gated = engine.source_texture(
        source, geometry, 1, "mouth-blinks", None, astronaut, [face], eye_gate=np.array([1.0])
    )
    weights = regions.region_weights(engine.masks.renderer, geometry, ("blinks",))[0, 0]
    np.testing.assert_allclose(gated[0][..., weights == 0], mouth[0][..., weights == 0], atol=1e-6)
    assert np.abs(gated[0] - mouth[0])[..., weights > 0.5].mean() > 0.03
    # Hopper onto herself: the eyes are as open as the target's, nothing changes
    face, matrix = hopper
    geometry = _swap_geometry(source, face, matrix)
    mouth = engine.source_texture(source, geometry, 1, "mouth", None, grace_hopper, [face])
    both = engine.source_texture(source, geometry, 1, "mouth-blinks", None, grace_hopper, [face])
    for a, b in zip(mouth, both):
        np.testing.assert_array_equal(a, b)


def test_a_mouth_as_open_as_the_targets_keeps_the_source(engine, grace_hopper, hopper):
    """Grace Hopper onto herself: the mouths are alike, nothing to take from the target."""
    face, matrix = hopper
    source = engine.source_identity([grace_hopper])
    geometry = _swap_geometry(source, face, matrix)
    plain = engine.source_texture(source, geometry, 1, "none")
    mouth = engine.source_texture(source, geometry, 1, "mouth", None, grace_hopper, [face])
    for a, b in zip(plain, mouth):
        np.testing.assert_array_equal(a, b)


def _astronaut_on_hopper(engine, astronaut, hopper):
    """Grace Hopper's face, the crops' renderer, the astronaut as the source and the swap
    geometry (her shape in Hopper's expression and pose)."""
    face, matrix = hopper
    source = engine.source_identity([astronaut])
    return face, engine.masks.renderer, source, _swap_geometry(source, face, matrix)


def test_wide_mouth_takes_the_lips_surroundings_too(engine, astronaut, grace_hopper, hopper):
    """`wide-mouth`: the mouth's region grown over the cheeks and chin around it, gated the
    same way (nothing taken where the mouths are alike)."""
    face, renderer, source, geometry = _astronaut_on_hopper(engine, astronaut, hopper)
    matrix = hopper[1]
    mouth = regions.region_weights(renderer, geometry, ("mouth",))[0, 0]
    wide = regions.region_weights(renderer, geometry, regions.parts_of("wide-mouth"))[0, 0]
    assert (wide >= mouth - 1e-6).all()
    assert (wide > 0.5).sum() > 1.5 * (mouth > 0.5).sum()  # measured 2.1x
    plain = engine.source_texture(source, geometry, 1, "none")
    taken = engine.source_texture(source, geometry, 1, "wide-mouth", None, grace_hopper, [face])
    ring = (wide > 0.9) & (mouth < 0.3)  # taken in full by the wide mouth only
    assert ring.sum() > 50
    assert np.abs(taken[0] - plain[0])[..., ring].mean() > 0.02
    np.testing.assert_allclose(taken[0][..., wide == 0], plain[0][..., wide == 0], atol=1e-6)
    alike = engine.source_identity([grace_hopper])  # her own mouth: nothing to take
    same = _swap_geometry(alike, face, matrix)
    for a, b in zip(
        engine.source_texture(alike, same, 1, "none"),
        engine.source_texture(alike, same, 1, "wide-mouth", None, grace_hopper, [face]),
    ):
        np.testing.assert_array_equal(a, b)


def test_the_mouth_takes_half_of_its_surroundings(engine, astronaut, grace_hopper, hopper):
    """The default `mouth`: the lips from the target, and around them `wide-mouth`'s region
    at half strength, so the cheeks and chin there are half the target's, half the
    source's."""
    face, renderer, source, geometry = _astronaut_on_hopper(engine, astronaut, hopper)
    lips = regions.region_weights(renderer, geometry, ("mouth",))[0, 0]
    mouth = regions.region_weights(renderer, geometry, regions.parts_of("mouth"))[0, 0]
    wide = regions.region_weights(renderer, geometry, regions.parts_of("wide-mouth"))[0, 0]
    ring = (wide > 0.9) & (lips < 0.3)
    assert ring.sum() > 50
    half = regions.FACTORS["mouth_ring"]
    np.testing.assert_allclose(mouth, np.maximum(lips, half * wide), atol=1e-6)
    plain, visibility = engine.source_texture(source, geometry, 1, "none")
    args = (None, grace_hopper, [face])
    taken = engine.source_texture(source, geometry, 1, "mouth", *args)[0]
    whole = engine.source_texture(source, geometry, 1, "wide-mouth", *args)[0]
    seen = ring & (visibility[0, 0] > 0.99)
    share = np.abs(taken - plain)[..., seen].mean() / np.abs(whole - plain)[..., seen].mean()
    assert 0.35 < share < 0.65  # the target's own pixels are seen there too: about half


def test_without_a_target_the_parts_are_hidden(engine, grace_hopper, collins):
    face, matrix, _, _ = collins
    source = engine.source_identity([grace_hopper])
    geometry = _swap_geometry(source, face, matrix)
    plain = engine.source_texture(source, geometry, 1, "none")
    hidden = engine.source_texture(source, geometry, 1, "both")
    weights = regions.region_weights(engine.masks.renderer, geometry, regions.parts_of("both"))
    np.testing.assert_allclose(hidden[1], plain[1] * (1 - weights), atol=1e-6)
    assert hidden[0][..., (weights[0, 0] == 1) | (plain[1][0, 0] == 0)].max() == 0


def test_blend_and_colour_match_are_exact_where_they_should_be():
    rng = np.random.default_rng(0)
    texture, other = rng.uniform(0, 1, (2, 2, 3, 16, 16)).astype(np.float32)
    visibility = rng.uniform(0, 1, (2, 1, 16, 16)).astype(np.float32)
    other_visibility = np.ones_like(visibility)
    zero, one = np.zeros_like(visibility), np.ones_like(visibility)
    t, v = regions.blend_textures(texture, visibility, other, other_visibility, zero)
    np.testing.assert_allclose(t, texture, atol=1e-6)
    np.testing.assert_array_equal(v, visibility)
    t, v = regions.blend_textures(texture, visibility, other, other_visibility, one, match=False)
    np.testing.assert_allclose(t, other, atol=1e-6)
    # a colour cast (gain and offset per channel) is taken out by the match
    cast = texture * np.array([1.3, 0.8, 1.0], np.float32)[:, None, None] + 0.1
    matched = regions.match_colours(cast, visibility, texture, visibility)
    np.testing.assert_allclose(matched, texture, atol=1e-4)


def test_expression_parts_is_a_swap_option(tmp_path):
    from selfswap.cli import _swap_config, build_parser
    from selfswap.swap.options import SwapConfig
    from selfswap.swap.pipeline import EXPRESSION_PARTS

    assert SwapConfig().expression_parts == EXPRESSION_PARTS == "mouth-blinks"
    base = ["swap", "-s", "a.png", "-t", "b.png", "-o", "c.png"]
    parser = build_parser()
    config = _swap_config(parser.parse_args([*base, "--expression-parts", "both"]))
    assert config == SwapConfig(expression_parts="both")
    assert _swap_config(parser.parse_args([*base, "--set", "expression_parts=none"])) == (
        SwapConfig(expression_parts="none")
    )
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--expression-parts", "nose"])
    with pytest.raises(SelfswapError, match="expression_parts must be one of"):
        SwapConfig(expression_parts="nose")
    with pytest.raises(ValueError, match="expression parts must be one of"):
        regions.parts_of("nose")
    # every value the option offers has its parts
    from selfswap.swap.options import EXPRESSION_CHOICES

    assert set(EXPRESSION_CHOICES) == set(regions.CHOICES)
    video = parser.parse_args(["video", "-s", "a.png", "-t", "b.mp4", "-o", "c.mp4",
                               "--expression-parts", "mouth-blinks"])  # fmt: skip
    assert _swap_config(video).expression_parts == "mouth-blinks"


@pytest.mark.parametrize("degrees", [40, -40])
def test_mirror_fills_what_the_source_did_not_see(engine, grace_hopper, collins, degrees):
    """Grace Hopper seen turned by 40° (her crop rendered in that view through her 3DMM fit)
    painted on the astronaut's frontal face: the side she turned away is hidden; `mirror`
    fills it with the other side of her face and leaves what she showed as it was."""
    from dataclasses import replace

    from selfswap.geometry.texture import render_source_texture

    face, matrix, _, _ = collins
    source = engine.source_identity([grace_hopper])
    hopper = source.texture_face
    crop_matrix = align.alignment_matrix(hopper.landmarks68, R)
    crop = align.warp_to_crop(grace_hopper, crop_matrix, R)
    upright = face_geometry([hopper], crop_matrix[None])
    turned = yawed(upright, degrees)
    seen, _ = render_source_texture(engine.masks.renderer, crop, upright, turned)
    source = replace(
        source,
        texture_photo=(seen[0].transpose(1, 2, 0) * 255).round().astype(np.uint8),
        texture_face=replace(hopper, camera=turned.camera[0]),
    )
    geometry = _swap_geometry(source, face, matrix)
    plain = engine.source_texture(source, geometry, 1, "none", mirror=0.0)
    filled = engine.source_texture(source, geometry, 1, "none")  # the default: full
    half = engine.source_texture(source, geometry, 1, "none", mirror=0.5)
    gained = filled[1] - plain[1]
    assert gained.min() > -1e-6 and filled[1].max() <= 1.0
    assert (gained > 0.5).sum() > 300, (gained > 0.5).sum()  # much of one side of the face
    np.testing.assert_allclose(half[1] - plain[1], gained / 2, atol=1e-5)
    shown = plain[1][0, 0] >= 0.999
    assert np.abs(filled[0][0][:, shown] - plain[0][0][:, shown]).max() < 1e-3
    # the new pixels are Hopper's skin, not the black around her rendered face
    new = gained[0, 0] > 0.5
    assert (filled[0][0][:, new].T @ LUMA).mean() > 0.3


def test_mirror_is_a_swap_option():
    from selfswap.cli import _swap_config, build_parser
    from selfswap.swap.options import SwapConfig
    from selfswap.swap.pipeline import MIRROR

    assert SwapConfig().mirror == MIRROR == 1.0
    base = ["swap", "-s", "a.png", "-t", "b.png", "-o", "c.png"]
    parser = build_parser()
    assert _swap_config(parser.parse_args([*base, "--mirror", "0"])) == SwapConfig(mirror=0.0)
    assert _swap_config(parser.parse_args([*base, "--set", "mirror=0.5"])) == (
        SwapConfig(mirror=0.5)
    )
    with pytest.raises(SelfswapError, match="mirror must be from 0 to 1"):
        SwapConfig(mirror=1.5)
