"""The `prepare` sub-command: argument parsing only; the work is imported when it runs,
so registering the command costs the main CLI nothing.

Wire it into a parent parser with `add_prepare_parser(subparsers)`; the function it sets
(`cmd_prepare`) returns an exit code and raises `SelfswapError` for user errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selfswap.errors import SelfswapError

from .settings import DEFAULT_CHUNK_SIZE, Settings


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_prepare_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `prepare` sub-command to an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "prepare",
        help="prepare a training set: aligned crops + a metadata table (restartable)",
        description="Detect, align and describe the faces of a folder or list of photos: "
        "aligned crops plus faces.parquet (landmarks, 3DMM, identity embedding). "
        "Re-running the same command resumes; --shard splits the work across machines and "
        "--merge joins shard folders, or sets labelled differently (e.g. LFW and CelebA).",
    )
    p.add_argument("--input", type=Path, help="folder of images, or a text file of paths")
    p.add_argument("--output", type=Path, required=True, help="prepared folder to write")
    p.add_argument("--size", type=int, default=128, help="crop side R in pixels (128)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    p.add_argument("--shard", metavar="i/N", help="prepare only shard i of N (0-based)")
    p.add_argument(
        "--identity-from",
        metavar="folder|csv:FILE",
        help="identity labels: the parent folder name, or a CSV of file,identity",
    )
    p.add_argument("--root", type=Path, help="base of relative paths in a list file")
    p.add_argument("--all-faces", action="store_true", help="keep every face, not just one")
    defaults = Settings()
    p.add_argument(
        "--min-face-size",
        type=float,
        default=defaults.min_face_size,
        help=f"minimum face box width in source pixels ({defaults.min_face_size:g})",
    )
    p.add_argument(
        "--max-yaw",
        type=float,
        default=defaults.max_yaw,
        help=f"maximum |yaw| in degrees ({defaults.max_yaw:g})",
    )
    p.add_argument("--min-score", type=float, help="minimum detector score (off)")
    p.add_argument(
        "--crop-format",
        choices=["jpg", "png"],
        default=defaults.crop_format,
        help="crop files: jpg (quality 95, no chroma subsampling; default) or png",
    )
    p.add_argument("--detector", default=defaults.detector, help="face detector (default)")
    p.add_argument(
        "--embedding",
        choices=["dlib", "torch", "none"],
        default=defaults.embedding,
        help="identity embedding: dlib (reference), torch (same network) or none",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help=f"images committed together ({DEFAULT_CHUNK_SIZE})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="merge finished prepared folders (shards of one input, or sets whose identities "
        "come from different sources) into --output instead of preparing",
    )
    p.add_argument(
        "--same-people",
        nargs="+",
        default=(),
        metavar="SET",
        help="with --merge: sets (folder names) whose identity labels name the same people, "
        "e.g. two CelebA sets labelled by CelebA identity; their people are joined",
    )
    p.set_defaults(func=cmd_prepare)
    return p


#: Suffixes of files that are images, never a list of image paths.
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic"}


def _check_input(input_path: Path, root: Path | None, output: Path) -> None:
    """Refuse an --input that cannot give any work, before the output folder is made."""
    from .sources import list_sources

    if input_path.is_file() and input_path.suffix.lower() in _IMAGE_SUFFIXES:
        raise SelfswapError(
            f"--input {input_path} is an image; give the folder that holds the images or a "
            "text file listing their paths."
        )
    sources, _ = list_sources(input_path, root, exclude=output)
    if not sources:
        raise SelfswapError(f"--input {input_path}: no images to prepare (empty folder or list).")


def cmd_prepare(args: argparse.Namespace) -> int:
    """Run `selfswap prepare`; returns the exit code (130 when interrupted)."""
    from selfswap.io.files import check_input_path, check_output_path, refuse_input_as_output

    from .prepare import make_settings, merge, prepare

    inputs = [*(args.merge or []), args.input]
    for path in [*inputs, args.root]:
        if path is not None:
            check_input_path(path)
    refuse_input_as_output(args.output, inputs)
    check_output_path(args.output, folder=True)
    if args.merge:
        if args.input is not None:
            raise SelfswapError("use either --input or --merge, not both.")
        summary = merge(args.merge, args.output, same_people=args.same_people)
        print(summary.report())
        return 0
    if args.input is None:
        raise SelfswapError("--input is required (or --merge DIR...).")
    if args.same_people:
        raise SelfswapError("--same-people goes with --merge.")
    _check_input(args.input, args.root, args.output)
    settings = make_settings(
        args.size,
        identity_from=args.identity_from,
        crop_format=args.crop_format,
        min_face_size=args.min_face_size,
        max_yaw=args.max_yaw,
        min_score=args.min_score,
        all_faces=args.all_faces,
        detector=args.detector,
        embedding=args.embedding,
    )
    try:
        summary = prepare(
            args.input,
            args.output,
            settings,
            root=args.root,
            shard=args.shard,
            workers=args.workers,
            chunk_size=args.chunk_size,
            identity_from=args.identity_from,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        _stderr(
            f"interrupted: finished work is saved in {args.output}; "
            "run the same command again to resume."
        )
        return 130
    print(summary.report())
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m selfswap.data.cli ...` (the same as `selfswap prepare ...`)."""
    parser = argparse.ArgumentParser(prog="selfswap")
    add_prepare_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prepare", *(sys.argv[1:] if argv is None else argv)])
    from selfswap.cli import signals_as_interrupts
    from selfswap.io.files import os_error_sentence

    try:
        with signals_as_interrupts():
            return args.func(args)
    except SelfswapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {os_error_sentence(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
