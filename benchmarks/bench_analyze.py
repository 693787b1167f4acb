"""Milliseconds per face-analysis stage on a 640x480 photo with one face.

Usage: python benchmarks/bench_analyze.py [--repeat 20]
Baseline for ratios: the whole `FaceAnalyzer.analyze` call with dlib's own descriptor.
"""

from __future__ import annotations

# isort: off
import selfswap  # noqa: F401  (before numpy: its thread settings, see its __init__)
# isort: on

import argparse
import time

import cv2
import numpy as np

from selfswap.face import landmarks as lm
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.face.identity import IdentityEncoder
from selfswap.face.tddfa import TDDFA
from selfswap.samples import astronaut


def photo_640x480() -> np.ndarray:
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[:, 80:560] = cv2.resize(astronaut(), (480, 480), interpolation=cv2.INTER_AREA)
    return canvas


def timed(fn, repeat: int) -> float:
    """Median ms of `repeat` calls of `fn` after a warm-up (a median, not a mean: on a
    shared machine one call in ten can take several times as long)."""
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    image = photo_640x480()
    analyzer = FaceAnalyzer(AnalyzerConfig(embedding="dlib"))
    detections = analyzer.detect(image)
    box = np.asarray(detections[0].box, np.float32)
    p68 = lm.landmarks68(image, box)
    p5 = lm.landmarks5(image, box)
    tddfa, identity = TDDFA(), IdentityEncoder()
    identity.embed([image], [p5])
    chips16 = [image] * 16, [p5] * 16

    rows = [
        (f"detect ({analyzer.detector.name})", timed(lambda: analyzer.detect(image), args.repeat)),
        ("68 landmarks (dlib)", timed(lambda: lm.landmarks68(image, box), args.repeat)),
        ("5 landmarks (dlib)", timed(lambda: lm.landmarks5(image, box), args.repeat)),
        ("3DMM, 1 pass", timed(lambda: tddfa.fit_landmarks(image, [p68], False), args.repeat)),
        ("3DMM, 2 passes (default)", timed(lambda: tddfa.fit_landmarks(image, [p68]), args.repeat)),
        ("embedding, dlib", timed(lambda: identity.embed_dlib(image, p5), args.repeat)),
        (
            "embedding, torch port, batch 1",
            timed(lambda: identity.embed([image], [p5]), args.repeat),
        ),
        (
            "embedding, torch port, batch 16 (per face)",
            timed(lambda: identity.embed(*chips16), max(2, args.repeat // 4)) / 16,
        ),
        ("analyze() total, dlib embedding", timed(lambda: analyzer.analyze(image), args.repeat)),
    ]
    no_id = FaceAnalyzer(AnalyzerConfig(embedding="none"))
    rows.append(("analyze() total, no embedding", timed(lambda: no_id.analyze(image), args.repeat)))
    baseline = rows[-2][1]
    print(f"640x480, one face, {args.repeat} repeats; ratio = stage / analyze() with dlib")
    print(f"{'stage':45s} {'ms':>8s} {'ratio':>7s}")
    for name, ms in rows:
        print(f"{name:45s} {ms:8.1f} {ms / baseline:7.2f}")


if __name__ == "__main__":
    main()
