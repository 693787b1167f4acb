"""Video reading and writing: round trips with audio, rotation, refusals, no partial files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from selfswap.errors import SelfswapError
from selfswap.swap.video import (
    NoVideoStreamError,
    OutputExistsError,
    UnknownFormatError,
    VideoReadError,
    VideoWriter,
    prepared_ahead,
    probe,
    process_video,
    read_frames,
)

FPS = 25
N_FRAMES = 24
SAMPLE_RATE = 48000


def pan_frames(astronaut: np.ndarray, grace_hopper: np.ndarray) -> list[np.ndarray]:
    """24 frames of 640x480 panning across both public-domain faces side by side."""
    strip = np.concatenate(
        [
            cv2.resize(x, (round(x.shape[1] * 480 / x.shape[0]), 480), cv2.INTER_AREA)
            for x in (astronaut, grace_hopper)
        ],
        1,
    )
    return [np.ascontiguousarray(strip[:, 10 * i : 10 * i + 640]) for i in range(N_FRAMES)]


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    audio: str | None = "aac",
    rotation: int = 0,
    seconds: float = N_FRAMES / FPS,
) -> None:
    """An H.264 clip at 25 fps with a 440 Hz tone (codec `audio`, or none) of `seconds`."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "15"}
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream(audio, rate=SAMPLE_RATE) if audio else None
        for frame in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None:
            t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(tone), 1024):
                chunk = tone[None, start : start + 1024]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts = SAMPLE_RATE, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))


