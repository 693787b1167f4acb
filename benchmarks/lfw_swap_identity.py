"""Identity transfer of a model on LFW eval swap pairs (people never seen in training).

For each pair (source, source_id_ref, target) of `splits/lfw_eval_swap_pairs.tsv`: swap the
source into the target, then compare the dlib embedding of the swap with a *different* photo
of the source (`source_id_ref`) and with the target. Prints mean cosine similarities and the
fraction of swaps closer to the source than to the target. Issue #7 builds the full harness.

Usage: python benchmarks/lfw_swap_identity.py --model RUN [--pairs 100]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from selfswap.errors import NoFaceError
from selfswap.face.identity import cosine_similarity as cosine
from selfswap.io.images import load_image
from selfswap.swap.pipeline import FaceSwapper

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    swapper = FaceSwapper.load(args.model)
    rows = (args.data / "splits" / "lfw_eval_swap_pairs.tsv").read_text().splitlines()[1:]
    lfw = args.data / "lfw"

    def embedding(image) -> np.ndarray:
        faces = swapper.analyzer.analyze(image)
        if not faces:
            raise NoFaceError("no face")
        return min(faces, key=lambda f: np.abs(f.box.reshape(2, 2).mean(0) - 125).sum()).embedding

    to_source, to_target, before, skipped = [], [], [], 0
    for row in rows[: args.pairs]:
        source, ref, target = (lfw / p for p in row.split("\t"))
        try:
            target_image = load_image(target)
            swapped = swapper.swap_image([load_image(source)], target_image, watermark=False)
            e_swap, e_ref = embedding(swapped.image), embedding(load_image(ref))
            e_target = embedding(target_image)
        except NoFaceError:
            skipped += 1
            continue
        to_source.append(cosine(e_swap, e_ref))
        to_target.append(cosine(e_swap, e_target))
        before.append(cosine(e_target, e_ref))
    s, t, b = np.array(to_source), np.array(to_target), np.array(before)
    print(f"{len(s)} pairs ({skipped} skipped: no face), dlib embeddings, cosine similarity")
    print(
        f"swap vs source (other photo): {s.mean():.3f}   unswapped target vs source: {b.mean():.3f}"
    )
    print(f"swap vs target:               {t.mean():.3f}")
    print(f"swaps closer to source than to target: {np.mean(s > t):.0%}")


if __name__ == "__main__":
    main()
