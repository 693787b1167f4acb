"""`selfswap serve`: the web app (Gradio). Thin over `selfswap.api`: the options are
`SwapConfig`'s fields, swaps go through `Swapper`, provenance through `check_provenance`.

Tabs: Image (sources and target, the faces of both as numbered thumbnails to choose from),
Video (choose the faces, preview one frame, progress, cancel), Live (browser webcam, frames
in memory only) and Provenance. One model is held in memory and requests queue for it: the
video jobs run in a thread with that model, the webcam frames through it one at a time."""

import base64
import os
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from selfswap.errors import SelfswapError
from selfswap.swap.options import SwapConfig, swap_fields
from selfswap.swap.steady import Steadier
from selfswap.swap.threads import torch_threads
from selfswap.web.limits import TempFolder, WebConfig

CONSENT = (
    "**Swap only faces of people who have agreed to it**, never to deceive, harass or "
    "impersonate. Every image and video this page makes carries selfswap's invisible "
    "watermark and provenance metadata, marking it as synthetic."
)
ALL, CHOSEN, REFERENCE = "All faces", "Chosen faces", "The person in a reference photo"
MODEL_QUEUE = "model"  # every event that uses the model waits in this one queue
#: Seconds between the browser's looks for a webcam frame to send. The browser sends one
#: only when the previous one has come back, so this is the idle gap between frames (half of
#: it on average), not a rate.
LIVE_STREAM_EVERY = 0.03
#: torch threads for a webcam frame's swap. One frame's generator run gains little from a
#: second thread and loses much when other work shares the cores (OpenMP threads wait for
#: each other), and the live path keeps the other core for the next frame's analysis: on the
#: shared 2-core machine (load 9-10), `swap_faces` of one 640x480 frame took 44-53 ms CPU /
#: 62-106 ms wall with one thread, 260-730 ms CPU / 0.3-1.6 s wall with two.
LIVE_THREADS = 1


class ModelHolder:
    """The one `Swapper` in memory; reloaded only when the model, paste mode or device
    changes. The other options are per request: `get(config)` gives the loaded model with
    `config` as its options."""

    def __init__(self, config: SwapConfig) -> None:
        self.config = config
        self._swapper = None
        self._lock = threading.Lock()

    def get(self, config: SwapConfig | None = None):
        from selfswap.api import Swapper

        config = config or self.config
        with self._lock:
            if self._swapper is None or self._swapper.config.model_key() != config.model_key():
                self._swapper = None  # free the old one before loading the next
                self._swapper = Swapper.from_config(config)
            if self._swapper.config == config:
                return self._swapper
            return self._swapper.using(config)  # the same model


def _message(exc: Exception, *paths: Any) -> str:
    """The error's sentence, with the app's temporary paths replaced by file names."""
    text = str(exc)
    for path in paths:
        if path:
            text = text.replace(str(path), Path(str(path)).name)
    return text


def _path(file: Any) -> str | None:
    if file is None:
        return None
    return file if isinstance(file, str) else getattr(file, "name", None) or file.path


def live_swap(
    engine, frame: np.ndarray, faces: list, identity, options: SwapConfig, steadier=None
) -> np.ndarray:
    """A webcam frame with `faces` swapped to `identity` as a video frame is
    (`FaceSwapper.swap_frame` with the colour match, detail, seam, expression parts, mirror
    fill and occlusion of `options`, then the stream's `steadier`, `selfswap.swap.steady`), on
    `LIVE_THREADS` torch threads, watermarked; the frame itself is left as it is."""
    from selfswap.provenance import embed_watermark
    from selfswap.swap.occlusion import configure

    out = frame
    if faces and identity is not None:
        configure(engine, options.keep_mouth, options.occlusion)
        with torch_threads(LIVE_THREADS):
            out, _ = engine.swap_frame(
                frame, faces, identity, options.color_match, options.detail, options.seam,
                options.expression_parts, options.mirror,
            )  # fmt: skip
    if steadier is not None:
        out = steadier(frame, out)
    return embed_watermark(out, inplace=out is not frame)


def _data_url(image: np.ndarray, quality: int = 80) -> str:
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode()


