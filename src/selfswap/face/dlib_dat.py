"""Reader for dlib's binary serialization of a DNN (``.dat`` files written by ``serialize(net)``).

Only the pieces needed by dlib's face-recognition ResNet are supported; anything else raises
:class:`DatFormatError` naming the unknown layer, so a wrong file fails loudly.

Format (all little-endian; see dlib/serialize.h and dlib/dnn/*.h):

* **int**: one header byte ``h`` (low nibble = number of value bytes, bit 7 = negative), then
  that many bytes of the magnitude, little-endian. ``0`` is written ``01 00``.
* **bool**: one ASCII byte, ``'1'`` or ``'0'``.
* **float/double**: two ints, ``mantissa`` and ``exponent``; value = ``mantissa * 2**exponent``
  (exponents 32000/32001/32002 mean +inf/-inf/nan).
* **string**: int length, then the raw bytes.
* **tensor**: int version (2), ints ``n, k, nr, nc``, then ``n*k*nr*nc`` raw float32.
* **alias_tensor** (a view into a layer's ``params``): int version (1), ints ``n, k, nr, nc``.

A network is written recursively, outermost layer first but *subnetwork before details*::

    add_loss_layer: int version, loss details (string tag + fields), subnetwork
    add_layer:      int version (2), subnetwork, layer details, 3 bools, 3 tensors
                    (x_grad, cached_output, params_grad; empty in saved models)
    add_layer over the input layer: int version (3), input layer details, layer details,
                    3 bools, 3 tensors, int sample_expansion_factor
    add_tag_layer / add_skip_layer: int version (1), subnetwork   (no details)

So the file is: the loss, then a run of version ints (one per wrapper, outermost first; tags
and skips are the ``1``\\ s), then the input layer, then every computational layer's details
from the input outwards. Layer details start with a string tag such as ``"con_4"``,
``"affine_"``, ``"relu_"``, ``"max_pool_2"``, ``"avg_pool_2"``, ``"add_prev_"``, ``"fc_2"``.
Weights live in each layer's ``params`` tensor: ``con`` = filters ``(N, K, R, C)`` then biases
``(N,)``; ``affine`` = gamma ``(K,)`` then beta ``(K,)``; ``fc`` = weights
``(num_inputs, num_outputs)`` then biases (absent when ``bias_mode`` is 1, "no bias").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DatFormatError", "DatLayer", "DatNetwork", "read_dlib_dnn"]


class DatFormatError(ValueError):
    """The file is not a dlib DNN serialization this reader understands."""


@dataclass
class DatLayer:
    """One computational layer: its dlib tag, scalar attributes and weight arrays."""

    kind: str
    attrs: dict[str, float | int | bool] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DatNetwork:
    """A parsed network: loss, input layer and computational layers (input side first)."""

    loss: DatLayer
    input: DatLayer
    layers: list[DatLayer]
    wrapper_versions: list[int]


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise DatFormatError(f"unexpected end of file at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def int_(self) -> int:
        h = self._take(1)[0]
        size = h & 0x0F
        if size > 8 or (h & 0x70):
            raise DatFormatError(f"bad integer header 0x{h:02x} at byte {self.pos - 1}")
        v = int.from_bytes(self._take(size), "little")
        return -v if h & 0x80 else v

    def bool_(self) -> bool:
        c = bytes(self._take(1))
        if c not in (b"0", b"1"):
            raise DatFormatError(f"bad bool {c!r} at byte {self.pos - 1}")
        return c == b"1"

    def float_(self) -> float:
        mantissa, exponent = self.int_(), self.int_()
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        if exponent in special:
            return special[exponent]
        return math.ldexp(mantissa, exponent)

    def str_(self) -> str:
        n = self.int_()
        return bytes(self._take(n)).decode("latin-1")

    def peek_str(self) -> str | None:
        """The string at the current position if one plausibly starts here, else None."""
        pos = self.pos
        try:
            s = self.str_()
        except DatFormatError:
            return None
        finally:
            self.pos = pos
        return s if s and s.isascii() and s.isprintable() else None

    def tensor(self) -> np.ndarray:
        version = self.int_()
        if version != 2:
            raise DatFormatError(f"unsupported tensor version {version} at byte {self.pos}")
        shape = tuple(self.int_() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.int_()
        if version != 1:
            raise DatFormatError(f"unsupported alias_tensor version {version}")
        return tuple(self.int_() for _ in range(4))  # type: ignore[return-value]


def _split_params(params: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    flat = params.reshape(-1)
    out, offset = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(flat[offset : offset + n].reshape(shape).copy())
        offset += n
    if offset != flat.size:
        raise DatFormatError(f"params hold {flat.size} values, layer shapes need {offset}")
    return out


def _read_layer(s: _Stream, kind: str) -> DatLayer:
    layer = DatLayer(kind)
    a = layer.attrs
    if kind in ("con_4", "con_5"):
        params = s.tensor()
        for key in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
            a[key] = s.int_()
        fshape, bshape = s.alias(), s.alias()
        for key in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            a[key] = s.float_()
        a["use_bias"] = s.bool_() if kind == "con_5" else True
        bsize = int(np.prod(bshape))
        w, b = _split_params(params, [fshape, (bsize,)])
        layer.arrays["weight"] = w
        if a["use_bias"] and bsize:
            layer.arrays["bias"] = b
    elif kind == "affine_":
        params = s.tensor()
        gshape, bshape = s.alias(), s.alias()
        a["mode"] = s.int_()  # 0 = per channel (conv), 1 = per element (fc)
        gamma, beta = _split_params(params, [gshape, bshape])
        layer.arrays["gamma"], layer.arrays["beta"] = gamma.reshape(-1), beta.reshape(-1)
    elif kind == "fc_2":
        a["num_outputs"], a["num_inputs"] = s.int_(), s.int_()
        params = s.tensor()
        wshape, bshape = s.alias(), s.alias()
        a["bias_mode"] = s.int_()  # 0 = has bias, 1 = no bias
        for key in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            a[key] = s.float_()
        w, b = _split_params(params, [wshape, bshape])
        layer.arrays["weight"] = w.reshape(a["num_inputs"], a["num_outputs"])
        if b.size:
            layer.arrays["bias"] = b.reshape(-1)
    elif kind in ("max_pool_2", "avg_pool_2"):
        for key in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
            a[key] = s.int_()
    elif kind in ("relu_", "add_prev_"):
        pass
    else:
        raise DatFormatError(f"unsupported dlib layer {kind!r} at byte {s.pos}")
    return layer


def _read_input(s: _Stream, kind: str) -> DatLayer:
    layer = DatLayer(kind)
    if kind in ("input_rgb_image", "input_rgb_image_sized"):
        for key in ("avg_red", "avg_green", "avg_blue"):
            layer.attrs[key] = s.float_()
        if kind == "input_rgb_image_sized":
            layer.attrs["nr"], layer.attrs["nc"] = s.int_(), s.int_()
    else:
        raise DatFormatError(f"unsupported dlib input layer {kind!r}")
    return layer


def _read_loss(s: _Stream, kind: str) -> DatLayer:
    layer = DatLayer(kind)
    if kind == "loss_metric_2":
        layer.attrs["margin"], layer.attrs["distance_threshold"] = s.float_(), s.float_()
    elif kind != "loss_metric_":
        raise DatFormatError(f"unsupported dlib loss layer {kind!r}")
    return layer


def read_dlib_dnn(path: str | Path) -> DatNetwork:
    """Parse a dlib DNN ``.dat`` file into its loss, input and computational layers.

    Layers come back in forward order (input side first). Tag/skip wrappers carry no data and
    are not listed; their positions are implied by the architecture.
    """
    s = _Stream(Path(path).read_bytes())
    if s.int_() != 1:
        raise DatFormatError("not a dlib add_loss_layer (version != 1)")
    loss = _read_loss(s, s.str_())
    versions: list[int] = []
    while True:
        versions.append(s.int_())
        name = s.peek_str()
        if name is not None and name.startswith("input"):
            break
        if len(versions) > 100_000:
            raise DatFormatError("no input layer found")
    inp = _read_input(s, s.str_())
    layers: list[DatLayer] = []
    while not s.at_end():
        layers.append(_read_layer(s, s.str_()))
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, ...disabled
            s.bool_()
        for _ in range(3):  # x_grad, cached_output, params_grad / grad_final
            s.tensor()
        if len(layers) == 1 and versions[-1] >= 3:
            s.int_()  # _sample_expansion_factor of the add_layer over the input layer
    n_wrapped = sum(v != 1 for v in versions)
    if n_wrapped != len(layers):
        raise DatFormatError(f"{len(layers)} layers read but {n_wrapped} add_layer wrappers")
    return DatNetwork(loss=loss, input=inp, layers=layers, wrapper_versions=versions)
