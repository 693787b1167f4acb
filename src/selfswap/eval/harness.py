"""The evaluation loop: swap every pair with every method, describe the results with the same
face analysis, and keep per-pair records (JSONL, resumable) for the report.

A pair is (source, source_id_ref, target): `source_id_ref` is another photo of the source
person, so identity transfer is never measured against the photo the swap was made from.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from selfswap.errors import NoFaceError, SelfswapError
from selfswap.eval import metrics
from selfswap.eval.judge import SAME_PERSON, SFaceJudge, pick_face
from selfswap.eval.methods import SwapMethod
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.face.identity import IdentityEncoder
from selfswap.io.images import load_image


@dataclass
class Pair:
    source: Path
    ref: Path
    target: Path
    person: str = ""  # the source person; default: the source photo's folder name
    unseen: bool = False  # the source person appears in no training set
    more_sources: tuple[Path, ...] = ()  # further photos of the source person to swap from

    @property
    def source_person(self) -> str:
        return self.person or self.source.parent.name


@dataclass
class Description:
    """What the harness measures on one face."""

    box: np.ndarray
    embedding: np.ndarray  # (128,) dlib descriptor
    features: np.ndarray  # (256,) pooled dlib-network features (realism)
    pose: np.ndarray  # (3,) yaw, pitch, roll in degrees
    expression: np.ndarray  # (10,) standardized: divided by the population std
    shape: np.ndarray  # (40,) standardized likewise
    sface: np.ndarray | None = None  # (128,) SFace embedding (the independent judge)


# Image folders of the known pair files, relative to the `data` folder above `splits/`.
IMAGE_FOLDERS = {"celeba_wild_dev_swap_pairs.tsv": "celeba-wild-dev/images"}


def _identities(images: Path) -> dict[str, tuple[str, bool]]:
    """`identity.csv` beside an image folder (file, identity[, in_celeba_small]) as
    {file: (identity, unseen in training)}; empty when there is none."""
    table = images.parent / "identity.csv"
    if not table.is_file():
        return {}
    rows = [line.split(",") for line in table.read_text().splitlines()[1:] if line.strip()]
    return {r[0]: (r[1], len(r) > 2 and r[2].strip() == "0") for r in rows if len(r) >= 2}


def images_folder(tsv: Path, images: Path | None = None) -> Path:
    """The folder a pair file's photo paths are relative to: `images` when given, else the
    set's folder beside the file's `splits/` folder (`lfw/`, `celeba-wild-dev/images/`)."""
    if images:
        return Path(images)
    return Path(tsv).resolve().parent.parent / IMAGE_FOLDERS.get(Path(tsv).name, "lfw")


def read_pairs(
    tsv: Path, images: Path | None = None, limit: int | None = None, source_photos: int = 1
) -> list[Pair]:
    """Pairs of a `source<TAB>source_id_ref<TAB>target` file; image paths are relative to
    `images` (default: the set's folder beside the file's `splits/` folder: `lfw/`, or
    `celeba-wild-dev/images/` for its pair file). People come from an `identity.csv` beside
    the image folder when there is one, else from the photos' folder names.
    `source_photos` > 1: each pair swaps from up to that many photos of its source person,
    the source and the person's other photos in name order, never the pair's reference or
    target (needs an `identity.csv`)."""
    tsv = Path(tsv)
    if not tsv.is_file():
        raise SelfswapError(f"Pair file {tsv} does not exist.")
    if limit is not None and limit < 1:
        raise SelfswapError(f"--limit must be a positive number of pairs, not {limit}.")
    images = images_folder(tsv, images)
    try:
        lines = [line for line in tsv.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, OSError):
        raise SelfswapError(f"{tsv} is not a readable UTF-8 text file of pairs.") from None
    if not lines or lines[0].split("\t")[:3] != ["source", "source_id_ref", "target"]:
        raise SelfswapError(f"{tsv}: expected a header row with columns source, source_id_ref, "
                            "target (tab-separated).")  # fmt: skip
    if len(lines) < 2:
        raise SelfswapError(f"{tsv} has a header but no pairs.")
    if source_photos < 1:
        raise SelfswapError(f"--source-photos must be at least 1, not {source_photos}.")
    people = _identities(images)
    if source_photos > 1 and not people:
        raise SelfswapError(
            f"--source-photos {source_photos} needs the photos' people: no identity.csv "
            f"beside {images}."
        )
    photos_of: dict[str, list[str]] = {}
    for name, (person, _) in sorted(people.items()):
        photos_of.setdefault(person, []).append(name)
    pairs = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) < 3 or not all(c.strip() for c in cells[:3]):
            raise SelfswapError(f"{tsv}, line {number}: expected 3 tab-separated photo paths.")
        names = [c.strip() for c in cells[:3]]
        person, unseen = people.get(names[0], ("", False))
        others = [n for n in photos_of.get(person, []) if n not in names]
        more = tuple(images / n for n in others[: source_photos - 1])
        pairs.append(Pair(*(images / n for n in names), person, unseen, more))
    return pairs[:limit] if limit else pairs


class Describer:
    def __init__(self) -> None:
        self.analyzer = FaceAnalyzer(AnalyzerConfig(embedding="dlib"))
        self.encoder = IdentityEncoder()
        self.judge = SFaceJudge()

    def __call__(self, image: np.ndarray, near: np.ndarray | None = None) -> Description | None:
        """The face nearest the centre of box `near` (else the largest face), or None."""
        face = pick_face(self.analyzer.analyze(image), near)
        if face is None:
            return None
        shape_std, expression_std = self.analyzer.tddfa.coefficient_std()
        judged = self.judge.describe(image, face.box)
        return Description(
            face.box,
            face.embedding,
            self.encoder.features(image, [face.landmarks5])[0],
            np.array([face.yaw, face.pitch, face.roll]),
            np.asarray(face.expression, float) / expression_std,
            np.asarray(face.shape, float) / shape_std,
            None if judged is None else judged.embedding,
        )


FIELDS = ("box", "embedding", "features", "pose", "expression", "shape", "sface")


def _vector(x: np.ndarray | None) -> list[float] | None:
    return None if x is None else [round(float(v), 6) for v in x]


def _array(x: list[float] | None) -> np.ndarray | None:
    return None if x is None else np.array(x)


def _cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    return float("nan") if a is None or b is None else metrics.cosine_similarity(a, b)


def swap_record(
    pair_index: int,
    inputs: dict,
    seconds: float,
    d: Description | None,
    target: np.ndarray | None = None,
    swapped: np.ndarray | None = None,
) -> dict:
    """Per-pair metrics of one swap: identity by dlib and by the SFace judge, geometry, and
    (given the full-size target and output) sharpness and seam inside the target's face box."""
    src, ref, tgt = inputs["source"], inputs["ref"], inputs["target"]
    record = {"pair": pair_index, "kind": "swap", "ms": seconds * 1000, "found": d is not None}
    if swapped is not None and target is not None:
        record.update(
            sharpness=metrics.sharpness_ratio(swapped, target, tgt.box),
            seam=metrics.seam_score(swapped, target, tgt.box),
        )
    if d is not None:
        record.update(
            id_source=metrics.cosine_similarity(d.embedding, ref.embedding),
            id_target=metrics.cosine_similarity(d.embedding, tgt.embedding),
            sface_found=d.sface is not None,
            sface_source=_cosine(d.sface, ref.sface),
            sface_target=_cosine(d.sface, tgt.sface),
            pose_error=float(metrics.pose_error(d.pose, tgt.pose)),
            expression_error=float(metrics.expression_error(d.expression, tgt.expression)),
            shape_error=float(metrics.shape_error(d.shape, src.shape)),
            embedding=_vector(d.embedding),
            sface_embedding=_vector(d.sface),
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
PHOTO_CACHE = "photos-v2.jsonl"  # v2: with SFace embeddings


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
        return None if row is None else Description(**{f: _array(row.get(f)) for f in FIELDS})


def held_out_photos(tsv: Path, images: Path, limit: int = 500) -> list[Path]:
    """Real photos for the realism statistic, none of which any pair uses (neither sources,
    references nor targets), first `limit`: from `lfw_eval.txt` beside an LFW pair file,
    else every photo of the pairs' image folder."""
    tsv, images = Path(tsv), Path(images)
    used = {p for line in tsv.read_text().splitlines()[1:] for p in line.split("\t")}
    listing = tsv.parent / "lfw_eval.txt"
    if images.name == "lfw" and listing.is_file():
        names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    elif images.is_dir():
        suffixes = {".jpg", ".jpeg", ".png", ".webp"}
        names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in suffixes)
    else:
        return []
    return [images / n for n in names if n not in used][:limit]


