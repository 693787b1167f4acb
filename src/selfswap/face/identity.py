"""Identity embedding: dlib's 128-D face descriptor, and a differentiable PyTorch port of it.

The network is dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``,
the ``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp``): a 7x7/2 conv stem, 3x3/2 max
pool, 14 residual blocks (32, 64, 128, 256, 256 channels; batch norm replaced by fixed
per-channel affine layers), global average pooling and a 128-D linear layer without bias.
:class:`DlibResNet` rebuilds it in PyTorch and loads the weights from dlib's own ``.dat`` file
(:mod:`selfswap.face.dlib_dat`); its output matches dlib's descriptor (not normalised;
Euclidean distance < 0.6 means "same person").

Input is a 150x150 face chip aligned exactly like ``dlib.get_face_chip(img, shape, 150, 0.25)``.

Landmark convention (``landmarks5``): the five points of dlib's
``shape_predictor_5_face_landmarks``, in dlib's order, as (x, y) image pixels:

    0: outer corner of the eye on the image's right (the subject's left eye)
    1: inner corner of that eye
    2: outer corner of the eye on the image's left (the subject's right eye)
    3: inner corner of that eye
    4: bottom of the nose (subnasale)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import dlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfswap.face.dlib_dat import DatFormatError, DatLayer, read_dlib_dnn
from selfswap.models import model_path

__all__ = [
    "CHIP_PADDING",
    "CHIP_SIZE",
    "SAME_PERSON_DISTANCE",
    "DlibResNet",
    "IdentityEncoder",
    "central_face_landmarks5",
    "chip_to_image_affine",
    "cosine_similarity",
    "dlib_landmarks5",
    "extract_chips",
    "face_chip_transform",
]

CHIP_SIZE = 150
CHIP_PADDING = 0.25
SAME_PERSON_DISTANCE = 0.6

# Where dlib's get_face_chip_details puts the 5 landmarks, in unit face coordinates (before
# padding): dlib's mean-face eye corners and nose point for the 5-point model, as compiled into
# dlib (checked against dlib.get_face_chip_details and dlib.get_face_chip in the tests).
_TEMPLATE5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)


def _template(size: int, padding: float) -> np.ndarray:
    return (_TEMPLATE5 + padding) / (2 * padding + 1) * size


# ---------------------------------------------------------------------------------------------
# Face chip alignment
# ---------------------------------------------------------------------------------------------


def chip_to_image_affine(
    landmarks5: torch.Tensor, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> torch.Tensor:
    """Affine maps chip pixel (x, y, 1) -> image pixel, exactly as dlib extracts chips.

    ``landmarks5``: (B, 5, 2) -> (B, 2, 3). Differentiable w.r.t. the landmarks.

    dlib fits a least-squares similarity from the template to the landmarks
    (``get_face_chip_details``), turns it into a rotated rectangle (centre, angle, side
    ``size * scale``) and then ``extract_image_chips`` maps the chip's corner pixels
    (0, 0), (size-1, 0), (0, size-1) onto that rectangle's corner points, which are
    ``side - 1`` apart, so the pixel pitch is ``(side - 1) / (size - 1)``; this reproduces
    both steps.
    """
    pts = landmarks5.to(torch.float64)
    tmpl = torch.as_tensor(_template(size, padding), dtype=torch.float64, device=pts.device)
    # Least-squares similarity template -> landmarks: p = [[a, -b], [b, a]] t + c.
    # (In 2-D this equals Umeyama's solution, which dlib's find_similarity_transform uses.)
    t = tmpl - tmpl.mean(0)
    p = pts - pts.mean(1, keepdim=True)
    denom = (t**2).sum()
    a = (t[:, 0] * p[..., 0] + t[:, 1] * p[..., 1]).sum(-1) / denom
    b = (t[:, 0] * p[..., 1] - t[:, 1] * p[..., 0]).sum(-1) / denom
    scale = torch.sqrt(a**2 + b**2)
    cos, sin = a / scale, b / scale
    # Centre of the chip mapped into the image.
    half = size / 2.0
    dx, dy = half - tmpl[:, 0].mean(), half - tmpl[:, 1].mean()
    cx = pts[..., 0].mean(-1) + a * dx - b * dy
    cy = pts[..., 1].mean(-1) + b * dx + a * dy
    # Chip pixel q -> centre + R(angle) * pitch * (q - (size-1)/2). dlib's rectangle has
    # side size * scale, but its corner coordinates are size * scale - 1 apart.
    pitch = (scale * size - 1.0) / (size - 1)
    off = (size - 1) / 2.0
    m00, m01 = pitch * cos, -pitch * sin
    m10, m11 = pitch * sin, pitch * cos
    tx = cx - off * (m00 + m01)
    ty = cy - off * (m10 + m11)
    mat = torch.stack(
        [torch.stack([m00, m01, tx], -1), torch.stack([m10, m11, ty], -1)], -2
    )  # (B, 2, 3)
    return mat.to(landmarks5.dtype if landmarks5.is_floating_point() else torch.float64)


def face_chip_transform(
    landmarks5: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> np.ndarray:
    """Image -> chip similarity of ``dlib.get_face_chip(img, shape, size, padding)``.

    ``landmarks5``: (5, 2) in dlib's 5-point order -> (2, 3) float64 matrix ``M`` with
    ``chip_xy = M @ [x, y, 1]``. Usable with ``cv2.warpAffine(img, M, (size, size))``.
    This is the map dlib's chip extraction actually applies (centre and angle of
    ``get_face_chip_details``, pixel pitch ``(side - 1) / (size - 1)``; see
    :func:`chip_to_image_affine`), so warped pixels line up with dlib's chip.
    """
    lm = torch.as_tensor(np.asarray(landmarks5, dtype=np.float64)).reshape(1, 5, 2)
    fwd = chip_to_image_affine(lm, size, padding)[0].numpy()
    lin = np.linalg.inv(fwd[:, :2])
    return np.concatenate([lin, -lin @ fwd[:, 2:]], axis=1)


_PYR_KERNEL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
# dlib's pyramid_down<2>::point_down(p) = p / 2 - (1.25, 0.75): how extract_image_chips maps
# the chip rectangle into a pyramid level (not exactly the filter's centre, 2j + 2).
_PYR_OFFSET = (1.25, 0.75)


def _pyramid_down(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    """dlib ``pyramid_down<2>``: 5x5 [1 4 6 4 1]^2 / 256 filter, keep every 2nd pixel.

    (B, C, H, W) -> (B, C, (H - 3) // 2, (W - 3) // 2); output (i, j) is centred on input
    (2i + 2, 2j + 2). ``quantize`` truncates to integers like dlib's 8-bit images.
    """
    k1 = _PYR_KERNEL.to(x.dtype).to(x.device)
    k = (k1[:, None] * k1[None, :] / 256.0).expand(x.shape[1], 1, 5, 5)
    y = F.conv2d(x, k, stride=2, groups=x.shape[1])
    return y.add(1e-3).floor() if quantize else y


def _pyramid_levels(side: torch.Tensor, size: int) -> list[int]:
    """How many times dlib halves the image before sampling a chip whose rect has ``side``."""
    levels = []
    for w in side.tolist():
        n = 0
        while ((w + 1) / 2) ** 2 > size * size:  # rect_down(rect).area() > chip pixels
            w, n = (w + 1) / 2, n + 1
        levels.append(n)
    return levels


def _sample(img: torch.Tensor, pts: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear samples of ``img`` (B, C, H, W) at pixel coords ``pts`` (B, S*S, 2).

    Like dlib's ``interpolate_bilinear``, a sample is 0 unless all four neighbours are inside.
    """
    h, w = img.shape[-2:]
    norm = pts.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (pts * norm - 1.0).to(img.dtype).reshape(len(img), size, size, 2)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    x, y = pts[..., 0], pts[..., 1]
    inside = (x >= 0) & (x < w - 1) & (y >= 0) & (y < h - 1)
    return out * inside.reshape(len(img), 1, size, size).to(out.dtype)


def _extract(
    images: torch.Tensor,
    landmarks5: torch.Tensor,
    size: int,
    padding: float,
    antialias: bool,
    quantize: bool,
) -> torch.Tensor:
    if images.ndim != 4 or tuple(landmarks5.shape[-2:]) != (5, 2):
        raise ValueError("expected images (B, C, H, W) and landmarks5 (B, 5, 2)")
    bsz = images.shape[0]
    dev = images.device
    mat = chip_to_image_affine(landmarks5.to(dev), size, padding)  # float64 if given float64
    r = torch.arange(size, dtype=mat.dtype, device=dev)
    gy, gx = torch.meshgrid(r, r, indexing="ij")
    q = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3)  # (1, S*S, 3)
    xy = q @ mat.transpose(1, 2)  # (B, S*S, 2) image pixel coordinates
    if antialias:
        side = torch.hypot(mat[:, 0, 0], mat[:, 1, 0]).detach() * (size - 1) + 1
        levels = _pyramid_levels(side, size)
    else:
        levels = [0] * bsz
    out = images.new_empty(bsz, images.shape[1], size, size)
    flat = [i for i, v in enumerate(levels) if v == 0]
    if flat:
        idx = torch.tensor(flat, device=dev)
        out = out.index_copy(0, idx, _sample(images[idx], xy[idx], size))
    for i in (i for i, v in enumerate(levels) if v > 0):
        # dlib builds the pyramid from the sub-image bounding the rotated chip rectangle grown
        # by 6, 14, 30, ... pixels (for 1, 2, 3, ... levels); its corner sets the pyramid phase.
        grow = float(2 ** (levels[i] + 2) - 2)  # 6, 14, 30, ...
        corners = (q[0, [0, size - 1, size * (size - 1), size * size - 1]] @ mat[i].T).detach()
        # (Only the top-left corner matters; the far side is left uncropped.)
        x0, y0 = (max(0, int(np.floor(float(v) - grow + 0.5))) for v in corners.min(0).values)
        img = images[i : i + 1, :, y0:, x0:]
        pts = xy[i : i + 1] - xy.new_tensor([x0, y0])
        for k in range(levels[i]):
            if min(img.shape[-2:]) < 8:
                raise ValueError(f"image too small for pyramid level {k + 1}")
            img = _pyramid_down(img, quantize)
            pts = pts / 2 - pts.new_tensor(_PYR_OFFSET)
        out = out.index_copy(0, torch.tensor([i], device=dev), _sample(img, pts, size))
    return out


