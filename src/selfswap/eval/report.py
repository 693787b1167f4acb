"""The evaluation report: `metrics.json`, `report.md` (method × metric table with bootstrap
95 % CIs), `charts.png` and `samples.png` (swaps of the public-domain faces only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from selfswap.io.images import atomic_write, save_image
from selfswap.provenance import embed_watermark, provenance_metadata

# (key, column title, better direction, format)
COLUMNS = [
    ("id_source", "ID sim. to source ↑", 1, "{:.3f}"),
    ("top1", "top-1 ↑", 1, "{:.1%}"),
    ("top5", "top-5 ↑", 1, "{:.1%}"),
    ("id_target", "ID sim. to target (leakage) ↓", -1, "{:.3f}"),
    ("pose_error", "pose err. ° ↓", -1, "{:.2f}"),
    ("expression_error", "expr. err. ↓", -1, "{:.3f}"),
    ("shape_error", "shape err. to source ↓", -1, "{:.3f}"),
    ("frechet", "FD (dlib-256) ↓", -1, "{:.4f}"),
    ("recon_l1", "recon. L1 ↓", -1, "{:.4f}"),
    ("recon_psnr", "recon. PSNR dB ↑", 1, "{:.2f}"),
    ("recon_ssim", "recon. SSIM ↑", 1, "{:.3f}"),
    ("ms_per_swap", "ms / swap ↓", -1, "{:.0f}"),
    ("face_found", "face found ↑", 1, "{:.1%}"),
]

NOTES = """\
How to read this table
- Pairs come from `{pairs_file}`: people never seen in training. Identity similarity is the
  cosine similarity of dlib face descriptors (the same dlib ResNet that trained the models'
  identity loss, so these numbers are not independent of training; the 3DMM shape error is
  a second, geometry-only view from 3DDFA_V2), measured against `source_id_ref`, a different
  photo of the source person. "Leakage" is the similarity of the swap to the target photo.
- Retrieval: is the source person's reference photo among the k most similar of a gallery of
  {gallery} people (every source person of the evaluated pairs)?
- Pose error: mean absolute yaw/pitch/roll difference between swap and target (3DDFA_V2);
  expression error: RMS difference of 3DMM expression coefficients to the target's; shape
  error: RMS difference of 3DMM shape coefficients to the source photo's; both in units of
  the coefficients' population standard deviation.
- FD (dlib-256): Fréchet distance between the 256-D pooled features of dlib's face network on
  face chips of the swaps and of {real} real photos ({real_set}; with the held-out set, eval
  photos that no pair uses). No Inception weights are available offline, so this is not
  comparable to published FID, and with a few hundred faces per side it has a positive bias.
- Self-reconstruction: each of the first {recon} targets swapped with itself; L1 (0-1 scale),
  PSNR and SSIM inside the target's face box (+10 %).
- ms / swap: wall time of each whole swap call (both photos analysed) on the machine as it
  was loaded during the run; for speed, use `benchmarks/bench_swap.py` on a quiet machine.
- Every mean comes with a percentile-bootstrap 95 % CI (2000 resamples) in brackets; the FD
  is one number over the whole set. "no swap" is the unchanged target: the floor for
  identity transfer and the ceiling for leakage.
