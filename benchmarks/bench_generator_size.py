"""Generator forward time at inference for variants of a training config (issue #14 item 2):
a freshly built `SwapModel` of each variant, timed on random guidance (weights do not change
the time), fp32, median of `--repeat` after a warm-up.

    python benchmarks/bench_generator_size.py [--config configs/samae-texture-facenet-128.yaml]
        [--threads 2] [--repeat 7] [--variant KEY=VALUE ...]

Rows: the config as it is, then each `--variant` (default: `generator.stem_factor=1`, a
full-resolution top level, and `size=192`). Baseline for the ratio: the config as it is.
"""

from __future__ import annotations

import argparse
import time

import torch

from selfswap.config import load_config
from selfswap.nets.model import Guidance, SwapModel
from selfswap.train.config import TrainConfig


def per_face_ms(model: SwapModel, size: int, batch: int, repeat: int) -> float:
    def rand(channels: int) -> torch.Tensor:
        return torch.rand(batch, channels, size, size)

    ones = torch.ones(batch, 1, size, size)
    texture = (rand(3), ones) if model.generator.config.source_texture else (None, None)
    guidance = Guidance(rand(3), ones, rand(3) * 2 - 1, ones, ones, *texture)
    code = torch.randn(batch, model.generator.config.id_dim)
    times = []
    with torch.no_grad():
        model(guidance, code)
        for _ in range(repeat):
            start = time.perf_counter()
            model(guidance, code)
            times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2] / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/samae-texture-facenet-128.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--variant", nargs="*", default=["generator.stem_factor=1", "size=192"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.config}, {args.threads} threads, ms per face (median of {args.repeat})")
    print(f"{'variant':28s} {'batch 1':>8s} {'batch 8':>8s} {'ratio':>6s}")
    base = None
    for variant in ["", *args.variant]:
        cfg = load_config(TrainConfig, args.config, [variant] if variant else []).validate()
        model = SwapModel(cfg.model_config()).eval()
        one, eight = (per_face_ms(model, cfg.size, b, args.repeat) for b in (1, 8))
        base = base or one
        print(f"{variant or 'as configured':28s} {one:8.1f} {eight:8.1f} {one / base:6.2f}")


if __name__ == "__main__":
    main()
