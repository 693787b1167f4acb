"""What the web app accepts, and where it keeps files: `WebConfig`, loadable from YAML and
overridable with `selfswap serve --set key=value` like every other config."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from selfswap.errors import SelfswapError
from selfswap.swap.options import SwapConfig


@dataclass(frozen=True)
class WebConfig:
    """Limits per upload (a refusal names the limit) and the swap options the server starts
    with. The model, its paste mode and device are the operator's choice: the page never
    takes a file path from a visitor."""

    max_upload_mb: float = 20.0  # each image file
    max_video_mb: float = 200.0
    max_pixels: int = 24_000_000  # per image
    max_video_seconds: float = 120.0
    max_video_pixels: int = 1920 * 1080  # per frame
    max_sources: int = 8
    live_max_side: int = 640  # webcam frames are scaled down to this before the swap
    # the source's fine detail on webcam frames (as `swap.detail`, 0 to 1): off by default,
    # as it costs about half again per frame (benchmarks/live_fps.py)
    live_detail: float = 0.0
    queue_size: int = 16  # requests waiting beyond this are refused with a message
    swap: SwapConfig = field(default_factory=SwapConfig)

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_video_mb", "max_pixels", "max_video_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0.0 <= self.live_detail <= 1.0:
            raise ValueError("live_detail must be from 0 to 1")


class TempFolder:
    """The app's own temporary folder: uploads (Gradio's cache), results and job folders
    live under it, named by the app, never by a visitor; it is removed when the app stops."""

    def __init__(self, parent: str | os.PathLike | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="selfswap-web-", dir=parent)).resolve()

    def new_dir(self, kind: str, keep_seconds: float = 3600.0) -> Path:
        """A new folder under `kind/`; the folders there older than `keep_seconds` (results
        nobody downloaded within the hour) are removed first."""
        parent = self.root / kind
        if parent.is_dir():
            now = time.time()
            for old in parent.iterdir():
                with contextlib.suppress(OSError):
                    if now - old.stat().st_mtime > keep_seconds:
                        shutil.rmtree(old, ignore_errors=True)
        path = parent / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def inside(self, path: str | os.PathLike) -> Path:
        """`path` resolved, if it lies in this folder; else `SelfswapError` (a path that
        came from outside the app is never opened)."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.root):
            raise SelfswapError("That file is not an upload of this page.")
        return resolved

    def remove(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if path.resolve().is_relative_to(self.root):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(True)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
