"""Video reading and writing with PyAV: upright RGB frames in, H.264 + the original audio out.

- `probe(path)` describes a video (`VideoInfo`): displayed size, frame rate, frame count,
  duration, rotation, audio.
- `read_frames(path)` yields RGB uint8 frames `(H, W, 3)` upright: a rotation stored in the
  container (display matrix) is applied, so a phone video in portrait comes out in portrait.
- `VideoWriter` encodes RGB frames as H.264 (libx264, yuv420p, CRF) at a given frame rate and
  copies the audio streams of a source file: packets are remuxed unchanged when the output
  container accepts the codec, otherwise re-encoded to AAC. It writes to a hidden temporary
  file next to the output and moves it into place only when complete, so a failed or
  interrupted run never leaves a partial file under the final name.
- `process_video(in_path, out_path, fn)` applies a per-frame function, with a progress bar
  (and optionally a progress callback and a cancel event).

Output frames are upright and carry no rotation tag. H.264 in yuv420p needs even sizes: an
odd width or height loses its last column or row.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

from selfswap.errors import SelfswapError

#: Output extensions and their container formats (all of them hold H.264 and AAC).
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}

#: How far ahead of the last video frame (seconds) audio packets are interleaved.
_AUDIO_LEAD = 0.5


class VideoError(SelfswapError):
    """A video could not be read or written."""


class VideoReadError(VideoError):
    """A video file is missing, unreadable, corrupt or of an unsupported format."""


class NoVideoStreamError(VideoError):
    """A file holds no video stream."""


class OutputExistsError(VideoError):
    """The output file exists and overwriting was not asked for."""


class UnknownFormatError(VideoError):
    """The output file's extension names no video format selfswap can write."""


