"""The onnxruntime backend: an exported detector run without Caffe.

Only numpy, onnxruntime and this package's pure code run here (the proposals, decoding and
NMS the Caffe path uses), so a deploy-only install (``pip install squeezenet-frcnn
onnxruntime``) needs no Caffe build.  Per image: backbone.onnx -> frcnn.proposals with the
manifest's anchors and TEST settings -> head.onnx -> the shared post-processing
(frcnn.inference.DetectorBase).
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from frcnn.anchors import AnchorGrid
from frcnn.deploy.manifest import load_manifest
from frcnn.inference import DetectorBase, DetectSettings
from frcnn.proposals import ProposalParams, proposals_from_rpn


def onnxruntime_available() -> str | None:
    """None when onnxruntime imports, else a one-line reason."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return f"onnxruntime is not installed ({e}): pip install onnxruntime"
    return None


def settings_from_manifest(manifest: dict[str, Any]) -> DetectSettings:
    t = manifest["test"]
    return DetectSettings(scale=int(t["scale"]), max_size=int(t["max_size"]),
                          pixel_means=tuple(t["pixel_means"]),
                          score_thresh=float(t["score_thresh"]),
                          nms_thresh=float(t["nms_thresh"]),
                          max_per_image=int(t["max_per_image"]),
                          means=tuple(manifest.get("means", (0, 0, 0, 0))),
                          stds=tuple(manifest.get("stds", (0.1, 0.1, 0.2, 0.2))))


def proposal_settings(manifest: dict[str, Any]) -> tuple[AnchorGrid, ProposalParams]:
    a, t = manifest["anchors"], manifest["test"]
    grid = AnchorGrid(a["ratios"], a["scales"], a["feat_stride"])
    params = ProposalParams(pre_nms_top_n=int(t["rpn_pre_nms_top_n"]),
                            post_nms_top_n=int(t["rpn_post_nms_top_n"]),
                            nms_thresh=float(t["rpn_nms_thresh"]),
                            min_size=float(t["rpn_min_size"]))
    return grid, params


def adopt_manifest(detector: DetectorBase, manifest: dict[str, Any],
                   settings: DetectSettings | None) -> None:
    """What every export-folder detector takes from its manifest: the TEST settings (or
    ``settings``), whether bbox_pred is normalised, the classes."""
    detector.manifest = manifest
    detector.settings = settings or settings_from_manifest(manifest)
    detector.unnormalize = not manifest.get("bbox_normalization_folded", True)
    detector.num_classes = len(manifest["classes"])
    detector.class_names = list(manifest["classes"])
    detector.meta = {"classes": detector.class_names}