def face_crop(image: np.ndarray, face) -> np.ndarray:
    """A square crop around a face (box grown by 40 %), 128 px."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = np.asarray(face.box, float)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.7 * max(x1 - x0, y1 - y0)
    a, b = int(max(cx - half, 0)), int(max(cy - half, 0))
    c, d = int(min(cx + half, width)), int(min(cy + half, height))
    return cv2.resize(image[b:d, a:c], (128, 128), interpolation=cv2.INTER_AREA)


def thumbnails(image: np.ndarray, faces: list) -> list[tuple[np.ndarray, str]]:
    """A crop of each face (`face_crop`), captioned `#index`."""
    return [(face_crop(image, face), f"#{index}") for index, face in enumerate(faces)]


@dataclass
class SourceFaces:
    """The faces of the source photos, as the page shows them: per photo its faces' crops
    (left to right) and the index of its largest face (the one used unless another is
    chosen)."""

    crops: list[list[np.ndarray]]
    largest: list[int]

    def items(self) -> list[tuple[int, int]]:
        """(photo, face) of each thumbnail, in the gallery's order."""
        return [(p, f) for p, crops in enumerate(self.crops) for f in range(len(crops))]

    def used(self, choice: list | None) -> list[int]:
        """The face used from each photo."""
        if not choice or len(choice) != len(self.crops):
            return list(self.largest)
        return [b if c is None else int(c) for c, b in zip(choice, self.largest)]

    def gallery(self, choice: list | None) -> list[tuple[np.ndarray, str]]:
        """Thumbnails captioned `#i` (`N: #i` with several photos, N counted from 1); the
        used faces framed and ticked."""
        used = self.used(choice)
        out = []
        for p, f in self.items():
            crop = self.crops[p][f]
            caption = f"#{f}" if len(self.crops) == 1 else f"{p + 1}: #{f}"
            if used[p] == f:
                crop = cv2.copyMakeBorder(
                    crop[6:-6, 6:-6], 6, 6, 6, 6, cv2.BORDER_CONSTANT, value=(255, 140, 0)
                )
                caption += " ✓"
            out.append((crop, caption))
        return out

    def note(self, choice: list | None) -> str:
        used = self.used(choice)
        several = [p for p, crops in enumerate(self.crops) if len(crops) > 1]
        parts = [f"photo {p + 1}: face #{used[p]}" for p in range(len(self.crops))]
        text = "Source face used: " + ", ".join(parts) + "."
        if several:
            text += " Click another face of a photo to use that one instead."
        return text


@dataclass
class LiveSession:
    """One page's webcam stream: the faces followed from frame to frame, its steadier, the
    last frame in (an unchanged frame is not swapped again), the swap of the last frame
    (running or done) and the times of the recent frames."""

    engine: Any
    follower: Any
    steadier: Any = None  # `selfswap.swap.steady.Steadier` of the stream
    last_in: np.ndarray | None = None
    pending: Future | None = None
    times: deque = field(default_factory=lambda: deque(maxlen=20))  # when frames went out
    seconds: deque = field(default_factory=lambda: deque(maxlen=20))  # work per frame