def audio_of(path: Path) -> tuple[str, float, list[bytes]]:
    """Codec name, duration (s) and packet payloads of the first audio stream."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        packets = [bytes(p) for p in c.demux(stream) if p.size]
        duration = float(stream.duration * stream.time_base)
        return stream.codec_context.name, duration, packets


@pytest.fixture(scope="module")
def frames(astronaut, grace_hopper) -> list[np.ndarray]:
    return pan_frames(astronaut, grace_hopper)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, frames) -> Path:
    path = tmp_path_factory.mktemp("video") / "faces.mp4"
    write_clip(path, frames)
    return path


def test_probe(clip) -> None:
    info = probe(clip)
    assert (info.width, info.height) == (640, 480)
    assert info.fps == Fraction(FPS) and info.frames == N_FRAMES
    assert info.duration == pytest.approx(N_FRAMES / FPS, abs=0.05)
    assert info.rotation == 0 and info.codec == "h264"
    assert info.has_audio and info.audio_codec == "aac"


def test_round_trip_keeps_frames_fps_and_the_audio_stream(clip, frames, tmp_path) -> None:
    out = tmp_path / "out.mp4"
    stats = process_video(clip, out, lambda f: f, progress=False)
    assert stats.frames == N_FRAMES and stats.fps > 0
    info = probe(out)
    assert info.frames == N_FRAMES and info.fps == Fraction(FPS)
    assert (info.width, info.height) == (640, 480) and info.codec == "h264"
    decoded = list(read_frames(out))
    assert len(decoded) == N_FRAMES
    assert all(d.shape == (480, 640, 3) and d.dtype == np.uint8 for d in decoded)
    err = np.mean([np.abs(d.astype(int) - f.astype(int)).mean() for d, f in zip(decoded, frames)])
    assert err < 3.0  # two lossy encodes
    codec, duration, packets = audio_of(out)
    codec0, duration0, packets0 = audio_of(clip)
    assert codec == codec0 == "aac"
    assert duration == pytest.approx(duration0, abs=0.1)
    assert packets == packets0  # remuxed, not re-encoded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_the_frame_function_is_applied_with_a_progress_bar(clip, tmp_path, capsys) -> None:
    out = tmp_path / "negative.mkv"
    process_video(clip, out, lambda f: 255 - f, progress=True)
    assert f"{N_FRAMES}/{N_FRAMES}" in capsys.readouterr().err  # tqdm: count, fps, ETA
    first_in, first_out = next(read_frames(clip)), next(read_frames(out))
    assert np.abs((255 - first_in).astype(int) - first_out).mean() < 3.0
    assert probe(out).has_audio


def test_work_ahead_on_a_second_thread_gives_the_same_video(clip, tmp_path) -> None:
    """`ahead` runs on the reading thread, a frame or two ahead of `fn`, which gets its
    result; the video written is the one a single thread writes."""
    import threading

    threads = set()

    def ahead(frame: np.ndarray) -> int:
        threads.add(threading.current_thread().name)
        return int(frame[0, 0, 0])

    plain, overlapped = tmp_path / "plain.mp4", tmp_path / "ahead.mp4"
    process_video(clip, plain, lambda f: 255 - f, progress=False)
    seen: list[int] = []

    def fn(frame: np.ndarray, value: int) -> np.ndarray:
        assert value == frame[0, 0, 0]  # its own frame's result, not a neighbour's
        seen.append(value)
        return 255 - frame

    stats = process_video(clip, overlapped, fn, progress=False, ahead=ahead)
    assert stats.frames == N_FRAMES == len(seen)
    assert threads == {"selfswap-reader"}
    for a, b in zip(read_frames(plain), read_frames(overlapped), strict=True):
        np.testing.assert_array_equal(a, b)


def test_reading_ahead_raises_in_order_and_stops_when_closed() -> None:
    import threading

    closed = []

    def frames(n: int):
        try:
            for i in range(n):
                yield np.full((2, 2, 3), i, np.uint8), i / 25
        finally:
            closed.append(n)

    def prepare(frame: np.ndarray) -> int:
        if frame[0, 0, 0] == 3:
            raise ValueError("frame 3")
        return int(frame[0, 0, 0]) * 10

    got = []
    with pytest.raises(ValueError, match="frame 3"):
        for image, t, value in prepared_ahead(frames(10), prepare):
            got.append((int(image[0, 0, 0]), t, value))
    assert got == [(i, i / 25, 10 * i) for i in range(3)]  # the frames before, in order
    assert closed == [10]
    ahead = prepared_ahead(frames(1000), lambda f: 0)
    next(ahead)
    ahead.close()  # a caller that stops early: the reading thread ends and the input closes
    assert closed == [10, 1000]
    assert not [t for t in threading.enumerate() if t.name == "selfswap-reader"]


@pytest.mark.parametrize(
    ("codec", "ext", "expected"),
    [
        ("pcm_s16le", ".mp4", "aac"),  # MP4 cannot hold PCM: re-encoded
        ("pcm_s16le", ".mov", "pcm_s16le"),  # QuickTime can: copied
        ("flac", ".mov", "aac"),  # refused when the header is written: re-encoded
    ],
)
def test_audio_copied_when_possible_else_reencoded(codec, ext, expected, tmp_path) -> None:
    src = tmp_path / "src.mkv"
    write_clip(src, [np.full((48, 64, 3), 90, np.uint8)] * 10, audio=codec, seconds=0.4)
    out = tmp_path / f"out{ext}"
    process_video(src, out, lambda f: f, progress=False)
    name, duration, _ = audio_of(out)
    assert name == expected and duration == pytest.approx(0.4, abs=0.1)
    assert probe(out).frames == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["src.mkv", out.name])


def test_audio_can_be_forced_to_aac(clip, tmp_path) -> None:
    out = tmp_path / "out.mp4"
    process_video(clip, out, lambda f: f, progress=False, audio="aac")
    name, duration, packets = audio_of(out)
    assert name == "aac" and duration == pytest.approx(audio_of(clip)[1], abs=0.1)
    assert packets != audio_of(clip)[2]


def test_video_without_audio(frames, tmp_path) -> None:
    src = tmp_path / "silent.mp4"
    write_clip(src, frames[:8], audio=None)
    assert not probe(src).has_audio
    out = tmp_path / "out.mp4"
    process_video(src, out, lambda f: f, progress=False)
    info = probe(out)
    assert info.frames == 8 and not info.has_audio and info.audio_codec is None


def test_rotation_metadata_is_honoured(tmp_path) -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:16, :16] = 255  # a white square in the stored top-left corner
    src = tmp_path / "rotated.mp4"
    write_clip(src, [frame] * 5, audio=None, rotation=90)
    info = probe(src)
    assert info.rotation == 90 and (info.width, info.height) == (48, 64)
    upright = next(read_frames(src))
    # a 90° counter-clockwise turn takes the top-left corner to the bottom-left
    assert upright.shape == (64, 48, 3)
    assert upright[-8:, :8].mean() > 200 and upright[:8, :8].mean() < 50
    out = tmp_path / "upright.mp4"
    process_video(src, out, lambda f: f, progress=False)
    info = probe(out)
    assert info.rotation == 0 and (info.width, info.height) == (48, 64)
    assert np.abs(next(read_frames(out)).astype(int) - upright).mean() < 4


def test_odd_sizes_are_cropped_to_even(tmp_path) -> None:
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 65, 49, 10) as writer:
        for _ in range(3):
            writer.write(np.full((49, 65, 3), 128, np.uint8))
    info = probe(out)
    assert (info.width, info.height) == (64, 48) and info.frames == 3


def test_existing_output_is_refused_unless_overwrite(clip, tmp_path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="exists"):
        process_video(clip, out, lambda f: f, progress=False)
    assert out.read_bytes() == b"keep me"
    process_video(clip, out, lambda f: f, progress=False, overwrite=True)
    assert probe(out).frames == N_FRAMES


def test_bad_inputs_and_outputs_leave_no_file(clip, tmp_path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(20000))
    sound_only = tmp_path / "sound.m4a"
    with av.open(str(sound_only), "w") as c:
        s = c.add_stream("aac", rate=SAMPLE_RATE)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.float32), "flt", "mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, 0
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    before = sorted(tmp_path.iterdir())
    cases = [
        (corrupt, tmp_path / "a.mp4", VideoReadError, "cannot read video"),
        (tmp_path / "missing.mp4", tmp_path / "b.mp4", VideoReadError, "not found"),
        (sound_only, tmp_path / "c.mp4", NoVideoStreamError, "no video stream"),
        (clip, tmp_path / "d.xyz", UnknownFormatError, "unknown output video format"),
        (clip, tmp_path / "e", UnknownFormatError, "unknown output video format"),
    ]
    for src, out, error, message in cases:
        with pytest.raises(error, match=message) as info:
            process_video(src, out, lambda f: f, progress=False)
        assert isinstance(info.value, SelfswapError)
        assert "\n" not in str(info.value)
        assert sorted(tmp_path.iterdir()) == before

    def fails(frame: np.ndarray) -> np.ndarray:
        fails.calls += 1
        if fails.calls > 5:
            raise RuntimeError("boom")
        return frame

    fails.calls = 0
    with pytest.raises(RuntimeError):
        process_video(clip, tmp_path / "f.mp4", fails, progress=False)
    assert sorted(tmp_path.iterdir()) == before  # no partial output, no temporary file
