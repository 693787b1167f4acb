"""Edits that happen to shared images, for the tests and `benchmarks/watermark_robustness.py`:
a JPEG round trip and a resize (the watermark must survive them), and a pixel edit that keeps
a file's C2PA manifest where it was, as an editor that keeps metadata writes (the manifest
check must then report the file as changed after signing)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """`image` `(H, W, 3)` uint8 after a JPEG save and load at `quality`."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    """`image` resized by `factor` (Pillow, bicubic), at least one pixel a side."""
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


def _png_chunks(data: bytes):
    pos = 8
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        yield data[pos + 4 : pos + 8], data[pos : pos + 12 + size]
        pos += 12 + size


def _riff_chunks(data: bytes):
    pos = 12
    while pos < len(data):
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        end = pos + 8 + size + (size & 1)
        yield data[pos : pos + 4], data[pos:end]
        pos = end


def _after_app_segments(data: bytes) -> int:
    """Offset of a JPEG's first segment after SOI and the APPn/COM segments (EXIF, the C2PA
    manifest in APP11, ...): its tables and image data start there."""
    pos = 2
    while data[pos] == 0xFF and (0xE0 <= data[pos + 1] <= 0xEF or data[pos + 1] == 0xFE):
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return pos


def edit_pixels_keeping_manifest(data: bytes, fmt: str) -> bytes:
    """The file with a 40x40 patch of its pixels inverted and everything else, the C2PA
    manifest included, where it was: what an editor that keeps metadata would write."""
    pixels = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    pixels[20:60, 20:60] = 255 - pixels[20:60, 20:60]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **({} if fmt == "PNG" else {"quality": 95}))
    new = buffer.getvalue()
    if fmt == "PNG":  # new IDAT chunks in place of the old ones
        old = list(_png_chunks(data))
        first = next(i for i, (kind, _) in enumerate(old) if kind == b"IDAT")
        fresh = b"".join(chunk for kind, chunk in _png_chunks(new) if kind == b"IDAT")
        rest = b"".join(chunk for kind, chunk in old[first:] if kind != b"IDAT")
        return data[:8] + b"".join(chunk for _, chunk in old[:first]) + fresh + rest
    if fmt == "JPEG":  # new tables and scan after the old APPn segments (the manifest: APP11)
        return data[: _after_app_segments(data)] + new[_after_app_segments(new) :]
    fresh = dict(_riff_chunks(new))  # WebP: a new VP8 chunk
    body = b"".join(
        fresh.get(k, c) if k in (b"VP8 ", b"VP8L") else c for k, c in _riff_chunks(data)
    )
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body
