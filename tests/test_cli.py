"""The real `selfswap` command on real files: exit codes, outputs, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from selfswap.samples import sample_path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfswap.cli", *args], capture_output=True, text=True, timeout=300
    )


def assert_clean_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_analyze_json(name):
    result = run("analyze", str(sample_path(name)), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert len(payload["faces"]) == 1
    face = payload["faces"][0]
    assert abs(face["yaw"]) < 15
    assert len(face["landmarks68"]) == 68 and len(face["embedding"]) == 128


def test_analyze_draw(tmp_path):
    out = tmp_path / "annotated.png"
    result = run("analyze", str(sample_path("astronaut")), "--draw", str(out))
    assert result.returncode == 0, result.stderr
    assert "1 face(s)" in result.stdout
    drawn = np.asarray(Image.open(out).convert("RGB"))
    original = np.asarray(Image.open(sample_path("astronaut")).convert("RGB"))
    changed = np.any(drawn != original, axis=2)
    assert changed[60:180, 160:290].mean() > 0.02  # annotations on the face
    assert changed[400:, 400:].mean() == 0  # nothing far from it


def test_analyze_no_face_is_an_honest_empty_result(tmp_path):
    path = tmp_path / "sky.png"
    Image.new("RGB", (320, 240), (120, 160, 220)).save(path)
    result = run("analyze", str(path), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["faces"] == []


@pytest.mark.parametrize(
    "content, fragment",
    [(b"", "empty"), (b"plain text, not pixels", "not an image"), (None, "no such file")],
)
def test_analyze_bad_files(tmp_path, content, fragment):
    path = tmp_path / "input.jpg"
    if content is not None:
        path.write_bytes(content)
    assert_clean_error(run("analyze", str(path)), fragment)


def test_analyze_truncated_jpeg(tmp_path):
    full = sample_path("grace_hopper").read_bytes()
    jpeg = tmp_path / "g.jpg"
    Image.open(sample_path("grace_hopper")).save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[:5000])
    assert full  # the sample itself is intact
    assert_clean_error(run("analyze", str(jpeg)), "truncated")


def test_bad_override():
    result = run("analyze", str(sample_path("astronaut")), "--set", "detector_typo=hog")
    assert_clean_error(result, "unknown option")


def test_models_verify():
    result = run("models", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tddfa_mb1" in result.stdout


def test_missing_models_name_the_fix(tmp_path):
    env_home = tmp_path / "empty-home"
    result = subprocess.run(
        [sys.executable, "-m", "selfswap.cli", "analyze", str(sample_path("astronaut"))],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "SELFSWAP_HOME": str(env_home)},
        timeout=300,
    )
    assert_clean_error(result, "selfswap models pull")


def test_swap_refusals(tmp_path):
    astronaut, hopper = str(sample_path("astronaut")), str(sample_path("grace_hopper"))
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"keep me")
    model = str(tmp_path)  # never reached: the refusals come first
    result = run("swap", "-s", hopper, "-t", astronaut, "-o", str(existing), "--model", model)
    assert_clean_error(result, "--overwrite")
    assert existing.read_bytes() == b"keep me"
    same = run("swap", "-s", astronaut, "-t", astronaut, "-o", str(tmp_path / "o.png"),
               "--model", model)  # fmt: skip
    assert_clean_error(same, "same file")
    fmt = run(
        "swap", "-s", hopper, "-t", astronaut, "-o", str(tmp_path / "o.xyz"), "--model", model
    )
    assert_clean_error(fmt, "unknown output format")
    nomodel = run("swap", "-s", hopper, "-t", astronaut, "-o", str(tmp_path / "o.png"),
                  "--model", model)  # fmt: skip
    assert_clean_error(nomodel, "not a training run")
    assert not (tmp_path / "o.png").exists()


def test_video_refusals(tmp_path):
    hopper = str(sample_path("grace_hopper"))
    junk = tmp_path / "in.mp4"
    junk.write_bytes(bytes(range(256)) * 40)
    bad_fmt = run("video", "-s", hopper, "-t", str(junk), "-o", str(tmp_path / "o.gif"),
                  "--model", str(tmp_path))  # fmt: skip
    assert result_mentions(bad_fmt, "format")
    unreadable = run("video", "-s", hopper, "-t", str(junk), "-o", str(tmp_path / "o.mp4"),
                     "--model", str(tmp_path))  # fmt: skip
    assert unreadable.returncode != 0 and "Traceback" not in unreadable.stderr
    assert not (tmp_path / "o.mp4").exists()


def result_mentions(result: subprocess.CompletedProcess, fragment: str) -> bool:
    return result.returncode != 0 and "Traceback" not in result.stderr and fragment in result.stderr


def test_sigterm_runs_the_ctrl_c_clean_up():
    """SIGTERM inside a command raises like Ctrl-C (so `finally` and `except
    KeyboardInterrupt` clean-ups run), and the previous handler comes back afterwards."""
    import os
    import signal
    import time

    from selfswap.cli import Terminated, signals_as_interrupts

    before = signal.getsignal(signal.SIGTERM)
    cleaned = False
    with pytest.raises(KeyboardInterrupt) as caught, signals_as_interrupts():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            cleaned = True
    assert isinstance(caught.value, Terminated) and caught.value.signum == signal.SIGTERM
    assert cleaned
    assert signal.getsignal(signal.SIGTERM) is before


def test_swap_and_video_flags_come_from_swap_config(tmp_path):
    """One declaration: every SwapConfig field is a flag of `swap` and `video`; a flag wins
    over --set, which wins over --config."""
    import dataclasses

    from selfswap.cli import _swap_config, build_parser
    from selfswap.swap.options import SwapConfig

    config_file = tmp_path / "swap.yaml"
    config_file.write_text("color_match: 0.1\npaste: mask\nfaces: '1'\n")
    for command in ("swap", "video"):
        parser = build_parser()
        base = [command, "-s", "a.png", "-t", "b.png", "-o", "c.png"]
        flags = {a for action in parser._subparsers._group_actions[0].choices[command]._actions
                 for a in action.option_strings}  # fmt: skip
        for field in dataclasses.fields(SwapConfig):
            assert field.metadata["flag"] in flags, field.name
        args = parser.parse_args(
            [*base, "--config", str(config_file), "--set", "color_match=0.5", "--faces", "0,2"]
        )
        config = _swap_config(args)
        assert config == SwapConfig(faces="0,2", color_match=0.5, paste="mask")
        assert _swap_config(parser.parse_args([*base, "--color-match", "0.25"])).color_match == 0.25


def test_swap_config_refusals_are_one_sentence(tmp_path):
    astronaut, hopper = str(sample_path("astronaut")), str(sample_path("grace_hopper"))
    out = str(tmp_path / "o.png")
    bad_set = run("swap", "-s", hopper, "-t", astronaut, "-o", out, "--set", "paste=everything")
    assert_clean_error(bad_set, "paste must be 'face' or 'mask'")
    bad_faces = run("swap", "-s", hopper, "-t", astronaut, "-o", out, "--faces", "first")
    assert_clean_error(bad_faces, "faces must be all, indices like 0,2, or ref:IMAGE")
    bad_range = run("swap", "-s", hopper, "-t", astronaut, "-o", out, "--color-match", "2")
    assert bad_range.returncode == 2 and "from 0 to 1" in bad_range.stderr
    assert not (tmp_path / "o.png").exists()
