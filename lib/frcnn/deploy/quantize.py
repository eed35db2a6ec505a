"""INT8 graphs of an export: onnxruntime's static quantization, calibrated on real images.

``quantize_export`` writes ``backbone_int8.onnx`` and ``head_int8.onnx`` beside the float
graphs (QDQ format: uint8 activations, int8 weights per output channel) and returns the
manifest's "int8" section.  Calibration runs the float export on N images of a dataset:
the backbone sees their input blobs, the head the features and this package's proposals
for them, so each graph is calibrated on what it will see.  The proposal step stays float
(it is this package's numpy code), and so does the head's RoI pooling (MaxRoiPool has no
integer kernel: the quantizer keeps it in float between dequantize and quantize).

On CPUs without VNNI (AVX2 only) uint8 x int8 products can saturate in onnxruntime's
kernels; ``reduce_range`` (7-bit weights) avoids that at some accuracy.  Whether INT8 is
faster depends on the CPU: VNNI (AVX-512 VNNI, AVX-VNNI) and ARM's dot-product
instructions are where it pays; docs/deploy.md has what was measured here.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

PARTS = ("backbone", "head")


def calibration_feeds(folder: str | os.PathLike, manifest: dict[str, Any],
                      images: Sequence[np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """{part: [its inputs for each image]}: the backbone's blobs, the head's (feature, rois)
    from the float export with this package's proposals."""
    from frcnn.deploy.onnx_backend import OnnxDetector
    from frcnn.inference import prepare_input

    det = OnnxDetector(folder, manifest=manifest, portable_head=True)
    onnx = manifest["onnx"]
    data = onnx["backbone"]["inputs"][0]
    feature_name, rois_name = onnx["head"]["inputs"]
    feeds: dict[str, list[dict[str, np.ndarray]]] = {"backbone": [], "head": []}
    for im in images:
        blob, im_info, _ = prepare_input(im, det.settings)
        feature, probs, deltas = det.backbone(blob)
        rois = det.proposals(probs, deltas, im_info)
        feeds["backbone"].append({data: blob})
        if len(rois):
            feeds["head"].append({feature_name: feature, rois_name: rois})
    return feeds


class _Reader:
    """onnxruntime's CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = feeds
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def quantize_export(folder: str | os.PathLike, manifest: dict[str, Any],
                    images: Sequence[np.ndarray], calibration: str,
                    reduce_range: bool | None = None, log=print) -> dict[str, Any]:
    """Write the INT8 graphs into ``folder``; return the manifest's "int8" section.

    ``images``: BGR uint8 images to calibrate on (at least one); ``calibration``: what they
    are, recorded in the manifest; ``reduce_range``: None = on where the CPU lacks VNNI.
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    if not len(images):
        raise ValueError("the calibration set is empty: give a dataset with images "
                         "(--calibration DATASET, --calibration-images N >= 1)")
    folder = Path(folder)
    feeds = calibration_feeds(folder, manifest, images)
    if not feeds["head"]:
        raise ValueError("no calibration image gave a proposal: the head cannot be "
                         "calibrated (use other images, or more)")
    if reduce_range is None:  # no VNNI: 7-bit weights
        from frcnn.bench.report import cpu_flags

        reduce_range = not cpu_flags(("avx512_vnni", "avx_vnni"))
    reader_type = type("Reader", (_Reader, CalibrationDataReader), {})
    section: dict[str, Any] = {}
    for part in PARTS:
        src = manifest["onnx"][part]
        dest = Path(src["file"]).stem + "_int8.onnx"
        log(f"[export] INT8 {part}: calibrating on {len(feeds[part])} images")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process, per graph
        try:
            quantize_static(str(folder / src["file"]), str(folder / dest),
                            reader_type(feeds[part]), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, reduce_range=reduce_range)
        finally:
            root.setLevel(level)
        section[part] = {**src, "file": dest}
    section["calibration"] = {"data": calibration, "images": len(images)}
    section["scheme"] = {"format": "QDQ", "activations": "uint8", "weights": "int8 per channel",
                         "reduce_range": bool(reduce_range)}
    return section
