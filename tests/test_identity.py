"""Identity component: dlib .dat reader, dlib chip alignment, PyTorch port of dlib's ResNet."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest
import torch

from selfswap.face.dlib_dat import read_dlib_dnn
from selfswap.face.identity import (
    SAME_PERSON_DISTANCE,
    DlibResNet,
    IdentityEncoder,
    _full_object_detection,
    central_face_landmarks5,
    cosine_similarity,
    extract_chips,
    face_chip_transform,
)
from selfswap.face.metrics import lfw_verification, roc_auc, sample_pairs
from selfswap.models import model_path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
N_LFW_COSINE = 100


def _astronaut() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[..., :3])


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB")).copy()


def _lfw_eval() -> tuple[Path, list[str]]:
    split = SHARED_DATA / "splits" / "lfw_eval.txt"
    if not split.is_file():
        pytest.skip(f"shared face data not found at {SHARED_DATA}")
    return SHARED_DATA / "lfw", split.read_text().split()


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


@pytest.fixture(scope="module")
def encoder() -> IdentityEncoder:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return IdentityEncoder()


@pytest.fixture(scope="module")
def public_faces() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, img in (("astronaut", _astronaut()), ("grace_hopper", _grace_hopper())):
        lm = central_face_landmarks5(img)
        assert lm is not None, f"no face found in {name}"
        out[name] = (img, lm)
    return out


def _dlib_chip(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    return dlib.get_face_chip(img, _full_object_detection(lm), 150, 0.25).astype(np.float64)


def test_dat_reader_reads_the_whole_network() -> None:
    net = read_dlib_dnn(model_path("dlib_resnet_v1"))
    kinds = Counter(layer.kind for layer in net.layers)
    assert kinds == {
        "con_4": 29,
        "affine_": 29,
        "relu_": 29,
        "add_prev_": 14,
        "avg_pool_2": 5,
        "max_pool_2": 1,
        "fc_2": 1,
    }
    assert net.input.kind == "input_rgb_image_sized"
    assert net.input.attrs["avg_red"] == pytest.approx(122.782, abs=1e-4)
    assert net.loss.attrs["distance_threshold"] == pytest.approx(0.6)
    n_params = sum(a.size for layer in net.layers for a in layer.arrays.values())
    assert n_params == sum(p.numel() for p in DlibResNet().parameters())


def test_chip_geometry_matches_dlib_chip_details() -> None:
    """Centre, angle and side of the chip rectangle equal dlib's for random landmark sets."""
    rng = np.random.default_rng(0)
    base = np.array([[255, 104], [238, 105], [195, 101], [212, 103], [224, 135]], float)
    for _ in range(20):
        ang = rng.uniform(-0.6, 0.6)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        lm = (base - base.mean(0)) @ rot.T * rng.uniform(0.3, 4) + rng.uniform(100, 900, 2)
        lm = np.rint(lm + rng.normal(0, 2, lm.shape))
        d = dlib.get_face_chip_details(_full_object_detection(lm), 150, 0.25)
        m = np.linalg.inv(np.vstack([face_chip_transform(lm), [0, 0, 1]]))[:2]  # chip -> image
        centre = m @ [74.5, 74.5, 1]
        rect = d.rect
        ref_centre = [(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2]
        np.testing.assert_allclose(centre, ref_centre, atol=1e-6)
        assert np.arctan2(m[1, 0], m[0, 0]) == pytest.approx(d.angle, abs=1e-9)
        corner_gap = np.hypot(*(m @ [149, 0, 1] - m @ [0, 0, 1]))
        assert corner_gap == pytest.approx(rect.right() - rect.left(), abs=1e-6)


def test_chip_transform_matches_dlib_chip(public_faces) -> None:
    for name, (img, lm) in public_faces.items():
        ref = _dlib_chip(img, lm)
        m = face_chip_transform(lm)
        assert m.shape == (2, 3)
        warped = cv2.warpAffine(img, m, (150, 150), flags=cv2.INTER_LINEAR).astype(np.float64)
        inner = np.s_[2:-2, 2:-2]  # borders differ only in out-of-image handling
        diff = np.abs(warped[inner] - ref[inner])
        # OpenCV's fixed-point bilinear vs dlib's float bilinear + truncation: ~1 level.
        assert diff.mean() < 1.0, name
        assert np.quantile(diff, 0.99) <= 2, name
        # The torch extraction reproduces dlib's chip to the 8-bit level everywhere.
        mine = IdentityEncoder().chips(img, [lm])[0].permute(1, 2, 0).numpy() * 255
        diff = np.abs(mine - ref)
        assert diff.max() <= 1.0 and diff.mean() < 0.01, name


def test_chip_matches_dlib_on_large_face() -> None:
    """Faces > 2x the chip size: dlib samples a pyramid level; extract_chips does the same."""
    img0 = _astronaut()
    lm0 = central_face_landmarks5(img0)
    for f in (2.7, 4.3):
        img = cv2.resize(img0, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR)
        lm = np.rint(lm0 * f)
        ref = _dlib_chip(img, lm)
        mine = IdentityEncoder().chips(img, [lm])[0].permute(1, 2, 0).numpy() * 255
        diff = np.abs(mine - ref)
        assert diff.max() <= 1.0 and diff.mean() < 0.01, f


def test_torch_port_matches_dlib_on_public_faces(encoder, public_faces) -> None:
    rec = dlib.face_recognition_model_v1(str(model_path("dlib_resnet_v1")))
    for name, (img, lm) in public_faces.items():
        # The network alone, on dlib's own chip.
        chip = _dlib_chip(img, lm).astype(np.uint8)
        ref_chip = np.asarray(rec.compute_face_descriptor(chip))
        with torch.no_grad():
            out = encoder.net(torch.from_numpy(chip).permute(2, 0, 1)[None].float() / 255)[0]
        assert np.abs(out.numpy() - ref_chip).max() < 1e-4, name
        # Whole pipeline: image + landmarks.
        ref = encoder.embed_dlib(img, lm)
        emb = encoder.embed(img, [lm])[0]
        cos = cosine_similarity(emb, ref)
        print(f"{name}: cosine torch vs dlib = {cos:.9f}")
        assert cos > 0.999, name
        assert np.linalg.norm(emb - ref) < 0.01, name


def test_torch_port_matches_dlib_on_lfw(encoder) -> None:
    root, names = _lfw_eval()
    picks = names[:: max(1, len(names) // (N_LFW_COSINE + 10))]
    images, lms = [], []
    for name in picks:
        img = _read_rgb(root / name)
        lm = central_face_landmarks5(img)
        if lm is not None:
            images.append(img)
            lms.append(lm)
        if len(images) == N_LFW_COSINE:
            break
    assert len(images) >= N_LFW_COSINE
    emb = encoder.embed(images, lms)
    ref = np.stack([encoder.embed_dlib(img, lm) for img, lm in zip(images, lms, strict=True)])
    cos = cosine_similarity(emb, ref)
    print(f"LFW ({len(images)} faces): min cosine {cos.min():.9f}, mean {cos.mean():.9f}")
    assert cos.min() > 0.999


def test_batched_equals_unbatched(encoder, public_faces) -> None:
    chips = encoder.chips(
        [img for img, _ in public_faces.values()], [lm for _, lm in public_faces.values()]
    )
    chips = torch.cat([chips, chips.flip(-1)])  # 4 chips
    with torch.no_grad():
        batched = encoder.net(chips)
        single = torch.cat([encoder.net(c[None]) for c in chips])
    assert batched.shape == (4, 128)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_gradients_flow_to_chips_and_images(encoder, public_faces) -> None:
    img, lm = public_faces["astronaut"]
    image = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).requires_grad_(True)
    chips = extract_chips(image, torch.from_numpy(lm)[None])
    chips.retain_grad()
    target = torch.from_numpy(encoder.embed_dlib(*public_faces["grace_hopper"])).float()
    loss = (encoder.net(chips)[0] - target).pow(2).sum()
    loss.backward()
    for g in (chips.grad, image.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # Only the face region receives gradient.
    assert image.grad[0, :, :50].abs().sum() == 0


def test_same_and_different_people(encoder, public_faces) -> None:
    (a_img, a_lm), (g_img, g_lm) = public_faces["astronaut"], public_faces["grace_hopper"]
    a, g = encoder.embed([a_img, g_img], [a_lm, g_lm])
    assert np.linalg.norm(a - g) > SAME_PERSON_DISTANCE

    views = []
    crop = np.ascontiguousarray(a_img[20:400, 60:460])
    flip = np.ascontiguousarray(a_img[:, ::-1])
    small = cv2.resize(a_img, (300, 300), interpolation=cv2.INTER_AREA)
    for view in (crop, flip, small):
        lm = central_face_landmarks5(view)
        assert lm is not None
        views.append(encoder.embed(view, [lm])[0])
    for v in views:
        assert np.linalg.norm(v - a) < SAME_PERSON_DISTANCE
        assert np.linalg.norm(v - g) > SAME_PERSON_DISTANCE


def test_roc_auc_function() -> None:
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([1.0, 1.0]), np.array([1, 0])) == 0.5
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=500), rng.integers(0, 2, 500)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in s[y == 1] for n in s[y == 0]])
    assert roc_auc(s, y) == pytest.approx(brute)
    same, diff = sample_pairs(["a", "a", "b", "b", "b", "c"], 10, 5, seed=1)
    assert len(same) == 4 and len(diff) == 5


@pytest.mark.slow
def test_lfw_roc_auc() -> None:
    root, names = _lfw_eval()
    r = lfw_verification(root, names, 1200, seed=0)
    print(f"LFW eval: {r['same']} same / {r['different']} different, AUC {r['auc']:.4f}")
    assert r["same"] >= 1000 and r["different"] >= 1000
    assert r["auc"] >= 0.97