def extract_chips(
    images: torch.Tensor,
    landmarks5: torch.Tensor,
    size: int = CHIP_SIZE,
    padding: float = CHIP_PADDING,
    antialias: bool = True,
) -> torch.Tensor:
    """Differentiable dlib-style face chips (bilinear, zeros outside the image).

    ``images``: (B, 3, H, W) float (any range, typically RGB in [0, 1]);
    ``landmarks5``: (B, 5, 2) image pixels -> (B, 3, size, size). Gradients flow to
    ``images`` (and to ``landmarks5`` if it requires grad). Like dlib, a face whose chip
    rectangle is over twice the chip size is sampled from a 2x-downsampled pyramid level
    (dlib's 5x5 filter) to avoid aliasing; ``antialias=False`` samples the image directly.
    """
    return _extract(images, landmarks5, size, padding, antialias, quantize=False)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


class _Affine(nn.Module):
    """dlib ``affine_`` layer (frozen batch norm): per-channel ``x * gamma + beta``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta[:, None, None], x, self.gamma[:, None, None])


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib ``add_prev``: sum of two tensors, each zero-padded (at the end) to the larger size."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class _Residual(nn.Module):
    """dlib ``ares`` / ``ares_down``: relu(block(x) + shortcut(x)).

    block = conv3x3/s -> affine -> relu -> conv3x3 -> affine. Down blocks use stride 2 without
    padding and the shortcut is a 2x2/2 average pool of ``x``; dlib adds tensors of different
    shapes by zero-padding channels and the bottom/right edge (e.g. 3x3 + 4x4 -> 4x4).
    """

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        stride, pad = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, pad)
        self.aff1 = _Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = _Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        s = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, s))


_BLOCKS = [(32, False)] * 3 + [(64, True)] + [(64, False)] * 3
_BLOCKS += [(128, True)] + [(128, False)] * 2 + [(256, True)] + [(256, False)] * 2 + [(256, True)]


class DlibResNet(nn.Module):
    """PyTorch port of dlib's face-recognition ResNet (``dlib_resnet_v1``).

    ``forward(chips)``: (B, 3, 150, 150) RGB in [0, 1], aligned like ``dlib.get_face_chip``
    -> (B, 128) descriptors, equal to dlib's ``compute_face_descriptor`` up to float error.
    dlib's input scaling ``(255 * x - channel_mean) / 256`` is done inside.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 0)
        self.aff1 = _Affine(32)
        blocks, cin = [], 32
        for cout, down in _BLOCKS:
            blocks.append(_Residual(cin, cout, down))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def pooled(self, chips: torch.Tensor) -> torch.Tensor:
        """(B, 256) globally pooled features before the final projection."""
        x = (chips * 255.0 - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.aff1(self.conv1(x))), 3, 2)
        return self.blocks(x).mean(dim=(2, 3))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(chips))

    @classmethod
    def from_dat(cls, path: str | Path) -> DlibResNet:
        """Build the network and load its weights from dlib's ``.dat`` file (frozen, eval)."""
        net = read_dlib_dnn(path)
        layers = list(net.layers)
        model = cls()
        inp = net.input.attrs
        if net.input.kind != "input_rgb_image_sized" or (inp["nr"], inp["nc"]) != (150, 150):
            raise DatFormatError(f"unexpected input layer {net.input.kind} {inp}")
        mean = [inp["avg_red"], inp["avg_green"], inp["avg_blue"]]
        model.mean.copy_(torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))

        def take(kind: str, **attrs: int) -> DatLayer:
            if not layers:
                raise DatFormatError(f"file ended, expected {kind}")
            layer = layers.pop(0)
            bad = {k: v for k, v in attrs.items() if layer.attrs.get(k) != v}
            if layer.kind != kind or bad:
                raise DatFormatError(f"expected {kind} {attrs}, found {layer.kind} {layer.attrs}")
            return layer

        def load_conv(conv: nn.Conv2d, stride: int, pad: int) -> None:
            c = take("con_4", num_filters=conv.out_channels, nr=conv.kernel_size[0])
            take_ok = (c.attrs["stride_y"], c.attrs["padding_y"]) == (stride, pad)
            if not take_ok or c.arrays["weight"].shape != tuple(conv.weight.shape):
                raise DatFormatError(f"conv mismatch: {c.attrs} {c.arrays['weight'].shape}")
            conv.weight.data.copy_(torch.from_numpy(c.arrays["weight"]))
            assert conv.bias is not None
            conv.bias.data.copy_(torch.from_numpy(c.arrays["bias"]))

        def load_affine(aff: _Affine) -> None:
            a = take("affine_", mode=0)
            aff.gamma.data.copy_(torch.from_numpy(a.arrays["gamma"]))
            aff.beta.data.copy_(torch.from_numpy(a.arrays["beta"]))

        load_conv(model.conv1, 2, 0)
        load_affine(model.aff1)
        take("relu_")
        take("max_pool_2", nr=3, nc=3, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
        for blk in model.blocks:
            assert isinstance(blk, _Residual)
            load_conv(blk.conv1, 2 if blk.down else 1, 0 if blk.down else 1)
            load_affine(blk.aff1)
            take("relu_")
            load_conv(blk.conv2, 1, 1)
            load_affine(blk.aff2)
            if blk.down:
                take("avg_pool_2", nr=2, nc=2, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
            take("add_prev_")
            take("relu_")
        take("avg_pool_2", nr=0, nc=0)
        fc = take("fc_2", num_outputs=128, num_inputs=256, bias_mode=1)
        model.fc.weight.data.copy_(torch.from_numpy(fc.arrays["weight"].T.copy()))
        if layers:
            raise DatFormatError(f"{len(layers)} unexpected trailing layers")
        model.eval().requires_grad_(False)
        return model

    @classmethod
    def load_default(cls) -> DlibResNet:
        """The network from the model registry's ``dlib_resnet_v1`` file."""
        return cls.from_dat(model_path("dlib_resnet_v1"))


# ---------------------------------------------------------------------------------------------
# dlib helpers and the encoder
# ---------------------------------------------------------------------------------------------


@cache
def _shape_predictor5() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_path("dlib_shape_5")))