class App:
    """The state the tabs share: limits, the temporary folder, the model, video jobs."""

    def __init__(self, config: WebConfig, temp: TempFolder) -> None:
        self.config = config
        self.temp = temp
        self.model = ModelHolder(config.swap)
        self.jobs: dict[str, Any] = {}
        self.live: dict[str, LiveSession] = {}
        # the webcam frames' swaps, one at a time, while the next frame is analysed
        self._live_worker = ThreadPoolExecutor(1, thread_name_prefix="selfswap-live")
        self._live_last: Future | None = None

    def swapper(self, options: SwapConfig | None = None):
        """The model, once the webcam swaps still running have finished: the renderer and
        the model are used by one thread at a time."""
        last = self._live_last
        if last is not None:
            wait([last])
        return self.model.get(options)

    # ---- inputs ------------------------------------------------------------------------
    def image(self, file: Any, what: str) -> np.ndarray:
        """An uploaded image, checked against the limits; `SelfswapError` with one sentence
        naming `what` otherwise."""
        from selfswap.io.images import load_image

        raw = _path(file)
        if raw is None:
            raise SelfswapError(f"Upload {what} first.")
        path = self.temp.inside(raw)
        size = path.stat().st_size if path.is_file() else 0
        if size > self.config.max_upload_mb * 1e6:
            raise SelfswapError(
                f"The {what} is {size / 1e6:.1f} MB, over the {self.config.max_upload_mb:g} MB "
                "limit for images."
            )
        try:
            return load_image(path, max_pixels=self.config.max_pixels)
        except SelfswapError as exc:
            raise SelfswapError(f"The {what} cannot be used: {_message(exc, path)}") from None

    def sources(self, files: Any) -> list[np.ndarray]:
        files = [f for f in (files or []) if f is not None]
        if not files:
            raise SelfswapError("Upload at least one photo of the source person.")
        if len(files) > self.config.max_sources:
            raise SelfswapError(f"Use at most {self.config.max_sources} source photos.")
        return [self.image(f, f"source photo #{i + 1}") for i, f in enumerate(files)]

    def faces_of(self, image: np.ndarray) -> list:
        return self.model.get().faces_in(image)

    def source_faces(self, files: Any) -> SourceFaces:
        """The faces of each source photo; `SelfswapError` when one shows none."""
        crops, largest = [], []
        for i, photo in enumerate(self.sources(files)):
            faces = self.faces_of(photo)
            if not faces:
                raise SelfswapError(f"No face found in source photo #{i + 1}.")
            crops.append([face_crop(photo, f) for f in faces])
            largest.append(max(range(len(faces)), key=lambda j: faces[j].width))
        return SourceFaces(crops, largest)

    def live_frame(
        self, key: str, frame: np.ndarray, identity: Any, color_match: float = 0.0
    ) -> np.ndarray | None:
        """Take the next webcam frame `(H, W, 3|4)` of the page `key` and give back the one
        before it, swapped (every face) and watermarked; None for the first frame and when
        this frame is the same as the last.

        Pipelined over the two cores: this frame's faces are found here while the previous
        frame's swap finishes in the app's live worker thread, and this frame's swap runs
        there while its result travels to the browser and the next frame comes. The faces
        are followed from the page's previous frame (`FaceFollower`: a small crop around
        them is searched, the whole frame every few frames); `identity` is the page's
        `SourceIdentity` (None: frames come back unswapped). Frames are scaled down to
        `live_max_side` first and never leave memory."""
        engine = self.model.get().engine
        options = self.live_options(color_match)
        session = self.live_session(key, engine)
        frame = np.ascontiguousarray(frame[..., :3])
        if session.last_in is not None and np.array_equal(session.last_in, frame):
            return None
        session.last_in = frame
        scale = self.config.live_max_side / max(frame.shape[:2])
        if scale < 1:
            size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        start = time.perf_counter()
        faces = session.follower.analyze(frame) if identity is not None else []
        analysis = time.perf_counter() - start
        previous = session.pending

        def swap() -> np.ndarray:
            start = time.perf_counter()
            if session.steadier is None or session.steadier.strength != options.steady:
                session.steadier = Steadier(options.steady)
            out = live_swap(engine, frame, faces, identity, options, session.steadier)
            session.seconds.append(analysis + time.perf_counter() - start)
            return out

        session.pending = self._live_last = self._live_worker.submit(swap)
        return None if previous is None else previous.result()

    def live_options(self, color_match: float = 0.0) -> SwapConfig:
        """How webcam frames are swapped: the server's options with the page's colour match
        and `live_detail`."""
        try:
            return replace(
                self.config.swap, color_match=color_match, detail=self.config.live_detail
            )
        except ValueError as exc:
            raise SelfswapError(str(exc)) from None

    def live_session(self, key: str, engine: Any) -> LiveSession:
        """The stream state of a page (new when the model was reloaded)."""
        from selfswap.swap.pipeline import FaceFollower

        session = self.live.get(key)
        if session is None or session.engine is not engine:
            if len(self.live) > 64:  # pages that went away
                self.live.clear()
            session = LiveSession(engine, FaceFollower(engine.fast_analyzer))
            self.live[key] = session
        return session

    def options(
        self, mode: str, chosen: list, reference: Any, values: dict[str, Any]
    ) -> SwapConfig:
        """The `SwapConfig` of a request: the server's, with the page's face choice and
        per-call options (`values`)."""
        if mode == CHOSEN:
            if not chosen:
                raise SelfswapError("Choose at least one face (click its thumbnail).")
            faces = ",".join(str(int(str(c).lstrip("#"))) for c in chosen)
        elif mode == REFERENCE:
            self.image(reference, "reference photo")  # the limits, before the model sees it
            faces = f"ref:{self.temp.inside(_path(reference))}"
        else:
            faces = "all"
        try:
            return replace(self.config.swap, faces=faces, **values)
        except ValueError as exc:
            raise SelfswapError(str(exc)) from None

    # ---- video -------------------------------------------------------------------------
    def video(self, file: Any):
        """The uploaded clip's path and `VideoInfo`, checked against the limits."""
        from selfswap.swap.video import probe
        from selfswap.web.jobs import video_seconds

        raw = _path(file)
        if raw is None:
            raise SelfswapError("Upload a video first.")
        path = self.temp.inside(raw)
        size = path.stat().st_size
        limits = self.config
        if size > limits.max_video_mb * 1e6:
            raise SelfswapError(
                f"The video is {size / 1e6:.1f} MB, over the {limits.max_video_mb:g} MB limit."
            )
        try:
            info = probe(path)
        except SelfswapError as exc:
            raise SelfswapError(f"The video cannot be used: {_message(exc, path)}") from None
        seconds = video_seconds(info)
        if seconds > limits.max_video_seconds:
            raise SelfswapError(
                f"The video is {seconds:.0f} s long, over the {limits.max_video_seconds:g} s "
                "limit; cut it first."
            )
        if info.width * info.height > limits.max_video_pixels:
            raise SelfswapError(
                f"The video is {info.width}x{info.height}, over the limit of "
                f"{limits.max_video_pixels / 1e6:.1f} MP per frame; scale it down first."
            )
        return path, info


