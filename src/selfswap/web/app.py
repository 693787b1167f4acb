"""`selfswap serve`: the web app (Gradio). Thin over `selfswap.api`: the options are
`SwapConfig`'s fields, swaps go through `Swapper`, provenance through `check_provenance`.

Tabs: Image (sources, target, the target's faces as numbered thumbnails to choose from),
Video (choose a face, preview one frame, progress, cancel), Live (browser webcam, frames in
memory only) and Provenance. One model is held in memory and requests queue for it."""

import base64
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from selfswap.errors import SelfswapError
from selfswap.swap.options import SwapConfig, swap_fields
from selfswap.web.limits import TempFolder, WebConfig

CONSENT = (
    "**Swap only faces of people who have agreed to it**, never to deceive, harass or "
    "impersonate. Every image and video this page makes carries selfswap's invisible "
    "watermark and provenance metadata, marking it as synthetic."
)
ALL, CHOSEN, REFERENCE = "All faces", "Chosen faces", "The person in a reference photo"
MODEL_QUEUE = "model"  # every event that uses the model waits in this one queue


class ModelHolder:
    """The one `Swapper` in memory; reloaded only when the model, paste mode or device
    changes (the other options are per call)."""

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
            return self._swapper


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


def _data_url(image: np.ndarray, quality: int = 80) -> str:
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode()


def thumbnails(image: np.ndarray, faces: list) -> list[tuple[np.ndarray, str]]:
    """A square crop around each face (box grown by 40 %), 128 px, captioned `#index`."""
    out = []
    height, width = image.shape[:2]
    for index, face in enumerate(faces):
        x0, y0, x1, y1 = np.asarray(face.box, float)
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.7 * max(x1 - x0, y1 - y0)
        a, b = int(max(cx - half, 0)), int(max(cy - half, 0))
        c, d = int(min(cx + half, width)), int(min(cy + half, height))
        crop = cv2.resize(image[b:d, a:c], (128, 128), interpolation=cv2.INTER_AREA)
        out.append((crop, f"#{index}"))
    return out


