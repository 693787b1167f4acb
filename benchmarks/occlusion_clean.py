"""What the occlusion segmenter holds back on natural, full-size photos (issue #17).

    python benchmarks/occlusion_clean.py [--targets 300] [--compare FILE ...]
        [--thresholds 0.5 0.7 0.9]

The synthetic benchmark (`benchmarks/occlusion.py`) counts false alarms on LFW faces with no
occluder added; this one looks at the target photos of `celeba-wild-dev` (evaluation-only
data, full size, as people swap them), each photo's largest face: the share of the face (the
hull of its 68 landmarks in the 128-px crop) the segmenter would keep from the target. Some
of these photos have real occluders (hands, microphones, sunglasses, hair), most have none,
so a high share on many faces means swaps that are partly undone. Rows: the shipped
segmenter at each threshold (its own grow), and any `--compare` weights at 0.5.

`--sheet FILE` also writes a contact sheet (dataset pixels: keep it local, never commit it)
of the `--sheet-faces` faces the shipped segmenter holds back most of: the target, the swap of
Grace Hopper without occlusion handling and with `--occlusion segmenter` (shipped model).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def face_hull(landmarks: np.ndarray, size: int) -> np.ndarray:
    hull = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(landmarks.astype(np.int32)), 1)
    return hull


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--compare", nargs="*", default=[], type=Path)
    parser.add_argument("--thresholds", nargs="*", type=float, default=[0.5, 0.7, 0.9])
    parser.add_argument("--sheet", type=Path, help="contact sheet of the worst faces (local)")
    parser.add_argument("--sheet-faces", type=int, default=6)
    args = parser.parse_args()
    pairs = DATA / "splits" / "celeba_wild_dev_swap_pairs.tsv"
    if not pairs.is_file():
        print(f"celeba-wild-dev not found under {DATA}: this benchmark needs ../shared/data.")
        return
    import torch

    torch.set_num_threads(1)
    from selfswap.face import align
    from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
    from selfswap.io.images import load_image
    from selfswap.nets.occluder import OcclusionSegmenter

    with pairs.open() as f:
        names = sorted({row["target"] for row in csv.DictReader(f, delimiter="\t")})
    files = {p.name: p for p in (DATA / "celeba-wild-dev").rglob("*.jpg")}
    analyzer = FaceAnalyzer(AnalyzerConfig(embedding="none"))
    shipped = OcclusionSegmenter.load()
    rows: dict[str, tuple[OcclusionSegmenter, float]] = {
        f"shipped, threshold {t:g}": (shipped, t) for t in args.thresholds
    }
    for path in args.compare:
        rows[f"{path.name}, threshold 0.5"] = (OcclusionSegmenter.load(path), 0.5)
    shares: dict[str, list[float]] = {name: [] for name in rows}
    size = 128
    analysed: list[str] = []
    for name in names[: args.targets]:
        faces = analyzer.analyze(load_image(files[name]))
        if not faces:
            continue
        face = max(faces, key=lambda f: f.box[2] - f.box[0])
        matrix = align.alignment_matrix(face.landmarks68, size)
        crop = align.warp_to_crop(load_image(files[name]), matrix, size)
        hull = face_hull(align.transform_points(face.landmarks68, matrix), size)
        analysed.append(name)
        for row, (segmenter, threshold) in rows.items():
            segmenter.threshold = threshold
            keep = segmenter.predict(crop[None])[0]
            shares[row].append(float((keep * hull).sum() / hull.sum()))
    print(f"# Face held back on {len(next(iter(shares.values())))} celeba-wild-dev targets\n")
    print("| segmenter | mean % | median % | 90th pct. % | faces > 15 % | faces > 30 % |")
    print("|---|---|---|---|---|---|")
    for row, values in shares.items():
        v = 100 * np.array(values)
        print(
            f"| {row} | {v.mean():.1f} | {np.median(v):.1f} | {np.percentile(v, 90):.1f} | "
            f"{(v > 15).sum()} | {(v > 30).sum()} |"
        )
    if args.sheet:
        shipped_row = f"shipped, threshold {args.thresholds[0]:g}"
        worst = np.argsort(shares[shipped_row])[::-1][: args.sheet_faces]
        write_sheet(args.sheet, [files[analysed[i]] for i in worst])


def write_sheet(out: Path, photos: list[Path]) -> None:
    """Rows of (target, swap, swap with the segmenter), around each photo's largest face."""
    from selfswap.api import Swapper
    from selfswap.io.images import load_image, save_image
    from selfswap.samples import grace_hopper
    from selfswap.swap.options import SwapConfig

    plain = Swapper.load("default")
    held = plain.using(SwapConfig(occlusion="segmenter"))
    rows = []
    for path in photos:
        target = load_image(path)
        x0, y0, x1, y1 = (int(v) for v in max(plain.faces_in(target), key=lambda f: f.width).box)
        w, h = x1 - x0, y1 - y0
        box = (slice(max(0, y0 - h // 2), y1 + h // 2), slice(max(0, x0 - w // 2), x1 + w // 2))
        shown = [target, *(s.swap_image(grace_hopper(), target).image for s in (plain, held))]
        rows.append(np.hstack([cv2.resize(im[box], (256, 256)) for im in shown]))
    save_image(out, np.vstack(rows))
    print(f"wrote {out} (dataset pixels: keep it local)")


if __name__ == "__main__":
    sys.exit(main())
