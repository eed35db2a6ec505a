"""Caffe files read without building a net: prototxts, caffemodels, TEST-phase layers, inputs.

Everything here works on ``caffe_pb2`` messages only, so a net whose layers this Caffe
build lacks (or whose weights do not fit) can still be inspected and converted.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import message, text_format

#: The NetState Caffe uses for a TEST net built from a prototxt (``caffe.Net(p, caffe.TEST)``).
TEST = caffe_pb2.TEST


def read_prototxt(path: str | Path) -> caffe_pb2.NetParameter:
    """The NetParameter of a text-format prototxt.

    Raises FileNotFoundError when ``path`` does not exist and ValueError, naming the file
    and the line of the error, when it is not a valid NetParameter text.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such prototxt: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text prototxt ({e})") from None
    net = caffe_pb2.NetParameter()
    try:
        text_format.Merge(text, net)
    except text_format.ParseError as e:
        raise ValueError(f"{path}: cannot parse the prototxt: {e}") from None
    return net


def _blob_shape(blob: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """A BlobProto's shape: ``shape.dim``, else the legacy (num, channels, height, width)."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (int(blob.num), int(blob.channels), int(blob.height), int(blob.width))
    n = len(blob.data) or len(blob.double_data)
    return (n,)


def blob_array(blob: caffe_pb2.BlobProto, where: str = "<blob>") -> np.ndarray:
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
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: not a caffemodel (the file is empty)")
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(data)
    except (message.DecodeError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: not a caffemodel (truncated?): {e}") from None
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


def _meets_rule(rule: caffe_pb2.NetStateRule, phase: int, level: int,
                stages: frozenset[str]) -> bool:
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


def test_phase_layers(net: caffe_pb2.NetParameter, level: int = 0,
                      stages: Iterable[str] = ()) -> list[caffe_pb2.LayerParameter]:
    """The layers Caffe instantiates for ``net`` in the TEST phase, in order.

    Caffe's ``Net::FilterNet``: a layer with include rules is kept only if one of them
    matches the state; a layer whose exclude rule matches is dropped.  Raises ValueError
    for a net in the V1 ``layers`` format and for a layer with both kinds of rule.
    """
    if len(net.layers):
        raise ValueError(f"net '{net.name}' uses the V1 'layers' format; upgrade it first "
                         f"(Caffe's upgrade_net_proto_text)")
    state = frozenset(stages)
    kept = []
    for layer in net.layer:
        if len(layer.include) and len(layer.exclude):
            raise ValueError(f"layer '{layer.name}' has both include and exclude rules; "
                             f"Caffe allows one kind only")
        if len(layer.include):
            keep = any(_meets_rule(r, TEST, level, state) for r in layer.include)
        else:
            keep = not any(_meets_rule(r, TEST, level, state) for r in layer.exclude)
        if keep:
            kept.append(layer)
    return kept


def net_inputs(net: caffe_pb2.NetParameter) -> dict[str, tuple[int, ...]]:
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
