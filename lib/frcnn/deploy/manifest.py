"""The manifest of an export folder: one JSON file that says everything a runtime needs.

``DIR/manifest.json`` (written by ``frcnn export``)::

    format, version            "frcnn-export", 1
    classes                    names, __background__ first
    anchors                    {"feat_stride", "base_size", "ratios", "scales"}
    test                       {"scale", "max_size", "pixel_means", "rpn_pre_nms_top_n",
                                "rpn_post_nms_top_n", "rpn_nms_thresh", "rpn_min_size",
                                "nms_thresh", "score_thresh", "max_per_image"}
    bbox_normalization_folded  true: bbox_pred gives plain deltas (folded at training or at
                               export); false: multiply by "stds" and add "means" first
    means, stds
    onnx                       {"backbone": {"file", "inputs", "outputs"}, "head": {...},
                                "head_pooled": {...}, "roi_pooling": {pooled_h, pooled_w,
                                spatial_scale}, "feature": blob name, "rpn_prob": ...,
                                "rpn_deltas": ...}
    caffe_deploy               {"prototxt", "caffemodel"} (the native-Proposal Caffe net)
    openvino                   {"file", "weights", "inputs", "outputs", "proposal"}: the whole
                               detector as one OpenVINO IR (frcnn.deploy.openvino_export)
    int8                       {"backbone", "head" (as in onnx), "calibration", "scheme"}: the
                               INT8 graphs (frcnn.deploy.quantize)
    files                      {file name: sha256} of every file above
    source                     the model and net exported, and the parity measured

``load_manifest`` checks the format and every file's hash, so a missing or edited file is
an error naming it, before any runtime reads it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from frcnn.fileio import file_sha256, write_atomic

FORMAT = "frcnn-export"
VERSION = 1
MANIFEST = "manifest.json"


class ExportFolderError(ValueError):
    """An export folder that cannot be used: no manifest, a missing or edited file."""


sha256_of = file_sha256  # the name this module's callers use


def is_export_folder(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` (with "files" hashed from the folder) as DIR/manifest.json."""
    folder = Path(folder)
    doc = {"format": FORMAT, "version": VERSION, **manifest}
    doc["files"] = {name: sha256_of(folder / name) for name in sorted(_files_named(doc))}
    return write_atomic(folder / MANIFEST, (json.dumps(doc, indent=2) + "\n").encode())


def _files_named(doc: dict[str, Any]) -> set[str]:
    names = set()
    onnx = doc.get("onnx") or {}
    for part in ("backbone", "head", "head_pooled"):
        if part in onnx:
            names.add(onnx[part]["file"])
    deploy = doc.get("caffe_deploy") or {}
    names.update(v for k, v in deploy.items() if k in ("prototxt", "caffemodel"))
    openvino = doc.get("openvino") or {}
    names.update(v for k, v in openvino.items() if k in ("file", "weights"))
    int8 = doc.get("int8") or {}
    names.update(int8[part]["file"] for part in ("backbone", "head") if part in int8)
    return names


def load_manifest(folder: str | os.PathLike, check_hashes: bool = True) -> dict[str, Any]:
    """The manifest of an export folder, its files checked (see the module docstring)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ExportFolderError(f"{folder} is not an export folder: no {MANIFEST} (write one "
                                f"with `frcnn export`)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: JSON, UTF-8, 5000 digits
        raise ExportFolderError(f"{path}: not valid JSON ({str(e)[:200]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ExportFolderError(f"{path}: not an frcnn export manifest")
    if doc.get("version") != VERSION:
        raise ExportFolderError(f"{path}: manifest version {doc.get('version')}; this "
                                f"package reads version {VERSION}")
    files = doc.get("files") or {}
    onnx, deploy = doc.get("onnx") or {}, doc.get("caffe_deploy") or {}
    if not (isinstance(files, dict) and isinstance(onnx, dict) and isinstance(deploy, dict)
            and all(isinstance(onnx[p], dict) and isinstance(onnx[p].get("file"), str)
                    for p in ("backbone", "head", "head_pooled") if p in onnx)
            and all(isinstance(v, str) for k, v in deploy.items()
                    if k in ("prototxt", "caffemodel"))):
        raise ExportFolderError(f"{path}: malformed manifest: 'files', 'onnx' (each part with "
                                f"a 'file' name) and 'caffe_deploy' must be objects")
    for name in sorted(_files_named(doc) | set(files)):  # named by a part, or hashed
        target = folder / name
        try:
            found = target.is_file()
        except OSError:  # a name the OS refuses (too long, ...)
            found = False
        if not found:
            raise ExportFolderError(f"{folder}: {name} is missing (the manifest lists it)")
        if check_hashes and sha256_of(target) != files.get(name):
            raise ExportFolderError(f"{target}: its sha256 differs from the manifest's: the "
                                    f"file was edited or damaged; export again")
    doc["folder"] = str(folder.resolve())
    return doc
