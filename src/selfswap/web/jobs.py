"""Video jobs of the web app: `selfswap video` in a child process, with its progress read
from its progress bar and a cancel that stops it at once.

Why a child process: a cancel must stop the CPU-bound work mid-frame and leave no partial
file. Killing a Python thread is not possible; a child that gets SIGTERM runs the CLI's
Ctrl-C clean-up (the unfinished `.part` output is removed), and the job folder is removed
after it. The child loads the model once per job; only one job runs at a time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from selfswap.swap.options import SwapConfig

_PROGRESS = re.compile(r"(\d+)/(\d+|\?)")


@dataclass
class Progress:
    done: int = 0
    total: int | None = None
    fps: float = 0.0
    state: str = "running"  # running, done, failed, cancelled
    message: str = ""


class VideoJob:
    """One `selfswap video` run into `folder/out.mp4`."""

    def __init__(self, sources: list[Path], target: Path, folder: Path, config: SwapConfig) -> None:
        self.folder = folder
        self.output = folder / "selfswap-swap.mp4"
        self.progress = Progress()
        self._cancelled = threading.Event()
        command = [
            sys.executable,
            "-m",
            "selfswap.cli",
            "video",
            *[a for s in sources for a in ("-s", str(s))],
            "-t",
            str(target),
            "-o",
            str(self.output),
            "--model",
            config.model,
            "--paste",
            config.paste,
            "--device",
            config.device,
            "--faces",
            config.faces,
            "--color-match",
            str(config.color_match),
        ]
        env = {**os.environ, "TQDM_MININTERVAL": "0.3", "PYTHONUNBUFFERED": "1"}
        self._start = time.perf_counter()
        self._first: tuple[float, int] | None = None
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=folder
        )
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stderr is not None
        buffer = b""
        while chunk := self._process.stderr.read1(4096):
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for line in lines:
                self._line(line.decode("utf-8", "replace"))
        self._line(buffer.decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        match = _PROGRESS.search(line) if "frame" in line else None
        if match is None:
            self._stderr.append(line.strip())
            return
        done = int(match.group(1))
        now = time.perf_counter()
        # fps from the first frame on: the model loading before it is not frame time
        if self._first is None and done > 0:
            self._first = (now, done)
        elif self._first is not None and done > self._first[1]:
            self.progress.fps = (done - self._first[1]) / max(now - self._first[0], 1e-6)
        self.progress.done = done
        if match.group(2) != "?":
            self.progress.total = int(match.group(2))

    def poll(self) -> Progress:
        code = self._process.poll()
        if code is not None and self.progress.state == "running":
            self._reader.join(timeout=5)
            if self._cancelled.is_set():
                self.progress.state = "cancelled"
            elif code == 0 and self.output.is_file():
                self.progress.state = "done"
            else:
                self.progress.state = "failed"
                errors = [line for line in self._stderr if line.startswith("error:")]
                text = errors[-1][len("error:") :].strip() if errors else "The video swap failed."
                self.progress.message = text.replace(str(self.folder) + os.sep, "")
        return self.progress

    def cancel(self) -> None:
        """Stop the child (SIGTERM: its clean-up removes the unfinished output) and remove
        the job folder."""
        self._cancelled.set()
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self.poll()


def video_seconds(info) -> float:
    """Length of a probed video in seconds (frames / fps when the container has no
    duration)."""
    if info.duration:
        return float(info.duration)
    if info.frames and info.fps:
        return float(info.frames / info.fps)
    return 0.0
