"""Marks on every synthetic image and video selfswap writes.

- an invisible **watermark** in the pixels (`selfswap.provenance.watermark`): survives
  re-saving, JPEG, resizing from 50 % to 200 % and crops; says "made by selfswap" and nothing
  more;
- a signed **C2PA manifest** (Content Credentials, `selfswap.provenance.credentials`): who
  made the file (selfswap, its version, the model and its sha256), that a trained algorithm
  made it, when, and the sha256 of the source and target it was made from; any change to the
  file after signing shows, and a re-save without metadata removes it;
- plain **metadata** (PNG text chunks, EXIF description; `provenance_metadata`) that any image
  viewer shows.

Swaps require the consent of the people shown.
"""

from __future__ import annotations

from datetime import datetime, timezone

from selfswap import __version__
from selfswap.provenance.watermark import (
    DEFAULT_STRENGTH,
    DETECTION_THRESHOLD,
    KEY,
    TILE,
    WatermarkResult,
    _pattern,
    embed_watermark,
    find_watermark,
    is_watermarked,
    watermark_score,
)

__all__ = [
    "DEFAULT_STRENGTH",
    "DETECTION_THRESHOLD",
    "KEY",
    "NOTICE",
    "TILE",
    "WatermarkResult",
    "_pattern",
    "embed_watermark",
    "find_watermark",
    "is_watermarked",
    "provenance_metadata",
    "watermark_score",
]

NOTICE = (
    "Synthetic image made with selfswap face swapping. Swaps require the consent of the "
    "people shown."
)


def provenance_metadata(**details: str) -> dict[str, str]:
    """Text metadata for a synthetic output (PNG text chunks / EXIF description)."""
    meta = {
        "selfswap:synthetic": "true",
        "selfswap:generator": f"selfswap {__version__}",
        "selfswap:created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "selfswap:notice": NOTICE,
    }
    meta.update({f"selfswap:{k}": str(v) for k, v in details.items()})
    return meta
