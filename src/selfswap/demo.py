"""The demo: Grace Hopper's identity into the astronaut photo and the astronaut's into Grace
Hopper's (both public domain), a labelled side-by-side image and identity similarities."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from selfswap.api import Swapper, identity_similarity
from selfswap.io.images import save_image
from selfswap.provenance import embed_watermark, provenance_metadata
from selfswap.samples import astronaut, grace_hopper

PANEL = 320  # height of each picture in the side-by-side image
LABEL = 28  # height of the caption strip above each picture


@dataclass
class DemoSwap:
    source_name: str
    target_name: str
    source: np.ndarray
    target: np.ndarray
    swapped: np.ndarray
    to_source: float  # identity similarity of the swap to the source photo
    to_target: float  # ... and to the target photo
    before: float  # similarity of the unswapped target to the source
    # the same three by SFace, the independent judge that never enters training
    judged: tuple[float, float, float] = (float("nan"),) * 3

    @property
    def moved_towards_source(self) -> bool:
        return self.to_source > self.before


def run_swaps(swapper: Swapper) -> list[DemoSwap]:
    from selfswap.eval.judge import SFaceJudge

    judge = SFaceJudge()
    people = {"Grace Hopper": grace_hopper(), "astronaut": astronaut()}
    embeddings = {name: swapper.embedding(image) for name, image in people.items()}
    judged = {name: judge.embedding(image) for name, image in people.items()}
    swaps = []
    for source_name, target_name in (("Grace Hopper", "astronaut"), ("astronaut", "Grace Hopper")):
        source, target = people[source_name], people[target_name]
        result = swapper.swap_image(source, target)
        e_swap = swapper.embedding(result.image)
        j_swap = judge.embedding(result.image)
        sface = (
            identity_similarity(j_swap, judged[source_name]),
            identity_similarity(j_swap, judged[target_name]),
            identity_similarity(judged[target_name], judged[source_name]),
        ) if j_swap is not None else (float("nan"),) * 3  # fmt: skip
        swaps.append(
            DemoSwap(
                source_name, target_name, source, target, result.image,
                identity_similarity(e_swap, embeddings[source_name]),
                identity_similarity(e_swap, embeddings[target_name]),
                identity_similarity(embeddings[target_name], embeddings[source_name]),
                sface,
            )
        )  # fmt: skip
    return swaps


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def captioned(image: np.ndarray, caption: str) -> Image.Image:
    img = Image.fromarray(image)
    img = img.resize((round(img.width * PANEL / img.height), PANEL), Image.Resampling.LANCZOS)
    out = Image.new("RGB", (img.width, PANEL + LABEL), "white")
    out.paste(img, (0, LABEL))
    ImageDraw.Draw(out).text((6, 5), caption, fill="black", font=_font(16))
    return out


def side_by_side(swaps: list[DemoSwap]) -> np.ndarray:
    """One row per swap: source | target | swap, each captioned."""
    rows = []
    for s in swaps:
        panels = [
            captioned(s.source, f"source: {s.source_name}"),
            captioned(s.target, f"target: {s.target_name}"),
            captioned(s.swapped, f"swap (sim. to source {s.to_source:.3f})"),
        ]
        rows.append(panels)
    width = max(sum(p.width for p in row) + 8 * (len(row) - 1) for row in rows)
    sheet = Image.new("RGB", (width, len(rows) * (PANEL + LABEL + 8) - 8), "white")
    for r, row in enumerate(rows):
        x = 0
        for panel in row:
            sheet.paste(panel, (x, r * (PANEL + LABEL + 8)))
            x += panel.width + 8
    return np.asarray(sheet)


def report(swaps: list[DemoSwap]) -> str:
    lines = ["identity similarity (cosine of dlib embeddings; 1 = identical direction):"]
    for s in swaps:
        verdict = "closer to" if s.moved_towards_source else "NOT closer to"
        lines.append(
            f"  {s.source_name} -> {s.target_name}: swap vs source {s.to_source:.3f}, "
            f"swap vs target {s.to_target:.3f}; unswapped target vs source {s.before:.3f} "
            f"({verdict} the source than the unswapped target)"
        )
    lines.append(
        "by SFace, an independent judge that never enters training (same person above 0.363):"
    )
    for s in swaps:
        to_source, to_target, before = s.judged
        lines.append(
            f"  {s.source_name} -> {s.target_name}: swap vs source {to_source:.3f}, "
            f"swap vs target {to_target:.3f}; unswapped target vs source {before:.3f}"
        )
    return "\n".join(lines)


def run_demo(output: str | os.PathLike, model: str = "default") -> list[DemoSwap]:
    swapper = Swapper.load(model)
    swaps = run_swaps(swapper)
    meta = provenance_metadata(source="demo", target="demo", model=str(model))
    save_image(output, embed_watermark(side_by_side(swaps)), meta)
    return swaps
