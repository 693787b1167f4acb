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

Precision / memory format / compile (issue 14, item 5; results in
`benchmarks/results/train_throughput.md`):

    python benchmarks/bench_train.py --compare fp32 bf16 cl bf16+cl [--threads 1]
        [--rounds 5] [--steps 3]

builds one trainer per setting (same seed, so the same weights), runs them interleaved
on the same batches (`--rounds` rounds of `--steps` steps, the order rotated each round)
and prints ms/step and samples/s (median and best round) with the ratio against fp32 of
the same run. Batch building is timed once and added to every setting (it does not
depend on them). Settings: see `SETTINGS`.

    python benchmarks/bench_train.py --curves 150 --compare fp32 bf16 fp32@seed1
        [--data DIR] [--json out.jsonl]

trains each setting from scratch for N steps (same seed and batches unless `@seedK`),
interleaved step by step, and prints windowed means of every loss and their
differences against the first setting; `fp32@seed1` (another seed) gives the noise
band. `--json` writes one record per setting and step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from selfswap.config import load_config
from selfswap.nets.model import Guidance
from selfswap.train.config import TrainConfig
from selfswap.train.loop import Trainer

REPO = Path(__file__).resolve().parents[1]


def guidance_keys(batch: dict) -> tuple[str, ...]:
    """The batch fields a `Guidance` is made of, in its order (texture models add two)."""
    keys = ("image", "mask", "normals", "silhouette", "face_region")
    return keys + (("texture", "visibility") if "texture" in batch else ())


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


#: named settings for --compare / --curves: config overrides on top of --config / --set
SETTINGS: dict[str, list[str]] = {
    "fp32": ["precision=fp32"],
    "bf16": ["precision=bf16"],  # generator, discriminator, identity net; losses fp32
    "bf16-g": ["precision=bf16", "bf16_parts=[generator]"],
    "bf16-gd": ["precision=bf16", "bf16_parts=[generator,discriminator]"],
    "bf16-all": ["precision=bf16", "bf16_parts=[generator,discriminator,identity,losses]"],
    "cl": ["precision=fp32", "channels_last=true"],
    "bf16+cl": ["precision=bf16", "channels_last=true"],
    "compile": ["precision=fp32", "compile=true"],
    "bf16+compile": ["precision=bf16", "compile=true"],
    "bf16+cl+compile": ["precision=bf16", "channels_last=true", "compile=true"],
}


def setting_overrides(name: str) -> list[str]:
    """`name` or `name@seedK` → config overrides."""
    base, _, seed = name.partition("@seed")
    if base not in SETTINGS:
        raise SystemExit(f"unknown setting {base!r}; known: {', '.join(SETTINGS)}")
    return SETTINGS[base] + ([f"seed={int(seed)}"] if seed else [])


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def compare(args, base: list[str], data: str) -> None:
    """Interleaved A/B of `args.compare` settings on the same batches."""
    trainers = {}
    for name in args.compare:
        cfg = load_config(TrainConfig, args.config, [*base, *setting_overrides(name)])
        trainers[name] = Trainer(cfg.validate(), log=lambda *_: None)
    first = next(iter(trainers.values()))
    b = first.config.batch_size
    loader = iter(first.loader())
    n_batches = max(args.warmup, args.steps)
    t = time.perf_counter()
    batches = [next(loader) for _ in range(n_batches)]
    data_ms = (time.perf_counter() - t) / n_batches * 1000
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"load avg {os.getloadavg()[0]:.2f}; batch {b}; batch building {data_ms:.0f} ms/step "
        "(added to every setting below)"
    )
    first_ms = {}
    for name, trainer in trainers.items():  # warm-up (and compilation)
        for i in range(args.warmup):
            t = time.perf_counter()
            logs = trainer.train_step(batches[i % len(batches)])
            if i == 0:
                first_ms[name] = (time.perf_counter() - t) * 1000
        bad = [k for k, v in logs.items() if not np.isfinite(v)]
        if bad:
            print(f"  {name}: non-finite {bad}")
    times: dict[str, list[float]] = {name: [] for name in trainers}
    names = list(trainers)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            trainer = trainers[name]
            t = time.perf_counter()
            for i in range(args.steps):
                trainer.train_step(batches[i % len(batches)])
            times[name].append((time.perf_counter() - t) / args.steps * 1000)
    ref = statistics.median(times[names[0]])
    ref_best = min(times[names[0]])
    print(
        f"\n{'setting':18s} {'first step':>10s} {'ms/step med':>11s} {'best':>6s} "
        f"{'samples/s':>9s} {'+data':>6s} {'ratio med':>9s} {'best':>6s}"
    )
    for name in names:
        med, best = statistics.median(times[name]), min(times[name])
        print(
            f"{name:18s} {first_ms[name] / 1000:9.1f}s {med:11.0f} {best:6.0f} "
            f"{b * 1000 / med:9.2f} {b * 1000 / (med + data_ms):6.2f} "
            f"{ref / med:9.2f} {ref_best / best:6.2f}"
        )
    print(f"(ratios against {names[0]} of this run; {args.rounds} rounds x {args.steps} steps)")
    print(f"load avg {os.getloadavg()[0]:.2f}")


