"""Video jobs of the web app: `Swapper.swap_video` in a worker thread with the app's one
loaded model, its progress reported by callback and a cancel that stops it before the next
frame.

The job's event holds the app's model queue while it runs (the model and its face analysis
are not shared between threads), so a cancel is the only thing that reaches the job from
outside: it sets the job's `threading.Event`, which `process_video` checks before every
frame; it raises `Cancelled`, the unfinished `.part` output is removed and the job folder
after it."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from selfswap.errors import SelfswapError
from selfswap.swap.options import SwapConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    done: int = 0
    total: int | None = None
    fps: float = 0.0
    state: str = "running"  # running, done, failed, cancelled
    message: str = ""


class VideoJob:
    """One video swap into `folder/selfswap-swap.mp4`, started at once in a thread.

    `swapper`: the app's `selfswap.api.Swapper`; `photos`: the source photos (RGB arrays),
    `source_faces`: the face chosen in each (None: the largest), `options`: the request's
    `SwapConfig` (faces, colour match)."""

    def __init__(
        self,
        swapper: Any,
        photos: list,
        source_faces: list[int | None] | None,
        target: Path,
        folder: Path,
        options: SwapConfig,
    ) -> None:
        self.folder = folder
        self.output = folder / "selfswap-swap.mp4"
        self.progress = Progress()
        self._cancel = threading.Event()
        arguments = (swapper, photos, source_faces, target, options)
        self._thread = threading.Thread(
            target=self._run, args=arguments, name="selfswap-video", daemon=True
        )
        self._thread.start()

    def _run(self, swapper, photos, source_faces, target, options) -> None:
        from selfswap.swap.video import Cancelled

        state, message = "done", ""
        try:
            swapper.swap_video(
                photos, target, self.output, faces=options.faces, progress=False,
                color_match=options.color_match, source_faces=source_faces,
                on_progress=self._on_progress, cancel=self._cancel,
            )  # fmt: skip
        except Cancelled:
            state = "cancelled"
        except SelfswapError as exc:
            state, message = "failed", str(exc).replace(str(self.folder) + os.sep, "")
        except Exception:  # a bug: the page gets one sentence, the server's log the traceback
            log.exception("video job failed")
            state, message = "failed", "The video swap failed (see the server's log)."
        if state == "done" and not self.output.is_file():
            state, message = "failed", "The video swap wrote no file."
        self.progress = replace(self.progress, state=state, message=message)

    def _on_progress(self, done: int, total: int | None, fps: float) -> None:
        self.progress = Progress(done, total, fps)

    def poll(self) -> Progress:
        """The progress so far (a new object at every change: read it once per look)."""
        return self.progress

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def cancel(self, timeout: float = 120.0) -> None:
        """Stop the job before its next frame and wait until it has stopped (its unfinished
        output removed)."""
        self._cancel.set()
        self._thread.join(timeout)


def video_seconds(info) -> float:
    """Length of a probed video in seconds (frames / fps when the container has no
    duration)."""
    if info.duration:
        return float(info.duration)
    if info.frames and info.fps:
        return float(info.frames / info.fps)
    return 0.0
