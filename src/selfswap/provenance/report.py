"""`check_file`: every selfswap mark in an image or video file, as one report that the CLI
(`selfswap provenance FILE`), the API (`selfswap.api.check_provenance`) and the web app's
provenance tab show."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfswap.provenance.credentials import Credentials, read_credentials
from selfswap.provenance.watermark import DETECTION_THRESHOLD, find_watermark

#: Video frames whose watermark scores are combined (their median: one frame that looks
#: marked by chance does not count).
VIDEO_FRAMES = 5


@dataclass
class ProvenanceReport:
    """What `check_file` found: the watermark (score, threshold, the resize factor it was
    found at), selfswap's text metadata (images), and the C2PA manifest."""

    watermark_score: float
    threshold: float
    metadata: dict[str, str] = field(default_factory=dict)  # selfswap's keys (and EXIF)
    credentials: Credentials = field(default_factory=lambda: Credentials("missing"))
    watermark_scale: float = 1.0
    kind: str = "image"  # or "video"

    @property
    def watermarked(self) -> bool:
        return self.watermark_score > self.threshold

    @property
    def signed_by_selfswap(self) -> bool:
        """A manifest that names selfswap as its maker (valid or not)."""
        return self.credentials.present and self.credentials.by_selfswap

    @property
    def marked(self) -> bool:
        """Any mark: the invisible watermark, selfswap's manifest or its text metadata."""
        return self.watermarked or self.signed_by_selfswap or bool(self.metadata)

    @property
    def verdict(self) -> str:
        if self.marked:
            return f"made by selfswap (a synthetic {self.kind})"
        return (
            "no selfswap marks found (this does not prove the file is unaltered: heavy edits "
            "can remove the watermark, and any re-save removes the manifest)"
        )

    def lines(self) -> list[str]:
        """The report as lines of text: the verdict, then one line per finding."""
        lines = [self.verdict]
        lines += [f"manifest: {line}" for line in self.credentials.lines()]
        found = "found" if self.watermarked else "not found"
        where = f", at {self.watermark_scale:.0%} of its size" if self.watermarked else ""
        lines.append(
            f"watermark {found} (score {self.watermark_score:.1f}, threshold "
            f"{self.threshold}{where})"
        )
        if self.kind == "image" and not self.metadata:
            lines.append("no selfswap text metadata")
        lines += [f"{key}: {value}" for key, value in self.metadata.items()]
        return lines

    @property
    def text(self) -> str:
        return "\n".join(self.lines())


def check_file(path: str | os.PathLike) -> ProvenanceReport:
    """Look for selfswap's marks in an image or video file: the C2PA manifest (read and
    validated), the invisible watermark and, in images, the text metadata."""
    from selfswap.swap.video import FORMATS

    path = Path(path)
    if path.suffix.lower() in FORMATS:
        return _check_video(path)
    return _check_image(path)


def _check_image(path: Path) -> ProvenanceReport:
    from PIL import Image

    from selfswap.io.images import load_image

    found = find_watermark(load_image(path))
    with Image.open(path) as img:
        text = dict(getattr(img, "text", {}) or {})
        description = img.getexif().get(0x010E, "")
    meta = {k: str(v) for k, v in text.items() if k.startswith("selfswap:")}
    if isinstance(description, str) and "selfswap:synthetic" in description:
        meta["exif"] = description
    return ProvenanceReport(
        float(found.score), float(DETECTION_THRESHOLD), meta, read_credentials(path),
        float(found.scale), "image",
    )  # fmt: skip


def _check_video(path: Path) -> ProvenanceReport:
    from selfswap.swap.video import read_frames

    results = []
    frames = read_frames(path)
    try:
        for frame in frames:
            results.append(find_watermark(frame))
            if len(results) == VIDEO_FRAMES:
                break
    finally:
        frames.close()
    scores = [r.score for r in results] or [0.0]
    median = float(np.median(scores))
    scale = float(np.median([r.scale for r in results])) if results else 1.0
    return ProvenanceReport(
        median, float(DETECTION_THRESHOLD), {}, read_credentials(path), scale, "video"
    )
