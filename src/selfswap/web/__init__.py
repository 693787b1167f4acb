"""The web app of `selfswap serve` (see `docs/web.md`)."""

import os

# numpy's OpenBLAS on one thread unless the operator says otherwise. Read when numpy loads,
# which under `selfswap serve` is right after this: the app's per-frame matrix products are
# small, and the threads OpenBLAS starts for them spin on the cores the swap needs
# (benchmarks/live_fps.py on the shared 2-core machine: 188 → 125 ms CPU per live frame).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
