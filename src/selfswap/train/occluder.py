"""Train the occlusion segmenter (`selfswap.nets.occluder`) on synthetic occlusions.

Faces: aligned 128-px crops of a prepared training set (`selfswap prepare`, e.g. LFW train);
occluders: `selfswap.data.occluders.TRAIN_KINDS` drawn with textures cut from the training
photos' own corners (backgrounds, clothes), and with `--cutouts` real hands cut out of
training photos (`python -m selfswap.data.occluders`, kind `realhand`), so the evaluation's
occluders, textures and hand photos stay unseen. Target: the occluder's coverage; the loss
counts the face region (68-point hull with the forehead, grown) fully and the rest of the crop
at `OUTSIDE_WEIGHT`, since only the face region is ever pasted.

    python -m selfswap.train.occluder --data ~/.cache/selfswap/datasets/lfw_train \\
        --out ~/.cache/selfswap/occluder --minutes 25
    python -m selfswap.train.occluder --cutouts ~/.cache/selfswap/occluder-cutouts \\
        --init src/selfswap/weights/occluder.safetensors --out ~/.cache/selfswap/occluder-real
    python -m selfswap.train.occluder --cutouts ~/.cache/selfswap/occluder-cutouts \\
        --negatives ~/.cache/selfswap/datasets/celeba_dfl --clean-share 0.35 \\
        --init src/selfswap/weights/occluder.safetensors --out ~/.cache/selfswap/occluder-neg

Negatives (`--negatives`): faces of further prepared *training* sets (e.g. the CelebA DFL
faceset: sharper than LFW's, many profiles and glasses) drawn as the face under the occluder
`--negative-share` of the time; `--clean-share` of all samples get no occluder at all, so
their target is all zero: natural, unoccluded skin of every pose is "face". Faces are drawn
yaw-balanced (`--yaw-balance`: each 10° bin of |yaw| weighs the same within its set), so
profiles, on which the segmenter fails most, are not rare.

Resumable: a checkpoint (weights, optimiser, step, random state) is written every
`--every` steps and at the end; running the same command again continues it. One thread by
default (`--threads`). `--init` starts from a segmenter's weights (fine-tuning). The
exported weights are `OUT/occluder.safetensors`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from selfswap.data.occluders import face_frame, load_cutouts, occlude, training_kinds
from selfswap.nets.occluder import INPUT, OccluderNet, load_occluder, save_occluder

OUTSIDE_WEIGHT = 0.1
NO_OCCLUDER = 0.15  # share of samples shown without any occluder (default of --clean-share)
VALIDATION = 128
YAW_BIN = 10.0  # degrees of |yaw| per bin of the yaw-balanced sampling


def _faces_table(data: Path):
    """A prepared set's face table: `faces.parquet`, or the parts written so far while
    `selfswap prepare` is still running."""
    import pandas as pd

    columns = ["crop", "landmarks68", "yaw"]
    if (data / "faces.parquet").is_file():
        return pd.read_parquet(data / "faces.parquet", columns=columns)
    parts = sorted((data / "parts").glob("*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{data}: no faces.parquet and no parts/*.parquet")
    return pd.concat([pd.read_parquet(p, columns=columns) for p in parts], ignore_index=True)


def load_faces(data: Path, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` random crops `(N, S, S, 3)` uint8 RGB, their landmarks `(N, 68, 2)` and their
    yaw `(N,)` in degrees."""
    table = _faces_table(data)
    rows = table.sample(n=min(count, len(table)), random_state=seed)
    crops, marks, yaws = [], [], []
    for crop, lm, yaw in zip(rows["crop"], rows["landmarks68"], rows["yaw"]):
        img = cv2.imread(str(data / crop), cv2.IMREAD_COLOR)
        if img is None:
            continue
        crops.append(cv2.resize(img[:, :, ::-1], (INPUT, INPUT)) if img.shape[0] != INPUT
                     else img[:, :, ::-1])  # fmt: skip
        marks.append(np.asarray(lm, np.float64).reshape(68, 2) * INPUT / img.shape[0])
        yaws.append(float(yaw))
    return np.stack(crops), np.stack(marks), np.array(yaws)