class Cancelled(SelfswapError):
    """The work was stopped through its `cancel` event; nothing was written."""


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` finds in a video file.

    `width` and `height` are the displayed (upright) size, after `rotation`; `rotation` is the
    counter-clockwise angle in degrees (0, 90, 180 or 270) that the container asks players
    to apply and that `read_frames` applies. `frames` is None when the container does not
    say; `duration` is in seconds.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int | None
    duration: float | None
    rotation: int
    has_audio: bool
    codec: str
    audio_codec: str | None = None


def _open_input(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"video file not found: {path}")
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise VideoReadError(f"cannot read video '{path}': {reason}") from e


def _video_stream(container: av.container.InputContainer, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        container.close()
        raise NoVideoStreamError(f"'{path}' holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns (0-3) closest to a rotation in degrees."""
    return int(round(rotation / 90.0)) % 4


#: Colour matrices (AVColorSpace) that OpenCV's BT.601 YUV → RGB conversion decodes
#: correctly: unspecified, BT.470BG, SMPTE 170M.
_BT601 = (2, 5, 6)


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB uint8 `(H, W, 3)` of a decoded frame. Limited-range BT.601 yuv420p (the common
    case, and what `VideoWriter` writes) is converted by OpenCV: libswscale's conversion
    darkens by about one level per pass, which would add up over re-encodes."""
    if (
        frame.format.name == "yuv420p"
        and frame.width % 2 == 0
        and frame.height % 2 == 0
        and frame.colorspace in _BT601
        and frame.color_range != 2  # not full ("JPEG") range
    ):
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def _upright(frame: av.VideoFrame) -> np.ndarray:
    image = _to_rgb(frame)
    turns = _quarter_turns(frame.rotation)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _frame_rate(stream: av.video.stream.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return Fraction(25)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a video file (decodes its first frame to read the rotation).

    Raises `VideoReadError` for a missing, corrupt or unsupported file and
    `NoVideoStreamError` for a file without video.
    """
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        rotation = 0
        try:
            frame = next(container.decode(stream), None)
        except av.FFmpegError as e:
            raise VideoReadError(f"cannot decode the video in '{path}' ({e})") from e
        if frame is None:
            raise VideoReadError(f"'{path}' holds no decodable video frame")
        rotation = _quarter_turns(frame.rotation) * 90
        width, height = frame.width, frame.height
        if rotation in (90, 270):
            width, height = height, width
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = None
        audio = container.streams.audio
        return VideoInfo(
            path=Path(path),
            width=width,
            height=height,
            fps=_frame_rate(stream),
            frames=stream.frames or None,
            duration=duration,
            rotation=rotation,
            has_audio=bool(audio),
            codec=stream.codec_context.name,
            audio_codec=audio[0].codec_context.name if audio else None,
        )


def frames_with_time(path: str | os.PathLike) -> Iterator[tuple[np.ndarray, float | None]]:
    """Upright RGB frames with their presentation time in seconds (None when unknown)."""
    container = _open_input(path)
    try:
        stream = _video_stream(container, path)
        try:
            for frame in container.decode(stream):
                yield _upright(frame), frame.time
        except av.FFmpegError as e:
            raise VideoReadError(f"cannot decode the video in '{path}' ({e})") from e
    finally:
        container.close()


def prepared_ahead(
    frames: Iterator[tuple[np.ndarray, float | None]],
    prepare: Callable[[np.ndarray], object],
    depth: int = 2,
) -> Iterator[tuple[np.ndarray, float | None, object]]:
    """`frames` (image, time) with `prepare(image)` of each, read and prepared on a second
    thread up to `depth` frames ahead of the caller, in order; an error there is raised here
    at its frame. Closing the returned iterator stops that thread (after the frame it is on)
    and closes `frames`."""
    end = object()
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                ready.put(item, timeout=0.1)
                return

    def work() -> None:
        try:
            for image, t in frames:
                if stop.is_set():
                    return
                put((image, t, prepare(image)))
            put(end)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            put(e)
        finally:
            frames.close()

    worker = threading.Thread(target=work, name="selfswap-reader", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the frames of a video as upright RGB uint8 arrays `(H, W, 3)`."""
    for image, _ in frames_with_time(path):
        yield image


def output_format(path: str | os.PathLike) -> str:
    """The container format for an output path, from its extension (see `FORMATS`)."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise UnknownFormatError(
            f"unknown output video format '{ext or Path(path).name}'; "
            f"use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[ext]


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an output path with an unknown extension, or one that exists (unless
    `overwrite`); returns it as a Path."""
    path = Path(path)
    output_format(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"output file '{path}' exists; pass --overwrite (overwrite=True) to replace it"
        )
    if path.is_dir():
        raise VideoError(f"output path '{path}' is a directory")
    if not path.parent.is_dir():
        raise VideoError(f"output folder '{path.parent}' does not exist")
    return path


def _packet_time(packet: av.Packet) -> float:
    """A packet's presentation time in seconds (0 when unknown)."""
    if packet.pts is None or packet.time_base is None:
        return 0.0
    return float(packet.pts * packet.time_base)


class _AudioCopier:
    """Moves the audio streams of a source file into an output container, remuxing packets
    when the container accepts the codec and re-encoding to AAC otherwise."""

    def __init__(self, source: Path, output: av.container.OutputContainer, mode: str) -> None:
        self.input = _open_input(source)
        self.streams = list(self.input.streams.audio)
        self.out: dict[int, av.stream.Stream] = {}
        self.copied: dict[int, bool] = {}
        supported = output.supported_codecs
        mp4 = output.format.name.split(",")[0] == "mp4"
        for stream in self.streams:
            name = stream.codec_context.name
            # FFmpeg's MP4 muxer accepts PCM in its codec query but fails on the trailer
            if mode == "copy" and name in supported and not (mp4 and name.startswith("pcm_")):
                self.out[stream.index] = output.add_stream_from_template(stream)
                self.copied[stream.index] = True
            else:
                rate = stream.codec_context.sample_rate or 48000
                layout = stream.codec_context.layout.name if stream.codec_context.layout else None
                out = output.add_stream("aac", rate=rate)
                if layout in ("mono", "stereo"):
                    out.layout = layout
                self.out[stream.index] = out
                self.copied[stream.index] = False
        self.output = output
        self.packets = self.input.demux(*self.streams) if self.streams else iter(())
        self.done = not self.streams

    def _handle(self, packet: av.Packet) -> None:
        index = packet.stream.index
        out = self.out[index]
        if self.copied[index]:
            if packet.dts is None:  # the demuxer's flush packet
                return
            packet.stream = out
            self.output.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None
            self.output.mux(out.encode(frame))

    def until(self, seconds: float | None) -> None:
        """Mux audio up to `seconds` (all of it when None)."""
        while not self.done:
            packet = next(self.packets, None)
            if packet is None:
                self.done = True
                break
            when = _packet_time(packet)
            self._handle(packet)
            if seconds is not None and when > seconds:
                break

    def finish(self) -> None:
        self.until(None)
        for index, out in self.out.items():
            if not self.copied[index]:
                self.output.mux(out.encode(None))

    def close(self) -> None:
        self.input.close()


class VideoWriter:
    """Encode RGB frames into an H.264 video, optionally with the audio of a source file.

        with VideoWriter("out.mp4", 640, 480, Fraction(25), audio_from="in.mp4") as w:
            for frame in frames:
                w.write(frame)

    `width`/`height` are those of the frames written (odd sizes lose their last column or
    row). Frames get timestamps from `fps` unless `write` is given a time in seconds, which
    keeps variable frame rates and audio sync. `audio` is "copy" (remux when possible, else
    AAC), "aac" (always re-encode) or "none". The file appears under `path` only when the
    writer is closed without an exception; otherwise nothing is left behind.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: Fraction | float,
        *,
        audio_from: str | os.PathLike | None = None,
        audio: str = "copy",
        crf: int = 18,
        preset: str = "veryfast",
        overwrite: bool = False,
    ) -> None:
        if audio not in ("copy", "aac", "none"):
            raise ValueError(f"audio must be 'copy', 'aac' or 'none', not {audio!r}")
        self.path = check_output(path, overwrite)
        fmt = output_format(self.path)
        self.width, self.height = int(width), int(height)
        self._even = (self.width - self.width % 2, self.height - self.height % 2)
        if min(self._even) < 2:
            raise VideoError(f"cannot encode frames of {width}x{height} pixels")
        self.fps = Fraction(fps).limit_denominator(1001000)
        # a hidden sibling (same file system, so the final move is atomic), created by FFmpeg
        # with the usual permissions
        token = secrets.token_hex(4)
        self._tmp = self.path.with_name(f".{self.path.stem}.{token}.part{self.path.suffix}")
        self._audio: _AudioCopier | None = None
        self.frames = 0
        self._last_pts = -1
        self._settings = (fmt, crf, preset)
        self._closed = False
        try:
            try:
                self._open(audio_from, audio)
            except av.FFmpegError:
                if audio_from is None or audio != "copy":
                    raise
                # the container refused a copied audio codec when writing its header (its
                # codec query is optimistic, e.g. PCM in MP4): re-encode the audio to AAC
                self._close_quietly()
                self._open(audio_from, "aac")
        except BaseException:
            self._discard()
            raise

    def _open(self, audio_from: str | os.PathLike | None, audio: str) -> None:
        """Create the output container and its streams, and write its header."""
        fmt, crf, preset = self._settings
        self._out = av.open(str(self._tmp), "w", format=fmt)
        stream = self._out.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = self._even
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": preset}
        stream.thread_type = "AUTO"
        # libswscale converts RGB to limited-range BT.601 YUV; say so in the stream
        stream.codec_context.colorspace = 6  # SMPTE 170M
        stream.codec_context.color_range = 1  # limited ("MPEG")
        # a fine time base so that frame times in seconds keep their precision
        stream.codec_context.time_base = Fraction(1, 90000)
        self._video = stream
        if audio_from is not None and audio != "none":
            self._audio = _AudioCopier(Path(audio_from), self._out, audio)
        self._out.start_encoding()

    def write(self, frame: np.ndarray, time: float | None = None) -> None:
        """Encode one RGB uint8 frame `(height, width, 3)`, shown at `time` seconds (by
        default the frame's index over the frame rate)."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a uint8 frame of shape {(self.height, self.width, 3)}, "
                f"got {frame.dtype} {frame.shape}"
            )
        w, h = self._even
        image = np.ascontiguousarray(frame[:h, :w])
        if time is None:
            time = self.frames / self.fps
        pts = round(float(time) * 90000)
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        video_frame.pts = pts
        video_frame.time_base = Fraction(1, 90000)
        self._out.mux(self._video.encode(video_frame))
        self.frames += 1
        if self._audio is not None:
            self._audio.until(float(time) + _AUDIO_LEAD)

    def close(self) -> Path:
        """Flush, finish the file and move it into place; returns the output path."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            self._out.mux(self._video.encode(None))
            if self._audio is not None:
                self._audio.finish()
                self._audio.close()
            self._out.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self._discard()
            raise
        return self.path

    def _close_quietly(self) -> None:
        for closer in (self._audio, getattr(self, "_out", None)):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        self._audio = None

    def _discard(self) -> None:
        """Drop the temporary file (after an error)."""
        self._closed = True
        self._close_quietly()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()


@dataclass(frozen=True)
class ProcessStats:
    """What `process_video` did: frames written and the seconds it took."""

    frames: int
    seconds: float
    notes: tuple[str, ...] = ()  # e.g. "source photo #1 shows 2 faces; using the largest."

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def process_video(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    fn: Callable[[np.ndarray], np.ndarray],
    progress: bool = True,
    *,
    overwrite: bool = False,
    crf: int = 18,
    preset: str = "veryfast",
    audio: str = "copy",
    on_progress: Callable[[int, int | None, float], None] | None = None,
    cancel: threading.Event | None = None,
    ahead: Callable[[np.ndarray], object] | None = None,
) -> ProcessStats:
    """Apply `fn` (upright RGB uint8 frame `(H, W, 3)` → frame of the same shape) to every
    frame of `in_path` and write the result to `out_path` as H.264 with the source's frame
    timing and audio. Shows a progress bar (fps and ETA) on stderr when `progress`.
    With `ahead`, frames are decoded and `ahead(frame)` run on a second thread while `fn`
    works on an earlier frame, and `fn` is called as `fn(frame, ahead(frame))`
    (`prepared_ahead`): the two halves of a frame's work overlap on two cores.

    `on_progress(done, total, fps)` is called after each frame (`total` None when the
    container does not say; `fps` counted from the first frame). `cancel`, checked before
    each frame and before the file is finished: once it is set, `Cancelled` is raised.

    Raises `UnknownFormatError` or `OutputExistsError` before reading anything, and
    `VideoReadError` / `NoVideoStreamError` for an unusable input; never leaves a partial
    output file (also when cancelled or interrupted).
    """
    from tqdm import tqdm

    out_path = check_output(out_path, overwrite)
    info = probe(in_path)
    start = time.perf_counter()
    total = info.frames
    if total is None and info.duration:
        total = round(info.duration * info.fps)  # e.g. Matroska stores no frame count
    bar = tqdm(
        total=total,
        unit="frame",
        desc=Path(in_path).name,
        disable=not progress,
        dynamic_ncols=True,
        leave=True,
    )
    writer: VideoWriter | None = None
    decoded = frames_with_time(in_path)
    if ahead is None:
        frames = ((image, t, None) for image, t in decoded)
    else:
        frames = prepared_ahead(decoded, ahead)
    try:
        t0: float | None = None
        for image, t, prepared in frames:
            _check(cancel)
            result = fn(image) if ahead is None else fn(image, prepared)
            if writer is None:
                h, w = result.shape[:2]
                writer = VideoWriter(
                    out_path,
                    w,
                    h,
                    info.fps,
                    audio_from=in_path,
                    audio=audio,
                    crf=crf,
                    preset=preset,
                    overwrite=overwrite,
                )
            if t is not None and t0 is None:
                t0 = min(t, 0.0)  # keep a positive start offset (audio sync), drop a negative
            writer.write(result, None if t is None else t - t0)
            bar.update(1)
            if on_progress is not None:
                on_progress(writer.frames, total, writer.frames / (time.perf_counter() - start))
        if writer is None:
            raise VideoReadError(f"'{in_path}' holds no decodable video frame")
        _check(cancel)
        writer.close()
    except BaseException:
        if writer is not None:
            writer._discard()
        raise
    finally:
        frames.close()  # stops the thread reading ahead
        decoded.close()  # the input file, now rather than when the generator is collected
        bar.close()
    return ProcessStats(writer.frames, time.perf_counter() - start)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Cancelled; no output was written.")
