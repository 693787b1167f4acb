"""FaceNet component: GraphDef reader, Inception-ResNet-v1 port vs cv2.dnn, alignment."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from selfswap import samples
from selfswap.face.facenet import (
    CROP_SIZE,
    SAME_PERSON_COSINE,
    FaceNetEncoder,
    box_crop_affine,
    crop_to_image_affine,
    crop_transform,
    extract_box_crops,
    extract_crops,
    standardize,
)
from selfswap.face.identity import central_face_landmarks5
from selfswap.face.metrics import roc_auc, sample_pairs
from selfswap.face.tf_graph import parse_graph_def, read_graph_def
from selfswap.io.images import load_image
from selfswap.models import model_path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PARITY_COSINE = 0.999


@pytest.fixture(scope="module")
def encoder() -> FaceNetEncoder:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return FaceNetEncoder.load_default()


@pytest.fixture(scope="module")
def cv2_net() -> cv2.dnn.Net:
    return cv2.dnn.readNetFromTensorflow(str(model_path("facenet_casia")))


@pytest.fixture(scope="module")
def public_faces() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name in samples.SAMPLES:
        img = samples.sample(name)
        lm = central_face_landmarks5(img)
        assert lm is not None, f"no face found in {name}"
        out[name] = (img, lm)
    return out


def _cv2_embed(net: cv2.dnn.Net, crops: torch.Tensor, mode: str = "fixed") -> np.ndarray:
    """cv2.dnn's run of the same frozen graph, one crop at a time (its graph is batch 1)."""
    x = standardize(crops, mode).numpy()  # type: ignore[arg-type]
    out = []
    for i in range(len(x)):
        net.setInput(np.ascontiguousarray(x[i : i + 1]))
        out.append(net.forward()[0].copy())
    return np.array(out)


# ---------------------------------------------------------------------------------------------
# GraphDef reader
# ---------------------------------------------------------------------------------------------


def _field(num: int, payload: bytes) -> bytes:
    def varint(v: int) -> bytes:
        out = b""
        while True:
            b, v = v & 0x7F, v >> 7
            out += bytes([b | (0x80 if v else 0)])
            if not v:
                return out

    return varint(num << 3 | 2) + varint(len(payload)) + payload


def test_graph_reader_decodes_hand_made_graph() -> None:
    # A Const holding a 2x3 float tensor stored as its single repeated value (TF's compact
    # form), an int list attribute and a string input.
    shape = _field(2, b"\x08\x02") + _field(2, b"\x08\x03")
    tensor = b"\x08\x01" + _field(2, shape) + _field(5, struct.pack("<f", 1.5))
    attr_value = _field(8, tensor)
    attr_list = _field(1, _field(3, bytes([1, 2, 2, 1])))  # ListValue.i, packed
    node = _field(1, b"c") + _field(2, b"Const") + _field(3, b"x:0")
    node += _field(5, _field(1, b"value") + _field(2, attr_value))
    node += _field(5, _field(1, b"strides") + _field(2, attr_list))
    (n,) = parse_graph_def(_field(1, node))
    assert (n.name, n.op, n.inputs) == ("c", "Const", ["x:0"])
    np.testing.assert_array_equal(n.attr["value"], np.full((2, 3), 1.5, np.float32))
    assert n.attr["strides"] == [1, 2, 2, 1]


def test_graph_reader_reads_facenet_graph() -> None:
    nodes = read_graph_def(model_path("facenet_casia"))
    ops = Counter(n.op for n in nodes)
    assert ops["Conv2D"] == 132 and ops["MatMul"] == 1 and ops["Placeholder"] == 1
    inp = next(n for n in nodes if n.op == "Placeholder")
    assert inp.attr["shape"] == (1, 160, 160, 3)
    w = next(n for n in nodes if n.name == "InceptionResnetV1/Bottleneck/weights")
    assert w.attr["value"].shape == (1792, 512) and np.isfinite(w.attr["value"]).all()


# ---------------------------------------------------------------------------------------------
# The network and its parity with cv2.dnn
# ---------------------------------------------------------------------------------------------