def yaw_balanced(yaws: np.ndarray, bin_deg: float = YAW_BIN, floor: float = 0.05) -> np.ndarray:
    """Sampling probabilities `(N,)` under which every `bin_deg` bin of |yaw| weighs the same,
    except that a bin with under `floor`·N faces weighs less (a handful of faces is not
    repeated a thousand times)."""
    bins = np.floor(np.abs(np.asarray(yaws, np.float64)) / bin_deg).astype(int)
    counts = np.maximum(np.bincount(bins), floor * len(bins))
    p = 1.0 / counts[bins]
    return p / p.sum()


def sampling(pools: list[tuple[np.ndarray, float]], balance: bool) -> np.ndarray:
    """Probabilities over the concatenated pools: each pool `(yaws, share)` gets `share` of
    the draws (shares renormalised), spread yaw-balanced inside it or uniformly."""
    total = sum(share for _, share in pools)
    out = []
    for yaws, share in pools:
        inside = yaw_balanced(yaws) if balance else np.full(len(yaws), 1.0 / len(yaws))
        out.append(inside * share / total)
    return np.concatenate(out)


def corner_textures(crops: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Patches from the crops' corners and lower edge (background, clothes), scaled up."""
    size = crops.shape[1]
    side = size // 4
    spots = [(0, 0), (0, size - side), (size - side, 0), (size - side, size - side),
             (size - side, size // 2 - side // 2)]  # fmt: skip
    out = []
    for _ in range(count):
        y, x = spots[rng.integers(len(spots))]
        patch = crops[rng.integers(len(crops)), y : y + side, x : x + side]
        out.append(cv2.resize(patch, (96, 96), interpolation=cv2.INTER_CUBIC))
    return out


def face_region(landmarks68: np.ndarray, size: int) -> np.ndarray:
    """`(S, S)` float32: the 68-point hull with the forehead, grown by 10 % of the face."""
    _, scale, _ = face_frame(landmarks68)
    p = np.asarray(landmarks68, np.float64)
    brows = p[17:27] - np.array([0, 0.7 * scale])
    hull = cv2.convexHull(np.round(np.concatenate([p, brows]) * 16).astype(np.int32))
    m = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(m, hull, 255, cv2.LINE_AA, 4)
    k = 2 * round(0.2 * scale) + 1
    return cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) / np.float32(255)


def _jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photometric jitter (gain, contrast, blur, JPEG) applied after the occluder is drawn."""
    x = image.astype(np.float32)
    x = (x - x.mean()) * rng.uniform(0.75, 1.25) + x.mean() * rng.uniform(0.7, 1.3)
    x = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.2))
    if rng.random() < 0.4:
        ok, jpg = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        x = cv2.imdecode(jpg, cv2.IMREAD_UNCHANGED)
    return x


def _sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unsharp mask of random strength: crisp skin texture, as in faces downscaled from large
    photos (LFW's crops are softer than the in-the-wild photos people swap)."""
    x = image.astype(np.float32)
    blur = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.8, 1.6))
    return np.clip(x + rng.uniform(0.4, 1.2) * (x - blur), 0, 255).astype(np.uint8)


def make_batch(
    crops,
    marks,
    textures,
    n: int,
    rng: np.random.Generator,
    cutouts=(),
    clean: float = NO_OCCLUDER,
    probs: np.ndarray | None = None,
    sharpen: float = 0.0,
):
    """`(images (n, 3, S, S), targets (n, 1, S, S), weights (n, 1, S, S))` float tensors.
    cutouts: real RGBA hand cut-outs of training photos (kind `realhand`), or none. clean:
    share of samples without any occluder (all-zero target); probs: sampling probabilities of
    the faces (`sampling`), uniform if None; sharpen: share of faces given an unsharp mask
    before the occluder is drawn."""
    kinds = training_kinds(len(cutouts))
    size = crops.shape[1]
    images, targets, weights = [], [], []
    for _ in range(n):
        i = rng.integers(len(crops)) if probs is None else rng.choice(len(crops), p=probs)
        img, lm = crops[i].copy(), marks[i].copy()
        if rng.random() < 0.5:
            img = np.ascontiguousarray(img[:, ::-1])
            lm[:, 0] = size - 1 - lm[:, 0]
            lm = lm[_FLIP]
        if sharpen and rng.random() < sharpen:
            img = _sharpen(img, rng)
        alpha = np.zeros((size, size), np.float32)
        if rng.random() >= clean:
            for _ in range(1 + int(rng.random() < 0.25)):
                img, a, _ = occlude(img, lm, rng, kinds, textures, cutouts)
                alpha = np.maximum(alpha, a)
        img = _jitter(img, rng)
        region = face_region(lm, size)
        images.append(img.transpose(2, 0, 1))
        targets.append(alpha[None])
        weights.append((OUTSIDE_WEIGHT + (1 - OUTSIDE_WEIGHT) * region)[None])
    as_t = lambda a: torch.from_numpy(np.stack(a).astype(np.float32))  # noqa: E731
    return as_t(images) / 255.0, as_t(targets), as_t(weights)


