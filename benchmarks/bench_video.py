"""Video and paste-back speed: decode/encode/swap fps at 640x480 and 1080x1920, paste-back ms.

    python benchmarks/bench_video.py [--seconds 10] [--hd-seconds 2] [--repeats 30]
        [--model default]

Three clips: 640x480 (both public-domain faces, a tone), 640x480 with one face (the
astronaut, face about 200 px wide, slowly panning and zooming; no audio) and a phone-style
1080x1920 portrait clip (the same motion, face about 330 px wide; no audio).
Rows for each:
- decode: `read_frames` of the H.264 clip at 25 fps (upright RGB);
- passthrough: `process_video` with the identity function (decode, libx264 `veryfast`
  CRF 18 encode, audio remux), the progress bar off;
- swap (with --model): `swap_video` with Grace Hopper as the source, the whole pipeline
  (decode, analysis, smoothing, masks, generator, paste-back, watermark, encode, audio);
  baseline for its ratio: passthrough. Targets: at least 5 fps at 640x480 (issue #6); at
  1080x1920 at least 3x the speed before issue #12's changes (about 1 fps on 2 cores);
  the CPU seconds per frame (all threads of the process) are less sensitive to other load;
  then the same on one thread (`FaceSwapper.overlap` off: the pipeline before it), with
  the generator as a module (`SwapModel.freeze_after` 0: before the frozen graph), frozen
  as TorchScript instead of run by ONNX Runtime (`SwapModel.frozen_runtime`: before that) and
  without the mirror fill (`mirror=0`), what that fill costs; these five run in turn,
  `--rounds` times (medians);
- paste R: `paste_back` of one R×R face into the 640x480 frame (feather, warp of the
  bounding region, blend), then with colour matching; `feather` alone.
Times are medians (and the best) over the repeats after a warm-up; the load average is
printed because the machine may be shared.
"""

from __future__ import annotations

# isort: off
import selfswap  # noqa: F401  (before numpy: its thread settings, see its __init__)
# isort: on

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np

from selfswap.face.align import alignment_matrix, transform_points, warp_to_crop
from selfswap.samples import astronaut, grace_hopper
from selfswap.swap.blend import feather_mask, paste_back
from selfswap.swap.video import process_video, read_frames

FPS, WIDTH, HEIGHT = 25, 640, 480


def make_clip(path: Path, seconds: float) -> None:
    """A 640x480 clip panning back and forth over both public-domain faces, with a tone."""
    strip = np.concatenate(
        [
            cv2.resize(x, (round(x.shape[1] * HEIGHT / x.shape[0]), HEIGHT), cv2.INTER_AREA)
            for x in (astronaut(), grace_hopper())
        ],
        1,
    )
    span = strip.shape[1] - WIDTH
    n = round(seconds * FPS)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18"}
        audio = out.add_stream("aac", rate=48000)
        for i in range(n):
            x = int(span * (1 - abs((i / 50) % 2 - 1)))
            frame = np.ascontiguousarray(strip[:, x : x + WIDTH])
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode(None))
        t = np.arange(round(seconds * 48000)) / 48000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], "flt", "mono")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


def make_hd_clip(path: Path, seconds: float, width: int = 1080, height: int = 1920) -> None:
    """A phone-style portrait clip (1080x1920 by default, no audio): the astronaut photo
    upscaled to fill the width (face about 330 px wide; edges replicated above and below, so
    there is no mirrored second face), slowly panning and zooming."""
    photo = astronaut()
    n = round(seconds * FPS)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(n):
            t = i / max(n - 1, 1)
            scale = width / photo.shape[1] * (1.0 + 0.1 * t)
            shift = (height - photo.shape[0] * scale) / 2
            matrix = np.array([[scale, 0, -40 * t], [0, scale, shift + 60 * t]], np.float64)
            frame = cv2.warpAffine(
                photo, matrix, (width, height), flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )  # fmt: skip
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode(None))


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and best wall time of fn in ms, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def face_setup(size: int):
    """A 640x480 frame holding the astronaut's face, its alignment, crop and face mask."""
    from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer

    image = cv2.resize(astronaut(), (HEIGHT, HEIGHT), interpolation=cv2.INTER_AREA)
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    frame[:, 80 : 80 + HEIGHT] = image
    face = FaceAnalyzer(AnalyzerConfig(embedding="none")).analyze(frame)[0]
    matrix = alignment_matrix(face.landmarks68, size)
    crop = warp_to_crop(frame, matrix, size)
    pts = transform_points(face.landmarks68, matrix)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(pts.astype(np.float32)).astype(np.int32), 1)
    return frame, matrix, crop, mask.astype(np.float32)


