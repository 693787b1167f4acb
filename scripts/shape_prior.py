"""The source shape prior (`selfswap.face.shape_prior`): per 3DMM shape coefficient, the
mean over faces and how much of its variance lies between people and how much between
photos of one person, from a set written by `selfswap prepare` (people from its
`identity_id`). Sets named in `--skip` (e.g. a faceset of tight crops, whose fits differ)
are left out.

    .venv/bin/python scripts/shape_prior.py $SELFSWAP_HOME/datasets/lfw_celeba_all \\
        --skip celeba_dfl -o src/selfswap/face/shape_prior.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def variances(shapes: np.ndarray, people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(between, within)` per coefficient: the pooled variance of a person's photos around
    that person's mean (people with 2+ photos), and the rest of the total variance."""
    names, index, counts = np.unique(people, return_inverse=True, return_counts=True)
    sums = np.zeros((len(names), shapes.shape[1]))
    np.add.at(sums, index, shapes)
    means = sums / counts[:, None]
    several = counts[index] >= 2
    residual = shapes[several] - means[index[several]]
    within = (residual**2).sum(0) / (several.sum() - (counts >= 2).sum())
    between = np.clip(shapes.var(0) - within, 1e-6 * within, None)
    return between, within


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a folder written by `selfswap prepare`")
    parser.add_argument("--skip", nargs="*", default=[], help="merged sets to leave out")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    faces = pd.read_parquet(args.data / "faces.parquet", columns=["source", "shape", "identity_id"])
    kept = ~faces["source"].str.split("/").str[0].isin(args.skip)
    faces = faces[kept]
    shapes = np.stack(faces["shape"].to_numpy()).astype(np.float64)
    people = faces["identity_id"].to_numpy()
    between, within = variances(shapes, people)
    table = {
        "about": "3DMM shape coefficients of selfswap's 3DDFA_V2 fit: mean, variance between "
        "people, variance between photos of one person",
        "made_by": f"scripts/shape_prior.py {args.data.name} --skip {' '.join(args.skip)}".strip(),
        "faces": int(len(faces)),
        "people": int(len(np.unique(people))),
        "mean": [round(float(v), 1) for v in shapes.mean(0)],
        "between": [float(f"{v:.6g}") for v in between],
        "within": [float(f"{v:.6g}") for v in within],
    }
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    tmp.replace(args.output)
    share = within / (within + between)
    print(f"{len(faces)} faces of {table['people']} people; photo-to-photo share of the "
          f"variance {share.min():.2f}-{share.max():.2f} (mean {share.mean():.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
