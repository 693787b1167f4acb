"""`selfswap eval`: the evaluation harness from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from selfswap.errors import SelfswapError


def _model_options(spec: str) -> tuple[str, dict[str, str]]:
    """`MODEL[:option=value,...]` (options of `SwapConfig`, e.g. `:paste=mask,detail=0`) →
    the model and its options."""
    model, sep, rest = spec.rpartition(":")
    if not sep or "=" not in rest:
        return spec, {}
    options = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise SelfswapError(f"--method options are key=value, not {item!r}.")
        options[key.strip()] = value.strip()
    return model, options


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
        methods.append(ModelMethod(label, *_model_options(model)))
    if not methods:
        raise SelfswapError("Nothing to evaluate: give --model, --method or --baselines.")
    return methods


def cmd_eval(args: argparse.Namespace) -> int:
    from selfswap.eval.harness import (
        evaluate,
        held_out_photos,
        images_folder,
        paired_differences,
        read_pairs,
        summarize,
    )
    from selfswap.eval.report import sample_grid, table, write_report
    from selfswap.eval.sheet import dataset_sheet, public_sheet

    if args.out.exists() and not args.out.is_dir():
        raise SelfswapError(f"--out {args.out} is a file; give a folder for the report.")
    for flag in ("recon", "real", "video_frames", "video_dev_frames", "sheet"):
        if getattr(args, flag) < 0:
            raise SelfswapError(f"--{flag.replace('_', '-')} cannot be negative.")
    pairs = read_pairs(args.pairs, args.images, args.limit, args.source_photos)
    methods = build_methods(args)
    real = held_out_photos(args.pairs, images_folder(args.pairs, args.images), args.real)
    result = evaluate(methods, pairs, args.out, real, recon=args.recon)
    summary = summarize(result)
    if args.reference:
        summary["reference"] = args.reference
        summary["differences"] = paired_differences(result, args.reference)
    if args.video_frames:
        from selfswap.eval.video import video_metrics

        summary["video"] = video_metrics(methods, frames=args.video_frames)
        summary["video_frames"] = args.video_frames
    if args.video_dev:
        summary["video_dev"] = _dev_clips(args, methods, pairs)
        summary["video_dev_frames"] = args.video_dev_frames
    if not args.no_samples:
        sample_grid(methods, args.out / "samples.png")
        public_sheet(methods, args.out / "sheet-public-domain.jpg")
    if args.sheet:
        dataset_sheet(methods, result, args.sheet, args.out / "sheet.jpg")
    if args.source_photos > 1:
        summary["source_photos"] = args.source_photos
    title = args.title or f"Evaluation on {len(pairs)} pairs of {Path(args.pairs).name}" + (
        f", up to {args.source_photos} source photos a pair" if args.source_photos > 1 else ""
    )
    report = write_report(summary, args.out, Path(args.pairs).name, args.recon, title)
    print(table(summary))
    print(f"wrote {report}, {args.out / 'metrics.json'}")
    return 0


def _dev_clips(args: argparse.Namespace, methods: list, pairs: list) -> dict:
    """Video metrics on the real clips of `--video-dev`; the source of clip k is the k-th
    source person of the pairs (the photo swapped in, and its reference photo for the
    judge)."""
    from selfswap.eval.video import dev_clip_metrics, dev_clip_summary
    from selfswap.io.images import load_image

    clips = sorted(Path(args.video_dev).glob("*.mp4"))
    if not clips:
        raise SelfswapError(f"--video-dev {args.video_dev} holds no .mp4 clips.")
    chosen, seen = [], set()
    for pair in pairs:
        if pair.source_person not in seen and len(chosen) < len(clips):
            seen.add(pair.source_person)
            chosen.append((load_image(pair.source), load_image(pair.ref)))
    per_clip = dev_clip_metrics(methods, clips, chosen, frames=args.video_dev_frames)
    return {"clips": per_clip, "summary": dev_clip_summary(per_clip)}


def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate swap models and baselines on held-out pairs")
    p.add_argument("--model", action="append", help="default, a .safetensors file or a run "
                   "(repeatable)")  # fmt: skip
    p.add_argument("--method", action="append", metavar="LABEL=MODEL",
                   help="a model under a label of your choice (repeatable); append "
                   ":key=value,... for swap options (SwapConfig), e.g. "
                   ":paste=mask,detail=0")  # fmt: skip
    p.add_argument("--baselines", default="no-swap,poisson",
                   help="comma list of no-swap, poisson, or none (default: both)")  # fmt: skip
    p.add_argument("--pairs", type=Path, required=True, help="source/source_id_ref/target TSV")
    p.add_argument("--images", type=Path, help="folder the pair paths are relative to "
                   "(default: ../lfw beside the TSV's folder)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="report folder (resumable)")
    p.add_argument("--limit", type=int, help="first N pairs only")
    p.add_argument("--source-photos", type=int, default=1, metavar="K",
                   help="swap from up to K photos of the source person (the pair's source "
                        "and the person's other photos, never its reference or target; needs "
                        "an identity.csv beside the images)")  # fmt: skip
    p.add_argument("--recon", type=int, default=100, help="targets for self-reconstruction")
    p.add_argument("--real", type=int, default=500, help="held-out real photos for the FD")
    p.add_argument("--video-frames", type=int, default=75,
                   help="frames of the video-stability clip (0: skip)")  # fmt: skip
    p.add_argument("--reference", metavar="LABEL",
                   help="also report per-pair differences of every method to this one")  # fmt: skip
    p.add_argument("--video-dev", type=Path, metavar="DIR",
                   help="also measure every method on the real clips (*.mp4) in DIR")  # fmt: skip
    p.add_argument("--video-dev-frames", type=int, default=100,
                   help="frames of each --video-dev clip (default 100)")  # fmt: skip
    p.add_argument("--sheet", type=int, default=0, metavar="N",
                   help="write OUT/sheet.jpg: N pairs of the set, face crops of the full-size "
                   "outputs (dataset pixels: keep it out of published folders)")  # fmt: skip
    p.add_argument("--title", help="report title")
    p.add_argument("--no-samples", action="store_true", help="skip the public-domain grid")
    p.set_defaults(func=cmd_eval)
