"""Online hard example mining (Shrivastava et al., arXiv 1604.03540) as pure numpy.

The read-only RoI branch scores every candidate RoI; ``roi_losses`` turns its outputs into a
per-RoI loss and ``select_hard_rois`` keeps the hardest, optionally after NMS among RoIs of
the same image with the loss as score (so near-duplicates of one hard RoI do not fill the
batch).  Shapes: R RoIs, K classes including background; rois (R, 5) = [batch_index, x1, y1,
x2, y2] in inclusive pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frcnn.nms import nms

EPS = 1e-14


@dataclass(frozen=True)
class OHEMParams:
    """cfg TRAIN.OHEM_* keys."""
    batch_size: int = 128        # hard RoIs kept per image
    use_nms: bool = True
    nms_thresh: float = 0.7


def integer_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(R,) class labels as int64, from any float blob; ValueError unless in 0..K-1."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.isfinite(labels).all():
        raise ValueError("labels contain NaN or inf")
    out = np.rint(labels).astype(np.int64)
    if out.size and (np.any(np.abs(labels - out) > 1e-3) or out.min() < 0
                     or out.max() >= num_classes):
        raise ValueError(f"labels must be integers in 0..{num_classes - 1}, got "
                         f"{np.unique(labels)[:10].tolist()}")
    return out


def roi_losses(cls_prob: np.ndarray, bbox_pred: np.ndarray, labels: np.ndarray,
               bbox_targets: np.ndarray, inside_weights: np.ndarray,
               outside_weights: np.ndarray) -> np.ndarray:
    """Per-RoI loss: classification plus box regression.

    Args:
        cls_prob: (R, K) softmax probabilities.
        bbox_pred: (R, 4K) predicted (normalised) deltas.
        labels: (R,) integer classes.
        bbox_targets, inside_weights, outside_weights: (R, 4K).
    Returns:
        (R,) float64: -log(max(p[label], EPS)) + sum(outside * smoothL1(inside * (pred -
        target))) with sigma 1 (smoothL1(d) = 0.5 d^2 if |d| < 1 else |d| - 0.5), the same
        losses the trained branch minimises (before their normalisation).
    """
    cls_prob = np.asarray(cls_prob, dtype=np.float64)
    r = len(labels)
    if r == 0:
        return np.zeros(0)
    if cls_prob.shape[0] != r:
        raise ValueError(f"cls_prob has {cls_prob.shape[0]} rows but labels has {r}")
    if not np.isfinite(cls_prob).all():
        raise ValueError("cls_prob contains NaN or inf")
    if not np.isfinite(bbox_pred).all():
        raise ValueError("bbox_pred contains NaN or inf")
    p = cls_prob.reshape(r, -1)[np.arange(r), labels]
    cls_loss = -np.log(np.maximum(p, EPS))
    d = np.asarray(inside_weights, np.float64) * (np.asarray(bbox_pred, np.float64)
                                                  - np.asarray(bbox_targets, np.float64))
    abs_d = np.abs(d)
    smooth = np.where(abs_d < 1.0, 0.5 * d * d, abs_d - 0.5)
    box_loss = (np.asarray(outside_weights, np.float64) * smooth).reshape(r, -1).sum(axis=1)
    return cls_loss + box_loss


def select_hard_rois(rois: np.ndarray, losses: np.ndarray, params: OHEMParams,
                     device_id: int | None = None) -> np.ndarray:
    """Indices of the hard RoIs, per image by descending loss (ties: lower index first).

    Args:
        rois: (R, 5) [batch_index, x1, y1, x2, y2].
        losses: (R,) per-RoI loss.
        params: batch size per image and the NMS option.
    Returns:
        int64 indices into rois: for each image in order of batch index, at most
        params.batch_size RoIs (fewer if it has fewer), after NMS at params.nms_thresh
        with the loss as score when params.use_nms.
    """
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    keep: list[np.ndarray] = []
    for image in np.unique(rois[:, 0]):
        idx = np.flatnonzero(rois[:, 0] == image)
        if params.use_nms:
            dets = np.hstack([rois[idx, 1:5], losses[idx, None]])
            chosen = idx[nms(dets, params.nms_thresh, device_id=device_id,
                             max_keep=params.batch_size)]
        else:
            chosen = idx[np.argsort(-losses[idx], kind="stable")[:params.batch_size]]
        keep.append(chosen)
    return np.concatenate(keep).astype(np.int64) if keep else np.zeros(0, np.int64)
