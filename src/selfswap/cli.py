"""`selfswap` command line. Thin: every command calls the Python API."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from selfswap import __version__
from selfswap.errors import SelfswapError
from selfswap.io.files import (
    check_input_path,
    check_output_path,
    os_error_sentence,
    refuse_input_as_output,
    remove_stale_parts,
    same_file,
)
from selfswap.swap.options import MODEL_HELP


def _add_analyzer_options(p: argparse.ArgumentParser) -> None:
    from selfswap.config import add_config_arguments

    add_config_arguments(p, "YAML/JSON file with analyzer settings", "--set detector=hog")


def _analyzer_config(args: argparse.Namespace):
    from selfswap.config import load_config
    from selfswap.face.analyzer import AnalyzerConfig

    return load_config(AnalyzerConfig, args.config, args.overrides)


def cmd_analyze(args: argparse.Namespace) -> int:
    from selfswap.api import analyze
    from selfswap.face.draw import draw_faces
    from selfswap.io.images import image_format_for, load_image, save_image

    if args.draw:
        image_format_for(args.draw)
        _prepare_output(args.draw, [args.image])
    image = load_image(args.image)
    faces = analyze(image, _analyzer_config(args))
    if args.json:
        payload = {
            "image": str(args.image),
            "width": image.shape[1],
            "height": image.shape[0],
            "faces": [f.to_dict() for f in faces],
        }
        print(json.dumps(payload))
    else:
        print(f"{args.image}: {len(faces)} face(s), {image.shape[1]}x{image.shape[0]}")
        for i, f in enumerate(faces):
            x0, y0, x1, y1 = f.box
            print(
                f"  #{i}: box ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) score {f.score:.2f} "
                f"yaw {f.yaw:+.1f} pitch {f.pitch:+.1f} roll {f.roll:+.1f}"
            )
    if args.draw:
        save_image(args.draw, draw_faces(image, faces, mesh=not args.no_mesh))
        if not args.json:
            print(f"wrote {args.draw}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from selfswap.models import catalog, pull, verify
    from selfswap.models.registry import expected_path

    if args.action == "list":
        status = verify()
        for name, spec in catalog().items():
            print(f"{name:18s} {status[name]:8s} {spec.size / 1e6:7.1f} MB  {spec.description}")
            source = spec.wheel if spec.source == "wheel" else f"package {spec.package}"
            print(f"{'':18s} from {source}; license: {spec.license}")
            print(f"{'':18s} {expected_path(name)}")
        return 0
    log = (lambda *_: None) if args.quiet else print
    status = pull(args.names or None, force=args.force, log=log) if args.action == "pull" else None
    status = status or verify(args.names or None)
    bad = {n: s for n, s in status.items() if s != "ok"}
    if not args.quiet or bad:
        for name, state in status.items():
            print(f"{name:18s} {state}")
    if bad:
        print(
            "Some model files are missing or corrupt; run `selfswap models pull`.", file=sys.stderr
        )
        return 1
    if args.action == "pull" and not args.names:
        from selfswap.swap.bundle import prepare_runtimes

        try:  # a cache: without it the first swaps are slower, nothing fails
            prepare_runtimes()
        except Exception as exc:
            print(f"note: the ONNX Runtime files were not prepared ({exc}).", file=sys.stderr)
    return 0


def cmd_guidance(args: argparse.Namespace) -> int:
    from selfswap.geometry.guidance import run_guidance
    from selfswap.io.images import image_format_for, load_image

    if args.size < 16 or args.size > 4096:
        raise SelfswapError(f"--size {args.size}: use a crop size between 16 and 4096.")
    image_format_for(args.output)
    _prepare_output(args.output, [args.target, args.source])
    for path in (args.target, args.source):
        if path is not None:
            load_image(path)  # one clear sentence for an unusable image, before any work
    run_guidance(args.target, args.source, args.output, size=args.size)
    print(f"wrote {args.output}")
    return 0


def cmd_provenance(args: argparse.Namespace) -> int:
    from selfswap.api import check_provenance

    report = check_provenance(args.image)
    verdict, *findings = report.lines()
    print(f"{args.image}: {verdict}")
    for line in findings:
        print(f"  {line}")
    if args.manifest:
        from selfswap.provenance.credentials import manifest_json

        print(manifest_json(args.image) or "(no C2PA manifest)")
    return 0 if report.marked else 1


def _faces_spec(spec: str):
    """--faces: all, indices like 0,2, or ref:IMAGE (faces of the person in IMAGE)."""
    from selfswap.io.images import load_image
    from selfswap.swap.options import parse_faces

    faces = parse_faces(spec)
    if isinstance(faces, str) and faces.startswith("ref:"):
        return load_image(faces[4:])
    return faces


def _swap_config(args: argparse.Namespace):
    """The `SwapConfig` of `swap` / `video`: defaults, --config file, --set, then flags."""
    from selfswap.config import config_from_args
    from selfswap.swap.options import SwapConfig

    return config_from_args(SwapConfig, args)


def _prepare_output(output: Path, inputs: list[Path | None]) -> None:
    """Before any work: refuse an output that is one of the inputs or cannot be written,
    and remove the temporary files a killed earlier run left for this output."""
    for path in inputs:
        if path is not None:
            check_input_path(path)
    refuse_input_as_output(output, inputs)
    check_output_path(output)
    remove_stale_parts(output)


def _check_paths(sources: list[Path], target: Path, output: Path, faces: str) -> None:
    reference = Path(faces[4:]) if faces.startswith("ref:") else None
    _prepare_output(output, [*sources, target, reference])
    if any(same_file(target, source) for source in sources):
        raise SelfswapError("Source and target are the same file.")


def cmd_swap(args: argparse.Namespace) -> int:
    from selfswap.io.images import image_format_for, load_image

    config = _swap_config(args)
    image_format_for(args.output)
    _check_paths(args.source, args.target, args.output, config.faces)
    if args.output.exists() and not args.overwrite:
        raise SelfswapError(f"{args.output} exists; pass --overwrite to replace it.")
    sources = [load_image(p) for p in args.source]
    target = load_image(args.target)
    faces = _faces_spec(config.faces)
    from selfswap.api import Swapper  # slow to import: only once the inputs are good

    result = Swapper.from_config(config).swap_image(sources, target, faces=faces)
    for note in result.notes:
        print(f"note: {note}")
    from selfswap.provenance.credentials import ingredients

    names = {"source": ",".join(p.name for p in args.source), "target": args.target.name}
    result.save(args.output, ingredients(args.source, args.target), **names)  # files' sha256
    print(f"swapped face(s) {result.swapped} of {len(result.faces)}; wrote {args.output}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from selfswap.io.images import load_image
    from selfswap.swap.video import check_output, probe

    config = _swap_config(args)
    _check_paths(args.source, args.target, args.output, config.faces)
    check_output(args.output, args.overwrite)
    sources = [load_image(p) for p in args.source]
    faces = _faces_spec(config.faces)
    probe(args.target)  # an unreadable video is refused before the model is loaded
    from selfswap.api import Swapper

    swapper = Swapper.from_config(config)
    stats = swapper.swap_video(
        sources, args.target, args.output, faces, args.overwrite, progress=not args.quiet
    )
    for note in stats.notes:
        print(f"note: {note}")
    print(f"{stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} fps); "
          f"wrote {args.output}")  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from selfswap.demo import report, run_demo
    from selfswap.io.images import image_format_for

    image_format_for(args.output)
    _prepare_output(args.output, [])
    swaps = run_demo(args.output, args.model)
    print(report(swaps))
    print(f"wrote {args.output}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from selfswap.api import export_model

    _prepare_output(args.output, [args.model])
    if args.output.exists() and not args.overwrite:
        raise SelfswapError(f"{args.output} exists; pass --overwrite to replace it.")
    out = export_model(args.model, args.output)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, fp16)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from selfswap.web.app import serve

    serve(args.host, args.port, limits_overrides=args.overrides, config_path=args.config)
    return 0


def _add_swap_options(p: argparse.ArgumentParser) -> None:
    """Options `swap` and `video` share, generated from `SwapConfig` (faces, model, colour
    match, paste, device), plus --config/--set for the same settings."""
    from selfswap.config import add_config_arguments, add_dataclass_arguments
    from selfswap.swap.options import SwapConfig

    add_dataclass_arguments(p, SwapConfig)
    add_config_arguments(p, "YAML/JSON file with swap settings (SwapConfig)", "color_match=0.5")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfswap",
        description="Self-supervised face swapping (SAMAE). Swaps need the consent of the "
        "people shown; outputs are marked as synthetic.",
    )
    parser.add_argument("--version", action="version", version=f"selfswap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="find faces; print pose, draw boxes/landmarks/mesh")
    p.add_argument("image", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--draw", type=Path, metavar="OUT.png", help="write an annotated image")
    p.add_argument("--no-mesh", action="store_true", help="do not draw the 3D mesh")
    _add_analyzer_options(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "provenance",
        help="check an image or video for selfswap's marks: signed C2PA manifest (valid, "
        "changed after signing, or missing), invisible watermark, metadata",
    )
    p.add_argument("image", type=Path, help="image (PNG, JPEG, WebP, ...) or video (MP4, MOV)")
    p.add_argument("--manifest", action="store_true", help="also print the C2PA manifest JSON")
    p.set_defaults(func=cmd_provenance)

    p = sub.add_parser("swap", help="swap the source person into the faces of a target photo")
    p.add_argument("--source", "-s", type=Path, action="append", required=True,
                   help="photo of the source person (repeat for several photos)")  # fmt: skip
    p.add_argument("--target", "-t", type=Path, required=True)
    p.add_argument("--output", "-o", type=Path, required=True)
    _add_swap_options(p)
    p.set_defaults(func=cmd_swap)

    p = sub.add_parser("video", help="swap the source person into a video (audio kept)")
    p.add_argument("--source", "-s", type=Path, action="append", required=True)
    p.add_argument("--target", "-t", type=Path, required=True, help="input video")
    p.add_argument("--output", "-o", type=Path, required=True, help=".mp4, .mov, .mkv, .m4v")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_swap_options(p)
    p.set_defaults(func=cmd_video)

    from selfswap.config import add_config_arguments

    p = sub.add_parser("serve", help="the web app: image, video, live webcam and provenance")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: this machine only)")  # fmt: skip
    p.add_argument("--port", type=int, default=7860)
    add_config_arguments(p, "YAML/JSON file with the web app's limits", "max_upload_mb=20")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("models", help="list, pull or verify model files")
    p.add_argument("action", choices=["list", "pull", "verify"])
    p.add_argument("names", nargs="*", help="model names (default: all)")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("guidance", help="debug view of geometry guidance and SAMAE masks")
    p.add_argument("--target", "-t", type=Path, required=True)
    p.add_argument("--source", "-s", type=Path)
    p.add_argument("--output", "-o", type=Path, required=True, metavar="GRID.png")
    p.add_argument("--size", type=int, default=256, help="crop size R")
    p.set_defaults(func=cmd_guidance)

    from selfswap.data.cli import add_prepare_parser

    add_prepare_parser(sub)

    from selfswap.train.cli import add_train_parser

    add_train_parser(sub)

    from selfswap.eval.cli import add_eval_parser

    add_eval_parser(sub)

    p = sub.add_parser("demo", help="swap the bundled public-domain faces into each other")
    p.add_argument("--output", "-o", type=Path, default=Path("out/demo.png"))
    p.add_argument("--model", default="default", help=MODEL_HELP)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="write a run's swap model as one fp16 .safetensors file")
    p.add_argument("--model", type=Path, required=True, help="training run or checkpoint folder")
    p.add_argument("--output", "-o", type=Path, required=True, metavar="MODEL.safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_export)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that the same clean-up runs (temporary
    files removed, finished work kept)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise `Terminated` (Python's default is to die at
    once and leave temporary files behind); the previous handlers come back afterwards.
    Signals that were ignored (e.g. SIGHUP under nohup) stay ignored; a no-op outside the
    main thread, where handlers cannot be set."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            signum = getattr(signal, name, None)
            if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with signals_as_interrupts():
            return int(args.func(args) or 0)
    except SelfswapError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print(f"terminated ({exc})", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the environment (disk full, permissions, ...), not a bug
        print(f"error: {os_error_sentence(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
