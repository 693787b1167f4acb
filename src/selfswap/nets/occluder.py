"""selfswap's occlusion segmenter: a small U-Net that marks what covers a face (hands,
objects, hair, glasses) in the canonical face crop (issue #17).

`OccluderNet` takes aligned crops `(B, 3, 128, 128)` in [0, 1] and returns logits
`(B, 1, 128, 128)` of "not face skin"; it works at half resolution inside (64², four
levels down to 8²) and upsamples its logits, which keeps it at ~0.1 GFLOP per face.
`OcclusionSegmenter` is the inference wrapper the swap uses: uint8 crops of any size R in,
keep masks `(N, R, R)` out. Trained by `selfswap.train.occluder` on LFW training faces with
synthetic occluders and real hands cut out of training photos; the shipped weights are
`selfswap/weights/occluder.safetensors` (catalog name `occluder`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from selfswap.errors import ModelFileError

INPUT = 128
WIDTHS = (16, 32, 48, 64)
FORMAT = "selfswap-occluder/1"
#: Occlusion probability from which a pixel is kept from the target, and the growth of the
#: kept region (fraction of R). Swept on LFW eval pairs 250-369, apart from the reported ones
#: (`benchmarks/occlusion.py --offset 250 --sweep ...`). With the segmenter trained on real
#: hand cut-outs: 0.5 / 2 % keeps 97.9 % of the held-out occluders for 4.4 % of the face;
#: 0.6 / 2 % 96.9 % for 4.1 %; 0.5 / 1 % 95.8 % for 1.9 % (the growth is a ring around each
#: occluder, whose soft edge the paste-back's feather would otherwise blend).
THRESHOLD = 0.5
GROW = 0.02


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)
    )


class OccluderNet(nn.Module):
    """U-Net: `(B, 3, S, S)` in [0, 1] → occlusion logits `(B, 1, S, S)` (S divisible by 16;
    trained at 128)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        self.widths = tuple(widths)
        c_in, downs = 3, []
        for w in widths:
            downs.append(nn.Sequential(_conv(c_in, w, 2), _conv(w, w)))
            c_in = w
        self.downs = nn.ModuleList(downs)
        ups = []
        for w_skip in reversed(widths[:-1]):
            ups.append(_conv(c_in + w_skip, w_skip))
            c_in = w_skip
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(c_in, 1, 1)
        self.register_buffer("mean", torch.tensor([0.5, 0.45, 0.4]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"OccluderNet: x must be (B, 3, H, W), got {tuple(x.shape)}")
        size = x.shape[-2:]
        h = (x - self.mean) * 4.0
        skips = []
        for down in self.downs:
            h = down(h)
            skips.append(h)
        for up, skip in zip(self.ups, reversed(skips[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = up(torch.cat([h, skip], 1))
        return F.interpolate(self.head(h), size=size, mode="bilinear", align_corners=False)


def save_occluder(net: OccluderNet, path: Path, info: dict | None = None) -> None:
    """Write the net's weights as fp16 safetensors with what inference needs."""
    from safetensors.torch import save_file

    weights = {k: v.detach().to("cpu", torch.float16).contiguous()
               for k, v in net.state_dict().items() if v.is_floating_point()}  # fmt: skip
    meta = {"format": FORMAT, "widths": json.dumps(list(net.widths)), "input": str(INPUT)}
    meta["info"] = json.dumps(info or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    save_file(weights, str(tmp), metadata=meta)
    tmp.replace(path)


def load_occluder(path: Path) -> OccluderNet:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k).float() for k in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for damaged files
        raise ModelFileError(f"Occlusion segmenter {path} cannot be read: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a selfswap occlusion segmenter.")
    net = OccluderNet(tuple(json.loads(meta["widths"])))
    missing = net.load_state_dict(weights, strict=False)
    if any(not k.endswith("num_batches_tracked") for k in missing.missing_keys):
        raise ModelFileError(f"{path}: missing tensors {missing.missing_keys[:3]}.")
    return net.eval().requires_grad_(False)


class OcclusionSegmenter:
    """Keep masks from crops. `predict(crops)`: `(N, R, R, 3)` uint8 RGB aligned crops →
    `(N, R, R)` float32 in {0, 1}: 1 where the occlusion probability reaches `threshold`,
    grown by `grow`·R pixels (the occluder's soft edge, which the paste-back's feather would
    otherwise blend)."""

    def __init__(self, net: OccluderNet, threshold: float = THRESHOLD, grow: float = GROW) -> None:
        self.net = net
        self.threshold = threshold
        self.grow = grow

    @classmethod
    def load(cls, path: str | Path | None = None) -> OcclusionSegmenter:
        """The shipped segmenter (catalog `occluder`) or a file written by the trainer."""
        if path is None:
            from selfswap.models import model_path

            path = model_path("occluder")
        return cls(load_occluder(Path(path)))

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """Occlusion probability `(N, R, R)` float32 of aligned uint8 crops `(N, R, R, 3)`."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.shape[1] != crops.shape[2]:
            raise ValueError(f"crops must be (N, R, R, 3), got {crops.shape}")
        size = crops.shape[1]
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
        if size != INPUT:
            x = F.interpolate(x, size=(INPUT, INPUT), mode="area" if size > INPUT else "bilinear")
        with torch.no_grad():
            logits = self.net(x)
            if size != INPUT:
                logits = F.interpolate(logits, size=(size, size), mode="bilinear")
        return torch.sigmoid(logits)[:, 0].numpy()

    def predict(self, crops: np.ndarray) -> np.ndarray:
        import cv2

        keep = (self.probabilities(crops) >= self.threshold).astype(np.uint8)
        px = round(self.grow * keep.shape[-1])
        if px > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1,) * 2)
            keep = np.stack([cv2.dilate(k, kernel) for k in keep])
        return keep.astype(np.float32)
