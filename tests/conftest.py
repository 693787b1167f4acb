"""Shared fixtures: the public-domain faces, the shared LFW data (optional), analyzers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from selfswap.geometry.mesh import Geometry

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def one_torch_thread():
    """Tiny models run best on one thread, and a second one can be starved by other jobs
    on a 2-core machine (every OpenMP barrier then waits for a time slice)."""
    from selfswap.swap.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from selfswap.samples import astronaut

    return astronaut()


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    from selfswap.samples import grace_hopper

    return grace_hopper()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (LFW, CelebA subset); skips the test when it is absent."""
    if not (SHARED_DATA / "splits" / "lfw_eval.txt").is_file():
        pytest.skip(f"shared face data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def analyzer():
    from selfswap.face.analyzer import FaceAnalyzer

    return FaceAnalyzer()


@pytest.fixture(scope="session")
def analyzer_no_id():
    from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer

    return FaceAnalyzer(AnalyzerConfig(embedding="none"))


@pytest.fixture(scope="session")
def train_faces(tmp_path_factory) -> Path:
    """8 prepared 64-px faces: 4 variants each of Collins and Hopper."""
    from PIL import Image

    from selfswap.data.prepare import make_settings, prepare
    from selfswap.io.images import save_image
    from selfswap.samples import astronaut, grace_hopper

    folder = tmp_path_factory.mktemp("train-src")

    def variants(img):
        h, w = img.shape[:2]
        yield img
        yield img[:, ::-1]
        yield np.pad(img, ((30, 0), (40, 0), (0, 0)), mode="edge")[:h, :w]
        yield np.asarray(
            Image.fromarray(img[h // 10 :, w // 12 :]).resize((w * 3 // 4, h * 3 // 4))
        )

    for name, img in (("collins", astronaut()), ("hopper", grace_hopper())):
        for i, v in enumerate(variants(img)):
            save_image(folder / name / f"{i}.png", np.ascontiguousarray(v))
    out = tmp_path_factory.mktemp("train-data") / "set"
    settings = make_settings(64, identity_from="folder")
    prepare(folder, out, settings, identity_from="folder", progress=False, log=lambda _: None)
    return out


def tiny_train_config(faces: Path, out: Path, *overrides: str):
    """A small, fast config at 64 px."""
    base = [
        "size=64",
        f"data.root={faces}",
        f"out={out}",
        "batch_size=4",
        "data.held_out=2",
        "generator.channels=[16,32,64]",
        "generator.style_dim=64",
        "discriminator.channels=[16,32,64]",
        "appearance.width=8",
        "optim.warmup=0",
        "optim.lr_g=1e-3",
        "log_every=1",
        "sample_every=0",
        "checkpoint.every=0",
        "progress=false",
    ]
    from selfswap.config import load_config
    from selfswap.train.config import TrainConfig

    return load_config(TrainConfig, None, base + list(overrides)).validate()


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width x height but carries almost no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat))


def yawed(geometry: Geometry, degrees: float) -> Geometry:
    """The same face turned by `degrees` about its own vertical axis (model y), in place."""
    from selfswap.geometry.mesh import Geometry, compose

    t = math.radians(degrees)
    rot = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
    centre = compose(geometry.shape[0], geometry.expression[0]).mean(0)
    camera = geometry.camera[0].astype(np.float64)
    turned = np.zeros((3, 4))
    turned[:, :3] = camera[:, :3] @ rot
    turned[:, 3] = camera[:, :3] @ (centre - rot @ centre) + camera[:, 3]
    return Geometry(geometry.shape, geometry.expression, turned[None])
