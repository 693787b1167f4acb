"""Training batches: faces with their SAMAE masks and guidance, computed in the data
workers, and an infinite, resumable, rank-sharded sampler.

Every random choice for a sample (mesh scaling, perforations, the seesaw source) comes from
a generator seeded by `(seed, epoch, index)`, and the order of the faces in an epoch from
`(seed, epoch)`; the sampler starts at any position. So a run resumed at step k sees
exactly the batches an uninterrupted run sees, whatever the number of workers.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from selfswap.data.dataset import FaceDataset
from selfswap.geometry.mesh import Geometry
from selfswap.samae.config import SamaeConfig

_RENDERERS: dict[tuple[int, int], object] = {}


def renderer_for(size: int):
    """One renderer per process and size, created lazily (GL is not fork-safe)."""
    key = (os.getpid(), size)
    if key not in _RENDERERS:
        from selfswap.geometry.render import Renderer

        _RENDERERS[key] = Renderer(size)
    return _RENDERERS[key]


def geometry_of(item: dict) -> Geometry:
    return Geometry(
        item["shape"].numpy()[None], item["expression"].numpy()[None], item["camera"].numpy()[None]
    )


def jitter_source(
    crop: np.ndarray, camera: np.ndarray, rng: np.random.Generator, strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A photometrically and slightly geometrically changed copy of a source crop
    `(R, R, 3)` uint8 and its crop camera `(3, 4)` moved alike: per-channel gains, a
    brightness offset, a gamma, sometimes a blur; a rotation of up to 5°, a scale of up
    to 6 % and a shift of up to 3 % of R. Same-photo samples see their texture through
    this, so the generator learns to relight and re-place it, not to copy it."""
    import cv2

    from selfswap.face.align import camera_to_crop

    r = crop.shape[0]
    x = crop.astype(np.float32) / 255.0
    gains = 1.0 + strength * rng.uniform(-0.15, 0.15, 3)
    offset = strength * rng.uniform(-0.08, 0.08)
    gamma = np.exp(strength * rng.uniform(-0.25, 0.25))
    x = np.clip(x * gains + offset, 0.0, 1.0) ** gamma
    if rng.random() < 0.3 * strength:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.2))
    angle = strength * rng.uniform(-5.0, 5.0)
    scale = 1.0 + strength * rng.uniform(-0.06, 0.06)
    shift = strength * rng.uniform(-0.03, 0.03, 2) * r
    matrix = cv2.getRotationMatrix2D(((r - 1) / 2, (r - 1) / 2), angle, scale)
    matrix[:, 2] += shift
    x = cv2.warpAffine(x, matrix, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out = (x * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    return out, camera_to_crop(np.asarray(camera, np.float64), matrix)


#: `degrade_source`: the face is shrunk to this share of its size ...
DEGRADE_SCALE = (0.2, 0.6)
#: ... and saved as a JPEG of this quality, then brought back to R.
DEGRADE_QUALITY = (30, 85)


def degrade_source(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A source crop `(R, R, 3)` uint8 as a small, compressed photo of the face shows it:
    reduced by a factor in `DEGRADE_SCALE` (area filter), JPEG-compressed at a quality in
    `DEGRADE_QUALITY`, and enlarged back to R (bilinear). The camera is unchanged: the face
    stays where it was, only its detail is lost."""
    import cv2

    r = crop.shape[0]
    side = max(int(round(r * rng.uniform(*DEGRADE_SCALE))), 8)
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    quality = int(rng.integers(DEGRADE_QUALITY[0], DEGRADE_QUALITY[1] + 1))
    ok, encoded = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        small = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return cv2.resize(np.ascontiguousarray(small), (r, r), interpolation=cv2.INTER_LINEAR)


def _put_guidance(item: dict, masks, face_region: np.ndarray) -> None:
    """An item's guidance and mask from one sample's `TrainingMasks` or `SwapMasks`."""
    item["normals"] = torch.from_numpy(masks.normals[0])
    item["silhouette"] = torch.from_numpy(masks.silhouette[0])
    item["face_region"] = torch.from_numpy(face_region[0])
    item["mask"] = torch.from_numpy(masks.mask[0])


class MaskedFaces(Dataset):
    """`FaceDataset` rows with training masks. Indexed by `(epoch, index)`.

    Adds to each item `normals (3,R,R)`, `silhouette`, `face_region`, `mask`
    (1 = hidden; all (1,R,R)) and, in seesaw mode, `source_embedding (128)` and `same`
    (1.0 when the source is the target itself). In seesaw mode the mask is the
    shape-agnostic mask of the true face, unperforated: it only says where the output is
    composited; the generator sees the whole target.

    With `source_texture` on, each item also gets the source's own pixels rendered on the
    target's geometry, `texture (3,R,R)` and `visibility (1,R,R)`
    (`selfswap.geometry.texture`), and `source_embedding (128)`, the identity code of that
    source: with probability `cross_photo` the source is another photo of the same person
    (the target stays the exact ground truth), else the target's own photo, jittered
    (`jitter_source`). Those other photos come from `sources` (default: the pool), which
    may hold faces that are never targets themselves. `texture_mirror`: how far what the
    source did not see is filled from its mirror image (`render_source_texture`'s `mirror`).
    `source_degrade`: the share of cross-photo samples whose other photo is degraded first
    (`degrade_source`).

    `cross_identity` (with `source_texture`): the share of samples that are swaps, with
    `cross` 1.0: a face of another person from `sources` gives the texture, the identity
    code and the shape, rendered with the target's expression and pose, and the guidance and
    mask are the swap's (`MaskBuilder.swap`, as the swap pipeline builds them). When it is
    0 no draw is made for it, so older runs see the same samples. With
    `cross_identity_other_photo` a swap sample's identity code comes from another photo of
    the partner's person where there is one.
    """

    def __init__(
        self,
        faces: FaceDataset,
        samae: SamaeConfig,
        seed: int,
        mode: str = "samae",
        seesaw_same: float = 0.5,
        pool: np.ndarray | None = None,
        source_texture: bool = False,
        cross_photo: float = 0.5,
        sources: np.ndarray | None = None,
        texture_mirror: float = 0.0,
        source_degrade: float = 0.0,
        cross_identity: float = 0.0,
        cross_identity_other_photo: bool = False,
    ) -> None:
        self.faces = faces
        self.samae = samae
        self.seed = int(seed)
        self.mode = mode
        self.seesaw_same = seesaw_same
        self.pool = np.arange(len(faces)) if pool is None else np.asarray(pool)
        self.source_texture = source_texture
        self.cross_photo = cross_photo
        self.sources = self.pool if sources is None else np.asarray(sources)
        self.texture_mirror = float(texture_mirror)
        self.source_degrade = float(source_degrade)
        self.cross_identity = float(cross_identity)
        self.cross_identity_other_photo = bool(cross_identity_other_photo)
        self._people: dict[int, np.ndarray] | None = None

    def same_person(self, index: int) -> np.ndarray:
        """Rows of `sources` showing the person of row `index`, other than `index`."""
        if self._people is None:
            identity = self.faces.identity[self.sources]
            order = np.argsort(identity, kind="stable")
            keys, starts = np.unique(identity[order], return_index=True)
            groups = np.split(self.sources[order], starts[1:])
            self._people = {int(k): g for k, g in zip(keys, groups) if k >= 0 and len(g) > 1}
        group = self._people.get(int(self.faces.identity[index]))
        return np.empty(0, np.int64) if group is None else group[group != index]

    def other_person(self, index: int, rng: np.random.Generator) -> int:
        """A row of `sources` showing someone other than the person of row `index`."""
        identity = self.faces.identity
        for _ in range(100):
            row = int(self.sources[rng.integers(len(self.sources))])
            if row != index and (identity[row] != identity[index] or identity[row] < 0):
                return row
        raise ValueError("data.cross_identity: the sources hold only one person")

    def _texture(
        self,
        item: dict,
        index: int,
        rng: np.random.Generator,
        partner: int | None = None,
        onto: Geometry | None = None,
    ) -> None:
        """The source's texture on `onto` (default: the target's own geometry); the source
        is `partner` when given (a swap sample), else drawn as `cross_photo` says."""
        from selfswap.geometry.texture import render_source_texture

        source = index if partner is None else partner
        if partner is None and self.cross_photo > 0 and rng.random() < self.cross_photo:
            others = self.same_person(index)
            if len(others):
                source = int(others[rng.integers(len(others))])
        crop = self.faces.load_crop(source)
        camera = self.faces.arrays["camera"][source]
        if partner is None:  # a swap's source photo is used as it is
            if source == index:
                crop, camera = jitter_source(crop, camera, rng)
            elif self.source_degrade > 0 and rng.random() < self.source_degrade:
                crop = degrade_source(crop, rng)  # no draw when off: older runs' samples stay
        source_geometry = Geometry(
            self.faces.arrays["shape"][source][None],
            self.faces.arrays["expression"][source][None],
            np.asarray(camera, np.float32)[None],
        )
        texture, visibility = render_source_texture(
            renderer_for(self.faces.size),
            crop[None],
            source_geometry,
            geometry_of(item) if onto is None else onto,
            mirror=self.texture_mirror,
        )
        item["texture"] = torch.from_numpy(texture[0])
        item["visibility"] = torch.from_numpy(visibility[0])
        item["source_embedding"] = torch.from_numpy(self.faces.arrays["embedding"][source])
        item["same"] = torch.tensor(float(source == index))

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        from selfswap.samae.masks import MaskBuilder

        epoch, index = (int(k) for k in key)
        rng = np.random.default_rng([self.seed, epoch, index])
        item = self.faces[index]
        builder = MaskBuilder(renderer_for(self.faces.size), self.samae)
        if self.cross_identity > 0:
            swap = self.source_texture and rng.random() < self.cross_identity
            item["cross"] = torch.tensor(float(swap))
            if swap:
                return self._swap_sample(item, index, rng, builder)
        masks = builder.training(geometry_of(item), rng)
        _put_guidance(item, masks, masks.face_region)
        if self.source_texture:
            self._texture(item, index, rng)
        if self.mode == "seesaw":
            same = rng.random() < self.seesaw_same or len(self.pool) < 2
            source = index
            if not same:
                others = self.pool[self.pool != index]
                source = int(others[rng.integers(len(others))])
            item["source_embedding"] = torch.from_numpy(self.faces.arrays["embedding"][source])
            item["same"] = torch.tensor(float(source == index))
        return item

    def _swap_sample(self, item: dict, index: int, rng: np.random.Generator, builder) -> dict:
        from selfswap.geometry.mesh import swap_geometry

        partner = self.other_person(index, rng)
        shape = self.faces.arrays["shape"][partner][None].astype(np.float32)
        target = geometry_of(item)
        masks = builder.swap(target, shape)
        _put_guidance(item, masks, masks.target_region)
        onto = swap_geometry(shape, target.expression, target.camera)
        self._texture(item, index, rng, partner=partner, onto=onto)
        if self.cross_identity_other_photo:
            others = self.same_person(partner)
            if len(others):
                code = self.faces.arrays["embedding"][int(others[rng.integers(len(others))])]
                item["source_embedding"] = torch.from_numpy(code)
        return item


class ResumableSampler(Sampler):
    """Infinite stream of batches of `(epoch, index)` for one rank.

    Epoch e is a permutation of `pool` seeded by `(seed, e)`; the global batch of
    `batch_size * world` consecutive entries is split by rank. `start` is the number of
    batches already consumed (the data position saved in checkpoints).
    """

    def __init__(
        self, pool, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0
    ) -> None:
        self.pool = np.asarray(pool)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.start = start

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 7919, epoch]).permutation(self.pool)

    def __iter__(self):
        n = len(self.pool)
        per_global = self.batch_size * self.world
        position = self.start * per_global  # entries of the global stream consumed
        cache: dict[int, np.ndarray] = {}
        while True:
            batch = []
            for j in range(self.batch_size):
                g = position + self.rank * self.batch_size + j
                epoch, offset = divmod(g, n)
                if epoch not in cache:
                    cache.clear()
                    cache[epoch] = self._order(epoch)
                batch.append((epoch, int(cache[epoch][offset])))
            position += per_global
            yield batch

    def __len__(self) -> int:  # infinite; DataLoader only needs it for len()
        return 2**62