def _option_controls(gr, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Controls for the per-call `SwapConfig` fields, from their metadata (choices →
    radio, range → slider, yes/no → checkbox); `faces` has its own picker, and the model's
    fields are the server's."""
    controls = {}
    for f in swap_fields():
        meta = f.metadata
        if f.name in ("faces", "model", "device") or (only and f.name not in only):
            continue
        if "choices" in meta:
            controls[f.name] = gr.Radio(
                list(meta["choices"]), value=f.default, label=meta["label"], info=meta["help"]
            )
        elif "range" in meta:
            low, high = meta["range"]
            controls[f.name] = gr.Slider(
                low, high, value=f.default, step=0.05, label=meta["label"], info=meta["help"]
            )
        elif f.type in (bool, "bool"):
            controls[f.name] = gr.Checkbox(value=f.default, label=meta["label"], info=meta["help"])
    return controls


def _choice(choice: list | None, count: int) -> list[int | None] | None:
    """The per-photo face choice to pass on: None when it does not fit the photos or
    chooses nothing (the largest face of each)."""
    if not choice or len(choice) != count or all(c is None for c in choice):
        return None
    return list(choice)


def build_app(config: WebConfig, temp: TempFolder):  # noqa: C901 (one page, one builder)
    """The Gradio Blocks of the web app."""
    import gradio as gr

    app = App(config, temp)

    def refuse(exc: Exception) -> gr.Error:
        return gr.Error(str(exc), print_exception=False)

    def pick(evt: gr.SelectData, chosen: list[str]):
        """A click on thumbnail #i toggles face i in the chosen set (and selects 'chosen')."""
        label = f"#{evt.index}"
        chosen = list(chosen or [])
        chosen = [c for c in chosen if c != label] if label in chosen else [*chosen, label]
        return sorted(chosen, key=lambda c: int(c[1:])), CHOSEN

    def face_gallery(label: str, columns: int, elem_id: str):
        """Thumbnails of detected faces that a click picks (not enlarged, not editable)."""
        return gr.Gallery(
            label=label, columns=columns, fit_columns=False, object_fit="contain", height=180,
            allow_preview=False, interactive=False, elem_id=elem_id,
        )  # fmt: skip

    def face_picker(prefix: str):
        gallery = face_gallery("Faces of the target (click to choose)", 8, f"{prefix}-faces")
        with gr.Row():
            mode = gr.Radio(
                [ALL, CHOSEN, REFERENCE], value=ALL, label="Replace", elem_id=f"{prefix}-mode"
            )
            chosen = gr.CheckboxGroup([], label="Chosen faces", elem_id=f"{prefix}-chosen")
            reference = gr.File(
                label="Reference photo",
                file_types=["image"],
                height=120,
                elem_id=f"{prefix}-reference",
            )
        gallery.select(pick, [chosen], [chosen, mode])
        reference.upload(lambda: REFERENCE, None, [mode], queue=False)
        return gallery, mode, chosen, reference

    def source_picker(prefix: str):
        """Source photos with their faces as thumbnails: the largest face of each photo is
        used unless a click on another face of that photo chooses it. Returns the file box,
        the choice state (a face index or None per photo) and the events that change it."""
        files = gr.File(
            label="Source person: one or more photos",
            file_count="multiple",
            file_types=["image"],
            elem_id=f"{prefix}-sources",
        )
        gallery = face_gallery(
            "Faces of the source photos (click one to use it)", 5, f"{prefix}-source-faces"
        )
        note = gr.Markdown(elem_id=f"{prefix}-source-note")
        found = gr.State(None)  # SourceFaces
        choice = gr.State(None)  # per photo: a face index, or None for the largest

        def on_sources(files_):
            if not files_:
                return [], None, None, ""
            try:
                faces = app.source_faces(files_)
            except SelfswapError as exc:
                raise refuse(exc) from None
            return faces.gallery(None), faces, None, faces.note(None)

        def on_pick(evt: gr.SelectData, faces: SourceFaces | None, current: list | None):
            if faces is None:
                return gr.skip(), gr.skip(), gr.skip()
            photo, face = faces.items()[evt.index]
            current = list(current) if current and len(current) == len(faces.crops) else None
            current = current or [None] * len(faces.crops)
            current[photo] = face
            return faces.gallery(current), current, faces.note(current)

        uploaded = files.change(
            on_sources, [files], [gallery, found, choice, note], concurrency_id=MODEL_QUEUE
        )
        picked = gallery.select(on_pick, [found, choice], [gallery, choice, note], queue=False)
        return files, choice, (uploaded, picked)

    def found_faces(image: np.ndarray, what: str):
        faces = app.faces_of(image)
        if not faces:
            raise SelfswapError(f"No face found in the {what}.")
        labels = [f"#{i}" for i in range(len(faces))]
        note = f"{len(faces)} face(s) found, numbered left to right."
        return thumbnails(image, faces), gr.CheckboxGroup(choices=labels, value=[]), note

    server = config.swap
    with gr.Blocks(title="selfswap", delete_cache=(600, 3600)) as blocks:
        gr.Markdown("# selfswap\n" + CONSENT, elem_id="consent")
        gr.Markdown(
            f"Model: `{server.model}` · paste: `{server.paste}` · device: `{server.device}` "
            "(set when the server starts: `selfswap serve --set swap.model=...`)."
        )
        with gr.Tab("Image", id="image"):
            with gr.Row():
                with gr.Column():
                    img_sources, img_choice, _ = source_picker("image")
                with gr.Column():
                    img_target = gr.File(
                        label="Target photo", file_types=["image"], elem_id="image-target"
                    )
                    img_gallery, img_mode, img_chosen, img_reference = face_picker("image")
            img_note = gr.Markdown(elem_id="image-note")
            with gr.Accordion("Options", open=True):
                img_controls = _option_controls(gr)
            img_go = gr.Button("Swap", variant="primary", elem_id="image-swap")
            with gr.Row():
                img_result = gr.Image(
                    label="Result (watermarked)",
                    type="filepath",
                    interactive=False,
                    elem_id="image-result",
                )
                img_file = gr.File(
                    label="Download (PNG with provenance metadata)",
                    interactive=False,
                    elem_id="image-download",
                )

            def on_target(file):
                if file is None:
                    return [], gr.CheckboxGroup(choices=[], value=[]), ""
                try:
                    return found_faces(app.image(file, "target photo"), "target photo")
                except SelfswapError as exc:
                    raise refuse(exc) from None

            img_target.change(
                on_target,
                [img_target],
                [img_gallery, img_chosen, img_note],
                concurrency_id=MODEL_QUEUE,
            )

            def on_swap(sources, choice, target, mode, chosen, reference, *values):
                try:
                    options = app.options(mode, chosen, reference, dict(zip(img_controls, values)))
                    source_images = app.sources(sources)
                    target_image = app.image(target, "target photo")
                    swapper = app.swapper(options)
                    result = swapper.swap_image(
                        source_images,
                        target_image,
                        faces=options.faces,
                        color_match=options.color_match,
                        source_faces=_choice(choice, len(source_images)),
                    )
                except SelfswapError as exc:
                    raise refuse(exc) from None
                out = app.temp.new_dir("results") / "selfswap-swap.png"
                result.save(out, faces=options.faces, web="selfswap serve")
                notes = "\n".join(f"- {n}" for n in result.notes)
                done = f"Swapped face(s) {result.swapped} of {len(result.faces)}.\n{notes}"
                return str(out), str(out), done

            img_go.click(
                on_swap,
                [
                    img_sources,
                    img_choice,
                    img_target,
                    img_mode,
                    img_chosen,
                    img_reference,
                    *img_controls.values(),
                ],
                [img_result, img_file, img_note],
                concurrency_id=MODEL_QUEUE,
            )

        with gr.Tab("Video", id="video"):
            with gr.Row():
                with gr.Column():
                    vid_sources, vid_choice, _ = source_picker("video")
                with gr.Column():
                    vid_target = gr.File(
                        label=f"Video (up to {config.max_video_seconds:g} s)",
                        file_types=["video"],
                        elem_id="video-target",
                    )
                    vid_gallery, vid_mode, vid_chosen, vid_reference = face_picker("video")
            vid_note = gr.Markdown(elem_id="video-note")
            with gr.Accordion("Options", open=False):
                vid_controls = _option_controls(gr)
            with gr.Row():
                vid_preview_go = gr.Button("Preview first frame", elem_id="video-preview-go")
                vid_go = gr.Button("Swap video", variant="primary", elem_id="video-swap")
                vid_cancel = gr.Button("Cancel", variant="stop", elem_id="video-cancel")
            vid_bar = gr.HTML(elem_id="video-bar")
            vid_status = gr.Markdown(elem_id="video-status")
            with gr.Row():
                vid_preview = gr.Image(
                    label="Preview (first frame)", interactive=False, elem_id="video-preview"
                )
                vid_result = gr.Video(
                    label="Result (with audio)", interactive=False, elem_id="video-result"
                )
            vid_file = gr.File(label="Download", interactive=False, elem_id="video-download")

            def first_frame(file) -> np.ndarray:
                from selfswap.swap.video import read_frames

                path, _ = app.video(file)
                frames = read_frames(path)
                try:
                    frame = next(frames, None)
                finally:
                    frames.close()
                if frame is None:
                    raise SelfswapError("The video holds no decodable frame.")
                return frame

            def on_video(file):
                if file is None:
                    return [], gr.CheckboxGroup(choices=[], value=[]), ""
                try:
                    return found_faces(first_frame(file), "first frame of the video")
                except SelfswapError as exc:
                    raise refuse(exc) from None

            vid_target.change(
                on_video,
                [vid_target],
                [vid_gallery, vid_chosen, vid_note],
                concurrency_id=MODEL_QUEUE,
            )

            def on_preview(sources, choice, target, mode, chosen, reference, *values):
                try:
                    options = app.options(mode, chosen, reference, dict(zip(vid_controls, values)))
                    source_images = app.sources(sources)
                    frame = first_frame(target)
                    result = app.swapper(options).swap_image(
                        source_images,
                        frame,
                        faces=options.faces,
                        color_match=options.color_match,
                        source_faces=_choice(choice, len(source_images)),
                    )
                except SelfswapError as exc:
                    raise refuse(exc) from None
                return result.image

            vid_inputs = [vid_sources, vid_choice, vid_target, vid_mode, vid_chosen, vid_reference]
            vid_preview_go.click(
                on_preview,
                [*vid_inputs, *vid_controls.values()],
                [vid_preview],
                concurrency_id=MODEL_QUEUE,
            )

            # a key per page, to find the page's job on cancel (a gr.Request argument does not
            # mix with *values)
            vid_key = gr.State(lambda: uuid.uuid4().hex)

            def bar(done: int, total: int | None) -> str:
                value = f'value="{done}" max="{total}"' if total else ""  # no total: indefinite
                return f'<progress {value} style="width:100%">{done}</progress>'

            def on_video_swap(key, sources, choice, target, mode, chosen, reference, *values):
                from selfswap.web.jobs import VideoJob

                try:
                    options = app.options(mode, chosen, reference, dict(zip(vid_controls, values)))
                    photos = app.sources(sources)  # checked here: the job gets only good inputs
                    path, info = app.video(target)
                    swapper = app.swapper(options)
                except SelfswapError as exc:
                    raise refuse(exc) from None
                folder = app.temp.new_dir("video", 6 * 3600)
                job = VideoJob(swapper, photos, _choice(choice, len(photos)), path, folder, options)
                app.jobs[key] = job
                try:
                    while True:
                        progress = job.poll()
                        total = progress.total or info.frames or "?"
                        status = (
                            f"Swapping: {progress.done} / {total} frames · {progress.fps:.1f} fps"
                        )
                        if progress.state != "running":
                            break
                        yield bar(progress.done, progress.total or info.frames), status, None, None
                        time.sleep(0.5)
                    if progress.state == "done":
                        final = f"Done: {progress.done} / {total} frames · {progress.fps:.1f} fps."
                        yield bar(1, 1), final, str(job.output), str(job.output)
                    elif progress.state == "cancelled":
                        app.temp.remove(job.folder)
                        yield "", "Cancelled; no file was kept.", None, None
                    else:
                        app.temp.remove(job.folder)
                        raise refuse(SelfswapError(progress.message))
                finally:
                    if job.running:  # the page went away mid-job
                        job.cancel()
                        app.temp.remove(job.folder)
                    app.jobs.pop(key, None)

            # in the model's queue: the job uses the app's one model (not shared by threads)
            vid_go.click(
                on_video_swap,
                [vid_key, *vid_inputs, *vid_controls.values()],
                [vid_bar, vid_status, vid_result, vid_file],
                concurrency_id=MODEL_QUEUE,
            )

            def on_cancel(key):
                job = app.jobs.get(key)
                if job is None:
                    return "Nothing to cancel."
                job.cancel()
                return "Cancelling…"

            vid_cancel.click(on_cancel, [vid_key], [vid_status], queue=False)

        with gr.Tab("Live", id="live"):
            gr.Markdown(
                "Your webcam's frames go to this server and come back swapped; they are kept "
                f"in memory only (scaled to {config.live_max_side} px), never written to disk."
            )
            with gr.Row():
                with gr.Column():
                    live_sources, live_choice, live_events = source_picker("live")
                live_color = _option_controls(gr, ("color_match",))["color_match"]
            live_identity = gr.State(None)
            live_note = gr.Markdown(elem_id="live-note")
            with gr.Row():
                cam = gr.Image(
                    sources=["webcam"],
                    streaming=True,
                    type="numpy",
                    label="Webcam",
                    elem_id="live-webcam",
                )
                with gr.Column():
                    live_out = gr.HTML(elem_id="live-output")
                    live_fps = gr.Markdown("fps: –", elem_id="live-fps")

            def on_live_sources(files, choice):
                """The source person, worked out once per choice (not per frame)."""
                if not files:
                    return None, ""
                try:
                    photos = app.sources(files)
                    identity = app.model.get().identity(photos, _choice(choice, len(photos)))
                except SelfswapError as exc:
                    raise refuse(exc) from None
                return identity, "Source person ready; start the webcam."

            for event in live_events:
                event.success(
                    on_live_sources,
                    [live_sources, live_choice],
                    [live_identity, live_note],
                    concurrency_id=MODEL_QUEUE,
                )

            def on_frame(frame, identity, color_match, request: gr.Request):
                """A webcam frame in; the page's previous frame out, swapped, as an inline
                JPEG, with the page's frame rate and the server's work per frame. Nothing is
                written to disk."""
                if frame is None:
                    return gr.skip(), gr.skip()
                key = request.session_hash or ""
                try:
                    out = app.live_frame(key, frame, identity, float(color_match))
                except SelfswapError as exc:
                    raise refuse(exc) from None
                if out is None:  # the first frame, or the same frame again
                    return gr.skip(), gr.skip()
                html = f'<img src="{_data_url(out)}" alt="swapped frame" style="width:100%">'
                session = app.live[key]
                session.times.append(time.perf_counter())
                times, work = session.times, session.seconds
                fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
                here = 1000 * sum(work) / max(len(work), 1)
                h, w = out.shape[:2]
                status = f"fps: {fps:.1f} ({w}x{h}) · {here:.0f} ms of work per frame" + (
                    "" if identity is not None else " · no source person yet"
                )
                return html, status

            cam.stream(
                on_frame,
                [cam, live_identity, live_color],
                [live_out, live_fps],
                stream_every=LIVE_STREAM_EVERY,
                concurrency_limit=1,
                concurrency_id=MODEL_QUEUE,
                time_limit=600,
                show_progress="hidden",
            )

        with gr.Tab("Provenance", id="provenance"):
            gr.Markdown(
                "Does an image carry selfswap's marks (signed C2PA manifest, invisible "
                "watermark, metadata)?"
            )
            prov_file = gr.File(label="Image", file_types=["image"], elem_id="prov-file")
            prov_out = gr.Markdown(elem_id="prov-result")

            def on_provenance(file):
                from selfswap.api import check_provenance

                if file is None:
                    return ""
                try:
                    app.image(file, "image")  # the limits and a clear refusal
                    report = check_provenance(app.temp.inside(_path(file)))
                except SelfswapError as exc:
                    raise refuse(exc) from None
                # the words `selfswap provenance` prints: verdict, manifest, watermark, metadata
                verdict, *findings = report.lines()
                return "\n".join([f"**{verdict}**", *(f"- {line}" for line in findings)])

            prov_file.change(on_provenance, [prov_file], [prov_out], concurrency_id="light")
    return blocks


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    limits_overrides: list[str] | None = None,
    config_path: str | None = None,
) -> None:
    """Run the web app until Ctrl-C; its temporary folder is removed afterwards."""
    from selfswap.config import load_config

    config = load_config(WebConfig, config_path, limits_overrides)
    temp = TempFolder()
    # Gradio reads these when it is imported: uploads go to the app's own folder, and the
    # server phones nowhere.
    os.environ["GRADIO_TEMP_DIR"] = str(temp.root / "uploads")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio as gr

        blocks = build_app(config, temp)
        blocks.queue(default_concurrency_limit=1, max_size=config.queue_size)
        shown = "localhost" if host in ("127.0.0.1", "::1", "localhost") else host
        print(f"selfswap web app: open http://{shown}:{port} in a browser (Ctrl-C stops it).")
        if host not in ("127.0.0.1", "::1", "localhost"):
            print(f"warning: listening on {host}: other machines can reach this app.")
        print(f"temporary files: {temp.root} (removed on exit)", flush=True)
        max_mb = max(config.max_upload_mb, config.max_video_mb)
        blocks.launch(
            server_name=host,
            server_port=port,
            max_file_size=f"{max_mb:g}mb",
            allowed_paths=[str(temp.root)],
            show_error=True,
            quiet=True,
            ssr_mode=False,
            theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"]),
        )
    finally:
        temp.cleanup()
