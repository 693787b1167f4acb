"""Contact sheets for judging swaps by eye at the size a user sees them: each row is one
pair, the source photo beside crops around the target's face taken from the full-size
original and from each method's full-size output (native pixels, only scaled down when a
face is larger than `MAX_ROW` px; never the 128-px chips the generator works on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from selfswap.demo import _font
from selfswap.io.images import save_image
from selfswap.provenance import embed_watermark, provenance_metadata

MAX_ROW = 512  # px: the tallest a row gets; smaller faces stay at their own size
LABEL = 22
GAP = 6


def face_crop(image: np.ndarray, box: np.ndarray, grow: float = 1.8) -> np.ndarray:
    """The square region around face box `box` (x0, y0, x1, y1) grown `grow` times,
    cut from the full-size image (clipped at its borders)."""
    x0, y0, x1, y1 = np.asarray(box, float)
    half = grow * max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = image.shape[:2]
    xa, xb = int(max(0, cx - half)), int(min(w, cx + half))
    ya, yb = int(max(0, cy - half)), int(min(h, cy + half))
    return image[ya:yb, xa:xb]


def _panel(image: np.ndarray, height: int, caption: str) -> Image.Image:
    img = Image.fromarray(np.ascontiguousarray(image))
    if img.height != height:
        width = max(1, round(img.width * height / img.height))
        img = img.resize((width, height), Image.Resampling.LANCZOS)
    out = Image.new("RGB", (img.width, height + LABEL), "white")
    out.paste(img, (0, LABEL))
    ImageDraw.Draw(out).text((4, 3), caption[:48], fill="black", font=_font(14))
    return out


def contact_sheet(methods, items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                  path: Path) -> Path:  # fmt: skip
    """Write a sheet of `items` = (label, source RGB, target RGB, target face box), one row
    each: source | original target crop | each method's output crop (same box)."""
    rows = []
    for label, source, target, box in items:
        crop = face_crop(target, box)
        height = min(MAX_ROW, crop.shape[0])
        panels = [
            _panel(source, height, f"source ({label})"),
            _panel(crop, height, f"target, {crop.shape[1]}x{crop.shape[0]} px"),
        ]
        for method in methods:
            try:
                out = method.swap(source, target)
                panels.append(_panel(face_crop(out, box), height, method.name))
            except Exception as exc:  # a refusal is shown, not fatal for the sheet
                blank = np.full_like(crop, 255)
                panels.append(_panel(blank, height, f"{method.name}: {type(exc).__name__}"))
        rows.append(panels)
    width = max(sum(p.width for p in row) + GAP * (len(row) - 1) for row in rows)
    height = sum(row[0].height for row in rows) + GAP * (len(rows) - 1)
    sheet = Image.new("RGB", (width, height), "white")
    y = 0
    for row in rows:
        x = 0
        for panel in row:
            sheet.paste(panel, (x, y))
            x += panel.width + GAP
        y += row[0].height + GAP
    meta = provenance_metadata(source="evaluation contact sheet",
                               model=", ".join(m.name for m in methods))  # fmt: skip
    save_image(path, embed_watermark(np.asarray(sheet)), meta)
    return Path(path)


def public_sheet(methods, path: Path) -> Path:
    """The contact sheet of the public-domain faces: Grace Hopper into the astronaut photo
    and the astronaut into Grace Hopper's (safe to publish)."""
    from selfswap.eval.judge import SFaceJudge
    from selfswap.samples import astronaut, grace_hopper

    judge = SFaceJudge()
    hopper, nasa = grace_hopper(), astronaut()
    items = [
        ("Grace Hopper", hopper, nasa, judge.describe(nasa).box),
        ("astronaut", nasa, hopper, judge.describe(hopper).box),
    ]
    return contact_sheet(methods, items, path)


def dataset_sheet(methods, result: dict, count: int, path: Path) -> Path | None:
    """The contact sheet of `count` pairs spread evenly over an evaluated set (dataset
    pixels: for local viewing only)."""
    from selfswap.io.images import load_image

    valid = [i for i, x in enumerate(result["inputs"]) if x is not None]
    if not valid:
        return None
    picks = [valid[round(k)] for k in np.linspace(0, len(valid) - 1, min(count, len(valid)))]
    items = []
    for i in dict.fromkeys(picks):
        pair = result["pairs"][i]
        box = result["inputs"][i]["target"].box
        items.append((pair.source_person, load_image(pair.source), load_image(pair.target), box))
    return contact_sheet(methods, items, path)
