"""The OpenVINO backend: an export folder's ONNX graphs compiled by OpenVINO.

The split form: OpenVINO's ONNX frontend reads backbone.onnx and head.onnx (its
``MaxRoiPool`` becomes OpenVINO's ``ROIPooling``, method max, Caffe's), and this package's
proposal step runs between them exactly as in the onnxruntime backend
(``frcnn.deploy.onnx_backend``), so the proposals are py-faster-rcnn's to the bit.  Only
numpy, openvino and this package's pure code run here: no Caffe.

Devices: OpenVINO's names ('CPU', 'GPU', 'NPU', 'AUTO'); an unknown one is an error listing
what this machine has.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from frcnn.deploy.onnx_backend import OnnxDetector, adopt_manifest
from frcnn.inference import DetectorBase

INSTALL_HINT = "pip install openvino (or the package's extra: pip install 'squeezenet-frcnn[openvino]')"


def openvino_available() -> str | None:
    """None when openvino imports, else a one-line reason with what to install."""
    try:
        import openvino  # noqa: F401
    except ImportError as e:
        return f"openvino is not installed ({e}): {INSTALL_HINT}"
    return None


def openvino_core(device: str) -> Any:
    """An ``openvino.Core``, once openvino imports (RuntimeError naming what to install)
    and ``device`` is on this machine (ValueError listing those that are)."""
    reason = openvino_available()
    if reason:
        raise RuntimeError(f"the openvino backend needs openvino: {reason}")
    import openvino as ov

    core = ov.Core()
    devices = list(core.available_devices)
    if device.split(":")[0].split(".")[0] not in devices + ["AUTO", "MULTI", "HETERO"]:
        raise ValueError(f"OpenVINO device {device!r} is not on this machine "
                         f"(available: {', '.join(devices) or 'none'})")
    return core


class _Compiled:
    """An OpenVINO compiled model run as onnxruntime's sessions are:
    ``run(output names or None, {input name: array}) -> [arrays]``."""

    def __init__(self, core: Any, path: str, device: str, threads: int | None):
        config = {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
        model = core.compile_model(core.read_model(path), device, config)
        self._request = model.create_infer_request()
        self._ports = {port.get_any_name(): port for port in model.outputs}

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self._request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
        return [np.array(result[self._ports[name]]) for name in (names or self._ports)]


class OpenVINODetector(OnnxDetector):
    """An export folder's graphs in OpenVINO (see the module docstring).

    Args: as OnnxDetector, plus ``device`` (OpenVINO's device name, default 'CPU').  The
    head runs with its RoI pooling inside the graph by default (``portable_head``): OpenVINO's
    ROIPooling with conv1_last in one graph measured faster here than this package's
    kernel feeding head_pooled.onnx (docs/deploy.md).
    Raises RuntimeError without openvino, ValueError for a device this machine lacks.
    """

    backend = "openvino"

    def __init__(self, folder: str | os.PathLike, settings=None, threads: int | None = None,
                 manifest: dict[str, Any] | None = None, portable_head: bool = True,
                 device: str = "CPU", precision: str = "float"):
        self.device = device
        super().__init__(folder, settings, threads, manifest, portable_head, precision)

    def _start_runtime(self) -> None:
        self._core = openvino_core(self.device)

    def _open(self, path: str) -> Any:
        return _Compiled(self._core, path, self.device, self._threads)


class OpenVINONativeDetector(DetectorBase):
    """The export's single OpenVINO IR (``frcnn export --format openvino``): backbone,
    OpenVINO's native Proposal and the head in one model (frcnn.deploy.openvino_export).

    Args: ``folder``, ``settings``, ``threads``, ``manifest`` as OnnxDetector; ``device``.
    """

    backend = "openvino-native"

    def __init__(self, folder: str | os.PathLike, settings=None, threads: int | None = None,
                 manifest: dict[str, Any] | None = None, device: str = "CPU"):
        from frcnn.deploy.manifest import load_manifest

        self.device = device
        core = openvino_core(device)
        m = manifest or load_manifest(folder)
        if not m.get("openvino"):
            raise ValueError(f"{folder}: the export has no OpenVINO model (export with "
                             f"--format openvino)")
        adopt_manifest(self, m, settings)
        section = m["openvino"]
        self._model = _Compiled(core, os.path.join(m["folder"], section["file"]), device,
                                threads)
        self._inputs = section["inputs"]
        self._outputs = section["outputs"]
        self.timings: dict[str, float] = {}

    def forward(self, blob, im_info, rois):
        import time

        from frcnn.deploy.openvino_export import valid_rows

        t0 = time.perf_counter()
        out_rois, cls_prob, bbox_pred = self._model.run(
            self._outputs, {self._inputs[0]: blob,
                            self._inputs[1]: np.asarray(im_info, np.float32).reshape(3)})
        keep = valid_rows(out_rois)
        self.timings = {"whole": time.perf_counter() - t0}
        return out_rois[keep], cls_prob[keep], bbox_pred[keep]
