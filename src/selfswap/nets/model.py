"""The swap model: the network `selfswap swap` runs and `selfswap train` trains.

`SwapModel` is the SAMAE generator with its appearance encoder, `ModelConfig` the settings it
is built from, and `Guidance` what it is shown of one batch of crops. The model's settings
are the `mode`, `size`, `ablation`, `samae`, `generator` and `appearance` sections of a
training configuration (`TrainConfig` carries them under the same names), which is all that
inference reads from a run's `config.yaml` or an exported file (`selfswap.modelfile`).
Nothing here knows about training: the trainer imports this module, never the other way
round (docs/decisions.md, "The swap model's room").
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from selfswap.config import ConfigError, from_dict
from selfswap.nets.appearance import AppearanceConfig, AppearanceEncoder
from selfswap.nets.frozen import freeze
from selfswap.nets.generator import Generator, GeneratorConfig, compose_guidance
from selfswap.samae.config import SamaeConfig

MODES = ("samae", "seesaw")


@dataclass
class AblationConfig:
    """SAMAE components; switching one off is an ablation (DESIGN.md §6)."""

    mask: bool = True  # shape-agnostic mask (off: the mask traces the true face region)
    mesh_scaling: bool = True  # random mesh scaling of the mask's mesh
    perforation: bool = True  # perforation confusion
    appearance: bool = True  # appearance code (off: the generator gets identity only)


@dataclass
class ModelConfig:
    """What the swap model is built from, and how it is run: `mode` samae (the generator sees
    the target outside the mask) or seesaw (it sees the whole target); crops of `size`
    pixels; the swap mask's settings (`samae_config()`)."""

    mode: str = "samae"  # samae | seesaw
    size: int = 128
    ablation: AblationConfig = field(default_factory=AblationConfig)
    samae: SamaeConfig = field(default_factory=SamaeConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)

    @classmethod
    def of(cls, config: Any) -> ModelConfig:
        """The model's sections of a larger config (a `TrainConfig`), copied."""
        if isinstance(config, cls):
            return copy.deepcopy(config)
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: copy.deepcopy(getattr(config, name)) for name in names})

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "config") -> ModelConfig:
        """The model's sections of a training configuration as a mapping (a run's
        `config.yaml`, an exported file's metadata), validated; the other sections (data,
        losses, optimiser...) are the trainer's and are passed over. `ConfigError` if the
        model's sections are wrong."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the top level must be a mapping.")
        names = {f.name for f in dataclasses.fields(cls)}
        return from_dict(cls, {k: v for k, v in data.items() if k in names}, where).validate()

    def validate(self) -> ModelConfig:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}.")
        levels = len(self.generator.channels) - 1
        if self.size % (2**levels * self.generator.stem_factor):
            raise ConfigError(
                f"size {self.size} must be divisible by stem_factor * 2^(levels - 1) "
                f"({self.generator.stem_factor} * 2^{levels})."
            )
        try:
            self.samae.validate()
        except ValueError as exc:
            raise ConfigError(f"samae: {exc}") from None
        return self

    def samae_config(self) -> SamaeConfig:
        """The masking settings with the ablation switches applied."""
        cfg = copy.deepcopy(self.samae)
        cfg.mask.enabled = cfg.mask.enabled and self.ablation.mask
        cfg.scaling.enabled = cfg.scaling.enabled and self.ablation.mesh_scaling
        cfg.perforation.enabled = cfg.perforation.enabled and self.ablation.perforation
        return cfg

    @property
    def appearance_enabled(self) -> bool:
        return self.ablation.appearance and self.appearance.dim > 0

    def generator_config(self) -> GeneratorConfig:
        cfg = copy.deepcopy(self.generator)
        cfg.size = self.size
        cfg.appearance_dim = self.appearance.dim if self.appearance_enabled else 0
        return cfg


#: `Guidance` fields and their channels; all are `(B, C, R, R)` with one B and R.
GUIDANCE_FIELDS = {
    "image": 3,
    "mask": 1,
    "normals": 3,
    "silhouette": 1,
    "face_region": 1,
    "texture": 3,
    "visibility": 1,
}


@dataclass(frozen=True)
class Guidance:
    """What the swap model is shown of a batch of B crops of R×R pixels:

    - `image (B,3,R,R)` in [0, 1]: the crops (the targets; in training, the faces to rebuild);
    - `mask (B,1,R,R)`: 1 where the model paints;
    - `normals (B,3,R,R)` in [-1, 1] and `silhouette (B,1,R,R)`: the rendered mesh to paint;
    - `face_region (B,1,R,R)`: the face pixels of `image` the appearance code is taken from;
    - `texture (B,3,R,R)` in [0, 1] and `visibility (B,1,R,R)`: the source's pixels on the
      mesh to paint (`selfswap.geometry.texture`), for models with `source_texture`.

    Shapes are checked when it is made (`ValueError` naming the field).
    """

    image: torch.Tensor
    mask: torch.Tensor
    normals: torch.Tensor
    silhouette: torch.Tensor
    face_region: torch.Tensor
    texture: torch.Tensor | None = None
    visibility: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.texture is None) != (self.visibility is None):
            raise ValueError("Guidance: texture and visibility come together (one is None).")
        shape = tuple(self.image.shape)
        if len(shape) != 4:
            raise ValueError(f"Guidance.image: expected (B, 3, R, R), got {shape}.")
        b, _, h, w = shape
        for name, channels in GUIDANCE_FIELDS.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (b, channels, h, w):
                raise ValueError(
                    f"Guidance.{name}: expected {(b, channels, h, w)} (B, {channels}, R, R "
                    f"as the image), got {tuple(value.shape)}."
                )


class SwapModel(nn.Module):
    """Generator + appearance encoder (what one DDP wrapper synchronises in training).

    `forward(guidance, z_id (B,128), masked=True, generator=None) -> raw output (B,3,R,R)` in
    [0, 1], to be composited inside `guidance.mask` (`selfswap.nets.generator.composite`).
    `masked=False` shows the generator the whole image (seesaw); the appearance code is taken
    from `guidance.face_region` of `guidance.image` (augmented in training mode, drawing from
    `generator`). A generator with `source_texture` also takes `guidance.texture` and
    `guidance.visibility`; one without ignores them. Built from a `ModelConfig`, or from any
    config that carries its sections (`TrainConfig`).
    """

    #: Gradient-free calls in eval mode after which the generator runs as a frozen graph
    #: (`selfswap.nets.frozen`: the same outputs to ~1e-6, less Python and faster kernels);
    #: 0: never. Inference sets it (`FaceSwapper`); a change to the weights drops the graph.
    freeze_after: int = 0
    #: What runs the frozen generator: "onnx" (ONNX Runtime on the CPU where it can, else
    #: TorchScript) or "torchscript" (`selfswap.nets.frozen.freeze`).
    frozen_runtime: str = "onnx"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config = ModelConfig.of(config)
        self.generator = Generator(config.generator_config())
        self.appearance = (
            AppearanceEncoder(config.appearance) if config.appearance_enabled else None
        )
        self._calls = 0
        self._frozen: dict[tuple, Callable | None] = {}  # a plain dict: not a submodule
        self._frozen_weights: tuple = ()

    def forward(
        self,
        guidance: Guidance,
        z_id: torch.Tensor,
        masked: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        g = guidance
        textured = self.generator.config.source_texture
        if textured and g.texture is None:
            raise ValueError("this generator takes the source texture: give Guidance a texture")
        z_app = None
        if self.appearance is not None:
            z_app = self.appearance(g.image, g.face_region, generator=generator)
        shown = g.mask if masked else torch.zeros_like(g.mask)
        texture, visibility = (g.texture, g.visibility) if textured else (None, None)
        inputs = compose_guidance(g.image, shown, g.normals, g.silhouette, texture, visibility)
        return self._generator_run(inputs, z_id, z_app)(inputs, z_id, z_app)

    def prepare_frozen(self) -> None:
        """Make the ONNX export that the frozen generator runs from (`frozen_runtime`
        "onnx") now, if it is not kept yet, so that this run uses it too; benchmarks call
        it after loading."""
        if self.frozen_runtime != "onnx":
            return
        config = self.generator.config
        param = next(self.generator.parameters())
        inputs = torch.rand(1, config.guidance_channels, config.size, config.size).to(param)
        z_id = torch.rand(1, config.id_dim).to(param)
        z_app = None
        if self.appearance is not None:
            z_app = torch.rand(1, config.appearance_dim).to(param)
        with torch.no_grad():
            freeze(self.generator, inputs, z_id, z_app, wait=True)

    def _generator_run(
        self, inputs: torch.Tensor, z_id: torch.Tensor, z_app: torch.Tensor | None
    ) -> Callable:
        """The generator, or its frozen graph for inputs like these once `freeze_after`
        gradient-free calls in eval mode have been made."""
        if not self.freeze_after or self.training or torch.is_grad_enabled():
            return self.generator
        # which tensors hold the weights and how often they were changed in place: a graph
        # frozen before a change (a copy, a loaded state, an edit) is not used after it
        weights = tuple(
            (id(t), t._version)
            for t in itertools.chain(self.generator.parameters(), self.generator.buffers())
        )
        if weights != self._frozen_weights:
            self._frozen.clear()
            self._frozen_weights = weights
        key = (
            tuple(inputs.shape[1:]),
            inputs.dtype,
            inputs.device,
            z_app is None,
            self.frozen_runtime,
        )
        if key not in self._frozen:
            self._calls += 1
            if self._calls < self.freeze_after:
                return self.generator
            self._frozen[key] = freeze(self.generator, inputs, z_id, z_app, self.frozen_runtime)
        return self._frozen[key] or self.generator
