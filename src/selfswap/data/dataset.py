"""`FaceDataset`: a PyTorch dataset over a folder written by `selfswap prepare`.

The metadata table is read once into compact numpy arrays (no Python objects per row, so
forked DataLoader workers do not copy it page by page through reference counting, and the
pickled dataset sent to spawned workers stays small). Crops are opened only in
`__getitem__`, i.e. lazily in whichever worker asks for them. Works with any sampler,
including `DistributedSampler`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import Dataset

from selfswap.errors import SelfswapError

from . import table as tbl

#: Array fields returned for each face, besides `image`, `identity` and `index`.
FIELDS = ("landmarks68", "landmarks5", "shape", "expression", "camera", "embedding")


class FaceDataset(Dataset):
    """Aligned faces with their landmarks, 3DMM parameters and identity.

    Each item is a dict of tensors: `image` (3, R, R) float in [0, 1]; `landmarks68`
    (68, 2) and `landmarks5` (5, 2) in crop pixels; `shape` (40,); `expression` (10,);
    `camera` (3, 4) BFM → crop pixels; `embedding` (128,) dlib descriptor of the source
    photo; `identity` (int64, -1 if unknown); `index` (int64, the row).
    """

    def __init__(self, root: str | os.PathLike, size: int | None = None) -> None:
        self.root = Path(root)
        manifest_path = self.root / tbl.MANIFEST_FILE
        if not manifest_path.is_file():
            raise SelfswapError(
                f"{self.root} is not a finished prepared folder (no {tbl.MANIFEST_FILE}); "
                "run `selfswap prepare` on it first."
            )
        self.manifest = tbl.read_json(manifest_path)
        self.size = int(self.manifest["settings"]["size"])
        if size is not None and size != self.size:
            raise SelfswapError(f"{self.root} holds {self.size}px crops, not {size}px.")
        table = pq.read_table(self.root / tbl.FACES_FILE)
        if table.num_rows != self.manifest["counts"]["faces"]:
            raise SelfswapError(
                f"{self.root}: the table does not match its manifest; run prepare again."
            )
        self.crops = np.array(table.column("crop").to_pylist(), dtype=np.str_)
        self.sources = np.array(table.column("source").to_pylist(), dtype=np.str_)
        self.identity = table.column("identity_id").to_numpy().astype(np.int64)
        self.arrays = {name: tbl.column_array(table, name).astype(np.float32) for name in FIELDS}
        labels = table.column("identity").to_pylist()
        names = {i: label for i, label in zip(self.identity.tolist(), labels) if i >= 0}
        #: Identity label names, indexed by the integer identity.
        self.identity_names = [names[i] for i in range(len(names))]

    @property
    def num_identities(self) -> int:
        return len(self.identity_names)

    def __len__(self) -> int:
        return len(self.crops)

    def load_crop(self, index: int) -> np.ndarray:
        """The aligned crop of row `index` as RGB uint8 (R, R, 3)."""
        with Image.open(self.root / str(self.crops[index])) as img:
            crop = np.array(img.convert("RGB"))
        if crop.shape[:2] != (self.size, self.size):
            raise SelfswapError(f"{self.crops[index]}: crop is not {self.size}x{self.size}.")
        return crop

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        image = torch.from_numpy(self.load_crop(index)).permute(2, 0, 1).float() / 255.0
        item = {"image": image.contiguous()}
        for name in FIELDS:
            item[name] = torch.from_numpy(self.arrays[name][index].copy())
        item["identity"] = torch.tensor(self.identity[index], dtype=torch.int64)
        item["index"] = torch.tensor(index, dtype=torch.int64)
        return item
