"""A minimal reader for frozen TensorFlow ``GraphDef`` files (``.pb``), without TensorFlow.

Decodes just what is needed to rebuild a frozen inference graph elsewhere: each ``NodeDef``'s
name, op, inputs and attributes, with ``Const`` tensors (``TensorProto``: dtype, shape,
``tensor_content`` or the repeated ``*_val`` fields) turned into numpy arrays. It is a plain
protobuf wire-format parser over the field numbers of TensorFlow's ``graph.proto``,
``node_def.proto``, ``attr_value.proto``, ``tensor.proto`` and ``tensor_shape.proto``; fields
it does not know are skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GraphDefError", "TFNode", "read_graph_def", "parse_graph_def"]


class GraphDefError(ValueError):
    """The bytes are not a GraphDef this reader understands."""


# TensorFlow DataType enum -> numpy dtype (types.proto).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    17: np.dtype("<u2"),
    19: np.dtype("<f2"),
}


@dataclass
class TFNode:
    """One ``NodeDef``: ``attr`` values are python ints/floats/bools/bytes, lists of them,
    shapes (tuples, -1 unknown), dtypes (numpy dtype) or tensors (numpy arrays)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict[str, Any] = field(default_factory=dict)


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise GraphDefError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) of one message; value is an int or a memoryview."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise GraphDefError(f"unsupported wire type {wire} (field {num})")
        if pos > end:
            raise GraphDefError("message runs past its end")
        yield num, wire, val


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed_varints(val: int | memoryview, wire: int) -> list[int]:
    if wire == 0:
        assert isinstance(val, int)
        return [_signed(val)]
    out, pos = [], 0
    assert isinstance(val, memoryview)
    while pos < len(val):
        v, pos = _varint(val, pos)
        out.append(_signed(v))
    return out


def _packed_fixed(val: int | memoryview, wire: int, fmt: str) -> list[float]:
    assert isinstance(val, memoryview)
    size = struct.calcsize(fmt)
    if wire != 2 and len(val) != size:
        raise GraphDefError("bad fixed-width value")
    return list(struct.unpack(f"<{len(val) // size}{fmt}", val))


def _shape(buf: memoryview) -> tuple[int, ...] | None:
    dims: list[int] = []
    for num, _, val in _fields(buf):
        if num == 2:
            size = 0
            for n2, _, v2 in _fields(val):  # type: ignore[arg-type]
                if n2 == 1:
                    size = _signed(v2)  # type: ignore[arg-type]
            dims.append(size)
        elif num == 3 and val:
            return None  # unknown rank
    return tuple(dims)


def _tensor(buf: memoryview) -> np.ndarray:
    dtype_id, shape, content = 0, (), None
    vals: list[Any] = []
    for num, wire, val in _fields(buf):
        if num == 1:
            dtype_id = val  # type: ignore[assignment]
        elif num == 2:
            shape = _shape(val) or ()  # type: ignore[arg-type]
        elif num == 4:
            content = bytes(val)  # type: ignore[arg-type]
        elif num == 5:
            vals += _packed_fixed(val, wire, "f")
        elif num == 6:
            vals += _packed_fixed(val, wire, "d")
        elif num in (7, 10, 11, 13):  # int_val, int64_val, bool_val, half_val (as uint16 bits)
            vals += _packed_varints(val, wire)
        elif num == 8:
            vals.append(bytes(val))  # type: ignore[arg-type]
    if dtype_id == 7:
        return np.array(vals, dtype=object).reshape(shape) if vals else np.array([], object)
    if dtype_id not in _DTYPES:
        raise GraphDefError(f"unsupported tensor dtype {dtype_id}")
    dtype = _DTYPES[dtype_id]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dtype=dtype).copy()
    elif dtype_id == 19:
        arr = np.array(vals, dtype=np.uint16).view(np.float16)
    else:
        arr = np.array(vals, dtype=dtype)
    if arr.size == count:
        return arr.reshape(shape)
    if arr.size == 1 or (arr.size == 0 and count == 0):
        # TensorFlow stores a constant-filled tensor as its single repeated value.
        return np.full(shape, arr.reshape(-1)[0] if arr.size else 0, dtype=dtype)
    if 0 < arr.size < count:
        # ...and a tensor whose tail repeats the last value with that tail dropped.
        return np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype)]).reshape(shape)
    raise GraphDefError(f"tensor has {arr.size} values for shape {shape}")


def _attr_value(buf: memoryview) -> Any:
    for num, wire, val in _fields(buf):
        if num == 1:
            return _list_value(val)  # type: ignore[arg-type]
        if num == 2:
            return bytes(val)  # type: ignore[arg-type]
        if num == 3:
            return _signed(val)  # type: ignore[arg-type]
        if num == 4:
            return _packed_fixed(val, wire, "f")[0]
        if num == 5:
            return bool(val)
        if num == 6:
            return _DTYPES.get(val, val)  # type: ignore[call-overload]
        if num == 7:
            return _shape(val)  # type: ignore[arg-type]
        if num == 8:
            return _tensor(val)  # type: ignore[arg-type]
        if num == 9:
            return bytes(val).decode()  # type: ignore[arg-type]
    return None


def _list_value(buf: memoryview) -> list[Any]:
    out: list[Any] = []
    for num, wire, val in _fields(buf):
        if num == 2:
            out.append(bytes(val))  # type: ignore[arg-type]
        elif num in (3, 5):
            vals = _packed_varints(val, wire)
            out += [bool(v) for v in vals] if num == 5 else vals
        elif num == 4:
            out += _packed_fixed(val, wire, "f")
        elif num == 6:
            out += [_DTYPES.get(v, v) for v in _packed_varints(val, wire)]
        elif num == 7:
            out.append(_shape(val))  # type: ignore[arg-type]
        elif num == 8:
            out.append(_tensor(val))  # type: ignore[arg-type]
    return out


def _node(buf: memoryview) -> TFNode:
    node = TFNode(name="", op="")
    for num, _, val in _fields(buf):
        if num == 1:
            node.name = bytes(val).decode()  # type: ignore[arg-type]
        elif num == 2:
            node.op = bytes(val).decode()  # type: ignore[arg-type]
        elif num == 3:
            node.inputs.append(bytes(val).decode())  # type: ignore[arg-type]
        elif num == 5:
            key, value = "", None
            for n2, _, v2 in _fields(val):  # type: ignore[arg-type]
                if n2 == 1:
                    key = bytes(v2).decode()  # type: ignore[arg-type]
                elif n2 == 2:
                    value = _attr_value(v2)  # type: ignore[arg-type]
            node.attr[key] = value
    if not node.name or not node.op:
        raise GraphDefError("NodeDef without a name or op")
    return node


def parse_graph_def(data: bytes) -> list[TFNode]:
    """Nodes of a serialised ``GraphDef``, in file order."""
    nodes = []
    for num, wire, val in _fields(memoryview(data)):
        if num == 1:
            if wire != 2:
                raise GraphDefError("GraphDef.node is not a message")
            nodes.append(_node(val))  # type: ignore[arg-type]
    if not nodes:
        raise GraphDefError("no nodes: not a GraphDef")
    return nodes


def read_graph_def(path: str | Path) -> list[TFNode]:
    """Nodes of the frozen graph in ``path`` (a binary ``.pb`` GraphDef), in file order."""
    return parse_graph_def(Path(path).read_bytes())