def _native_roi_pool() -> bool:
    try:
        import frcnn._native.roi_pool  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxDetector(DetectorBase):
    """An export folder's ONNX graphs in onnxruntime.

    Args:
        folder: an ``frcnn export`` folder (its manifest and files are checked).
        settings: overrides of the manifest's TEST settings (None: the manifest's).
        threads: onnxruntime intra-op threads (None: onnxruntime's default, all cores).
        portable_head: run head.onnx (MaxRoiPool inside) even where head_pooled.onnx and
            the compiled RoI pooling kernel could run.
        precision: 'float', or 'int8' for the export's INT8 graphs (``frcnn export --int8``;
            the head then always has its RoI pooling inside).
    """

    backend = "onnxruntime"

    def __init__(self, folder: str | os.PathLike, settings: DetectSettings | None = None,
                 threads: int | None = None, manifest: dict[str, Any] | None = None,
                 portable_head: bool = False, precision: str = "float"):
        if precision not in ("float", "int8"):
            raise ValueError(f"precision must be 'float' or 'int8', got {precision!r}")
        self.precision = precision
        self._threads = threads
        self._start_runtime()
        m = manifest or load_manifest(folder)
        if not m.get("onnx"):
            raise ValueError(f"{folder}: the export has no ONNX graphs (export with "
                             f"--format onnx)")
        adopt_manifest(self, m, settings)
        self.grid, self.proposal_params = proposal_settings(m)
        folder = m["folder"]
        onnx = m["onnx"]
        graphs = onnx
        if precision == "int8":
            if not m.get("int8"):
                raise ValueError(f"{folder}: the export has no INT8 graphs (export with --int8 "
                                 f"--calibration DATASET)")
            graphs, portable_head = m["int8"], True
        self._backbone = self._open(os.path.join(folder, graphs["backbone"]["file"]))
        self._head = self._open(os.path.join(folder, graphs["head"]["file"]))
        # the pooled head with this package's RoI pooling kernel where both are there
        self._pooling = onnx.get("roi_pooling") if "head_pooled" in onnx else None
        if self._pooling is not None and (portable_head or not _native_roi_pool()):
            self._pooling = None
        if self._pooling is not None:
            self._head_pooled = self._open(os.path.join(folder, onnx["head_pooled"]["file"]))
            self._pooled_input = onnx["head_pooled"]["inputs"][0]
        self._data = onnx["backbone"]["inputs"][0]
        self._outputs = [onnx["feature"], onnx["rpn_prob"], onnx["rpn_deltas"]]
        self._rois = onnx["head"]["inputs"][1]
        self.timings: dict[str, float] = {}

    def _start_runtime(self) -> None:
        """Check the runtime is there (RuntimeError naming what to install)."""
        reason = onnxruntime_available()
        if reason:
            raise RuntimeError(f"the onnxruntime backend needs onnxruntime: {reason}")

    def _open(self, path: str) -> Any:
        """One graph, ready to ``run(output_names or None, {input name: array})``."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self._threads:
            options.intra_op_num_threads = int(self._threads)
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def backbone(self, blob: np.ndarray) -> list[np.ndarray]:
        """[feature, rpn probabilities (1, 2A, h, w), rpn deltas (1, 4A, h, w)]."""
        return self._backbone.run(self._outputs, {self._data: np.ascontiguousarray(blob)})

    def proposals(self, probs: np.ndarray, deltas: np.ndarray, im_info: np.ndarray
                  ) -> np.ndarray:
        """rois (R, 5) = [0, x1, y1, x2, y2] in input-blob pixels, as the ProposalLayer's."""
        a = self.grid.num_anchors
        h, w = probs.shape[-2:]
        boxes, _ = proposals_from_rpn(probs[:, a:, :, :], deltas, self.grid.anchors(h, w),
                                      np.asarray(im_info).reshape(-1), self.proposal_params,
                                      device_id=None)
        rois = np.zeros((len(boxes), 5), np.float32)
        rois[:, 1:] = boxes
        return rois

    def head(self, feature: np.ndarray, rois: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cls_prob (R, K), bbox_pred (R, 4K))."""
        if not len(rois):
            k = self.num_classes
            return np.zeros((0, k), np.float32), np.zeros((0, 4 * k), np.float32)
        if self._pooling is not None:
            from frcnn.roi_pool import roi_pool

            p = self._pooling
            pooled = roi_pool(feature, rois, p["pooled_h"], p["pooled_w"], p["spatial_scale"])
            cls_prob, bbox_pred = self._head_pooled.run(None, {self._pooled_input: pooled})
            return cls_prob, bbox_pred
        cls_prob, bbox_pred = self._head.run(
            None, {self._outputs[0]: feature, self._rois: np.ascontiguousarray(rois)})
        return cls_prob, bbox_pred

    def forward(self, blob, im_info, rois):
        t0 = time.perf_counter()
        feature, probs, deltas = self.backbone(blob)
        t1 = time.perf_counter()
        rois = self.proposals(probs, deltas, im_info)
        t2 = time.perf_counter()
        cls_prob, bbox_pred = self.head(feature, rois)
        t3 = time.perf_counter()
        self.timings = {"backbone_rpn": t1 - t0, "proposals": t2 - t1, "head": t3 - t2}
        return rois, cls_prob, bbox_pred
