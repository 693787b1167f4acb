"""Rendering and masking speed: ms per batch and per face at R = 128 and 256, batch 1 and 16.

    python benchmarks/bench_render.py [--repeats 15] [--sizes 128 256] [--batches 1 16]

Faces are synthetic but realistic: random BFM shape and expression (0.7 std), yaw up to
±30°, posed into the canonical crop the way the alignment does it. Rows:
- mesh: compose + pose the vertices (numpy);
- render: normal map + silhouette (includes the CPU normals and the read-back);
- silhouette: silhouette only;
- train masks: `MaskBuilder.training` (render, scaled-mesh silhouette, shape-agnostic
  mask, perforations);
- swap masks: `MaskBuilder.swap` (two renders, the swap mask);
- mask ops: the 2D part alone (face region + shape-agnostic mask + perforation).
Times are medians (and the best) over the repeats after a warm-up; the load average is
printed because the machine may be shared.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np

from selfswap.face.align import TEMPLATE, reference_points, similarity_transform
from selfswap.face.bfm import load_bfm
from selfswap.geometry.mesh import Geometry, compose
from selfswap.geometry.render import Renderer
from selfswap.samae import MaskBuilder, SamaeConfig, face_region, perforate, shape_agnostic_mask

SHAPE_STD = 2.5e5
EXPRESSION_STD = 0.8


def synthetic_geometry(batch: int, size: int, seed: int = 0) -> Geometry:
    """Random faces posed into the R×R canonical crop."""
    rng = np.random.default_rng(seed)
    bfm = load_bfm()
    shape = (rng.normal(size=(batch, 40)) * 0.7 * SHAPE_STD).astype(np.float32)
    expression = (rng.normal(size=(batch, 10)) * 0.7 * EXPRESSION_STD).astype(np.float32)
    cameras = []
    for b in range(batch):
        yaw = math.radians(rng.uniform(-30, 30))
        rot = np.array(
            [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]
        )
        # model (y up) → image-like (y down), then align the landmarks to the template
        flip = np.diag([1.0, -1.0, 1.0]) @ rot
        points = compose(shape[b], expression[b])[bfm.keypoints68] @ flip.T
        m = similarity_transform(reference_points(points[:, :2]), TEMPLATE * size)
        s = math.sqrt(abs(np.linalg.det(m[:, :2])))
        camera = np.zeros((3, 4))
        camera[:2, :3] = m[:, :2] @ flip[:2]
        camera[:2, 3] = m[:, 2]
        camera[2, :3] = s * flip[2]
        cameras.append(camera)
    return Geometry(shape, expression, np.stack(cameras).astype(np.float32))


def timeit(fn, repeats: int) -> tuple[float, float]:
    """Median and best time in ms (the best is the least disturbed by a shared machine)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, min(times) * 1000


def bench(renderer: Renderer, builder: MaskBuilder, batch: int, repeats: int) -> list:
    """`(what, ms per batch)` rows for one renderer and batch size."""
    geometry = synthetic_geometry(batch, renderer.size)
    mesh = renderer.mesh
    vertices = geometry.vertices(mesh)
    silhouettes = renderer.silhouette(vertices)
    sources = geometry.shape[::-1].copy()
    rng = np.random.default_rng(0)

    def mask_ops():
        region = face_region(silhouettes)
        mask = shape_agnostic_mask(region, builder.config.mask)
        return perforate(mask, region, builder.config.perforation, rng)

    cases = {
        "mesh": lambda: geometry.vertices(mesh),
        "render": lambda: renderer.render(vertices),
        "silhouette": lambda: renderer.silhouette(vertices),
        "train masks": lambda: builder.training(geometry, rng),
        "swap masks": lambda: builder.swap(geometry, sources),
        "mask ops": mask_ops,
    }
    return [(name, timeit(fn, repeats)) for name, fn in cases.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    rows = []
    info = None
    for size in args.sizes:
        with Renderer(size) as renderer:
            info = info or renderer.info
            builder = MaskBuilder(renderer, SamaeConfig())
            for batch in args.batches:
                for name, (median, best) in bench(renderer, builder, batch, args.repeats):
                    rows.append((name, size, batch, median, median / batch, best / batch))

    print(f"GL: {info['GL_RENDERER']} ({info['GL_VERSION']}); CPU cores: {os.cpu_count()}; "
          f"load average: {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'what':<12} {'R':>4} {'batch':>5} {'ms/batch':>9} {'ms/face':>8} {'best/face':>9}")
    for name, size, batch, ms, per_face, best in rows:
        print(f"{name:<12} {size:>4} {batch:>5} {ms:>9.2f} {per_face:>8.2f} {best:>9.2f}")


if __name__ == "__main__":
    main()
