"""Region proposals from RPN outputs, as py-faster-rcnn's ProposalLayer (pure numpy + NMS).

decode -> clip -> drop small -> top-N by score -> NMS -> top-N.  Boxes are (N, 4) float
x1 y1 x2 y2 in inclusive pixels of the input blob.  Score ties are ordered by the lower
anchor index first (a stable sort), which is also the NMS kernels' tie rule, so the result
does not depend on the sort algorithm.

The result is exactly that of the straightforward pipeline (decode and clip every anchor,
filter, stable-sort all survivors by score, NMS, cut), computed with less work:

* only the candidates that can reach the pre-NMS top N are decoded: the M best-scored
  anchors (a partial selection, every anchor tied with the M-th included), M a little
  above pre_nms_top_n.  Every other anchor scores strictly lower than all of them, so
  when at least pre_nms_top_n candidates pass the minimum-size filter, their best
  pre_nms_top_n are the pipeline's.  When fewer pass, M grows (by the observed pass
  rate) up to all anchors;
* the (1, 4A, H, W) delta blob is put in anchor order with one strided copy (cheaper
  than gathering the candidates' deltas from the blob by index arithmetic), and the
  candidates' rows are gathered with ``np.take``;
* the candidates are ordered by one sort of unique uint64 keys (score bits, position)
  instead of a stable float sort;
* NMS stops once post_nms_top_n boxes are kept (``max_keep``).

Decoding a subset gives bit-identical boxes: ``bbox_transform_inv`` and ``clip_boxes`` are
element-wise, in the deltas' dtype (float32 from a Caffe blob; the float64 anchors are cast
to it, as in the full pipeline).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frcnn.boxes import bbox_transform_inv, clip_boxes
from frcnn.nms import nms

# First guess of the candidate count: pre_nms_top_n * (1 + _SLACK) + _MIN_EXTRA.  Anchors
# removed by the minimum-size filter are rare at the defaults (16 px times the image
# scale, against anchors of 90 px and more), so one round is the rule; a second round widens by the observed pass rate.
_SLACK = 0.125
_MIN_EXTRA = 256
# Decode everything once the candidates would be more than this fraction of the anchors.
_ALL_FRACTION = 0.75


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


def _descending_order(scores: np.ndarray) -> np.ndarray:
    """Positions of scores by descending score, ties by lower position (a stable order).

    float32: one sort of unique uint64 keys (order-preserving score bits in the high word,
    inverted for descending, position in the low word), several times faster than a
    stable float sort.  Other dtypes: a stable argsort.
    """
    n = scores.shape[0]
    if scores.dtype != np.float32 or n >= 2 ** 32:
        return np.argsort(-scores, kind="stable")
    bits = (scores + np.float32(0)).view(np.uint32)  # + 0 turns -0.0 into +0.0
    # IEEE total order on finite values: negative -> flip all bits, else flip the sign bit.
    flip = np.where(bits >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    ascending = (bits ^ flip).astype(np.uint64)
    keys = ((np.uint64(0xFFFFFFFF) - ascending) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    keys.sort()
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.intp)


def _decode_and_filter(cand: np.ndarray | None, anchors: np.ndarray, deltas: np.ndarray,
                       im_shape: tuple[float, float],
                       min_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Clipped boxes of the candidate anchors and which of them pass the size filter.

    Args:
        cand: (K,) anchor indices, or None for all anchors.
        anchors: (N, 4) anchors; deltas: (N, 4) deltas, both in anchor order.
        im_shape: input-blob (height, width); min_size: in input-blob pixels.
    Returns:
        boxes (K, 4) in the deltas' dtype, and a (K,) bool mask: width and height
        (x2 - x1 + 1, y2 - y1 + 1) both >= min_size.
    """
    if cand is not None:  # np.take: much faster than fancy indexing of (N, 4) rows
        anchors = np.take(anchors, cand, axis=0)
        deltas = np.take(deltas, cand, axis=0)
    boxes = clip_boxes(bbox_transform_inv(anchors, deltas), im_shape, copy=False)
    widths = boxes[:, 2] - boxes[:, 0] + 1
    heights = boxes[:, 3] - boxes[:, 1] + 1
    return boxes, (widths >= min_size) & (heights >= min_size)


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
        device_id: ``frcnn.nms.nms``'s device (None: the GPU where usable, else the
            CPU; -1: the CPU; see ``frcnn.nms.nms_device``).
    Returns:
        boxes (R, 4) float32 and scores (R,) float32, sorted by score, descending (ties:
        lower anchor index first); exactly those of the straightforward pipeline.
    Raises:
        ValueError: NaN or inf in the scores or deltas, or blobs that do not match the
            anchors.
    """
    fg = np.asarray(fg_scores)
    bd = np.asarray(bbox_deltas)
    anchors = np.asarray(anchors)
    scores = map_to_anchor_order(fg, 1)[:, 0]  # a copy of H * W * A values (small)
    _, num_anchors, height, width = fg.shape
    n = len(anchors)
    if len(scores) != n or bd.shape != (1, 4 * num_anchors, height, width):
        n_deltas = (bd.size // 4) if bd.ndim == 4 else -1
        raise ValueError(f"{n} anchors but {len(scores)} scores and {n_deltas} "
                         f"deltas: the RPN blobs do not match the anchors")
    if not np.isfinite(scores).all():
        raise ValueError("rpn scores contain NaN or inf")
    if not np.isfinite(bd).all():
        raise ValueError("rpn_bbox_pred contains NaN or inf")
    im_height, im_width, scale = (float(v) for v in np.asarray(im_info).ravel()[:3])
    min_size = params.min_size * scale
    deltas = map_to_anchor_order(bd, 4)

    top_n = params.pre_nms_top_n if params.pre_nms_top_n > 0 else n
    want = min(n, int(top_n * (1 + _SLACK)) + _MIN_EXTRA)
    while True:
        if want >= _ALL_FRACTION * n:
            cand = None
        else:  # every anchor scoring >= the want-th best (ties at the cut included)
            cut = np.partition(scores, n - want)[n - want]
            cand = np.flatnonzero(scores >= cut)
        boxes, passed = _decode_and_filter(cand, anchors, deltas, (im_height, im_width),
                                           min_size)
        survivors = int(np.count_nonzero(passed))
        if cand is None or survivors >= top_n or len(cand) == n:
            break
        rate = max(survivors, 1) / len(cand)  # widen by the observed pass rate
        want = min(n, max(2 * len(cand), int(top_n / rate * (1 + _SLACK)) + _MIN_EXTRA))

    keep = np.flatnonzero(passed)  # ascending, i.e. anchor order
    boxes = np.take(boxes, keep, axis=0)
    cand_scores = scores[keep] if cand is None else scores[cand[keep]]
    order = _descending_order(cand_scores)[:top_n]
    boxes, cand_scores = np.take(boxes, order, axis=0), cand_scores[order]

    dets = np.empty((len(order), 5), dtype=np.float32)
    dets[:, :4] = boxes
    dets[:, 4] = cand_scores
    post = params.post_nms_top_n if params.post_nms_top_n > 0 else None
    kept = nms(dets, params.nms_thresh, device_id=device_id, max_keep=post)
    return boxes[kept].astype(np.float32), cand_scores[kept].astype(np.float32)
