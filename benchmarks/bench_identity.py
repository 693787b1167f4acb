"""Identity embedding speed (dlib vs the PyTorch port) and, with --auc, LFW ROC AUC.

    python benchmarks/bench_identity.py [--repeats 5] [--threads N] [--auc] [--pairs 1200]

Speed uses a 640x480 image with one face (the public-domain astronaut, placed on a grey
canvas). The AUC uses ../shared/data (LFW eval split): seeded same/different-person pairs,
faces found with dlib's HOG detector (upsample 1, box nearest the centre).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from selfswap.face.identity import (
    SAME_PERSON_DISTANCE,
    IdentityEncoder,
    central_face_landmarks5,
)
from selfswap.face.metrics import lfw_verification

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_image() -> np.ndarray:
    """640x480 RGB uint8 with the astronaut's face (one face)."""
    import skimage.data

    face = skimage.data.astronaut()[:380, 40:440]  # 380x400
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[50:430, 120:520] = face
    return canvas


def best_time(fn, repeats: int) -> float:
    """Best wall time in seconds of `repeats` calls of `fn`, after one warm-up call."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_speed(repeats: int) -> None:
    enc = IdentityEncoder()
    img = test_image()
    lm = central_face_landmarks5(img)
    assert lm is not None, "no face in the benchmark image"
    _ = enc.net  # load outside the timing
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, image 640x480")
    t = best_time(lambda: enc.embed_dlib(img, lm), repeats)
    print(f"dlib compute_face_descriptor        : {1000 * t:7.1f} ms/face")
    for b in (1, 16):
        t = best_time(lambda b=b: enc.embed([img] * b, [lm] * b), repeats)
        print(f"torch port, batch {b:2d} (chip + net)  : {1000 * t / b:7.1f} ms/face")
    chips = enc.chips(img, [lm]).repeat(16, 1, 1, 1)
    with torch.no_grad():
        t = best_time(lambda: enc.net(chips), repeats)
    print(f"torch port, batch 16 (net only)     : {1000 * t / 16:7.1f} ms/face")


def bench_auc(n_pairs: int, seed: int) -> None:
    split = SHARED_DATA / "splits" / "lfw_eval.txt"
    if not split.is_file():
        print(f"--auc: shared data not found at {SHARED_DATA}")
        return
    t0 = time.perf_counter()
    r = lfw_verification(SHARED_DATA / "lfw", split.read_text().split(), n_pairs, seed)
    print(
        f"LFW eval ({r['faces']} faces embedded, {r['missed']} without a HOG detection, "
        f"{time.perf_counter() - t0:.0f} s): {r['same']} same / {r['different']} different "
        f"pairs, ROC AUC {r['auc']:.4f}, accuracy at distance < {SAME_PERSON_DISTANCE}: "
        f"{r['accuracy']:.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--auc", action="store_true", help="also measure LFW ROC AUC")
    ap.add_argument(
        "--pairs", type=int, default=1200, help="pairs of each kind drawn (before HOG misses)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_speed(args.repeats)
    if args.auc:
        bench_auc(args.pairs, args.seed)


if __name__ == "__main__":
    main()
