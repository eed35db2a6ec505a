"""Running a trained detector: load a test net and model, detect objects in images.

``Detector`` wraps py-faster-rcnn's ``im_detect`` + ``test_net`` post-processing: the image
is scaled so its short side is TEST.SCALES[0] (long side at most TEST.MAX_SIZE), the net
gives rois, class probabilities and per-class deltas, the boxes are decoded in the original
image's pixels, clipped, thresholded per class, NMS-ed and capped per image.

Whether bbox_pred must be un-normalised (multiplied by STDS, plus MEANS) is read from the
model's sidecar file (``<model>.frcnn.json``, written by ``frcnn train``'s snapshots, which
fold the normalisation into the weights); a model without one (plain ``caffe train``) is
un-normalised with the cfg's MEANS and STDS.  ``unnormalize=True/False`` overrides both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from frcnn.data.blobs import im_list_to_blob, prep_im_for_blob, read_image
from frcnn.detection import decode_boxes, select_detections
from frcnn.train import read_sidecar


@dataclass(frozen=True)
class DetectSettings:
    """Test-time settings (cfg TEST.* keys and PIXEL_MEANS)."""
    scale: int = 600
    max_size: int = 1000
    pixel_means: tuple[float, float, float] = (102.9801, 115.9465, 122.7717)
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    max_per_image: int = 100
    means: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    stds: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2)

    @classmethod
    def from_cfg(cls, cfg) -> "DetectSettings":
        t = cfg.TEST
        return cls(scale=int(t.SCALES[0]), max_size=int(t.MAX_SIZE),
                   pixel_means=tuple(cfg.PIXEL_MEANS), score_thresh=float(t.SCORE_THRESH),
                   nms_thresh=float(t.NMS), max_per_image=int(t.MAX_PER_IMAGE),
                   means=tuple(cfg.TRAIN.BBOX_NORMALIZE_MEANS),
                   stds=tuple(cfg.TRAIN.BBOX_NORMALIZE_STDS))


def _check_file(path: str | os.PathLike, what: str) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return str(path)


class Detector:
    """A test net with its weights.

    Args:
        net: test.prototxt (inputs data (1, 3, H, W) and im_info (1, 3); outputs rois,
            cls_prob (R, K), bbox_pred (R, 4K)).
        model: the .caffemodel.
        settings: DetectSettings.
        unnormalize: None = decide from the model's sidecar (see the module docstring).
    """

    def __init__(self, net: str, model: str, settings: DetectSettings,
                 unnormalize: bool | None = None):
        import caffe

        _check_file(net, "test net")
        _check_file(model, "model")
        caffe.set_mode_cpu()
        try:
            self.net = caffe.Net(net, caffe.TEST, weights=model)
        except Exception as e:  # a net/model mismatch aborts in C++; this catches the rest
            raise RuntimeError(f"cannot load {model} into {net}: {e}") from e
        for blob in ("data", "im_info", "rois"):
            if blob not in self.net.blobs:
                raise ValueError(f"{net} is not a detection test net: it has no '{blob}' blob")
        for blob in ("cls_prob", "bbox_pred"):
            if blob not in self.net.blobs:
                raise ValueError(f"{net} is not a detection test net: no '{blob}' output")
        self.settings = settings
        meta = read_sidecar(model)
        if unnormalize is None:
            unnormalize = not (meta or {}).get("bbox_normalization_folded", False)
        self.unnormalize = unnormalize
        self.meta = meta or {}
        self.num_classes = int(self.net.blobs["cls_prob"].data.shape[1])

    def raw(self, im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores (R, K), boxes (R, 4K)) for a BGR uint8 image (H, W, 3)."""
        if im is None or im.size == 0:
            raise ValueError("empty image")
        s = self.settings
        prepped, scale = prep_im_for_blob(im, s.pixel_means, s.scale, s.max_size)
        blob = im_list_to_blob([prepped])
        net = self.net
        net.blobs["data"].reshape(*blob.shape)
        net.blobs["im_info"].reshape(1, 3)
        net.blobs["data"].data[...] = blob
        net.blobs["im_info"].data[...] = [[blob.shape[2], blob.shape[3], scale]]
        out = net.forward()
        rois = net.blobs["rois"].data.copy()
        scores = np.asarray(out["cls_prob"]).reshape(len(rois), -1).copy()
        deltas = np.asarray(out["bbox_pred"]).reshape(len(rois), -1)
        norm = (s.means, s.stds) if self.unnormalize else (None, None)
        boxes = decode_boxes(rois, deltas, scale, im.shape[:2], means=norm[0], stds=norm[1])
        return scores, boxes

    def detect(self, im: np.ndarray) -> list[np.ndarray]:
        """Per class (index 0 empty): (D, 5) x1 y1 x2 y2 score, original-image pixels."""
        scores, boxes = self.raw(im)
        s = self.settings
        return select_detections(scores, boxes, s.score_thresh, s.nms_thresh, s.max_per_image,
                                 device_id=-1)

    def detect_file(self, path: str | os.PathLike) -> list[np.ndarray]:
        return self.detect(read_image(path))


def draw_detections(im: np.ndarray, detections: Sequence[np.ndarray], class_names: Sequence[str],
                    thresh: float = 0.5) -> np.ndarray:
    """A copy of the BGR image with the detections above ``thresh`` drawn and labelled."""
    import cv2

    out = np.ascontiguousarray(im).copy()
    palette = [(0, 0, 255), (0, 200, 0), (255, 0, 0), (0, 200, 255), (255, 0, 255),
               (255, 255, 0), (128, 0, 255)]
    for k in range(1, len(detections)):
        colour = palette[(k - 1) % len(palette)]
        for x1, y1, x2, y2, score in detections[k]:
            if score < thresh:
                continue
            p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
            cv2.rectangle(out, p1, p2, colour, 2)
            label = f"{class_names[k]} {score:.2f}"
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
            top = max(p1[1] - th - 4, 0)
            cv2.rectangle(out, (p1[0], top), (p1[0] + tw + 2, top + th + 4), colour, -1)
            cv2.putText(out, label, (p1[0] + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (255, 255, 255), 1, cv2.LINE_AA)
    return out


def detections_to_json(detections: Sequence[np.ndarray], class_names: Sequence[str],
                       thresh: float = 0.0) -> list[dict]:
    """JSON-ready list of {class, score, box [x1, y1, x2, y2]} (inclusive pixels)."""
    rows = []
    for k in range(1, len(detections)):
        for x1, y1, x2, y2, score in detections[k]:
            if score >= thresh:
                rows.append({"class": class_names[k], "score": round(float(score), 4),
                             "box": [round(float(v), 1) for v in (x1, y1, x2, y2)]})
    rows.sort(key=lambda r: -r["score"])
    return rows
