"""Running a trained detector: load a test net and model, detect objects in images.

``Detector`` wraps py-faster-rcnn's ``im_detect`` + ``test_net`` post-processing: the image
is scaled so its short side is TEST.SCALES[0] (long side at most TEST.MAX_SIZE), the net
gives rois, class probabilities and per-class deltas, the boxes are decoded in the original
image's pixels, clipped, thresholded per class, NMS-ed and capped per image.

Whether bbox_pred must be un-normalised (multiplied by STDS, plus MEANS) is read from the
model's sidecar file (``<model>.frcnn.json``, written by ``frcnn train``'s snapshots, which
fold the normalisation into the weights); a model without one (plain ``caffe train``) is
un-normalised with the cfg's MEANS and STDS.  ``unnormalize=True/False`` overrides both.

Two kinds of test net are run:

- end to end (inputs data and im_info): the net's RPN and ProposalLayer make the rois;
- Fast R-CNN (inputs data and rois, no im_info: py-faster-rcnn's Fast R-CNN test nets and
  cfg.TEST.HAS_RPN False): the caller gives each image's proposals (original-image pixels),
  projected onto the scaled input; proposals that coincide after scaling by DEDUP_BOXES
  are scored once (py-faster-rcnn's de-duplication).

``rpn_proposals`` runs an RPN test net (inputs data, im_info; output rois, optionally
scores) and returns its proposals in original-image pixels, as py-faster-rcnn's
rpn_generate does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from frcnn import devices
from frcnn.data.blobs import im_list_to_blob, prep_im_for_blob
from frcnn.detection import decode_boxes, select_detections
from frcnn.caffe_files import read_sidecar


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
    dedup_boxes: float = 1.0 / 16.0

    @classmethod
    def from_cfg(cls, cfg) -> "DetectSettings":
        t = cfg.TEST
        return cls(scale=int(t.SCALES[0]), max_size=int(t.MAX_SIZE),
                   pixel_means=tuple(cfg.PIXEL_MEANS), score_thresh=float(t.SCORE_THRESH),
                   nms_thresh=float(t.NMS), max_per_image=int(t.MAX_PER_IMAGE),
                   means=tuple(cfg.TRAIN.BBOX_NORMALIZE_MEANS),
                   stds=tuple(cfg.TRAIN.BBOX_NORMALIZE_STDS),
                   dedup_boxes=float(cfg.get("DEDUP_BOXES", 1.0 / 16.0)))


def dedup_rois(rois: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(index, inverse): rois[index] are the distinct rows of ``rois`` (R, 5) after
    rounding ``rois * factor`` (py-faster-rcnn's DEDUP_BOXES), in first-seen order, and
    rois[index][inverse] maps every row back.  factor <= 0 keeps every row."""
    n = len(rois)
    if factor <= 0 or n == 0:
        return np.arange(n), np.arange(n)
    keys = np.round(np.asarray(rois, np.float64) * factor)
    _, index, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(index)              # first-seen order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return index[order], rank[np.asarray(inverse).ravel()]


def _check_file(path: str | os.PathLike, what: str) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return str(path)


def prepare_input(im: np.ndarray, settings: DetectSettings) -> tuple[np.ndarray, np.ndarray, float]:
    """(data blob (1, 3, H', W'), im_info (1, 3) [H', W', scale], scale) for a BGR uint8 image."""
    if im is None or not hasattr(im, "size") or im.size == 0:
        raise ValueError("empty image")
    prepped, scale = prep_im_for_blob(im, settings.pixel_means, settings.scale,
                                      settings.max_size)
    blob = im_list_to_blob([prepped])
    im_info = np.array([[blob.shape[2], blob.shape[3], scale]], np.float32)
    return blob, im_info, scale


