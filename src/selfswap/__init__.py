"""selfswap: self-supervised face swapping with a Shape Agnostic Masked AutoEncoder."""

import os as _os

# Idle OpenMP threads of PyTorch spin by default and starve the OpenGL rasterizer (llvmpipe)
# and ONNX Runtime that run between network calls: on 2 cores a swap took 172 ms with
# spinning and 100 ms without (benchmarks/bench_swap.py). Takes effect when selfswap is
# imported before torch; an explicit OMP_WAIT_POLICY wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# numpy's OpenBLAS on one thread unless the operator says otherwise (read when numpy loads,
# so also only when selfswap comes first). The swap's matrix products are small, and the
# threads OpenBLAS starts for them spin on the cores the swap needs: swap_frame on the
# benchmark photo took 280-325 ms with them and 173 ms without while a training run held
# the other core, 176 and 140-164 ms on a quiet machine (benchmarks/results/swap_speed.md);
# the live web app saw 188 → 125 ms CPU per frame (benchmarks/live_fps.py).
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
