"""`selfswap serve` in a real browser: Debian's Chromium driven by Playwright.

The server runs as a user starts it (`selfswap serve --port N`); the tests upload the
public-domain faces, choose faces, swap, download and check the files, run and cancel
video jobs, stream Chromium's fake camera (a pan over the astronaut photo) through the live
tab, and take the screenshots in `docs/`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from selfswap.api import analyze, check_provenance
from selfswap.io.images import load_image, save_image
from selfswap.samples import sample_path

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[1] / "docs"
BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]  # fmt: skip
UPLOAD_LIMIT_MB = 2.0  # the server's limits in these tests, to test the refusals
VIDEO_LIMIT_S = 10.0
TIMEOUT_MS = 240_000  # a swap on a busy 2-core machine takes a while


def _browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]'; make test does it)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium; make test does it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, temp: Path, process: subprocess.Popen) -> None:
        self.url, self.temp, self.process = url, temp, process

    def files(self, under: str = "") -> list[Path]:
        root = self.temp / under
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    if reason := _browser_missing():
        pytest.skip(reason)
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # one thread per library unless the caller says otherwise (OMP_NUM_THREADS=2 measures the
    # server as a user runs it on 2 cores)
    env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "selfswap.cli", "serve", "--port", str(port),
               "--set", f"max_upload_mb={UPLOAD_LIMIT_MB}",
               "--set", f"max_video_seconds={VIDEO_LIMIT_S}"]  # fmt: skip
    with log.open("w") as out:
        # Ctrl-C must reach the app even when the tests run in a background job (SIGINT ignored)
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        text = log.read_text()
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"selfswap serve did not start:\n{text}")
        found = re.search(r"temporary files: (\S+)", text)
        try:
            if found and urllib.request.urlopen(url, timeout=5).status == 200:
                break
        except OSError:
            pass
        time.sleep(1)
    assert f"open http://localhost:{port}" in text
    temp = Path(found.group(1))
    yield Server(url, temp, process)
    process.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
    print(log.read_text()[-4000:])  # shown when a test failed (or with -s)
    assert not temp.exists(), "the app's temporary folder was left behind"


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory, astronaut) -> Path:
    """A 640x480 y4m clip for Chromium's fake camera: a pan over the astronaut photo."""
    path = tmp_path_factory.mktemp("camera") / "pan.y4m"
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_AREA)
    with path.open("wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for i in range(30):
            x = i * (1024 - 640) // 29
            frame = np.ascontiguousarray(big[200:680, x : x + 640])
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory, fake_camera):
    if reason := _browser_missing():
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=[*BROWSER_FLAGS, f"--use-file-for-fake-video-capture={fake_camera}"],
            headless=True,
            viewport={"width": 1280, "height": 900},
            accept_downloads=True,
        )
        yield context
        context.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    page.wait_for_selector("#image-target")
    yield page
    page.close()


def upload(page, elem_id: str, *files: Path) -> None:
    """Drop `files` on a file box (clearing what it held first, as a user would)."""
    box = page.locator(f"#{elem_id}")
    if not box.locator("input[type=file]").count():
        box.get_by_role("button", name=re.compile("clear|remove", re.I)).first.click()
    box.locator("input[type=file]").set_input_files([str(f) for f in files])


def expect_text(page, text: str) -> None:
    page.get_by_text(text).first.wait_for()


def shot(page, name: str) -> None:
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / name), full_page=True)


def face_pair(astronaut: np.ndarray, grace_hopper: np.ndarray) -> np.ndarray:
    """Two faces side by side: the astronaut (#0) and Grace Hopper (#1)."""
    return np.concatenate([astronaut, grace_hopper[:512, :512]], axis=1)


RESULTS: dict[str, Path] = {}


def test_image_tab_swaps_the_chosen_face_and_downloads_a_marked_file(
    page, server, tmp_path, astronaut, grace_hopper
):
    expect_text(page, "Swap only faces of people who have agreed to it")
    pair = face_pair(astronaut, grace_hopper)
    save_image(tmp_path / "pair.png", pair)
    upload(page, "image-sources", sample_path("grace_hopper"))
    upload(page, "image-target", tmp_path / "pair.png")
    expect_text(page, "2 face(s) found")
    page.locator("#image-faces img").nth(0).click()  # choose the astronaut
    chosen = page.locator("#image-chosen input[type=checkbox]")
    page.wait_for_function(
        "() => document.querySelectorAll('#image-chosen input:checked').length === 1"
    )
    assert chosen.nth(0).is_checked() and not chosen.nth(1).is_checked()
    page.locator("#image-swap").click()
    expect_text(page, "Swapped face(s) [0] of 2")
    with page.expect_download() as download:
        page.locator("#image-download a").first.click()
    out = tmp_path / "downloaded.png"
    download.value.save_as(out)
    shot(page, "web-image.png")

    result = load_image(out)
    assert result.shape == pair.shape
    report = check_provenance(out)
    assert report.watermarked and "selfswap:synthetic" in report.metadata
    change = np.abs(result.astype(int) - pair.astype(int)).mean(axis=2)
    inside = [change[int(y0) : int(y1), int(x0) : int(x1)].mean()
              for x0, y0, x1, y1 in (f.box for f in analyze(pair))]  # fmt: skip
    # the watermark changes every pixel by about one level; the swap, the chosen face only
    assert inside[0] > 8 and inside[1] < 2, inside
    RESULTS["image"] = out


