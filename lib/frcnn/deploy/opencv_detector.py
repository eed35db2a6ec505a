"""The opencv backend: an export folder's Caffe deploy net (native Proposal layer) in
OpenCV DNN 4.x, with the shared post-processing (frcnn.inference.DetectorBase).

OpenCV's Proposal layer differs from this package's in ways that show in the detections
(docs/deploy.md measures them): it does not drop proposals below RPN_MIN_SIZE.
"""
from __future__ import annotations

import os
from typing import Any

from frcnn.deploy.manifest import load_manifest
from frcnn.inference import DetectorBase, DetectSettings


class OpenCVDetector(DetectorBase):
    """Args: an ``frcnn export`` folder with the caffe-deploy format; settings as
    OnnxDetector's (the Proposal layer's own settings are fixed in deploy.prototxt)."""

    backend = "opencv"

    def __init__(self, folder: str | os.PathLike, settings: DetectSettings | None = None,
                 manifest: dict[str, Any] | None = None):
        from frcnn.deploy.onnx_backend import adopt_manifest
        from frcnn.deploy.opencv_backend import OpenCVRunner, opencv_dnn_available

        reason = opencv_dnn_available()
        if reason:
            raise RuntimeError(f"the opencv backend needs OpenCV 4.x DNN: {reason}")
        m = manifest or load_manifest(folder)
        deploy = m.get("caffe_deploy")
        if not deploy:
            raise ValueError(f"{folder}: the export has no Caffe deploy net (export with "
                             f"--format caffe-deploy)")
        adopt_manifest(self, m, settings)
        self._runner = OpenCVRunner(os.path.join(m["folder"], deploy["prototxt"]),
                                    os.path.join(m["folder"], deploy["caffemodel"]))

    def forward(self, blob, im_info, rois):
        return self._runner.raw(blob, im_info)
