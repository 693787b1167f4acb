"""selfswap's Python API.

    from selfswap.api import Swapper

    swapper = Swapper.load("default")
    result = swapper.swap_image("me.jpg", "group.jpg", faces=[0])
    result.save("out.png")
    swapper.swap_video(["me.jpg", "me2.jpg"], "clip.mp4", "clip-swapped.mp4")

Images may be paths, RGB uint8 arrays or PIL images. Every output carries selfswap's invisible
watermark and (when saved through the API or CLI) provenance metadata. Swaps need the consent
of the people shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfswap.errors import NoFaceError
from selfswap.face.identity import cosine_similarity
from selfswap.face.types import Face
from selfswap.io.files import refuse_input_as_output
from selfswap.io.images import as_rgb_array, save_image
from selfswap.provenance import provenance_metadata
from selfswap.swap.pipeline import FaceSwapper, swap_video
from selfswap.swap.video import ProcessStats

__all__ = ["Swapper", "ImageResult", "identity_similarity"]


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
    """A loaded swap model with its face analysis; reuse it for many swaps."""

    def __init__(self, engine: FaceSwapper, name: str) -> None:
        self.engine = engine
        self.name = name

    @classmethod
    def load(
        cls, model: str | os.PathLike = "default", device: str = "cpu", paste: str = "face"
    ) -> Swapper:
        """`"default"`, an exported `.safetensors` model or a training run folder. `paste`:
        "face" puts back the face regions only (the target's hair and background stay),
        "mask" the whole region the generator repainted."""
        return cls(FaceSwapper.load(model, device, paste), str(model))

    def _faces(self, faces):
        """ "all", indices, or a reference photo of the person whose faces to swap."""
        if isinstance(faces, str) and faces == "all":
            return "all"
        if isinstance(faces, (list, tuple, range)):
            return [int(i) for i in faces]
        if isinstance(faces, int):
            return [faces]
        return self.embedding(faces, "No face found in the reference photo.")

    def swap_image(self, source, target, faces="all", color_match: float = 0.0) -> ImageResult:
        """Swap the person in `source` (one photo or a list of photos of the same person) into
        the chosen faces of `target`: "all", indices (left to right), or a reference photo.
        `color_match` in [0, 1] pulls the new face's colours towards the replaced face's."""
        sources = [as_rgb_array(s) for s in _as_list(source)]
        result = self.engine.swap_image(
            sources, as_rgb_array(target), faces=self._faces(faces), color_match=color_match
        )
        return ImageResult(result.image, result.faces, result.swapped, result.notes, self.name)

    def swap_video(
        self, source, target_path, out_path, faces="all", overwrite: bool = False,
        progress: bool = True, color_match: float = 0.0,
    ) -> ProcessStats:  # fmt: skip
        """Swap into a video; frame timing and audio are kept, output written atomically.
        An output that is the target video (or a source photo) is refused."""
        paths = [s for s in _as_list(source) if isinstance(s, (str, os.PathLike))]
        refuse_input_as_output(out_path, [target_path, *paths])
        sources = [as_rgb_array(s) for s in _as_list(source)]
        return swap_video(
            self.engine, sources, target_path, out_path, self._faces(faces), overwrite, progress,
            color_match=color_match,
        )  # fmt: skip

    def embedding(self, image, missing: str = "No face found.") -> np.ndarray:
        """dlib identity embedding of the largest face in `image` (`missing`: the message
        when there is none)."""
        found = self.engine.analyzer.analyze(as_rgb_array(image))
        if not found:
            raise NoFaceError(missing)
        return max(found, key=lambda f: f.width).embedding