def test_image_tab_replaces_the_person_of_a_reference_photo(
    page, tmp_path, astronaut, grace_hopper
):
    save_image(tmp_path / "pair.png", face_pair(astronaut, grace_hopper))
    upload(page, "image-sources", sample_path("astronaut"))
    upload(page, "image-target", tmp_path / "pair.png")
    expect_text(page, "2 face(s) found")
    upload(page, "image-reference", sample_path("grace_hopper"))  # selects the mode too
    page.wait_for_function(
        "() => document.querySelector('#image-mode input:checked').value.includes('reference')"
    )
    page.locator("#image-swap").click()
    expect_text(page, "Swapped face(s) [1] of 2")


@pytest.fixture(scope="module")
def swapper():
    """The default model in this process, to compare the page's results with the API's."""
    from selfswap.api import Swapper

    return Swapper.load("default")


def test_image_tab_shows_the_source_faces_and_takes_the_chosen_one(
    page, tmp_path, swapper, astronaut, grace_hopper
):
    pair = face_pair(astronaut, grace_hopper)  # Grace Hopper's face (#1) is the larger
    save_image(tmp_path / "pair.png", pair)
    upload(page, "image-sources", tmp_path / "pair.png")
    expect_text(page, "Source face used: photo 1: face #1.")
    faces = page.locator("#image-source-faces")
    assert faces.locator("img").count() == 2
    assert "#1 ✓" in faces.inner_text() and "#0 ✓" not in faces.inner_text()
    faces.locator("img").nth(0).click()  # use the astronaut instead
    expect_text(page, "Source face used: photo 1: face #0.")
    assert "#0 ✓" in faces.inner_text() and "#1 ✓" not in faces.inner_text()
    upload(page, "image-target", sample_path("grace_hopper"))
    expect_text(page, "1 face(s) found")
    page.locator("#image-swap").click()
    expect_text(page, "Swapped face(s) [0] of 1")
    shot(page, "web-image-sources.png")
    with page.expect_download() as download:
        page.locator("#image-download a").first.click()
    out = tmp_path / "downloaded.png"
    download.value.save_as(out)
    result = load_image(out).astype(float)
    # the API's swaps with either face: the page's is the chosen one's
    by_api = [swapper.swap_image(pair, grace_hopper, source_faces=[i]).image for i in (0, 1)]
    distance = [np.abs(result - image).mean() for image in by_api]
    assert distance[0] < 0.5 < distance[1], distance


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no-face", "No face found in the target photo."),
        ("unreadable", "not an image file"),
        ("too-large", f"over the {UPLOAD_LIMIT_MB:g} MB limit"),
    ],
)
def test_image_tab_refusals_are_one_clear_message(page, tmp_path, kind, message):
    target = tmp_path / f"{kind}.png"
    if kind == "no-face":
        save_image(target, np.full((240, 320, 3), 128, np.uint8))
    elif kind == "unreadable":
        target.write_bytes(b"this is not a picture" * 50)
    else:  # noise does not compress: a PNG over the limit
        noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
        save_image(target, noise)
        assert target.stat().st_size > UPLOAD_LIMIT_MB * 1e6
    upload(page, "image-target", target)
    expect_text(page, message)
    assert "Traceback" not in page.content()


def test_provenance_tab_tells_marked_from_unmarked(page):
    if "image" not in RESULTS:
        pytest.skip("needs the image tab's result (run with the image test)")
    page.get_by_role("tab", name="Provenance").click()
    upload(page, "prov-file", sample_path("astronaut"))
    expect_text(page, "no selfswap marks found")
    upload(page, "prov-file", RESULTS["image"])
    expect_text(page, "made by selfswap (a synthetic image)")
    expect_text(page, "C2PA manifest valid")
    expect_text(page, "selfswap:synthetic")
    shot(page, "web-provenance.png")


