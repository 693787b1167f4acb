"""Live tab speed: milliseconds per stage and frames per second for 640x480 webcam frames.

    python benchmarks/live_fps.py [--frames 30] [--rounds 3] [--threads N] [--model default]

Frames: the browser test's fake camera, a pan over the astronaut photo (scaled to 1024 px,
640x480 crops), sent as the browser sends them (JPEG data URLs); source person: Grace
Hopper; every face is swapped. Three paths over the same frames, one round of each in turn
so that all see the same load:

- baseline: the live path before issue #16's speed-up, as it was: every frame analysed
  whole (`fast_analyzer.analyze`), then `swap_faces`, paste-back, watermark and JPEG, on
  torch's default threads (`--threads`);
- followed: the faces followed from the previous frame (`FaceFollower`: a crop around them
  is searched, the whole frame every `SEARCH_EVERY` frames), then the web app's swap of a
  webcam frame (`selfswap.web.app.live_swap`: `FaceSwapper.swap_frame` with the seam colour
  match and no source detail, as `WebConfig.live_detail` says; one torch thread), one frame
  after the other;
- live: the web app's path (`App.live_frame`): as `followed`, pipelined, so that a frame's
  analysis runs while the previous frame's swap finishes in the live worker thread.

Stages (ms per frame; cpu: CPU time of the thread that ran the stage): decode (the data URL
to an array, as the server receives a frame), analysis, swap (`swap_faces`: masks = mesh
render and swap mask, generator, and the rest: crops, occlusion, paste masks), finish
(seam colour match and source detail), paste-back, watermark, JPEG (encode and base64).
total: wall time per frame, and CPU seconds of the whole process per frame (all threads),
which the other jobs of a shared machine change less than the wall time; fps = 1000 /
total wall ms. The load average is printed: the machine may be shared.
In the browser a frame also waits for its round trip (about 30 ms measured), which `live`
overlaps with the swap and the others do not. All three run with the web app's settings of
numpy's OpenBLAS (one thread, see `selfswap/__init__.py`); `OPENBLAS_NUM_THREADS=2 python ...` shows
the paths with OpenBLAS's default on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import time
from collections import defaultdict

import selfswap  # noqa: F401  (first, as under `selfswap serve`: numpy's OpenBLAS threads)

# isort: split
import cv2
import numpy as np
import torch
from PIL import Image

from selfswap.samples import astronaut, grace_hopper
from selfswap.swap.options import SwapConfig
from selfswap.swap.pipeline import FaceFollower
from selfswap.web.app import App, _data_url, live_swap
from selfswap.web.limits import TempFolder, WebConfig


def camera_frames(count: int) -> list[np.ndarray]:
    """640x480 crops panning over the astronaut scaled to 1024 px (the fake camera's)."""
    big = cv2.resize(astronaut(), (1024, 1024), interpolation=cv2.INTER_AREA)
    steps = max(count - 1, 1)
    return [
        np.ascontiguousarray(big[200:680, x : x + 640])
        for x in (i * (1024 - 640) // steps for i in range(count))
    ]


def browser_jpeg(frame: np.ndarray) -> str:
    """The frame as the browser sends it: `canvas.toDataURL("image/jpeg")` (quality 0.92)."""
    out = io.BytesIO()
    Image.fromarray(frame).save(out, "JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def decode(url: str) -> np.ndarray:
    """A data URL to an RGB array, as Gradio's image preprocessing does (PIL)."""
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class Clock:
    """Wall and CPU seconds per named stage, gathered by wrapping the calls of a path; the
    stages of `swap` (masks, generator) are nested in it."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[name] += time.perf_counter() - wall
                self.cpu[name] += time.thread_time() - cpu

        return timed

    def swap_to(self, wall: dict[str, float], cpu: dict[str, float]) -> None:
        self.wall, self.cpu = wall, cpu


def instrument(engine, clock: Clock) -> None:
    """Time the swap's parts wherever they are called from."""
    import selfswap.provenance

    engine.swap_faces = clock.wrap("swap", engine.swap_faces)
    engine.masks.swap = clock.wrap("  masks", engine.masks.swap)
    engine.model.forward = clock.wrap("  generator", engine.model.forward)
    engine.paste = clock.wrap("paste", engine.paste)
    engine.match_border = clock.wrap("finish", engine.match_border)
    engine.add_detail = clock.wrap("finish", engine.add_detail)
    selfswap.provenance.embed_watermark = clock.wrap(
        "watermark", selfswap.provenance.embed_watermark
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: as is)")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import selfswap.provenance

    temp = TempFolder()
    app = App(WebConfig(swap=SwapConfig(model=args.model)), temp)
    swapper = app.model.get()
    engine = swapper.engine
    identity = swapper.identity(grace_hopper())
    options = app.live_options(0.0)
    urls = [browser_jpeg(f) for f in camera_frames(args.frames)]
    session = app.live_session("bench", engine)  # its follower: a copy of the fast analyzer
    follower = FaceFollower(engine.fast_analyzer)
    clock = Clock()
    instrument(engine, clock)
    whole = clock.wrap("analysis", engine.fast_analyzer.analyze)
    followed = clock.wrap("analysis", follower.analyze)
    session.follower.analyze = clock.wrap("analysis", session.follower.analyze)
    timed_decode, jpeg = clock.wrap("decode", decode), clock.wrap("jpeg", _data_url)

    def baseline(url: str) -> str | None:
        frame = timed_decode(url)
        faces = whole(frame)
        out = frame
        if faces:
            crops, masks, matrices = engine.swap_faces(frame, faces, identity)
            out = engine.paste(frame, crops, masks, matrices, 0.0)
        return jpeg(selfswap.provenance.embed_watermark(out, inplace=out is not frame))

    def one_by_one(url: str) -> str | None:
        frame = timed_decode(url)
        return jpeg(live_swap(engine, frame, followed(frame), identity, options))

    def live(url: str) -> str | None:
        out = app.live_frame("bench", timed_decode(url), identity, 0.0)
        return None if out is None else jpeg(out)

    def last_live() -> None:
        if session.pending is not None:
            jpeg(session.pending.result())
            session.pending = None

    paths = {"baseline": baseline, "followed": one_by_one, "live": live}
    for url in urls[:3]:  # warm-up: models loaded, first runs done
        for path in paths.values():
            path(url)
    last_live()
    stats = {name: (defaultdict(float), defaultdict(float)) for name in paths}
    totals = {name: [0.0, 0.0, 0] for name in paths}
    load = os.getloadavg()
    try:
        for _ in range(args.rounds):
            for name, path in paths.items():
                clock.swap_to(*stats[name])
                for f in (follower, session.follower):  # a new stream
                    f.followed, f.count = [], 0
                session.last_in = None
                wall, cpu = time.perf_counter(), time.process_time()
                for url in urls:
                    path(url)
                last_live()
                totals[name][0] += time.perf_counter() - wall
                totals[name][1] += time.process_time() - cpu
                totals[name][2] += len(urls)
    finally:
        temp.cleanup()
    load_after = os.getloadavg()

    print(
        f"640x480 frames: {args.frames} per round, {args.rounds} rounds; torch threads "
        f"{torch.get_num_threads()} (baseline), {os.cpu_count()} CPUs; load average (1 min) "
        f"{load[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(f"{'ms per frame':14s}" + "".join(f"{n:>16s}" for n in paths) + "   live/baseline")
    print(f"{'':14s}" + f"{'wall':>9s}{'cpu':>7s}" * len(paths))
    order = ["decode", "analysis", "swap", "  masks", "  generator", "finish", "paste"]
    order += ["watermark", "jpeg"]

    def row(label: str, values: list[float]) -> None:
        cells = "".join(f"{values[i]:9.1f}{values[i + 1]:7.1f}" for i in range(0, len(values), 2))
        ratio = values[-2] / values[0] if values[0] else float("nan")
        print(f"{label:14s}{cells}{ratio:9.2f}")

    for stage in order:
        values = []
        for name in paths:
            wall, cpu = stats[name]
            values += [1000 * wall[stage] / totals[name][2], 1000 * cpu[stage] / totals[name][2]]
        row(stage, values)
    row("total", [1000 * totals[n][i] / totals[n][2] for n in paths for i in (0, 1)])
    fps = [totals[n][2] / totals[n][0] for n in paths]
    print(f"{'fps':14s}" + "".join(f"{f:16.2f}" for f in fps) + f"{fps[-1] / fps[0]:9.2f}")
    per_cpu = [totals[n][2] / totals[n][1] for n in paths]
    print(
        f"{'fps per core':14s}"
        + "".join(f"{f:16.2f}" for f in per_cpu)
        + f"{per_cpu[-1] / per_cpu[0]:9.2f}"
    )


if __name__ == "__main__":
    main()
