"""Watermark and provenance metadata on real faces."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from selfswap.io.images import load_image, save_image
from selfswap.provenance import (
    DETECTION_THRESHOLD,
    embed_watermark,
    is_watermarked,
    provenance_metadata,
    watermark_score,
)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_watermark_is_invisible_and_detected(request, name):
    image = request.getfixturevalue(name)
    marked = embed_watermark(image)
    assert not is_watermarked(image)
    assert watermark_score(marked) > DETECTION_THRESHOLD + 2
    psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - image) ** 2))
    assert psnr > 44
    assert np.abs(marked.astype(int) - image).max() <= 4


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_watermark_survives_jpeg_and_crop(request, name):
    marked = embed_watermark(request.getfixturevalue(name))
    assert is_watermarked(_jpeg(marked, 85))
    assert is_watermarked(np.ascontiguousarray(marked[13:-7, 21:-5]))


def test_small_images_are_not_scored():
    assert watermark_score(np.zeros((40, 40, 3), np.uint8)) == 0.0


def test_lfw_false_positives_and_detection(shared_data):
    names = (shared_data / "splits" / "lfw_eval.txt").read_text().split()[::40]
    for name in names:
        image = load_image(shared_data / "lfw" / name)
        assert not is_watermarked(image), name
        assert is_watermarked(_jpeg(embed_watermark(image), 90)), name


def test_metadata_written_to_png_and_jpeg(tmp_path, astronaut):
    meta = provenance_metadata(source="grace_hopper.png")
    assert meta["selfswap:synthetic"] == "true" and "consent" in meta["selfswap:notice"]
    png = save_image(tmp_path / "out.png", astronaut, meta)
    assert Image.open(png).text["selfswap:source"] == "grace_hopper.png"
    jpg = save_image(tmp_path / "out.jpg", astronaut, meta)
    assert "selfswap:synthetic=true" in Image.open(jpg).getexif()[0x010E]


def test_provenance_command(tmp_path, astronaut):
    import subprocess
    import sys

    marked = save_image(tmp_path / "m.png", embed_watermark(astronaut), provenance_metadata())
    plain = save_image(tmp_path / "p.png", astronaut)
    cmd = [sys.executable, "-m", "selfswap.cli", "provenance"]
    found = subprocess.run([*cmd, str(marked)], capture_output=True, text=True)
    assert found.returncode == 0 and "watermark found" in found.stdout
    assert "selfswap:synthetic: true" in found.stdout
    missing = subprocess.run([*cmd, str(plain)], capture_output=True, text=True)
    assert missing.returncode == 1 and "not found" in missing.stdout