def test_live_tab_streams_the_fake_camera_in_memory(page, server):
    page.get_by_role("tab", name="Live").click()
    upload(page, "live-sources", sample_path("grace_hopper"))
    expect_text(page, "Source person ready")
    before = set(server.files())
    page.get_by_text("Click to Access Webcam").click()
    page.locator("#live-webcam button", has_text=re.compile("Record|Start", re.I)).first.click()
    page.locator("#live-output img").wait_for()
    time.sleep(8)
    text = page.locator("#live-fps").inner_text()
    shot(page, "web-live.png")
    page.locator("#live-webcam button", has_text=re.compile("Stop", re.I)).first.click()
    fps = float(re.search(r"fps: ([\d.]+) \((\d+)x(\d+)\)", text).group(1))
    print(f"live: {text}")
    assert fps > 0.5, text
    assert "640x480" in text
    assert set(server.files()) == before, "live frames were written to disk"


def _clip(path: Path, frames: int, astronaut, grace_hopper, size=(320, 240)) -> Path:
    from test_video import FPS, pan_frames, write_clip

    pan = [cv2.resize(f, size, interpolation=cv2.INTER_AREA)
           for f in pan_frames(astronaut, grace_hopper)]  # fmt: skip
    chosen = [pan[i % len(pan)] for i in range(frames)]
    write_clip(path, chosen, seconds=frames / FPS)
    return path


def _start_video(page, clip: Path) -> None:
    page.get_by_role("tab", name="Video").click()
    upload(page, "video-sources", sample_path("grace_hopper"))
    upload(page, "video-target", clip)
    expect_text(page, "face(s) found")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unreadable", "The video cannot be used"),
        ("too-long", f"over the {VIDEO_LIMIT_S:g} s limit"),
    ],
)
def test_video_tab_refusals_are_one_clear_message(
    page, tmp_path, astronaut, grace_hopper, kind, message
):
    clip = tmp_path / f"{kind}.mp4"
    if kind == "unreadable":
        clip.write_bytes(bytes(range(256)) * 40)
    else:
        _clip(clip, int(VIDEO_LIMIT_S * 25) + 25, astronaut, grace_hopper, size=(64, 48))
    page.get_by_role("tab", name="Video").click()
    upload(page, "video-target", clip)
    expect_text(page, message)
    assert "Traceback" not in page.content()


@pytest.mark.slow
def test_video_tab_previews_then_swaps_to_the_end_with_progress(
    page, server, tmp_path, astronaut, grace_hopper
):
    from selfswap.swap.video import probe

    clip = _clip(tmp_path / "clip.mp4", 12, astronaut, grace_hopper)
    _start_video(page, clip)
    page.locator("#video-preview-go").click()
    page.locator("#video-preview img").wait_for()
    page.locator("#video-swap").click()
    expect_text(page, "Swapping:")
    expect_text(page, "Done: 12 / 12 frames")
    shot(page, "web-video.png")
    with page.expect_download() as download:
        page.locator("#video-download a").first.click()
    out = tmp_path / "swapped.mp4"
    download.value.save_as(out)
    info = probe(out)
    assert info.frames == 12 and info.has_audio and (info.width, info.height) == (320, 240)


@pytest.mark.slow
def test_video_cancel_midway_leaves_no_file(page, server, tmp_path, astronaut, grace_hopper):
    clip = _clip(tmp_path / "long.mp4", 200, astronaut, grace_hopper)
    _start_video(page, clip)
    before = set(server.files("video"))  # an earlier test's finished result may be there
    page.locator("#video-swap").click()
    page.wait_for_function(
        "() => /Swapping: [1-9]\\d* \\/ 200/"
        ".test(document.querySelector('#video-status').innerText)"
    )
    page.locator("#video-cancel").click()
    expect_text(page, "Cancelled; no file was kept.")
    assert set(server.files("video")) == before, "the cancelled job left a file"
    assert "Swapping" not in page.locator("#video-status").inner_text()


def test_process_video_reports_progress_and_a_cancel_leaves_no_file(
    tmp_path, astronaut, grace_hopper
):
    import threading

    from selfswap.swap.video import Cancelled, process_video

    clip = _clip(tmp_path / "clip.mp4", 10, astronaut, grace_hopper, size=(64, 48))
    seen = []
    process_video(
        clip, tmp_path / "done.mp4", lambda f: f, progress=False,
        on_progress=lambda *values: seen.append(values),
    )  # fmt: skip
    assert [s[0] for s in seen] == list(range(1, 11)) and {s[1] for s in seen} == {10}
    assert all(s[2] > 0 for s in seen)
    cancel, calls = threading.Event(), []

    def stops_at_the_fourth(frame):
        calls.append(1)
        if len(calls) == 4:
            cancel.set()
        return frame

    with pytest.raises(Cancelled):
        process_video(
            clip, tmp_path / "cancelled.mp4", stops_at_the_fourth, progress=False, cancel=cancel
        )
    assert len(calls) == 4  # no frame after the cancel
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "done.mp4"]


