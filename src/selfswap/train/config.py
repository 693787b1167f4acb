"""`TrainConfig`: everything a training run needs, as one dataclass tree.

Loaded with `selfswap.config.load_config(TrainConfig, path, overrides)`; YAML files in
`configs/` only list what differs from these defaults. The `ablation` switches are the
readable face of the ablations of DESIGN.md §6: they are applied on top of the `samae` and
`appearance` sections by `TrainConfig.samae_config()` / `appearance_enabled`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from selfswap.config import ConfigError
from selfswap.nets.appearance import AppearanceConfig
from selfswap.nets.discriminator import DiscriminatorConfig
from selfswap.nets.generator import GeneratorConfig
from selfswap.samae.config import SamaeConfig

MODES = ("samae", "seesaw")
PRECISIONS = ("fp32", "bf16")
#: parts of a training step that `precision: bf16` may run under bf16 autocast
BF16_PARTS = ("generator", "discriminator", "identity", "losses")


@dataclass
class DataConfig:
    root: str = ""  # a folder written by `selfswap prepare` (or --data)
    held_out: int = 4  # faces kept out of training for the sample grid and `best`
    num_workers: int = 0  # DataLoader workers (spawned: the renderer is not fork-safe)
    seesaw_same: float = 0.5  # seesaw: share of samples whose source is the target itself
    # with generator.source_texture: share of samples whose texture and identity code come
    # from another photo of the same person (the rest: the target's own photo, jittered)
    cross_photo: float = 0.5


@dataclass
class AblationConfig:
    """SAMAE components; switching one off is an ablation (DESIGN.md §6)."""

    mask: bool = True  # shape-agnostic mask (off: the mask traces the true face region)
    mesh_scaling: bool = True  # random mesh scaling of the mask's mesh
    perforation: bool = True  # perforation confusion
    appearance: bool = True  # appearance code (off: the generator gets identity only)


@dataclass
class LossConfig:
    l1: float = 1.0
    l1_mask_boost: float = 3.0  # extra L1 weight inside the mask (the painted pixels)
    ms_ssim: float = 0.5
    identity: float = 0.5
    identity_fraction: float = 0.25  # share of each batch the identity loss runs on
    gan: float = 0.05
    feature_matching: float = 1.0
    gan_start: int = 0  # step at which the GAN losses switch on
    perceptual: float = 0.0  # needs local VGG weights; not shipped, so off


@dataclass
class OptimConfig:
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    warmup: int = 200  # linear warm-up steps
    schedule: str = "cosine"  # cosine | constant (after warm-up)
    min_lr_ratio: float = 0.1  # cosine floor, fraction of the peak
    grad_clip: float = 1.0  # max global grad norm per network (0 = off)


@dataclass
class CheckpointConfig:
    every: int = 1000
    keep_last: int = 3


@dataclass
class TrainConfig:
    mode: str = "samae"  # samae | seesaw
    size: int = 128
    seed: int = 0
    steps: int = 20000
    batch_size: int = 8  # per process
    ema_decay: float = 0.999
    # fp32 | bf16: bf16 autocast (CPUs with AVX-512 BF16 / AMX, or CUDA) over `bf16_parts`;
    # weights, optimizer state, EMA and checkpoints stay fp32 (benchmarks/results/
    # train_throughput.md)
    precision: str = "fp32"
    # what runs under bf16 autocast: generator (+ appearance encoder), discriminator,
    # identity (the frozen dlib ResNet), losses (MS-SSIM etc.; fp32 unless listed)
    bf16_parts: tuple[str, ...] = ("generator", "discriminator", "identity")
    channels_last: bool = False  # networks and batches in NHWC memory format
    compile: bool = False  # torch.compile the generator side and discriminator (inductor)
    out: str = "runs/samae-128"
    log_every: int = 10
    sample_every: int = 500
    progress: bool = True
    threads: int = 0  # torch intra-op threads (0 = torch's default: one per core)
    data: DataConfig = field(default_factory=DataConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    samae: SamaeConfig = field(default_factory=SamaeConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def validate(self) -> TrainConfig:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        unknown = [p for p in self.bf16_parts if p not in BF16_PARTS]
        if unknown:
            raise ConfigError(f"bf16_parts must be among {BF16_PARTS}, got {unknown}.")
        if self.optim.schedule not in ("cosine", "constant"):
            raise ConfigError("optim.schedule must be cosine or constant.")
        levels = len(self.generator.channels) - 1
        if self.size % (2**levels * self.generator.stem_factor):
            raise ConfigError(
                f"size {self.size} must be divisible by stem_factor * 2^(levels - 1) "
                f"({self.generator.stem_factor} * 2^{levels})."
            )
        if self.steps < 0 or self.batch_size < 1:
            raise ConfigError("steps must be >= 0 and batch_size >= 1.")
        if not 0 <= self.loss.identity_fraction <= 1:
            raise ConfigError("loss.identity_fraction must be in [0, 1].")
        if self.loss.perceptual:
            raise ConfigError(
                "loss.perceptual needs VGG weights, which selfswap does not ship; set it to 0."
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