def _check_source_counts(path: Path, done: list[dict], extra_sources: list[list]) -> None:
    """Refuse to resume records made from a different number of source photos per pair."""
    for r in done:
        if r.get("kind") == "swap" and r["pair"] < len(extra_sources):
            wanted = 1 + len(extra_sources[r["pair"]])
            if r.get("sources", 1) != wanted:
                raise SelfswapError(
                    f"{path} holds swaps made from {r.get('sources', 1)} source photo(s) a "
                    f"pair, not {wanted}; give another --out folder."
                )


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
    photos = PhotoCache(describe, Path(out) / PHOTO_CACHE)
    inputs, extra_sources = [], []
    for pair in tqdm(pairs, desc="pair photos", disable=not progress, unit="pair"):
        found = {k: photos.get(getattr(pair, k)) for k in ROLES}
        described = [(p, photos.get(p)) for p in pair.more_sources]
        extra_sources.append([p for p, d in described if d is not None])
        if found["source"] is not None and extra_sources[-1]:
            # the swap takes the shape averaged over its source photos; so does its error
            shapes = [found["source"].shape] + [d.shape for _, d in described if d is not None]
            found["source"] = replace(found["source"], shape=np.mean(shapes, axis=0))
        inputs.append(found if all(found.values()) else None)
    real_faces = [photos.get(p) for p in tqdm(real, desc="real photos", disable=not progress)]
    real_faces = [d for d in real_faces if d is not None]
    results = {}
    for method in methods:
        path = records_dir / f"{_slug(method.name)}.jsonl"
        done = load_records(path)
        _check_source_counts(path, done, extra_sources)
        seen = {(r["pair"], r["kind"]) for r in done}
        with path.open("a") as log:
            bar = tqdm(pairs, desc=method.name, disable=not progress, unit="pair")
            for i, pair in enumerate(bar):
                if inputs[i] is None:
                    continue
                src_img, tgt_img = load_image(pair.source), load_image(pair.target)
                new = []
                if (i, "swap") not in seen:
                    more = [load_image(p) for p in extra_sources[i]]
                    start = time.perf_counter()
                    try:
                        swapped = method.swap([src_img, *more] if more else src_img, tgt_img)
                    except NoFaceError:
                        swapped = None
                    seconds = time.perf_counter() - start
                    d = None if swapped is None else describe(swapped, inputs[i]["target"].box)
                    record = swap_record(i, inputs[i], seconds, d, tgt_img, swapped)
                    new.append({**record, "sources": 1 + len(more)})
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