def test_source_faces_choose_the_face_of_each_source_photo(swapper, astronaut, grace_hopper):
    from selfswap.errors import SelfswapError

    pair = face_pair(astronaut, grace_hopper)
    assert [round(f.width) for f in swapper.faces_in(pair)] == [101, 200]
    largest = swapper.identity(pair)
    assert largest.notes == ["source photo #1 shows 2 faces; using the largest."]
    chosen = [swapper.identity(pair, [i]) for i in (0, 1)]
    alone = [swapper.identity(astronaut), swapper.identity(grace_hopper[:512, :512].copy())]
    for one, other in zip(chosen, alone):
        assert np.linalg.norm(one.embedding - other.embedding) < 0.2 and not one.notes
    assert np.linalg.norm(chosen[0].embedding - chosen[1].embedding) > 0.5
    assert np.allclose(largest.embedding, chosen[1].embedding)
    both = swapper.identity([pair, astronaut], [0, None])  # None: the photo's largest face
    assert both.photos == 2 and np.linalg.norm(both.embedding - alone[0].embedding) < 0.2
    with pytest.raises(SelfswapError, match="Source photo #1 has no face #2; it shows 2"):
        swapper.identity(pair, [2])
    with pytest.raises(SelfswapError, match="one face per source photo"):
        swapper.identity(pair, [0, 1])


def test_live_frames_are_pipelined_followed_and_kept_in_memory(
    tmp_path, swapper, astronaut, grace_hopper
):
    from selfswap.web.app import App
    from selfswap.web.limits import TempFolder, WebConfig

    temp = TempFolder(tmp_path)
    app = App(WebConfig(), temp)
    app.model._swapper = swapper  # the server's model, loaded once for this module
    identity = swapper.identity(grace_hopper)
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_AREA)
    frames = [np.ascontiguousarray(big[200:680, x : x + 640]) for x in (0, 20, 40)]
    assert app.live_frame("page", frames[0], identity) is None  # swapped in the background
    first = app.live_frame("page", frames[1], identity)  # ... and given with the next frame
    assert app.live_frame("page", frames[1], identity) is None  # the same frame: skipped
    second = app.live_frame("page", frames[2], identity)
    assert first.shape == second.shape == (480, 640, 3)
    box = [int(v) for v in swapper.faces_in(frames[0])[0].box]
    face = (slice(max(box[1], 0), box[3]), slice(box[0], box[2]))
    assert np.abs(first[face].astype(int) - frames[0][face]).mean() > 8  # the face swapped
    assert np.abs(first.astype(int) - frames[0]).mean() < 4  # the rest as it was
    assert app.live["page"].follower.count == 3  # one whole search, then followed
    assert app.live["page"].steadier.strength == app.config.swap.steady > 0  # steadied
    assert not [p for p in temp.root.rglob("*") if p.is_file()]
    temp.cleanup()


def test_serve_binds_to_localhost_by_default():
    from selfswap.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 7860)


def test_the_app_opens_only_files_in_its_own_folder(tmp_path):
    from selfswap.errors import SelfswapError
    from selfswap.web.app import App
    from selfswap.web.limits import TempFolder, WebConfig

    temp = TempFolder(tmp_path)
    app = App(WebConfig(), temp)
    outside = tmp_path / "secret.png"
    save_image(outside, np.zeros((8, 8, 3), np.uint8))
    for path in (outside, temp.root / ".." / "secret.png", "/etc/passwd"):
        with pytest.raises(SelfswapError, match="not an upload of this page"):
            app.image(str(path), "target photo")
    inside = temp.new_dir("uploads") / "ok.png"
    save_image(inside, np.zeros((8, 8, 3), np.uint8))
    assert app.image(str(inside), "target photo").shape == (8, 8, 3)
    temp.cleanup()
    assert not temp.root.exists()


def test_web_limits_come_from_one_typed_config():
    from selfswap.config import ConfigError, load_config
    from selfswap.web.limits import WebConfig

    config = load_config(WebConfig, None, ["max_upload_mb=5", "swap.paste=mask"])
    assert config.max_upload_mb == 5 and config.swap.paste == "mask"
    with pytest.raises(ConfigError, match="paste must be"):
        load_config(WebConfig, None, ["swap.paste=everything"])
    with pytest.raises(ConfigError, match="max_video_seconds must be positive"):
        load_config(WebConfig, None, ["max_video_seconds=0"])
