"""Source texture on the swap geometry: ms per face at R = 128 and 256, batch 1 and 16.

    python benchmarks/bench_texture.py [--repeats 10] [--sizes 128 256] [--batches 1 16]

Real faces: the astronaut and Grace Hopper (public domain), each the source of the other's
swap geometry, alternated to fill the batch, with a random yaw of up to ±30° added to the
target pose. Rows:
- crop source: the source is its aligned R×R crop;
- photo source: the source is the whole photo (512² / 600²; the face is reduced to the
  target's scale around itself before resampling);
- normal map: `Renderer.render_geometry` of the same batch, for scale (what a training step
  renders today).
Cells: median wall-clock ms per face over the repeats after a warm-up, and in brackets the
median process CPU time per face (all threads: on a shared, loaded machine the wall clock
mostly measures the other processes); the load average is printed. Also prints the
round-trip error and the visibility on the astronaut's own view, at each size.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from functools import partial

import numpy as np

from selfswap.face.align import alignment_matrix, warp_to_crop
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.geometry.mesh import Geometry, compose, face_geometry, swap_geometry
from selfswap.geometry.render import Renderer
from selfswap.geometry.texture import render_source_texture
from selfswap.samples import astronaut, grace_hopper


def turned(geometry: Geometry, degrees: np.ndarray) -> Geometry:
    """Each face turned by `degrees[b]` about its own vertical axis."""
    cameras = []
    for b, deg in enumerate(degrees):
        t = math.radians(float(deg))
        rot = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
        centre = compose(geometry.shape[b], geometry.expression[b]).mean(0)
        cam = geometry.camera[b].astype(np.float64)
        new = np.zeros((3, 4))
        new[:, :3] = cam[:, :3] @ rot
        new[:, 3] = cam[:, :3] @ (centre - rot @ centre) + cam[:, 3]
        cameras.append(new)
    return Geometry(geometry.shape, geometry.expression, np.stack(cameras))


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU time (all threads, llvmpipe's included) of
    `fn()`, in seconds, after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()

    analyzer = FaceAnalyzer(AnalyzerConfig(embedding="none"))
    photos = [astronaut(), grace_hopper()]
    faces = [max(analyzer.analyze(p), key=lambda f: f.width) for p in photos]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip
    print("| R | batch | crop source ms/face | photo source ms/face | normal map ms/face |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        matrices = [alignment_matrix(f.landmarks68, size) for f in faces]
        crops = [warp_to_crop(p, m, size) for p, m in zip(photos, matrices)]
        crop_geometry = [face_geometry([f], m[None]) for f, m in zip(faces, matrices)]
        with Renderer(size) as renderer:
            own = crop_geometry[0]
            texture, visibility = render_source_texture(renderer, crops[0], own, own)
            seen = visibility[0, 0] > 0.5
            error = np.abs(texture[0].transpose(1, 2, 0) * 255 - crops[0])[seen].mean()
            inside = renderer.render_geometry(own, normals=False).silhouette[0, 0] > 0
            print(f"<!-- R={size} round trip: mean abs error {error:.4f}/255 on visible "
                  f"pixels; visibility mean {visibility[0, 0][inside].mean():.3f} on the "
                  f"silhouette -->")  # fmt: skip
            for batch in args.batches:
                src = [b % 2 for b in range(batch)]
                dst = [1 - s for s in src]
                swap = swap_geometry(
                    np.stack([faces[s].shape for s in src]),
                    np.stack([faces[d].expression for d in dst]),
                    np.concatenate([crop_geometry[d].camera for d in dst]),
                )
                swap = turned(swap, rng.uniform(-30, 30, batch))
                source_crops = np.stack([crops[s] for s in src])
                source_crop_geometry = Geometry(
                    *(np.concatenate([getattr(crop_geometry[s], k) for s in src])
                      for k in ("shape", "expression", "camera"))
                )  # fmt: skip
                source_photos = [photos[s] for s in src]
                source_photo_geometry = face_geometry([faces[s] for s in src])
                crop_t = timed(
                    partial(
                        render_source_texture, renderer, source_crops, source_crop_geometry, swap
                    ),
                    args.repeats,
                )
                photo_t = timed(
                    partial(
                        render_source_texture, renderer, source_photos, source_photo_geometry, swap
                    ),
                    args.repeats,
                )
                normal_t = timed(partial(renderer.render_geometry, swap), args.repeats)
                cells = [
                    f"{1000 * m / batch:.1f} (cpu {1000 * b / batch:.1f})"
                    for m, b in (crop_t, photo_t, normal_t)
                ]
                print(f"| {size} | {batch} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
