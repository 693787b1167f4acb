"""Training speed: samples/s of full training steps, ms per part, peak memory, model size.

    python benchmarks/bench_train.py [--config configs/samae-128.yaml] [--data DIR]
        [--steps 8] [--warmup 2] [--set key=value ...]

A full step is what `selfswap train` does: batch building (masks + guidance, in the main
process here), generator forward, discriminator step, reconstruction + identity (frozen
dlib ResNet on `loss.identity_fraction` of the batch) + GAN/feature-matching losses,
generator backward, Adam + EMA. Without `--data`, the public-domain faces (8 variants) are
prepared into a temporary folder at the config's size. Reports params and GFLOPs
(torch.utils.flop_counter; forward per sample, and one whole training step per sample).

On a shared 2-core machine, pause other CPU jobs while measuring (and resume them after):
every OpenMP barrier of a 2-thread torch waits for a time slice when a core is busy.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from selfswap.config import load_config
from selfswap.train.config import TrainConfig
from selfswap.train.loop import Trainer

REPO = Path(__file__).resolve().parents[1]


def prepare_samples(folder: Path, size: int) -> Path:
    from PIL import Image

    from selfswap.data.prepare import make_settings, prepare
    from selfswap.io.images import save_image
    from selfswap.samples import astronaut, grace_hopper

    src = folder / "src"
    for name, img in (("collins", astronaut()), ("hopper", grace_hopper())):
        h, w = img.shape[:2]
        shifted = np.pad(img, ((30, 0), (40, 0), (0, 0)), mode="edge")[:h, :w]
        zoomed = np.asarray(
            Image.fromarray(img[h // 10 :, w // 12 :]).resize((w * 3 // 4, h * 3 // 4))
        )
        for i, v in enumerate((img, img[:, ::-1], shifted, zoomed)):
            save_image(src / name / f"{i}.png", np.ascontiguousarray(v))
    out = folder / "prepared"
    settings = make_settings(size, identity_from="folder")
    prepare(src, out, settings, identity_from="folder", progress=False, log=lambda _: None)
    return out


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs/samae-128.yaml"))
    ap.add_argument("--data")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    overrides = [*args.overrides, f"out={tmp.name}/run", "progress=false", "data.held_out=0"]
    cfg = load_config(TrainConfig, args.config, overrides)
    data = args.data or str(prepare_samples(Path(tmp.name), cfg.size))
    cfg = load_config(TrainConfig, args.config, [*overrides, f"data.root={data}"]).validate()
    trainer = Trainer(cfg, log=lambda *_: None)
    b = cfg.batch_size
    print(f"config {args.config} {' '.join(args.overrides)}")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"device {trainer.device}, load avg {os.getloadavg()[0]:.2f}"
    )

    g_params = sum(p.numel() for p in trainer.gside.generator.parameters())
    a_params = (
        sum(p.numel() for p in trainer.gside.appearance.parameters())
        if (trainer.gside.appearance is not None)
        else 0
    )
    d_params = sum(p.numel() for p in trainer.disc.parameters())
    print(
        f"params: generator {g_params / 1e6:.2f} M, appearance {a_params / 1e6:.3f} M, "
        f"discriminator {d_params / 1e6:.2f} M"
    )

    loader = iter(trainer.loader())
    batch = next(loader)
    dev = trainer.device
    one = {k: v[:1].to(dev) for k, v in batch.items()}
    with torch.no_grad():
        g_flops = count_flops(
            lambda: trainer.gside(
                one["image"],
                one["mask"],
                one["normals"],
                one["silhouette"],
                one["face_region"],
                one["embedding"],
            )
        )
    step_flops = count_flops(lambda: trainer.train_step(batch)) / b
    print(
        f"GFLOPs: generator forward {g_flops / 1e9:.2f} per sample; "
        f"full training step {step_flops / 1e9:.2f} per sample"
    )

    data_s = 0.0
    for _ in range(args.warmup):
        trainer.train_step(next(loader))
    trainer.timings = {}
    start = time.perf_counter()
    for _ in range(args.steps):
        t = time.perf_counter()
        batch = next(loader)
        data_s += time.perf_counter() - t
        trainer.train_step(batch)
    total = time.perf_counter() - start
    n = args.steps
    print(
        f"\nfull step, batch {b}: {total / n * 1000:.0f} ms/step, "
        f"{n * b / total:.2f} samples/s (batch building included)"
    )
    print(f"  {'data (masks, guidance)':24s} {data_s / n * 1000:8.1f} ms")
    for name, seconds in trainer.timings.items():
        print(f"  {name:24s} {seconds / n * 1000:8.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MiB")
    if dev.type == "cuda":
        print(
            f"peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB "
            f"({torch.cuda.get_device_name(dev)})"
        )
    tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
