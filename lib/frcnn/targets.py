"""Training targets as pure functions: RPN anchor labels and Fast R-CNN RoI sampling.

Semantics follow py-faster-rcnn's AnchorTargetLayer and ProposalTargetLayer (end-to-end
training), so models and results carry over; differences are only where py-faster-rcnn
crashes (no gt boxes, degenerate gt boxes) or is unseeded (sampling uses the Generator you
pass).  Boxes are (N, 4) float x1 y1 x2 y2 in inclusive pixels (width = x2 - x1 + 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frcnn.boxes import bbox_overlaps, bbox_transform


def valid_gt(gt_boxes: np.ndarray) -> np.ndarray:
    """Rows of gt_boxes (G, 5) = x1 y1 x2 y2 class that are usable boxes.

    A box is usable when x2 >= x1 and y2 >= y1 (at least one pixel, inclusive) and all its
    numbers are finite; the others cannot be matched or regressed to.
    """
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 5)
    ok = np.isfinite(gt).all(axis=1) & (gt[:, 2] >= gt[:, 0]) & (gt[:, 3] >= gt[:, 1])
    return gt[ok]


# ----------------------------------------------------------------------------- RPN targets

@dataclass(frozen=True)
class AnchorTargetParams:
    """Settings of the RPN anchor labelling (cfg TRAIN.RPN_* keys)."""
    positive_overlap: float = 0.7
    negative_overlap: float = 0.3
    clobber_positives: bool = False
    fg_fraction: float = 0.5
    batch_size: int = 256
    positive_weight: float = -1.0
    inside_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    allowed_border: int = 0


@dataclass
class AnchorTargets:
    """Per-anchor RPN targets, in the order of the anchors given (all of them).

    labels: (N,) float32 in {1, 0, -1} (positive, negative, ignored);
    bbox_targets, inside_weights, outside_weights: (N, 4) float32.
    """
    labels: np.ndarray
    bbox_targets: np.ndarray
    inside_weights: np.ndarray
    outside_weights: np.ndarray


def _subsample(labels: np.ndarray, value: int, keep: int, rng: np.random.Generator) -> None:
    inds = np.flatnonzero(labels == value)
    if len(inds) > keep:
        labels[rng.choice(inds, size=len(inds) - keep, replace=False)] = -1


def anchor_targets(anchors: np.ndarray, gt_boxes: np.ndarray, im_height: float,
                   im_width: float, params: AnchorTargetParams,
                   rng: np.random.Generator) -> AnchorTargets:
    """Label anchors for the RPN losses, as py-faster-rcnn's AnchorTargetLayer.

    Args:
        anchors: (N, 4) all anchors of the feature map (inclusive pixels).
        gt_boxes: (G, 5) x1 y1 x2 y2 class in input-blob pixels; G may be 0; unusable
            rows (see valid_gt) are ignored.
        im_height, im_width: size of the input blob (im_info[0], im_info[1]).
        params: thresholds and sampling sizes.
        rng: the generator used for subsampling.
    Returns:
        AnchorTargets over all N anchors.  Anchors that cross the image border by more than
        allowed_border are ignored (-1).  Inside anchors are positive when their IoU with
        some gt box is >= positive_overlap or they are some gt box's best anchor (ties
        included), negative when their best IoU is < negative_overlap; positives are
        subsampled to fg_fraction * batch_size and negatives to fill batch_size.  Targets
        are bbox_transform(anchor, best gt) for every inside anchor; outside weights are
        1 / (number of sampled anchors) (or positive_weight split, when in (0, 1)).
    """
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    gt = valid_gt(gt_boxes)
    n = len(anchors)
    border = params.allowed_border
    inside = np.flatnonzero((anchors[:, 0] >= -border) & (anchors[:, 1] >= -border)
                            & (anchors[:, 2] < im_width + border)
                            & (anchors[:, 3] < im_height + border))
    inner = anchors[inside]
    labels = np.full(len(inside), -1.0, dtype=np.float32)
    targets = np.zeros((len(inside), 4), dtype=np.float32)

    if len(gt) and len(inside):
        overlaps = bbox_overlaps(inner, gt[:, :4])
        argmax = overlaps.argmax(axis=1)
        max_overlaps = overlaps[np.arange(len(inside)), argmax]
        gt_max = overlaps.max(axis=0)
        # every anchor that ties for some gt's best overlap (gt boxes with no overlap at
        # all have no best anchor)
        best_of_some_gt = np.flatnonzero(((overlaps == gt_max) & (gt_max > 0)).any(axis=1))
        if not params.clobber_positives:
            labels[max_overlaps < params.negative_overlap] = 0
        labels[best_of_some_gt] = 1
        labels[max_overlaps >= params.positive_overlap] = 1
        if params.clobber_positives:
            labels[max_overlaps < params.negative_overlap] = 0
        targets[:] = bbox_transform(inner, gt[argmax, :4])
    else:
        labels[:] = 0  # no gt box: every inside anchor is background

    num_fg = int(params.fg_fraction * params.batch_size)
    _subsample(labels, 1, num_fg, rng)
    num_bg = params.batch_size - int(np.sum(labels == 1))
    _subsample(labels, 0, num_bg, rng)

    inside_w = np.zeros((len(inside), 4), dtype=np.float32)
    inside_w[labels == 1] = params.inside_weights
    outside_w = np.zeros((len(inside), 4), dtype=np.float32)
    if params.positive_weight < 0:
        num_examples = max(int(np.sum(labels >= 0)), 1)
        pos_w = neg_w = 1.0 / num_examples
    else:
        if not 0 < params.positive_weight < 1:
            raise ValueError(f"RPN_POSITIVE_WEIGHT must be -1 or in (0, 1), got "
                             f"{params.positive_weight}")
        pos_w = params.positive_weight / max(int(np.sum(labels == 1)), 1)
        neg_w = (1.0 - params.positive_weight) / max(int(np.sum(labels == 0)), 1)
    outside_w[labels == 1] = pos_w
    outside_w[labels == 0] = neg_w

    def unmap(values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full((n,) + values.shape[1:], fill, dtype=np.float32)
        out[inside] = values
        return out

    return AnchorTargets(unmap(labels, -1), unmap(targets, 0), unmap(inside_w, 0),
                         unmap(outside_w, 0))


# ----------------------------------------------------------------------------- RoI targets

@dataclass(frozen=True)
class RoISamplingParams:
    """Settings of the Fast R-CNN RoI sampling (cfg TRAIN.* keys)."""
    batch_size: int = 128            # -1: keep every labelled RoI (OHEM)
    fg_fraction: float = 0.25
    fg_thresh: float = 0.5
    bg_thresh_hi: float = 0.5
    bg_thresh_lo: float = 0.0
    normalize_means: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    normalize_stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    normalize: bool = True
    inside_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)


@dataclass
class RoISample:
    """A sampled RoI minibatch of B RoIs; K = num_classes.

    rois: (B, 5) float32 [0, x1, y1, x2, y2]; labels: (B,) float32 class per RoI, 0 for
    background; bbox_targets, inside_weights, outside_weights: (B, 4K) float32 with the
    (normalised) targets in the 4 columns of the RoI's class, zero elsewhere.
    """
    rois: np.ndarray
    labels: np.ndarray
    bbox_targets: np.ndarray
    inside_weights: np.ndarray
    outside_weights: np.ndarray


def sample_rois(rois: np.ndarray, gt_boxes: np.ndarray, num_classes: int,
                params: RoISamplingParams, rng: np.random.Generator) -> RoISample:
    """Sample foreground and background RoIs, as py-faster-rcnn's ProposalTargetLayer.

    Args:
        rois: (R, 5) proposals [batch_index, x1, y1, x2, y2]; batch_index must be 0.
        gt_boxes: (G, 5) x1 y1 x2 y2 class; they join the candidates.  G may be 0.
        num_classes: K, including background; gt classes must be in 1..K-1.
        params: thresholds, batch size and target normalisation.
        rng: the generator used for sampling.
    Returns:
        RoISample: foreground RoIs first (IoU >= fg_thresh with their best gt box), at most
        round(fg_fraction * batch_size); then background (best IoU in [bg_thresh_lo,
        bg_thresh_hi)) up to batch_size.  batch_size -1 keeps every foreground and
        background RoI.
    """
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    if len(rois) and np.any(rois[:, 0] != 0):
        raise ValueError("rois: only single-image batches (batch index 0) are supported")
    gt = valid_gt(gt_boxes)
    classes = gt[:, 4]
    if len(gt) and (np.any(classes < 1) or np.any(classes >= num_classes)
                    or np.any(classes != np.round(classes))):
        raise ValueError(f"gt_boxes: classes must be integers in 1..{num_classes - 1}, got "
                         f"{np.unique(classes).tolist()}")
    candidates = np.vstack([rois, np.hstack([np.zeros((len(gt), 1)), gt[:, :4]])])

    if len(gt):
        overlaps = bbox_overlaps(candidates[:, 1:5], gt[:, :4])
        assignment = overlaps.argmax(axis=1)
        max_overlaps = overlaps[np.arange(len(candidates)), assignment]
        labels = classes[assignment]
    else:
        assignment = np.zeros(len(candidates), dtype=np.int64)
        max_overlaps = np.zeros(len(candidates))
        labels = np.zeros(len(candidates))

    fg = np.flatnonzero(max_overlaps >= params.fg_thresh)
    bg = np.flatnonzero((max_overlaps < params.bg_thresh_hi)
                        & (max_overlaps >= params.bg_thresh_lo))
    if params.batch_size > 0:
        num_fg = min(int(round(params.fg_fraction * params.batch_size)), len(fg))
        fg = rng.choice(fg, size=num_fg, replace=False) if num_fg else fg[:0]
        num_bg = min(params.batch_size - num_fg, len(bg))
        bg = rng.choice(bg, size=num_bg, replace=False) if num_bg else bg[:0]
    keep = np.concatenate([fg, bg]).astype(np.int64)
    labels = labels[keep].copy()
    labels[len(fg):] = 0
    kept = candidates[keep]

    targets = np.zeros((len(keep), 4 * num_classes), dtype=np.float32)
    inside_w = np.zeros_like(targets)
    if len(fg) and len(gt):
        deltas = bbox_transform(kept[:len(fg), 1:5], gt[assignment[fg], :4])
        if params.normalize:
            deltas = (deltas - np.asarray(params.normalize_means)) / np.asarray(
                params.normalize_stds)
        cols = 4 * labels[:len(fg)].astype(np.int64)[:, None] + np.arange(4)
        rows = np.arange(len(fg))[:, None]
        targets[rows, cols] = deltas
        inside_w[rows, cols] = params.inside_weights
    outside_w = (inside_w > 0).astype(np.float32)
    return RoISample(kept.astype(np.float32), labels.astype(np.float32), targets, inside_w,
                     outside_w)