# 68-point indices after a horizontal flip (iBUG 300-W symmetry)
_FLIP = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + list(range(27, 31))
    + list(range(35, 30, -1)) + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + list(range(54, 47, -1)) + list(range(59, 54, -1)) + list(range(64, 59, -1))
    + list(range(67, 64, -1))
)  # fmt: skip


def loss_fn(net, images, targets, weights) -> torch.Tensor:
    """Weighted binary cross-entropy plus a soft-Dice term on the face region."""
    logits = net(images)
    bce = F.binary_cross_entropy_with_logits(logits, targets, weight=weights, reduction="sum")
    bce = bce / weights.sum()
    p = torch.sigmoid(logits) * (weights > OUTSIDE_WEIGHT + 1e-3)
    t = targets * (weights > OUTSIDE_WEIGHT + 1e-3)
    dice = 1 - (2 * (p * t).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + t.sum((1, 2, 3)) + 1)
    return bce + 0.5 * dice.mean()


def held_back(net, batch) -> float:
    """Share of the face region predicted occluded (> 0.5) on a batch of clean faces."""
    images, _, weights = batch
    with torch.no_grad():
        pred = torch.sigmoid(net(images)) > 0.5
    inside = weights > OUTSIDE_WEIGHT + 1e-3
    return (pred & inside).sum().item() / max(inside.sum().item(), 1)


def iou(net, batch) -> float:
    """Pooled IoU of occlusion > 0.5 inside the face region."""
    images, targets, weights = batch
    with torch.no_grad():
        pred = torch.sigmoid(net(images)) > 0.5
    inside = weights > OUTSIDE_WEIGHT + 1e-3
    truth = targets > 0.5
    inter = (pred & truth & inside).sum().item()
    union = ((pred | truth) & inside).sum().item()
    return inter / max(union, 1)