def test_port_matches_cv2_dnn_on_public_faces(encoder, cv2_net, public_faces) -> None:
    imgs = [v[0] for v in public_faces.values()]
    lms = [v[1] for v in public_faces.values()]
    crops = encoder.crops(imgs, lms)
    for mode in ("fixed", "prewhiten"):
        net = FaceNetEncoder(encoder.net, mode)  # type: ignore[arg-type]
        with torch.no_grad():
            ours = net(crops).numpy()
        ref = _cv2_embed(cv2_net, crops, mode)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cos = (ours * ref).sum(1)
        assert cos.min() > PARITY_COSINE, (mode, cos)
        assert np.abs(ours - ref).max() < 1e-4


def test_batched_equals_unbatched_and_frozen(encoder, public_faces) -> None:
    imgs = [v[0] for v in public_faces.values()]
    lms = [v[1] for v in public_faces.values()]
    both = encoder.embed(imgs, lms)
    one = np.concatenate([encoder.embed(i, lm) for i, lm in zip(imgs, lms, strict=True)])
    np.testing.assert_allclose(both, one, atol=1e-5)
    encoder.train()
    assert not encoder.training and not encoder.net.training
    assert not any(p.requires_grad for p in encoder.parameters())


def test_gradients_flow_to_images(encoder, public_faces) -> None:
    img, lm = public_faces["astronaut"]
    image = torch.tensor(img).permute(2, 0, 1)[None].float().div(255).requires_grad_(True)
    crops = extract_crops(image, torch.from_numpy(lm)[None])
    with torch.no_grad():
        target = encoder(encoder.crops(*public_faces["grace_hopper"]))
    loss = 1 - (encoder(crops) * target).sum()
    loss.backward()
    assert image.grad is not None
    g = image.grad.abs()
    assert torch.isfinite(g).all() and g.sum() > 0
    # Only pixels inside the crop (around the face) receive gradient.
    ys, xs = torch.nonzero(g.sum((0, 1)) > 0, as_tuple=True)
    assert lm[:, 1].min() > ys.min().item() and lm[:, 1].max() < ys.max().item()
    assert lm[:, 0].min() > xs.min().item() and lm[:, 0].max() < xs.max().item()
    assert ys.max() - ys.min() < img.shape[0] * 0.9


def test_other_input_sizes_are_resized(encoder, public_faces) -> None:
    crops = encoder.crops(*public_faces["astronaut"])
    big = torch.nn.functional.interpolate(crops, size=(224, 224), mode="bilinear")
    with torch.no_grad():
        assert float((encoder(crops) * encoder(big)).sum()) > 0.98


def test_same_and_different_people(encoder, public_faces) -> None:
    (img_a, lm_a), (img_b, lm_b) = public_faces["astronaut"], public_faces["grace_hopper"]
    # The same face again, smaller, shifted and mirrored: a different crop of one person.
    small = cv2.resize(img_a, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)[:, ::-1]
    small = np.ascontiguousarray(small)
    lm_s = central_face_landmarks5(small)
    assert lm_s is not None
    e = encoder.embed([img_a, img_b, small], [lm_a, lm_b, lm_s])
    assert float(e[0] @ e[2]) > 0.8
    assert float(e[0] @ e[1]) < SAME_PERSON_COSINE


# ---------------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------------


def test_crop_matches_cv2_warp_affine(public_faces) -> None:
    img, lm = public_faces["astronaut"]  # face about as large as the crop: no antialiasing
    t = torch.tensor(img).permute(2, 0, 1)[None].float()
    for rotate in (True, False):
        ours = extract_crops(t, torch.from_numpy(lm)[None], rotate=rotate, antialias=False)[0]
        ref = cv2.warpAffine(img, crop_transform(lm, rotate=rotate), (CROP_SIZE, CROP_SIZE))
        diff = np.abs(ours.permute(1, 2, 0).numpy() - ref.astype(np.float32))
        assert diff.max() < 1.0  # cv2 interpolates in fixed point


def test_crop_puts_landmarks_on_template(public_faces) -> None:
    img, lm = public_faces["grace_hopper"]
    mat = crop_to_image_affine(torch.from_numpy(lm)[None])[0].numpy()
    inv = crop_transform(lm)
    back = np.c_[lm, np.ones(5)] @ inv.T
    np.testing.assert_allclose(np.c_[back, np.ones(5)] @ mat.T, lm, atol=1e-9)
    # Eyes level and the eye line in the upper half of the crop, nose below it.
    eyes = back[:4]
    assert np.ptp(eyes[:, 1]) < 4 and 40 < eyes[:, 1].mean() < 80 and back[4, 1] > 80
    assert abs(back[:, 0].mean() - 79.5) < 8


