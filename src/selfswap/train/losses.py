"""Losses: L1 and MS-SSIM reconstruction, edges on the face's outline, identity, hinge GAN and
feature matching.

All take batched tensors in [0, 1] unless stated and return a scalar. `IdentityLoss` holds
the frozen face-recognition networks of the identity terms (dlib's ResNet and FaceNet; never
the evaluation's judge, which must stay independent of training).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Weights of the five MS-SSIM scales (Wang et al. 2003); fewer scales renormalise them.
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor):
    c = x.shape[1]
    c1, c2 = 0.01**2, 0.03**2
    mu_x = F.conv2d(x, window, groups=c)
    mu_y = F.conv2d(y, window, groups=c)
    sxx = F.conv2d(x * x, window, groups=c) - mu_x**2
    syy = F.conv2d(y * y, window, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, window, groups=c) - mu_x * mu_y
    contrast_structure = (2 * sxy + c2) / (sxx + syy + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return luminance, contrast_structure


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """Mean SSIM of `(B, C, H, W)` images in [0, 1] (Gaussian window, sigma 1.5)."""
    window = _gaussian_window(window_size, 1.5, x.shape[1], x.device, x.dtype)
    luminance, cs = _ssim_parts(x, y, window)
    return (luminance * cs).mean()


def ms_ssim(
    x: torch.Tensor, y: torch.Tensor, scales: int = 4, window_size: int = 7
) -> torch.Tensor:
    """Multi-scale SSIM of `(B, C, H, W)` images in [0, 1]; a 7-px window and 4 scales
    suit 128-px crops (the coarsest scale is 16 px)."""
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:scales], device=x.device, dtype=x.dtype)
    weights = weights / weights.sum()
    window = _gaussian_window(window_size, 1.5, x.shape[1], x.device, x.dtype)
    values = []
    for i in range(scales):
        luminance, cs = _ssim_parts(x, y, window)
        if i == scales - 1:
            values.append((luminance * cs).mean(dim=(1, 2, 3)))
        else:
            values.append(cs.mean(dim=(1, 2, 3)))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=1).clamp_min(1e-6)
    return torch.prod(stacked**weights, dim=1).mean()


def reconstruction_loss(
    output: torch.Tensor, target: torch.Tensor, l1_weight: float, ms_ssim_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    l1 = (output - target).abs().mean()
    loss = l1_weight * l1
    logs = {"l1": float(l1)}
    if ms_ssim_weight:
        structural = 1 - ms_ssim(output, target)
        loss = loss + ms_ssim_weight * structural
        logs["ms_ssim"] = float(structural)
    return loss, logs


def outline_band(face_region: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
    """The ring `width` px either side of the face region's outline, inside the mask: where
    the face's edge (cheeks, jaw, temples) meets hair and background, `(B, 1, R, R)` in [0, 1]."""
    if width < 1:
        return torch.zeros_like(mask)
    size = 2 * width + 1
    grown = F.max_pool2d(face_region, size, stride=1, padding=width)
    shrunk = -F.max_pool2d(-face_region, size, stride=1, padding=width)
    return (grown - shrunk).clamp(0, 1) * mask


def band_gradient_loss(
    output: torch.Tensor, target: torch.Tensor, band: torch.Tensor, scales: int = 2
) -> torch.Tensor:
    """L1 between the horizontal and vertical pixel differences of `output` and `target`
    `(B, C, R, R)`, weighted by `band` `(B, 1, R, R)`, over `scales` resolutions (each half the
    last): a soft or misplaced edge costs here even where its colours average out right."""
    loss = output.new_zeros(())
    for scale in range(scales):
        if scale:
            output, target = F.avg_pool2d(output, 2), F.avg_pool2d(target, 2)
            band = F.avg_pool2d(band, 2)
        error, weight = output.new_zeros(()), output.new_zeros(())
        for dim in (2, 3):
            length = output.shape[dim] - 1
            diff = output.diff(dim=dim) - target.diff(dim=dim)
            pair = torch.minimum(band.narrow(dim, 0, length), band.narrow(dim, 1, length))
            error = error + (diff.abs() * pair).sum()
            weight = weight + pair.sum() * output.shape[1]
        loss = loss + error / weight.clamp_min(1e-6)
    return loss / scales


