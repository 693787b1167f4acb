"""The trainer: SAMAE (or seesaw) training of the generator, appearance encoder and
discriminator, in one process or under `torchrun` (DistributedDataParallel).

One step: the generator paints the batch once; the discriminator takes a hinge step on real
faces vs the detached composites; then the generator side takes one step on
L1 + MS-SSIM reconstruction, the identity losses (`losses.IdentityLoss`: frozen PyTorch
dlib ResNet, and optionally FaceNet and both networks' feature maps, on crops of the
composite, on `loss.identity_fraction` of the batch), and the hinge GAN + feature-matching
losses through the just-updated discriminator. Every random draw is a function of
`(seed, step, rank)` or `(seed, epoch, index)`, so resuming from a checkpoint continues
exactly (see `selfswap.train.batches`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from selfswap.config import save_config, to_dict
from selfswap.data.dataset import FaceDataset
from selfswap.errors import SelfswapError
from selfswap.nets.discriminator import MultiScaleDiscriminator
from selfswap.nets.generator import composite
from selfswap.nets.model import Guidance, SwapModel
from selfswap.train import checkpoint as ckpt
from selfswap.train import losses
from selfswap.train.batches import MaskedFaces, ResumableSampler, geometry_of, renderer_for
from selfswap.train.config import TrainConfig

#: The swap model under its old name (it lives in `selfswap.nets.model`, where inference
#: takes it from; the trainer builds it from `TrainConfig.model_config()`).
GeneratorSide = SwapModel


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Context:
    """Join the process group that `torchrun` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        here = True
    return Context(rank, world, local, device, here)


def cpu_has_native_bf16() -> bool | None:
    """Whether the CPU computes bf16 natively (`avx512_bf16` or `amx_bf16` in
    /proc/cpuinfo); None where that cannot be told (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    words = set(flags.split())
    return "avx512_bf16" in words or "amx_bf16" in words


def resolve_precision(precision: str, device: torch.device) -> str:
    """`precision` ("fp32", "bf16" or "auto") as it runs on `device`: "auto" is bf16 where the
    hardware computes it natively (a CUDA GPU that supports it, a CPU with AVX-512 BF16 or
    AMX) and fp32 elsewhere; the others are kept."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def _step_generator(seed: int, step: int, rank: int, salt: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, step, rank, salt]).generate_state(1)[0]))
    return g


def lr_lambda(config: TrainConfig):
    opt = config.optim

    def factor(step: int) -> float:
        if opt.warmup and step < opt.warmup:
            return (step + 1) / opt.warmup
        if opt.schedule == "constant":
            return 1.0
        span = max(config.steps - opt.warmup, 1)
        t = min(max(step - opt.warmup, 0) / span, 1.0)
        return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def exported_step(info: dict) -> int:
    """The training step an exported model file was written at (its `checkpoint` info,
    `step-00003000`), or 0."""
    return ckpt.checkpoint_step(str(info.get("checkpoint", ""))) or 0


