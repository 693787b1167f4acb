"""Video stability of a swap method (DESIGN.md §6): a 640x480 clip that slowly pans and
zooms over the public-domain astronaut photo, swapped with Grace Hopper as the source, then
analysed frame by frame.

- landmark jitter: mean length (px) of the second difference of the 68 landmark
  trajectories, L[t+1] - 2 L[t] + L[t-1]; smooth motion gives ~0, flicker and shaking more.
  The unswapped clip's value is the floor set by the analysis itself.
- identity consistency: mean cosine similarity of each frame's dlib embedding to the mean
  embedding of all frames (1 = the same identity in every frame);
- identity to source: mean similarity of the frames to the source photo.
On real clips (`dev_clip_metrics`) also: the eyes opening and closing with the footage's,
as the mean |difference| of their opening (`selfswap.geometry.regions.eye_opening`) and its
correlation with the original's over the frames.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from selfswap.eval.judge import SFaceJudge, pick_face
from selfswap.eval.metrics import cosine_similarity
from selfswap.face.analyzer import AnalyzerConfig, FaceAnalyzer
from selfswap.geometry.regions import eye_opening
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


# --- real talking-head clips (video-dev) -------------------------------------------------


def trimmed_clip(clip: Path, out: Path, frames: int) -> tuple[Path, float]:
    """The first `frames` frames of `clip` as a new clip (no audio) and its frame rate."""
    with av.open(str(clip)) as container:
        rate = float(container.streams.video[0].average_rate or FPS)
    images = []
    for image in read_frames(clip):
        images.append(image)
        if len(images) >= frames:
            break
    h, w = images[0].shape[:2]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=round(rate))
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12"}
        for image in images:
            frame = av.VideoFrame.from_ndarray(image[: h - h % 2, : w - w % 2], format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out, rate


def flicker(frames: list[np.ndarray], boxes: list[np.ndarray | None]) -> float:
    """Mean absolute frame-to-frame change (grey levels) inside the face box of each frame
    (the original's boxes, so swapped and original clips are measured on the same pixels)."""
    changes = []
    for t in range(1, len(frames)):
        box = boxes[t]
        if box is None:
            continue
        x0, y0, x1, y1 = np.round(box).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        a = frames[t][y0:y1, x0:x1].astype(np.float32)
        b = frames[t - 1][y0:y1, x0:x1].astype(np.float32)
        if a.size:
            changes.append(float(np.abs(a - b).mean()))
    return float(np.mean(changes)) if changes else float("nan")


def _track(frames, analyzer: FaceAnalyzer, judge, ref_embedding, near_boxes=None) -> dict:
    """Per frame: 68 landmarks, face box, eye opening (NaN without a face) and SFace
    similarity to the source's reference."""
    marks, boxes, sims, eyes = [], [], [], []
    for t, frame in enumerate(frames):
        near = None if near_boxes is None else near_boxes[t]
        face = pick_face(analyzer.analyze(frame), near)
        boxes.append(None if face is None else np.asarray(face.box, float))
        if face is not None:
            marks.append(face.landmarks68)
        eyes.append(np.nan if face is None else float(eye_opening(face.landmarks68)[0]))
        judged = judge.describe(frame, near if near is not None else boxes[-1])
        if judged is not None:
            sims.append(float(cosine_similarity(judged.embedding, ref_embedding)))
    return {
        "marks": np.array(marks),
        "boxes": boxes,
        "sims": np.array(sims),
        "eyes": np.array(eyes),
    }


def dev_clip_metrics(
    methods, clips: list[Path], sources: list[tuple[np.ndarray, np.ndarray]], frames: int = 100
) -> dict:
    """Swap each real clip with each method, the source of clip k being `sources[k]`
    (photo swapped in, another photo of that person for the judge). Per clip:
    `{"input clip" | method: {sface_mean, sface_std, jitter_px, jitter_ratio, flicker,
    flicker_ratio, fps, frames}}`; ratios are against the original clip (1.0 = as steady
    as the real footage)."""
    analyzer = FaceAnalyzer(AnalyzerConfig(embedding="none"))
    judge = SFaceJudge()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, clip in enumerate(clips):
            source, ref = sources[k % len(sources)]
            ref_face = judge.describe(ref)
            if ref_face is None:
                continue
            short, _ = trimmed_clip(Path(clip), Path(tmp) / f"in{k}.mp4", frames)
            original = list(read_frames(short))
            base = _track(original, analyzer, judge, ref_face.embedding)
            base_jitter = landmark_jitter(base["marks"]) if len(base["marks"]) >= 3 else np.nan
            base_flicker = flicker(original, base["boxes"])
            rows = {"input clip": _clip_row(base, base_jitter, base_flicker, original, base)}
            for method in methods:
                start = time.perf_counter()
                out = swap_clip(method, source, short, Path(tmp) / f"out{k}.mp4")
                seconds = time.perf_counter() - start
                swapped = list(read_frames(out))
                track = _track(swapped, analyzer, judge, ref_face.embedding, base["boxes"])
                row = _clip_row(track, base_jitter, base_flicker, swapped, base)
                row["fps"] = len(swapped) / seconds
                rows[method.name] = row
            results[Path(clip).stem] = rows
    return results


def _clip_row(track, base_jitter, base_flicker, frames, base) -> dict:
    jitter = landmark_jitter(track["marks"]) if len(track["marks"]) >= 3 else float("nan")
    flick = flicker(frames, base["boxes"])
    sims = track["sims"]
    eyes, base_eyes = track["eyes"], base["eyes"]
    both = np.isfinite(eyes) & np.isfinite(base_eyes)
    follow = float("nan")
    if both.sum() >= 3 and eyes[both].std() > 0 and base_eyes[both].std() > 0:
        follow = float(np.corrcoef(eyes[both], base_eyes[both])[0, 1])
    return {
        "frames": len(frames),
        "sface_mean": float(sims.mean()) if len(sims) else float("nan"),
        "sface_std": float(sims.std()) if len(sims) else float("nan"),
        "jitter_px": jitter,
        "jitter_ratio": jitter / base_jitter if base_jitter else float("nan"),
        "flicker": flick,
        "flicker_ratio": flick / base_flicker if base_flicker else float("nan"),
        # the eyes open and close with the footage's (a blink): mean |difference| of the eye
        # opening (`eye_opening`) and its correlation over the frames
        "eye_error": float(np.abs(eyes - base_eyes)[both].mean()) if both.any() else np.nan,
        "eye_follow": follow,
    }


def dev_clip_summary(per_clip: dict) -> dict:
    """Mean over clips of each method's clip metrics."""
    methods: dict[str, list[dict]] = {}
    for rows in per_clip.values():
        for name, row in rows.items():
            methods.setdefault(name, []).append(row)
    keys = (
        "sface_mean",
        "sface_std",
        "jitter_ratio",
        "flicker_ratio",
        "eye_error",
        "eye_follow",
        "fps",
    )
    return {
        name: {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
        | {"clips": len(rows)}
        for name, rows in methods.items()
    }
