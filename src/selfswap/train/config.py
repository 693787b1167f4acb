"""`TrainConfig`: everything a training run needs, as one dataclass tree.

Loaded with `selfswap.config.load_config(TrainConfig, path, overrides)`; YAML files in
`configs/` only list what differs from these defaults. The `mode`, `size`, `ablation`,
`samae`, `generator` and `appearance` sections are the swap model's (`model_config()`, a
`selfswap.nets.model.ModelConfig`: what inference reads back from a run or an exported file).
The `ablation` switches are the readable face of the ablations of DESIGN.md §6: they are
applied on top of the `samae` and `appearance` sections by `samae_config()` /
`appearance_enabled`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from selfswap.config import ConfigError
from selfswap.nets.appearance import AppearanceConfig
from selfswap.nets.discriminator import DiscriminatorConfig
from selfswap.nets.generator import GeneratorConfig
from selfswap.nets.model import AblationConfig, ModelConfig
from selfswap.samae.config import SamaeConfig

PRECISIONS = ("fp32", "bf16", "auto")
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
    # with generator.source_texture: how far what the source photo did not see is painted
    # from its mirror image across the face (`render_source_texture`'s `mirror`), as the
    # swap does by default (`SwapConfig.mirror`); 0 = left to the generator
    texture_mirror: float = 0.0
    # with generator.source_texture: share of cross-photo samples whose other photo is first
    # shrunk to a face of 20-60 % of its size and JPEG-compressed (`degrade_source`), as
    # a small or poor source photo in the wild is; 0 = off (every run before this option)
    source_degrade: float = 0.0
    # with generator.source_texture: share of samples that are true swaps: texture, identity
    # code and face shape from a *different* person, on the target's expression and pose,
    # masked as a swap is (`MaskBuilder.swap`). They have no ground truth, so only the
    # identity and adversarial terms see them; everything else trains on the rest. 0 = off
    cross_identity: float = 0.0
    # swap samples take their identity code (the generator's input and the identity terms'
    # target) from another photo of the partner's person where there is one, as the judge
    # compares a swap with another photo: the photo's own lighting and expression then earn
    # nothing, only the person does
    cross_identity_other_photo: bool = False
    # merged sets (folder names, the first part of each face's `source`) whose faces are
    # only ever the other photo of a person in cross-photo samples, never a target: e.g.
    # tight crops whose canonical crop is mostly padding where SAMAE needs context
    source_only: tuple[str, ...] = ()


@dataclass
class LossConfig:
    l1: float = 1.0
    l1_mask_boost: float = 3.0  # extra L1 weight inside the mask (the painted pixels)
    ms_ssim: float = 0.5
    identity: float = 0.5  # 1 − cos of dlib ResNet descriptors (generated vs source)
    identity_fraction: float = 0.25  # share of each batch the identity losses run on
    # 1 − cos of FaceNet embeddings, generated vs the source photo: a second identity
    # network, so the swap cannot please dlib alone (docs/decisions.md; 0 = off, not loaded)
    id_facenet: float = 0.0
    # relative L1 of dlib ResNet + FaceNet feature maps, generated vs ground truth, inside
    # the mask, on the identity rows (seesaw: on same-source rows); 0 = off
    id_feature_match: float = 0.0
    # cut dlib's chips outside bf16 autocast, on an exact fp32 sampling grid (off: inside it,
    # up to 0.6 px off at 128 px, as every run before this option; docs/decisions.md)
    dlib_chips_fp32: bool = False
    # share of the identity rows whose generated face (and ground truth, for feature
    # matching) the identity networks see shrunk to a random `id_shrink_scale` of its
    # resolution and enlarged back, so that fine detail alone cannot please them; 0 = off
    id_shrink: float = 0.0
    id_shrink_scale: tuple[float, float] = (0.35, 0.75)
    # L1 of pixel differences (edges) on the ring either side of the face region's outline,
    # inside the mask: the band a paste of the whole mask shows (docs/decisions.md); 0 = off
    outline: float = 0.0
    outline_width: float = 0.08  # the ring's half-width, fraction of the crop size
    gan: float = 0.05
    feature_matching: float = 1.0  # discriminator feature matching
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
    # fp32 | bf16 | auto: bf16 autocast (CPUs with AVX-512 BF16 / AMX, or CUDA) over
    # `bf16_parts`; auto: bf16 where the hardware computes it natively, fp32 elsewhere (a CPU
    # without it emulates bf16, 17x slower than fp32 on one); weights, optimizer state, EMA
    # and checkpoints stay fp32 (benchmarks/results/train_throughput.md)
    precision: str = "fp32"
    # what runs under bf16 autocast: generator (+ appearance encoder), discriminator,
    # identity (the frozen dlib ResNet and FaceNet), losses (MS-SSIM etc.; fp32 unless listed)
    bf16_parts: tuple[str, ...] = ("generator", "discriminator", "identity")
    channels_last: bool = False  # networks and batches in NHWC memory format
    compile: bool = False  # torch.compile the generator side and discriminator (inductor)
    out: str = "runs/samae-128"
    # an exported model file (`selfswap export`, e.g. a shipped default) whose generator and
    # appearance encoder start a run that has no checkpoint yet, at the step it was exported
    # at; the optimizers and the discriminator start afresh
    init: str = ""
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
        self.model_config().validate()  # mode, size, samae
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        unknown = [p for p in self.bf16_parts if p not in BF16_PARTS]
        if unknown:
            raise ConfigError(f"bf16_parts must be among {BF16_PARTS}, got {unknown}.")
        if self.optim.schedule not in ("cosine", "constant"):
            raise ConfigError("optim.schedule must be cosine or constant.")
        if self.steps < 0 or self.batch_size < 1:
            raise ConfigError("steps must be >= 0 and batch_size >= 1.")
        if not 0 <= self.loss.identity_fraction <= 1:
            raise ConfigError("loss.identity_fraction must be in [0, 1].")
        if not 0 <= self.data.cross_identity < 1:
            raise ConfigError("data.cross_identity must be in [0, 1).")
        if self.data.cross_identity and not self.generator.source_texture:
            raise ConfigError("data.cross_identity needs generator.source_texture.")
        if self.data.cross_identity and self.mode != "samae":
            raise ConfigError("data.cross_identity is for samae mode (seesaw has its own).")
        if not 0 <= self.loss.id_shrink <= 1:
            raise ConfigError("loss.id_shrink must be in [0, 1].")
        low, high = self.loss.id_shrink_scale
        if not 0 < low <= high <= 1:
            raise ConfigError("loss.id_shrink_scale must be two scales with 0 < low <= high <= 1.")
        for name in ("identity", "id_facenet", "id_feature_match", "outline", "outline_width"):
            if getattr(self.loss, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0.")
        if self.loss.perceptual:
            raise ConfigError(
                "loss.perceptual needs VGG weights, which selfswap does not ship; set it to 0."
            )
        return self

    def model_config(self) -> ModelConfig:
        """The swap model's sections (a copy)."""
        return ModelConfig.of(self)

    def samae_config(self) -> SamaeConfig:
        """The masking settings with the ablation switches applied."""
        return self.model_config().samae_config()

    @property
    def appearance_enabled(self) -> bool:
        return self.model_config().appearance_enabled

    def generator_config(self) -> GeneratorConfig:
        return self.model_config().generator_config()
