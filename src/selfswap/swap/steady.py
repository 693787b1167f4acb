"""Steadiness for video: where the input did not change from one frame to the next, the
swapped face should not change either.

The generator, the source detail and the seam match are computed afresh on every frame, so a
face that holds still in the footage still shimmers a little in the swap (the evaluation's
flicker ratio: frame-to-frame change inside the face box, against the footage's own). A
`Steadier` blends each swapped frame towards the previous *swapped* frame, pixel by pixel,
with a weight that falls as the *input* changes there: `w = strength · exp(−Δ / TAU)`, Δ the
input's grey-level change (lightly blurred). Where the person moves or talks, Δ is large and
the new frame is taken as it is (no ghosting); where the footage is still, the swap keeps
its last look. The blend is recursive, so the remaining noise decays frame by frame. Only
the region the swap changed is touched; a scene cut or a new frame size starts afresh.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Input change (grey levels) at which the previous swap's weight has fallen to 1/e.
TAU = 4.0
#: Margin (px) around the changed region that is blended too.
MARGIN = 4


class Steadier:
    """Per-stream state (one per video or webcam stream). `strength` in [0, 1]: 0 off, 1 the
    previous swap kept wholly where the input is exactly still."""

    def __init__(self, strength: float) -> None:
        self.strength = float(np.clip(strength, 0.0, 1.0))
        self.reset()

    def reset(self) -> None:
        self._input: np.ndarray | None = None
        self._output: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, swapped: np.ndarray, cut: bool = False) -> np.ndarray:
        """`swapped` (the swap of `frame`, RGB uint8) steadied against the previous one; a new
        array when it changes anything."""
        if self.strength <= 0:
            return swapped
        previous_in, previous_out = self._input, self._output
        same_size = previous_in is not None and previous_in.shape == frame.shape
        out = swapped
        box = _changed_box(frame, swapped) if same_size and not cut else None
        if box is not None:
            y0, y1, x0, x1 = box
            now = frame[y0:y1, x0:x1].astype(np.float32)
            before = previous_in[y0:y1, x0:x1].astype(np.float32)
            change = cv2.blur(np.abs(now - before).mean(axis=2), (3, 3))
            weight = (self.strength * np.exp(-change / TAU))[..., None]
            fresh = swapped[y0:y1, x0:x1].astype(np.float32)
            kept = previous_out[y0:y1, x0:x1].astype(np.float32)
            out = swapped.copy()
            out[y0:y1, x0:x1] = np.clip(fresh + weight * (kept - fresh) + 0.5, 0, 255)
        self._input, self._output = frame.copy(), out.copy()
        return out


def _changed_box(frame: np.ndarray, swapped: np.ndarray) -> tuple[int, int, int, int] | None:
    """`(y0, y1, x0, x1)` around the pixels the swap changed (plus `MARGIN`), or None."""
    if swapped is frame:
        return None
    changed = np.any(swapped != frame, axis=2)
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    if not len(rows):
        return None
    h, w = changed.shape
    return (
        max(rows[0] - MARGIN, 0), min(rows[-1] + 1 + MARGIN, h),
        max(cols[0] - MARGIN, 0), min(cols[-1] + 1 + MARGIN, w),
    )  # fmt: skip
