"""Face analysis: detection, landmarks, 3DMM, alignment, identity."""
