"""Caffe's files, read and written in one place: text prototxts (nets and solvers),
caffemodels, solver states, and a model's sidecar (``<model>.frcnn.json``).

Everything else in the package calls these; nothing builds a net here.  The readers work on
``caffe_pb2`` messages only, so a net whose layers this Caffe build lacks (or whose weights
do not fit) can still be inspected and converted.  pycaffe's ``caffe_pb2`` is imported when
a Caffe file is read, not at import: the sidecar functions work without pycaffe.

Errors: a missing file is FileNotFoundError naming it; a file that does not parse is
ValueError naming the file (and, for text, the line of the error).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from frcnn.fileio import file_sha256, write_atomic

SIDECAR_SUFFIX = ".frcnn.json"


def _pb2() -> Any:
    from caffe.proto import caffe_pb2

    return caffe_pb2


# ------------------------------------------------------------------------ text prototxts

def parse_text(text: str, message: Any, where: str = "<text>", what: str = "prototxt") -> Any:
    """``text`` merged into ``message`` (a caffe_pb2 message, returned); ValueError naming
    ``where`` and the line of the error when it does not parse."""
    from google.protobuf import text_format

    try:
        text_format.Merge(text, message)
    except text_format.ParseError as e:
        raise ValueError(f"{where}: cannot parse the {what}: {e}") from None
    return message


def read_text_proto(path: str | os.PathLike, message: Any, what: str = "prototxt") -> Any:
    """A text-format file merged into ``message`` (returned)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text {what} ({e})") from None
    return parse_text(text, message, str(path), what)


def read_prototxt(path: str | os.PathLike) -> Any:
    """The NetParameter of a text-format net prototxt."""
    return read_text_proto(path, _pb2().NetParameter(), "prototxt")


def read_solver(path: str | os.PathLike) -> Any:
    """The SolverParameter of a solver prototxt."""
    return read_text_proto(path, _pb2().SolverParameter(), "solver")


def proto_text(message: Any, indent: int = 0) -> str:
    """A message in Caffe's text format (nested fields ``indent`` spaces in, and deeper)."""
    from google.protobuf import text_format

    return text_format.MessageToString(message, indent=indent)


def write_text_proto(path: str | os.PathLike, message: Any) -> Path:
    """Write ``message`` as text to ``path``, atomically; returns the path."""
    write_atomic(Path(path), proto_text(message).encode())
    return Path(path)


def write_solver(template: str | os.PathLike, dest: str | os.PathLike,
                 overrides: dict[str, Any]) -> str:
    """Copy a solver prototxt, replacing or adding top-level fields (lists for repeated
    ones); returns ``dest``."""
    solver = read_solver(template)
    for key, value in overrides.items():
        field_desc = solver.DESCRIPTOR.fields_by_name[key]
        repeated = getattr(field_desc, "is_repeated", None)
        if repeated is None:  # older protobuf
            repeated = field_desc.label == field_desc.LABEL_REPEATED
        if repeated:
            getattr(solver, key)[:] = value if isinstance(value, (list, tuple)) else [value]
        else:
            setattr(solver, key, value)
    write_text_proto(dest, solver)
    return str(dest)


# ------------------------------------------------------------------------ binary files

def read_solver_state(path: str | os.PathLike) -> Any:
    """A .solverstate as a caffe_pb2.SolverState; ValueError when it does not parse."""
    from google.protobuf.message import DecodeError

    path = Path(path)
    state = _pb2().SolverState()
    try:
        state.ParseFromString(path.read_bytes())
    except DecodeError as e:
        raise ValueError(f"{path}: not a Caffe solver state ({e}): a damaged file? "
                         f"Resume from an earlier one in {path.parent}") from None
    return state


def write_binary_proto(path: str | os.PathLike, message: Any) -> Path:
    """Write a message in binary form (a caffemodel, a solver state), atomically."""
    write_atomic(Path(path), message.SerializeToString())
    return Path(path)


def parse_caffemodel(data: bytes, where: str) -> Any:
    """A caffemodel's bytes as a NetParameter; ValueError naming ``where`` when they are
    empty, truncated or not a caffemodel."""
    from google.protobuf import message

    if not data:
        raise ValueError(f"{where}: not a caffemodel (the file is empty)")
    net = _pb2().NetParameter()
    try:
        net.ParseFromString(data)
    except (message.DecodeError, RuntimeError, ValueError) as e:
        raise ValueError(f"{where}: not a caffemodel (truncated?): {e}") from None
    return net


# ------------------------------------------------------------------------ the sidecar

def write_sidecar(model_path: str | os.PathLike, meta: dict) -> None:
    """Write ``<model>.frcnn.json`` (atomically): what the test path must know about the
    model, plus the model file's size and sha256 (``model_bytes``, ``model_sha256``: checked
    by frcnn.model_files.check_model_record before the model is loaded)."""
    path = Path(str(model_path) + SIDECAR_SUFFIX)
    if Path(model_path).is_file():
        meta = {**meta, "model_bytes": Path(model_path).stat().st_size,
                "model_sha256": file_sha256(model_path)}
    write_atomic(path, (json.dumps(meta, indent=2) + "\n").encode())


def read_sidecar(model_path: str | os.PathLike) -> dict | None:
    """The sidecar of a model, or None (e.g. a model from plain ``caffe train``).

    Raises ValueError naming the sidecar when it is not a JSON object (damaged)."""
    path = Path(str(model_path) + SIDECAR_SUFFIX)
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"{path}: the model's sidecar is damaged (not JSON: {e}); restore it "
                         f"or delete it and pass --net") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the model's sidecar is damaged (a JSON {type(meta).__name__}, "
                         f"not an object); restore it or delete it and pass --net")
    return meta


