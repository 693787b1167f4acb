"""Occlusion-aware swaps (issue #17): synthetic occluders on LFW eval faces, swapped with and
without occlusion handling.

Usage: python benchmarks/occlusion.py [--faces 120] [--model default]
           [--segmenter FILE] [--out benchmarks/results/occlusion.md]
       python benchmarks/occlusion.py --sheet docs/occlusion-sheet.jpg   (public-domain only)

Faces: targets and sources of `splits/lfw_eval_swap_pairs.tsv` (people never seen in
training). Occluders: the kinds held out of the segmenter's training
(`selfswap.data.occluders.EVAL_KINDS`: microphones, held objects, scarves, real hands) drawn
with textures from scikit-image's sample pictures, plus real hands cut out of
`celeba-wild-dev` photos (evaluation-only data) with MediaPipe hand landmarks and selfie
segmentation; every fifth face has no occluder (false alarms). The occluded photo is
analysed afresh, swapped once, and pasted back with each method's mask.

Measured per method:
- survive: share of the occluder's pixels (coverage ≥ 0.5) inside the face's paste region
  that the output leaves unchanged (exactly, and within 4 levels);
- IoU of the kept mask (> 0.5) with the occluder (coverage > 0.5), in the crop, inside the
  paste region;
- face held back: share of the paste region not covered by an occluder that the method
  keeps from the target anyway (the swap it loses), on all faces and on clean faces;
- ms per face of the method's mask (1 thread): wall-clock, and CPU time of the calling thread
  (`time.thread_time`; TFLite and torch run in it with one thread), which the shared machine's
  load inflates far less (the load average is printed with them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
METHODS = ("none", "hands", "segmenter", "both")


def eval_textures() -> list[np.ndarray]:
    """Textures no training occluder uses: scikit-image's non-face sample pictures."""
    from skimage import data

    names = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
             "coins", "page", "text", "brick", "grass", "gravel", "cell")  # fmt: skip
    out = []
    for name in names:
        try:
            img = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a picture that needs a download is skipped
            continue
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return out


def hand_cutouts(cache: Path, limit: int = 80) -> list[np.ndarray]:
    """RGBA cut-outs of real hands from celeba-wild-dev (cached in `cache`), cut the same way
    as the training cut-outs (`selfswap.data.occluders.cut_hands`) but from evaluation-only
    photos no training run sees."""
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            return [f[k] for k in sorted(f.files)]
    from selfswap.data.occluders import cut_hands
    from selfswap.swap.occlusion import HandLandmarker, litert_interpreter

    tracker = HandLandmarker(variant="full")
    selfie = litert_interpreter("selfie_segmentation")
    out = []
    for path in sorted((DATA / "celeba-wild-dev" / "images").glob("*.jpg")):
        out += cut_hands(cv2.imread(str(path))[:, :, ::-1].copy(), tracker, selfie)
        if len(out) >= limit:
            break
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **{f"{i:03d}": c for i, c in enumerate(out)})
    return out


def _region_frame(mask: np.ndarray, matrix: np.ndarray, shape) -> np.ndarray:
    """Where the feathered paste mask reaches in the frame (> 0)."""
    from selfswap.face.align import warp_from_crop
    from selfswap.swap.blend import feather_mask

    return warp_from_crop(feather_mask(mask), matrix, shape[1], shape[0]) > 0


