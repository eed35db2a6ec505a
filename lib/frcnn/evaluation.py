"""PASCAL VOC detection metrics: average precision per class and mean AP.

Semantics of the VOC devkit as py-faster-rcnn's ``voc_eval`` implements them: a detection is
a true positive when its IoU with an unmatched gt box of its class exceeds the threshold
(0.5); a second detection of the same gt box is a false positive; detections matched to a
difficult gt box count as neither, and difficult boxes are not in the number of positives.
IoU uses inclusive pixel coordinates (width = x2 - x1 + 1).  Detections are ranked by score,
ties by the order given (a stable sort).

Two AP definitions: the VOC2007 11-point interpolation (``use_07_metric=True``) and the
VOC2010+ area under the monotone precision envelope.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from frcnn.boxes import bbox_overlaps


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """AP from a recall/precision curve (arrays in ranked-detection order)."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = precision[recall >= t]
            ap += (above.max() if above.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class GroundTruth:
    """One image's gt boxes of one class: boxes (G, 4) inclusive pixels, difficult (G,) bool."""
    boxes: np.ndarray
    difficult: np.ndarray


@dataclass
class RankedDetections:
    """One class' detections in ranked order (score descending, ties in the order given),
    each with the highest-IoU gt box of the class in its image (D rows).

    image (D,) int64 image index; boxes (D, 4) float64; scores (D,) float64; gt (D,) int64
    the index of that gt box in the arrays given to ``rank_detections``, -1 where the image
    has none; iou (D,) float64 that IoU, 0 where none.
    """
    image: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    gt: np.ndarray
    iou: np.ndarray


def rank_detections(detections: Sequence[np.ndarray], gt_image: np.ndarray,
                    gt_boxes: np.ndarray) -> RankedDetections:
    """Rank one class' detections and find each one's best gt box of the class.

    Args:
        detections: per image, (D_i, 5) x1 y1 x2 y2 score.
        gt_image: (T,) int image index of each gt box of the class, in image order.
        gt_boxes: (T, 4) the gt boxes, inclusive pixels.
    """
    per_image = [np.asarray(d, np.float64).reshape(-1, 5) for d in detections]
    image = np.concatenate([np.full(len(d), i, np.int64) for i, d in enumerate(per_image)]
                           + [np.zeros(0, np.int64)])
    dets = np.vstack(per_image + [np.zeros((0, 5))])
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    best_gt = np.full(len(dets), -1, np.int64)
    best_iou = np.zeros(len(dets))
    bounds = np.searchsorted(np.asarray(gt_image), np.arange(len(per_image) + 1))
    start = 0
    for i, d in enumerate(per_image):                  # IoUs image by image, in given order
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        if len(d) and hi > lo:
            iou = bbox_overlaps(d[:, :4], gt_boxes[lo:hi])
            best_gt[start:start + len(d)] = lo + iou.argmax(axis=1)
            best_iou[start:start + len(d)] = iou.max(axis=1)
        start += len(d)
    order = np.argsort(-dets[:, 4], kind="stable")
    return RankedDetections(image[order], dets[order, :4], dets[order, 4], best_gt[order],
                            best_iou[order])


def voc_outcomes(ranked: RankedDetections, ignored: np.ndarray, iou_thresh: float
                 ) -> np.ndarray:
    """(D,) int8 outcome of each ranked detection under VOC matching: 1 a true positive, 0 a
    false positive (no gt above the IoU threshold, or its gt already taken), -1 neither
    (its best gt is ``ignored`` (T,) bool: difficult, or outside what is measured)."""
    outcome = np.zeros(len(ranked.gt), np.int8)        # no gt in the image: a false positive
    matched = np.zeros(len(ignored), bool)
    for k in np.flatnonzero(ranked.iou > iou_thresh):
        g = ranked.gt[k]
        if ignored[g]:
            outcome[k] = -1
        elif not matched[g]:
            outcome[k] = 1
            matched[g] = True
    return outcome


def class_ap(detections: Sequence[np.ndarray], gts: Sequence[GroundTruth],
             iou_thresh: float = 0.5, use_07_metric: bool = False
             ) -> tuple[float, np.ndarray, np.ndarray]:
    """AP of one class.

    Args:
        detections: per image, (D_i, 5) x1 y1 x2 y2 score.
        gts: per image (same length), that image's gt boxes of this class.
    Returns:
        (ap, recall, precision), the curves (D,) over all ranked detections; ap is NaN when
        the class has no non-difficult gt box.
    """
    if len(detections) != len(gts):
        raise ValueError(f"{len(detections)} images of detections but {len(gts)} of gt")
    boxes = [np.asarray(g.boxes, np.float64).reshape(-1, 4) for g in gts]
    gt_image = np.concatenate([np.full(len(b), i, np.int64) for i, b in enumerate(boxes)]
                              + [np.zeros(0, np.int64)])
    difficult = np.concatenate([np.asarray(g.difficult, bool).reshape(-1) for g in gts]
                               + [np.zeros(0, bool)])
    ranked = rank_detections(detections, gt_image, np.vstack(boxes + [np.zeros((0, 4))]))
    outcome = voc_outcomes(ranked, difficult, iou_thresh)
    return ap_from_outcomes(outcome, int(np.sum(~difficult)), use_07_metric)


def ap_from_outcomes(outcome: np.ndarray, npos: int, use_07_metric: bool = False
                     ) -> tuple[float, np.ndarray, np.ndarray]:
    """(ap, recall, precision) from ranked ``voc_outcomes`` (1 tp, 0 fp, -1 neither)."""
    return ap_from_ranked(outcome == 1, outcome == 0, npos, use_07_metric)


def ap_from_ranked(tp: np.ndarray, fp: np.ndarray, npos: int, use_07_metric: bool = False
                   ) -> tuple[float, np.ndarray, np.ndarray]:
    """(ap, recall, precision) from ranked detections' 0/1 flags tp (D,) and fp (D,) (a
    detection may be neither: matched to a difficult box); ap is NaN when npos is 0."""
    tp = np.cumsum(np.asarray(tp, np.float64))
    fp = np.cumsum(np.asarray(fp, np.float64))
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if npos == 0:
        return float("nan"), np.zeros_like(tp), precision
    recall = tp / npos
    return voc_ap(recall, precision, use_07_metric), recall, precision


def evaluate(all_detections: Sequence[Sequence[np.ndarray]], annotations: Sequence[dict],
             class_names: Sequence[str], iou_thresh: float = 0.5,
             use_07_metric: bool = True) -> dict[str, float]:
    """AP per class (background excluded) and their mean.

    Args:
        all_detections: [class index][image index] -> (D, 5) x1 y1 x2 y2 score; index 0
            (background) is ignored.
        annotations: per image, a dict with 'boxes' (G, 4), 'gt_classes' (G,) and optionally
            'difficult' (G,) bool (a roidb entry has these).
        class_names: K names, index 0 the background.
    Returns:
        {class name: AP, ..., 'mAP': mean over classes with gt boxes}.
    """
    results: dict[str, float] = {}
    for c in range(1, len(class_names)):
        gts = []
        for a in annotations:
            mask = np.asarray(a["gt_classes"]) == c
            difficult = np.asarray(a.get("difficult", np.zeros(len(mask), bool)), bool)
            gts.append(GroundTruth(np.asarray(a["boxes"], np.float64).reshape(-1, 4)[mask],
                                   difficult[mask]))
        ap, _, _ = class_ap(all_detections[c], gts, iou_thresh, use_07_metric)
        results[class_names[c]] = ap
    aps = [v for v in results.values() if not np.isnan(v)]
    results["mAP"] = float(np.mean(aps)) if aps else float("nan")
    return results


def format_table(aps_07: dict[str, float], aps_area: dict[str, float]) -> str:
    """A per-class AP table with both metrics."""
    names = [n for n in aps_07 if n != "mAP"]
    width = max([len(n) for n in names] + [5])
    lines = [f"{'class':<{width}}  AP(VOC07)  AP(area)", "-" * (width + 21)]
    for n in names + ["mAP"]:
        a, b = aps_07[n], aps_area[n]
        fmt = lambda v: "      -" if np.isnan(v) else f"{v:7.4f}"  # noqa: E731
        lines.append(f"{n:<{width}}  {fmt(a):>9}  {fmt(b):>8}")
    return "\n".join(lines)
