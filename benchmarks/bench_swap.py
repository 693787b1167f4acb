"""End-to-end swap speed on a 640x480 photo with one face, with a per-stage breakdown.

Usage: python benchmarks/bench_swap.py --model RUN_OR_CHECKPOINT [--repeat 10] [--threads 2]
Baseline for ratios: end to end = analysis + swap_faces + seam match + source detail +
paste-back + watermark, i.e. `swap_image` with the source identity precomputed (model
loaded, warmed up), with the default options; "end to end, no detail / seam" is the same
without the two finishing steps (the pipeline before issue #14 item 3), "expression_parts
none" without the target's mouth (models with the source texture), "no mirror fill"
without filling what the source photo did not see from its mirror image, "bilinear resampling"
with the paste and the source detail's render resampled bilinearly instead of with Lanczos
(the pipeline before that change, docs/decisions.md), "one thread" without the detail painted
on a second thread while the generator runs (`FaceSwapper.overlap`, the pipeline before
it), "generator not frozen" with the generator run as a module (`SwapModel.freeze_after` 0,
the pipeline before the frozen graph), "generator in TorchScript" with the generator frozen
as TorchScript instead of run by ONNX Runtime (`SwapModel.frozen_runtime`), "YuNet on
OpenCV" with the face detector's network run by `cv2.FaceDetectorYN` instead of ONNX Runtime
(`YuNetDetector(backend="opencv")`): each the pipeline before that change. Stage rows are
medians of --repeat calls; the end-to-end variants are called in turn (`interleaved`) and
show the median, the best and the median CPU ms (all threads) per call:
on a shared machine the wall times swing two- to threefold from minute to minute, the CPU
time much less.
Targets (issue #6, 2-core CPU): generator ≤ 60 ms per face at 128 (batch of 8), end to end
≤ 150 ms per 640x480 photo with one face.
"""

from __future__ import annotations

# isort: off
import selfswap  # noqa: F401  (before numpy: its thread settings, see its __init__)
# isort: on

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).parent))
from bench_analyze import photo_640x480, timed  # noqa: E402
from selfswap.face import align  # noqa: E402
from selfswap.face.detect import get_detector  # noqa: E402
from selfswap.nets.frozen import freeze  # noqa: E402
from selfswap.provenance import embed_watermark  # noqa: E402
from selfswap.samples import grace_hopper  # noqa: E402
from selfswap.swap import blend, detail  # noqa: E402
from selfswap.swap.blend import paste_back_many  # noqa: E402
from selfswap.swap.pipeline import EXPRESSION_PARTS, FaceSwapper  # noqa: E402


