"""The evaluation loop: swap every pair with every method, describe the results with the same
face analysis, and keep per-pair records (JSONL, resumable) for the report.

A pair is (source, source_id_ref, target): `source_id_ref` is another photo of the source
person, so identity transfer is never measured against the photo the swap was made from.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from selfswap.errors import NoFaceError, SelfswapError
from selfswap.eval import metrics
from selfswap.eval.methods import SwapMethod
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.face.identity import IdentityEncoder
from selfswap.io.images import load_image


@dataclass
class Pair:
    source: Path
    ref: Path
    target: Path

    @property
    def source_person(self) -> str:
        return self.source.parent.name


@dataclass
class Description:
    """What the harness measures on one face."""

    box: np.ndarray
    embedding: np.ndarray  # (128,) dlib descriptor
    features: np.ndarray  # (256,) pooled dlib-network features (realism)
    pose: np.ndarray  # (3,) yaw, pitch, roll in degrees
    expression: np.ndarray  # (10,) standardized: divided by the population std
    shape: np.ndarray  # (40,) standardized likewise


def read_pairs(tsv: Path, images: Path | None = None, limit: int | None = None) -> list[Pair]:
    """Pairs of a `source<TAB>source_id_ref<TAB>target` file; image paths are relative to
    `images` (default: the `lfw/` folder beside the file's `splits/` folder)."""
    tsv = Path(tsv)
    if not tsv.is_file():
        raise SelfswapError(f"Pair file {tsv} does not exist.")
    images = Path(images) if images else tsv.resolve().parent.parent / "lfw"
    lines = [line for line in tsv.read_text().splitlines() if line.strip()]
    header = lines[0].split("\t")
    if header[:3] != ["source", "source_id_ref", "target"]:
        raise SelfswapError(f"{tsv}: expected columns source, source_id_ref, target.")
    pairs = [Pair(*(images / p for p in line.split("\t")[:3])) for line in lines[1:]]
    return pairs[:limit] if limit else pairs


class Describer:
    def __init__(self) -> None:
        self.analyzer = FaceAnalyzer(AnalyzerConfig(embedding="dlib"))
        self.encoder = IdentityEncoder()

    def __call__(self, image: np.ndarray, near: np.ndarray | None = None) -> Description | None:
        """The face nearest the centre of box `near` (else the largest face), or None."""
        faces = self.analyzer.analyze(image)
        if not faces:
            return None
        if near is None:
            face = max(faces, key=lambda f: f.width)
        else:
            center = near.reshape(2, 2).mean(0)
            face = min(faces, key=lambda f: np.abs(f.box.reshape(2, 2).mean(0) - center).sum())
        shape_std, expression_std = self.analyzer.tddfa.coefficient_std()
        return Description(
            face.box,
            face.embedding,
            self.encoder.features(image, [face.landmarks5])[0],
            np.array([face.yaw, face.pitch, face.roll]),
            np.asarray(face.expression, float) / expression_std,
            np.asarray(face.shape, float) / shape_std,
        )


FIELDS = ("box", "embedding", "features", "pose", "expression", "shape")


def _vector(x: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in x]


def swap_record(pair_index: int, inputs: dict, seconds: float, d) -> dict:
    src, ref, tgt = inputs["source"], inputs["ref"], inputs["target"]
    record = {"pair": pair_index, "kind": "swap", "ms": seconds * 1000, "found": d is not None}
    if d is not None:
        record.update(
            id_source=metrics.cosine_similarity(d.embedding, ref.embedding),
            id_target=metrics.cosine_similarity(d.embedding, tgt.embedding),
            pose_error=float(metrics.pose_error(d.pose, tgt.pose)),
            expression_error=float(metrics.expression_error(d.expression, tgt.expression)),
            shape_error=float(metrics.shape_error(d.shape, src.shape)),
            embedding=_vector(d.embedding),
            features=_vector(d.features),
        )
    return record


def recon_record(pair_index: int, target: np.ndarray, out: np.ndarray, box: np.ndarray) -> dict:
    """Self-reconstruction (the target swapped with itself) inside its face box + 10 %."""
    x0, y0, x1, y1 = box
    m = 0.1 * (x1 - x0)
    h, w = target.shape[:2]
    xa, ya = int(max(0, x0 - m)), int(max(0, y0 - m))
    xb, yb = int(min(w, x1 + m)), int(min(h, y1 + m))
    a, b = target[ya:yb, xa:xb], out[ya:yb, xa:xb]
    return {
        "pair": pair_index,
        "kind": "recon",
        "l1": float(np.abs(a.astype(float) - b).mean() / 255),
        "psnr": metrics.psnr(a, b),
        "ssim": metrics.ssim(a, b),
    }


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def load_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by an interruption
            break
    return out


ROLES = ("source", "ref", "target")


class PhotoCache:
    """Descriptions of real photos by path, kept in a JSONL file so that a rerun or a second
    process skips the analysis."""

    def __init__(self, describe: Describer, path: Path) -> None:
        self.describe = describe
        self.path = path
        self.known = {r["path"]: r["face"] for r in load_records(path)}

    def get(self, photo: Path) -> Description | None:
        key = str(photo)
        if key not in self.known:
            try:
                image = load_image(photo)
            except SelfswapError as exc:
                raise SelfswapError(f"Cannot read {photo}: {exc}") from None
            d = self.describe(image)
            self.known[key] = None if d is None else {f: _vector(getattr(d, f)) for f in FIELDS}
            with self.path.open("a") as log:
                log.write(json.dumps({"path": key, "face": self.known[key]}) + "\n")
        row = self.known[key]
        return None if row is None else Description(**{f: np.array(row[f]) for f in FIELDS})


def held_out_photos(tsv: Path, images: Path, limit: int = 500) -> list[Path]:
    """Real photos for the realism statistic: `lfw_eval.txt` beside the pair file, minus every
    photo any pair uses (so neither sources, references nor targets), first `limit`."""
    listing = Path(tsv).parent / "lfw_eval.txt"
    if not listing.is_file():
        return []
    used = {p for line in Path(tsv).read_text().splitlines()[1:] for p in line.split("\t")}
    names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    return [images / n for n in names if n not in used][:limit]


def evaluate(
    methods: list[SwapMethod],
    pairs: list[Pair],
    out: Path,
    real: list[Path] = (),
    recon: int = 100,
    progress: bool = True,
) -> dict:
    """Run every method on every pair (resuming from `out/records/*.jsonl`). `real`: held-out
    real photos for the realism statistic (default: the pairs' reference photos). Returns
    `{"inputs": [...], "real": [...], "records": {method name: [records]}, "pairs": pairs}`."""
    records_dir = Path(out) / "records"
    records_dir.mkdir(parents=True, exist_ok=True)
    describe = Describer()
    photos = PhotoCache(describe, Path(out) / "photos.jsonl")
    inputs = []
    for pair in tqdm(pairs, desc="pair photos", disable=not progress, unit="pair"):
        found = {k: photos.get(getattr(pair, k)) for k in ROLES}
        inputs.append(found if all(found.values()) else None)
    real_faces = [photos.get(p) for p in tqdm(real, desc="real photos", disable=not progress)]
    real_faces = [d for d in real_faces if d is not None]
    results = {}
    for method in methods:
        path = records_dir / f"{_slug(method.name)}.jsonl"
        done = load_records(path)
        seen = {(r["pair"], r["kind"]) for r in done}
        with path.open("a") as log:
            bar = tqdm(pairs, desc=method.name, disable=not progress, unit="pair")
            for i, pair in enumerate(bar):
                if inputs[i] is None:
                    continue
                src_img, tgt_img = load_image(pair.source), load_image(pair.target)
                new = []
                if (i, "swap") not in seen:
                    start = time.perf_counter()
                    try:
                        swapped = method.swap(src_img, tgt_img)
                    except NoFaceError:
                        swapped = None
                    seconds = time.perf_counter() - start
                    d = None if swapped is None else describe(swapped, inputs[i]["target"].box)
                    new.append(swap_record(i, inputs[i], seconds, d))
                wants_recon = getattr(method, "reconstructs", True) and i < recon
                if wants_recon and (i, "recon") not in seen:
                    try:
                        rebuilt = method.swap(tgt_img, tgt_img)
                        new.append(recon_record(i, tgt_img, rebuilt, inputs[i]["target"].box))
                    except NoFaceError:
                        pass
                for r in new:
                    log.write(json.dumps(r) + "\n")
                log.flush()
                done += new
        results[method.name] = done
    return {"inputs": inputs, "real": real_faces, "records": results, "pairs": pairs}


def summarize(result: dict, seed: int = 0) -> dict:
    """Per method: mean and bootstrap 95 % CI of every metric, retrieval, realism."""
    pairs, inputs = result["pairs"], result["inputs"]
    valid = [i for i, x in enumerate(inputs) if x is not None]
    people = sorted({pairs[i].source_person for i in valid})
    index = {p: k for k, p in enumerate(people)}
    gallery = np.zeros((len(people), 128))
    for i in valid:
        gallery[index[pairs[i].source_person]] = inputs[i]["ref"].embedding
    if result["real"]:
        real, real_set = np.stack([d.features for d in result["real"]]), "held-out photos"
    else:
        real = np.stack([inputs[i]["ref"].features for i in valid])
        real_set = "the pairs' reference photos"
    summary = {
        "pairs": len(pairs),
        "pairs_with_faces": len(valid),
        "gallery": len(people),
        "real_photos": len(real),
        "real_set": real_set,
        "methods": {},
    }
    for name, records in result["records"].items():
        swaps = [r for r in records if r["kind"] == "swap"]
        found = [r for r in swaps if r["found"]]
        recon = [r for r in records if r["kind"] == "recon"]
        row = {"swaps": len(swaps), "face_found": metrics.bootstrap_ci([r["found"] for r in swaps])}
        for key in ("id_source", "id_target", "pose_error", "expression_error", "shape_error"):
            row[key] = metrics.bootstrap_ci([r[key] for r in found], seed=seed)
        row["ms_per_swap"] = metrics.bootstrap_ci([r["ms"] for r in swaps], seed=seed)
        if found:
            queries = np.array([r["embedding"] for r in found])
            truth = np.array([index[pairs[r["pair"]].source_person] for r in found])
            for k in (1, 5):
                hits = metrics.retrieval_hits(queries, gallery, truth, k)
                row[f"top{k}"] = metrics.bootstrap_ci(hits.astype(float), seed=seed)
            feats = np.array([r["features"] for r in found])
            row["frechet"] = metrics.frechet_distance(feats, real)
        for key in ("l1", "psnr", "ssim"):
            row[f"recon_{key}"] = metrics.bootstrap_ci([r[key] for r in recon], seed=seed)
        summary["methods"][name] = row
    return summary


PAIRED = ("id_source", "id_target", "pose_error", "expression_error", "shape_error")
PAIRED_RECON = ("l1", "psnr", "ssim")


def paired_differences(result: dict, reference: str, seed: int = 0) -> dict:
    """Per method: mean difference (method − reference) of each per-pair metric over the
    pairs both describe, with a paired bootstrap 95 % CI."""
    if reference not in result["records"]:
        raise SelfswapError(f"--reference {reference!r} is not one of the evaluated methods.")

    def by_pair(records, kind, keys):
        return {
            r["pair"]: r
            for r in records
            if r["kind"] == kind and (kind == "recon" or r["found"]) and all(k in r for k in keys)
        }

    base_swaps = by_pair(result["records"][reference], "swap", PAIRED)
    base_recon = by_pair(result["records"][reference], "recon", PAIRED_RECON)
    out = {}
    for name, records in result["records"].items():
        if name == reference:
            continue
        row = {}
        for kind, keys, base, prefix in (
            ("swap", PAIRED, base_swaps, ""),
            ("recon", PAIRED_RECON, base_recon, "recon_"),
        ):
            mine = by_pair(records, kind, keys)
            common = sorted(set(mine) & set(base))
            for key in keys:
                diffs = [mine[i][key] - base[i][key] for i in common]
                row[prefix + key] = metrics.bootstrap_ci(diffs, seed=seed) if diffs else None
        out[name] = row
    return out