@cache
def _dlib_recognizer() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(model_path("dlib_resnet_v1")))


def dlib_landmarks5(image_rgb: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """dlib's 5-point landmarks inside ``box`` = (x0, y0, x1, y1) -> (5, 2) float64 (x, y)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = _shape_predictor5()(np.ascontiguousarray(image_rgb), dlib.rectangle(x0, y0, x1, y1))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


@cache
def _hog_detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


def central_face_landmarks5(image_rgb: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """5-point landmarks of the HOG-detected face nearest the image centre, or None.

    ``image_rgb``: (H, W, 3) uint8 -> (5, 2) float64. For test/evaluation sets such as LFW.
    """
    img = np.ascontiguousarray(image_rgb)
    rects = _hog_detector()(img, upsample)
    if len(rects) == 0:
        return None
    cy, cx = (img.shape[0] - 1) / 2.0, (img.shape[1] - 1) / 2.0

    def dist(r: dlib.rectangle) -> float:
        return ((r.left() + r.right()) / 2 - cx) ** 2 + ((r.top() + r.bottom()) / 2 - cy) ** 2

    r = min(rects, key=dist)
    return dlib_landmarks5(img, (r.left(), r.top(), r.right(), r.bottom()))


def _full_object_detection(landmarks5: np.ndarray) -> dlib.full_object_detection:
    pts = np.rint(np.asarray(landmarks5, dtype=np.float64)).astype(int)
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    rect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
    return dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in pts])


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Cosine similarity of vectors (..., D) along the last axis; a float for 1-D inputs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    out = num / np.maximum(den, 1e-12)
    return float(out) if np.ndim(out) == 0 else out


class IdentityEncoder:
    """128-D dlib face descriptors, via dlib itself or via the PyTorch port (batched).

    Models load lazily on first use. ``device`` applies to the PyTorch port.
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 32) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._net: DlibResNet | None = None

    @property
    def net(self) -> DlibResNet:
        if self._net is None:
            self._net = DlibResNet.load_default().to(self.device)
        return self._net

    def embed_dlib(self, image_rgb: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
        """dlib's own descriptor: (H, W, 3) uint8 RGB, (5, 2) landmarks -> (128,) float64.

        Landmarks are rounded to integer pixels (dlib's ``full_object_detection`` stores ints).
        """
        det = _full_object_detection(landmarks5)
        img = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        desc = _dlib_recognizer().compute_face_descriptor(img, det, 0, CHIP_PADDING)
        return np.asarray(desc, dtype=np.float64)

    def chips(
        self, images_rgb: Sequence[np.ndarray] | np.ndarray, landmarks5: Sequence[np.ndarray]
    ) -> torch.Tensor:
        """dlib-aligned chips of uint8 RGB images -> (B, 3, 150, 150) float in [0, 1].

        Truncated to 8-bit levels like dlib's own (uint8) chips.
        """
        if isinstance(images_rgb, np.ndarray) and images_rgb.ndim == 3:
            images_rgb = [images_rgb]
        lms = np.asarray(landmarks5, dtype=np.float64).reshape(-1, 5, 2)
        if len(images_rgb) != len(lms):
            raise ValueError(f"{len(images_rgb)} images but {len(lms)} landmark sets")
        out = []
        for img, lm in zip(images_rgb, lms, strict=True):
            t = torch.tensor(np.asarray(img, dtype=np.uint8), device=self.device)
            t = t.permute(2, 0, 1)[None].float()  # 0..255
            lm_t = torch.from_numpy(lm)[None].to(self.device)
            chip = _extract(t, lm_t, CHIP_SIZE, CHIP_PADDING, antialias=True, quantize=True)
            out.append(chip.add_(1e-3).floor_().clamp_(0, 255) / 255.0)
        return torch.cat(out) if out else torch.zeros(0, 3, CHIP_SIZE, CHIP_SIZE)

    @torch.no_grad()
    def embed(
        self, images_rgb: Sequence[np.ndarray] | np.ndarray, landmarks5: Sequence[np.ndarray]
    ) -> np.ndarray:
        """PyTorch-port descriptors: B uint8 RGB images (list or (B, H, W, 3) array, or one
        (H, W, 3) image) and B (5, 2) landmark sets -> (B, 128) float32."""
        return self._run(self.net, images_rgb, landmarks5, 128)

    @torch.no_grad()
    def features(
        self, images_rgb: Sequence[np.ndarray] | np.ndarray, landmarks5: Sequence[np.ndarray]
    ) -> np.ndarray:
        """(B, 256) pooled features of the network (before its identity projection): a
        generic face-appearance feature, used for the harness's Fréchet distance."""
        return self._run(self.net.pooled, images_rgb, landmarks5, 256)

    def _run(self, fn, images_rgb, landmarks5, dim: int) -> np.ndarray:
        chips = self.chips(images_rgb, landmarks5)
        outs = [fn(chips[i : i + self.batch_size]) for i in range(0, len(chips), self.batch_size)]
        if not outs:
            return np.zeros((0, dim), dtype=np.float32)
        return torch.cat(outs).cpu().numpy()
