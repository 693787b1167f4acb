"""Face detection benchmark: detection rate on the LFW eval split and speed.

A hit is a detected face whose box centre lies within 0.25 x image side of the image centre
(LFW images are centred on the face); "any face" counts images with at least one detection.
Speed is the mean wall time of `detect` per 250x250 LFW image, and the median over repeated
runs on a 640x480 photo (the astronaut, resized to 480x480 and padded to 640x480).
As a harder secondary set (more head pose, faces filling the frame, ~50 px wide), the hit
rate on the first ``--celeba`` images of ``celeba-aligned-small`` (89x109) is reported too.
Large photos: the median time on the 640x480 photo upscaled to 4000x3000 and the faces found
there. With several detectors, the 640x480 and 4000x3000 timings are taken again with the
detectors taking turns (the machine is shared). False faces: faces found on face-free
scikit-image scenes (each at its own size and at 4000x3000) and extra faces on the one-face
astronaut upscaled to 2400, 4000 and 8000 px wide (``--no-fp`` skips them).
``--small N`` adds the recall of N LFW faces pasted at 24, 40 and 60 px into a 4000x3000 scene.
``--pose N`` adds hit rates by head yaw on the first N CelebA images, the yaw estimated by
3DDFA_V2 from a fixed centred region (CelebA images are aligned, so no detector is needed).
``--yunet-backends`` only times YuNet run by ONNX Runtime (the default) against the baseline,
``cv2.FaceDetectorYN``, both on one thread and taking turns: one pass on the 640x480 photo and
``detect`` on the 640x480 and 4000x3000 photos (median ms, ratio baseline / ONNX Runtime).

    python benchmarks/bench_detection.py                      # all available detectors
    python benchmarks/bench_detection.py --limit 200 --detectors hog,blazeface
    python benchmarks/bench_detection.py --detectors mmod --limit 300 --celeba 200 --append
    python benchmarks/bench_detection.py --pose 4000 --limit 1 --celeba 0 --append
    python benchmarks/bench_detection.py --small 40 --limit 1 --celeba 0 --no-fp --append
    python benchmarks/bench_detection.py --fit-box short    # refit BlazeFace box calibration
    python benchmarks/bench_detection.py --fit-box yunet    # refit YuNet box calibration
    python benchmarks/bench_detection.py --yunet-backends --repeats 50 --append

A detector may be given constructor arguments as ``name:key=value:key=value``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

from selfswap.face.detect import (
    DEFAULT_DETECTOR,
    FaceDetector,
    available_detectors,
    blaze_box_features,
    get_detector,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "detection.md"


def parse_detector(spec: str) -> tuple[str, dict[str, object]]:
    """``name:key=value:...`` -> (name, kwargs); values are int, float, bool, None or str."""
    name, *parts = spec.split(":")
    kwargs: dict[str, object] = {}
    for part in parts:
        key, value = part.split("=", 1)
        parsed: object = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        if value in ("True", "False"):
            parsed = value == "True"
        kwargs[key] = None if value == "None" else parsed
    return name, kwargs


def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def photo_640x480() -> np.ndarray:
    """The astronaut (face ~85 px wide) on a 640x480 canvas."""
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[:, 80:560] = cv2.resize(skdata.astronaut(), (480, 480), interpolation=cv2.INTER_AREA)
    return canvas


def photo_4000x3000() -> np.ndarray:
    """The 640x480 photo upscaled to 4000x3000 (one face, ~530 px wide)."""
    return cv2.resize(photo_640x480(), (4000, 3000), interpolation=cv2.INTER_CUBIC)


# Face-free scenes (scikit-image data) for false positives, each at its own size and upscaled
# to 4000x3000 (the size at which tiling used to find faces on textures).
FACE_FREE = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "coins")
UPSCALED_SIDES = (2400, 4000, 8000)  # the one-face astronaut, upscaled to this long side


def false_faces(detector: FaceDetector) -> tuple[int, int]:
    """Faces found on the face-free scenes; extra faces on the upscaled one-face astronaut."""
    on_free = 0
    for name in FACE_FREE:
        image = getattr(skdata, name)()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        on_free += len(detector.detect(image))
        on_free += len(detector.detect(cv2.resize(image, (4000, 3000))))
    extra = 0
    astronaut = skdata.astronaut()
    for side in UPSCALED_SIDES:
        big = cv2.resize(astronaut, (side, side * 3 // 4), interpolation=cv2.INTER_CUBIC)
        extra += abs(len(detector.detect(big)) - 1)
    return on_free, extra


def is_hit(box: tuple[float, float, float, float], w: int, h: int) -> bool:
    """Whether a box centre is within 0.25 x image side of the image centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return float(np.hypot(cx - w / 2, cy - h / 2)) <= 0.25 * min(w, h)


