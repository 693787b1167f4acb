"""ONNX files for ONNX Runtime: CPU sessions, graphs kept in the cache, quantised files made
loadable.

OpenCV Zoo's int8 files (YuNet, SFace) quantise their weights in blocks (`DequantizeLinear`
with `block_size`), which ONNX Runtime's CPU kernels refuse. Their weights are constants, so
each such node is folded once into a float32 initializer: the same numbers OpenCV computes
with, as a graph any runtime takes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np


def cpu_session(model: bytes | str | Path, threads: int | None = None, spinning: bool = True):
    """An ONNX Runtime session on the CPU for `model` (a file or its bytes), quiet (no
    "Removing initializer" warnings); `threads` intra-op threads (None: the runtime's
    choice) and one inter-op; `spinning` False keeps idle threads from spinning (they starve
    PyTorch running next to them)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def open_kept(path: Path, threads: int | None = None) -> tuple[bytes, Any] | None:
    """The graph kept at `path` and a `cpu_session` of it; None where there is none, and
    where it is damaged (then it is removed, to be made again)."""
    try:
        graph = path.read_bytes()
    except OSError:
        return None
    try:
        return graph, cpu_session(graph, threads)
    except Exception:
        path.unlink(missing_ok=True)
        return None


def keep(path: Path, graph: bytes) -> None:
    """Keep `graph` at `path` (atomically) for later runs; a cache that cannot be written is
    no error."""
    from selfswap.io.files import atomic_write

    with contextlib.suppress(Exception):
        atomic_write(path, lambda tmp: tmp.write_bytes(graph))


def dequantized(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block: int):
    """`DequantizeLinear` of a constant: per-tensor, per-axis or blocked (`block_size`)."""
    q = q.astype(np.float32)
    scale, zero = scale.astype(np.float32), zero.astype(np.float32)
    if scale.size == 1:
        return (q - zero.reshape(())) * scale.reshape(())
    axis %= q.ndim
    if block:  # scale / zero point hold one value per block of `block` along `axis`
        take = np.arange(q.shape[axis])
        scale = np.repeat(scale, block, axis=axis).take(take, axis=axis)
        zero = np.repeat(zero, block, axis=axis).take(take, axis=axis)
        return (q - zero) * scale
    shape = [1] * q.ndim
    shape[axis] = -1
    return (q - zero.reshape(shape)) * scale.reshape(shape)


def fold_quantization(model):
    """`model` (an `onnx.ModelProto`, changed in place and returned) with every
    `DequantizeLinear` of constants (initializers or `Constant` nodes) replaced by a float32
    initializer, and the initializers and graph inputs that no node reads dropped."""
    from onnx import helper, numpy_helper

    graph = model.graph
    values = {t.name: t for t in graph.initializer}
    for node in graph.node:
        attrs = node.attribute
        if node.op_type == "Constant" and len(attrs) == 1 and attrs[0].name == "value":
            values[node.output[0]] = attrs[0].t

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(values[name])

    keep, folded = [], []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type != "DequantizeLinear" or not all(i in values for i in inputs):
            keep.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        scale = array(inputs[1])
        zero = array(inputs[2]) if len(inputs) > 2 else np.zeros_like(scale)
        value = dequantized(
            array(inputs[0]), scale, zero, attrs.get("axis", 1), attrs.get("block_size", 0)
        )
        folded.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(folded)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    kept = {t.name for t in live}
    inputs = [i for i in graph.input if i.name in used and i.name not in kept]
    del graph.input[:]
    graph.input.extend(inputs)
    return model