def train(args: argparse.Namespace, log=print) -> Path:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    crops, marks, yaws = load_faces(Path(args.data).expanduser(), args.faces, args.seed)
    held = np.random.default_rng(args.seed + 1)
    textures = corner_textures(crops[VALIDATION:], 600, held)
    negatives = [load_faces(Path(d).expanduser(), args.negative_faces, args.seed)
                 for d in args.negatives]  # fmt: skip
    cutouts = load_cutouts(Path(args.cutouts)) if args.cutouts else []
    # validation: its own faces, and every tenth cut-out (never trained on; stable while the
    # cut-out cache grows, so a resumed run keeps them out)
    val_cut = cutouts[::10]
    cutouts = [c for i, c in enumerate(cutouts) if i % 10]
    val = make_batch(crops[:VALIDATION], marks[:VALIDATION], textures, VALIDATION, held, val_cut)
    crops, marks, yaws = crops[VALIDATION:], marks[VALIDATION:], yaws[VALIDATION:]
    pools = [(yaws, 1.0 - args.negative_share if negatives else 1.0)]
    val_clean = []  # clean validation faces of each negative set: what is held back on them
    for n_crops, n_marks, n_yaws in negatives:
        v = min(VALIDATION, len(n_crops) // 10)
        val_clean.append(make_batch(n_crops[:v], n_marks[:v], [], v, held, clean=1.0,
                                    probs=yaw_balanced(n_yaws[:v])))  # fmt: skip
        crops = np.concatenate([crops, n_crops[v:]])
        marks = np.concatenate([marks, n_marks[v:]])
        pools.append((n_yaws[v:], args.negative_share / len(negatives)))
    probs = sampling(pools, args.yaw_balance) if negatives or args.yaw_balance else None
    log(f"{len(crops)} faces ({', '.join(str(len(y)) for y, _ in pools)} per set), "
        f"{len(cutouts)} real hand cut-outs ({len(val_cut)} validation)")  # fmt: skip
    net = load_occluder(Path(args.init).expanduser()).train() if args.init else OccluderNet()
    net.requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    rng, step, history = np.random.default_rng(args.seed), 0, []
    state = out / "checkpoint.pt"
    if state.is_file():
        saved = torch.load(state, weights_only=False)
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        step, history = saved["step"], saved["history"]
        log(f"resumed at step {step}")
    start = time.perf_counter()

    def checkpoint() -> None:
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step,
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "history": history}, out / "checkpoint.part")  # fmt: skip
        (out / "checkpoint.part").replace(state)

    while step < args.steps and time.perf_counter() - start < args.minutes * 60:
        for group in opt.param_groups:  # cosine decay over the planned steps
            group["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * min(step / args.steps, 1.0)))
        net.train()
        batch = make_batch(crops, marks, textures, args.batch, rng, cutouts,
                           args.clean_share, probs, args.sharpen)  # fmt: skip
        loss = loss_fn(net, *batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % args.every == 0:
            net.eval()
            history.append({"step": step, "loss": round(loss.item(), 4),
                            "val_iou": round(iou(net, val), 4),
                            **{f"val_held_{i}": round(held_back(net, b), 4)
                               for i, b in enumerate(val_clean)}})  # fmt: skip
            log(json.dumps({**history[-1], "seconds": round(time.perf_counter() - start)}))
            checkpoint()
    net.eval()
    checkpoint()
    final = {
        "step": step,
        "val_iou": round(iou(net, val), 4),
        **{f"val_held_{i}": round(held_back(net, b), 4) for i, b in enumerate(val_clean)},
    }
    info = {
        **final,
        "data": str(args.data),
        "negatives": [str(d) for d in args.negatives],
        "negative_share": args.negative_share if negatives else 0.0,
        "clean_share": args.clean_share,
        "yaw_balance": bool(args.yaw_balance),
        "sharpen": args.sharpen,
        "faces": len(crops),
        "cutouts": len(cutouts),
        "kinds": sorted(set(training_kinds(len(cutouts)))),
        "init": str(args.init or ""),
    }  # fmt: skip
    save_occluder(net, out / "occluder.safetensors", info)
    log(json.dumps({**final, "wrote": str(out / "occluder.safetensors")}))
    return out / "occluder.safetensors"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="~/.cache/selfswap/datasets/lfw_train")
    p.add_argument("--out", default="~/.cache/selfswap/occluder")
    p.add_argument("--cutouts", help="folder of real hand cut-outs (data.occluders cache)")
    p.add_argument("--init", help="start from these segmenter weights (.safetensors)")
    p.add_argument("--faces", type=int, default=4000, help="training faces held in memory")
    p.add_argument(
        "--negatives",
        nargs="*",
        default=[],
        help="further prepared training sets (e.g. the CelebA DFL faceset)",
    )
    p.add_argument("--negative-faces", type=int, default=6000, help="faces per negatives set")
    p.add_argument(
        "--negative-share",
        type=float,
        default=0.5,
        help="share of samples whose face comes from the negatives sets",
    )
    p.add_argument(
        "--clean-share",
        type=float,
        default=NO_OCCLUDER,
        help="share of samples without any occluder (all-zero target)",
    )
    p.add_argument(
        "--yaw-balance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw faces yaw-balanced (default: on with --negatives)",
    )
    p.add_argument("--sharpen", type=float, default=0.0,
                   help="share of faces given an unsharp mask (crisper skin)")  # fmt: skip
    p.add_argument("--steps", type=int, default=2500, help="planned steps (learning rate decay)")
    p.add_argument("--minutes", type=float, default=25.0, help="wall-clock budget of this run")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--every", type=int, default=50, help="log, validate and checkpoint")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.yaw_balance is None:
        args.yaw_balance = bool(args.negatives)
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
