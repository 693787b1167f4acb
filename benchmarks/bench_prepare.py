"""Throughput of `selfswap prepare` on LFW with 1 and 2 worker processes.

    python benchmarks/bench_prepare.py [--images 100] [--workers 1 2] [--embedding dlib]

Each run prepares the same first N images of `lfw_train.txt` into a fresh temporary folder
(so nothing is resumed) and reports wall-clock time including process start-up and model
loading, i.e. what a user waits for, and the CPU time spent per image (this process and its
workers), which does not depend on how busy the machine is: on otherwise idle cores a run
approaches `workers / cpu_per_image` images/s. Needs `../shared/data`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from selfswap.data.prepare import make_settings, prepare

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="LFW images (100)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--embedding", default="dlib", choices=["dlib", "torch", "none"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args(argv)
    split = args.data / "splits" / "lfw_train.txt"
    if not split.is_file():
        print(f"LFW not found at {args.data}", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        listing = Path(tmp) / "list.txt"
        lines = split.read_text().splitlines()[: args.images]
        listing.write_text("\n".join(lines) + "\n")
        for workers in args.workers:
            settings = make_settings(args.size, identity_from="folder", embedding=args.embedding)
            start, cpu = time.perf_counter(), _cpu_seconds()
            summary = prepare(
                listing,
                Path(tmp) / f"out{workers}",
                settings,
                root=args.data / "lfw",
                identity_from="folder",
                workers=workers,
                chunk_size=8,
                progress=False,
                log=lambda _: None,
            )
            wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
            rows.append((workers, summary.images_seen, summary.faces, wall, cpu))
    load = os.getloadavg()[0]
    print(
        f"selfswap prepare, {args.images} LFW images, size {args.size}, embedding "
        f"{args.embedding}, {os.cpu_count()} CPUs, load average {load:.1f}"
    )
    print(
        f"{'workers':>7} {'images':>7} {'faces':>6} {'seconds':>8} {'images/s':>9} "
        f"{'CPU s/img':>9} {'idle-core images/s':>18}"
    )
    for workers, images, faces, wall, cpu in rows:
        per_image = cpu / images
        print(
            f"{workers:>7} {images:>7} {faces:>6} {wall:>8.1f} {images / wall:>9.2f} "
            f"{per_image:>9.3f} {workers / per_image:>18.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