def rate(detector: FaceDetector, files: list[Path]) -> tuple[float, float, float, list[str]]:
    """Hit rate, any-face rate, mean ms per image and the missed files."""
    hits = anyface = 0
    elapsed = 0.0
    misses: list[str] = []
    for path in files:
        image = load_rgb(path)
        t0 = time.perf_counter()
        found = detector.detect(image)
        elapsed += time.perf_counter() - t0
        h, w = image.shape[:2]
        anyface += bool(found)
        if any(is_hit(d.box, w, h) for d in found):
            hits += 1
        else:
            misses.append(f"{path.parent.name}/{path.name}")
    n = max(len(files), 1)
    return hits / n, anyface / n, 1000 * elapsed / n, misses


def bench_one(
    spec: str, files: list[Path], celeba: list[Path], repeats: int, with_fp: bool = True
) -> dict[str, object]:
    """Rates and timings of one detector."""
    name, kwargs = parse_detector(spec)
    detector = get_detector(name, **kwargs)
    photo = photo_640x480()
    detector.detect(photo)  # load the model outside the timings
    hit, anyface, ms_lfw, misses = rate(detector, files)
    celeba_hit, _, _, celeba_misses = rate(detector, celeba)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = detector.detect(photo)
        times.append(time.perf_counter() - t0)
    large = photo_4000x3000()
    large_times = []
    for _ in range(max(1, min(repeats, 3))):
        t0 = time.perf_counter()
        found_large = detector.detect(large)
        large_times.append(time.perf_counter() - t0)
    on_free, extra = false_faces(detector) if with_fp else (-1, -1)
    return {
        "detector": spec,
        "n": len(files),
        "hit": hit,
        "any": anyface,
        "ms_lfw": ms_lfw,
        "n_celeba": len(celeba),
        "celeba": celeba_hit,
        "ms_640": 1000 * statistics.median(times),
        "faces_640": len(found),
        "ms_4000": 1000 * statistics.median(large_times),
        "faces_4000": len(found_large),
        "fp_free": on_free,
        "fp_upscaled": extra,
        "misses": misses + celeba_misses,
    }


def interleaved_times(specs: list[str], repeats: int) -> list[tuple[float, float]]:
    """Median ms on the 640x480 and 4000x3000 photos, detectors taking turns each round."""
    detectors = [get_detector(n, **kw) for n, kw in map(parse_detector, specs)]
    photos = [photo_640x480(), photo_4000x3000()]
    times: list[list[list[float]]] = [[[], []] for _ in detectors]
    for d in detectors:
        d.detect(photos[0])
    for k, photo in enumerate(photos):
        for _ in range(repeats if k == 0 else max(1, min(repeats, 5))):
            for i, d in enumerate(detectors):
                t0 = time.perf_counter()
                d.detect(photo)
                times[i][k].append(1000 * (time.perf_counter() - t0))
    return [(statistics.median(a), statistics.median(b)) for a, b in times]


