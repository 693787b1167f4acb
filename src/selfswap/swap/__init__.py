"""The model-independent machinery of swapping.

- `selfswap.swap.blend`: paste-back of generated crops into the frame (feathered masks,
  colour matching);
- `selfswap.swap.video`: PyAV reading and writing (upright frames, H.264 with the original
  audio, atomic output) and `process_video`;
- `selfswap.swap.smoothing`: One-Euro filtering of per-face parameters, scene cuts, tracks.

Submodules are imported on demand (PyAV and SciPy are not loaded by `import selfswap.swap`).
"""
