"""Region proposals from RPN outputs, as py-faster-rcnn's ProposalLayer (pure numpy + NMS).

decode -> clip -> drop small -> top-N by score -> NMS -> top-N.  Boxes are (N, 4) float
x1 y1 x2 y2 in inclusive pixels of the input blob.  Score ties are ordered by the lower
anchor index first (a stable sort), which is also the NMS kernels' tie rule, so the result
does not depend on the sort algorithm.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frcnn.boxes import bbox_transform_inv, clip_boxes
from frcnn.nms import nms


@dataclass(frozen=True)
class ProposalParams:
    """Settings of one phase (cfg TRAIN.RPN_* or TEST.RPN_* keys)."""
    pre_nms_top_n: int = 6000     # <= 0: keep all
    post_nms_top_n: int = 300     # <= 0: keep all
    nms_thresh: float = 0.7
    min_size: float = 16          # in original-image pixels; multiplied by the image scale


def map_to_anchor_order(blob: np.ndarray, per_anchor: int) -> np.ndarray:
    """(1, per_anchor * A, H, W) blob -> (H * W * A, per_anchor) rows in anchor order.

    Anchor order is row h, column w, anchor a (a fastest), py-faster-rcnn's layout of the
    RPN's 2A / 4A channel blobs.
    """
    _, channels, height, width = blob.shape
    return blob.transpose(0, 2, 3, 1).reshape(height * width * channels // per_anchor, per_anchor)


def proposals_from_rpn(fg_scores: np.ndarray, bbox_deltas: np.ndarray, anchors: np.ndarray,
                       im_info: np.ndarray, params: ProposalParams,
                       device_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Proposals for one image.

    Args:
        fg_scores: (1, A, H, W) foreground probabilities (channels A..2A-1 of the RPN's
            softmax output).
        bbox_deltas: (1, 4A, H, W) predicted dx dy dw dh per anchor.
        anchors: (H * W * A, 4) anchors of the map in anchor order.
        im_info: (3,) input-blob height, width, scale.
        params: top-N sizes, NMS threshold, minimum size.
        device_id: GPU for NMS where available (None: the CPU).
    Returns:
        boxes (R, 4) float32 and scores (R,) float32, sorted by score, descending.
    Raises:
        ValueError: NaN or inf in the scores or deltas.
    """
    scores = map_to_anchor_order(np.asarray(fg_scores), 1)[:, 0]
    deltas = map_to_anchor_order(np.asarray(bbox_deltas), 4)
    if len(scores) != len(anchors) or len(deltas) != len(anchors):
        raise ValueError(f"{len(anchors)} anchors but {len(scores)} scores and {len(deltas)} "
                         f"deltas: the RPN blobs do not match the anchors")
    if not np.isfinite(scores).all():
        raise ValueError("rpn scores contain NaN or inf")
    if not np.isfinite(deltas).all():
        raise ValueError("rpn_bbox_pred contains NaN or inf")
    height, width, scale = (float(v) for v in np.asarray(im_info).ravel()[:3])

    boxes = clip_boxes(bbox_transform_inv(anchors, deltas), (height, width))
    min_size = params.min_size * scale
    widths = boxes[:, 2] - boxes[:, 0] + 1
    heights = boxes[:, 3] - boxes[:, 1] + 1
    keep = np.flatnonzero((widths >= min_size) & (heights >= min_size))
    boxes, scores = boxes[keep], scores[keep]

    order = np.argsort(-scores, kind="stable")
    if params.pre_nms_top_n > 0:
        order = order[:params.pre_nms_top_n]
    boxes, scores = boxes[order], scores[order]

    dets = np.hstack([boxes, scores[:, None]]).astype(np.float32, copy=False)
    post = params.post_nms_top_n if params.post_nms_top_n > 0 else None
    keep = nms(dets, params.nms_thresh, device_id=device_id, max_keep=post)
    return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)