def run(args: argparse.Namespace) -> str:
    import torch

    torch.set_num_threads(1)
    from selfswap.data.occluders import EVAL_KINDS, occlude
    from selfswap.face import align
    from selfswap.swap.occlusion import Occlusion
    from selfswap.swap.pipeline import FaceSwapper

    engine = FaceSwapper.load(args.model)
    home = Path(os.environ.get("SELFSWAP_HOME", Path.home() / ".cache" / "selfswap"))
    cutouts = hand_cutouts(home / "occlusion" / "eval_hand_cutouts.npz")
    textures = eval_textures()
    methods = {m: Occlusion(occlusion=m) for m in args.methods}
    from selfswap.nets.occluder import OcclusionSegmenter

    seg = OcclusionSegmenter.load(args.segmenter)  # None: the shipped one
    seg.threshold = seg.threshold if args.threshold is None else args.threshold
    seg.grow = seg.grow if args.grow is None else args.grow
    for m in ("segmenter", "both"):
        if m in methods:
            methods[m]._models["segmenter"] = seg
    for variant in args.hand_models or ():  # the hands with other MediaPipe models
        methods[f"hands ({variant})"] = Occlusion(occlusion="hands", hand_models=variant)
    if args.compare_segmenter:  # another segmenter file (e.g. the previously shipped one)
        old = OcclusionSegmenter.load(args.compare_segmenter)
        for m in ("segmenter", "both"):
            if m in args.methods:
                methods[f"{m} (compared)"] = Occlusion(occlusion=m)
                methods[f"{m} (compared)"]._models["segmenter"] = old
        if "both" in args.methods:
            methods["both (compared)"]._models["hands"] = methods["both"].hand_tracker
    for spec in args.sweep or ():  # segmenter variants "THRESHOLD/GROW"
        threshold, grow = (float(v) for v in spec.split("/"))
        variant = Occlusion(occlusion="segmenter")
        variant._models["segmenter"] = OcclusionSegmenter(seg.net, threshold, grow)
        methods[f"segmenter {spec}"] = variant
    pairs = [line.split("\t") for line in (DATA / "splits" / "lfw_eval_swap_pairs.tsv")
             .read_text().splitlines() if line and not line.startswith("source")]  # fmt: skip
    rng = np.random.default_rng(args.seed)
    kinds = [*EVAL_KINDS, "clean"]
    stats: dict = {m: {k: [] for k in kinds} for m in methods}
    times = {m: [] for m in methods}
    cpu = {m: [] for m in methods}
    lost = 0
    for n, (source_name, _, target_name) in enumerate(
        pairs[args.offset : args.offset + args.faces]
    ):
        kind = kinds[n % len(kinds)]
        target = cv2.imread(str(DATA / "lfw" / target_name))[:, :, ::-1].copy()
        clean = engine.fast_analyzer.analyze(target)
        if not clean:
            continue
        face = max(clean, key=lambda f: f.width)
        if kind == "clean":
            occluded, alpha = target, np.zeros(target.shape[:2], np.float32)
        else:
            occluded, alpha, _ = occlude(target, face.landmarks68, rng, (kind,), textures, cutouts)
        found = engine.fast_analyzer.analyze(occluded)
        if not found:
            lost += 1
            continue
        near = min(found, key=lambda f: np.linalg.norm(f.box - face.box))
        source = engine.source_identity([cv2.imread(str(DATA / "lfw" / source_name))[:, :, ::-1]])
        engine.occlusion = None
        crops, base, matrices = engine.swap_faces(occluded, [near], source)
        truth_crop = align.warp_to_crop(alpha, matrices[0], engine.size) > 0.5
        inside = base[0] > 0.5
        touched = _region_frame(base[0], matrices[0], occluded.shape) & (alpha >= 0.5)
        for m, occ in methods.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            keep = occ.keep(occluded, [near], matrices, engine.size)
            times[m].append(time.perf_counter() - start)
            cpu[m].append(time.thread_time() - start_cpu)
            out = engine.paste(occluded, crops, base * (1 - keep), matrices)
            diff = np.abs(out.astype(int) - occluded).max(axis=2)
            pred = keep[0] > 0.5
            stats[m][kind].append({
                "occluder_px": int(touched.sum()),
                "exact": int((touched & (diff == 0)).sum()),
                "near": int((touched & (diff <= 4)).sum()),
                "inter": int((pred & truth_crop & inside).sum()),
                "union": int(((pred | truth_crop) & inside).sum()),
                "clean_px": int((inside & ~truth_crop).sum()),
                "held": int((inside & ~truth_crop & pred).sum()),
            })  # fmt: skip
        if args.verbose:
            print(n, kind, {m: stats[m][kind][-1]["exact"] for m in methods}, flush=True)
    return report(stats, times, cpu, lost, args, len(cutouts))


def _pool(rows: list[dict], key: str, total: str) -> float:
    t = sum(r[total] for r in rows)
    return 100.0 * sum(r[key] for r in rows) / t if t else float("nan")


def report(stats, times, cpu, lost, args, cutouts: int) -> str:
    load = os.getloadavg()
    lines = [
        "# Occlusion-aware swaps (issue #17)",
        "",
        f"`python benchmarks/occlusion.py --faces {args.faces} --offset {args.offset} "
        f"--model {args.model}"
        + (f" --segmenter {args.segmenter}" if args.segmenter else "")
        + (f" --threshold {args.threshold}" if args.threshold is not None else "")
        + (f" --grow {args.grow}" if args.grow is not None else "")
        + (f" --sweep {' '.join(args.sweep)}" if args.sweep else "")
        + (f" --hand-models {' '.join(args.hand_models)}" if args.hand_models else "")
        + (f" --compare-segmenter {args.compare_segmenter}" if args.compare_segmenter else "")
        + (f" --methods {' '.join(args.methods)}" if tuple(args.methods) != METHODS else "")
        + "`",
        "",
        f"{sum(len(v) for v in stats['none'].values())} LFW eval faces (pairs file order), "
        f"{lost} lost by the analyser once occluded; occluders held out of training: "
        f"{', '.join(k for k in stats['none'] if k != 'clean')} ({cutouts} real hand cut-outs "
        "from celeba-wild-dev), and clean faces. Pooled over pixels.",
        "",
        "| method | survive exact % | survive ≤4 % | IoU % | face held back % (all) | "
        "held back % (clean faces) | ms / face | CPU ms / face |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, by_kind in stats.items():
        rows = [r for k, v in by_kind.items() if k != "clean" for r in v]
        everything = [r for v in by_kind.values() for r in v]
        ms = 1000 * np.median(times[m]) if times[m] else float("nan")
        cpu_ms = 1000 * np.median(cpu[m]) if cpu[m] else float("nan")
        lines.append(
            f"| {m} | {_pool(rows, 'exact', 'occluder_px'):.1f} | "
            f"{_pool(rows, 'near', 'occluder_px'):.1f} | {_pool(rows, 'inter', 'union'):.1f} | "
            f"{_pool(everything, 'held', 'clean_px'):.1f} | "
            f"{_pool(by_kind['clean'], 'held', 'clean_px'):.1f} | {ms:.1f} | {cpu_ms:.1f} |"
        )
    lines += ["", "Survive exact % by occluder kind:", "",
              "| method | " + " | ".join(k for k in stats["none"] if k != "clean") + " |",
              "|---|" + "---|" * (len(stats["none"]) - 1)]  # fmt: skip
    for m, by_kind in stats.items():
        cells = [f"{_pool(v, 'exact', 'occluder_px'):.1f}" for k, v in by_kind.items()
                 if k != "clean"]  # fmt: skip
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"Load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on "
              f"{os.cpu_count()} cores while measuring; times are medians, 1 thread."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _covering(target: np.ndarray, face, kind: str, rng) -> np.ndarray:
    """An occluder of `kind` covering 10-40 % of the face's 68-point hull (first such draw)."""
    from selfswap.data.occluders import occlude

    hull = np.zeros(target.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(face.landmarks68).astype(np.int32)), 1)
    for _ in range(200):
        occluded, alpha, _ = occlude(target, face.landmarks68, rng, (kind,))
        if 0.1 <= float((alpha[hull > 0] > 0.5).mean()) <= 0.4:
            break
    return occluded


