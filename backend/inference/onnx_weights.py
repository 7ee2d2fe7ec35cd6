"""Read an ONNX file's weights without the onnx package, and check them against the model's
``weights_sha256`` metadata.

The exporter hashes the generator's torch ``state_dict`` (``backend.export.metadata.weights_hash``:
sha256 over every parameter's name, shape, dtype and bytes, sorted by name). In the ONNX graph most
parameters are initializers of the same name; the TorchScript exporter stores the weight of a
``Linear`` that feeds a ``MatMul`` transposed under a generated name (``onnx::MatMul_N``), and the
node's scope (``/scorer/scorer.0/MatMul``) names the module. :func:`state_dict_of` undoes both, so
the same hash can be recomputed from the file alone. The exporter also keeps one copy of equal
initializers (two freshly made LayerNorms): ``Identity`` nodes name the other copies.

Only the protobuf wire format is parsed (numpy and the standard library): the add-on's Python has
no onnx package.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.inference.model_meta import ModelError, ModelInfo

#: ONNX TensorProto data types -> numpy dtypes (the ones a generator holds).
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
          10: np.float16, 11: np.float64}
GENERATED = "onnx::"  # prefix of the names the TorchScript exporter gives to initializers it made


@dataclass
class Node:
    name: str = ""
    op_type: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, i
        shift += 7


def fields_of(buf: memoryview):
    """Yield (field number, wire type, value) of one protobuf message: ints for varints, memoryviews
    for length-delimited fields and for fixed 32/64-bit fields."""
    i, end = 0, len(buf)
    while i < end:
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > end:
            raise ValueError("truncated protobuf message")
        yield num, wire, value


def _ints(wire: int, value) -> list[int]:
    """A repeated int64 field entry: one varint, or a packed run of them."""
    if wire == 0:
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def _tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    """(name, array) of a TensorProto."""
    name, dims, dtype, raw = "", [], None, None
    typed: dict[int, list] = {}
    for num, wire, value in fields_of(buf):
        if num == 1:
            dims += _ints(wire, value)
        elif num == 2:
            dtype = value
        elif num == 8:
            name = bytes(value).decode()
        elif num == 9:
            raw = bytes(value)
        elif num == 14 and value == 1:
            raise ValueError(f"initializer {name or '?'} is stored outside the file")
        elif num in (4, 5, 7, 10):
            typed.setdefault(num, []).append((wire, value))
    if dtype not in DTYPES:
        raise ValueError(f"initializer {name}: unsupported data type {dtype}")
    np_type = np.dtype(DTYPES[dtype])
    if raw is not None:
        arr = np.frombuffer(raw, dtype=np_type.newbyteorder("<"))
    elif 4 in typed:  # float_data, packed or one value per entry
        arr = np.concatenate([np.frombuffer(v, "<f4") for _, v in typed[4]])
    elif 10 in typed:  # double_data
        arr = np.concatenate([np.frombuffer(v, "<f8") for _, v in typed[10]])
    else:  # int32_data (small ints, bool, float16 bits) or int64_data
        vals = [x for w, v in typed.get(5, typed.get(7, [])) for x in _ints(w, v)]
        arr = np.asarray(vals, dtype=np.int64)
        if np_type == np.float16:
            arr = arr.astype(np.uint16).view(np.float16)
    arr = arr.astype(np_type, copy=False)
    return name, arr.reshape(dims)


def _node(buf: memoryview) -> Node:
    node = Node()
    for num, _, value in fields_of(buf):
        if num == 1:
            node.inputs.append(bytes(value).decode())
        elif num == 2:
            node.outputs.append(bytes(value).decode())
        elif num == 3:
            node.name = bytes(value).decode()
        elif num == 4:
            node.op_type = bytes(value).decode()
    return node


def read_graph(data: bytes) -> tuple[dict[str, np.ndarray], list[Node]]:
    """(initializers by name, nodes) of the main graph of a serialised ONNX ModelProto."""
    inits: dict[str, np.ndarray] = {}
    nodes: list[Node] = []
    for num, wire, graph in fields_of(memoryview(data)):
        if num != 7 or wire != 2:  # ModelProto.graph
            continue
        for gnum, gwire, value in fields_of(graph):
            if gwire != 2:
                continue
            if gnum == 5:  # GraphProto.initializer
                name, arr = _tensor(value)
                inits[name] = arr
            elif gnum == 1:  # GraphProto.node
                nodes.append(_node(value))
    return inits, nodes


def module_path(node_name: str) -> str:
    """The torch module of a TorchScript node name: ``/members.0/scorer/scorer.0/MatMul`` ->
    ``members.0.scorer.0`` (a container's child is named ``parent.index`` in the scope)."""
    parts: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    return ".".join(parts)


def state_dict_of(inits: dict[str, np.ndarray], nodes: list[Node]) -> dict[str, np.ndarray]:
    """The torch state_dict the graph was exported from: named initializers as they are, generated
    ``MatMul`` weights transposed back under ``<module>.weight``, and the parameters that the exporter
    merged into an equal one (it keeps one copy of equal initializers and names the others as the
    outputs of ``Identity`` nodes) under their own names. Other generated initializers are constants
    of the graph, not parameters, and are left out."""
    out = {k: v for k, v in inits.items() if not k.startswith(GENERATED)}
    for node in nodes:
        if node.op_type == "MatMul" and len(node.inputs) == 2 and node.inputs[1].startswith(GENERATED) and node.name:
            arr = inits.get(node.inputs[1])
            if arr is not None and arr.ndim == 2:
                out[f"{module_path(node.name)}.weight"] = np.ascontiguousarray(arr.T)
    copies = {n.outputs[0]: n.inputs[0] for n in nodes
              if n.op_type == "Identity" and len(n.inputs) == 1 and len(n.outputs) == 1}
    for name, source in copies.items():
        for _ in range(len(copies)):  # follow a chain of copies to an initializer
            if source in inits or source not in copies:
                break
            source = copies[source]
        if source in inits and not name.startswith(GENERATED) and name not in out:
            out[name] = inits[source]
    return out


def weights_hash(state: dict[str, np.ndarray]) -> str:
    """The exporter's hash (``backend.export.metadata.weights_hash``) of numpy arrays."""
    h = hashlib.sha256()
    for name in sorted(state):
        arr = np.ascontiguousarray(state[name])
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(str(arr.dtype).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def verify_weights(path: str | Path, info: ModelInfo, data: bytes | None = None) -> None:
    """ModelError unless the weights in the model file (``data``, else read from ``path``) hash to
    ``info.graph_weights_hash`` when the model has one, else ``info.weights_hash``. A quantised model
    is not checked: quantisation changed its weights on purpose, the hash names its fp32 source."""
    if info.quantization != "none":
        return
    expected = info.graph_weights_hash or info.weights_hash
    if not expected:
        raise ModelError(f"{path}: the model carries no weights_sha256 to verify its weights against; re-export it")
    try:
        digest = graph_hash(Path(path).read_bytes() if data is None else data)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the model's weights to verify them ({exc})") from None
    if digest != expected:
        raise ModelError(f"{path}: the weights do not match the weights_sha256 in its metadata: the file is "
                         f"corrupt or was altered; reinstall or re-export the model")


def graph_hash(data: bytes) -> str:
    """:func:`weights_hash` of the state_dict that a serialised ONNX model holds."""
    inits, nodes = read_graph(data)
    return weights_hash(state_dict_of(inits, nodes))
