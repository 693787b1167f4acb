"""Image face swapping with a trained SAMAE generator (DESIGN.md §3).

Per target face: align to the canonical crop, render the swap geometry (source shape with the
target's expression and pose), build the deterministic swap mask, run the generator with the
source's identity and the target's appearance, composite inside the mask, paste back with a
feathered edge. The output carries selfswap's watermark (see `selfswap.provenance`).

A crop whose face is darker or brighter than the training faces is brought into their
exposure range for the generator and the generated face scaled back (`EXPOSURE_RANGE`), so a
swap into a dark photo stays as dark as the photo. Non-finite generator output (damaged
weights) is refused with `ModelOutputError` before anything is pasted or written.

Video (`swap_video`) looks for each face near its place in the previous frame, in a crop of
the frame, and searches the whole frame only every `SEARCH_EVERY` frames: analysis then costs
about the same on a 1080p frame as on a 640x480 one.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import torch

from selfswap.errors import ModelFileError, NoFaceError, SelfswapError
from selfswap.face import align
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.face.types import Face
from selfswap.io.images import as_rgb_array
from selfswap.provenance import embed_watermark
from selfswap.swap.threads import torch_threads

#: Renderer sizes a `SourceIdentity` keeps its painting view for (faces of a video are shown
#: at a few sizes; `selfswap.swap.detail.output_side` steps them).
_VIEWS_KEPT = 8


@dataclass
class SourceIdentity:
    """What a swap takes from the source person from one or more photos: identity
    embedding (their average) and 3DMM face shape (their average pulled towards the average
    face by the shape prior, `selfswap.face.shape_prior`)."""

    embedding: np.ndarray  # (128,)
    shape: np.ndarray  # (40,)
    photos: int = 1
    notes: list[str] = field(default_factory=list)
    # the photo whose pixels texture the swap (the most frontal source face) and that face
    texture_photo: np.ndarray | None = None
    texture_face: Face | None = None
    # that photo ready to paint from, per renderer size (`view`); not copied by `replace`
    _views: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def view(self, renderer):
        """The texture photo and its fit ready to paint from with `renderer`
        (`selfswap.geometry.texture.source_view`), made once per renderer size: a video's
        faces are painted from it frame after frame."""
        from selfswap.geometry.mesh import face_geometry
        from selfswap.geometry.texture import source_view

        # the photo and face are in the key too: a view never outlives what it was made of
        key = (renderer.size, renderer.n_vertices, id(self.texture_photo), id(self.texture_face))
        if key not in self._views:
            if len(self._views) >= _VIEWS_KEPT:
                del self._views[next(iter(self._views))]
            self._views[key] = source_view(
                renderer, [self.texture_photo], face_geometry([self.texture_face])
            )
        return self._views[key]


@dataclass
class SwapResult:
    image: np.ndarray  # (H, W, 3) uint8, watermarked
    faces: list[Face]  # all faces found in the target, left to right
    swapped: list[int]  # indices into `faces`
    crops: np.ndarray  # (N, R, R, 3) uint8 generated crops (composited)
    notes: list[str] = field(default_factory=list)  # e.g. "source photo #1 shows 2 faces"


def _largest(faces: list[Face]) -> Face:
    return max(faces, key=lambda f: f.width)


#: Face exposure the generator knows: mean luma (Rec. 601, 0-255) over the target's face
#: region, about the 1st to 99th percentile of the LFW training faces (median 130). A darker or
#: brighter target crop is scaled into this range before the generator (a gain on the sRGB
#: values, i.e. an exposure change) and the generated face is scaled back by the same gain,
#: so the swap keeps the target's exposure; faces inside the range are left as they are.
EXPOSURE_RANGE = (75.0, 185.0)
#: Largest gain (a face at 1/40 of the range's low end is still brought up only this far).
MAX_GAIN = 40.0


class ModelOutputError(ModelFileError):
    """The generator produced non-finite values (damaged weights)."""


def exposure_gains(crops: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Per crop, the gain that brings the mean luma of its face region into `EXPOSURE_RANGE`
    (1 when it already is). crops: `(N, R, R, 3)` uint8 RGB; regions: `(N, 1, R, R)` or
    `(N, R, R)` weights in [0, 1]. Returns `(N,)` float32."""
    luma = crops.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    weights = np.asarray(regions, np.float32).reshape(luma.shape)
    total = weights.sum(axis=(1, 2))
    mean = np.where(
        total > 1.0, (luma * weights).sum(axis=(1, 2)) / np.maximum(total, 1e-6), luma.mean((1, 2))
    )
    wanted = np.clip(mean, *EXPOSURE_RANGE)
    return np.clip(wanted / np.maximum(mean, 1e-3), 1.0 / MAX_GAIN, MAX_GAIN).astype(np.float32)


