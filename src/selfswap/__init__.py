"""selfswap: self-supervised face swapping with a Shape Agnostic Masked AutoEncoder."""

import os as _os

# Idle OpenMP threads of PyTorch spin by default and starve the OpenGL rasterizer (llvmpipe)
# and ONNX Runtime that run between network calls: on 2 cores a swap took 172 ms with
# spinning and 100 ms without (benchmarks/bench_swap.py). Takes effect when selfswap is
# imported before torch; an explicit OMP_WAIT_POLICY wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
