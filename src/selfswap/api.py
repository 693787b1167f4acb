"""selfswap's Python API.

    from selfswap.api import Swapper

    swapper = Swapper.load("default")
    result = swapper.swap_image("me.jpg", "group.jpg", faces=[0])
    result.save("out.png")
    swapper.swap_video(["me.jpg", "me2.jpg"], "clip.mp4", "clip-swapped.mp4")

    swapper = Swapper.from_config(SwapConfig(faces="0", color_match=0.5))  # the CLI's options

Images may be paths, RGB uint8 arrays or PIL images. Every output carries selfswap's invisible
watermark and (when saved through the API or CLI) provenance metadata. Swaps need the consent
of the people shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfswap.errors import NoFaceError, SelfswapError
from selfswap.face.identity import cosine_similarity
from selfswap.face.types import Face
from selfswap.io.files import refuse_input_as_output
from selfswap.io.images import as_rgb_array, save_image
from selfswap.provenance import provenance_metadata
from selfswap.swap.options import SwapConfig, parse_faces
from selfswap.swap.pipeline import FaceSwapper, swap_video
from selfswap.swap.video import ProcessStats

__all__ = [
    "Swapper",
    "SwapConfig",
    "ImageResult",
    "ProvenanceReport",
    "identity_similarity",
    "analyze",
    "check_provenance",
    "export_model",
]


@dataclass
class ImageResult:
    """A swapped image with what was found and swapped."""

    image: np.ndarray  # (H, W, 3) uint8, watermarked
    faces: list[Face]  # faces of the target, left to right
    swapped: list[int]  # indices into `faces`
    notes: list[str]  # e.g. "source photo #1 shows 2 faces; using the largest."
    model: str

    def save(self, path: str | os.PathLike, **details: str) -> Path:
        """Write the image atomically with selfswap's provenance metadata."""
        return save_image(path, self.image, provenance_metadata(model=self.model, **details))


def _as_list(images) -> list:
    return list(images) if isinstance(images, (list, tuple)) else [images]


def identity_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two dlib face embeddings (1 = same direction)."""
    return float(cosine_similarity(a, b))


class Swapper:
    """A loaded swap model with its face analysis; reuse it for many swaps. `config` holds
    the options (`SwapConfig`); a call's own `faces` / `color_match` win over it."""

    def __init__(self, engine: FaceSwapper, name: str, config: SwapConfig | None = None) -> None:
        self.engine = engine
        self.name = name
        self.config = config or SwapConfig(model=name, paste=engine.paste_region)

    @classmethod
    def load(
        cls, model: str | os.PathLike = "default", device: str = "cpu", paste: str = "face"
    ) -> Swapper:
        """`"default"`, an exported `.safetensors` model or a training run folder. `paste`:
        "face" puts back the face regions only (the target's hair and background stay),
        "mask" the whole region the generator repainted."""
        return cls.from_config(SwapConfig(model=str(model), paste=paste, device=device))

    @classmethod
    def from_config(cls, config: SwapConfig) -> Swapper:
        """Load the model `config` names, with its paste mode and device; its other options
        become this swapper's defaults."""
        engine = FaceSwapper.load(config.model, config.device, config.paste)
        return cls(engine, config.model, config)

    def _faces(self, faces):
        """ "all", indices, "0,2", "ref:IMAGE", or a reference photo of the person whose faces
        to swap."""
        if faces is None:
            faces = self.config.faces
        if isinstance(faces, str):
            faces = parse_faces(faces)
            if isinstance(faces, str) and faces.startswith("ref:"):
                faces = Path(faces[4:])
        if isinstance(faces, str) and faces == "all":
            return "all"
        if isinstance(faces, (list, tuple, range)):
            return [int(i) for i in faces]
        if isinstance(faces, int):
            return [faces]
        return self.embedding(faces, "No face found in the reference photo.")

    def swap_image(
        self, source, target, faces=None, color_match: float | None = None
    ) -> ImageResult:
        """Swap the person in `source` (one photo or a list of photos of the same person) into
        the chosen faces of `target`: "all", indices (left to right), or a reference photo.
        `color_match` in [0, 1] pulls the new face's colours towards the replaced face's.
        Both default to this swapper's `config`."""
        sources = [as_rgb_array(s) for s in _as_list(source)]
        result = self.engine.swap_image(
            sources, as_rgb_array(target), faces=self._faces(faces),
            color_match=self._color_match(color_match),
        )  # fmt: skip
        return ImageResult(result.image, result.faces, result.swapped, result.notes, self.name)

    def swap_video(
        self, source, target_path, out_path, faces=None, overwrite: bool = False,
        progress: bool = True, color_match: float | None = None,
    ) -> ProcessStats:  # fmt: skip
        """Swap into a video; frame timing and audio are kept, output written atomically.
        An output that is the target video (or a source photo) is refused."""
        paths = [s for s in _as_list(source) if isinstance(s, (str, os.PathLike))]
        refuse_input_as_output(out_path, [target_path, *paths])
        sources = [as_rgb_array(s) for s in _as_list(source)]
        return swap_video(
            self.engine, sources, target_path, out_path, self._faces(faces), overwrite, progress,
            color_match=self._color_match(color_match),
        )  # fmt: skip

    def _color_match(self, color_match: float | None) -> float:
        value = self.config.color_match if color_match is None else float(color_match)
        if not 0.0 <= value <= 1.0:
            raise SelfswapError(f"color_match must be from 0 to 1, not {value!r}.")
        return value

    def embedding(self, image, missing: str = "No face found.") -> np.ndarray:
        """dlib identity embedding of the largest face in `image` (`missing`: the message
        when there is none)."""
        found = self.engine.analyzer.analyze(as_rgb_array(image))
        if not found:
            raise NoFaceError(missing)
        return max(found, key=lambda f: f.width).embedding


def analyze(image, config=None) -> list[Face]:
    """The faces in `image` (path, array or PIL image), left to right. `config`: an
    `AnalyzerConfig` (default: the analyzer's defaults)."""
    from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer

    return FaceAnalyzer(config or AnalyzerConfig()).analyze(as_rgb_array(image))


@dataclass
class ProvenanceReport:
    """What `check_provenance` found in an image."""

    watermark_score: float
    threshold: float
    metadata: dict[str, str] = field(default_factory=dict)  # selfswap's keys (and EXIF)

    @property
    def watermarked(self) -> bool:
        return self.watermark_score > self.threshold

    @property
    def marked(self) -> bool:
        """Either mark: the invisible watermark or selfswap's provenance metadata."""
        return self.watermarked or bool(self.metadata)


def check_provenance(path: str | os.PathLike) -> ProvenanceReport:
    """Look for selfswap's invisible watermark and provenance metadata in an image file."""
    from PIL import Image

    from selfswap.io.images import load_image
    from selfswap.provenance import DETECTION_THRESHOLD, watermark_score

    score = watermark_score(load_image(path))
    with Image.open(path) as img:
        text = dict(getattr(img, "text", {}) or {})
        description = img.getexif().get(0x010E, "")
    meta = {k: str(v) for k, v in text.items() if k.startswith("selfswap:")}
    if isinstance(description, str) and "selfswap:synthetic" in description:
        meta["exif"] = description
    return ProvenanceReport(float(score), float(DETECTION_THRESHOLD), meta)


def export_model(run: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Write a training run's swap model as one fp16 `.safetensors` file."""
    from selfswap.swap import bundle

    return bundle.export(run, output)