#: How much of the source's fine detail is laid over faces shown larger than the model's
#: crop (`FaceSwapper.add_detail`, `selfswap.swap.detail`).
DETAIL = 1.0
#: How far the generated face's colours are brought to the photo's at the paste border
#: (`FaceSwapper.match_border`, `selfswap.swap.seam`).
SEAM = 1.0
#: Parts of the face whose texture comes from the target photo, not the source's, so that they
#: keep the target's expression (`selfswap.geometry.regions.CHOICES`: the mouth and, when
#: they blink or are shut, the eyes; `FaceSwapper.source_texture`, `add_detail`).
EXPRESSION_PARTS = "mouth-blinks"
#: How far the parts of the face the source photo did not see (the far side of a turned
#: head, behind the nose) are filled with their mirror image across the face
#: (`selfswap.geometry.texture`, `mirror`; 0 = left to the generator).
MIRROR = 1.0
#: Video: how much of the previous swapped frame is kept where the footage is still
#: (`selfswap.swap.steady`).
STEADY = 1.0
#: How far the source's 3DMM face shape is the empirical-Bayes estimate of
#: `selfswap.face.shape_prior` rather than the plain average of its photos' fits.
SHAPE_PRIOR = 1.0

#: Paste-back region "face": the target's and the swapped mesh's face regions grown by this
#: fraction of the crop side (and kept inside the swap mask).
FACE_GROW = 0.04