def sheet(path: Path, model: str) -> None:
    """Public-domain faces with synthetic occluders. Columns: occluded target, swap, swap
    with `--occlusion both --keep-mouth true`, and what that kept from the target (red)."""
    import torch

    torch.set_num_threads(1)
    from selfswap.face.align import warp_from_crop
    from selfswap.samples import astronaut, grace_hopper
    from selfswap.swap.occlusion import configure
    from selfswap.swap.pipeline import FaceSwapper

    engine = FaceSwapper.load(model)
    rows = []
    people = [(astronaut(), grace_hopper()), (grace_hopper(), astronaut())]
    rng = np.random.default_rng(0)
    for r, kind in enumerate(("hand", "hand", "held", "mic", "hair", "glasses")):
        target, source_photo = people[r % 2]
        face = max(engine.fast_analyzer.analyze(target), key=lambda f: f.width)
        occluded = _covering(target, face, kind, rng)
        tiles = [occluded]
        for keep_mouth, mode in ((False, "none"), (True, "both")):
            occlusion = configure(engine, keep_mouth, mode)
            tiles.append(engine.swap_image([source_photo], occluded).image)
        found = engine.fast_analyzer.analyze(occluded)
        keep = np.zeros(occluded.shape[:2], np.float32)
        for f in found:
            matrix = align_matrix(f, engine.size)
            crop_keep = occlusion.keep(occluded, [f], matrix[None], engine.size)[0]
            keep = np.maximum(keep, warp_from_crop(crop_keep, matrix, *occluded.shape[1::-1]))
        shown = occluded.astype(np.float32)
        shown[..., 0] = shown[..., 0] * (1 - 0.6 * keep) + 255 * 0.6 * keep
        tiles.append(shown.astype(np.uint8))
        configure(engine)
        x0, y0, x1, y1 = face.box
        side = 1.9 * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.15 * side
        s = 256 / side
        m = np.array([[s, 0, 128 - cx * s], [0, s, 128 - cy * s]])
        rows.append(np.concatenate([cv2.warpAffine(t, m, (256, 256)) for t in tiles], 1))
    grid = np.concatenate(rows, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {path} (columns: occluded target, swap, swap with --occlusion both "
          "--keep-mouth true, kept from the target in red)")  # fmt: skip


def align_matrix(face, size: int) -> np.ndarray:
    from selfswap.face.align import alignment_matrix

    return alignment_matrix(face.landmarks68, size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", type=int, default=120)
    p.add_argument("--model", default="default")
    p.add_argument("--segmenter", help="occluder .safetensors (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--offset", type=int, default=0, help="first pair used (tuning: 250)")
    p.add_argument("--threshold", type=float, help="segmenter probability threshold")
    p.add_argument("--grow", type=float, help="segmenter mask growth, fraction of R")
    p.add_argument("--sweep", nargs="*", help="extra segmenter variants THRESHOLD/GROW")
    p.add_argument(
        "--hand-models",
        nargs="*",
        choices=["lite", "full"],
        help="extra rows: the hands with these MediaPipe model variants",
    )
    p.add_argument("--compare-segmenter", help="extra rows: segmenter and both with this file")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="methods measured (none is always the reference)")  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "occlusion.md")
    p.add_argument("--sheet", type=Path, help="write the public-domain contact sheet instead")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    if args.sheet:
        sheet(args.sheet, args.model)
        return
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: the benchmark needs the shared LFW data.")
    args.methods = ["none", *(m for m in args.methods if m != "none")]
    text = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
