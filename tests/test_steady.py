"""Steadiness for video (`selfswap.swap.steady`): a swap that shimmers on still footage is
calmed, motion passes through, cuts and the untouched pixels are left alone."""

from __future__ import annotations

import numpy as np
import pytest

from selfswap.samples import astronaut
from selfswap.swap.options import SwapConfig, SwapOptionError
from selfswap.swap.steady import Steadier

FACE = (slice(60, 220), slice(160, 320))  # rows, columns of a box on the astronaut's face


def shimmering_swaps(frame: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` swaps of one still frame: the face box repainted with fresh noise each time."""
    rng = np.random.default_rng(seed)
    swaps = []
    for _ in range(count):
        out = frame.copy()
        face = frame[FACE].astype(np.float32) + rng.normal(0, 6, frame[FACE].shape)
        out[FACE] = np.clip(face + 20, 0, 255).astype(np.uint8)  # another face, and noise
        swaps.append(out)
    return swaps


def frame_change(frames: list[np.ndarray]) -> float:
    return float(
        np.mean(
            [np.abs(a[FACE].astype(float) - b[FACE]).mean() for a, b in zip(frames, frames[1:])]
        )
    )


def test_still_footage_stops_shimmering():
    frame = astronaut()
    swaps = shimmering_swaps(frame, 12)
    steadier = Steadier(0.8)
    steady = [steadier(frame, s) for s in swaps]
    assert frame_change(steady) < 0.35 * frame_change(swaps)
    # The swap stays the swap: the mean of the face is the new face's, not the footage's.
    assert abs(steady[-1][FACE].mean() - swaps[-1][FACE].mean()) < 1.0
    outside = np.ones(frame.shape[:2], bool)
    outside[FACE[0].start - 8 : FACE[0].stop + 8, FACE[1].start - 8 : FACE[1].stop + 8] = False
    assert all(np.array_equal(s[outside], frame[outside]) for s in steady)


def test_motion_cuts_and_off_pass_through():
    frame = astronaut()
    moved = np.roll(frame, 9, axis=1)  # the person moved: the input changes under the face
    first, second = shimmering_swaps(frame, 1)[0], shimmering_swaps(moved, 1, seed=1)[0]
    steadier = Steadier(1.0)
    steadier(frame, first)
    out = steadier(moved, second)
    textured = np.abs(moved.astype(float) - frame).mean(axis=2)[FACE] > 60
    assert textured.mean() > 0.05
    assert np.abs(out[FACE].astype(float) - second[FACE]).max(axis=2)[textured].mean() < 3
    # A scene cut (or another frame size) starts afresh; strength 0 is off.
    steadier(frame, first)
    assert steadier(frame, second, cut=True) is second
    assert Steadier(0.0)(frame, first) is first
    small = Steadier(1.0)
    small(frame, first)
    assert np.array_equal(small(frame[:200], second[:200]), second[:200])


def test_steady_is_a_swap_option_in_range():
    assert SwapConfig(steady=0.5).steady == 0.5
    with pytest.raises(SwapOptionError, match="steady must be from 0 to 1"):
        SwapConfig(steady=1.5)
