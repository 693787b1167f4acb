"""`selfswap eval`: the evaluation harness from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from selfswap.errors import SelfswapError


def _model_label(model: str) -> str:
    return "selfswap default" if model == "default" else Path(model).stem


def build_methods(args: argparse.Namespace) -> list:
    from selfswap.eval.methods import ModelMethod, NoSwap, PoissonSwap

    baselines = {"no-swap": NoSwap, "poisson": PoissonSwap}
    chosen = [b for b in args.baselines.split(",") if b and b != "none"]
    unknown = [b for b in chosen if b not in baselines]
    if unknown:
        raise SelfswapError(f"Unknown baseline {unknown[0]!r}; choose from no-swap, poisson, none.")
    methods = [baselines[b]() for b in chosen]
    for model in args.model or []:
        methods.append(ModelMethod(_model_label(model), model))
    for spec in args.method or []:
        label, sep, model = spec.partition("=")
        if not sep or not label or not model:
            raise SelfswapError(f"--method takes LABEL=MODEL, not {spec!r}.")
        model, _, paste = model.partition(":paste=")
        methods.append(ModelMethod(label, model, paste or "face"))
    if not methods:
        raise SelfswapError("Nothing to evaluate: give --model, --method or --baselines.")
    return methods


def cmd_eval(args: argparse.Namespace) -> int:
    from selfswap.eval.harness import (
        evaluate,
        held_out_photos,
        paired_differences,
        read_pairs,
        summarize,
    )
    from selfswap.eval.report import sample_grid, table, write_report

    pairs = read_pairs(args.pairs, args.images, args.limit)
    methods = build_methods(args)
    real = held_out_photos(args.pairs, pairs[0].target.parent.parent, args.real) if pairs else []
    result = evaluate(methods, pairs, args.out, real, recon=args.recon)
    summary = summarize(result)
    if args.reference:
        summary["reference"] = args.reference
        summary["differences"] = paired_differences(result, args.reference)
    if args.video_frames:
        from selfswap.eval.video import video_metrics

        summary["video"] = video_metrics(methods, frames=args.video_frames)
        summary["video_frames"] = args.video_frames
    if not args.no_samples:
        sample_grid(methods, args.out / "samples.png")
    title = args.title or f"Evaluation on {len(pairs)} pairs of {Path(args.pairs).name}"
    report = write_report(summary, args.out, Path(args.pairs).name, args.recon, title)
    print(table(summary))
    print(f"wrote {report}, {args.out / 'metrics.json'}")
    return 0


def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate swap models and baselines on held-out pairs")
    p.add_argument("--model", action="append", help="default, a .safetensors file or a run "
                   "(repeatable)")  # fmt: skip
    p.add_argument("--method", action="append", metavar="LABEL=MODEL",
                   help="a model under a label of your choice (repeatable); append "
                   ":paste=mask to paste back the whole swap mask")  # fmt: skip
    p.add_argument("--baselines", default="no-swap,poisson",
                   help="comma list of no-swap, poisson, or none (default: both)")  # fmt: skip
    p.add_argument("--pairs", type=Path, required=True, help="source/source_id_ref/target TSV")
    p.add_argument("--images", type=Path, help="folder the pair paths are relative to "
                   "(default: ../lfw beside the TSV's folder)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="report folder (resumable)")
    p.add_argument("--limit", type=int, help="first N pairs only")
    p.add_argument("--recon", type=int, default=100, help="targets for self-reconstruction")
    p.add_argument("--real", type=int, default=500, help="held-out real photos for the FD")
    p.add_argument("--video-frames", type=int, default=75,
                   help="frames of the video-stability clip (0: skip)")  # fmt: skip
    p.add_argument("--reference", metavar="LABEL",
                   help="also report per-pair differences of every method to this one")  # fmt: skip
    p.add_argument("--title", help="report title")
    p.add_argument("--no-samples", action="store_true", help="skip the public-domain grid")
    p.set_defaults(func=cmd_eval)