def yunet_backends_table(repeats: int, threads: int = 1) -> str:
    """Median ms of YuNet by ONNX Runtime (the coarser pyramid levels on a second thread, the
    default, and all on one thread) and by ``cv2.FaceDetectorYN`` (the baseline), taking turns
    in the same process, as a markdown table."""
    from selfswap.face.yunet import YuNetOnnx

    cv2.setNumThreads(threads)  # the ONNX Runtime session runs on one thread
    ort_det = get_detector("yunet", backend="onnxruntime")
    serial = get_detector("yunet", backend="onnxruntime")
    serial.concurrent_levels = False
    cv_det = get_detector("yunet", backend="opencv")
    assert isinstance(ort_det.model(), YuNetOnnx)
    detectors = (cv_det, ort_det, serial)
    photo, large = photo_640x480(), photo_4000x3000()
    bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
    h, w = photo.shape[:2]
    cases = [
        ("one YuNet pass, 640x480", lambda d: d._pass(bgr, w, h), repeats),
        ("`detect`, 640x480", lambda d: d.detect(photo), repeats),
        ("`detect`, 4000x3000", lambda d: d.detect(large), max(1, min(repeats, 5))),
    ]
    lines = [
        f"| YuNet, {threads} thread(s) | cv2.FaceDetectorYN (baseline) ms | ONNX Runtime ms "
        "| baseline / ONNX Runtime | ONNX Runtime, levels on one thread, ms "
        "| faces (baseline, ONNX Runtime) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, run, n in cases:
        counts = [len(run(d)[0] if label.startswith("one") else run(d)) for d in detectors[:2]]
        times: list[list[float]] = [[] for _ in detectors]
        for _ in range(n):
            for k, d in enumerate(detectors):
                t0 = time.perf_counter()
                run(d)
                times[k].append(1000 * (time.perf_counter() - t0))
        base, ours, one = (statistics.median(t) for t in times)
        lines.append(
            f"| {label} | {base:.1f} | {ours:.1f} | {base / ours:.2f}x | {one:.1f} "
            f"| {counts[0]}, {counts[1]} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


SMALL_WIDTHS = (24, 40, 60)  # face widths pasted into the 4000x3000 scene


def small_faces_table(specs: list[str], files: list[Path]) -> str:
    """Recall of small LFW faces pasted into a 4000x3000 scene, and the other faces found.

    Each LFW image (face ~110 px wide, centred) is scaled so that its face has the given
    width and pasted at a position that changes with the image; a hit is a detection whose
    centre is within 0.5 face width of the pasted face's centre.
    """
    scene = cv2.resize(skdata.coffee(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    spots = [(int(rng.integers(0, 3700)), int(rng.integers(0, 2700))) for _ in files]
    head = " | ".join(f"{w} px: recall, other faces" for w in SMALL_WIDTHS)
    lines = [f"| detector | {head} | ms / image |", "|---|" + "---:|" * (len(SMALL_WIDTHS) + 1)]
    for spec in specs:
        name, kwargs = parse_detector(spec)
        detector = get_detector(name, **kwargs)
        cells, elapsed, runs = [], 0.0, 0
        for width in SMALL_WIDTHS:
            hits = others = 0
            for path, (x0, y0) in zip(files, spots, strict=True):
                face = load_rgb(path)
                scale = width / 110
                small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                photo = scene.copy()
                photo[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
                cx, cy = x0 + small.shape[1] / 2, y0 + small.shape[0] / 2
                t0 = time.perf_counter()
                found = detector.detect(photo)
                elapsed += time.perf_counter() - t0
                runs += 1
                near = [np.hypot(d.center[0] - cx, d.center[1] - cy) < 0.5 * width for d in found]
                hits += any(near)
                others += len(found) - sum(near)
            cells.append(f"{100 * hits / len(files):.0f}%, {others}")
        lines.append(f"| {spec} | " + " | ".join(cells) + f" | {1000 * elapsed / runs:.0f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


YAW_BINS = (0, 15, 30, 45, 60, 90)


def celeba_yaws(files: list[Path]) -> np.ndarray:
    """|yaw| in degrees of each aligned CelebA image, by 3DDFA_V2 on a fixed centred ROI."""
    from selfswap.face.tddfa import TDDFA

    tddfa = TDDFA()
    yaws = []
    for path in files:
        image = load_rgb(path)
        h, w = image.shape[:2]
        half = 0.4 * w  # face of the 89x109 aligned crops: centred, ~0.6 w wide
        roi = np.array([[w / 2 - half, 0.57 * h - half, w / 2 + half, 0.57 * h + half]])
        yaws.append(abs(tddfa.fit_rois(image, roi.astype(np.float32))[0]["yaw"]))
    return np.array(yaws)


def pose_table(names: list[str], files: list[Path], yaws: np.ndarray) -> str:
    """Markdown table of hit rates by |yaw| bin."""
    bins = list(zip(YAW_BINS[:-1], YAW_BINS[1:], strict=True))
    which = np.digitize(yaws, YAW_BINS[1:-1])
    counts = [int((which == i).sum()) for i in range(len(bins))]
    head = " | ".join(f"{lo}-{hi}° (n={n})" for (lo, hi), n in zip(bins, counts, strict=True))
    lines = [f"| detector | {head} |", "|---|" + "---:|" * len(bins)]
    for spec in names:
        name, kwargs = parse_detector(spec)
        detector = get_detector(name, **kwargs)
        hits = np.zeros(len(files), bool)
        for k, path in enumerate(files):
            image = load_rgb(path)
            h, w = image.shape[:2]
            hits[k] = any(is_hit(d.box, w, h) for d in detector.detect(image))
        cells = [
            f"{100 * hits[which == i].mean():.1f}%" if counts[i] else "-" for i in range(len(bins))
        ]
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def box_pairs(variant: str, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Calibration features of raw BlazeFace boxes and the matching dlib HOG box targets."""
    hog = get_detector("hog")
    if variant == "yunet":
        blaze = get_detector("yunet", dlib_box=False, verify=False)
    else:
        blaze = get_detector(f"blazeface_{variant}", dlib_box=False)
    feats, targets = [], []
    for path in files:
        image = load_rgb(path)
        h, w = image.shape[:2]
        a = [d for d in hog.detect(image) if is_hit(d.box, w, h)]
        b = [d for d in blaze.detect(image) if is_hit(d.box, w, h)]
        if not (a and b):
            continue
        box, ref = np.array(b[0].box), np.array(a[0].box)
        width = box[2] - box[0]
        shift = ((ref[:2] + ref[2:]) - (box[:2] + box[2:])) / 2 / width
        feats.append(blaze_box_features(box, b[0].keypoints))
        targets.append([shift[0], shift[1], np.log((ref[2] - ref[0]) / width)])
    return np.array(feats), np.array(targets)


def fit_box(variant: str, data: Path) -> None:
    """Ridge-fit the BlazeFace / YuNet -> dlib box calibration on LFW train; check on eval."""
    train = (data / "splits" / "lfw_train.txt").read_text().split()[::15]
    evals = (data / "splits" / "lfw_eval.txt").read_text().split()[::7]
    x, y = box_pairs(variant, [data / "lfw" / rel for rel in train])
    penalty = 1e-3 * len(x) * np.diag([1.0] * (x.shape[1] - 1) + [0.0])
    fit = np.linalg.solve(x.T @ x + penalty, x.T @ y).T
    xe, ye = box_pairs(variant, [data / "lfw" / rel for rel in evals])
    print(f"{len(x)} train / {len(xe)} eval faces; residual std (dx, dy, log scale):")
    print("  raw box       ", (ye - ye.mean(0)).std(0).round(3), "bias", ye.mean(0).round(3))
    print("  calibrated box", (ye - xe @ fit.T).std(0).round(3))
    print("box_fit = (")
    for row in fit.round(3).tolist():
        print(f"    {tuple(row)},")
    print(")")


def fp(count: object) -> str:
    """A false-face count, "-" when not measured."""
    return "-" if count == -1 else str(count)


def table(rows: list[dict[str, object]]) -> str:
    """Markdown table of the results."""
    lines = [
        "| detector | LFW images | LFW hit | LFW any face | CelebA images | CelebA hit | "
        "ms / LFW 250x250 | ms / 640x480 | faces in 640x480 | ms / 4000x3000 | "
        "faces in 4000x3000 | faces on face-free scenes | extra faces, upscaled astronaut |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        celeba = f"{100 * r['celeba']:.2f}%" if r["n_celeba"] else "-"
        lines.append(
            f"| {r['detector']} | {r['n']} | {100 * r['hit']:.2f}% | {100 * r['any']:.2f}% | "
            f"{r['n_celeba']} | {celeba} | {r['ms_lfw']:.1f} | "
            f"{r['ms_640']:.1f} | {r['faces_640']} | {r['ms_4000']:.0f} | {r['faces_4000']} | "
            f"{fp(r['fp_free'])} | {fp(r['fp_upscaled'])} |"
        )
    return "\n".join(lines)


def files_every(data: Path, n: int) -> list[Path]:
    """``n`` LFW eval images spread over the split."""
    split = (data / "splits" / "lfw_eval.txt").read_text().split()
    return [data / "lfw" / rel for rel in split[:: max(1, len(split) // n)][:n]]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write benchmarks/results/detection.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="use the first N eval images")
    parser.add_argument("--detectors", default="", help="comma-separated detector specs")
    parser.add_argument("--celeba", type=int, default=1000, help="CelebA images (0: none)")
    parser.add_argument("--pose", type=int, default=0, help="CelebA images for yaw bins")
    parser.add_argument(
        "--small", type=int, default=0, help="LFW faces pasted small into a 4000x3000 scene"
    )
    parser.add_argument("--repeats", type=int, default=20, help="runs on the 640x480 photo")
    parser.add_argument("--data", type=Path, default=DATA, help="shared data directory")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown results file")
    parser.add_argument("--append", action="store_true", help="append to the results file")
    parser.add_argument(
        "--fit-box", choices=["short", "full", "yunet"], help="refit box calibration"
    )
    parser.add_argument("--show-misses", action="store_true", help="list missed images")
    parser.add_argument(
        "--no-fp", action="store_true", help="skip the false-face scenes (large images, slow)"
    )
    parser.add_argument(
        "--yunet-backends",
        action="store_true",
        help="only time YuNet by ONNX Runtime against cv2.FaceDetectorYN",
    )
    args = parser.parse_args(argv)
    if args.fit_box:
        fit_box(args.fit_box, args.data)
        return
    if args.yunet_backends:
        result = yunet_backends_table(args.repeats)
        command = "python benchmarks/bench_detection.py " + " ".join(argv or [])
        if args.append:
            section = f"\nCommand: `{command.strip()}`\n\n{result}\n"
            args.out.write_text(args.out.read_text() + section)
            print(f"\nappended to {args.out}")
        return

    names = [n for n in args.detectors.split(",") if n] or available_detectors()
    split = (args.data / "splits" / "lfw_eval.txt").read_text().split()
    if args.limit:
        split = split[: args.limit]
    files = [args.data / "lfw" / rel for rel in split]
    celeba = sorted((args.data / "celeba-aligned-small").glob("*.jpg"))[: args.celeba]

    rows = []
    for spec in names:
        row = bench_one(spec, files, celeba, args.repeats, not args.no_fp)
        rows.append(row)
        print(
            f"{spec}: hit {100 * row['hit']:.2f}%  any {100 * row['any']:.2f}%  "
            f"CelebA {100 * row['celeba']:.2f}% of {row['n_celeba']}  "
            f"{row['ms_lfw']:.1f} ms/LFW  {row['ms_640']:.1f} ms/640x480  "
            f"{row['ms_4000']:.0f} ms/4000x3000 ({row['faces_4000']} faces)  "
            f"false faces: {fp(row['fp_free'])} on face-free scenes, "
            f"{fp(row['fp_upscaled'])} extra on the upscaled astronaut",
            flush=True,
        )
        if args.show_misses:
            for miss in row["misses"]:
                print("   miss:", miss)
    if len(rows) > 1:
        # the machine is shared: time the photos again with the detectors taking turns, so
        # that load changes hit every detector alike
        for row, (ms_640, ms_4000) in zip(rows, interleaved_times(names, args.repeats)):
            row["ms_640"], row["ms_4000"] = ms_640, ms_4000
    result = table(rows)
    print()
    print(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bench_detection.py " + " ".join(argv or [])
    section = f"Command: `{command.strip()}`\n\n{result}\n"
    if args.pose:
        pose_files = sorted((args.data / "celeba-aligned-small").glob("*.jpg"))[: args.pose]
        pose = pose_table(names, pose_files, celeba_yaws(pose_files))
        section += (
            f"\nHit rate by |yaw| (3DDFA_V2 estimate) on the first {len(pose_files)} "
            f"celeba-aligned-small images:\n\n{pose}\n"
        )
    if args.small:
        small_files = files_every(args.data, args.small)
        small = small_faces_table(names, small_files)
        section += (
            f"\nSmall faces in a large photo: {len(small_files)} LFW eval faces, each scaled "
            "to the width shown and pasted into a 4000x3000 scene (coffee, upscaled); recall "
            "and the number of other faces found over all of them:\n\n"
            f"{small}\n"
        )
    if args.append and args.out.exists():
        args.out.write_text(args.out.read_text() + "\n" + section)
    else:
        args.out.write_text(
            "# Face detection benchmark\n\n"
            f"Default detector: `{DEFAULT_DETECTOR}`. LFW eval split; hit = a box centre within "
            "0.25 x image side of the image centre; CelebA = first N images of "
            "celeba-aligned-small (89x109), same hit rule. One process on a 2-core CPU; "
            "timings include pre-processing.\n\n" + section
        )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
