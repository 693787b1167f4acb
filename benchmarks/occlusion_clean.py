"""What the occlusion segmenter holds back on natural, full-size photos (issue #17).

    python benchmarks/occlusion_clean.py [--targets 300] [--compare FILE ...]
        [--thresholds 0.5 0.7 0.9] [--compare-thresholds 0.5]

The synthetic benchmark (`benchmarks/occlusion.py`) counts false alarms on LFW faces with no
occluder added; this one looks at the target photos of `celeba-wild-dev` (evaluation-only
data, full size, as people swap them), each photo's largest face: the share of the face (the
hull of its 68 landmarks in the 128-px crop) the segmenter would keep from the target. Some
of these photos have real occluders (hands, microphones, sunglasses, hair), most have none,
so a high share on many faces means swaps that are partly undone. Rows: the shipped
segmenter at each threshold (its own grow), and any `--compare` weights at each
`--compare-thresholds`. The analysed crops are cached (`--cache`, default
`$SELFSWAP_HOME/occlusion/wild-clean-crops.npz`: dataset pixels, local only), so comparing
segmenters afterwards takes seconds; `--no-cache` analyses the photos afresh.

`--sheet FILE` also writes a contact sheet (dataset pixels: keep it local, never commit it)
of the `--sheet-faces` faces the shipped segmenter holds back most of: the target, the swap of
Grace Hopper without occlusion handling and with `--occlusion segmenter` (shipped model).
"""

from __future__ import annotations

import argparse
import csv
import os
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
    parser.add_argument("--compare-thresholds", nargs="*", type=float, default=[0.5])
    parser.add_argument("--cache", type=Path, help="analysed crops (default: under SELFSWAP_HOME)")
    parser.add_argument("--no-cache", action="store_true", help="analyse the photos afresh")
    args = parser.parse_args()
    pairs = DATA / "splits" / "celeba_wild_dev_swap_pairs.tsv"
    if not pairs.is_file():
        print(f"celeba-wild-dev not found under {DATA}: this benchmark needs ../shared/data.")
        return
    import torch

    torch.set_num_threads(1)
    from selfswap.nets.occluder import OcclusionSegmenter

    with pairs.open() as f:
        names = sorted({row["target"] for row in csv.DictReader(f, delimiter="\t")})
    files = {p.name: p for p in (DATA / "celeba-wild-dev").rglob("*.jpg")}
    home = Path(os.environ.get("SELFSWAP_HOME", Path.home() / ".cache" / "selfswap"))
    cache = args.cache or home / "occlusion" / "wild-clean-crops.npz"
    analysed, crops, hulls = wild_crops(names[: args.targets], files, cache, args.no_cache)
    shipped = OcclusionSegmenter.load()
    rows: dict[str, tuple[OcclusionSegmenter, float]] = {
        f"shipped, threshold {t:g}": (shipped, t) for t in args.thresholds
    }
    for path in args.compare:
        compared = OcclusionSegmenter.load(path)
        label = (
            path.name
            if [p.name for p in args.compare].count(path.name) == 1
            else f"{path.parent.name}/{path.name}"
        )
        for t in args.compare_thresholds:
            rows[f"{label}, threshold {t:g}"] = (compared, t)
    shares: dict[str, list[float]] = {}
    for row, (segmenter, threshold) in rows.items():
        segmenter.threshold = threshold
        keep = np.concatenate([segmenter.predict(crops[i : i + 32])
                               for i in range(0, len(crops), 32)])  # fmt: skip
        shares[row] = list((keep * hulls).sum((1, 2)) / hulls.sum((1, 2)))
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


def wild_crops(names: list[str], files: dict[str, Path], cache: Path, fresh: bool = False):
    """Each photo's largest face: `(names, crops (N, 128, 128, 3) uint8, hulls (N, 128, 128)
    uint8)`, analysed at full size, or read from `cache` (written after analysing)."""
    if cache.is_file() and not fresh:
        with np.load(cache, allow_pickle=False) as f:
            if list(f["requested"]) == names:
                return list(f["names"]), f["crops"], f["hulls"]
    from selfswap.face import align
    from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
    from selfswap.io.images import load_image

    analyzer = FaceAnalyzer(AnalyzerConfig(embedding="none"))
    size = 128
    analysed, crops, hulls = [], [], []
    for name in names:
        image = load_image(files[name])
        faces = analyzer.analyze(image)
        if not faces:
            continue
        face = max(faces, key=lambda f: f.box[2] - f.box[0])
        matrix = align.alignment_matrix(face.landmarks68, size)
        crops.append(align.warp_to_crop(image, matrix, size))
        hulls.append(face_hull(align.transform_points(face.landmarks68, matrix), size))
        analysed.append(name)
    crops_a, hulls_a = np.stack(crops), np.stack(hulls)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, requested=np.array(names), names=np.array(analysed),
                        crops=crops_a, hulls=hulls_a)  # fmt: skip
    return analysed, crops_a, hulls_a


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
