"""selfswap's Python API.

    from selfswap.api import Swapper

    swapper = Swapper.load("default")
    result = swapper.swap_image("me.jpg", "group.jpg", faces=[0])
    result.save("out.png")
    swapper.swap_video(["me.jpg", "me2.jpg"], "clip.mp4", "clip-swapped.mp4")

    swapper = Swapper.from_config(SwapConfig(faces="0", color_match=0.5))  # the CLI's options

Images may be paths, RGB uint8 arrays or PIL images. Every output carries selfswap's invisible
watermark and, when saved through the API or CLI, provenance metadata and a signed C2PA
manifest (Content Credentials; `check_provenance` reads all three). Swaps need the consent of
the people shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from selfswap.errors import NoFaceError, SelfswapError
from selfswap.face.identity import cosine_similarity
from selfswap.face.types import Face
from selfswap.io.files import refuse_input_as_output
from selfswap.io.images import as_rgb_array, save_image
from selfswap.provenance import provenance_metadata
from selfswap.provenance.credentials import Claim, Ingredient, ingredients, model_digest
from selfswap.provenance.report import ProvenanceReport
from selfswap.swap.options import SwapConfig, parse_faces
from selfswap.swap.pipeline import FaceSwapper, SourceIdentity, swap_video
from selfswap.swap.video import ProcessStats

__all__ = [
    "Swapper",
    "SwapConfig",
    "SourceIdentity",
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
    ingredients: tuple[Ingredient, ...] = ()  # source(s) and target, by hash

    def save(
        self, path: str | os.PathLike, ingredients: tuple[Ingredient, ...] | None = None,
        **details: str,
    ) -> Path:  # fmt: skip
        """Write the image atomically with selfswap's marks: text metadata (`details` added)
        and a signed C2PA manifest naming the model with its sha256 and the source(s) and
        target by hash. `ingredients` replace those of the swap (the CLI gives the files,
        whose hashes anyone can check, where the swap saw only their pixels)."""
        claim = _claim(self.model, self.ingredients if ingredients is None else ingredients)
        meta = provenance_metadata(model=self.model, **details)
        if claim.model_sha256:
            meta["selfswap:model_sha256"] = claim.model_sha256
        return save_image(path, self.image, meta, claim=claim)


def _claim(model: str, made_from: tuple[Ingredient, ...]) -> Claim:
    """What the C2PA manifest of an output made with `model` from `made_from` states."""
    return Claim(model=str(model), model_sha256=model_digest(model), ingredients=made_from)


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

    def faces_in(self, image) -> list[Face]:
        """The faces of an image, left to right, without identity embeddings: what the
        indices of `faces` and `source_faces` count."""
        return self.engine.fast_analyzer.analyze(as_rgb_array(image))

    def identity(self, source, source_faces=None) -> SourceIdentity:
        """The source person of one photo or a list of photos, to reuse over many swaps (pass
        it as `source`), its face shape estimated with this swapper's `config.shape_prior`.
        `source_faces`: per photo, the index of the face to take (left to right, see
        `faces_in`) or None for its largest face (the default for every photo)."""
        if isinstance(source, SourceIdentity):
            return source
        sources = [as_rgb_array(s) for s in _as_list(source)]
        return self.engine.source_identity(
            sources, source_faces, shape_prior=float(self.config.shape_prior)
        )

    def _source(self, source, source_faces):
        """What the engine takes: a `SourceIdentity` when a face is chosen, else the photos
        (the engine reads them after the target, so a bad target is refused first)."""
        if isinstance(source, SourceIdentity) or source_faces is not None:
            return self.identity(source, source_faces)
        return [as_rgb_array(s) for s in _as_list(source)]

    def swap_image(
        self, source, target, faces=None, color_match: float | None = None, source_faces=None
    ) -> ImageResult:
        """Swap the person in `source` (one photo, a list of photos of the same person, or
        their `identity`) into the chosen faces of `target`: "all", indices (left to right),
        or a reference photo. `color_match` in [0, 1] pulls the new face's colours towards
        the replaced face's. Both default to this swapper's `config`. `source_faces`: see
        `identity`."""
        result = self.engine.swap_image(
            self._source(source, source_faces), as_rgb_array(target), faces=self._faces(faces),
            color_match=self._color_match(color_match), **self._look(),
        )  # fmt: skip
        return ImageResult(
            result.image, result.faces, result.swapped, result.notes, self.name,
            ingredients(source, target),
        )  # fmt: skip

    def swap_video(
        self, source, target_path, out_path, faces=None, overwrite: bool = False,
        progress: bool = True, color_match: float | None = None, source_faces=None,
        on_progress=None, cancel=None,
    ) -> ProcessStats:  # fmt: skip
        """Swap into a video; frame timing and audio are kept, output written atomically.
        An output that is the target video (or a source photo) is refused.
        `on_progress(done, total, fps)` is called after each frame; setting `cancel` (a
        `threading.Event`) stops the work with `selfswap.swap.video.Cancelled` and leaves
        no file. Frames carry the watermark; MP4 and MOV files also a signed C2PA manifest
        (see `ImageResult.save`), Matroska cannot (a note says so)."""
        from selfswap.provenance.credentials import can_sign, signed_output
        from selfswap.swap.video import check_output

        paths = [s for s in _as_list(source) if isinstance(s, (str, os.PathLike))]
        refuse_input_as_output(out_path, [target_path, *paths])
        check_output(out_path, overwrite)  # before any work (the video is written elsewhere)
        claim = _claim(self.name, ingredients(source, target_path))
        with signed_output(out_path, claim) as part:
            stats = swap_video(
                self.engine, self._source(source, source_faces), target_path, part,
                self._faces(faces), overwrite, progress,
                color_match=self._color_match(color_match), on_progress=on_progress,
                cancel=cancel, steady=float(self.config.steady), **self._look(),
            )  # fmt: skip
        if not can_sign(out_path):
            note = (
                f"{Path(out_path).suffix} files cannot carry a C2PA manifest: the video has the "
                "watermark only; write .mp4 or .mov for signed Content Credentials."
            )
            stats = replace(stats, notes=(*stats.notes, note))
        return stats

    def using(self, config: SwapConfig) -> Swapper:
        """This swapper's model with other per-swap options (faces, colour match, detail,
        seam, occlusion...): a view sharing the loaded model. A config that needs another
        model (model, paste, device) is refused: load it with `from_config`."""
        if config.model_key() != self.config.model_key():
            raise SelfswapError("That configuration needs another model: use Swapper.from_config.")
        return Swapper(self.engine, self.name, config)

    def _look(self) -> dict[str, float | str]:
        """The config's options of how the new face is finished: detail, seam and the parts
        that keep the target's expression (passed per call) and what of the target stays in
        front (set on the engine, whose occlusion models are kept)."""
        from selfswap.swap.occlusion import configure

        configure(self.engine, self.config.keep_mouth, self.config.occlusion)
        return {
            "detail": float(self.config.detail),
            "seam": float(self.config.seam),
            "expression_parts": self.config.expression_parts,
            "mirror": float(self.config.mirror),
            "shape_prior": float(self.config.shape_prior),
        }

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


def check_provenance(path: str | os.PathLike) -> ProvenanceReport:
    """Look for selfswap's marks in an image or video file: its C2PA manifest (read and
    validated: valid, changed after signing, or missing), the invisible watermark (at any
    resize factor from 50 % to 200 %) and, in images, the text metadata. The report's
    `lines()` / `text` say it all in words."""
    from selfswap.provenance.report import check_file

    return check_file(path)


def export_model(run: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Write a training run's swap model as one fp16 `.safetensors` file."""
    from selfswap.swap import bundle

    return bundle.export(run, output)
