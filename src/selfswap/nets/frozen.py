"""The generator as a frozen TorchScript graph, for inference.

At batch 1 on a CPU the generator's ~1,300 module calls per pass cost about a sixth of its
time in Python; traced and frozen it runs the same kernels on the same numbers without them
(60 → 51 ms on one thread; `benchmarks/results/swap_speed.md`). `torch.compile` would do the
same but compiles for minutes on this kind of machine (`benchmarks/results/train_throughput.md`).
A trace holds for any batch size at the input's channel count and side.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

Run = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def freeze(
    generator: nn.Module, inputs: torch.Tensor, z_id: torch.Tensor, z_app: torch.Tensor | None
) -> Run | None:
    """`generator` (in eval mode) traced on these example inputs and frozen: a function of
    `(inputs, z_id, z_app)` like `generator.forward`, for gradient-free calls. None where
    TorchScript cannot trace it (the caller keeps the module)."""
    example = (inputs, z_id) if z_app is None else (inputs, z_id, z_app)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # TorchScript is deprecated in favour of torch.compile (see above); the shape
            # checks the tracer warns about are constant for a given side
            warnings.simplefilter("ignore")
            graph = torch.jit.freeze(torch.jit.trace(generator, example, check_trace=False))
    except (RuntimeError, TypeError, AttributeError, NotImplementedError):
        return None
    if z_app is None:
        return lambda x, z, _app: graph(x, z)
    return graph
