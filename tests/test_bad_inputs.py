"""The real `selfswap` command on a generated set of bad inputs: every case must end in one
`error:` sentence and a non-zero exit, never a traceback, and must leave the folder exactly
as it was (no partial or temporary file, every input byte-for-byte unchanged).

The default run covers one or two cases per command; `-m slow` runs the whole set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import png_header_only
from selfswap.models.registry import expected_path
from selfswap.samples import sample_path
from selfswap.swap import bundle

SLOW = pytest.mark.slow


def _audio_only_mp4(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            samples = np.zeros((1, 1024), np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def face_video(path: Path, frames: int) -> Path:
    """A 256x256 H.264 clip of the astronaut's face, `frames` frames at 25 fps."""
    from selfswap.swap.video import VideoWriter

    image = np.asarray(Image.open(sample_path("astronaut")).convert("RGB").resize((256, 256)))
    with VideoWriter(path, 256, 256, Fraction(25)) as writer:
        for _ in range(frames):
            writer.write(image)
    return path


def _model_variants(folder: Path) -> None:
    """Model files with selfswap's format tag but broken content."""
    with safe_open(str(bundle.packaged("default")), framework="pt") as f:
        meta = dict(f.metadata())
        weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    plain = {k: v for k, v in meta.items() if k != bundle.DIGEST_KEY}
    save_file(weights, str(folder / "badjson.safetensors"), {**plain, "config": "{not json"})
    no_config = {k: v for k, v in plain.items() if k != "config"}
    save_file(weights, str(folder / "noconfig.safetensors"), no_config)
    foreign = {"encoder.conv.weight": torch.zeros(4, 3, 3, 3)}
    save_file(foreign, str(folder / "foreign.safetensors"), plain)
    save_file(
        weights, str(folder / "badsize.safetensors"), {**plain, "config": json.dumps({"size": 0})}
    )
    nan = dict(weights)
    name = sorted(nan)[3]
    nan[name] = nan[name].clone()
    nan[name].view(-1)[:8] = float("nan")
    save_file(nan, str(folder / "nan.safetensors"), meta)
    save_file(nan, str(folder / "nan-nodigest.safetensors"), plain)
    data = bytearray(bundle.packaged("default").read_bytes())
    data[-5000] ^= 0x10  # one bit of one tensor value
    (folder / "flipped.safetensors").write_bytes(bytes(data))
    (folder / "truncated.safetensors").write_bytes(bytes(data[: len(data) // 2]))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder of good and bad inputs (the cases run inside it)."""
    w = tmp_path_factory.mktemp("bad-inputs")
    shutil.copy(sample_path("astronaut"), w / "a.png")
    shutil.copy(sample_path("grace_hopper"), w / "h.png")
    (w / "empty.jpg").write_bytes(b"")
    Image.open(sample_path("grace_hopper")).convert("RGB").save(w / "full.jpg", quality=90)
    (w / "truncated.jpg").write_bytes((w / "full.jpg").read_bytes()[:5000])
    (w / "full.jpg").unlink()
    (w / "text.jpg").write_text("plain text, not pixels")
    (w / "binary.txt").write_bytes(bytes(range(256)) * 8)
    os.symlink("loop2.jpg", w / "loop1.jpg")
    os.symlink("loop1.jpg", w / "loop2.jpg")
    (w / "folder.jpg").mkdir()
    (w / "folder.png").mkdir()
    (w / "folder.mp4").mkdir()
    (w / "afile").write_text("a regular file, not a folder")
    png_header_only(w / "huge.png", 100_000, 100_000)
    (w / "noise.mp4").write_bytes(bytes(range(256)) * 40)
    (w / "empty.mp4").write_bytes(b"")
    _audio_only_mp4(w / "audio.mp4")
    face_video(w / "clip.mp4", 3)
    (w / "list.txt").write_text("")
    header = "source\tsource_id_ref\ttarget\n"
    (w / "empty.tsv").write_text("")
    (w / "header.tsv").write_text(header)
    (w / "short.tsv").write_text(header + "h.png\ta.png\n")
    (w / "one.tsv").write_text(header + "h.png\th.png\ta.png\n")
    (w / "detector5.yaml").write_text("detector: 5\n")
    (w / "broken.yaml").write_text("detector: [unclosed\n")
    (w / "photos").mkdir()
    shutil.copy(sample_path("astronaut"), w / "photos" / "a.png")
    (w / "models").mkdir()
    _model_variants(w / "models")
    return w


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (hidden ones included) with its content digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                out[key] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[key] = "dir"
            else:
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_cli(
    *args: str, cwd: Path, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfswap.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=timeout,
    )


def assert_one_sentence(result: subprocess.CompletedProcess, fragment: str = "") -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert fragment.lower() in errors[0].lower(), errors[0]


SWAP = "swap -s h.png -t a.png"
VIDEO = "video -s h.png -t clip.mp4"
PREP = "prepare --input photos --output p"
MODEL = f"{SWAP} -o o.png --model models/"
EVAL = "eval --model default --images ."

#: (case, command line in the work folder, a fragment the error sentence must contain, whether
#: it runs only with `-m slow`); one or two per command run by default.
TABLE = [
    ("analyze-empty", "analyze empty.jpg", "empty", False),
    ("analyze-loop", "analyze loop1.jpg", "symbolic link loop", False),
    ("analyze-truncated", "analyze truncated.jpg", "truncated", True),
    ("analyze-text", "analyze text.jpg", "not an image", True),
    ("analyze-folder", "analyze folder.jpg", "folder", True),
    ("analyze-huge-header", "analyze huge.png", "MP limit", True),
    ("analyze-draw-onto-input", "analyze a.png --draw a.png", "also an input", False),
    ("analyze-draw-onto-input-2", "analyze a.png --draw ./photos/../a.png", "also an input", True),
    ("analyze-draw-parent-is-file", "analyze a.png --draw afile/x.png", "not a folder", True),
    ("analyze-config-detector-5", "analyze a.png --config detector5.yaml", "expected text", False),
    ("analyze-set-detector", "analyze a.png --set detector=nonexistent", "unknown value", True),
    ("analyze-broken-config", "analyze a.png --config broken.yaml", "YAML", True),
    ("swap-target-loop", "swap -s h.png -t loop1.jpg -o o.png", "loop", False),
    ("swap-source-loop", "swap -s loop1.jpg -t a.png -o o.png", "loop", True),
    ("swap-parent-is-file", f"{SWAP} -o afile/o.png", "not a folder", False),
    ("swap-output-is-folder", f"{SWAP} -o folder.png --overwrite", "is a folder", False),
    ("swap-output-is-input", f"{SWAP} -o a.png --overwrite", "also an input", True),
    ("swap-empty-source", "swap -s empty.jpg -t a.png -o o.png", "empty", True),
    ("swap-source-is-folder", "swap -s folder.jpg -t a.png -o o.png", "folder", True),
    ("swap-truncated-target", "swap -s h.png -t truncated.jpg -o o.png", "truncated", True),
    ("swap-model-flipped", f"{MODEL}flipped.safetensors", "selfswap export", False),
    ("swap-model-no-config", f"{MODEL}noconfig.safetensors", "no training configuration", True),
    ("swap-model-bad-json", f"{MODEL}badjson.safetensors", "damaged training configuration", True),
    ("swap-model-foreign", f"{MODEL}foreign.safetensors", "does not hold the swap model", True),
    ("swap-model-size-0", f"{MODEL}badsize.safetensors", "damaged training configuration", True),
    ("swap-model-nan", f"{MODEL}nan.safetensors", "corrupt", True),
    ("swap-model-nan-no-digest", f"{MODEL}nan-nodigest.safetensors", "NaN", True),
    ("swap-model-truncated", f"{MODEL}truncated.safetensors", "not a readable model", True),
    ("video-no-video-stream", "video -s h.png -t audio.mp4 -o o.mp4", "no video stream", False),
    ("video-target-loop", "video -s h.png -t loop1.jpg -o o.mp4", "loop", True),
    ("video-noise", "video -s h.png -t noise.mp4 -o o.mp4", "noise.mp4", True),
    ("video-empty", "video -s h.png -t empty.mp4 -o o.mp4", "empty.mp4", True),
    ("video-target-folder", "video -s h.png -t folder.jpg -o o.mp4", "folder.jpg", True),
    ("video-output-is-input", f"{VIDEO} -o clip.mp4 --overwrite", "also an input", True),
    ("video-parent-is-file", f"{VIDEO} -o afile/o.mp4", "not a folder", True),
    ("video-output-is-folder", f"{VIDEO} -o folder.mp4 --overwrite", "is a folder", True),
    ("video-huge-source", "video -s huge.png -t clip.mp4 -o o.mp4", "MP limit", True),
    ("guidance-output-is-input", "guidance -t a.png -o a.png", "also an input", False),
    ("guidance-source-is-output", "guidance -t a.png -s h.png -o h.png", "also an input", True),
    ("guidance-empty", "guidance -t empty.jpg -o g.png", "empty", True),
    ("guidance-loop", "guidance -t loop1.jpg -o g.png", "loop", True),
    ("guidance-huge", "guidance -t huge.png -o g.png", "MP limit", True),
    ("guidance-size-0", "guidance -t a.png -o g.png --size 0", "--size", True),
    ("provenance-text", "provenance text.jpg", "not an image", False),
    ("provenance-loop", "provenance loop1.jpg", "loop", True),
    ("provenance-truncated", "provenance truncated.jpg", "truncated", True),
    ("provenance-folder", "provenance folder.jpg", "folder", True),
    ("provenance-empty", "provenance empty.jpg", "empty", True),
    ("eval-empty-pairs", f"{EVAL} --pairs empty.tsv --out ev", "header", False),
    ("eval-header-only", f"{EVAL} --pairs header.tsv --out ev", "no pairs", True),
    ("eval-short-row", f"{EVAL} --pairs short.tsv --out ev", "line 2", True),
    ("eval-binary-pairs", f"{EVAL} --pairs binary.txt --out ev", "UTF-8", True),
    ("eval-out-is-file", f"{EVAL} --pairs one.tsv --out afile", "is a file", False),
    ("eval-negative-limit", f"{EVAL} --pairs one.tsv --out ev --limit -1", "positive", True),
    ("eval-negative-recon", f"{EVAL} --pairs one.tsv --out ev --recon -1", "negative", True),
    ("prepare-detector", f"{PREP} --detector nonexistent", "--detector", False),
    ("prepare-max-yaw", f"{PREP} --max-yaw -5", "--max-yaw", False),
    ("prepare-min-face", f"{PREP} --min-face-size -1", "--min-face-size", True),
    ("prepare-output-is-input", "prepare --input photos --output photos", "also an input", True),
    ("prepare-parent-is-file", "prepare --input photos --output afile/p", "not a folder", True),
    ("prepare-input-is-image", "prepare --input a.png --output p", "is an image", True),
    ("prepare-input-empty-jpg", "prepare --input empty.jpg --output p", "is an image", True),
    ("prepare-empty-list", "prepare --input list.txt --output p", "no images", True),
    ("prepare-binary-list", "prepare --input binary.txt --output p", "text file", True),
    ("prepare-input-loop", "prepare --input loop1.jpg --output p", "loop", True),
]
CASES = [
    pytest.param(command, fragment, id=name, marks=[SLOW] if slow else [])
    for name, command, fragment, slow in TABLE
]


@pytest.mark.parametrize("command, fragment", CASES)
def test_bad_input_gets_one_sentence_and_changes_nothing(work, command, fragment):
    before = _snapshot(work)
    result = run_cli(*command.split(), cwd=work)
    assert_one_sentence(result, fragment)
    assert _snapshot(work) == before, "files were created, changed or removed"


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (chmod does not stop root, so root gets
    /sys, which is read-only for everyone); skips when there is none."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    folder = Path("/sys")
    try:
        (folder / "selfswap-probe").touch()
    except OSError:
        return folder
    (folder / "selfswap-probe").unlink()
    pytest.skip("running as root and /sys is writable: no unwritable folder to test with")


@pytest.mark.parametrize(
    "command",
    ["analyze", "prepare", pytest.param("swap", marks=SLOW), pytest.param("video", marks=SLOW)],
)
def test_unwritable_output_folder(work, tmp_path, command):
    folder = _read_only_folder(tmp_path)
    out = {"analyze": "x.png", "swap": "x.png", "video": "x.mp4", "prepare": "prep"}[command]
    target = str(folder / out)
    args = {
        "analyze": f"analyze a.png --draw {target}",
        "swap": f"{SWAP} -o {target}",
        "video": f"{VIDEO} -o {target}",
        "prepare": f"prepare --input photos --output {target}",
    }[command]
    before = _snapshot(work)
    assert_one_sentence(run_cli(*args.split(), cwd=work), "not writable")
    assert _snapshot(work) == before
    assert not Path(target).exists()


# --- signals and leftovers of killed runs ---------------------------------------------------


def _start_video(work: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "selfswap.cli", "video", "-s", "h.png", "-t", "long.mp4",
         "-o", str(out)],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _wait_for_part(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = list(folder.glob(".out.*.part.mp4"))
        if parts:
            return parts[0]
        if proc.poll() is not None:
            raise AssertionError(f"video ended before writing: {proc.communicate()[1]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("no part file appeared")


@pytest.fixture(scope="module")
def long_clip(work) -> Path:
    return face_video(work / "long.mp4", 250)


@SLOW
def test_sigterm_of_video_leaves_no_part_file(work, long_clip, tmp_path):
    out = tmp_path / "out.mp4"
    proc = _start_video(work, out)
    _wait_for_part(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the output nor a hidden part file


@SLOW
def test_part_file_of_a_killed_video_is_removed_by_the_next_run(work, long_clip, tmp_path):
    out = tmp_path / "out.mp4"
    proc = _start_video(work, out)
    part = _wait_for_part(tmp_path, proc)
    proc.kill()  # kill -9: no clean-up can run
    proc.communicate(timeout=60)
    assert part.exists()
    old = time.time() - 60
    os.utime(part, (old, old))
    # the next run for the same output removes it, even one that then fails
    result = run_cli("video", "-s", "empty.jpg", "-t", "long.mp4", "-o", str(out), cwd=work)
    assert_one_sentence(result, "empty")
    assert not part.exists()


def test_only_stale_part_files_are_removed(work, tmp_path):
    """A part file is stale when no process holds it open and it has not changed for a
    while: a leftover goes, a live writer's file and a just-written one stay."""
    out = tmp_path / "out.png"
    leftover, live, fresh = (tmp_path / f".out.png.{n}.part" for n in ("left", "live", "new"))
    old_video = tmp_path / ".out.0123abcd.part.mp4"  # a video part of another output
    for path in (leftover, live, fresh, old_video):
        path.write_bytes(b"partial")
    old = time.time() - 3600
    for path in (leftover, live, old_video):
        os.utime(path, (old, old))
    with open(live, "rb"):  # held open, as by a run in progress
        result = run_cli("swap", "-s", "empty.jpg", "-t", "a.png", "-o", str(out), cwd=work)
    assert_one_sentence(result, "empty")
    assert not leftover.exists()
    assert live.exists() and fresh.exists()
    assert old_video.exists()  # `out.mp4` is not this run's output
    assert not out.exists()


# --- caches -------------------------------------------------------------------------------


def _mesh_cache_home(tmp_path: Path, monkeypatch) -> tuple[dict, Path]:
    """The real levels of detail (computed once if not cached yet), and the cache file
    path under a fresh `$SELFSWAP_HOME` that shares the real model files."""
    from selfswap.geometry import simplify

    good = simplify._levels()
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    (home / "models").symlink_to(expected_path("bfm_noneck_v3").parent)
    monkeypatch.setenv("SELFSWAP_HOME", str(home))
    return good, simplify._cache_file(simplify.load_bfm())


def _save_levels(path: Path, levels: dict, shift: int = 0) -> None:
    arrays = {}
    for t, (kept, triangles) in levels.items():
        arrays[f"kept_{t}"], arrays[f"triangles_{t}"] = kept, triangles + shift
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_corrupt_mesh_cache_is_refused(tmp_path, monkeypatch):
    from selfswap.geometry import simplify

    good, cache = _mesh_cache_home(tmp_path, monkeypatch)
    bfm = simplify.load_bfm()
    _save_levels(cache, good)
    valid = cache.read_bytes()
    assert simplify._read_cache(bfm, cache) is not None
    broken = {
        "indices out of range": lambda: _save_levels(cache, good, shift=100_000),
        "truncated": lambda: cache.write_bytes(valid[:1000]),
        "random bytes": lambda: cache.write_bytes(os.urandom(5000)),
        "missing arrays": lambda: np.savez(cache, kept_20000=np.arange(3)),
        "floats": lambda: _save_levels(cache, {t: (k * 1.0, tr) for t, (k, tr) in good.items()}),
    }
    for what, make in broken.items():
        make()
        assert simplify._read_cache(bfm, cache) is None, what


@SLOW
def test_corrupt_mesh_cache_is_rebuilt(tmp_path, monkeypatch):
    from selfswap.geometry import simplify

    good, cache = _mesh_cache_home(tmp_path, monkeypatch)
    _save_levels(cache, good, shift=100_000)  # the IndexError of issue 12
    simplify._levels.cache_clear()
    try:
        rebuilt = simplify._levels()
    finally:
        simplify._levels.cache_clear()
    for t, (kept, triangles) in good.items():
        assert np.array_equal(rebuilt[t][0], kept) and np.array_equal(rebuilt[t][1], triangles)
    assert simplify._read_cache(simplify.load_bfm(), cache) is not None  # rewritten, valid
