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


class MaskedFaces(Dataset):
    """`FaceDataset` rows with training masks. Indexed by `(epoch, index)`.

    Adds to each item `normals (3,R,R)`, `silhouette`, `face_region`, `mask`
    (1 = hidden; all (1,R,R)) and, in seesaw mode, `source_embedding (128)` and `same`
    (1.0 when the source is the target itself). In seesaw mode the mask is the
    shape-agnostic mask of the true face, unperforated: it only says where the output is
    composited; the generator sees the whole target.
    """

    def __init__(
        self,
        faces: FaceDataset,
        samae: SamaeConfig,
        seed: int,
        mode: str = "samae",
        seesaw_same: float = 0.5,
        pool: np.ndarray | None = None,
    ) -> None:
        self.faces = faces
        self.samae = samae
        self.seed = int(seed)
        self.mode = mode
        self.seesaw_same = seesaw_same
        self.pool = np.arange(len(faces)) if pool is None else np.asarray(pool)

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        from selfswap.samae.masks import MaskBuilder

        epoch, index = (int(k) for k in key)
        rng = np.random.default_rng([self.seed, epoch, index])
        item = self.faces[index]
        builder = MaskBuilder(renderer_for(self.faces.size), self.samae)
        masks = builder.training(geometry_of(item), rng)
        item["normals"] = torch.from_numpy(masks.normals[0])
        item["silhouette"] = torch.from_numpy(masks.silhouette[0])
        item["face_region"] = torch.from_numpy(masks.face_region[0])
        item["mask"] = torch.from_numpy(masks.mask[0])
        if self.mode == "seesaw":
            same = rng.random() < self.seesaw_same or len(self.pool) < 2
            source = index
            if not same:
                others = self.pool[self.pool != index]
                source = int(others[rng.integers(len(others))])
            item["source_embedding"] = torch.from_numpy(self.faces.arrays["embedding"][source])
            item["same"] = torch.tensor(float(source == index))
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