def interleaved(variants: dict, repeat: int) -> dict[str, tuple[float, float, float]]:
    """Per variant: median and best wall ms and median CPU ms (all threads of the process)
    of `repeat` calls, the variants called in turn so that a shared machine's changing load
    falls on all of them alike."""
    for fn in variants.values():
        fn()  # warm-up
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {
        name: (
            1000 * statistics.median(wall[name]),
            1000 * min(wall[name]),
            1000 * statistics.median(cpu[name]),
        )
        for name in variants
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch  # after selfswap, whose OpenMP setting must precede torch's start

    torch.set_num_threads(args.threads)
    swapper = FaceSwapper.load(args.model)
    swapper.model.prepare_frozen()  # the ONNX export, made now if no run has kept it yet
    target = photo_640x480()
    source = swapper.source_identity([grace_hopper()])
    r = swapper.size
    faces = swapper.fast_analyzer.analyze(target)
    crops, masks, matrices = swapper.swap_faces(target, faces, source)
    finish = (crops, masks, matrices)

    def end_to_end(
        detail: float = 1.0, seam: float = 1.0, parts: str = EXPRESSION_PARTS, mirror: float = 1.0
    ) -> None:
        found = swapper.fast_analyzer.analyze(target)
        out, _ = swapper.swap_frame(target, found, source, 0.0, detail, seam, parts, mirror)
        embed_watermark(out)

    def serial_end_to_end() -> None:
        """On one thread (the pipeline before `FaceSwapper.overlap`)."""
        swapper.overlap = False
        try:
            end_to_end()
        finally:
            swapper.overlap = True

    def bilinear_end_to_end() -> None:
        """The pipeline as it was before Lanczos resampling (docs/decisions.md)."""
        saved = blend.FACE_INTERPOLATION, detail.INTERPOLATION
        blend.FACE_INTERPOLATION = detail.INTERPOLATION = cv2.INTER_LINEAR
        try:
            end_to_end()
        finally:
            blend.FACE_INTERPOLATION, detail.INTERPOLATION = saved

    def eager_end_to_end() -> None:
        """With the generator as a module (before `SwapModel.freeze_after`)."""
        swapper.model.freeze_after = 0
        try:
            end_to_end()
        finally:
            swapper.model.freeze_after = swapper.freeze_after

    def torchscript_end_to_end() -> None:
        """With the generator frozen as TorchScript (before ONNX Runtime ran it)."""
        swapper.model.frozen_runtime = "torchscript"
        try:
            end_to_end()
        finally:
            swapper.model.frozen_runtime = "onnx"

    opencv_yunet = get_detector("yunet", backend="opencv")

    def opencv_detector_end_to_end() -> None:
        """With YuNet run by cv2.FaceDetectorYN (before ONNX Runtime ran it)."""
        analyzer = swapper.fast_analyzer
        ours, analyzer.detector = analyzer.detector, opencv_yunet  # a cached property
        try:
            end_to_end()
        finally:
            analyzer.detector = ours

    def generator_batch(n: int, frozen: str = "") -> float:
        gen = swapper.model.generator
        x = torch.rand(n, gen.config.guidance_channels, r, r)
        z = torch.randn(n, gen.config.id_dim)
        app = torch.randn(n, gen.config.appearance_dim)
        run = freeze(gen, x, z, app, frozen, wait=True) if frozen else gen
        with torch.no_grad():
            return timed(lambda: run(x, z, app), args.repeat) / n

    geometry_and_masks = timed(lambda: swapper.swap_faces(target, faces, source), args.repeat)
    analysis = timed(lambda: swapper.fast_analyzer.analyze(target), args.repeat)
    rows = [
        ("analysis (detect, landmarks, 3DMM)", analysis),
        ("align crop", timed(lambda: align.warp_to_crop(target, matrices[0], r), args.repeat)),
        ("swap_faces: masks + render + generator", geometry_and_masks),
        ("generator alone, batch 1", generator_batch(1)),
        ("generator alone, TorchScript, batch 1", generator_batch(1, "torchscript")),
        ("generator alone, ONNX Runtime, batch 1", generator_batch(1, "onnx")),
        ("generator alone, batch 8 (per face)", generator_batch(8)),
        ("seam match", timed(lambda: swapper.match_border(target, *finish), args.repeat)),
        ("source detail", timed(lambda: swapper.add_detail(faces, source, *finish), args.repeat)),
        ("paste back", timed(lambda: paste_back_many(target, crops, matrices, masks), args.repeat)),
        ("watermark", timed(lambda: embed_watermark(target), args.repeat)),
    ]  # fmt: skip
    variants = {
        "end to end, no detail / seam": lambda: end_to_end(0.0, 0.0),
        "end to end, expression_parts none": lambda: end_to_end(parts="none"),
        "end to end, no mirror fill": lambda: end_to_end(mirror=0.0),
        "end to end, bilinear resampling": bilinear_end_to_end,
        "end to end, one thread": serial_end_to_end,
        "end to end, generator not frozen": eager_end_to_end,
        "end to end, generator in TorchScript": torchscript_end_to_end,
        "end to end, YuNet on OpenCV": opencv_detector_end_to_end,
        "end to end, one face": end_to_end,
    }
    measured = interleaved(variants, args.repeat)
    total = measured["end to end, one face"][0]
    print(f"640x480, one face, R={r}, {args.threads} threads; ratio = stage / end to end")
    print(f"{'stage (median ms)':42s} {'ms':>8s} {'ratio':>7s}")
    for name, ms in rows:
        print(f"{name:42s} {ms:8.1f} {ms / total:7.2f}")
    head = ("median", "ratio", "best", "CPU")
    print(
        f"{'end to end (interleaved runs)':42s} {head[0]:>8s} "
        + " ".join(f"{h:>7s}" for h in head[1:])
    )
    for name, (median, best, cpu) in measured.items():
        print(f"{name:42s} {median:8.1f} {median / total:7.2f} {best:7.1f} {cpu:7.1f}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MB")


if __name__ == "__main__":
    main()
