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


def _iou_row(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    iw = np.maximum(np.minimum(gts[:, 2], box[2]) - np.maximum(gts[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gts[:, 3], box[3]) - np.maximum(gts[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih
    area = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    gt_area = (gts[:, 2] - gts[:, 0] + 1.0) * (gts[:, 3] - gts[:, 1] + 1.0)
    return inter / (area + gt_area - inter)


def class_ap(detections: Sequence[np.ndarray], gts: Sequence[GroundTruth],
             iou_thresh: float = 0.5, use_07_metric: bool = False
             ) -> tuple[float, np.ndarray, np.ndarray]:
    """AP of one class.

    Args:
        detections: per image, (D_i, 5) x1 y1 x2 y2 score.
        gts: per image (same length), that image's gt boxes of this class.
    Returns:
        (ap, recall, precision); ap is NaN when the class has no non-difficult gt box.
    """
    if len(detections) != len(gts):
        raise ValueError(f"{len(detections)} images of detections but {len(gts)} of gt")
    npos = int(sum(int(np.sum(~g.difficult.astype(bool))) for g in gts))
    image_ids = np.concatenate([np.full(len(d), i) for i, d in enumerate(detections)]
                               + [np.zeros(0, int)]).astype(np.int64)
    dets = np.vstack([np.asarray(d, np.float64).reshape(-1, 5) for d in detections]
                     + [np.zeros((0, 5))])
    order = np.argsort(-dets[:, 4], kind="stable")
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    matched = [np.zeros(len(g.boxes), bool) for g in gts]
    for rank, d in enumerate(order):
        g = gts[image_ids[d]]
        if len(g.boxes) == 0:
            fp[rank] = 1
            continue
        iou = _iou_row(dets[d, :4], np.asarray(g.boxes, np.float64))
        best = int(iou.argmax())
        if iou[best] > iou_thresh:
            if g.difficult[best]:
                continue
            if not matched[image_ids[d]][best]:
                tp[rank] = 1
                matched[image_ids[d]][best] = True
            else:
                fp[rank] = 1
        else:
            fp[rank] = 1
    return ap_from_ranked(tp, fp, npos, use_07_metric)


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
