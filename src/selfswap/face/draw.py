"""Drawing face-analysis results for humans: boxes, landmarks, mesh, pose."""

from __future__ import annotations

import cv2
import numpy as np

from selfswap.face.types import Face


def draw_faces(image_rgb: np.ndarray, faces: list[Face], mesh: bool = True) -> np.ndarray:
    """A copy of the image with each face's box, mesh (sparse dots), 68 landmarks, the 5
    identity landmarks and a `#index yaw/pitch/roll` label."""
    out = image_rgb.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for index, face in enumerate(faces):
        if mesh:
            vertices = face.vertices()[::40, :2]
            for x, y in vertices.astype(int):
                if 0 <= x < out.shape[1] and 0 <= y < out.shape[0]:
                    out[y, x] = (0.5 * out[y, x] + (0, 110, 255)).clip(0, 255)
        x0, y0, x1, y1 = face.box.astype(int)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 255, 0), thickness)
        for x, y in face.landmarks68.astype(int):
            cv2.circle(out, (x, y), thickness, (255, 255, 0), -1)
        for x, y in face.landmarks5.astype(int):
            cv2.circle(out, (x, y), thickness + 1, (255, 0, 0), -1)
        label = f"#{index} yaw {face.yaw:+.0f} pitch {face.pitch:+.0f} roll {face.roll:+.0f}"
        scale = 0.35 * thickness
        cv2.putText(
            out, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0),
            thickness, cv2.LINE_AA,
        )  # fmt: skip
    return out
