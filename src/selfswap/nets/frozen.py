"""The generator as a frozen graph, for inference.

At batch 1 on a CPU the generator's ~1,300 module calls per pass cost about a sixth of its
time in Python. Frozen, it runs without them:

- on a CPU, exported to ONNX and run by ONNX Runtime (already used for 3DDFA), whose
  convolutions are faster than torch's here: 48 → 34 ms a pass on one thread, 35 → 21 on two
  (`benchmarks/results/swap_speed.md`). The export costs 1.5–3 s, so it is made once on a
  thread of its own and kept under `$SELFSWAP_HOME/cache`, named by a digest of the weights
  and the input's shape; runs that find it open it in a quarter of a second. Outputs match
  the module's to ~1e-6 (a different summation order), not bit for bit.
- elsewhere, before the export is kept, or where it fails, as a traced, frozen
  TorchScript graph (the same kernels on the same numbers: bit for bit). `torch.compile`
  would do the same but compiles for minutes on this kind of machine
  (`benchmarks/results/train_throughput.md`).

Either holds for any batch size at the input's channel count and side.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from selfswap.models.onnx_files import cpu_session, keep, open_kept

Run = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

#: Bump when the export changes, so that cached graphs from before are not used.
_EXPORT_VERSION = 1
_INPUTS = ("guidance", "z_id", "z_app")
#: Exports running on threads of their own, by the file they will be kept in.
_exporting: dict[Path, threading.Thread] = {}
#: One trace at a time: the tracer and the ONNX exporter keep module-level state (the traced
#: modules' names, the export's settings), so two threads must not trace at once.
_tracing = threading.Lock()


def freeze(
    generator: nn.Module,
    inputs: torch.Tensor,
    z_id: torch.Tensor,
    z_app: torch.Tensor | None,
    runtime: str = "onnx",
    wait: bool = False,
) -> Run | None:
    """`generator` (in eval mode) frozen for inputs like these: a function of
    `(inputs, z_id, z_app)` like `generator.forward`, for gradient-free calls. None where it
    cannot be frozen (the caller keeps the module).

    `runtime` "onnx": ONNX Runtime where it can take the inputs (float32 on the CPU) and the
    export is kept from before; else TorchScript, while the export is made on a thread of its
    own for the next run (`wait`: made here and used now). A run thus keeps one runtime for
    a given model and input shape, and a stream never stalls for the export. "torchscript":
    always TorchScript."""
    example = (inputs, z_id) if z_app is None else (inputs, z_id, z_app)
    if runtime == "onnx" and onnx_runnable(example):
        path = _cache_path(generator, example)
        run = OnnxRun.open(path, len(example))
        if run is None and wait:
            run = OnnxRun.export(generator, example, path)
        elif run is None:
            _export_later(generator, example, path)
        if run is not None:
            return run
    try:
        with _tracing, warnings.catch_warnings(), torch.no_grad():
            # TorchScript is deprecated in favour of torch.compile (see above); the shape
            # checks the tracer warns about are constant for a given side
            warnings.simplefilter("ignore")
            graph = torch.jit.freeze(torch.jit.trace(generator, example, check_trace=False))
    except (RuntimeError, TypeError, AttributeError, NotImplementedError):
        return None
    if z_app is None:
        return lambda x, z, _app: graph(x, z)
    return graph


def onnx_runnable(example: tuple[torch.Tensor, ...]) -> bool:
    """Whether ONNX Runtime can run the generator on inputs like these."""
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in example)
        and importlib.util.find_spec("onnxruntime") is not None
        and importlib.util.find_spec("onnx") is not None
    )


def _export_later(generator: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """Export a copy of `generator` to `path` on another thread (not a daemon: a run that
    ends first waits for it, so that the next run finds it)."""
    if path in _exporting and _exporting[path].is_alive():
        return
    copied = copy.deepcopy(generator)
    inputs = tuple(t.detach().clone() for t in example)
    thread = threading.Thread(
        target=OnnxRun.export, args=(copied, inputs, path), name="onnx-export"
    )
    _exporting[path] = thread
    thread.start()


def wait_for_exports() -> None:
    """Block until the exports started on other threads are kept."""
    for thread in list(_exporting.values()):
        thread.join()


class OnnxRun:
    """The generator exported to ONNX, run by ONNX Runtime with as many threads as torch
    uses in the calling thread (one session per thread count, opened on first use)."""

    def __init__(self, graph: bytes, inputs: int) -> None:
        self.graph = graph
        self.names = _INPUTS[:inputs]
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, inputs: int) -> OnnxRun | None:
        """The export kept at `path`; None where there is none (a damaged one is removed)."""
        threads = torch.get_num_threads()
        found = open_kept(path, threads)  # a damaged one is removed: exported again
        if found is None:
            return None
        kept = cls(found[0], inputs)
        kept._sessions[threads] = found[1]
        return kept

    @classmethod
    def export(
        cls, generator: nn.Module, example: tuple[torch.Tensor, ...], path: Path
    ) -> OnnxRun | None:
        """`generator` exported for inputs like `example`, checked by opening it and kept at
        `path`; None where the export fails."""
        buffer = io.BytesIO()
        names = list(_INPUTS[: len(example)])
        try:
            with _tracing, warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the tracer's constant shape checks, as above
                torch.onnx.export(
                    generator,
                    example,
                    buffer,
                    input_names=names,
                    output_names=["output"],
                    dynamic_axes={name: {0: "batch"} for name in [*names, "output"]},
                    opset_version=17,
                    dynamo=False,
                )
            run = cls(buffer.getvalue(), len(example))
            run.session(torch.get_num_threads())
        except Exception:  # any exporter or runtime failure: TorchScript stays
            return None
        _store(path, run.graph)
        return run

    def __getstate__(self) -> dict:
        """A copy (or pickle) takes the graph; its sessions are opened again on use."""
        return {"graph": self.graph, "inputs": len(self.names)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["graph"], state["inputs"])

    def session(self, threads: int):
        """The ONNX Runtime session that runs on `threads` threads."""
        with self._lock:
            if threads not in self._sessions:
                self._sessions[threads] = cpu_session(self.graph, threads)
            return self._sessions[threads]

    def __call__(
        self, inputs: torch.Tensor, z_id: torch.Tensor, z_app: torch.Tensor | None
    ) -> torch.Tensor:
        values = (inputs, z_id, z_app)[: len(self.names)]
        feed = {name: t.detach().contiguous().numpy() for name, t in zip(self.names, values)}
        (output,) = self.session(torch.get_num_threads()).run(None, feed)
        return torch.from_numpy(output)


def _cache_path(generator: nn.Module, example: tuple[torch.Tensor, ...]) -> Path:
    """Where the export of this generator (its weights) for inputs like these is kept."""
    from selfswap.paths import selfswap_home

    digest = hashlib.sha1(usedforsecurity=False)
    key = (_EXPORT_VERSION, torch.__version__, [tuple(t.shape[1:]) for t in example])
    digest.update(repr(key).encode())
    for name, tensor in generator.state_dict().items():
        digest.update(name.encode())
        digest.update(repr((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return selfswap_home() / "cache" / f"generator_{digest.hexdigest()[:20]}.onnx"


#: Exported graphs kept (~43 MB each for the default); the least recently made go first.
KEEP_GRAPHS = 8


def _store(path: Path, graph: bytes) -> None:
    """Keep the graph for later runs, and only the last `KEEP_GRAPHS` of them; a cache that
    cannot be written is no error."""
    keep(path, graph)
    with contextlib.suppress(OSError):
        kept = sorted(path.parent.glob("generator_*.onnx"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-KEEP_GRAPHS]:
            old.unlink(missing_ok=True)