INFERENCE_SETTINGS = ("fp32", "bf16", "cl", "bf16+cl", "compile", "bf16+compile")


def inference(args, base: list[str], data: str) -> None:
    """Generator side forward (what `swap/` runs) at batch 1 and 8, interleaved settings,
    with the output difference against fp32 in 8-bit levels."""
    import copy

    from selfswap.nets.generator import composite
    from selfswap.swap import bundle

    model, mcfg, _ = bundle.load_generator_side(bundle.resolve(args.model))
    model = model.eval().requires_grad_(False)
    names = [n for n in args.compare if n in INFERENCE_SETTINGS] or ["fp32", "bf16"]
    cfg = load_config(TrainConfig, args.config, [*base, f"size={mcfg.size}", "batch_size=8"])
    trainer = Trainer(cfg.validate(), log=lambda *_: None)
    batch = next(iter(trainer.loader()))
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    models = {"fp32": model, "bf16": model, "cl": nhwc, "bf16+cl": nhwc}
    compiled = {}
    print(
        f"inference: model {args.model} (size {mcfg.size}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, load avg {os.getloadavg()[0]:.2f}"
    )
    for b in args.batches:
        ins = [batch[k][:b] for k in guidance_keys(batch)]
        z = batch["embedding"][:b]

        def run(name, ins=ins, z=z):
            x = ins
            if "cl" in name.split("+"):
                x = [t.contiguous(memory_format=torch.channels_last) for t in ins]
            if "compile" in name:
                net = compiled.setdefault(name, torch.compile(model))
            else:
                net = models[name]
            ctx = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if name.startswith("bf16")
                else contextlib.nullcontext()
            )
            with torch.no_grad(), ctx:
                return composite(net(Guidance(*x), z).float(), ins[0], ins[1])

        first, outs = {}, {}
        for name in names:
            t = time.perf_counter()
            outs[name] = run(name)
            first[name] = time.perf_counter() - t
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t = time.perf_counter()
                for _ in range(args.steps):
                    run(name)
                times[name].append((time.perf_counter() - t) / args.steps * 1000)
        ref, ref_best = statistics.median(times[names[0]]), min(times[names[0]])
        print(
            f"\nbatch {b}: {'setting':14s} {'first call':>10s} {'ms med':>8s} {'best':>7s} "
            f"{'ms/face':>7s} {'ratio med':>9s} {'best':>5s} {'|diff| mean':>11s} {'max':>5s}"
        )
        for name in names:
            med, best = statistics.median(times[name]), min(times[name])
            diff = (outs[name] - outs[names[0]]).abs() * 255
            print(
                f"{'':9s}{name:14s} {first[name]:9.1f}s {med:8.1f} {best:7.1f} {med / b:7.1f} "
                f"{ref / med:9.2f} {ref_best / best:5.2f} {float(diff.mean()):11.3f} "
                f"{float(diff.max()):5.1f}"
            )
    print(f"(8-bit levels against {names[0]}; load avg {os.getloadavg()[0]:.2f})")


LOSS_KEYS = ("l1", "ms_ssim", "id", "d", "d_real", "d_fake", "g_adv", "fm", "g_total")