def split_faces(identity: np.ndarray, held_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train, held_out)` row indices: a seeded choice of `held_out` rows (at most n-1),
    spread over as many identities as possible so the previews show cross-identity swaps."""
    n = len(identity)
    held_out = max(0, min(held_out, n - 1))
    order = np.random.default_rng([seed, 104729]).permutation(n)
    picked: list[int] = []
    seen: set[int] = set()
    for row in order:  # first one face per identity, then any
        if len(picked) < held_out and int(identity[row]) not in seen:
            picked.append(int(row))
            seen.add(int(identity[row]))
    for row in order:
        if len(picked) < held_out and int(row) not in picked:
            picked.append(int(row))
    held = np.sort(np.array(picked, np.int64))
    return np.setdiff1d(np.arange(n), held), held


def split_rows(
    faces: FaceDataset, held_out: int, seed: int, source_only: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(targets, held_out, source_only)` row indices: faces of the `source_only` sets are
    kept apart (cross-photo sources only); the rest are split by `split_faces`."""
    sets = np.char.partition(faces.sources, "/")[:, 0]
    missing = [name for name in source_only if not (sets == name).any()]
    if missing:
        raise SelfswapError(
            f"data.source_only: {faces.root} holds no faces of {', '.join(missing)} "
            "(name merged sets by their folder names)."
        )
    only = np.isin(sets, list(source_only))
    if source_only and only.all():
        raise SelfswapError(
            f"data.source_only ({', '.join(source_only)}) leaves no faces to train on."
        )
    rows = np.flatnonzero(~only)
    train, held = split_faces(faces.identity[rows], held_out, seed)
    return rows[train], rows[held], np.flatnonzero(only)


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def preview_batch(faces: FaceDataset, rows: np.ndarray, config: TrainConfig) -> dict:
    """Fixed faces for samples and `best`: deterministic self-reconstruction masks (no
    scaling, no perforation) and a swap with the next face's shape and identity."""
    from selfswap.samae.masks import MaskBuilder

    samae = config.samae_config()
    samae.scaling.enabled = False
    samae.perforation.enabled = False
    builder = MaskBuilder(renderer_for(faces.size), samae)
    items = [faces[int(i)] for i in rows]
    batch = _collate(items)
    sources = swap_sources(batch["identity"].numpy())
    own, swap = [], []
    for item, source in zip(items, sources):
        own.append(builder.training(geometry_of(item), 0))
        swap.append(builder.swap(geometry_of(item), items[source]["shape"].numpy()[None]))

    def stack(parts, name):
        return torch.from_numpy(np.concatenate([getattr(p, name) for p in parts]))

    batch["normals"], batch["silhouette"] = stack(own, "normals"), stack(own, "silhouette")
    batch["face_region"], batch["mask"] = stack(own, "face_region"), stack(own, "mask")
    batch["swap_normals"] = stack(swap, "normals")
    batch["swap_silhouette"] = stack(swap, "silhouette")
    batch["swap_mask"] = stack(swap, "mask")
    batch["swap_source"] = torch.as_tensor(sources)
    batch["swap_embedding"] = batch["embedding"][batch["swap_source"]]
    if config.generator.source_texture:
        from selfswap.geometry.mesh import Geometry
        from selfswap.geometry.texture import render_source_texture

        renderer = renderer_for(faces.size)
        mine = Geometry(*(batch[k].numpy() for k in ("shape", "expression", "camera")))
        theirs = Geometry(*(batch[k].numpy()[sources] for k in ("shape", "expression", "camera")))
        painted = Geometry(theirs.shape, mine.expression, mine.camera)
        own_tex = render_source_texture(renderer, batch["image"], mine, mine, as_tensor=True)
        swap_tex = render_source_texture(
            renderer,
            batch["image"][sources],
            theirs,
            painted,
            mirror=config.data.texture_mirror,
            as_tensor=True,
        )
        batch["texture"], batch["visibility"] = own_tex
        batch["swap_texture"], batch["swap_visibility"] = swap_tex
    return batch


def swap_sources(identity: np.ndarray) -> np.ndarray:
    """For each preview face, the next face of a *different* identity (cross-identity
    swaps), or simply the next face when all share one identity."""
    n = len(identity)
    out = np.empty(n, np.int64)
    for j in range(n):
        candidates = [(j + k) % n for k in range(1, n)]
        other = [c for c in candidates if identity[c] != identity[j] or identity[j] < 0]
        out[j] = (other or candidates or [j])[0]
    return out