def _gallery(result: dict, valid: list[int], field: str) -> tuple[np.ndarray, dict]:
    """One reference embedding per source person (rows) and the row of each person."""
    pairs, inputs = result["pairs"], result["inputs"]
    people = sorted({pairs[i].source_person for i in valid})
    index = {p: k for k, p in enumerate(people)}
    dims = next((len(getattr(inputs[i]["ref"], field)) for i in valid
                 if getattr(inputs[i]["ref"], field) is not None), 128)  # fmt: skip
    gallery = np.full((len(people), dims), np.nan)
    for i in valid:
        vector = getattr(inputs[i]["ref"], field)
        if vector is not None:
            gallery[index[pairs[i].source_person]] = vector
    return np.nan_to_num(gallery), index


def _retrieval(found, field, gallery, index, pairs, seed) -> dict:
    rows = [r for r in found if r.get(field) is not None]
    if not rows:
        return {}
    queries = np.array([r[field] for r in rows])
    truth = np.array([index[pairs[r["pair"]].source_person] for r in rows])
    return {
        k: metrics.bootstrap_ci(metrics.retrieval_hits(queries, gallery, truth, k), seed=seed)
        for k in (1, 5)
    }


def _identity_row(found: list[dict], seed: int) -> dict:
    """Identity columns of a set of swap records (dlib and SFace)."""

    def ci(values):
        return metrics.bootstrap_ci(values, seed=seed)

    row = {}
    for key in ("id_source", "id_target"):
        row[key] = ci([r[key] for r in found])
    row["dlib_closer"] = ci([float(r["id_source"] > r["id_target"]) for r in found])
    judged = [r for r in found if np.isfinite(r.get("sface_source", np.nan))
              and np.isfinite(r.get("sface_target", np.nan))]  # fmt: skip
    row["sface_source"] = ci([r["sface_source"] for r in judged])
    row["sface_target"] = ci([r["sface_target"] for r in judged])
    row["sface_same"] = ci([float(r["sface_source"] > SAME_PERSON) for r in judged])
    row["sface_closer"] = ci([float(r["sface_source"] > r["sface_target"]) for r in judged])
    row["sface_judged"] = len(judged)
    return row