def curves(args, base: list[str], data: str) -> None:
    """Loss curves of each setting trained from scratch, interleaved step by step."""
    trainers, loaders = {}, {}
    for name in args.compare:
        cfg = load_config(TrainConfig, args.config, [*base, *setting_overrides(name)])
        trainers[name] = Trainer(cfg.validate(), log=lambda *_: None)
        loaders[name] = iter(trainers[name].loader())
    history: dict[str, list[dict]] = {name: [] for name in trainers}
    out = open(args.json, "w") if args.json else None  # noqa: SIM115
    t0 = time.perf_counter()
    for step in range(1, args.curves + 1):
        for name, trainer in trainers.items():
            logs = trainer.train_step(next(loaders[name]))
            history[name].append(logs)
            if out is not None:
                out.write(json.dumps({"setting": name, "step": step, **logs}) + "\n")
                out.flush()
        if step % 10 == 0:
            print(f"step {step} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if out is not None:
        out.close()
    heldout = {name: trainer.evaluate() for name, trainer in trainers.items()}
    if out is not None:
        with open(args.json, "a") as f:
            for name, value in heldout.items():
                f.write(json.dumps({"setting": name, "heldout_l1": value}) + "\n")
    print_curves(history, args.window, heldout)


def read_curves(paths: list[str]) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """Per-setting step logs and held-out L1 from `--json` files (several runs joined)."""
    history: dict[str, list[dict]] = {}
    heldout: dict[str, float] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            name = record.pop("setting")
            if "heldout_l1" in record:
                heldout[name] = record["heldout_l1"]
            else:
                history.setdefault(name, []).append(record)
    return history, heldout


def print_curves(history: dict[str, list[dict]], window: int, heldout: dict[str, float]) -> None:
    names = list(history)
    steps = min(len(h) for h in history.values())
    for key in LOSS_KEYS:
        if key not in history[names[0]][0]:
            continue
        print(f"\n{key}: mean over steps")
        head = "".join(f"{name:>14s}" for name in names)
        print(f"{'steps':>10s}{head}" + "".join(f"{'d ' + n:>16s}" for n in names[1:]))
        for lo in range(0, steps, window):
            hi = min(lo + window, steps)
            means = [np.mean([h[key] for h in history[n][lo:hi]]) for n in names]
            diffs = "".join(f"{m - means[0]:+16.4f}" for m in means[1:])
            print(f"{lo + 1:>4d}-{hi:<5d}" + "".join(f"{m:14.4f}" for m in means) + diffs)
    if heldout and not any(np.isnan(v) for v in heldout.values()):
        print("\nheld-out masked L1 of the EMA generator at the end: ", end="")
        print(", ".join(f"{n} {v:.4f}" for n, v in heldout.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs/samae-128.yaml"))
    ap.add_argument("--data")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--compare", nargs="+", help=f"settings to compare: {', '.join(SETTINGS)}")
    ap.add_argument("--rounds", type=int, default=5, help="--compare: interleaved rounds")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--curves", type=int, default=0, help="train N steps per setting")
    ap.add_argument("--window", type=int, default=25, help="--curves: steps per mean")
    ap.add_argument("--json", help="--curves: write per-step losses here (JSON lines)")
    ap.add_argument("--report", nargs="+", help="print --curves tables from --json files")
    ap.add_argument("--inference", action="store_true", help="time the generator forward")
    ap.add_argument("--model", default="default", help="--inference: model to load")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="--inference")
    args = ap.parse_args()
    if args.report:
        history, heldout = read_curves(args.report)
        print_curves(history, args.window, heldout)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare or args.curves or args.inference:
        if not args.compare:
            args.compare = ["fp32", "bf16"]
        tmp = tempfile.TemporaryDirectory()
        held = [] if args.curves else ["data.held_out=0"]
        base = [*args.overrides, f"out={tmp.name}/run", "progress=false", *held]
        cfg = load_config(TrainConfig, args.config, base)
        data = args.data or str(prepare_samples(Path(tmp.name), cfg.size))
        base.append(f"data.root={data}")
        print(f"config {args.config} {' '.join(args.overrides)}; data {args.data or 'samples'}")
        (curves if args.curves else inference if args.inference else compare)(args, base, data)
        tmp.cleanup()
        return

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
        shown = Guidance(*(one[k] for k in guidance_keys(one)))
        g_flops = count_flops(lambda: trainer.gside(shown, one["embedding"]))
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
