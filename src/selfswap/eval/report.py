"""The evaluation report: `metrics.json`, `report.md` (method × metric table with bootstrap
95 % CIs), `charts.png` and `samples.png` (swaps of the public-domain faces only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from selfswap.io.images import atomic_write, save_image
from selfswap.provenance import embed_watermark, provenance_metadata

# (key, column title, better direction, format), by table
SFACE_COLUMNS = [
    ("sface_source", "SFace sim. to source ↑", 1, "{:.3f}"),
    ("sface_same", "judged same person ↑", 1, "{:.1%}"),
    ("sface_closer", "closer to source ↑", 1, "{:.1%}"),
    ("sface_top1", "top-1 ↑", 1, "{:.1%}"),
    ("sface_top5", "top-5 ↑", 1, "{:.1%}"),
    ("sface_target", "SFace sim. to target ↓", -1, "{:.3f}"),
]
DLIB_COLUMNS = [
    ("id_source", "dlib sim. to source ↑", 1, "{:.3f}"),
    ("dlib_closer", "closer to source ↑", 1, "{:.1%}"),
    ("top1", "top-1 ↑", 1, "{:.1%}"),
    ("top5", "top-5 ↑", 1, "{:.1%}"),
    ("id_target", "dlib sim. to target (leakage) ↓", -1, "{:.3f}"),
]
IMAGE_COLUMNS = [
    ("sharpness", "sharpness ratio ↑", 1, "{:.2f}"),
    ("seam", "seam ΔE ↓", -1, "{:.2f}"),
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
TABLES = [
    ("Identity by the independent judge (SFace, never used in training)", SFACE_COLUMNS),
    ("Identity by dlib (the network the identity loss trains against)", DLIB_COLUMNS),
    ("Geometry, image quality, realism, speed", IMAGE_COLUMNS),
]
COLUMNS = SFACE_COLUMNS + DLIB_COLUMNS + IMAGE_COLUMNS
UNSEEN_COLUMNS = [c for c in SFACE_COLUMNS if c[0] in ("sface_source", "sface_same",
                  "sface_closer", "sface_target")] + DLIB_COLUMNS[:2]  # fmt: skip

NOTES = """\
How to read these tables
- Pairs come from `{pairs_file}`: people never seen in training. Every swap is judged on the
  full-size output photo, the size a user looks at.
- Identity, independent judge: OpenCV Zoo's SFace (128-D, int8 model folded to fp32) on the
  YuNet face nearest the target's face, ArcFace 5-point 112x112 alignment, cosine to
  `source_id_ref` (a different photo of the source person than the one swapped in) and to
  the target photo. "Judged same person": cosine above 0.363, OpenCV's threshold; "closer
  to source": the swap is more similar to the source's other photo than to the target
  photo. SFace plays no part in training, so it cannot have been pleased by the model.
  Copying the source photo in scores about 0.6, an unchanged target about 0.1.
- Identity, dlib: the same measures with the dlib ResNet descriptor, which is the network
  the models' identity loss trains against: these numbers flatter the models.
- Retrieval: is the source person's reference photo among the k most similar of a gallery of
  {gallery} people (every source person of the evaluated pairs)?
- Sharpness ratio: inside the target's face box, variance of the Laplacian of the output
  over that of the original photo, at the photo's own resolution (1.0 = as sharp as the
  photo). Seam ΔE: the colour step (CIELAB ΔE) across the border of the region the swap
  changed, above the photo's own colour change across the same curve (0 = no step; see
  `selfswap.eval.metrics.seam_score`); "—" where nothing was pasted.
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