def summarize(result: dict, seed: int = 0) -> dict:
    """Per method: mean and bootstrap 95 % CI of every metric, retrieval, realism; the
    identity columns also over the pairs whose source person is unseen in training."""
    pairs, inputs = result["pairs"], result["inputs"]
    valid = [i for i, x in enumerate(inputs) if x is not None]
    gallery, index = _gallery(result, valid, "embedding")
    sface_gallery, _ = _gallery(result, valid, "sface")
    if len(result["real"]) >= 2:
        real, real_set = np.stack([d.features for d in result["real"]]), "held-out photos"
    else:
        real = np.stack([inputs[i]["ref"].features for i in valid]) if valid else np.zeros((0, 1))
        real_set = "the pairs' reference photos"
    unseen = {i for i in valid if pairs[i].unseen}
    summary = {
        "pairs": len(pairs),
        "pairs_with_faces": len(valid),
        "gallery": len(index),
        "real_photos": len(real),
        "real_set": real_set,
        "unseen_pairs": len(unseen),
        "methods": {},
    }
    for name, records in result["records"].items():
        swaps = [r for r in records if r["kind"] == "swap"]
        found = [r for r in swaps if r["found"]]
        recon = [r for r in records if r["kind"] == "recon"]
        row = {"swaps": len(swaps), "face_found": metrics.bootstrap_ci([r["found"] for r in swaps])}
        row.update(_identity_row(found, seed))
        for key in ("pose_error", "expression_error", "shape_error"):
            row[key] = metrics.bootstrap_ci([r[key] for r in found], seed=seed)
        for key in ("sharpness", "seam"):
            row[key] = metrics.bootstrap_ci([r.get(key, np.nan) for r in swaps], seed=seed)
        row["ms_per_swap"] = metrics.bootstrap_ci([r["ms"] for r in swaps], seed=seed)
        galleries = (("embedding", "", gallery), ("sface_embedding", "sface_", sface_gallery))
        for field, prefix, table in galleries:
            for k, value in _retrieval(found, field, table, index, pairs, seed).items():
                row[f"{prefix}top{k}"] = value
        if len(found) >= 2 and len(real) >= 2:
            feats = np.array([r["features"] for r in found])
            row["frechet"] = metrics.frechet_distance(feats, real)
        for key in ("l1", "psnr", "ssim"):
            row[f"recon_{key}"] = metrics.bootstrap_ci([r[key] for r in recon], seed=seed)
        if unseen:
            row["unseen"] = _identity_row([r for r in found if r["pair"] in unseen], seed)
        summary["methods"][name] = row
    return summary


PAIRED = (
    "id_source", "id_target", "sface_source", "sface_target",
    "pose_error", "expression_error", "shape_error", "sharpness", "seam",
)  # fmt: skip
PAIRED_RECON = ("l1", "psnr", "ssim")


def paired_differences(result: dict, reference: str, seed: int = 0) -> dict:
    """Per method: mean difference (method − reference) of each per-pair metric over the
    pairs both describe, with a paired bootstrap 95 % CI."""
    if reference not in result["records"]:
        raise SelfswapError(f"--reference {reference!r} is not one of the evaluated methods.")

    def by_pair(records, kind, key):
        """{pair: value} of one metric over the records that have a finite value."""
        return {
            r["pair"]: r[key]
            for r in records
            if r["kind"] == kind
            and (kind == "recon" or r["found"])
            and np.isfinite(r.get(key, np.nan))
        }

    base = result["records"][reference]
    out = {}
    for name, records in result["records"].items():
        if name == reference:
            continue
        row = {}
        for kind, keys, prefix in (("swap", PAIRED, ""), ("recon", PAIRED_RECON, "recon_")):
            for key in keys:
                mine, theirs = by_pair(records, kind, key), by_pair(base, kind, key)
                diffs = [mine[i] - theirs[i] for i in sorted(set(mine) & set(theirs))]
                row[prefix + key] = metrics.bootstrap_ci(diffs, seed=seed) if diffs else None
        out[name] = row
    return out
