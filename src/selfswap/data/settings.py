"""Settings of a prepared folder (kept import-light: the CLI reads the defaults)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

#: Images committed together in one part file.
DEFAULT_CHUNK_SIZE = 32


def template_version() -> str:
    """Fingerprint of the canonical crop layout, so crops from another layout are refused."""
    import numpy as np

    from selfswap.face import align

    return hashlib.sha1(np.round(align.TEMPLATE, 6).tobytes()).hexdigest()[:12]


@dataclass(frozen=True)
class Settings:
    """Everything that determines the content of a prepared folder."""

    size: int = 128
    crop_format: str = "jpg"  # "jpg" (quality 95, 4:4:4) or "png"
    min_face_size: float = 32.0  # detector box width in source pixels
    max_yaw: float = 60.0  # degrees, |yaw| of the 3DMM fit
    min_score: float | None = None  # detector-specific; None: keep every detection
    all_faces: bool = False  # False: only the main face (largest, weighted to the centre)
    identity_from: str | None = None  # "folder", "csv:NAME", None, or "sets: ..." (merged)
    detector: str = "default"
    embedding: str = "dlib"  # "dlib", "torch" or "none"
    template: str = ""  # `template_version()`, filled in by `Settings.create`

    @classmethod
    def create(cls, **kwargs) -> Settings:
        return cls(**kwargs, template=template_version())

    def to_dict(self) -> dict:
        return asdict(self)