def paste_rows(size: int, repeats: int) -> list[tuple[str, float, float]]:
    frame, matrix, crop, mask = face_setup(size)
    return [
        (f"paste R={size}", *timed(lambda: paste_back(frame, crop, matrix, mask), repeats)),
        (
            f"paste+colour R={size}",
            *timed(lambda: paste_back(frame, crop, matrix, mask, color_reference=crop), repeats),
        ),
        (f"feather R={size}", *timed(lambda: feather_mask(mask), repeats)),
    ]


def video_rows(
    clip: Path, out: Path, frames: int, swapper, rounds: int = 1
) -> list[tuple[str, float, float]]:
    """(name, wall seconds, CPU seconds of this process) for decode, passthrough and (with a
    swapper) swap of one clip; the swap variants are run in turn `rounds` times (medians),
    so that a shared machine's changing load falls on all of them alike."""

    def run(fn: Callable[[], object]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    def decode() -> None:
        count = sum(1 for _ in read_frames(clip))
        assert count == frames, (count, frames)

    rows = [
        ("decode (read_frames)", *run(decode)),
        (
            "passthrough (process_video)",
            *run(lambda: process_video(clip, out, lambda f: f, progress=False, overwrite=True)),
        ),
    ]
    if swapper is None:
        return rows
    plain = swapper.using(replace(swapper.config, mirror=0.0))

    def swap(
        on, overlap: bool = True, frozen: bool = True, runtime: str = "onnx"
    ) -> Callable[[], object]:
        def call() -> None:
            on.engine.overlap = overlap
            on.engine.model.freeze_after = on.engine.freeze_after if frozen else 0
            on.engine.model.frozen_runtime = runtime
            try:
                on.swap_video(grace_hopper(), clip, out, overwrite=True, progress=False)
            finally:
                on.engine.overlap = True
                on.engine.model.freeze_after = on.engine.freeze_after
                on.engine.model.frozen_runtime = "onnx"

        return call

    variants = {
        f"swap (swap_video, {swapper.name})": swap(swapper),
        "swap, one thread": swap(swapper, overlap=False),
        "swap, generator not frozen": swap(swapper, frozen=False),
        "swap, generator in TorchScript": swap(swapper, runtime="torchscript"),
        "swap, no mirror fill": swap(plain),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(run(fn))
    for name, measured in times.items():
        wall, cpu = zip(*measured)
        rows.append((name, statistics.median(wall), statistics.median(cpu)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hd-seconds", type=float, default=2.0, help="1080x1920 clip; 0: skip")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--model", help="also time swapping with this model (e.g. default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="swap variants run in turn")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        swapper = None
        if args.model:
            from selfswap.api import Swapper

            swapper = Swapper.load(args.model)
            swapper.engine.model.prepare_frozen()  # the ONNX export, if no run kept it yet
            swapper.swap_image(grace_hopper(), astronaut())  # warm-up: model, renderer
        clip, out = Path(tmp) / "clip.mp4", Path(tmp) / "out.mp4"
        make_clip(clip, args.seconds)
        n = round(args.seconds * FPS)
        sections.append(
            (
                f"video {WIDTH}x{HEIGHT}, {n} frames",
                n,
                video_rows(clip, out, n, swapper, args.rounds),
            )
        )
        single = Path(tmp) / "single.mp4"
        make_hd_clip(single, args.seconds, WIDTH, HEIGHT)
        sections.append(
            (
                f"video {WIDTH}x{HEIGHT} one face",
                n,
                video_rows(single, out, n, swapper, args.rounds),
            )
        )
        if args.hd_seconds > 0:
            hd = Path(tmp) / "hd.mp4"
            make_hd_clip(hd, args.hd_seconds)
            n = round(args.hd_seconds * FPS)
            sections.append(
                (f"video 1080x1920, {n} frames", n, video_rows(hd, out, n, swapper, args.rounds))
            )
    print(f"CPU cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}")
    for title, n, rows in sections:
        print(f"\n{title:<34} {'s':>7} {'fps':>7} {'CPU s/frame':>12}")
        for name, wall, cpu in rows:
            extra = ""
            if name.startswith("swap"):
                extra = f"   ratio to passthrough {wall / rows[1][1]:.1f}x"
            print(f"{name:<34} {wall:>7.2f} {n / wall:>7.2f} {cpu / n:>12.3f}{extra}")

    paste = []
    for size in args.sizes:
        paste += paste_rows(size, args.repeats)
    print(f"\n{'paste-back into 640x480':<34} {'ms/face':>7} {'best':>8}")
    for name, ms, best in paste:
        print(f"{name:<34} {ms:>7.2f} {best:>8.2f}")


if __name__ == "__main__":
    main()
