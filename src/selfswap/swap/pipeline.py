"""Image face swapping with a trained SAMAE generator (DESIGN.md §3).

Per target face: align to the canonical crop, render the swap geometry (source shape with the
target's expression and pose), build the deterministic swap mask, run the generator with the
source's identity and the target's appearance, composite inside the mask, paste back with a
feathered edge. The output carries selfswap's watermark (see `selfswap.provenance`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import torch

from selfswap.errors import NoFaceError, SelfswapError
from selfswap.face import align
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.face.types import Face
from selfswap.io.images import as_rgb_array
from selfswap.provenance import embed_watermark


@dataclass
class SourceIdentity:
    """What a swap takes from the source person: identity embedding and 3DMM face shape,
    averaged over one or more photos."""

    embedding: np.ndarray  # (128,)
    shape: np.ndarray  # (40,)
    photos: int = 1
    notes: list[str] = field(default_factory=list)


@dataclass
class SwapResult:
    image: np.ndarray  # (H, W, 3) uint8, watermarked
    faces: list[Face]  # all faces found in the target, left to right
    swapped: list[int]  # indices into `faces`
    crops: np.ndarray  # (N, R, R, 3) uint8 generated crops (composited)
    notes: list[str] = field(default_factory=list)  # e.g. "source photo #1 shows 2 faces"


def _largest(faces: list[Face]) -> Face:
    return max(faces, key=lambda f: f.width)


#: Paste-back region "face": the target's and the swapped mesh's face regions grown by this
#: fraction of the crop side (and kept inside the swap mask).
FACE_GROW = 0.04


class FaceSwapper:
    """A loaded model plus the analysis it needs. `model` is the training code's
    `GeneratorSide` (generator + appearance encoder), in eval mode.

    `paste`: what goes back into the frame. "face" (default): the generated pixels over both
    face regions (target's and swapped mesh's) plus a small margin, so the target's own hair
    and background stay untouched; "mask": everything the generator repainted (the whole
    shape-agnostic swap mask).
    """

    def __init__(
        self, model: torch.nn.Module, config, device: str = "cpu", paste: str = "face"
    ) -> None:
        if paste not in ("face", "mask"):
            raise SelfswapError(f"paste must be 'face' or 'mask', not {paste!r}.")
        self.model = model.eval().requires_grad_(False).to(device)
        self.config = config
        self.size = int(config.size)
        self.device = device
        self.paste_region = paste
        self.analyzer = FaceAnalyzer(AnalyzerConfig(embedding="dlib"))

    @classmethod
    def load(
        cls, model: str | Path = "default", device: str = "cpu", paste: str = "face"
    ) -> FaceSwapper:
        """Load a swap model: `"default"` (shipped with selfswap), an exported `.safetensors`
        file (`selfswap export`), or a training run / checkpoint folder (its EMA weights)."""
        from selfswap.swap import bundle

        path = bundle.resolve(model)
        if path.is_dir():
            generator_side, config, _ = load_run(path)
        else:
            generator_side, config, _ = bundle.load_generator_side(path)
        return cls(generator_side, config, device, paste)

    @cached_property
    def fast_analyzer(self) -> FaceAnalyzer:
        """Analysis without identity embeddings (video frames need none unless faces are
        chosen by reference)."""
        return FaceAnalyzer(AnalyzerConfig(embedding="none"))

    @cached_property
    def masks(self):
        from selfswap.geometry.render import Renderer
        from selfswap.samae.masks import MaskBuilder

        return MaskBuilder(Renderer(self.size), self.config.samae_config())

    def source_identity(self, sources: list) -> SourceIdentity:
        """Identity and shape of the source person from one or more photos (the largest face
        of each; a note says when a photo held several)."""
        embeddings, shapes, notes = [], [], []
        for i, source in enumerate(sources):
            faces = self.analyzer.analyze(source)
            if not faces:
                raise NoFaceError(f"No face found in source photo #{i + 1}.")
            if len(faces) > 1:
                notes.append(f"source photo #{i + 1} shows {len(faces)} faces; using the largest.")
            face = _largest(faces)
            embeddings.append(face.embedding)
            shapes.append(face.shape)
        return SourceIdentity(
            np.mean(embeddings, axis=0), np.mean(shapes, axis=0), len(sources), notes
        )

    def swap_faces(
        self, target_rgb: np.ndarray, faces: list[Face], source: SourceIdentity
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For target faces: generated crops `(N, R, R, 3)` uint8, paste-back masks `(N, R, R)`
        (see `paste`) and alignment matrices `(N, 2, 3)` (image → crop)."""
        from selfswap.geometry.mesh import Geometry
        from selfswap.nets.generator import composite

        r = self.size
        matrices = np.stack([align.alignment_matrix(f.landmarks68, r) for f in faces])
        crops = np.stack([align.warp_to_crop(target_rgb, m, r) for m in matrices])
        cameras = np.stack([align.camera_to_crop(f.camera, m) for f, m in zip(faces, matrices)])
        geometry = Geometry(
            np.stack([f.shape for f in faces]).astype(np.float32),
            np.stack([f.expression for f in faces]).astype(np.float32),
            cameras,
        )
        swap = self.masks.swap(geometry, source.shape.astype(np.float32))

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device)

        image = tensor(crops.transpose(0, 3, 1, 2) / 255.0)
        mask = tensor(swap.mask)
        z_id = tensor(np.repeat(source.embedding[None], len(faces), axis=0))
        with torch.no_grad():
            raw = self.model(
                image, mask, tensor(swap.normals), tensor(swap.silhouette),
                tensor(swap.target_region), z_id,
                masked=self.config.mode != "seesaw",  # seesaw models see the whole target
            )  # fmt: skip
            out = composite(raw.float(), image, mask)
        generated = (out.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
        return generated, self._paste_mask(swap), matrices

    def _paste_mask(self, swap) -> np.ndarray:
        if self.paste_region == "mask":
            return swap.mask[:, 0]
        regions = np.maximum(swap.target_region[:, 0], swap.source_region[:, 0])
        k = 2 * round(FACE_GROW * self.size) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        grown = np.stack([cv2.dilate(r, kernel) for r in regions])
        return np.minimum(grown, swap.mask[:, 0])

    def paste(self, frame, crops, masks, matrices, color_match: float = 0.0) -> np.ndarray:
        """Feathered paste-back of generated crops; `color_match` in [0, 1] moves each face's
        colours towards the target face it replaces (Lab mean/std inside the mask)."""
        from selfswap.swap.blend import paste_back_many

        references = None
        if color_match > 0:
            references = [align.warp_to_crop(frame, m, self.size) for m in matrices]
        return paste_back_many(
            frame, crops, matrices, masks, color_references=references, color_strength=color_match
        )

    def swap_image(
        self, sources: list, target, faces="all", watermark: bool = True, color_match: float = 0.0
    ) -> SwapResult:
        """Swap the source person into the chosen faces of the target image.

        `faces`: "all", a list of indices (left to right), or a `Face` embedding `(128,)` to
        match within dlib's 0.6 distance (faces of one particular person). `color_match`:
        see `paste`.
        """
        target_rgb = as_rgb_array(target)
        by_reference = isinstance(faces, np.ndarray)
        found = (self.analyzer if by_reference else self.fast_analyzer).analyze(target_rgb)
        if not found:
            raise NoFaceError("No face found in the target image.")
        chosen = select_faces(found, faces)
        source = self.source_identity(sources)
        crops, masks, matrices = self.swap_faces(target_rgb, [found[i] for i in chosen], source)
        out = self.paste(target_rgb, crops, masks, matrices, color_match)
        if watermark:
            out = embed_watermark(out)
        return SwapResult(out, found, chosen, crops, source.notes)


def load_run(path: Path):
    """`(GeneratorSide with EMA weights, TrainConfig, checkpoint folder)` of a training run
    folder (its `best/`, else its latest valid checkpoint), its best/ or one checkpoint."""
    from selfswap.config import load_config
    from selfswap.train import checkpoint as ckpt
    from selfswap.train.config import TrainConfig
    from selfswap.train.loop import GeneratorSide

    runs = [p for p in (path, path.parent, path.parent.parent) if (p / "config.yaml").is_file()]
    if not runs:
        raise SelfswapError(f"{path}: not a training run or checkpoint folder.")
    if (path / ckpt.WEIGHTS).is_file():
        checkpoint = path
    elif (path / "best" / ckpt.WEIGHTS).is_file():
        checkpoint = path / "best"
    else:
        checkpoint = ckpt.latest_valid(path / "checkpoints", log=lambda *_: None)
        if checkpoint is None:
            raise SelfswapError(f"{path}: the run has no usable checkpoint yet.")
    config = load_config(TrainConfig, runs[0] / "config.yaml")
    weights, _, _ = ckpt.load_checkpoint(checkpoint)
    model = GeneratorSide(config)
    model.load_state_dict(ckpt.split_weights(weights, "ema"))
    return model.eval(), config, checkpoint


def select_faces(found: list[Face], faces) -> list[int]:
    """Indices of the faces to swap: "all", explicit indices, or a reference embedding."""
    if isinstance(faces, str):
        if faces != "all":
            raise SelfswapError(f"faces must be 'all', indices or a reference, got {faces!r}.")
        return list(range(len(found)))
    if isinstance(faces, np.ndarray):
        chosen = [i for i, f in enumerate(found) if np.linalg.norm(f.embedding - faces) < 0.6]
        if not chosen:
            raise NoFaceError("No face in the target matches the reference person.")
        return chosen
    chosen = sorted(set(int(i) for i in faces))
    bad = [i for i in chosen if not 0 <= i < len(found)]
    if bad:
        raise SelfswapError(
            f"Face index {bad[0]} does not exist; the target has {len(found)} face(s) "
            f"(0 to {len(found) - 1}, left to right)."
        )
    return chosen


def swap_video(
    swapper: FaceSwapper,
    sources: list,
    in_path,
    out_path,
    faces="all",
    overwrite: bool = False,
    progress: bool = True,
    watermark: bool = True,
    color_match: float = 0.0,
):
    """Swap the source person into a video, keeping its frame timing and audio.

    Faces are tracked across frames and their landmarks and 3DMM parameters smoothed (reset
    at scene cuts) so the swapped face does not jitter; frames without a chosen face pass
    through unchanged (still watermarked). Returns `ProcessStats`.
    """
    from dataclasses import replace

    from selfswap.swap.smoothing import FaceTracker, scene_cut
    from selfswap.swap.video import check_output, probe, process_video

    check_output(out_path, overwrite)
    info = probe(in_path)
    source = swapper.source_identity(sources)
    analyzer = swapper.analyzer if isinstance(faces, np.ndarray) else swapper.fast_analyzer
    tracker = FaceTracker(freq=float(info.fps))
    previous: list[np.ndarray] = []

    def swap_frame(frame: np.ndarray) -> np.ndarray:
        cut = bool(previous) and scene_cut(previous[0], frame)
        previous[:] = [frame]
        found = analyzer.analyze(frame)
        try:
            picked = [found[i] for i in select_faces(found, faces)] if found else []
        except NoFaceError:
            picked = []
        keys = ("landmarks68", "camera", "shape", "expression")
        tracks = tracker.update(
            [{"box": f.box, **{k: getattr(f, k) for k in keys}} for f in picked], cut=cut
        )
        out = frame
        if picked:
            smooth = [
                replace(f, **{k: np.asarray(s[k], np.float32) for k in ("box", *keys)})
                for f, (_, s) in zip(picked, tracks)
            ]
            crops, masks, matrices = swapper.swap_faces(frame, smooth, source)
            out = swapper.paste(frame, crops, masks, matrices, color_match)
        return embed_watermark(out) if watermark else out

    stats = process_video(in_path, out_path, swap_frame, progress=progress, overwrite=overwrite)
    return replace(stats, notes=tuple(source.notes))