class Trainer:
    """Builds everything from a `TrainConfig` and runs `fit()`."""

    def __init__(self, config: TrainConfig, log=print) -> None:
        self.config = config.validate()
        self.ctx = setup_distributed()
        self.log = log if self.ctx.main else (lambda *_: None)
        self.out = Path(config.out)
        self.device = self.ctx.device
        torch.manual_seed(config.seed)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        if not config.data.root:
            raise SelfswapError("no training data: set data.root (or pass --data DIR).")
        self.precision = resolve_precision(config.precision, self.device)
        cpu_bf16 = config.precision == "bf16" and self.device.type == "cpu"
        if cpu_bf16 and cpu_has_native_bf16() is False:
            self.log(
                "warning: precision bf16 on a CPU without AVX-512 BF16 / AMX: bf16 is "
                "emulated and slower than fp32 here; consider --set precision=auto or fp32."
            )
        elif config.precision == "auto":
            self.log(f"precision auto: {self.precision} on this {self.device.type}")
        self.faces = FaceDataset(config.data.root, size=config.size)
        self.train_rows, self.held_rows, self.source_rows = split_rows(
            self.faces, config.data.held_out, config.seed, config.data.source_only
        )
        samae = config.samae_config()
        if config.mode == "seesaw":  # the mask only places the composite: no tricks
            samae.scaling.enabled = False
            samae.perforation.enabled = False
        self.dataset = MaskedFaces(
            self.faces,
            samae,
            config.seed,
            config.mode,
            config.data.seesaw_same,
            self.train_rows,
            source_texture=config.generator.source_texture,
            cross_photo=config.data.cross_photo,
            texture_mirror=config.data.texture_mirror,
            source_degrade=config.data.source_degrade,
            cross_identity=config.data.cross_identity,
            cross_identity_other_photo=config.data.cross_identity_other_photo,
            sources=np.concatenate([self.train_rows, self.source_rows]),
        )
        dev = self.device
        self.gside = SwapModel(config.model_config()).to(dev)
        self.disc = MultiScaleDiscriminator(config.discriminator).to(dev)
        self.ema = copy.deepcopy(self.gside).eval().requires_grad_(False)
        lw = config.loss
        #: the identity terms and their frozen networks (None when all their weights are 0)
        self.id_loss: losses.IdentityLoss | None = None
        if lw.identity > 0 or lw.id_facenet > 0 or lw.id_feature_match > 0:
            self.id_loss = losses.IdentityLoss(
                dlib=lw.identity,
                facenet=lw.id_facenet,
                feature_match=lw.id_feature_match,
                dlib_chips_fp32=lw.dlib_chips_fp32,
                device=dev,
                channels_last=config.channels_last,
                compile=config.compile,
            )
        self.idnet = self.id_loss.dlib if self.id_loss is not None else None
        self._facenet_cache: dict[int, torch.Tensor] = {}  # table row -> FaceNet embedding
        self._row_of_code: dict[bytes, int] | None = None
        opt = config.optim
        self.opt_g = torch.optim.Adam(
            self.gside.parameters(), lr=opt.lr_g, betas=opt.betas, weight_decay=opt.weight_decay
        )
        self.opt_d = torch.optim.Adam(
            self.disc.parameters(), lr=opt.lr_d, betas=opt.betas, weight_decay=opt.weight_decay
        )
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, lr_lambda(config))
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lr_lambda(config))
        if config.channels_last:  # parameters stay fp32; only their layout changes
            for module in (self.gside, self.ema, self.disc):  # (id_loss sets its own)
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        self.g_model: nn.Module = self.gside
        self.d_model: nn.Module = self.disc
        if self.ctx.world > 1:
            ids = [self.ctx.local_rank] if dev.type == "cuda" else None
            self.g_model = nn.parallel.DistributedDataParallel(self.gside, device_ids=ids)
            self.d_model = nn.parallel.DistributedDataParallel(self.disc, device_ids=ids)
        #: the discriminator as the generator's losses call it (no DDP gradient sync there)
        self.d_fwd: nn.Module = self.disc
        if config.compile:  # compiled on first use; weights and state dicts are unchanged
            self.g_model = torch.compile(self.g_model)
            self.d_model = torch.compile(self.d_model)
            self.d_fwd = torch.compile(self.disc)
        self.step = 0
        self.best = math.inf
        self.preview = None
        #: set to a dict to accumulate seconds per part of `train_step` (benchmarks)
        self.timings: dict[str, float] | None = None
        self.interrupted = False  # set when a signal stopped `fit`
        self._last_mark = 0.0

    # -- state -------------------------------------------------------------------------------

    def modules(self) -> dict[str, nn.Module]:
        return {"gside": self.gside, "ema": self.ema, "disc": self.disc}

    def state(self) -> dict:
        return {
            "step": self.step,
            "data_position": self.step,  # batches consumed per rank
            "best": self.best,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "world": self.ctx.world,
        }

    def save(self) -> Path | None:
        if not self.ctx.main:
            return None
        folder = self.out / "checkpoints"
        score = self.evaluate()  # before the state is written: `best` must be in it
        improved = score < self.best
        if improved:
            self.best = score
        meta = {
            "config": to_dict(self.config),
            "mode": self.config.mode,
            "heldout_l1": None if math.isnan(score) else score,
        }
        path = ckpt.save_checkpoint(
            folder, self.step, ckpt.flat_weights(self.modules()), self.state(), meta
        )
        ckpt.prune(folder, self.config.checkpoint.keep_last)
        if improved:
            ckpt.copy_as(path, self.out / "best")
        return path

    def load(self, path: Path) -> None:
        weights, state, _ = ckpt.load_checkpoint(path)
        for name, module in self.modules().items():
            module.load_state_dict(ckpt.split_weights(weights, name))
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.best = float(state["best"])
        if int(state.get("world", 1)) != self.ctx.world:
            self.log(
                f"warning: {path} was written by {state['world']} process(es), this run has "
                f"{self.ctx.world}: training continues, but not as the same data order."
            )
        self.log(f"resumed from {path} at step {self.step}")

    def start_from(self, model_file: str | Path) -> None:
        """Begin from the weights of an exported model file: its generator and appearance
        encoder go into the trained networks and their EMA, and the schedule continues
        at the step the file was exported at (its `checkpoint` info). The optimizers and the
        discriminator start afresh: what a run can continue from when only a model file
        outlived its checkpoints."""
        from selfswap.modelfile import exported

        path = Path(model_file)
        model, _, info = exported.load(path)
        try:
            for module in (self.gside, self.ema):
                # a full-resolution head this configuration adds starts as no change
                missing, unexpected = module.load_state_dict(model.state_dict(), strict=False)
                if unexpected or any(not k.startswith("generator.head.") for k in missing):
                    raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
        except RuntimeError:
            raise SelfswapError(
                f"{path} is a different model from the one this configuration trains "
                "(generator, appearance or size settings differ); start from a file "
                "exported with the same model settings."
            ) from None
        self.step = exported_step(info)
        for sched in (self.sched_g, self.sched_d):
            sched.last_epoch = self.step
            lrs = [base * f(self.step) for base, f in zip(sched.base_lrs, sched.lr_lambdas)]
            for group, lr in zip(sched.optimizer.param_groups, lrs):
                group["lr"] = lr
            sched._last_lr = lrs
        self.log(f"started from {path} at step {self.step}")

    def resume(self) -> bool:
        path = ckpt.latest_valid(self.out / "checkpoints", log=self.log)
        if path is None:
            self.log(f"no valid checkpoint in {self.out / 'checkpoints'}; starting afresh")
            return False
        self.load(path)
        return True

    # -- one step ----------------------------------------------------------------------------

    def _autocast(self, part: str):
        """bf16 autocast for `part` (one of `BF16_PARTS`) when the run's precision (the
        config's, "auto" resolved for this device) is bf16 and the config lists the part."""
        if self.precision == "bf16" and part in self.config.bf16_parts:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _mark(self, name: str | None = None) -> None:
        if self.timings is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if name is not None:
            self.timings[name] = self.timings.get(name, 0.0) + now - self._last_mark
        self._last_mark = now

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg, lw = self.config, self.config.loss
        self._mark()
        dev = self.device
        b = {k: self._layout(v.to(dev, non_blocking=True)) for k, v in batch.items()}
        image, mask = b["image"], b["mask"]
        seesaw = cfg.mode == "seesaw"
        textured = cfg.generator.source_texture
        z_id = b["source_embedding"] if seesaw or textured else b["embedding"]
        extra = {"texture": b["texture"], "visibility": b["visibility"]} if textured else {}
        gen = _step_generator(cfg.seed, self.step, self.ctx.rank, 1)
        logs: dict[str, float] = {}
        use_gan = lw.gan > 0 and self.step >= lw.gan_start
        self.gside.train()
        with self._autocast("generator"):
            guidance = Guidance(
                image, mask, b["normals"], b["silhouette"], b["face_region"], **extra
            )
            raw = self.g_model(guidance, z_id, masked=not seesaw, generator=gen).float()
        fake = composite(raw, image, mask)
        self._mark("g_forward")

        real_features = None
        if use_gan:  # discriminator step on the detached composite
            self.disc.requires_grad_(True)
            with self._autocast("discriminator"):
                outs = self.d_model(torch.cat([image, fake.detach()]), torch.cat([mask, mask]))
            n = image.shape[0]
            real_logits = [o[0][:n].float() for o in outs]
            fake_logits = [o[0][n:].float() for o in outs]
            real_features = [[f[:n].detach().float() for f in o[1]] for o in outs]
            with self._autocast("losses"):
                loss_d = losses.hinge_discriminator_loss(real_logits, fake_logits)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.optim.grad_clip)
            self.opt_d.step()
            logs["d"] = float(loss_d.detach())
            logs["d_real"] = float(sum(r.detach().mean() for r in real_logits) / len(real_logits))
            logs["d_fake"] = float(sum(f.detach().mean() for f in fake_logits) / len(fake_logits))
        with warnings.catch_warnings():  # D skipped before gan_start: keep the schedule
            warnings.simplefilter("ignore", UserWarning)
            self.sched_d.step()
        self._mark("d_step")

        # generator step
        total = torch.zeros((), device=dev)
        if seesaw:
            keep = b["same"] > 0.5
        elif "cross" in b:  # swap samples have no ground truth
            keep = b["cross"] < 0.5
        else:
            keep = torch.ones(image.shape[0], dtype=torch.bool, device=dev)
        if keep.any():
            with self._autocast("losses"):
                weight = 1 + lw.l1_mask_boost * mask
                l1 = ((raw - image).abs() * weight).mean(dim=(1, 2, 3))
                l1 = (l1 / weight.mean(dim=(1, 2, 3)))[keep].mean()
                total = total + lw.l1 * l1
                logs["l1"] = float(l1.detach())
                if lw.ms_ssim:
                    structural = 1 - losses.ms_ssim(fake[keep], image[keep])
                    total = total + lw.ms_ssim * structural
                    logs["ms_ssim"] = float(structural.detach())
                if lw.outline:
                    width = round(lw.outline_width * image.shape[-1])
                    band = losses.outline_band(b["face_region"], mask, width)
                    edges = losses.band_gradient_loss(raw[keep], image[keep], band[keep])
                    total = total + lw.outline * edges
                    logs["outline"] = float(edges.detach())
        self._mark("recon_loss")
        if self.id_loss is not None:
            rows = self._identity_rows(keep, seesaw, gen)
            fm_rows = self._feature_rows(keep, seesaw, gen, rows) if lw.id_feature_match else None
            if len(rows) or (fm_rows is not None and len(fm_rows)):
                loss_id, id_logs = self.id_loss(
                    fake,
                    b["landmarks5"],
                    rows,
                    dlib_target=z_id[rows],
                    facenet_target=self._facenet_targets(z_id[rows]) if lw.id_facenet else None,
                    real=image,
                    mask=mask,
                    fm_rows=fm_rows,
                    autocast=lambda: self._autocast("identity"),
                    shrink=self._identity_shrink(fake.shape[0]) if lw.id_shrink else None,
                )
                total = total + loss_id
                logs.update(id_logs)
            self._mark("id_forward")
        if use_gan:
            self.disc.requires_grad_(False)
            with self._autocast("discriminator"):
                outs = self.d_fwd(fake, mask)  # unwrapped: no gradient sync for D here
            with self._autocast("losses"):
                loss_adv = losses.hinge_generator_loss([o[0].float() for o in outs])
                total = total + lw.gan * loss_adv
                logs["g_adv"] = float(loss_adv.detach())
                if keep.any() and lw.feature_matching:  # a reconstruction term: same rows
                    loss_fm = losses.feature_matching_loss(
                        [[f[keep] for f in scale] for scale in real_features],
                        [[f[keep].float() for f in o[1]] for o in outs],
                    )
                    total = total + lw.feature_matching * loss_fm
                    logs["fm"] = float(loss_fm.detach())
            self.disc.requires_grad_(True)
            self._mark("g_adv_forward")
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self._mark("g_backward")
        if cfg.optim.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.gside.parameters(), cfg.optim.grad_clip)
            logs["g_norm"] = float(norm)
        self.opt_g.step()
        self.sched_g.step()
        self._update_ema()
        self._mark("g_update_ema")
        logs["g_total"] = float(total.detach())
        self.step += 1
        return logs

    def _identity_rows(self, keep: torch.Tensor, seesaw: bool, gen: torch.Generator):
        """Rows of the identity terms: in seesaw mode those whose source is another face;
        else an `identity_fraction` share of the batch, and every swap sample."""
        n = keep.shape[0]
        swaps = torch.nonzero(~keep.cpu()).flatten()
        if seesaw:
            return swaps
        k = math.ceil(self.config.loss.identity_fraction * n)
        drawn = torch.randperm(n, generator=gen)[:k]
        return torch.unique(torch.cat([drawn, swaps]))  # sorted

    def _identity_shrink(self, n: int) -> torch.Tensor:
        """Per-row resolution scales `(n,)` for the identity networks' view (`loss.id_shrink`),
        1 for rows left whole; from their own generator, so that every other draw of the step
        is the same as without the option."""
        lw = self.config.loss
        gen = _step_generator(self.config.seed, self.step, self.ctx.rank, 2)
        low, high = lw.id_shrink_scale
        scales = low + (high - low) * torch.rand(n, generator=gen)
        return torch.where(torch.rand(n, generator=gen) < lw.id_shrink, scales, 1.0)

    def _feature_rows(
        self, keep: torch.Tensor, seesaw: bool, gen: torch.Generator, rows: torch.Tensor
    ) -> torch.Tensor:
        """Rows of identity-feature matching, which compares with the ground truth: the
        identity rows that have one (not the swap samples), or in seesaw mode an
        `identity_fraction` share of the same-source rows."""
        if not seesaw:
            return rows[keep.cpu()[rows]]
        same = torch.nonzero(keep.cpu()).flatten()
        k = math.ceil(self.config.loss.identity_fraction * len(same))
        return same[torch.randperm(len(same), generator=gen)[:k]].sort().values

    def _facenet_targets(self, codes: torch.Tensor) -> torch.Tensor:
        """FaceNet embeddings `(K, 512)` of the photos whose identity codes (dlib
        descriptors, `(K, 128)`) are `codes`: each code is a table row's own (the target
        photo, or the source photo the dataset drew), so the row is found by the code's
        bytes. Embedded from the row's canonical crop once, then cached."""
        if not len(codes):
            return torch.zeros(0, 512, device=self.device)
        if self._row_of_code is None:
            table = self.faces.arrays["embedding"]
            self._row_of_code = {table[i].tobytes(): i for i in range(len(table) - 1, -1, -1)}
        found = [self._row_of_code.get(c.tobytes()) for c in codes.detach().cpu().numpy()]
        if None in found:
            raise SelfswapError("an identity code matches no row of the training table")
        rows = [int(r) for r in found]
        todo = sorted({r for r in rows if r not in self._facenet_cache})
        if todo:
            crops = np.stack([self.faces.load_crop(r) for r in todo])
            images = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float() / 255
            marks = torch.from_numpy(self.faces.arrays["landmarks5"][todo]).to(self.device)
            embs = self.id_loss.reference(images, marks, lambda: self._autocast("identity"))
            self._facenet_cache.update(zip(todo, embs.cpu()))
        return torch.stack([self._facenet_cache[r] for r in rows]).to(self.device)

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.gside.parameters()):
            e.lerp_(p, 1 - decay)
        for e, p in zip(self.ema.buffers(), self.gside.buffers()):
            e.copy_(p)

    # -- previews ----------------------------------------------------------------------------

    def _preview(self) -> dict | None:
        if self.preview is None and len(self.held_rows):
            self.preview = preview_batch(self.faces, self.held_rows, self.config)
        return self.preview

    @torch.no_grad()
    def render_preview(self, model: nn.Module) -> dict[str, torch.Tensor] | None:
        p = self._preview()
        if p is None:
            return None
        dev = self.device
        t = {k: v.to(dev) for k, v in p.items()}
        seesaw = self.config.mode == "seesaw"
        model.eval()

        def guidance(prefix: str) -> Guidance:  # the self-reconstruction's, or the swap's
            textured = "texture" in t
            return Guidance(
                t["image"],
                t[f"{prefix}mask"],
                t[f"{prefix}normals"],
                t[f"{prefix}silhouette"],
                t["face_region"],
                texture=t[f"{prefix}texture"] if textured else None,
                visibility=t[f"{prefix}visibility"] if textured else None,
            )

        own = model(guidance(""), t["embedding"], masked=not seesaw).float()
        swap = model(guidance("swap_"), t["swap_embedding"], masked=not seesaw).float()
        swap_mask = t["swap_mask"]
        return {
            "target": t["image"],
            "input": t["image"] * (1 - t["mask"]),
            "normals": (t["normals"] + 1) / 2,
            "self": composite(own, t["image"], t["mask"]),
            "source": t["image"][t["swap_source"]],
            "swap_normals": (t["swap_normals"] + 1) / 2,
            "swap": composite(swap, t["image"], swap_mask),
        }

    def evaluate(self) -> float:
        """Held-out masked L1 of the EMA generator's self-reconstruction (lower is better)."""
        views = self.render_preview(self.ema)
        if views is None:
            return float("nan")
        mask = self.preview["mask"].to(self.device)
        diff = (views["self"] - views["target"]).abs() * mask
        return float(diff.sum() / (3 * mask.sum()).clamp_min(1))

    def write_samples(self) -> Path | None:
        views = self.render_preview(self.ema)
        if views is None or not self.ctx.main:
            return None
        from PIL import Image

        columns = torch.stack(list(views.values()), dim=1)  # (N, V, 3, R, R)
        n, v, _, r, _ = columns.shape
        grid = columns.clamp(0, 1).permute(0, 3, 1, 4, 2).reshape(n * r, v * r, 3)
        path = self.out / "samples" / f"step-{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((grid.cpu().numpy() * 255).round().astype(np.uint8)).save(path)
        return path

    # -- the loop ----------------------------------------------------------------------------

    def loader(self) -> DataLoader:
        cfg = self.config
        sampler = ResumableSampler(
            self.train_rows, cfg.batch_size, cfg.seed, self.ctx.rank, self.ctx.world, self.step
        )
        workers = cfg.data.num_workers
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=_collate,
            multiprocessing_context="spawn" if workers else None,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )

    # -- stopping on SIGINT / SIGTERM at a step boundary ---------------------------------------

    def _catch_signals(self) -> None:
        """First Ctrl-C / SIGTERM: finish the step, write a checkpoint, stop (a second
        one interrupts at once). Only from the main thread (signal handlers live there)."""
        self._signal = False
        self._old_handlers = {}
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if self._signal:  # second time: give up now
                raise KeyboardInterrupt
            self._signal = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signals(self) -> None:
        for sig, old in getattr(self, "_old_handlers", {}).items():
            signal.signal(sig, old)
        self._old_handlers = {}

    def _stop_requested(self) -> bool:
        flag = bool(getattr(self, "_signal", False))
        if self.ctx.world > 1:  # every rank stops at the same step
            t = torch.tensor([int(flag)], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def fit(self, stop_at: int | None = None) -> dict[str, float]:
        """Train to `config.steps` (or stop early at `stop_at`, e.g. to test resuming)."""
        cfg = self.config
        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        if self.ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml")
        logs: dict[str, float] = {}
        if self.step >= end:
            return logs
        from tqdm import tqdm

        bar = tqdm(
            total=end,
            initial=self.step,
            disable=not (cfg.progress and self.ctx.main),
            unit="step",
            dynamic_ncols=True,
        )
        log_file = open(self.out / "log.jsonl", "a") if self.ctx.main else None  # noqa: SIM115
        board = _tensorboard(self.out / "tensorboard") if self.ctx.main else None
        t0, seen = time.perf_counter(), 0
        self._catch_signals()
        try:
            for batch in self.loader():
                logs = self.train_step(batch)
                seen += batch["image"].shape[0] * self.ctx.world
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == end:
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(l1=logs.get("l1", float("nan")), sps=f"{rate:.1f}")
                    if log_file is not None:
                        record = {
                            "step": self.step,
                            "lr_g": self.sched_g.get_last_lr()[0],
                            "samples_per_s": rate,
                            "time": time.time(),
                            **logs,
                        }
                        log_file.write(json.dumps(record) + "\n")
                        log_file.flush()
                    if board is not None:
                        for key, value in logs.items():
                            board.add_scalar(f"train/{key}", value, self.step)
                        board.add_scalar("train/samples_per_s", rate, self.step)
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.ctx.main:
                    self.write_samples()
                stopping = self._stop_requested()
                if stopping or (
                    cfg.checkpoint.every
                    and (self.step % cfg.checkpoint.every == 0 or self.step == end)
                ):
                    self.save()
                if stopping:
                    self.interrupted = True
                    self.log(f"\nstopped by a signal at step {self.step}; checkpoint written")
                    break
                if self.step >= end:
                    break
        finally:
            self._restore_signals()
            bar.close()
            if log_file is not None:
                log_file.close()
            if board is not None:
                board.close()
        if self.ctx.world > 1:
            dist.barrier()
        return logs

    def close(self) -> None:
        if self.ctx.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _tensorboard(folder: Path):
    """A TensorBoard writer when `tensorboard` is installed, else None (JSONL only)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def train(
    config: TrainConfig, resume: bool = False, stop_at: int | None = None, log=print
) -> Trainer:
    """Run a training job; returns the trainer (its networks hold the final weights)."""
    trainer = Trainer(config, log=log)
    try:
        if not (resume and trainer.resume()) and config.init:
            trainer.start_from(config.init)
        trainer.fit(stop_at=stop_at)
    finally:
        trainer.close()
    return trainer