def test_box_crop_matches_facenet_resize(public_faces) -> None:
    img, _ = public_faces["astronaut"]
    x0, y0, x1, y1 = 170, 60, 290, 210
    box = torch.tensor([[x0, y0, x1, y1]], dtype=torch.float64)
    # facenet: cut img[y0:y1, x0:x1] (box grown by the margin) and cv2.resize it to 160x160.
    ref = cv2.resize(img[y0:y1, x0:x1], (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR)
    t = torch.tensor(img).permute(2, 0, 1)[None].float()
    ours = extract_box_crops(t, box, margin=0.0, antialias=False)
    diff = np.abs(ours[0].permute(1, 2, 0).numpy() - ref.astype(np.float32))
    # (cv2.resize clamps to the cut-out at its edge; we read the pixels beyond it.)
    assert diff[1:-1, 1:-1].max() < 1.0
    # The margin grows both sides by margin * sqrt(w h) in total, about the same centre.
    m = 0.3 * np.sqrt(120 * 150)
    mat = box_crop_affine(box, margin=0.3)[0].numpy()
    corners = mat @ np.array([[-0.5, -0.5, 1], [159.5, 159.5, 1]]).T + 0.5
    np.testing.assert_allclose(corners.T, [[x0 - m / 2, y0 - m / 2], [x1 + m / 2, y1 + m / 2]])


def test_antialiasing_large_faces(public_faces) -> None:
    img, lm = public_faces["astronaut"]
    big = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    t = torch.tensor(big).permute(2, 0, 1)[None].float() / 255
    lm3 = torch.from_numpy(lm * 3 + 1)[None]  # pixel centres: 3 (x + 0.5) - 0.5
    t1 = torch.tensor(img).permute(2, 0, 1)[None].float() / 255
    ref = extract_crops(t1, torch.from_numpy(lm)[None])
    aa = extract_crops(t, lm3)
    raw = extract_crops(t, lm3, antialias=False)
    assert (aa - ref).abs().mean() < (raw - ref).abs().mean()


# ---------------------------------------------------------------------------------------------
# LFW (shared data)
# ---------------------------------------------------------------------------------------------


def _lfw_eval() -> list[str]:
    split = SHARED_DATA / "splits" / "lfw_eval.txt"
    if not split.is_file():
        pytest.skip(f"shared face data not found at {SHARED_DATA}")
    return split.read_text().split()


@pytest.mark.slow
def test_port_matches_cv2_dnn_on_lfw(encoder, cv2_net) -> None:
    names = _lfw_eval()
    pick = np.random.default_rng(0).permutation(len(names))[:60]
    imgs, lms = [], []
    for k in pick:
        img = load_image(SHARED_DATA / "lfw" / names[k])
        lm = central_face_landmarks5(img)
        if lm is not None:
            imgs.append(img)
            lms.append(lm)
    assert len(imgs) >= 50
    crops = encoder.crops(imgs, lms)
    with torch.no_grad():
        ours = torch.cat([encoder(crops[i : i + 16]) for i in range(0, len(crops), 16)]).numpy()
    cos = (ours * _cv2_embed(cv2_net, crops)).sum(1)
    assert cos.min() > PARITY_COSINE, cos.min()


@pytest.mark.slow
def test_lfw_pairs_separate(encoder) -> None:
    names = _lfw_eval()
    same, diff = sample_pairs([n.split("/")[0] for n in names], 150, 150, seed=1)
    emb: dict[int, np.ndarray] = {}
    for i in sorted(set(same.ravel()) | set(diff.ravel())):
        img = load_image(SHARED_DATA / "lfw" / names[i])
        lm = central_face_landmarks5(img)
        if lm is not None:
            emb[i] = encoder.embed(img, lm)[0]
    pairs = [(p, lab) for ps, lab in ((same, True), (diff, False)) for p in ps]
    pairs = [(p, lab) for p, lab in pairs if p[0] in emb and p[1] in emb]
    assert len(pairs) > 250
    scores = np.array([float(emb[p[0]] @ emb[p[1]]) for p, _ in pairs])
    labels = np.array([lab for _, lab in pairs])
    assert roc_auc(scores, labels) > 0.97
    assert np.mean((scores > SAME_PERSON_COSINE) == labels) > 0.9
