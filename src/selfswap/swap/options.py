"""The swap options, declared once: `SwapConfig` is what `selfswap swap` / `video` take as
flags (and from `--config FILE` / `--set key=value`), what `selfswap.api.Swapper` takes, and
what the web app shows as controls. Each field's metadata carries its flag, help text and
choices, so the three front ends are built from this one declaration and cannot drift."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from selfswap.errors import SelfswapError

PASTE_CHOICES = ("face", "mask")
OCCLUSION_CHOICES = ("none", "hands", "segmenter", "both")
EXPRESSION_CHOICES = ("none", "mouth", "wide-mouth", "eyes", "both", "mouth-blinks")

MODEL_HELP = "default (shipped), an exported .safetensors file, or a training run folder"
FACES_HELP = "all, indices (0,2; left to right), ref:IMAGE"
COLOR_HELP = "pull the new face's colours towards the replaced face's (0 = off, 1 = full)"
DETAIL_HELP = (
    "lay the source photo's fine detail over faces larger than the model's crop (0 = off, 1 = full)"
)
SEAM_HELP = "bring the new face's colours to the photo's at its edge (0 = off, 1 = full)"
EXPRESSION_HELP = (
    "parts of the new face whose pixels (texture, detail) come from the target photo, so they "
    "keep its expression: mouth-blinks (the mouth as far as the two mouths differ in "
    "opening, with half of the lips' surroundings, and the eyes when they blink or squint: "
    "in a video as far as they leave the face's usual opening, in a photo when they are "
    "nearly closed), mouth (the same without the eyes), wide-mouth (all of the mouth's "
    "surroundings: more of the expression, less of the likeness), eyes, both, none"
)
MIRROR_HELP = (
    "fill the parts of the face the source photo did not see (the far side of a turned head) "
    "with their mirror image across the face (0 = off, 1 = full)"
)
SHAPE_PRIOR_HELP = (
    "estimate the source's 3D face shape as the likeliest for a person whose photos fit "
    "like these (one photo's fit is pulled towards the average face, several photos' less) "
    "rather than the fits' plain average (0 = off, 1 = full)"
)
STEADY_HELP = (
    "video: keep the previous frame's swap where the footage is still, against shimmer "
    "(0 = off, 1 = full)"
)
PASTE_HELP = (
    "face: put back the face regions only (default; crisp edges); mask: all the model "
    "repainted, the source's face outline included (more like the source, softer edges)"
)
KEEP_MOUTH_HELP = "true: keep the target's own inner mouth (teeth, tongue), e.g. for talking videos"
OCCLUSION_HELP = (
    "keep what covers the target face in front of the swap: hands (MediaPipe hands), "
    "segmenter (selfswap's occlusion segmenter), both, or none"
)


class SwapOptionError(SelfswapError, ValueError):
    """An invalid swap option (a `ValueError` too, so config loading reports it as such)."""


def _meta(flag: str, label: str, help: str, **extra: Any) -> dict[str, Any]:
    return {"flag": flag, "label": label, "help": help, **extra}


def parse_faces(spec: str) -> str | list[int]:
    """`faces` text → "all", a list of indices, or "ref:IMAGE" unchanged (the image is read
    by whoever holds the file). Raises `SelfswapError` for anything else."""
    spec = spec.strip()
    if spec == "all" or spec.startswith("ref:"):
        return spec
    try:
        indices = [int(i) for i in spec.split(",")]
    except ValueError:
        indices = []
    if not indices or any(i < 0 for i in indices):
        raise SelfswapError(f"faces must be all, indices like 0,2, or ref:IMAGE, not {spec!r}.")
    return indices


@dataclass(frozen=True)
class SwapConfig:
    """How a swap is done. The model is loaded once per `Swapper`; the other fields may
    differ from call to call."""

    model: str = field(
        default="default", metadata=_meta("--model", "Model", MODEL_HELP, per_model=True)
    )
    faces: str = field(default="all", metadata=_meta("--faces", "Faces to replace", FACES_HELP))
    color_match: float = field(
        default=0.0,
        metadata=_meta("--color-match", "Colour match", COLOR_HELP, range=(0.0, 1.0)),
    )
    paste: str = field(
        default="face",
        metadata=_meta("--paste", "Paste back", PASTE_HELP, choices=PASTE_CHOICES, per_model=True),
    )
    device: str = field(
        default="cpu", metadata=_meta("--device", "Device", "torch device, e.g. cpu or cuda")
    )
    detail: float = field(
        default=1.0,
        metadata=_meta("--detail", "Source detail", DETAIL_HELP, range=(0.0, 1.0)),
    )
    seam: float = field(
        default=1.0,
        metadata=_meta("--seam", "Seamless edge", SEAM_HELP, range=(0.0, 1.0)),
    )
    mirror: float = field(
        default=1.0,
        metadata=_meta("--mirror", "Mirror fill", MIRROR_HELP, range=(0.0, 1.0)),
    )
    shape_prior: float = field(
        default=1.0,
        metadata=_meta("--shape-prior", "Shape prior", SHAPE_PRIOR_HELP, range=(0.0, 1.0)),
    )
    steady: float = field(
        default=1.0,
        metadata=_meta("--steady", "Steady video", STEADY_HELP, range=(0.0, 1.0)),
    )
    expression_parts: str = field(
        default="mouth-blinks",
        metadata=_meta(
            "--expression-parts", "Target's expression", EXPRESSION_HELP,
            choices=EXPRESSION_CHOICES,
        ),
    )  # fmt: skip
    keep_mouth: bool = field(
        default=False, metadata=_meta("--keep-mouth", "Keep the mouth", KEEP_MOUTH_HELP)
    )
    occlusion: str = field(
        default="none",
        metadata=_meta("--occlusion", "Occlusion", OCCLUSION_HELP, choices=OCCLUSION_CHOICES),
    )

    def __post_init__(self) -> None:
        if self.paste not in PASTE_CHOICES:
            raise SwapOptionError(f"paste must be 'face' or 'mask', not {self.paste!r}.")
        if self.occlusion not in OCCLUSION_CHOICES:
            raise SwapOptionError(
                f"occlusion must be one of {', '.join(OCCLUSION_CHOICES)}, not {self.occlusion!r}."
            )
        if self.expression_parts not in EXPRESSION_CHOICES:
            raise SwapOptionError(
                f"expression_parts must be one of {', '.join(EXPRESSION_CHOICES)}, "
                f"not {self.expression_parts!r}."
            )
        for f in dataclasses.fields(self):
            if "range" in f.metadata:
                low, high = f.metadata["range"]
                value = getattr(self, f.name)
                if not low <= float(value) <= high:
                    raise SwapOptionError(
                        f"{f.name} must be from {low:g} to {high:g}, not {value!r}."
                    )
        try:
            parse_faces(self.faces)
        except SelfswapError as exc:
            raise SwapOptionError(str(exc)) from None

    def replace(self, **changes: Any) -> SwapConfig:
        """A copy with some fields changed (checked like a new config)."""
        return dataclasses.replace(self, **changes)

    def model_key(self) -> tuple[str, str, str]:
        """What the loaded model depends on: a `Swapper` with another key must be reloaded."""
        return (self.model, self.paste, self.device)


def swap_fields() -> list[dataclasses.Field]:
    """The fields of `SwapConfig` with their metadata (flag, label, help, choices, range)."""
    return list(dataclasses.fields(SwapConfig))