class App:
    """The state the tabs share: limits, the temporary folder, the model, video jobs."""

    def __init__(self, config: WebConfig, temp: TempFolder) -> None:
        self.config = config
        self.temp = temp
        self.model = ModelHolder(config.swap)
        self.jobs: dict[str, Any] = {}
        self.live_times: dict[str, deque] = {}

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
        return self.model.get().engine.fast_analyzer.analyze(image)

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
    radio, range → slider); `faces` has its own picker, and the model's fields are the
    server's."""
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
    return controls


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

    def face_picker(prefix: str):
        gallery = gr.Gallery(
            label="Faces of the target (click to choose)",
            columns=8,
            fit_columns=False,
            object_fit="contain",
            height=180,
            allow_preview=False,
            interactive=False,
            elem_id=f"{prefix}-faces",
        )
        with gr.Row():
            mode = gr.Radio(
                [ALL, CHOSEN, REFERENCE], value=ALL, label="Replace", elem_id=f"{prefix}-mode"
            )
            chosen = gr.CheckboxGroup([], label="Chosen faces", elem_id=f"{prefix}-chosen")
            reference = gr.File(
                label="Reference photo (its person's faces are replaced)",
                file_types=["image"],
                height=120,
                elem_id=f"{prefix}-reference",
            )
        gallery.select(pick, [chosen], [chosen, mode])
        reference.upload(lambda: REFERENCE, None, [mode], queue=False)
        return gallery, mode, chosen, reference

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
                img_sources = gr.File(
                    label="Source person: one or more photos",
                    file_count="multiple",
                    file_types=["image"],
                    elem_id="image-sources",
                )
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

            def on_swap(sources, target, mode, chosen, reference, *values):
                try:
                    options = app.options(mode, chosen, reference, dict(zip(img_controls, values)))
                    source_images = app.sources(sources)
                    target_image = app.image(target, "target photo")
                    swapper = app.model.get(options)
                    result = swapper.swap_image(
                        source_images,
                        target_image,
                        faces=options.faces,
                        color_match=options.color_match,
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
                vid_sources = gr.File(
                    label="Source person: one or more photos",
                    file_count="multiple",
                    file_types=["image"],
                    elem_id="video-sources",
                )
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
                frame = next(iter(read_frames(path)), None)
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

            def on_preview(sources, target, mode, chosen, reference, *values):
                try:
                    options = app.options(mode, chosen, reference, dict(zip(vid_controls, values)))
                    source_images = app.sources(sources)
                    frame = first_frame(target)
                    result = app.model.get(options).swap_image(
                        source_images,
                        frame,
                        faces=options.faces,
                        color_match=options.color_match,
                    )
                except SelfswapError as exc:
                    raise refuse(exc) from None
                return result.image

            vid_preview_go.click(
                on_preview,
                [
                    vid_sources,
                    vid_target,
                    vid_mode,
                    vid_chosen,
                    vid_reference,
                    *vid_controls.values(),
                ],
                [vid_preview],
                concurrency_id=MODEL_QUEUE,
            )

            # a key per page, to find the page's job on cancel (a gr.Request argument does not
            # mix with *values)
            vid_key = gr.State(lambda: uuid.uuid4().hex)

            def bar(done: int, total: int | None) -> str:
                value = f'value="{done}" max="{total}"' if total else ""  # no total: indefinite
                return f'<progress {value} style="width:100%">{done}</progress>'

            def on_video_swap(key, sources, target, mode, chosen, reference, *values):
                from selfswap.web.jobs import VideoJob

                try:
                    options = app.options(mode, chosen, reference, dict(zip(vid_controls, values)))
                    app.sources(sources)  # checked here: the job gets only good inputs
                    path, info = app.video(target)
                except SelfswapError as exc:
                    raise refuse(exc) from None
                paths = [app.temp.inside(_path(s)) for s in sources]
                job = VideoJob(paths, path, app.temp.new_dir("video", 6 * 3600), options)
                app.jobs[key] = job
                try:
                    while True:
                        progress = job.poll()
                        total = progress.total or "?"
                        status = (
                            f"Swapping: {progress.done} / {total} frames · {progress.fps:.1f} fps"
                        )
                        if progress.state != "running":
                            break
                        yield bar(progress.done, progress.total), status, None, None
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
                    if job.poll().state == "running":  # the page went away mid-job
                        job.cancel()
                        app.temp.remove(job.folder)
                    app.jobs.pop(key, None)

            vid_go.click(
                on_video_swap,
                [vid_key, vid_sources, vid_target, vid_mode, vid_chosen, vid_reference]
                + list(vid_controls.values()),
                [vid_bar, vid_status, vid_result, vid_file],
                concurrency_id="video",
                concurrency_limit=1,
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
                live_sources = gr.File(
                    label="Source person: one or more photos",
                    file_count="multiple",
                    file_types=["image"],
                    elem_id="live-sources",
                )
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

            def on_live_sources(files):
                if not files:
                    return None, ""
                try:
                    identity = app.model.get().engine.source_identity(app.sources(files))
                except SelfswapError as exc:
                    raise refuse(exc) from None
                return identity, "Source person ready; start the webcam."

            live_sources.change(
                on_live_sources,
                [live_sources],
                [live_identity, live_note],
                concurrency_id=MODEL_QUEUE,
            )

            def on_frame(frame, identity, color_match, request: gr.Request):
                from selfswap.provenance import embed_watermark

                if frame is None:
                    return gr.skip(), gr.skip()
                frame = np.ascontiguousarray(frame[..., :3])
                scale = config.live_max_side / max(frame.shape[:2])
                if scale < 1:
                    size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                out = frame
                if identity is not None:
                    engine = app.model.get().engine
                    faces = engine.fast_analyzer.analyze(frame)
                    if faces:
                        crops, masks, matrices = engine.swap_faces(frame, faces, identity)
                        out = engine.paste(frame, crops, masks, matrices, float(color_match))
                out = embed_watermark(out, inplace=out is not frame)
                if len(app.live_times) > 256:  # pages that went away
                    app.live_times.clear()
                times = app.live_times.setdefault(request.session_hash or "", deque(maxlen=20))
                times.append(time.perf_counter())
                fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
                h, w = out.shape[:2]
                html = f'<img src="{_data_url(out)}" alt="swapped frame" style="width:100%">'
                status = f"fps: {fps:.1f} ({w}x{h})" + (
                    "" if identity is not None else " · no source person yet"
                )
                return html, status

            cam.stream(
                on_frame,
                [cam, live_identity, live_color],
                [live_out, live_fps],
                stream_every=0.1,
                concurrency_limit=1,
                concurrency_id=MODEL_QUEUE,
                time_limit=600,
                show_progress="hidden",
            )

        with gr.Tab("Provenance", id="provenance"):
            gr.Markdown("Does an image carry selfswap's marks (invisible watermark, metadata)?")
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
                verdict = (
                    "**Marked as made by selfswap.**"
                    if report.marked
                    else "**No selfswap marks found.** (The watermark does not survive "
                    "rescaling, so this does not prove an image is unaltered.)"
                )
                lines = [
                    verdict,
                    f"- watermark: {'found' if report.watermarked else 'not found'} "
                    f"(score {report.watermark_score:.1f}, threshold {report.threshold})",
                ]
                lines += [f"- `{k}`: {v}" for k, v in report.metadata.items()]
                if not report.metadata:
                    lines.append("- no selfswap provenance metadata")
                return "\n".join(lines)

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