def shrink_rows(x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Each row of `x (B, C, R, R)` shrunk to `scales[i]` of its resolution (antialiased) and
    brought back to R×R (bilinear): the face as a photo with that many fewer pixels shows it,
    differentiably. A scale of 1 (or more) leaves its row as it is."""
    out = []
    for row, scale in zip(x, scales.tolist()):
        if scale < 1:
            small = F.interpolate(
                row[None], scale_factor=scale, mode="bilinear", antialias=True, align_corners=False
            )
            row = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        out.append(row)
    return torch.stack(out)


def identity_loss(embedding: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """1 − cosine similarity between embeddings `(B, D)`."""
    return (1 - F.cosine_similarity(embedding, reference.detach(), dim=1)).mean()


def hinge_discriminator_loss(real_logits: list, fake_logits: list) -> torch.Tensor:
    loss = 0.0
    for real, fake in zip(real_logits, fake_logits):
        loss = loss + F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return loss / len(real_logits)


def hinge_generator_loss(fake_logits: list) -> torch.Tensor:
    return sum(-f.mean() for f in fake_logits) / len(fake_logits)


def feature_matching_loss(real_features: list, fake_features: list) -> torch.Tensor:
    """L1 between discriminator features of real and generated images, all scales/layers."""
    loss, count = 0.0, 0
    for real_scale, fake_scale in zip(real_features, fake_features):
        for real, fake in zip(real_scale, fake_scale):
            loss = loss + (real.detach() - fake).abs().mean()
            count += 1
    return loss / max(count, 1)


# ---------------------------------------------------------------------------------------------
# Identity terms on frozen recognition networks
# ---------------------------------------------------------------------------------------------

#: blocks of dlib's ResNet whose outputs the feature-matching term compares: the last block
#: of each resolution with a spatial extent (32 ch at 35x35, 64 at 17x17, 128 at 8x8, 256 at
#: 3x3 for 150x150 chips)
DLIB_FEATURE_BLOCKS = (2, 6, 9, 12)


def dlib_forward_maps(net: nn.Module, chips: torch.Tensor) -> tuple[torch.Tensor, list]:
    """dlib ResNet (`selfswap.face.identity.DlibResNet`) on chips `(B, 3, 150, 150)` in
    [0, 1] -> its `(B, 128)` descriptors and the maps of `DLIB_FEATURE_BLOCKS`, in one pass
    (the same computation as `DlibResNet.forward`, with the block outputs kept)."""
    x = (chips * 255.0 - net.mean) / 256.0
    x = F.max_pool2d(F.relu(net.aff1(net.conv1(x))), 3, 2)
    maps = []
    for i, block in enumerate(net.blocks):
        x = block(x)
        if i in DLIB_FEATURE_BLOCKS:
            maps.append(x)
    return net.fc(x.mean(dim=(2, 3))), maps


def relative_feature_distance(
    fake_maps: list[torch.Tensor], real_maps: list[torch.Tensor], weight: torch.Tensor
) -> torch.Tensor:
    """Mean over maps and images of `sum w |f - r| / sum w |r|`: the L1 distance of two
    feature maps `(B, C, h, w)` relative to the real one's magnitude, both weighted by
    `weight (B, 1, H, W)` (e.g. the painted mask) area-pooled to each map's size.

    Scale-free, so layers and networks of different magnitudes count alike; 0 when equal.
    `real_maps` are detached."""
    terms = []
    for fake, real in zip(fake_maps, real_maps, strict=True):
        w = F.adaptive_avg_pool2d(weight.to(fake.dtype), fake.shape[-2:])
        real = real.detach()
        num = ((fake - real).abs() * w).sum(dim=(1, 2, 3))
        den = (real.abs() * w).sum(dim=(1, 2, 3)).clamp_min(1e-6)
        terms.append(num / den)
    return torch.stack(terms).mean()


@dataclass
class _Recogniser:
    """One frozen network as the identity terms use it."""

    name: str  # the log key of its identity term
    weight: float  # weight of its identity term (0: feature matching only)
    align: Callable  # (images (B, C, R, R), landmarks5 (B, 5, 2)) -> its aligned input
    embed: Callable  # aligned RGB input -> (B, D) embeddings
    maps: Callable  # aligned RGB input -> ((B, D) embeddings, [feature maps])
    # align under the networks' autocast too: dlib's chips always were, and keep being, so
    # that configs without the new terms train bit for bit as before (under bf16 the chip's
    # sampling grid is then rounded, up to 0.6 px on 128-px crops; see docs/decisions.md)
    align_in_autocast: bool = False


class IdentityLoss:
    """The generator's identity terms, on frozen face-recognition networks.

    - `dlib` (weight of `loss.identity`): 1 − cos between dlib ResNet descriptors of the
      generated face and the identity code (the dlib descriptor of the source photo);
    - `facenet` (`loss.id_facenet`): the same with FaceNet's 512-D embeddings, against the
      FaceNet embedding of the source photo (`reference`);
    - `feature_match` (`loss.id_feature_match`): `relative_feature_distance` between both
      networks' intermediate maps of the generated face and of the ground truth, weighted by
      the painted mask (the only pixels where the two differ).

    `shrink (B,)`, where given, shrinks each row's generated face (and, for feature matching,
    its ground truth alike) to that share of its resolution before the networks see it
    (`shrink_rows`; `loss.id_shrink`): identity that only fine detail carries, which a teacher
    can be pleased with and an independent judge on a small face cannot see, then counts
    for nothing.

    Networks are loaded only when a term needs them; they stay in eval mode with frozen
    parameters, so gradients reach the images only. The networks run under the `autocast`
    context passed in; FaceNet's crops are cut outside it (the sampling grid stays fp32),
    dlib's chips inside it, as they always were, unless `dlib_chips_fp32`.
    The evaluation's identity judge must never be one of these networks.
    """

    def __init__(
        self,
        dlib: float = 0.0,
        facenet: float = 0.0,
        feature_match: float = 0.0,
        dlib_chips_fp32: bool = False,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        self.feature_match = feature_match
        self.channels_last = channels_last
        self.dlib: nn.Module | None = None
        self.facenet: nn.Module | None = None
        self.nets: list[_Recogniser] = []
        if dlib > 0 or feature_match > 0:
            from selfswap.face.identity import DlibResNet, extract_chips

            self.dlib = self._prepare(DlibResNet.load_default(), device)
            fwd = torch.compile(self.dlib) if compile else self.dlib
            self.nets.append(
                _Recogniser(
                    "id",
                    dlib,
                    extract_chips,
                    fwd,
                    lambda x: dlib_forward_maps(self.dlib, x),
                    align_in_autocast=not dlib_chips_fp32,
                )
            )
        if facenet > 0 or feature_match > 0:
            from selfswap.face.facenet import FaceNetEncoder, align_crops

            self.facenet = self._prepare(FaceNetEncoder.load_default(), device)
            fwd = torch.compile(self.facenet) if compile else self.facenet
            self.nets.append(
                _Recogniser("id_facenet", facenet, align_crops, fwd, self.facenet.forward_maps)
            )

    def _prepare(self, net: nn.Module, device) -> nn.Module:
        net = net.to(device).eval().requires_grad_(False)
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def reference(
        self, images: torch.Tensor, landmarks5: torch.Tensor, autocast=contextlib.nullcontext
    ) -> torch.Tensor:
        """FaceNet embeddings `(B, 512)` of real faces: canonical crops `(B, 3, R, R)` in
        [0, 1] with their `landmarks5 (B, 5, 2)` (the targets of the `facenet` term)."""
        if self.facenet is None:
            raise ValueError("no FaceNet term: build IdentityLoss with facenet > 0")
        from selfswap.face.facenet import align_crops

        crops = self._layout(align_crops(images, landmarks5))
        with autocast():
            return self.facenet(crops).float()

    def __call__(
        self,
        fake: torch.Tensor,
        landmarks5: torch.Tensor,
        id_rows: torch.Tensor,
        dlib_target: torch.Tensor | None = None,
        facenet_target: torch.Tensor | None = None,
        real: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        fm_rows: torch.Tensor | None = None,
        autocast=contextlib.nullcontext,
        shrink: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted sum of the identity terms and their unweighted values.

        `fake (B, 3, R, R)`: the generated composites, with their `landmarks5 (B, 5, 2)`;
        `id_rows (K,)`: the rows the identity terms run on, with their targets `dlib_target
        (K, 128)` and `facenet_target (K, 512)` (each needed only when its weight is > 0);
        `fm_rows (L,)`: the rows feature matching runs on, against the ground truth
        `real (B, 3, R, R)` inside `mask (B, 1, R, R)`. Each network sees the union of its
        rows once."""
        empty = torch.zeros(0, dtype=torch.long)
        id_rows = id_rows.cpu()
        fm_rows = empty if fm_rows is None or not self.feature_match else fm_rows.cpu()
        if len(fm_rows) and (real is None or mask is None):
            raise ValueError("feature matching needs the ground truth `real` and its `mask`")
        total = fake.new_zeros(())
        logs: dict[str, float] = {}
        matched = []
        for net in self.nets:
            mine = id_rows if net.weight > 0 else empty
            rows = torch.unique(torch.cat([mine, fm_rows]))  # sorted
            if not len(rows):
                continue
            x = fake[rows] if not len(fm_rows) else torch.cat([fake[rows], mask[rows]], 1)
            if shrink is not None:
                x = shrink_rows(x, shrink.cpu()[rows])
            with autocast() if net.align_in_autocast else contextlib.nullcontext():
                aligned = self._layout(net.align(x, landmarks5[rows]))
            with autocast():
                if len(fm_rows):
                    emb, maps = net.maps(aligned[:, :3])
                else:
                    emb = net.embed(aligned)
            if len(mine):
                target = dlib_target if net.name == "id" else facenet_target
                if target is None:
                    raise ValueError(f"the {net.name} term needs its target embeddings")
                term = identity_loss(emb.float()[torch.searchsorted(rows, mine)], target)
                total = total + net.weight * term
                logs[net.name] = float(term.detach())
            if len(fm_rows):
                pick = torch.searchsorted(rows, fm_rows)
                with torch.no_grad():
                    truth = torch.cat([real[fm_rows], mask[fm_rows]], 1)
                    if shrink is not None:
                        truth = shrink_rows(truth, shrink.cpu()[fm_rows])
                    with autocast() if net.align_in_autocast else contextlib.nullcontext():
                        truth = self._layout(net.align(truth, landmarks5[fm_rows]))
                    with autocast():
                        _, real_maps = net.maps(truth[:, :3])
                matched.append(
                    relative_feature_distance(
                        [m[pick].float() for m in maps],
                        [m.float() for m in real_maps],
                        aligned[pick, 3:],
                    )
                )
        if matched:
            term = torch.stack(matched).mean()
            total = total + self.feature_match * term
            logs["id_fm"] = float(term.detach())
        return total, logs
