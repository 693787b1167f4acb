"""Identity transfer of a model on LFW eval swap pairs (people never seen in training).

For each pair (source, source_id_ref, target) of `splits/lfw_eval_swap_pairs.tsv`: swap the
source into the target, then compare the embedding of the swap with a *different* photo
of the source (`source_id_ref`) and with the target, by two networks: SFace, the independent
judge that never enters training, and dlib, which the identity loss trains against. Prints
mean cosine similarities and the fraction of swaps closer to the source than to the target.
`selfswap eval` (scripts/eval_dev.sh) is the full harness.

Usage: python benchmarks/lfw_swap_identity.py --model RUN [--pairs 100]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from selfswap.errors import NoFaceError
from selfswap.eval.judge import SAME_PERSON, SFaceJudge
from selfswap.face.identity import cosine_similarity as cosine
from selfswap.io.images import load_image
from selfswap.swap.pipeline import FaceSwapper

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CENTRE = np.array([100.0, 100.0, 150.0, 150.0])  # LFW photos are centred on their subject


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

    judge = SFaceJudge()

    def judged(image) -> np.ndarray:
        face = judge.describe(image, near=CENTRE)
        if face is None:
            raise NoFaceError("no face")
        return face.embedding

    sims = {net: {"source": [], "target": [], "before": []} for net in ("SFace", "dlib")}
    skipped = 0
    for row in rows[: args.pairs]:
        source, ref, target = (lfw / p for p in row.split("\t"))
        try:
            target_image, ref_image = load_image(target), load_image(ref)
            swapped = swapper.swap_image([load_image(source)], target_image, watermark=False)
            found = {
                net: [fn(swapped.image), fn(ref_image), fn(target_image)]
                for net, fn in (("SFace", judged), ("dlib", embedding))
            }
        except NoFaceError:
            skipped += 1
            continue
        for net, (e_swap, e_ref, e_target) in found.items():
            sims[net]["source"].append(cosine(e_swap, e_ref))
            sims[net]["target"].append(cosine(e_swap, e_target))
            sims[net]["before"].append(cosine(e_target, e_ref))
    print(f"{len(sims['dlib']['source'])} pairs ({skipped} skipped: no face), cosine similarity")
    for net, v in sims.items():
        s, t, b = (np.array(v[k]) for k in ("source", "target", "before"))
        note = " (independent judge)" if net == "SFace" else " (the identity loss's network)"
        print(f"{net}{note}")
        print(f"  swap vs source (other photo): {s.mean():.3f}   unswapped target: {b.mean():.3f}")
        print(f"  swap vs target:               {t.mean():.3f}")
        print(f"  swaps closer to source than to target: {np.mean(s > t):.0%}")
        if net == "SFace":
            print(f"  judged the same person (> {SAME_PERSON}): {np.mean(s > SAME_PERSON):.0%}")


if __name__ == "__main__":
    main()
