"""From the test net's outputs to detections, and bbox-normalisation folding (pure numpy).

Conventions of py-faster-rcnn's test path: rois are in the scaled input's pixels and are
divided by the image scale; bbox_pred holds per-class deltas (R, 4K) that, for a model whose
snapshot folded the target normalisation into its weights, are plain deltas; for a model
trained by plain ``caffe train`` they are normalised and must be multiplied by STDS and
shifted by MEANS first.  Boxes are inclusive pixels, clipped to the original image.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from frcnn.boxes import bbox_transform_inv, clip_boxes
from frcnn.nms import nms


def decode_boxes(rois: np.ndarray, bbox_pred: np.ndarray, im_scale: float,
                 im_shape: tuple[int, int], means: Sequence[float] | None = None,
                 stds: Sequence[float] | None = None) -> np.ndarray:
    """Per-class boxes in original-image pixels.

    Args:
        rois: (R, 5) [batch_index, x1, y1, x2, y2] in the scaled input.
        bbox_pred: (R, 4K) deltas.
        im_scale: the scale of the input blob relative to the image.
        im_shape: (height, width) of the original image.
        means, stds: 4 numbers each (or 4K, per class); given when bbox_pred is normalised
            (unfolded model).
    Returns:
        (R, 4K) float32 boxes, clipped.
    """
    boxes = np.asarray(rois, np.float64).reshape(-1, 5)[:, 1:5] / im_scale
    deltas = np.asarray(bbox_pred, np.float64)  # (0, 4K) too: reshape(0, -1) cannot infer 4K
    deltas = deltas.reshape(len(boxes), -1 if len(boxes) else int(np.prod(deltas.shape[1:])))
    if stds is not None:
        k4 = deltas.shape[1]
        deltas = deltas * per_output(stds, k4, "stds") + per_output(
            means if means is not None else (0, 0, 0, 0), k4, "means")
    if len(boxes) == 0:
        return np.zeros((0, deltas.shape[1]), np.float32)
    return clip_boxes(bbox_transform_inv(boxes, deltas), im_shape).astype(np.float32)


def select_detections(scores: np.ndarray, boxes: np.ndarray, score_thresh: float = 0.05,
                      nms_thresh: float = 0.3, max_per_image: int = 100,
                      device_id: int | None = None) -> list[np.ndarray]:
    """Per-class thresholding and NMS, then a cap over all classes (py-faster-rcnn's test_net).

    Args:
        scores: (R, K) class probabilities; boxes: (R, 4K).
    Returns:
        K arrays (index 0, background, empty): (D_k, 5) x1 y1 x2 y2 score, by descending
        score; at most max_per_image rows in all (ties at the cut are kept, as
        py-faster-rcnn's threshold-based cap does).
    """
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float32)
    k = scores.shape[1]
    out = [np.zeros((0, 5), np.float32)]
    for j in range(1, k):
        inds = np.flatnonzero(scores[:, j] > score_thresh)
        dets = np.hstack([boxes[inds, 4 * j:4 * j + 4], scores[inds, j:j + 1]])
        keep = nms(dets, nms_thresh, device_id=device_id) if len(dets) else np.zeros(0, int)
        out.append(dets[keep].astype(np.float32))
    if max_per_image > 0:
        all_scores = np.concatenate([d[:, 4] for d in out[1:]])
        if len(all_scores) > max_per_image:
            cut = np.sort(all_scores)[-max_per_image]
            out = [out[0]] + [d[d[:, 4] >= cut] for d in out[1:]]
    return out


def per_output(values: Sequence[float], k4: int, name: str = "values") -> np.ndarray:
    """(4K,) float64: 4 values (dx dy dw dh for every class) tiled over the K classes, or
    4K values (per class, as py-faster-rcnn's computed statistics) as they are."""
    v = np.asarray(values, np.float64).ravel()
    if len(v) == 4:
        return np.tile(v, k4 // 4)
    if len(v) == k4:
        return v
    raise ValueError(f"bbox normalisation {name} must have 4 or {k4} (4 per class) values, "
                     f"got {len(v)}")


def fold_bbox_normalization(weights: np.ndarray, bias: np.ndarray, means: Sequence[float],
                            stds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """bbox_pred's InnerProduct (W (4K, D), b (4K,)) made to output plain deltas.

    A net trained on targets (t - MEANS) / STDS predicts normalised deltas; scaling each
    output row by STDS and adding MEANS to the bias gives W' x + b' = STDS * (W x + b) +
    MEANS, so the snapshot is a deployable model (py-faster-rcnn's snapshot convention).
    means and stds: 4 values, or 4K (per class; see ``per_output``).
    """
    k4 = weights.shape[0]
    s = per_output(stds, k4, "stds")
    m = per_output(means, k4, "means")
    w = (np.asarray(weights, np.float64) * s.reshape((k4,) + (1,) * (weights.ndim - 1)))
    return w.astype(weights.dtype), (np.asarray(bias, np.float64) * s + m).astype(bias.dtype)


def unfold_bbox_normalization(weights: np.ndarray, bias: np.ndarray, means: Sequence[float],
                              stds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of fold_bbox_normalization (to resume training from a folded snapshot)."""
    k4 = weights.shape[0]
    s = per_output(stds, k4, "stds")
    m = per_output(means, k4, "means")
    w = np.asarray(weights, np.float64) / s.reshape((k4,) + (1,) * (weights.ndim - 1))
    return w.astype(weights.dtype), ((np.asarray(bias, np.float64) - m) / s).astype(bias.dtype)