class DetectorBase:
    """What every backend shares: the input blob, decoding, thresholds, NMS, the cap.

    A backend implements ``forward(blob, im_info, rois)`` -> (rois (R, 5), cls_prob (R, K),
    bbox_pred (R, 4K)) in input-blob pixels (``rois`` given only to Fast R-CNN nets), and
    sets ``settings``, ``unnormalize``, ``num_classes`` and ``fast_rcnn``.
    """

    settings: DetectSettings
    unnormalize: bool = False
    num_classes: int = 0
    fast_rcnn: bool = False
    backend: str = ""
    #: the rois of the last ``raw`` / ``detect`` call, (R, 4) in original-image pixels: an
    #: end-to-end net's RPN proposals (best objectness first), or the proposals given to a
    #: Fast R-CNN net (as given, before de-duplication); None before the first call
    last_proposals: np.ndarray | None = None

    def forward(self, blob: np.ndarray, im_info: np.ndarray, rois: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def raw(self, im: np.ndarray, proposals: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """(scores (R, K), boxes (R, 4K)) for a BGR uint8 image (H, W, 3).

        ``proposals`` (P, 4) in the image's pixels: required by a Fast R-CNN test net (then
        R = P), refused by an end-to-end one.
        """
        if self.fast_rcnn and proposals is None:
            raise ValueError("this test net takes the rois as an input (Fast R-CNN): give "
                             "the image's proposals (frcnn test --proposals FILE)")
        if not self.fast_rcnn and proposals is not None:
            raise ValueError("this test net makes its own proposals (it has an RPN); "
                             "proposals are only for Fast R-CNN test nets")
        s = self.settings
        self.last_proposals = None
        blob, im_info, scale = prepare_input(im, s)
        inverse, given = None, None
        if self.fast_rcnn:
            boxes = np.asarray(proposals, np.float32).reshape(-1, 4)
            self.last_proposals = boxes
            if not len(boxes):
                k = self.num_classes
                return np.zeros((0, k), np.float32), np.zeros((0, 4 * k), np.float32)
            given = np.hstack([np.zeros((len(boxes), 1), np.float32), boxes * scale])
            index, inverse = dedup_rois(given, s.dedup_boxes)
            given = given[index]
        rois, cls_prob, bbox_pred = self.forward(blob, im_info, given)
        rois = np.asarray(rois, np.float32).reshape(-1, 5)
        if not self.fast_rcnn:
            self.last_proposals = rois[:, 1:5] / scale
        scores = np.asarray(cls_prob, np.float32).reshape(len(rois), -1).copy()
        deltas = np.asarray(bbox_pred, np.float32).reshape(len(rois), -1)
        norm = (s.means, s.stds) if self.unnormalize else (None, None)
        boxes = decode_boxes(rois, deltas, scale, im.shape[:2], means=norm[0], stds=norm[1])
        if inverse is not None:
            scores, boxes = scores[inverse], boxes[inverse]
        return scores, boxes

    def detect(self, im: np.ndarray, proposals: np.ndarray | None = None) -> list[np.ndarray]:
        """Per class (index 0 empty): (D, 5) x1 y1 x2 y2 score, original-image pixels.
        ``proposals``: see ``raw``."""
        scores, boxes = self.raw(im, proposals)
        s = self.settings
        return select_detections(scores, boxes, s.score_thresh, s.nms_thresh, s.max_per_image,
                                 device_id=-1)


class Detector(DetectorBase):
    """A test net with its weights, run by Caffe.

    Args:
        net: test.prototxt (inputs data (1, 3, H, W) and im_info (1, 3); outputs rois,
            cls_prob (R, K), bbox_pred (R, 4K)), or a Fast R-CNN test net (inputs data and
            rois).
        model: the .caffemodel.
        settings: DetectSettings.
        unnormalize: None = decide from the model's sidecar (see the module docstring).
    """

    backend = "caffe"

    def __init__(self, net: str, model: str, settings: DetectSettings,
                 unnormalize: bool | None = None):
        import caffe

        _check_file(net, "test net")
        _check_file(model, "model")
        devices.apply(caffe)  # the CPU, or the GPU selected with --gpu / use_gpu
        from frcnn.model_files import check_model_record, load_weights

        meta = read_sidecar(model)
        check_model_record(model, meta)  # size and sha256 as training wrote it

        try:
            self.net = caffe.Net(net, caffe.TEST)
        except Exception as e:
            raise RuntimeError(f"cannot build the test net {net}: {e}") from e
        load_weights(self.net, model)  # checked in Python first: Caffe would abort
        inputs = set(self.net.inputs)
        # py-faster-rcnn's Fast R-CNN test nets take the rois as an input and have no im_info
        self.fast_rcnn = "rois" in inputs and "im_info" not in inputs
        for blob in ("data", "rois") if self.fast_rcnn else ("data", "im_info", "rois"):
            if blob not in self.net.blobs:
                raise ValueError(f"{net} is not a detection test net: it has no '{blob}' blob "
                                 f"(an end-to-end test net takes data and im_info; a Fast "
                                 f"R-CNN one data and rois)")
        for blob in ("cls_prob", "bbox_pred"):
            if blob not in self.net.blobs:
                raise ValueError(f"{net} is not a detection test net: no '{blob}' output")
        self.settings = settings
        if unnormalize is None:
            unnormalize = not (meta or {}).get("bbox_normalization_folded", False)
        self.unnormalize = unnormalize
        self.meta = meta or {}
        self.num_classes = int(self.net.blobs["cls_prob"].data.shape[1])

    def forward(self, blob, im_info, rois):
        net = self.net
        net.blobs["data"].reshape(*blob.shape)
        net.blobs["data"].data[...] = blob
        if rois is not None:
            net.blobs["rois"].reshape(*rois.shape)
            net.blobs["rois"].data[...] = rois
        else:
            net.blobs["im_info"].reshape(1, 3)
            net.blobs["im_info"].data[...] = im_info
        out = net.forward()
        return net.blobs["rois"].data.copy(), out["cls_prob"].copy(), out["bbox_pred"].copy()


def rpn_proposals(net, im: np.ndarray, settings: DetectSettings
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (P, 4) in original-image pixels, scores (P,)) of an RPN test net (a caffe.Net
    with inputs data and im_info and a 'rois' blob; scores from a 'scores' blob when it has
    one, else NaN), for a BGR uint8 image.  The proposal settings are the net's own (its
    ProposalLayer read cfg TEST.RPN_* when the net was built)."""
    blob, im_info, scale = prepare_input(im, settings)
    net.blobs["data"].reshape(*blob.shape)
    net.blobs["data"].data[...] = blob
    net.blobs["im_info"].reshape(1, 3)
    net.blobs["im_info"].data[...] = im_info
    net.forward()
    rois = np.asarray(net.blobs["rois"].data).reshape(-1, 5)
    boxes = (rois[:, 1:5] / scale).astype(np.float32)
    if "scores" in net.blobs:
        scores = np.asarray(net.blobs["scores"].data, np.float32).reshape(-1)[:len(boxes)]
    else:
        scores = np.full(len(boxes), np.nan, np.float32)
    return boxes, scores


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
