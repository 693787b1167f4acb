"""Video stability of a swap method (DESIGN.md §6): a 640x480 clip that slowly pans and
zooms over the public-domain astronaut photo, swapped with Grace Hopper as the source, then
analysed frame by frame.

- landmark jitter: mean length (px) of the second difference of the 68 landmark
  trajectories, L[t+1] - 2 L[t] + L[t-1]; smooth motion gives ~0, flicker and shaking more.
  The unswapped clip's value is the floor set by the analysis itself.
- identity consistency: mean cosine similarity of each frame's dlib embedding to the mean
  embedding of all frames (1 = the same identity in every frame);
- identity to source: mean similarity of the frames to the source photo.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

from selfswap.eval.metrics import cosine_similarity
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.samples import astronaut, grace_hopper
from selfswap.swap.video import process_video, read_frames

WIDTH, HEIGHT, FPS = 640, 480, 25


def pan_zoom_frames(count: int = 75) -> list[np.ndarray]:
    """The astronaut photo moving right by 60 px and growing by 15 % over `count` frames."""
    photo = astronaut()
    frames = []
    for i in range(count):
        t = i / max(count - 1, 1)
        scale = (HEIGHT / photo.shape[0]) * (1.0 + 0.15 * t)
        matrix = np.array([[scale, 0, 60 + 60 * t], [0, scale, -20 * t]], np.float64)
        frames.append(cv2.warpAffine(photo, matrix, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT))
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "16"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def landmark_jitter(tracks: np.ndarray) -> float:
    """Mean second-difference length (px) of landmark trajectories `(T, K, 2)`, T >= 3."""
    accel = tracks[2:] - 2 * tracks[1:-1] + tracks[:-2]
    return float(np.linalg.norm(accel, axis=-1).mean())


def describe_frames(frames, analyzer: FaceAnalyzer) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks `(T, 68, 2)` and embeddings `(T, 128)` of the largest face per frame
    (frames where no face is found are skipped)."""
    marks, embeddings = [], []
    for frame in frames:
        faces = analyzer.analyze(frame)
        if faces:
            face = max(faces, key=lambda f: f.width)
            marks.append(face.landmarks68)
            embeddings.append(face.embedding)
    return np.array(marks), np.array(embeddings)


def swap_clip(method, source: np.ndarray, clip: Path, out: Path) -> Path:
    """Swap with the method's own video path (tracking + smoothing for selfswap models),
    frame by frame otherwise."""
    swapper = getattr(method, "swapper", None)
    if swapper is not None:
        swapper.swap_video(source, clip, out, overwrite=True, progress=False)
    else:
        process_video(clip, out, lambda f: method.swap(source, f), progress=False, overwrite=True)
    return out


def video_metrics(methods, frames: int = 75, analyzer: FaceAnalyzer | None = None) -> dict:
    """`{method name: {jitter_px, id_consistency, id_to_source, frames_with_face}}`, plus
    the unswapped clip under "input clip"."""
    analyzer = analyzer or FaceAnalyzer(AnalyzerConfig(embedding="dlib"))
    source = grace_hopper()
    source_embedding = max(analyzer.analyze(source), key=lambda f: f.width).embedding
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "clip.mp4", pan_zoom_frames(frames))
        for method in methods:
            swapped = swap_clip(method, source, clip, Path(tmp) / "out.mp4")
            results[method.name] = _measure(swapped, analyzer, source_embedding)
        results = {"input clip": _measure(clip, analyzer, source_embedding), **results}
    return results


def _measure(path: Path, analyzer: FaceAnalyzer, source_embedding: np.ndarray) -> dict:
    frames = list(read_frames(path))
    marks, embeddings = describe_frames(frames, analyzer)
    if len(marks) < 3:
        return {"frames_with_face": len(marks) / len(frames)}
    mean = embeddings.mean(0)
    return {
        "frames_with_face": len(marks) / len(frames),
        "jitter_px": landmark_jitter(marks),
        "id_consistency": float(np.mean(cosine_similarity(embeddings, mean[None]))),
        "id_to_source": float(np.mean(cosine_similarity(embeddings, source_embedding[None]))),
    }