# ------------------------------------------------------------------------ caffemodels

def _blob_shape(blob: Any) -> tuple[int, ...]:
    """A BlobProto's shape: ``shape.dim``, else the legacy (num, channels, height, width)."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (int(blob.num), int(blob.channels), int(blob.height), int(blob.width))
    n = len(blob.data) or len(blob.double_data)
    return (n,)


def blob_array(blob: Any, where: str = "<blob>") -> np.ndarray:
    """A BlobProto's values as a float32 array of its shape (``double_data`` converted).

    Raises ValueError naming ``where`` when the value count does not match the shape.
    """
    shape = _blob_shape(blob)
    if any(d < 0 for d in shape):
        raise ValueError(f"{where}: the blob's shape {shape} has a negative dimension "
                         f"(damaged?)")
    if len(blob.data):
        values = np.array(blob.data, dtype=np.float32)
    else:
        values = np.array(blob.double_data, dtype=np.float64).astype(np.float32)
    expected = math.prod(shape)  # Python ints: no int64 wrap-around to a "matching" 0
    if values.size != expected:
        raise ValueError(f"{where}: the blob has {values.size} values but its shape "
                         f"{shape} needs {expected} (truncated?)")
    return values.reshape(shape)


def read_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> its blobs (float32 arrays of their shapes), for layers that have blobs.

    Reads both the current ``layer`` and the V1 ``layers`` fields.  Raises
    FileNotFoundError when ``path`` does not exist and ValueError naming the file when it
    is empty, truncated or not a caffemodel.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such caffemodel: {path}")
    net = parse_caffemodel(path.read_bytes(), str(path))
    layers = list(net.layer) + list(net.layers)
    if not layers:
        raise ValueError(f"{path}: not a caffemodel (truncated?): it holds no layers")
    weights: dict[str, list[np.ndarray]] = {}
    for layer in layers:
        if not layer.blobs:
            continue
        if not isinstance(layer.name, str):  # protobuf gives bytes for a name not UTF-8
            raise ValueError(f"{path}: not a caffemodel (damaged?): the layer name "
                             f"{layer.name[:40]!r} is not text")
        if not layer.name:
            raise ValueError(f"{path}: not a caffemodel (truncated?): a layer with "
                             f"weights has no name")
        weights[layer.name] = [blob_array(b, f"{path}: layer '{layer.name}' blob {i}")
                               for i, b in enumerate(layer.blobs)]
    return weights


# ------------------------------------------------------------------------ net structure

def _meets_rule(rule: Any, phase: int, level: int, stages: frozenset[str]) -> bool:
    """Caffe's ``Net::StateMeetsRule``: does the state (phase, level, stages) satisfy rule?"""
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def test_phase_layers(net: Any, level: int = 0, stages: Iterable[str] = ()) -> list[Any]:
    """The layers Caffe instantiates for ``net`` in the TEST phase, in order.

    Caffe's ``Net::FilterNet``: a layer with include rules is kept only if one of them
    matches the state; a layer whose exclude rule matches is dropped.  Raises ValueError
    for a net in the V1 ``layers`` format and for a layer with both kinds of rule.
    """
    if len(net.layers):
        raise ValueError(f"net '{net.name}' uses the V1 'layers' format; upgrade it first "
                         f"(Caffe's upgrade_net_proto_text)")
    state = frozenset(stages)
    test = _pb2().TEST  # the NetState of ``caffe.Net(p, caffe.TEST)``
    kept = []
    for layer in net.layer:
        if len(layer.include) and len(layer.exclude):
            raise ValueError(f"layer '{layer.name}' has both include and exclude rules; "
                             f"Caffe allows one kind only")
        if len(layer.include):
            keep = any(_meets_rule(r, test, level, state) for r in layer.include)
        else:
            keep = not any(_meets_rule(r, test, level, state) for r in layer.exclude)
        if keep:
            kept.append(layer)
    return kept


def net_inputs(net: Any) -> dict[str, tuple[int, ...]]:
    """Input blob name -> shape, from ``input:`` with ``input_shape`` / ``input_dim`` and
    from the TEST-phase ``Input`` layers, in declaration order.

    Raises ValueError when the declarations do not give every input a shape.
    """
    inputs: dict[str, tuple[int, ...]] = {}
    names = list(net.input)
    if len(net.input_shape):
        if len(net.input_shape) != len(names):
            raise ValueError(f"net '{net.name}': {len(names)} inputs but "
                             f"{len(net.input_shape)} input_shape entries")
        for name, shape in zip(names, net.input_shape):
            inputs[name] = tuple(int(d) for d in shape.dim)
    elif len(net.input_dim):
        if len(net.input_dim) != 4 * len(names):
            raise ValueError(f"net '{net.name}': {len(names)} inputs need "
                             f"{4 * len(names)} input_dim values, found {len(net.input_dim)}")
        dims = [int(d) for d in net.input_dim]
        for i, name in enumerate(names):
            inputs[name] = tuple(dims[4 * i:4 * i + 4])
    elif names:
        raise ValueError(f"net '{net.name}': inputs {names} have no input_shape or input_dim")
    if len(net.layers):
        return inputs
    for layer in test_phase_layers(net):
        if layer.type != "Input":
            continue
        shapes = list(layer.input_param.shape)
        if len(shapes) not in (1, len(layer.top)):
            raise ValueError(f"Input layer '{layer.name}': {len(layer.top)} tops but "
                             f"{len(shapes)} shapes")
        for i, top in enumerate(layer.top):
            shape = shapes[0] if len(shapes) == 1 else shapes[i]
            inputs[top] = tuple(int(d) for d in shape.dim)
    return inputs
