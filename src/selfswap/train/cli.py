"""`selfswap train`: wires the command line to `selfswap.train.loop.train`."""

from __future__ import annotations

import argparse

from selfswap.config import add_config_arguments


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train the SAMAE generator (or the seesaw baseline); works under torchrun",
        description="Train on a folder written by `selfswap prepare`. Run under "
        "`torchrun --nproc-per-node N -m selfswap.cli train ...` for several processes.",
    )
    add_config_arguments(
        p, "YAML/JSON training config, e.g. configs/samae-128.yaml", "--set steps=100"
    )
    p.add_argument("--data", help="prepared data folder (sets data.root)")
    p.add_argument("--out", help="run folder: checkpoints, samples, log.jsonl (sets out)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument(
        "--init",
        metavar="MODEL",
        help="start from an exported model file when the run has no checkpoint (sets init)",
    )
    p.add_argument("--stop-at", type=int, help="stop at this step (the schedule keeps `steps`)")
    p.set_defaults(func=cmd_train)
    return p


def load_train_config(args: argparse.Namespace):
    from selfswap.config import load_config
    from selfswap.train.config import TrainConfig

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.out:
        overrides.append(f"out={args.out}")
    if args.init:
        overrides.append(f"init={args.init}")
    return load_config(TrainConfig, args.config, overrides).validate()


def cmd_train(args: argparse.Namespace) -> int:
    from selfswap.train.loop import train

    trainer = train(load_train_config(args), resume=args.resume, stop_at=args.stop_at)
    if trainer.ctx.main:
        verb = "stopped" if trainer.interrupted else "finished"
        print(f"{verb} at step {trainer.step}; run folder {trainer.config.out}")
        if trainer.interrupted:
            print("continue with the same command and --resume")
    return 130 if trainer.interrupted else 0
