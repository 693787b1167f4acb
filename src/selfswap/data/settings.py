"""Settings of a prepared folder (kept import-light: the CLI reads the defaults)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

from selfswap.errors import SelfswapError

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
        """New settings, checked (`check`), with the current template fingerprint."""
        settings = cls(**kwargs, template=template_version())
        settings.check()
        return settings

    def check(self) -> None:
        """Raise `SelfswapError` (one sentence naming the option) for a value that makes no
        sense. Settings read back from an existing folder are not checked: a folder prepared
        with a detector that has since been renamed must still load."""
        from selfswap.config import check_choice
        from selfswap.face.detect import DETECTORS

        if not (math.isfinite(self.max_yaw) and 0 < self.max_yaw <= 180):
            raise SelfswapError(f"--max-yaw {self.max_yaw:g}: use an angle above 0 and up to 180.")
        if not (math.isfinite(self.min_face_size) and self.min_face_size >= 0):
            raise SelfswapError(
                f"--min-face-size {self.min_face_size:g}: use a size of 0 pixels or more."
            )
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise SelfswapError(f"--min-score {self.min_score}: use a finite number.")
        check_choice("--detector", self.detector, ["default", *DETECTORS])

    def to_dict(self) -> dict:
        return asdict(self)
