"""Video and paste-back speed: decode/encode fps at 640x480, paste-back ms per face.

    python benchmarks/bench_video.py [--seconds 10] [--repeats 30] [--model default]

Rows:
- decode: `read_frames` of a 640x480 H.264 clip at 25 fps with an AAC track (upright RGB);
- passthrough: `process_video` with the identity function (decode, libx264 `veryfast`
  CRF 18 encode, audio remux), the progress bar off;
- swap (with --model): `swap_video` with Grace Hopper as the source, the whole pipeline
  (decode, analysis, smoothing, masks, generator, paste-back, watermark, encode, audio);
  baseline for its ratio: passthrough. Target (issue #6): at least 5 fps;
- paste R: `paste_back` of one R×R face into the 640x480 frame (feather, warp of the
  bounding region, blend), then with colour matching; `feather` alone.
Times are medians (and the best) over the repeats after a warm-up; the load average is
printed because the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--model", help="also time swapping with this model (e.g. default)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip, out = Path(tmp) / "clip.mp4", Path(tmp) / "out.mp4"
        make_clip(clip, args.seconds)
        n = round(args.seconds * FPS)
        start = time.perf_counter()
        count = sum(1 for _ in read_frames(clip))
        decode = time.perf_counter() - start
        assert count == n, (count, n)
        start = time.perf_counter()
        process_video(clip, out, lambda f: f, progress=False, overwrite=True)
        passthrough = time.perf_counter() - start
        swap = None
        if args.model:
            from selfswap.api import Swapper

            swapper = Swapper.load(args.model)
            swapper.swap_image(grace_hopper(), astronaut())  # warm-up: model, renderer
            start = time.perf_counter()
            swapper.swap_video(grace_hopper(), clip, out, overwrite=True, progress=False)
            swap = time.perf_counter() - start
    print(f"CPU cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.2f}")
    print(f"\n{'video 640x480, ' + str(n) + ' frames':<32} {'s':>7} {'fps':>8}")
    print(f"{'decode (read_frames)':<32} {decode:>7.2f} {n / decode:>8.1f}")
    print(f"{'passthrough (process_video)':<32} {passthrough:>7.2f} {n / passthrough:>8.1f}")
    if swap is not None:
        print(
            f"{'swap (swap_video, ' + args.model + ')':<32} {swap:>7.2f} {n / swap:>8.1f}"
            f"   ratio to passthrough {swap / passthrough:.1f}x"
        )

    for size in args.sizes:
        rows += paste_rows(size, args.repeats)
    print(f"\n{'paste-back into 640x480':<32} {'ms/face':>7} {'best':>8}")
    for name, ms, best in rows:
        print(f"{name:<32} {ms:>7.2f} {best:>8.2f}")


if __name__ == "__main__":
    main()