class FaceSwapper:
    """A loaded model plus the analysis it needs. `model` is a `selfswap.nets.model.SwapModel`
    (generator + appearance encoder) in eval mode, `config` its `ModelConfig`.

    `paste`: what goes back into the frame. "face" (default): the generated pixels over both
    face regions (target's and swapped mesh's) plus a small margin, so the target's own hair
    and background stay untouched; "mask": everything the generator repainted (the whole
    shape-agnostic swap mask).
    """

    #: Whether a frame's work is spread over other threads: `swap_frame` paints the detail
    #: textures and factorises the seam's problem while the generator runs, `swap_video`
    #: analyses the next frame while this one is swapped. The outputs are the same either way
    #: (False: one thread, for measuring).
    overlap: bool = True
    #: The generator runs as a frozen graph from this call on (`SwapModel.freeze_after`):
    #: a run that swaps one photo does not pay for the trace (~0.6 s), a video or the web app
    #: from its second frame on.
    freeze_after: int = 2

    def __init__(
        self, model: torch.nn.Module, config, device: str = "cpu", paste: str = "face"
    ) -> None:
        if paste not in ("face", "mask"):
            raise SelfswapError(f"paste must be 'face' or 'mask', not {paste!r}.")
        self.model = model.eval().requires_grad_(False).to(device)
        if hasattr(self.model, "freeze_after"):
            self.model.freeze_after = self.freeze_after
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
            swap_model, config, _ = load_run(path)
        else:
            swap_model, config, _ = bundle.load_generator_side(path)
        return cls(swap_model, config, device, paste)

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

    def source_identity(
        self,
        sources: list,
        choice: Sequence[int | None] | None = None,
        shape_prior: float = SHAPE_PRIOR,
    ) -> SourceIdentity:
        """Identity and shape of the source person from one or more photos: the largest face
        of each (a note says when a photo held several), or per photo the face `choice[i]`
        (an index left to right, as `analyzer.analyze` orders them; None: the largest).
        `shape_prior` in [0, 1]: how far the shape is the shape prior's estimate from these
        photos rather than their fits' plain average."""
        from selfswap.face.shape_prior import shape_prior as prior

        if choice is not None and len(choice) != len(sources):
            raise SelfswapError(
                f"Choose one face per source photo: {len(choice)} choices for "
                f"{len(sources)} photos."
            )
        embeddings, shapes, notes, found = [], [], [], []
        for i, source in enumerate(sources):
            faces = self.analyzer.analyze(source)
            if not faces:
                raise NoFaceError(f"No face found in source photo #{i + 1}.")
            index = None if choice is None else choice[i]
            if index is not None:
                if not 0 <= int(index) < len(faces):
                    raise SelfswapError(
                        f"Source photo #{i + 1} has no face #{index}; it shows {len(faces)} "
                        f"(0 to {len(faces) - 1}, left to right)."
                    )
                face = faces[int(index)]
            else:
                if len(faces) > 1:
                    notes.append(
                        f"source photo #{i + 1} shows {len(faces)} faces; using the largest."
                    )
                face = _largest(faces)
            embeddings.append(face.embedding)
            shapes.append(face.shape)
            found.append((abs(face.yaw) + abs(face.pitch), i, face))
        _, frontal, face = min(found, key=lambda f: f[:2])
        shape = prior().estimate(np.stack(shapes), shape_prior).astype(np.float32)
        return SourceIdentity(
            np.mean(embeddings, axis=0), shape, len(sources), notes,
            as_rgb_array(sources[frontal]), face,
        )  # fmt: skip

    def source_texture(
        self,
        source: SourceIdentity,
        geometry,
        count: int,
        expression_parts: str = EXPRESSION_PARTS,
        renderer=None,
        target: np.ndarray | None = None,
        target_faces: list[Face] | None = None,
        interpolation: int = cv2.INTER_LINEAR,
        mirror: float = MIRROR,
        eye_gate: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The source photo's pixels on the swap geometry (posed in the target crops) and
        their visibility, `(count, 3, R, R)` and `(count, 1, R, R)` (see
        `selfswap.geometry.texture`). Over `expression_parts` of the face
        (`selfswap.geometry.regions`) the pixels come from the `target` photo instead, through
        its faces' own 3DMM fits (`target_faces`, one per geometry), so that those parts keep
        the target's expression; without a target nothing is visible there. `renderer`: that
        of the crops (default R); `interpolation`: how the photos are resampled (an OpenCV
        flag); `mirror`: how far what the source photo did not see is filled with its mirror
        image across the face; `eye_gate` `(count,)`: the gated eyes' strength per face
        (`regions.part_strengths`; default by how far their opening differs from the
        source's)."""
        from selfswap.geometry import regions
        from selfswap.geometry.mesh import face_geometry
        from selfswap.geometry.texture import paint, source_view

        if source.texture_photo is None or source.texture_face is None:
            raise SelfswapError("This model needs a source photo to take the face's pixels from.")
        renderer = renderer or self.masks.renderer
        views = [source.view(renderer).repeat(count)]
        mirrors = [mirror]
        parts = regions.parts_of(expression_parts)
        strengths = None
        if parts and target_faces is not None:
            strengths = regions.part_strengths(
                parts,
                np.asarray(source.texture_face.landmarks68)[None],
                np.stack([f.landmarks68 for f in target_faces]),
                eye_gate,
            )
        own = (
            bool(parts)
            and target is not None
            and target_faces is not None
            and (strengths is None or any(np.any(v > 0) for v in strengths.values()))
        )
        if own:  # the target's own pixels, painted in the same render
            views.append(source_view(renderer, [target] * count, face_geometry(target_faces)))
            mirrors.append(0.0)
        extra = regions.part_attributes(renderer.mesh, parts) if parts else None
        painted, out = paint(renderer, views, geometry, mirrors, extra, interpolation=interpolation)
        texture, visibility = painted[0]
        if not parts:
            return texture, visibility
        weights = regions.rendered_weights(out, parts, strengths)
        if not weights.any():
            return texture, visibility
        if not own:
            return regions.hide_regions(texture, visibility, weights)
        return regions.blend_textures(texture, visibility, *painted[1], weights)

    def swap_faces(
        self,
        target_rgb: np.ndarray,
        faces: list[Face],
        source: SourceIdentity,
        expression_parts: str = EXPRESSION_PARTS,
        mirror: float = MIRROR,
        eye_gate: np.ndarray | None = None,
        on_masks: Callable[[np.ndarray], object] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For target faces: generated crops `(N, R, R, 3)` uint8, paste-back masks `(N, R, R)`
        (see `paste`) and alignment matrices `(N, 2, 3)` (image → crop). Models that take the
        source texture get the target's pixels over `expression_parts` and what the source
        photo did not see filled by `mirror`; `eye_gate` `(N,)`: see `source_texture`.
        `on_masks(masks)` is called with the paste-back masks as soon as they are made,
        before the generator runs."""
        from selfswap.geometry.mesh import Geometry
        from selfswap.nets.generator import composite
        from selfswap.nets.model import Guidance

        r = self.size
        matrices = self.alignments(faces)
        crops = np.stack([align.warp_to_crop(target_rgb, m, r) for m in matrices])
        cameras = np.stack([align.camera_to_crop(f.camera, m) for f, m in zip(faces, matrices)])
        geometry = Geometry(
            np.stack([f.shape for f in faces]).astype(np.float32),
            np.stack([f.expression for f in faces]).astype(np.float32),
            cameras,
        )
        swap = self.masks.swap(geometry, source.shape.astype(np.float32))
        paste_masks = self._paste_mask(swap)
        if on_masks is not None:
            on_masks(paste_masks)

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device)

        image = tensor(crops.transpose(0, 3, 1, 2) / 255.0)
        mask = tensor(swap.mask)
        z_id = tensor(np.repeat(source.embedding[None], len(faces), axis=0))
        # the generator sees the crop at an exposure it was trained on; its face is scaled back
        gain = tensor(exposure_gains(crops, swap.target_region))[:, None, None, None]
        extra = {}
        if self.config.generator.source_texture:
            painted = Geometry(
                np.repeat(source.shape[None].astype(np.float32), len(faces), axis=0),
                geometry.expression,
                geometry.camera,
            )
            texture, visibility = self.source_texture(
                source, painted, len(faces), expression_parts, None, target_rgb, faces,
                mirror=mirror, eye_gate=eye_gate,
            )  # fmt: skip
            extra = {"texture": tensor(texture), "visibility": tensor(visibility)}
        with torch.no_grad():
            guidance = Guidance(
                (image * gain).clamp(0, 1), mask, tensor(swap.normals),
                tensor(swap.silhouette), tensor(swap.target_region), **extra,
            )  # fmt: skip
            # seesaw models see the whole target
            raw = self.model(guidance, z_id, masked=self.config.mode != "seesaw").float()
            if not bool(torch.isfinite(raw).all()):
                raise ModelOutputError(
                    "The swap model produced invalid values (NaN or infinity), so nothing was "
                    "written; its weights are probably damaged: reinstall selfswap or export "
                    "the model again."
                )
            out = composite(raw / gain, image, mask)
        generated = (out.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
        return generated, paste_masks, matrices

    def alignments(self, faces: list[Face]) -> np.ndarray:
        """Frame → R crop matrices `(N, 2, 3)` of `faces`."""
        return np.stack([align.alignment_matrix(f.landmarks68, self.size) for f in faces])

    def _worker(self, name: str) -> ThreadPoolExecutor:
        """This process's thread `name` of `swap_frame`: "painter" paints the detail textures
        (renderers are used by one thread at a time, and this is the only one that paints in
        `swap_frame`), "solver" factorises the seam's problems. Made on first use, again in
        a forked child (a parent's threads do not survive `fork`)."""
        workers = self.__dict__.setdefault("_workers", {})
        key = (name, os.getpid())
        if key not in workers:
            workers[key] = ThreadPoolExecutor(1, thread_name_prefix=f"selfswap-{name}")
        return workers[key]

    def renderer(self, side: int):
        """A renderer of crops of this side (the mask builder's for R; cached), drawing at
        most `selfswap.swap.detail.MESH_TRIANGLES` at other sides."""
        if side == self.size:
            return self.masks.renderer
        from selfswap.geometry.render import Renderer
        from selfswap.swap.detail import mesh_detail

        cache = self.__dict__.setdefault("_renderers", {})
        if side not in cache:
            cache[side] = Renderer(side, detail=mesh_detail(side))
        return cache[side]

    def detail_textures(
        self,
        faces: list[Face],
        source: SourceIdentity,
        matrices: np.ndarray,
        strength: float = 1.0,
        expression_parts: str = EXPRESSION_PARTS,
        frame: np.ndarray | None = None,
        mirror: float = MIRROR,
        eye_gate: np.ndarray | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """The source painted on each face's swap geometry at the size the face is shown
        (`add_detail`'s arguments; `matrices` frame → R crop): `(texture (S, S, 3),
        visibility (S, S), frame → S crop matrix)` per face, None where the face keeps its
        R crop. It needs no generated pixels, so `swap_frame` paints it while the generator
        runs."""
        from selfswap.geometry.mesh import Geometry
        from selfswap.swap import detail

        out: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
        gates = [None] * len(faces) if eye_gate is None else list(eye_gate)
        for face, matrix, gate in zip(faces, matrices, gates):
            side = detail.output_side(matrix, self.size)
            if side == self.size or strength <= 0 or source.texture_photo is None:
                out.append(None)
                continue
            hi = detail.scaled_matrix(matrix, self.size, side)
            painted = Geometry(
                source.shape[None].astype(np.float32),
                np.asarray(face.expression, np.float32)[None],
                align.camera_to_crop(face.camera, hi)[None],
            )
            texture, visibility = self.source_texture(
                source,
                painted,
                1,
                expression_parts,
                self.renderer(side),
                frame,
                [face],
                detail.INTERPOLATION,
                mirror,
                None if gate is None else np.array([gate]),
            )
            out.append((texture[0].transpose(1, 2, 0), visibility[0, 0], hi))
        return out

    def add_detail(
        self,
        faces: list[Face],
        source: SourceIdentity,
        crops: np.ndarray,
        masks: np.ndarray,
        matrices: np.ndarray,
        strength: float = 1.0,
        expression_parts: str = EXPRESSION_PARTS,
        frame: np.ndarray | None = None,
        mirror: float = MIRROR,
        eye_gate: np.ndarray | None = None,
        textures: list | None = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """The generated crops at the size each face is shown, with the source's fine detail
        (`selfswap.swap.detail`): `(crops (S, S, 3) uint8, masks (S, S), matrices)` per face;
        faces not much larger than the crop keep theirs. Over `expression_parts` of the face
        the detail comes from the target `frame` the faces are in (none without it), and what
        the source photo did not see from its mirror image by `mirror`; `eye_gate`
        `(N,)`: see `source_texture`. `textures`: `detail_textures` of these arguments,
        when already painted."""
        from selfswap.swap import detail

        if textures is None:
            textures = self.detail_textures(
                faces, source, matrices, strength, expression_parts, frame, mirror, eye_gate
            )
        out = ([], [], [])
        for crop, mask, matrix, painted in zip(crops, masks, matrices, textures):
            if painted is None:
                for items, item in zip(out, (crop, mask, matrix)):
                    items.append(item)
                continue
            texture, visibility, hi = painted
            side = len(texture)
            sharp = detail.add_detail(
                detail.upsample(crop, side), texture, visibility, self.size, strength=strength
            )
            out[0].append((sharp + 0.5).astype(np.uint8))
            out[1].append(detail.upsample(mask, side)[..., 0].clip(0, 1))
            out[2].append(hi)
        return out

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
            references = [align.warp_to_crop(frame, m, len(c)) for c, m in zip(crops, matrices)]
        return paste_back_many(
            frame, crops, matrices, masks, color_references=references, color_strength=color_match
        )

    def swap_frame(
        self,
        frame: np.ndarray,
        faces: list[Face],
        source: SourceIdentity,
        color_match: float = 0.0,
        detail: float = DETAIL,
        seam: float = SEAM,
        expression_parts: str = EXPRESSION_PARTS,
        mirror: float = MIRROR,
        eye_gate: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`frame` with `faces` swapped (a new array) and the model's crops: the swap
        (`swap_faces`), the source's detail at the faces' size (`add_detail`, `detail` in
        [0, 1]) and the paste-back (`paste`, `color_match`); the parts of the face in
        `expression_parts` follow the target's expression, not the source photo's pixels;
        what the source photo did not see is filled with its mirror image by `mirror` in
        [0, 1]; `eye_gate` `(N,)`: the gated eyes' strength per face (in a video, how far
        they depart from the face's own usual opening; see `source_texture`)."""
        from selfswap.swap.occlusion import hold_back
        from selfswap.swap.seam import Membrane

        textures = problems = None
        if self.overlap:  # the detail painted on the painter thread while the generator runs
            textures = self._worker("painter").submit(
                self.detail_textures, faces, source, self.alignments(faces), detail,
                expression_parts, frame, mirror, eye_gate,
            )  # fmt: skip

        def factorise(masks: np.ndarray) -> None:  # the seam's problems, on the solver thread
            nonlocal problems
            problems = self._worker("solver").submit(lambda: [Membrane.of_mask(m) for m in masks])

        try:
            # the generator on one core while the painter and the solver have the other
            beside = self.overlap and (detail > 0 or seam > 0)
            with torch_threads(1) if beside else contextlib.nullcontext():
                crops, masks, matrices = self.swap_faces(
                    frame, faces, source, expression_parts, mirror, eye_gate,
                    factorise if self.overlap and seam > 0 else None,
                )  # fmt: skip
            if seam > 0:  # matched to the photo where the face region ends, not around occluders
                made = None if problems is None else problems.result()
                crops = self.match_border(frame, crops, masks, matrices, seam, made)
            masks = hold_back(self, frame, faces, matrices, masks)
        finally:  # its errors too; and never left painting
            painted = None if textures is None else textures.result()
        shown = self.add_detail(
            faces, source, crops, masks, matrices, detail, expression_parts, frame, mirror,
            eye_gate, painted,
        )  # fmt: skip
        return self.paste(frame, *shown, color_match), crops

    def match_border(
        self,
        frame: np.ndarray,
        crops: np.ndarray,
        masks: np.ndarray,
        matrices: np.ndarray,
        strength: float = 1.0,
        problems: list | None = None,
    ) -> np.ndarray:
        """The generated crops with their colours brought to the frame's where the paste
        fades out (`selfswap.swap.seam`; `strength` in [0, 1]; `problems`: each mask's
        factorised `seam.Membrane`, when already made)."""
        from selfswap.swap.seam import match_border

        references = [align.warp_to_crop(frame, m, self.size) for m in matrices]
        problems = problems or [None] * len(crops)
        return np.stack(
            [
                match_border(c, r, m, strength, p)
                for c, r, m, p in zip(crops, references, masks, problems)
            ]
        )

    def swap_image(
        self,
        sources: list,
        target,
        faces="all",
        watermark: bool = True,
        color_match: float = 0.0,
        detail: float = DETAIL,
        seam: float = SEAM,
        expression_parts: str = EXPRESSION_PARTS,
        mirror: float = MIRROR,
        shape_prior: float = SHAPE_PRIOR,
    ) -> SwapResult:
        """Swap the source person (photos, or their `source_identity`) into the chosen faces
        of the target image.

        `faces`: "all", a list of indices (left to right), or a `Face` embedding `(128,)` to
        match within dlib's 0.6 distance (faces of one particular person). `color_match`:
        see `paste`; `detail`: see `add_detail`; `seam`: see `match_border`;
        `expression_parts`, `mirror`: see `swap_frame`; `shape_prior`: see
        `source_identity` (photos only).
        """
        target_rgb = as_rgb_array(target)
        by_reference = isinstance(faces, np.ndarray)
        found = (self.analyzer if by_reference else self.fast_analyzer).analyze(target_rgb)
        if not found:
            raise NoFaceError("No face found in the target image.")
        chosen = select_faces(found, faces)
        source = sources
        if not isinstance(source, SourceIdentity):
            source = self.source_identity(sources, shape_prior=shape_prior)
        picked = [found[i] for i in chosen]
        out, crops = self.swap_frame(
            target_rgb, picked, source, color_match, detail, seam, expression_parts, mirror
        )
        if watermark:
            out = embed_watermark(out, inplace=True)  # `out` is a new image (paste's copy)
        return SwapResult(out, found, chosen, crops, source.notes)


def load_run(path: Path):
    """`(SwapModel with EMA weights, ModelConfig, checkpoint folder)` of a training run
    folder (its `best/`, else its latest valid checkpoint), its best/ or one checkpoint."""
    from selfswap.modelfile import run

    return run.load(path)


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


#: Video: faces are looked for near where they were in the previous frame (a crop of the
#: frame around them, grown by `CROP_MARGIN` face sizes on each side); the whole frame is
#: searched for new faces every `SEARCH_EVERY` frames, at scene cuts and when a face is lost.
SEARCH_EVERY = 10
CROP_MARGIN = 1.0


def _around(boxes: list[np.ndarray], shape: tuple[int, ...], margin: float) -> tuple[int, ...]:
    """Integer region `(x0, y0, x1, y1)` holding all boxes grown by `margin` box sizes, clipped
    to an image of this shape."""
    b = np.array(boxes, np.float64).reshape(-1, 4)
    grow = margin * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    x0, y0 = np.floor((b[:, :2] - grow[:, None]).min(0)).astype(int)
    x1, y1 = np.ceil((b[:, 2:] + grow[:, None]).max(0)).astype(int)
    height, width = shape[:2]
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def _shifted(face: Face, offset: np.ndarray) -> Face:
    """A face found in a crop, moved to the frame the crop starts at `offset` (x, y) in."""
    from dataclasses import replace

    camera = np.array(face.camera, np.float32)
    camera[:2, 3] += offset
    return replace(
        face,
        box=(np.asarray(face.box, np.float32) + np.tile(offset, 2)).astype(np.float32),
        landmarks5=np.asarray(face.landmarks5, np.float32) + offset,
        landmarks68=np.asarray(face.landmarks68, np.float32) + offset,
        camera=camera,
    )


class FaceFollower:
    """The faces of consecutive frames (a video, a webcam stream), looked for near their
    place in the previous frame: in a crop of the frame around them, with `RegionDetector`.
    The whole frame is searched on the first frame, at scene cuts, every `SEARCH_EVERY`
    frames and when a face was not found again, so analysis costs about the same on a 1080p
    frame as on a 640x480 one. Shares the models of `analyzer`; it keeps state, so use one
    per stream."""

    def __init__(self, analyzer: FaceAnalyzer) -> None:
        from selfswap.swap.smoothing import RegionDetector

        for model in ("detector", "tddfa"):  # load them once, so that the copy shares them
            getattr(analyzer, model)
        self.analyzer = copy.copy(analyzer)
        self.regions = RegionDetector(analyzer.detector)
        self.analyzer.detector = self.regions
        self.followed: list[np.ndarray] = []  # the boxes of the last frame's faces
        self.count = 0

    def analyze(self, frame: np.ndarray, cut: bool = False) -> list[Face]:
        """The faces of the next frame, left to right (`cut`: a scene cut before it)."""
        self.count += 1
        found = None
        if self.followed and not cut and self.count % SEARCH_EVERY:
            x0, y0, x1, y1 = _around(self.followed, frame.shape, CROP_MARGIN)
            offset = np.array([x0, y0], np.float32)
            self.regions.follow([b - np.tile(offset, 2) for b in self.followed])
            inside = self.analyzer.analyze(np.ascontiguousarray(frame[y0:y1, x0:x1]))
            if not self.regions.lost:
                found = [_shifted(f, offset) for f in inside]
        if found is None:
            self.regions.follow([] if cut else self.followed, whole=True)
            found = self.analyzer.analyze(frame)
        self.followed = [f.box for f in found]
        return found


def swap_video(
    swapper: FaceSwapper,
    sources: list | SourceIdentity,
    in_path,
    out_path,
    faces="all",
    overwrite: bool = False,
    progress: bool = True,
    watermark: bool = True,
    color_match: float = 0.0,
    detail: float = DETAIL,
    seam: float = SEAM,
    on_progress: Callable[[int, int | None, float], None] | None = None,
    cancel=None,
    expression_parts: str = EXPRESSION_PARTS,
    steady: float = STEADY,
    mirror: float = MIRROR,
    shape_prior: float = SHAPE_PRIOR,
):
    """Swap the source person (photos, or their `source_identity`) into a video, keeping its
    frame timing and audio.

    Faces are tracked across frames and their landmarks and 3DMM parameters smoothed (reset
    at scene cuts) so the swapped face does not jitter; frames without a chosen face pass
    through unchanged (still watermarked). Between whole-frame searches (every
    `SEARCH_EVERY` frames, at cuts and when a face is lost) faces are analysed in a crop
    around their last place (`FaceFollower`). `on_progress(done, total, fps)` is called
    after each frame and a set `cancel` (`threading.Event`) stops the work with
    `selfswap.swap.video.Cancelled`, leaving no file (see `process_video`).
    `expression_parts`, `mirror`: see `FaceSwapper.swap_frame`; `shape_prior`: see
    `FaceSwapper.source_identity` (photos only); `steady` in [0, 1]: how much of the
    previous swapped frame is kept where the footage is still (`selfswap.swap.steady`).
    With gated eyes in `expression_parts` (`mouth-blinks`) a face's eyes come from the
    footage as far as they depart from that face's own usual opening over the last two
    seconds (`BlinkGate`, on the unsmoothed landmarks): its blinks and squints, not its
    habitual eye shape.
    Returns `ProcessStats`.
    """
    from dataclasses import replace

    from selfswap.swap.smoothing import BlinkGate, FaceTracker, scene_cut
    from selfswap.swap.steady import Steadier
    from selfswap.swap.video import check_output, probe, process_video

    check_output(out_path, overwrite)
    info = probe(in_path)
    source = sources
    if not isinstance(source, SourceIdentity):
        source = swapper.source_identity(sources, shape_prior=shape_prior)
    base = swapper.analyzer if isinstance(faces, np.ndarray) else swapper.fast_analyzer
    follower = FaceFollower(base)
    tracker = FaceTracker(freq=float(info.fps))
    blinks = BlinkGate(float(info.fps))
    steadier = Steadier(steady)
    previous: list[np.ndarray] = []

    def analyse(frame: np.ndarray) -> tuple[bool, list[Face], np.ndarray | None]:
        """The frame's chosen faces, smoothed, and their eye gates; on the reading thread
        (the analysis and tracking state is used there alone), a frame ahead of the swap."""
        cut = bool(previous) and scene_cut(previous[0], frame)
        previous[:] = [frame]
        found = follower.analyze(frame, cut)
        try:
            picked = [found[i] for i in select_faces(found, faces)] if found else []
        except NoFaceError:
            picked = []
        keys = ("landmarks68", "camera", "shape", "expression")
        tracks = tracker.update(
            [{"box": f.box, **{k: getattr(f, k) for k in keys}} for f in picked], cut=cut
        )
        if cut:
            blinks.reset()
        if not picked:
            return cut, [], None
        smooth = [
            replace(f, **{k: np.asarray(s[k], np.float32) for k in ("box", *keys)})
            for f, (_, s) in zip(picked, tracks)
        ]
        # the raw landmarks: a blink lasts a few frames, which the smoothing flattens
        gate = blinks.update([track for track, _ in tracks], [f.landmarks68 for f in picked])
        return cut, smooth, gate

    def swap_frame(frame: np.ndarray, analysed) -> np.ndarray:
        cut, smooth, gate = analysed
        out = frame
        if smooth:
            out, _ = swapper.swap_frame(
                frame, smooth, source, color_match, detail, seam, expression_parts, mirror, gate,
            )  # fmt: skip
        out = steadier(frame, out, cut)
        if not watermark:
            return out
        return embed_watermark(out, inplace=out is not frame)  # the frame is kept for cuts

    if swapper.overlap:
        work = {"fn": swap_frame, "ahead": analyse}
    else:
        work = {"fn": lambda frame: swap_frame(frame, analyse(frame))}
    stats = process_video(
        in_path, out_path, progress=progress, overwrite=overwrite, on_progress=on_progress,
        cancel=cancel, **work,
    )  # fmt: skip
    return replace(stats, notes=tuple(source.notes))