def table(summary: dict, columns: list | None = None, subset: str | None = None) -> str:
    """Markdown table of methods x `columns` (default: all tables, each under its title);
    `subset`: take the rows from each method's `row[subset]` (e.g. "unseen")."""
    if columns is None:
        return "\n\n".join(f"**{title}**\n\n{table(summary, cols)}" for title, cols in TABLES)
    header = "| method | " + " | ".join(title for _, title, _, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for name, row in summary["methods"].items():
        row = row.get(subset, {}) if subset else row
        cells = [_cell(row.get(key), fmt) for key, _, _, fmt in columns]
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


DEV_VIDEO_NOTES = """\
Real talking-head clips (`video-dev/`, the first {frames} frames of each), each swapped with
one source person of the pairs (selfswap models through `swap_video`, with tracking and
smoothing; other methods frame by frame). SFace: similarity of each frame's face to another
photo of the source person (mean over frames, and its spread over frames); jitter ratio:
landmark jitter of the output over the original clip's (1.0 = as steady as the footage);
flicker ratio: mean frame-to-frame change inside the face box, output over original; eye
opening error: mean |difference| of the eyes' opening (eye aspect ratio, about 0.3 open,
under 0.15 closed) from the original's, and eyes follow: its correlation with the
original's over the frames (1: the swap blinks with the footage); fps:
frames per second of the whole swap of the clip, on the machine as loaded during the run.
"""


def dev_video_table(video_dev: dict) -> str:
    cols = [("sface_mean", "SFace sim. to source ↑", "{:.3f}"),
            ("sface_std", "SFace spread over frames", "{:.3f}"),
            ("jitter_ratio", "landmark jitter ratio ↓", "{:.2f}"),
            ("flicker_ratio", "flicker ratio ↓", "{:.2f}"),
            ("eye_error", "eye opening error ↓", "{:.3f}"),
            ("eye_follow", "eyes follow (corr.) ↑", "{:.2f}"),
            ("fps", "fps ↑", "{:.1f}")]  # fmt: skip

    def rows(table: dict, prefix: str = "") -> list[str]:
        out = []
        for name, row in table.items():
            cells = [_cell(row.get(k, float("nan")), fmt) for k, _, fmt in cols]
            out.append(f"| {prefix}{name} | " + " | ".join(cells) + " |")
        return out

    header = "| method | " + " | ".join(t for _, t, _ in cols) + " |"
    lines = ["Mean over clips:", "", header, "|" + "---|" * (len(cols) + 1)]
    lines += rows(video_dev["summary"])
    lines += ["", "Per clip:", "", header.replace("method", "clip: method"),
              "|" + "---|" * (len(cols) + 1)]  # fmt: skip
    for clip, table in video_dev["clips"].items():
        lines += rows(table, f"{clip}: ")
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
    "sface_source", "sface_target", "id_source", "id_target", "sharpness", "seam",
    "pose_error", "expression_error", "shape_error", "recon_l1", "recon_psnr", "recon_ssim",
)  # fmt: skip


def charts(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [c for c in COLUMNS if c[0] not in ("face_found", "sface_top5", "top5")]
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
    if summary.get("unseen_pairs"):
        sections += (
            f"## Source people unseen in training\n\nThe {summary['unseen_pairs']} pairs whose "
            "source person appears in no training set (the other source people are in the "
            "CelebA subset the models trained on, with other photos).\n\n"
            f"{table(summary, UNSEEN_COLUMNS, subset='unseen')}\n\n"
        )
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
    if summary.get("video_dev"):
        notes_dev = DEV_VIDEO_NOTES.format(frames=summary.get("video_dev_frames", ""))
        sections += f"## Real clips\n\n{dev_video_table(summary['video_dev'])}\n\n{notes_dev}\n"
    text = (
        f"# {title}\n\n"
        f"{summary['pairs_with_faces']} of {summary['pairs']} pairs had a face in all three "
        f"photos and were evaluated.\n\n{table(summary)}\n\n{notes}\n{sections}\n"
        "![metrics](charts.png)\n\n![swaps of the public-domain faces](samples.png)\n\n"
        "Face crops of the full-size outputs (public-domain faces):\n\n"
        "![contact sheet of the public-domain faces](sheet-public-domain.jpg)\n"
    )
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(text))
    return out / "report.md"
