"""Small numpy-only verification metrics: ROC AUC and seeded same/different pair sampling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["rankdata", "roc_auc", "sample_pairs"]


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties given their average rank. (N,) -> (N,) float64."""
    x = np.asarray(x).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Boundaries of runs of equal values.
    starts = np.r_[0, np.flatnonzero(sorted_x[1:] != sorted_x[:-1]) + 1]
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U; ties count 1/2).

    ``scores``: (N,) higher = more likely positive; ``labels``: (N,) bool/0-1.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both positive and negative examples")
    r = rankdata(scores)
    u = r[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def sample_pairs(
    identities: Sequence[str], n_same: int, n_diff: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded index pairs of items with the same / different identity.

    Returns ``(same, diff)`` int arrays of shape (n_same', 2) and (n_diff, 2). Same-person
    pairs are drawn without replacement from all such pairs (all of them if fewer exist).
    """
    ids = np.asarray(identities)
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(ids):
        groups.setdefault(str(name), []).append(i)
    all_same = [
        (g[a], g[b]) for g in groups.values() for a in range(len(g)) for b in range(a + 1, len(g))
    ]
    pick = rng.permutation(len(all_same))[:n_same]
    same = np.array([all_same[k] for k in sorted(pick)], dtype=np.int64).reshape(-1, 2)
    diff: set[tuple[int, int]] = set()
    if len(groups) < 2 and n_diff:
        raise ValueError("need at least two identities for different-person pairs")
    while len(diff) < n_diff:
        i, j = (int(v) for v in rng.integers(0, len(ids), 2))
        if ids[i] != ids[j]:
            diff.add((min(i, j), max(i, j)))
    return same, np.array(sorted(diff), dtype=np.int64).reshape(-1, 2)


def lfw_verification(
    lfw_root, names: Sequence[str], n_pairs: int, seed: int = 0, threshold: float = 0.6
) -> dict:
    """Face verification with the PyTorch dlib port on LFW-style `person/file.jpg` names.

    Draws `n_pairs` same-person and different-person pairs, embeds each needed image once
    (HOG detection, the face nearest the centre), and returns the pair counts, the ROC AUC of
    negative distance and the accuracy at distance < `threshold`.
    """
    from pathlib import Path

    from selfswap.face.identity import IdentityEncoder, central_face_landmarks5
    from selfswap.io.images import load_image

    people = [n.split("/")[0] for n in names]
    same, diff = sample_pairs(people, n_pairs, n_pairs, seed=seed)
    needed = sorted(set(same.ravel()) | set(diff.ravel()))
    encoder = IdentityEncoder()
    emb: dict[int, np.ndarray] = {}
    missed = 0
    for start in range(0, len(needed), 64):
        idx, images, points = [], [], []
        for i in needed[start : start + 64]:
            image = load_image(Path(lfw_root) / names[i])
            landmarks = central_face_landmarks5(image)
            if landmarks is None:
                missed += 1
                continue
            idx.append(i)
            images.append(image)
            points.append(landmarks)
        emb.update(zip(idx, encoder.embed(images, points), strict=True))
    same = np.array([p for p in same if p[0] in emb and p[1] in emb])
    diff = np.array([p for p in diff if p[0] in emb and p[1] in emb])
    pairs = np.concatenate([same, diff])
    dist = np.array([np.linalg.norm(emb[i] - emb[j]) for i, j in pairs])
    labels = np.r_[np.ones(len(same)), np.zeros(len(diff))]
    return {
        "faces": len(emb),
        "missed": missed,
        "same": len(same),
        "different": len(diff),
        "auc": roc_auc(-dist, labels),
        "accuracy": float(np.mean((dist < threshold) == labels)),
    }
