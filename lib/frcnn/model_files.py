"""Model files checked in Python before Caffe reads them, and written so none is half-written.

Caffe aborts the whole process (a failed CHECK, SIGABRT) when a caffemodel is truncated or
its blobs do not fit the net; ``load_weights`` reads the file with the protobuf messages
first and raises ``ValueError`` naming the file and the mismatch, then copies the weights
in (Caffe's own rule: by layer name; layers missing on either side are skipped).

``save_net_atomically`` writes a caffemodel under a temporary name in the same folder and
renames it into place, so a kill during the write leaves the previous file intact.

``check_model_record`` compares a model with the size and sha256 its training sidecar
recorded (``frcnn.caffe_files.write_sidecar``), so a truncated or edited file is an error naming it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from frcnn.fileio import atomic_path, file_sha256


def check_weights_fit(net: Any, model: str | os.PathLike) -> int:
    """Raise ValueError unless every layer of ``model`` that ``net`` (a caffe.Net) also has
    holds as many blobs of the same shapes; return the number of layers that will load."""
    from frcnn.caffe_files import read_caffemodel

    weights = read_caffemodel(model)
    matched = 0
    for name, blobs in weights.items():
        if name not in net.params:
            continue
        params = net.params[name]
        if len(blobs) != len(params):
            raise ValueError(f"{model}: layer '{name}' has {len(blobs)} weight blob(s) but the "
                             f"net's layer has {len(params)}")
        for i, (blob, param) in enumerate(zip(blobs, params)):
            want = tuple(param.data.shape)
            if tuple(blob.shape) != want and blob.size != param.data.size:
                raise ValueError(f"{model}: layer '{name}' blob {i} is {tuple(blob.shape)} but "
                                 f"the net needs {want} (a model of another net or class "
                                 f"count?)")
        matched += 1
    if weights and not matched:
        raise ValueError(f"{model}: none of its layers ({', '.join(sorted(weights)[:5])}...) "
                         f"is in the net: a model of another net?")
    return matched


def load_weights(net: Any, model: str | os.PathLike) -> None:
    """``net.copy_from(model)`` after ``check_weights_fit`` (see the module docstring)."""
    check_weights_fit(net, model)
    net.copy_from(str(model))


def save_net_atomically(net: Any, path: str | os.PathLike) -> Path:
    """``net.save(path)`` through a temporary file in the same folder, renamed into place."""
    with atomic_path(path) as tmp:
        net.save(str(tmp))
    return Path(path)


def check_model_record(model: str | os.PathLike, meta: dict | None) -> None:
    """Raise ValueError naming ``model`` when its size or sha256 differs from what its sidecar
    recorded when training wrote it (``model_bytes``, ``model_sha256``; either may be absent):
    a truncated, half-copied, replaced or edited file.  No sidecar, no check."""
    if not meta:
        return
    size, digest = meta.get("model_bytes"), meta.get("model_sha256")
    undo = (f"(if you changed the model on purpose, delete model_bytes and model_sha256 from "
            f"{model}.frcnn.json)")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise ValueError(f"{model}.frcnn.json: model_bytes must be an integer, got {size!r}")
    if digest is not None and not isinstance(digest, str):
        raise ValueError(f"{model}.frcnn.json: model_sha256 must be a hex string, got "
                         f"{digest!r}")
    if size is not None:
        actual = Path(model).stat().st_size
        if actual != size:
            raise ValueError(f"{model} is {actual} bytes but its sidecar says {size}: a "
                             f"half-written or replaced model {undo}")
    if digest is not None:
        actual = file_sha256(model)
        if actual != digest:
            raise ValueError(f"{model}: its sha256 is {actual[:16]}... but its sidecar says "
                             f"{str(digest)[:16]}...: the file changed after training wrote "
                             f"it (damaged or edited) {undo}")
