"""Fuzz: model files checked in Python before Caffe reads them (frcnn.caffe_files,
frcnn.model_files, frcnn.deploy.manifest).

Contract (their docstrings): ``read_caffemodel`` and ``read_prototxt`` raise
FileNotFoundError or ValueError naming the file; a caffemodel gives float32 arrays of their
blobs' shapes; ``check_weights_fit`` returns the number of layers that load or raises
ValueError naming the file and the layer; ``net_inputs`` / ``test_phase_layers`` of any
parsed net raise ValueError only; ``load_manifest`` raises ExportFolderError (a
ValueError).  Caffe would abort the process on what these refuse.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from caffe.proto import caffe_pb2
from frcnn import caffe_files
from frcnn.deploy.manifest import ExportFolderError, load_manifest, sha256_of
from frcnn.model_files import check_weights_fit
from tests.fuzz._fuzz import (FUZZ, count, json_values, mutated_bytes, mutated_text,
                              mutated_tree, outcome)

ROOT = Path(__file__).resolve().parents[2]
PROTOTXTS = sorted(str(p) for p in (ROOT / "prototxts").rglob("*.prototxt"))


@st.composite
def caffemodels(draw) -> caffe_pb2.NetParameter:
    """A small NetParameter with weights: new-style shapes, legacy 4-D shapes, double_data,
    layers without blobs and V1 layers."""
    net = caffe_pb2.NetParameter()
    net.name = "fuzz"
    for i in range(draw(st.integers(1, 4))):
        layer = net.layer.add() if draw(st.integers(0, 4)) else net.layers.add()
        layer.name = f"layer{i}"
        if isinstance(layer, caffe_pb2.LayerParameter):
            layer.type = "Convolution"
        for _ in range(draw(st.integers(0, 2))):
            blob = layer.blobs.add()
            shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
            n = math.prod(shape)
            values = draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=n, max_size=n))
            if draw(st.booleans()) and len(shape) == 4:
                blob.num, blob.channels, blob.height, blob.width = shape
            else:
                blob.shape.dim.extend(shape)
            (blob.double_data if draw(st.integers(0, 3)) == 0 else blob.data).extend(values)
    return net


def _write(tmp: str, name: str, raw: bytes) -> Path:
    path = Path(tmp) / name
    path.write_bytes(raw)
    return path


def read_model(raw: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, "model.caffemodel", raw)
        result = outcome(caffe_files.read_caffemodel, (ValueError, FileNotFoundError), path)
    if isinstance(result, BaseException):
        assert str(path) in str(result), result
    else:
        assert isinstance(result, dict)
        for name, blobs in result.items():
            assert isinstance(name, str) and name
            for b in blobs:
                assert isinstance(b, np.ndarray) and b.dtype == np.float32, (name, b)
                assert all(d >= 0 for d in b.shape)
    return result


@FUZZ
@given(net=caffemodels(), how=st.sampled_from(["valid", "bytes", "bytes", "fields"]),
       data=st.data())
def test_caffemodels(net, how, data):
    count()
    if how == "fields":  # a blob's shape or value count made inconsistent
        layers = list(net.layer) + list(net.layers)
        blobs = [b for layer in layers for b in layer.blobs]
        for _ in range(data.draw(st.integers(1, 3)) if blobs else 0):
            blob = data.draw(st.sampled_from(blobs))
            op = data.draw(st.sampled_from(["dim", "legacy", "values", "name"]))
            if op == "dim":
                blob.shape.dim.append(data.draw(st.sampled_from(
                    [0, -1, -4, 2 ** 31, 2 ** 40, 2 ** 62, -(2 ** 63)])))
            elif op == "legacy":
                blob.ClearField("shape")
                blob.num = data.draw(st.integers(-(2 ** 31), 2 ** 31 - 1))
                blob.channels = data.draw(st.sampled_from([-1, 0, 1, 2 ** 16]))
            elif op == "values":
                blob.data.append(1.0)
            else:
                data.draw(st.sampled_from(layers)).name = ""
    raw = net.SerializeToString()
    if how == "bytes":
        raw = data.draw(mutated_bytes(raw))
    result = read_model(raw)
    if how == "valid":
        assert not isinstance(result, BaseException), result


def _fake_net(weights: dict, draw) -> SimpleNamespace:
    """A stand-in for caffe.Net: ``params`` of some of the model's layers, shapes kept or
    changed."""
    params = {}
    for name, blobs in weights.items():
        if draw(st.integers(0, 3)) == 0:
            continue
        shapes = [b.shape for b in blobs]
        if draw(st.integers(0, 3)) == 0:
            shapes = [tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
                      for _ in range(draw(st.integers(0, 3)))]
        params[name] = [SimpleNamespace(data=np.zeros(s, np.float32)) for s in shapes]
    if draw(st.booleans()):
        params["other"] = [SimpleNamespace(data=np.zeros((2,), np.float32))]
    return SimpleNamespace(params=params)


@FUZZ
@given(net=caffemodels(), mutate=st.booleans(), data=st.data())
def test_check_weights_fit(net, mutate, data):
    count()
    raw = net.SerializeToString()
    if mutate:
        raw = data.draw(mutated_bytes(raw))
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, "model.caffemodel", raw)
        weights = outcome(caffe_files.read_caffemodel, (ValueError, FileNotFoundError), path)
        if isinstance(weights, BaseException):
            return
        fake = _fake_net(weights, data.draw)
        result = outcome(check_weights_fit, (ValueError,), fake, path)
    if isinstance(result, BaseException):
        assert str(path) in str(result), result
    else:
        assert type(result) is int and 0 <= result <= len(fake.params)
        assert result > 0 or not weights


@FUZZ
@given(source=st.sampled_from(PROTOTXTS), how=st.sampled_from(["text", "bytes"]),
       data=st.data())
def test_prototxts(source, how, data):
    count()
    text = Path(source).read_text()
    start = data.draw(st.integers(0, max(0, len(text) - 3000)))
    text = text[start:start + 3000]  # a window: mutations land all over the file
    raw = (data.draw(mutated_text(text)).encode("utf-8", "surrogatepass") if how == "text"
           else data.draw(mutated_bytes(text.encode())))
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, "net.prototxt", raw)
        net = outcome(caffe_files.read_prototxt, (ValueError, FileNotFoundError), path)
    if isinstance(net, BaseException):
        assert str(path) in str(net), net
        return
    assert isinstance(net, caffe_pb2.NetParameter)
    for fn in (caffe_files.net_inputs, caffe_files.test_phase_layers):
        outcome(fn, (ValueError,), net)


@st.composite
def export_folders(draw) -> dict:
    files = {"backbone.onnx": draw(st.binary(max_size=64)),
             "head.onnx": draw(st.binary(max_size=64))}
    doc = {"format": "frcnn-export", "version": 1,
           "classes": ["__background__", "a", "b"],
           "onnx": {"backbone": {"file": "backbone.onnx", "inputs": ["data"]},
                    "head": {"file": "head.onnx", "inputs": ["rois"]}},
           "files": {}}
    return {"doc": doc, "files": files}


@FUZZ
@given(folder=export_folders(), how=st.sampled_from(["valid", "tree", "text", "file"]),
       data=st.data())
def test_export_manifests(folder, how, data):
    count()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, raw in folder["files"].items():
            (root / name).write_bytes(raw)
        doc = folder["doc"]
        doc["files"] = {n: sha256_of(root / n) for n in folder["files"]}
        if how == "tree":
            doc = data.draw(mutated_tree(doc))
        text = json.dumps(doc)
        if how == "text":
            text = data.draw(mutated_text(text))
        elif how == "file":
            name = data.draw(st.sampled_from(sorted(folder["files"])))
            (root / name).write_bytes(data.draw(mutated_bytes(folder["files"][name] + b"x")))
        (root / "manifest.json").write_bytes(text.encode("utf-8", "surrogatepass"))
        result = outcome(load_manifest, (ExportFolderError,), root)
        if how == "valid":
            assert isinstance(result, dict), result
        if isinstance(result, dict) and how != "tree":
            for name, digest in result["files"].items():
                assert sha256_of(root / name) == digest


@FUZZ
@given(value=json_values())
def test_manifests_of_any_json(value):
    count()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "manifest.json").write_text(json.dumps(value))
        outcome(load_manifest, (ExportFolderError,), tmp)


_SIDECAR = {"net": "test.prototxt", "classes": ["__background__", "a"], "model_bytes": 3,
            "model_sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}


@FUZZ
@given(how=st.sampled_from(["tree", "text", "bytes"]), data=st.data())
def test_sidecars(how, data):
    count()
    from frcnn.model_files import check_model_record
    from frcnn.caffe_files import read_sidecar

    doc = _SIDECAR
    if how == "tree":
        doc = data.draw(mutated_tree(doc))
    text = json.dumps(doc)
    raw = text.encode()
    if how == "text":
        raw = data.draw(mutated_text(text)).encode("utf-8", "surrogatepass")
    elif how == "bytes":
        raw = data.draw(mutated_bytes(raw))
    with tempfile.TemporaryDirectory() as tmp:
        model = _write(tmp, "m.caffemodel", b"abc")
        _write(tmp, "m.caffemodel.frcnn.json", raw)
        meta = outcome(read_sidecar, (ValueError,), model)
        if isinstance(meta, BaseException):
            assert str(model) in str(meta), meta
            return
        assert meta is None or isinstance(meta, dict), meta
        outcome(check_model_record, (ValueError,), model, meta)


@FUZZ
@given(how=st.sampled_from(["tree", "text", "deep"]), data=st.data())
def test_train_states(how, data):
    count()
    from frcnn.train_state import FORMAT, read_train_state

    doc = {"format": FORMAT, "iteration": 5, "layers": {"data": {"epoch": 1}}}
    text = json.dumps(data.draw(mutated_tree(doc)) if how == "tree" else doc)
    if how == "text":
        text = data.draw(mutated_text(text))
    elif how == "deep":
        text = text[:-1] + ', "x": ' + "[" * data.draw(st.integers(1, 100000)) + "}"
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, "x.frcnn-state.json", text.encode("utf-8", "surrogatepass"))
        result = outcome(read_train_state, (ValueError,), path)
    if isinstance(result, BaseException):
        assert str(path) in str(result), result
    else:
        assert type(result["iteration"]) is int and isinstance(result["layers"], dict)
