"""Paired differences between two methods' evaluation records (`selfswap eval` writes them
to OUT/records/*.jsonl), over the pairs both describe, with bootstrap 95 % CIs: for rows
measured in different runs of the same harness and pairs (e.g. a new model against the
shipped default's `dev-wild` records).

    .venv/bin/python scripts/paired_records.py A.jsonl B.jsonl [--resamples 2000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

METRICS = (
    "sface_source", "sface_target", "sharpness", "seam", "pose_error", "expression_error",
    "shape_error", "closer",
)  # fmt: skip


def swaps(path: Path) -> dict[int, dict]:
    """{pair: record} of the swap records with a face found, each with `closer` added: 1 where
    the judge puts the swap nearer the source than the target (issue #15's "closer to the
    source"), 0 where not, NaN where it found no face."""
    out = {}
    with path.open() as f:
        for line in f:
            record = json.loads(line)
            if record.get("kind") == "swap" and record.get("found"):
                source = record.get("sface_source", np.nan)
                target = record.get("sface_target", np.nan)
                judged = np.isfinite(source) and np.isfinite(target)
                record["closer"] = float(source > target) if judged else np.nan
                out[record["pair"]] = record
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    a, b = swaps(args.a), swaps(args.b)
    pairs = sorted(set(a) & set(b))
    rng = np.random.default_rng(0)
    print(f"{len(pairs)} pairs in both; A = {args.a.name}, B = {args.b.name}")
    print(f"{'metric':18s} {'A':>7s} {'B':>7s} {'A - B':>8s}  95 % CI            relative")
    for metric in METRICS:
        x = np.array([a[p].get(metric, np.nan) for p in pairs], float)
        y = np.array([b[p].get(metric, np.nan) for p in pairs], float)
        ok = np.isfinite(x) & np.isfinite(y)
        d = x[ok] - y[ok]
        means = d[rng.integers(0, len(d), (args.resamples, len(d)))].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        print(
            f"{metric:18s} {x[ok].mean():7.3f} {y[ok].mean():7.3f} {d.mean():+8.3f}  "
            f"[{lo:+.3f}, {hi:+.3f}]  {d.mean() / y[ok].mean():+.1%}"
        )


if __name__ == "__main__":
    main()
