"""Per-image work of `selfswap prepare`: analyse, filter, select, crop, describe.

Runs in the main process (one worker) or in spawned worker processes; each process builds
its face analyzer once (`_analyzer`) and reuses it for every chunk.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from selfswap.errors import ImageError
from selfswap.face import align
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.face.types import Face
from selfswap.io.images import atomic_write, load_image

from .settings import Settings
from .table import CROPS_DIR, rows_to_table, write_parquet

#: Why an input yields no face row. Unreadable files: missing, empty_file, not_an_image,
#: damaged. Readable images: no_face, too_small (every face under --min-face-size),
#: low_score (under --min-score), yaw (the main face over --max-yaw), error (an unexpected
#: failure, with the exception in the detail). List inputs: duplicate.
UNREADABLE_REASONS = ("missing", "empty_file", "not_an_image", "damaged")


@dataclass(frozen=True)
class Item:
    """One image to process: its table key and the file to read."""

    key: str
    path: str


@dataclass(frozen=True)
class Chunk:
    """A unit of restartable work: its images are committed together as one part file."""

    name: str
    items: tuple[Item, ...]


@dataclass
class ChunkResult:
    name: str
    images: int
    faces: int
    seconds: float


@lru_cache(maxsize=4)
def _analyzer(detector: str) -> FaceAnalyzer:
    # Size and score filters are applied here, not by the analyzer, to count rejections;
    # embeddings are computed only for the faces kept.
    return FaceAnalyzer(AnalyzerConfig(detector=detector, min_face_size=0.0, embedding="none"))


def crop_name(key: str, face_index: int, crop_format: str) -> str:
    """Crop file path (relative to the output folder): collision-free for any input key."""
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
    return f"{CROPS_DIR}/{digest[:2]}/{digest[2:18]}_{face_index}.{crop_format}"


def save_crop(path: Path, crop: np.ndarray, crop_format: str) -> None:
    """JPEG quality 95 without chroma subsampling (4:4:4), or PNG; atomic."""
    image = Image.fromarray(crop)
    if crop_format == "jpg":
        atomic_write(path, lambda tmp: image.save(tmp, "JPEG", quality=95, subsampling=0))
    else:
        atomic_write(path, lambda tmp: image.save(tmp, "PNG", compress_level=6))


#: A face competes for "main face" only if its detector score is within this fraction of the
#: best score in the image: a large, central false positive (a shirt badge, a poster) must
#: not beat a clearly more confident real face.
MAIN_SCORE_MARGIN = 0.25


def select_main(faces: list[Face], width: int, height: int) -> int:
    """Index of the main face: among the confident detections (see `MAIN_SCORE_MARGIN`),
    the largest, weighted towards the image centre (a face at the centre counts fully, one
    in a corner about half)."""
    best = max(f.score for f in faces)
    cutoff = best - MAIN_SCORE_MARGIN * abs(best)
    centre = np.array([width, height], np.float64) / 2
    half_diagonal = float(np.hypot(width, height)) / 2 or 1.0

    def weight(face: Face) -> float:
        box = np.asarray(face.box, np.float64)
        offset = np.hypot(*((box[:2] + box[2:]) / 2 - centre)) / half_diagonal
        return float(face.width * (box[3] - box[1])) * (1.0 - 0.5 * min(offset, 1.0))

    confident = [i for i, f in enumerate(faces) if f.score >= cutoff]
    return max(confident, key=lambda i: weight(faces[i]))


def _unreadable_reason(path: Path, error: ImageError) -> str:
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty_file"
    return "not_an_image" if "not an image" in str(error) else "damaged"


def choose_faces(faces: list[Face], image: np.ndarray, settings: Settings) -> tuple[list, str]:
    """Faces to keep as `(index, face, is_main)` and, when none, the reason."""
    if not faces:
        return [], "no_face"
    candidates = [i for i, f in enumerate(faces) if f.width >= settings.min_face_size]
    if not candidates:
        return [], "too_small"
    if settings.min_score is not None:
        candidates = [i for i in candidates if faces[i].score >= settings.min_score]
        if not candidates:
            return [], "low_score"
    h, w = image.shape[:2]
    main = candidates[select_main([faces[i] for i in candidates], w, h)]
    chosen = candidates if settings.all_faces else [main]
    kept = [(i, faces[i], i == main) for i in chosen if abs(faces[i].yaw) <= settings.max_yaw]
    return kept, ("" if kept else "yaw")


def _embeddings(analyzer: FaceAnalyzer, mode: str, image: np.ndarray, faces: list) -> list:
    if mode == "none":
        return [np.full(128, np.nan, np.float32) for _ in faces]
    if mode == "dlib":
        return [analyzer.identity.embed_dlib(image, f.landmarks5) for f in faces]
    return list(analyzer.identity.embed([image] * len(faces), [f.landmarks5 for f in faces]))


def process_image(item: Item, settings: Settings, output: Path) -> tuple[list[dict], list]:
    """Rows for the kept faces of one image, and its record `[key, status, detail]`
    (status "kept" or the rejection reason). Never raises for bad input."""
    path = Path(item.path)
    try:
        image = load_image(path)
    except ImageError as exc:
        return [], [item.key, _unreadable_reason(path, exc), str(exc)]
    analyzer = _analyzer(settings.detector)
    try:
        faces = analyzer.analyze(image)
        kept, reason = choose_faces(faces, image, settings)
        if not kept:
            return [], [item.key, reason, f"{len(faces)} face(s) detected"]
        embeddings = _embeddings(analyzer, settings.embedding, image, [f for _, f, _ in kept])
    except Exception as exc:  # a bug or odd image must not stop a long run; it is reported
        return [], [item.key, "error", f"{type(exc).__name__}: {exc}"]
    rows = []
    size = settings.size
    for (index, face, is_main), embedding in zip(kept, embeddings, strict=True):
        matrix = align.alignment_matrix(face.landmarks68, size)
        name = crop_name(item.key, index, settings.crop_format)
        save_crop(output / name, align.warp_to_crop(image, matrix, size), settings.crop_format)
        rows.append(
            {
                "source": item.key,
                "face_index": index,
                "main": is_main,
                "identity": None,  # labelled at consolidation (main faces only)
                "crop": name,
                "image_width": image.shape[1],
                "image_height": image.shape[0],
                "score": float(face.score),
                "yaw": float(face.yaw),
                "pitch": float(face.pitch),
                "roll": float(face.roll),
                "box": face.box,
                "landmarks5": align.transform_points(face.landmarks5, matrix),
                "landmarks68": align.transform_points(face.landmarks68, matrix),
                "shape": face.shape,
                "expression": face.expression,
                "camera": align.camera_to_crop(face.camera, matrix),
                "embedding": embedding,
                "transform": matrix,
            }
        )
    return rows, [item.key, "kept", f"{len(rows)} face(s) kept of {len(faces)}"]


def process_chunk(chunk: Chunk, settings: Settings, output: Path, on_image=None) -> ChunkResult:
    """Process a chunk and commit it as one part file (written atomically, last)."""
    start = time.perf_counter()
    rows: list[dict] = []
    records = []
    for item in chunk.items:
        item_rows, record = process_image(item, settings, output)
        rows.extend(item_rows)
        records.append(record)
        if on_image is not None:
            on_image()
    part = output / chunk.name
    write_parquet(part, rows_to_table(rows), {"images": records})
    return ChunkResult(chunk.name, len(chunk.items), len(rows), time.perf_counter() - start)


# --- worker processes -----------------------------------------------------------------------

_WORKER: dict = {}


def init_worker(settings: Settings, output: str) -> None:
    """Pool initializer: one thread per library (the pool is the parallelism), ignore
    Ctrl-C (the parent stops the pool), build the analyzer once."""
    import signal

    import cv2
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _WORKER.update(settings=settings, output=Path(output))
    _analyzer(settings.detector)


def worker_chunk(chunk: Chunk) -> ChunkResult:
    return process_chunk(chunk, _WORKER["settings"], _WORKER["output"])
