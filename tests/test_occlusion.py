"""Occlusion-aware swaps (issue #17) on the public-domain faces: keep-the-mouth, hands and the
occlusion segmenter, and the options that switch them."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from selfswap.errors import SelfswapError
from selfswap.face import align
from selfswap.models import verify
from selfswap.swap.occlusion import (
    MOUTH_GROW,
    HandLandmarker,
    Occlusion,
    configure,
    hand_mask,
    hold_back,
    mouth_mask,
)

HAND_MODELS = ("palm_detection_lite", "hand_landmark_lite")
FULL_HAND_MODELS = ("palm_detection_full", "hand_landmark_full")


def _models_ok(*names: str) -> bool:
    try:
        return all(status == "ok" for status in verify(list(names)).values())
    except Exception:  # noqa: BLE001 - a missing runtime package counts as missing
        return False


needs_hands = pytest.mark.skipif(not _models_ok(*HAND_MODELS), reason="hand models not pulled")
needs_full_hands = pytest.mark.skipif(
    not _models_ok(*FULL_HAND_MODELS), reason="full hand models not pulled"
)
needs_segmenter = pytest.mark.skipif(not _models_ok("occluder"), reason="no occlusion segmenter")


@pytest.fixture(scope="module")
def swapper():
    from selfswap.swap.pipeline import FaceSwapper

    torch.set_num_threads(1)
    return FaceSwapper.load("default")


@pytest.fixture(scope="module")
def astronaut_face(swapper, astronaut):
    return max(swapper.fast_analyzer.analyze(astronaut), key=lambda f: f.width)


def _swap(swapper, source, target, keep_mouth=False, occlusion="none") -> np.ndarray:
    configure(swapper, keep_mouth, occlusion)
    try:
        return swapper.swap_image([source], target, watermark=False).image
    finally:
        configure(swapper)


def _inner_mouth(face, shape) -> np.ndarray:
    """The inner-lip polygon (points 60-67) filled in the frame, bool `(H, W)`."""
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(face.landmarks68[60:68]).astype(np.int32)], 1)
    return m.astype(bool)


def test_mouth_mask_follows_the_inner_lips():
    size = 128
    points = np.zeros((2, 68, 2))
    points[:, :, :] = 64
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 8, endpoint=False)),
                     np.sin(np.linspace(0, 2 * np.pi, 8, endpoint=False))], 1)  # fmt: skip
    points[0, 60:68] = [64, 90] + ring * [12, 5]  # open mouth
    points[1, 60:68] = [64, 90] + ring * [12, 0]  # closed: a line
    masks = mouth_mask(points, size)
    assert masks.shape == (2, size, size) and masks.dtype == np.float32
    assert masks[1].max() == 0  # a closed mouth keeps nothing
    assert masks[0][90, 64] == 1 and masks[0][90, 52 - round(MOUTH_GROW * size)] > 0.5
    assert masks[0][:70].max() == 0 and masks[0][:, :40].max() == 0  # only near the mouth
    with pytest.raises(ValueError, match=r"\(N, 68, 2\)"):
        mouth_mask(points[0], size)


def test_keep_mouth_keeps_the_inner_mouth_and_only_that(swapper, astronaut, grace_hopper,
                                                        astronaut_face):  # fmt: skip
    plain = _swap(swapper, grace_hopper, astronaut)
    kept = _swap(swapper, grace_hopper, astronaut, keep_mouth=True)
    mouth = _inner_mouth(astronaut_face, astronaut.shape)
    assert mouth.sum() > 50  # the astronaut smiles with her teeth showing
    assert np.array_equal(kept[mouth], astronaut[mouth])  # her own teeth, bit for bit
    assert not np.array_equal(plain[mouth], astronaut[mouth])  # which a plain swap replaces
    # the paste-back itself changes nothing else: everything that differs lies within the
    # grown, feathered polygon (grow + soft edge (3 sigma) + the paste-back's erosion and blur,
    # 3 % of R each, in frame pixels), checked on `swap_faces` + `hold_back` + `paste`.
    source = swapper.source_identity([grace_hopper])
    crops, masks, matrices = swapper.swap_faces(astronaut, [astronaut_face], source)
    configure(swapper, keep_mouth=True)
    masks_kept = hold_back(swapper, astronaut, [astronaut_face], matrices, masks)
    configure(swapper)
    assert (masks_kept <= masks).all() and (masks_kept < masks).any()
    plain = swapper.paste(astronaut, crops, masks, matrices)
    kept = swapper.paste(astronaut, crops, masks_kept, matrices)
    assert np.array_equal(kept[mouth], astronaut[mouth])
    # (by more than one grey level: a blur's tail beyond 3 sigma still rounds to one)
    changed = np.abs(kept.astype(int) - plain).max(axis=2) > 1
    matrix = align.alignment_matrix(astronaut_face.landmarks68, swapper.size)
    reach = (MOUTH_GROW + 0.024 + 0.03 + 0.03) * swapper.size / align.matrix_scale(matrix) + 2
    distance = cv2.distanceTransform((~mouth).astype(np.uint8), cv2.DIST_L2, 5)
    assert changed.any() and distance[changed].max() <= reach


def _cheek_occluder(image: np.ndarray, face) -> tuple[np.ndarray, np.ndarray]:
    """A striped blue and yellow disc over the left cheek (image left): `(image, bool mask)`."""
    p = face.landmarks68
    centre = (0.55 * p[2] + 0.45 * p[31]).round().astype(int)
    radius = int(0.3 * np.linalg.norm(p[0] - p[16]) / 2)
    disc = np.zeros(image.shape[:2], np.uint8)
    cv2.circle(disc, tuple(int(v) for v in centre), radius, 1, -1)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    stripes = np.where(((xx + yy) // 6 % 2)[..., None] == 0, [30, 60, 200], [230, 200, 40])
    out = np.where(disc[..., None] > 0, stripes, image).astype(np.uint8)
    return out, disc.astype(bool)


@needs_segmenter
def test_an_occluder_on_the_cheek_stays_in_front_with_the_segmenter(
    swapper, astronaut, grace_hopper, astronaut_face
):
    occluded, disc = _cheek_occluder(astronaut, astronaut_face)
    inner = cv2.erode(disc.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    painted = _swap(swapper, grace_hopper, occluded)
    kept = _swap(swapper, grace_hopper, occluded, occlusion="segmenter")
    unchanged = lambda out: float((out[inner] == occluded[inner]).all(axis=1).mean())  # noqa: E731
    assert unchanged(painted) < 0.2  # without occlusion handling the swap paints over it
    assert unchanged(kept) >= 0.95
    face_box = astronaut_face.box.astype(int)
    x0, y0, x1, y1 = face_box
    changed = np.abs(kept.astype(int) - occluded).max(axis=2)[y0:y1, x0:x1] > 0
    assert changed.mean() > 0.3  # and the rest of the face is still swapped


def test_hand_mask_covers_the_hand_and_its_fingers():
    # a flat hand, fingers up: wrist at the bottom, four fingers and a thumb
    hand = [[64, 110]]
    hand += [[50 - 4 * k, 100 - 8 * k] for k in range(4)]  # thumb
    for x in (54, 62, 70, 78):
        hand += [[x, 80 - 10 * k] for k in range(4)]
    hand = np.array(hand, np.float64)
    m = hand_mask([hand], np.array([[1.0, 0, 0], [0, 1.0, 0]]), 128)
    assert m.shape == (128, 128) and m.dtype == np.float32
    assert (m[np.round(hand[:, 1]).astype(int), np.round(hand[:, 0]).astype(int)] == 1).all()
    assert m[50, 66] == 1  # between the finger axes: inside the hull
    assert m[10, 10] == 0 and m[120, 120] == 0
    assert hand_mask([], np.eye(2, 3), 64).max() == 0


@needs_hands
def test_hands_find_no_hand_on_a_face_without_hands(swapper, astronaut, grace_hopper,
                                                    astronaut_face):  # fmt: skip
    from selfswap.swap.occlusion import search_region

    tracker = HandLandmarker()
    assert tracker.hands(astronaut, search_region(astronaut_face.box)) == []
    assert tracker.hands(np.zeros((300, 300, 3), np.uint8), (0, 0, 300, 300)) == []
    # with no hand found, the hands mode swaps exactly like no occlusion handling
    assert np.array_equal(_swap(swapper, grace_hopper, astronaut, occlusion="hands"),
                          _swap(swapper, grace_hopper, astronaut))  # fmt: skip


@needs_full_hands
def test_full_hand_models_find_no_hand_either(astronaut, astronaut_face):
    from selfswap.swap.occlusion import search_region

    tracker = HandLandmarker(variant="full")
    assert tracker.model_names == FULL_HAND_MODELS
    assert tracker.hands(astronaut, search_region(astronaut_face.box)) == []
    with pytest.raises(ValueError, match="lite"):
        HandLandmarker(variant="huge")


def test_nearby_faces_share_one_palm_search_and_far_ones_do_not():
    from selfswap.swap.occlusion import HAND_SEARCH, _group_regions, search_region

    a, b = np.array([100, 100, 160, 170.0]), np.array([180, 110, 240, 180.0])
    far = np.array([900, 100, 960, 170.0])
    one = _group_regions([search_region(a), search_region(b)])
    assert len(one) == 1
    x0, y0, side, side2 = one[0]
    assert side == side2 and side <= 1.5 * HAND_SEARCH * 70 + 1
    for box in (a, b):  # the joined square holds both faces' own squares
        r = search_region(box)
        assert x0 <= r[0] and y0 <= r[1] and r[0] + r[2] <= x0 + side and r[1] + r[3] <= y0 + side
    assert len(_group_regions([search_region(a), search_region(far)])) == 2
    assert _group_regions([search_region(a)]) == [search_region(a)]


def test_only_palms_whose_hand_box_reaches_a_face_get_landmarks():
    from selfswap.swap.occlusion import _reaches

    faces = np.array([[100, 100, 160, 170.0]])
    # palm rows (cx, cy, w, h, wrist x, y, middle knuckle x, y): fingers up
    near = np.array([130, 200, 30, 30, 130, 215, 130, 185.0])
    far = np.array([400, 400, 30, 30, 400, 415, 400, 385.0])
    assert _reaches(HandLandmarker.hand_box(near), faces)
    assert not _reaches(HandLandmarker.hand_box(far), faces)

    class Counting(HandLandmarker):
        calls = 0

        def palms(self, image, region):
            return [near, far]

        def landmarks(self, image, palm):
            Counting.calls += 1
            return np.tile(palm[:2], (21, 1)), 1.0

    tracker = Counting()
    found = tracker.frame_hands(np.zeros((500, 500, 3), np.uint8), faces)
    assert Counting.calls == 1 and len(found) == 1 and found[0][0, 0] == 130


def test_real_hand_cutouts_are_a_training_kind(tmp_path, astronaut, astronaut_face):
    from selfswap.data.occluders import (
        EVAL_KINDS,
        TRAIN_KINDS,
        load_cutouts,
        occlude,
        training_kinds,
    )

    assert training_kinds(0) == TRAIN_KINDS
    kinds = training_kinds(50)
    assert "realhand" in kinds and 0.3 <= kinds.count("realhand") / len(kinds) <= 0.45
    assert not set(kinds) & set(EVAL_KINDS)  # the benchmark's kinds stay held out
    cut = np.zeros((60, 40, 4), np.uint8)
    cut[..., :3] = (250, 20, 20)
    cut[10:50, 5:35, 3] = 255
    np.savez_compressed(tmp_path / "shard-x-000000.npz", **{"000": cut, "001": cut})
    np.savez_compressed(tmp_path / "shard-x-000002.npz")  # a shard that found nothing
    cutouts = load_cutouts(tmp_path)
    assert len(cutouts) == 2 and cutouts[0].shape == (60, 40, 4)
    rng = np.random.default_rng(0)
    out, alpha, kind = occlude(astronaut, astronaut_face.landmarks68, rng, ("realhand",),
                               cutouts=cutouts)  # fmt: skip
    assert kind == "realhand" and alpha.shape == astronaut.shape[:2]
    covered = alpha > 0.99
    assert covered.sum() > 500  # a cut-out the size of a hand, over the face
    assert (out[covered][:, 0].astype(int) - out[covered][:, 2] > 100).all()  # its red pixels
    assert np.array_equal(out[alpha == 0], astronaut[alpha == 0])


def test_cut_hands_keeps_the_hand_where_the_person_is():
    from selfswap.data.occluders import cut_hands

    image = np.full((200, 200, 3), 90, np.uint8)
    hand = [[100, 150]] + [[80 - 4 * k, 140 - 8 * k] for k in range(4)]  # wrist, thumb
    for x in (88, 98, 108, 118):
        hand += [[x, 120 - 12 * k] for k in range(4)]
    hand = np.array(hand, np.float64)

    class Tracker:
        def palms(self, image, region):
            return [np.zeros(8)]

        def landmarks(self, image, palm):
            return hand, 0.99

    class Selfie:  # the person fills the left half of the picture
        def get_input_details(self):
            return [{"index": 0}]

        get_output_details = get_input_details

        def set_tensor(self, index, x):
            assert x.shape == (1, 256, 256, 3)

        def invoke(self):
            pass

        def get_tensor(self, index):
            p = np.zeros((1, 256, 256, 1), np.float32)
            p[:, :, :128] = 1
            return p

    (cut,) = cut_hands(image, Tracker(), Selfie())
    assert cut.dtype == np.uint8 and cut.shape[2] == 4
    x0 = int(hand[:, 0].min() - 0.3 * np.ptp(hand[:, 1]))  # the crop's left edge (30 % pad)
    alpha = cut[..., 3]
    assert alpha[:, : 95 - x0].max() == 255  # the hand, where the person is
    assert alpha[:, 105 - x0 :].max() == 0  # nothing right of the person
    assert cut_hands(image, type("Low", (Tracker,), {"landmarks": lambda s, i, p: (hand, 0.5)})(),
                     Selfie()) == []  # fmt: skip


def test_occlusion_options_are_swap_config_fields_and_cli_flags():
    from selfswap.cli import _swap_config, build_parser
    from selfswap.swap.options import SwapConfig

    assert SwapConfig().keep_mouth is False and SwapConfig().occlusion == "none"
    base = ["swap", "-s", "a.png", "-t", "b.png", "-o", "c.png"]
    parser = build_parser()
    config = _swap_config(parser.parse_args([*base, "--keep-mouth", "true", "--occlusion", "both"]))
    assert config == SwapConfig(keep_mouth=True, occlusion="both")
    assert _swap_config(parser.parse_args([*base, "--set", "occlusion=hands"])).occlusion == "hands"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--occlusion", "everything"])
    engine = type("Engine", (), {})()
    occlusion = configure(engine, config.keep_mouth, config.occlusion)
    assert engine.occlusion is occlusion and occlusion.active
    assert not Occlusion().active
    with pytest.raises(SelfswapError, match="occlusion must be one of"):
        configure(engine, occlusion="everything")


@needs_segmenter
def test_cli_swap_keeps_the_occluder_with_the_flag(tmp_path, astronaut, astronaut_face):
    from selfswap.io.images import load_image, save_image
    from selfswap.samples import sample_path

    occluded, disc = _cheek_occluder(astronaut, astronaut_face)
    target = tmp_path / "occluded.png"
    save_image(target, occluded)
    out = tmp_path / "out.png"
    result = subprocess.run(
        [sys.executable, "-m", "selfswap.cli", "swap", "-s", str(sample_path("grace_hopper")),
         "-t", str(target), "-o", str(out), "--occlusion", "segmenter"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    inner = cv2.erode(disc.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    swapped = load_image(out)
    assert (np.abs(swapped[inner].astype(int) - occluded[inner]) <= 2).all(axis=1).mean() >= 0.95


def test_training_batches_draw_real_hand_cutouts(astronaut, astronaut_face):
    from selfswap.train.occluder import make_batch

    matrix = align.alignment_matrix(astronaut_face.landmarks68, 128)
    crop = align.warp_to_crop(astronaut, matrix, 128)
    marks = align.transform_points(astronaut_face.landmarks68, matrix)
    cut = np.zeros((50, 40, 4), np.uint8)
    cut[..., :3] = (20, 240, 20)  # a green "hand" no face or synthetic occluder has
    cut[5:45, 5:35, 3] = 255
    images, targets, weights = make_batch(
        crop[None], marks[None], [], 24, np.random.default_rng(1), [cut]
    )
    assert images.shape == (24, 3, 128, 128) and targets.shape == weights.shape == (24, 1, 128, 128)
    assert targets.min() >= 0 and targets.max() <= 1 and targets.amax((1, 2, 3)).max() > 0.9
    green = (images[:, 1] - images[:, 0] > 0.5) & (images[:, 1] - images[:, 2] > 0.5)
    assert green.any()  # some samples carry the cut-out, and their target covers it
    assert (targets[:, 0][green] > 0.5).float().mean() > 0.9


def test_yaw_balanced_sampling_weighs_every_yaw_bin_alike():
    from selfswap.train.occluder import sampling, yaw_balanced

    yaws = np.array([1.0] * 90 + [-45.0] * 10)  # 90 frontal faces, 10 profiles
    p = yaw_balanced(yaws)
    assert p.sum() == pytest.approx(1.0)
    assert p[:90].sum() == pytest.approx(0.5) and p[90:].sum() == pytest.approx(0.5)
    rare = yaw_balanced(np.array([1.0] * 99 + [45.0]))  # one profile: counts as 5 % of the set
    assert rare[99] == pytest.approx(1 / 6)  # not half of all draws
    both = sampling([(yaws, 0.25), (np.zeros(5), 0.75)], balance=False)
    assert both[:100].sum() == pytest.approx(0.25) and both[100:] == pytest.approx(0.15)


def test_clean_training_samples_are_all_face(astronaut, astronaut_face):
    from selfswap.train.occluder import make_batch

    matrix = align.alignment_matrix(astronaut_face.landmarks68, 128)
    crop = align.warp_to_crop(astronaut, matrix, 128)
    marks = align.transform_points(astronaut_face.landmarks68, matrix)
    images, targets, weights = make_batch(
        crop[None], marks[None], [], 6, np.random.default_rng(2), clean=1.0, sharpen=1.0
    )
    assert targets.max() == 0 and weights.max() == 1.0  # negatives: the face region counts
    crisp = images[:, :, 30:100, 30:100].std(dim=(2, 3)).mean()
    plain, _, _ = make_batch(crop[None], marks[None], [], 6, np.random.default_rng(2), clean=1.0)
    assert crisp > plain[:, :, 30:100, 30:100].std(dim=(2, 3)).mean()  # the unsharp mask


def test_training_reads_a_set_still_being_prepared(tmp_path, astronaut, astronaut_face):
    import pandas as pd

    from selfswap.train.occluder import load_faces

    matrix = align.alignment_matrix(astronaut_face.landmarks68, 128)
    (tmp_path / "crops").mkdir()
    (tmp_path / "parts").mkdir()
    cv2.imwrite(str(tmp_path / "crops" / "a.jpg"), align.warp_to_crop(astronaut, matrix, 128))
    marks = align.transform_points(astronaut_face.landmarks68, matrix).ravel()
    for i, yaw in enumerate((5.0, -40.0)):
        pd.DataFrame({"crop": ["crops/a.jpg"], "landmarks68": [marks], "yaw": [yaw]}).to_parquet(
            tmp_path / "parts" / f"part-{i:05d}.parquet"
        )
    crops, landmarks, yaws = load_faces(tmp_path, 10, 0)
    assert crops.shape == (2, 128, 128, 3) and landmarks.shape == (2, 68, 2)
    assert sorted(yaws) == [-40.0, 5.0]
