"""Where the time goes when a photo is large: one face, 640x480 against 4000x3000 (and more).

The same photo (the astronaut on a 640x480 canvas, face ~85 px wide) is upscaled, so the face
grows with it; the source identity is precomputed and the model is loaded and warmed up.
Stages: detection, analysis (detection + landmarks + 3DMM, no identity), swap_faces (masks,
render, generator: works on the aligned crop, so it should not depend on the photo size),
paste-back and watermark (both work on the full frame), and end to end (what
`FaceSwapper.swap_image` runs for the CLI's `swap`, the source analysis excluded).

    python benchmarks/bench_large_photo.py                    # 640x480 and 4000x3000
    python benchmarks/bench_large_photo.py --sizes 640x480,4000x3000,7300x5500 --repeat 2

Issue 12 target: end to end at 4000x3000 at most 6x the 640x480 time; `analyze` in seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_analyze import photo_640x480  # noqa: E402
from selfswap.face.detect import DEFAULT_DETECTOR  # noqa: E402
from selfswap.provenance import embed_watermark  # noqa: E402
from selfswap.samples import grace_hopper  # noqa: E402
from selfswap.swap.blend import paste_back_many  # noqa: E402
from selfswap.swap.pipeline import FaceSwapper  # noqa: E402


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median milliseconds of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` -> (W, H)."""
    w, h = text.lower().split("x")
    return int(w), int(h)


def stages(swapper: FaceSwapper, target: np.ndarray, source, repeat: int) -> dict[str, float]:
    """Milliseconds per stage on one target photo."""
    analyzer = swapper.fast_analyzer
    faces = analyzer.analyze(target)
    if len(faces) != 1:
        raise SystemExit(f"expected one face at {target.shape[1]}x{target.shape[0]}: {faces}")
    crops, masks, matrices = swapper.swap_faces(target, faces, source)
    pasted = paste_back_many(target, crops, matrices, masks)
    return {
        "detection": timed(lambda: analyzer.detector.detect(target), repeat),
        "analysis (detect + landmarks + 3DMM)": timed(lambda: analyzer.analyze(target), repeat),
        "swap_faces (masks, render, generator)": timed(
            lambda: swapper.swap_faces(target, faces, source), repeat
        ),
        "paste-back": timed(lambda: paste_back_many(target, crops, matrices, masks), repeat),
        "watermark": timed(lambda: embed_watermark(pasted), repeat),
        "end to end (swap_image)": timed(lambda: _end_to_end(swapper, target, source), repeat),
    }


def _end_to_end(swapper: FaceSwapper, target: np.ndarray, source) -> np.ndarray:
    """`FaceSwapper.swap_image` without the source analysis (as in bench_swap.py)."""
    found = swapper.fast_analyzer.analyze(target)
    crops, masks, matrices = swapper.swap_faces(target, found, source)
    return embed_watermark(swapper.paste(target, crops, masks, matrices))


def main(argv: list[str] | None = None) -> None:
    """Print a markdown table of stage timings per photo size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="640x480,4000x3000", help="comma-separated WxH")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per stage (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--model", default="default", help="swap model (default: shipped)")
    args = parser.parse_args(argv)
    import torch  # after selfswap, whose OpenMP setting must precede torch's start

    torch.set_num_threads(args.threads)
    swapper = FaceSwapper.load(args.model)
    source = swapper.source_identity([grace_hopper()])
    base = photo_640x480()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    columns = {}
    for w, h in sizes:
        target = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
        columns[f"{w}x{h}"] = stages(swapper, target, source, args.repeat)
        print(f"{w}x{h}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in columns[f"{w}x{h}"].items()))
    names = list(columns)
    lines = [
        f"Detector `{DEFAULT_DETECTOR}`; median of {args.repeat} runs, ms; torch threads "
        f"{args.threads}. Ratio: last size / first size.",
        "",
        "| stage | " + " | ".join(names) + " | ratio |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for stage in columns[names[0]]:
        cells = [f"{columns[n][stage]:.0f}" for n in names]
        ratio = columns[names[-1]][stage] / max(columns[names[0]][stage], 1e-9)
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {ratio:.1f}x |")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