"""


def _cell(value, fmt: str) -> str:
    if isinstance(value, (list, tuple)):
        mean, lo, hi = value
        if not math.isfinite(mean):
            return "—"
        return f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]"
    if value is None or not math.isfinite(value):
        return "—"
    return fmt.format(value)


def table(summary: dict) -> str:
    header = "| method | " + " | ".join(title for _, title, _, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, row in summary["methods"].items():
        cells = [_cell(row.get(key), fmt) for key, _, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


VIDEO_NOTES = """\
Video stability: a {frames}-frame 640x480 clip panning and zooming over the public-domain
astronaut photo, swapped with Grace Hopper as the source (selfswap models through
`swap_video`, with tracking and smoothing; other methods frame by frame). Landmark jitter:
mean length in px of the second difference of the 68 landmark trajectories of the output
(the input clip's value is the floor of the analysis itself); identity consistency: mean
cosine similarity of each frame's embedding to the clip's mean embedding; similarity to
source: to the source photo itself.
"""


def video_table(video: dict) -> str:
    lines = [
        "| method | landmark jitter px ↓ | identity consistency ↑ | sim. to source ↑ | "
        "frames with a face |",
        "|---|---|---|---|---|",
    ]
    for name, row in video.items():
        cells = [
            _cell(row.get("jitter_px", float("nan")), "{:.3f}"),
            _cell(row.get("id_consistency", float("nan")), "{:.4f}"),
            _cell(row.get("id_to_source", float("nan")), "{:.3f}"),
            _cell(row["frames_with_face"], "{:.0%}"),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences_table(differences: dict, reference: str) -> str:
    keys = [c for c in COLUMNS if c[0] in DIFFERENCE_KEYS]
    header = "| method − " + reference + " | " + " | ".join(t for _, t, _, _ in keys) + " |"
    lines = [header, "|" + "---|" * (len(keys) + 1)]
    for name, row in differences.items():
        cells = []
        for key, _, better, fmt in keys:
            value = row.get(key)
            if value is None:
                cells.append("—")
                continue
            mean, lo, hi = value
            signed = fmt.replace("{:", "{:+")
            mark = ""
            if lo > 0 or hi < 0:  # the CI excludes 0
                mark = " ✓" if mean * better > 0 else " ✗"
            cells.append(f"{signed.format(mean)} [{signed.format(lo)}, {signed.format(hi)}]{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


DIFFERENCE_KEYS = (
    "id_source", "id_target", "pose_error", "expression_error", "shape_error",
    "recon_l1", "recon_psnr", "recon_ssim",
)  # fmt: skip


def charts(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [c for c in COLUMNS if c[0] not in ("face_found",)]
    names = list(summary["methods"])
    cols = 4
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, title, _, _) in zip(axes.ravel(), keys):
        means, errs = [], [[], []]
        for name in names:
            v = summary["methods"][name].get(key)
            mean, lo, hi = v if isinstance(v, (list, tuple)) else (v, v, v)
            mean = np.nan if mean is None else mean
            means.append(mean)
            errs[0].append(0 if lo is None or np.isnan(lo) else mean - lo)
            errs[1].append(0 if hi is None or np.isnan(hi) else hi - mean)
        ax.barh(range(len(names)), means, xerr=errs, color="#4a7fb5", capsize=3)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes.ravel()[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


def sample_grid(methods, path: Path) -> None:
    """Rows: methods (the first row shows the sources); columns: Grace Hopper swapped into
    the astronaut photo, and the astronaut into Grace Hopper's."""
    from PIL import Image

    from selfswap.demo import captioned
    from selfswap.samples import astronaut, grace_hopper

    hopper, nasa = grace_hopper(), astronaut()
    names = [m.name for m in methods]
    grid = [[captioned(hopper, "source: Grace Hopper"), captioned(nasa, "source: astronaut")]]
    for method in methods:
        grid.append([captioned(method.swap(hopper, nasa), method.name),
                     captioned(method.swap(nasa, hopper), method.name)])  # fmt: skip
    widths = [max(row[c].width for row in grid) for c in range(2)]
    height = grid[0][0].height
    sheet = Image.new("RGB", (sum(widths) + 8, len(grid) * height), "white")
    for r, row in enumerate(grid):
        for c, panel in enumerate(row):
            sheet.paste(panel, (c * (widths[0] + 8), r * height))
    meta = provenance_metadata(source="evaluation sample grid", model=", ".join(names))
    save_image(path, embed_watermark(np.asarray(sheet)), meta)


def write_report(summary: dict, out: Path, pairs_file: str, recon: int, title: str) -> Path:
    out = Path(out)
    atomic_write(
        out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1))
    )
    charts(summary, out / "charts.png")
    notes = NOTES.format(
        pairs_file=pairs_file,
        gallery=summary["gallery"],
        recon=recon,
        real=summary["real_photos"],
        real_set=summary["real_set"],
    )
    sections = ""
    if summary.get("differences"):
        reference = summary["reference"]
        sections += (
            f"## Differences to {reference}\n\nPer-pair differences (method − {reference}) "
            "over the pairs both methods describe, mean and paired-bootstrap 95 % CI; ✓ / ✗: "
            "the CI excludes 0 and the method is better / worse than the reference.\n\n"
            f"{differences_table(summary['differences'], reference)}\n\n"
        )
    if summary.get("video"):
        notes_video = VIDEO_NOTES.format(frames=summary.get("video_frames", ""))
        sections += f"## Video stability\n\n{video_table(summary['video'])}\n\n{notes_video}"
    text = (
        f"# {title}\n\n"
        f"{summary['pairs_with_faces']} of {summary['pairs']} pairs had a face in all three "
        f"photos and were evaluated.\n\n{table(summary)}\n\n{notes}\n{sections}\n"
        "![metrics](charts.png)\n\n![swaps of the public-domain faces](samples.png)\n"
    )
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(text))
    return out / "report.md"
