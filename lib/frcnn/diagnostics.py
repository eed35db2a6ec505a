"""Where a detector's errors are: proposal recall, AP by object size, false positives by kind.

Pure numpy (matplotlib only inside ``write_pr_curves``); no Caffe.  Conventions as in
``evaluation.py``: boxes x1 y1 x2 y2 in inclusive pixels of the original image (width =
x2 - x1 + 1), IoU as py-faster-rcnn's ``bbox_overlaps``; ground truth is a record's
'boxes' (G, 4), 'gt_classes' (G,) and optional 'difficult' (G,); ``all_dets[c][i]`` is class
c's (D, 5) x1 y1 x2 y2 score in image i (class 0, the background, is ignored).

**Proposal recall** (``proposal_recall``, ``ProposalRecallEvaluator``): the fraction of the
non-difficult gt boxes (every class together) covered by an image's first N proposals (the
RPN's are sorted by objectness; given proposals are taken in the order given) with IoU >= t.
Proposals and gt boxes are matched one to one, greedily, as py-faster-rcnn's
``imdb.evaluate_recall`` and detectron2 do: repeatedly the pair with the highest IoU is taken
and both leave the pool.  An image with fewer than N proposals uses all it has, so the
report also gives the number produced (per image: mean, min, max) and used at each N.

**Size buckets** (``size_buckets``): by sqrt(area), area = width * height (inclusive pixels)
in the original image, against thresholds (default COCO's 32 and 96): small
sqrt(area) < 32, medium 32 <= sqrt(area) < 96, large sqrt(area) >= 96 (lower bounds
inclusive; compared as areas, so an integer box is bucketed exactly).

**AP by size** (``ap_by_size``): VOC matching (IoU > 0.5, best-overlap gt, duplicates false
positives, as ``evaluation.class_ap``) with the gt boxes outside the bucket treated as
difficult (a detection matched to one counts as neither), and, as COCO's area ranges do,
false positives whose own box is outside the bucket ignored.  Bucket 'all' keeps every box:
its APs are ``evaluation.evaluate``'s.

The matching is ``evaluation.class_ap``'s (``rank_detections``, ``voc_outcomes``), one
gt table for every class (``GtTable``).

**False positives by kind** (``false_positives``; Hoiem et al. 2012, simplified): per class,
the top N ranked detections with N = the class's number of non-difficult gt boxes (where
precision equals recall; or those scoring >= ``score_thresh``), detections matched to a
difficult box left out.  Each false positive is

- localisation: its best same-class gt has 0.1 <= IoU <= 0.5 (not enough for VOC's > 0.5),
  or IoU > 0.5 with a gt already matched by a higher-scored detection (a duplicate);
- confusion: otherwise, IoU >= 0.1 with a gt box of another class;
- background: otherwise.

The gt boxes without a true positive (false negatives) are counted by size, both within that
selection and over every detection kept (those the detector can never recover).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from frcnn.boxes import bbox_overlaps
from frcnn.evaluation import (GroundTruth, RankedDetections, ap_from_outcomes, class_ap,
                              rank_detections, voc_ap, voc_outcomes)

DEFAULT_IOUS = (0.5, 0.7)
DEFAULT_TOP_N = (50, 100, 300)
DEFAULT_SIZE_THRESHOLDS = (32.0, 96.0)       # sqrt(area), COCO's
SIZE_NAMES = ("small", "medium", "large")
LOCALISATION_MIN_IOU = 0.1
KINDS = ("localisation", "confusion", "background")


# ----------------------------------------------------------------------------- helpers

def _boxes(x) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(-1, 4)


def _areas(boxes: np.ndarray) -> np.ndarray:
    b = _boxes(boxes)
    return (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)


def _gt(record: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (G, 4) float64, classes (G,) int, difficult (G,) bool) of a record."""
    boxes = _boxes(record["boxes"])
    classes = np.asarray(record["gt_classes"]).reshape(-1).astype(np.int64)
    difficult = np.asarray(record.get("difficult", np.zeros(len(boxes), bool)),
                           bool).reshape(-1)
    return boxes, classes, difficult


def _key(t: float) -> str:
    return f"{t:g}"


def _nan_mean(values) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


def check_size_thresholds(thresholds: Sequence[float]) -> tuple[float, float]:
    """(small/medium, medium/large) as floats; ValueError unless 0 < first < second."""
    t = tuple(float(x) for x in thresholds)
    if len(t) != 2 or not 0 < t[0] < t[1] or not all(map(math.isfinite, t)):
        raise ValueError(f"size thresholds must be two numbers 0 < small/medium < "
                         f"medium/large (sqrt of the box area in pixels), got {thresholds!r}")
    return t


def size_buckets(boxes, thresholds: Sequence[float] = DEFAULT_SIZE_THRESHOLDS) -> np.ndarray:
    """(N,) int: 0 small, 1 medium, 2 large, by sqrt(area) against (t1, t2): < t1, [t1, t2),
    >= t2; area = (x2 - x1 + 1) * (y2 - y1 + 1).  ``boxes`` (N, 4)."""
    t1, t2 = check_size_thresholds(thresholds)
    return np.searchsorted(np.array([t1 * t1, t2 * t2]), _areas(boxes), side="right")


def size_thresholds_info(thresholds: Sequence[float] = DEFAULT_SIZE_THRESHOLDS) -> dict:
    """The bucket definition as eval.json states it (None: no upper bound)."""
    t1, t2 = check_size_thresholds(thresholds)
    return {"measure": "sqrt(area), area = (x2 - x1 + 1) * (y2 - y1 + 1) in original-image "
                       "pixels; lower bounds inclusive, upper exclusive",
            "small": [0.0, t1], "medium": [t1, t2], "large": [t2, None]}


def describe_sizes(thresholds: Sequence[float] = DEFAULT_SIZE_THRESHOLDS) -> str:
    t1, t2 = check_size_thresholds(thresholds)
    return (f"size = sqrt(box area) in image pixels: small < {t1:g}, medium {t1:g}-{t2:g}, "
            f"large >= {t2:g}")


# ----------------------------------------------------------------------------- proposals

def matched_overlaps(proposals, gt_boxes) -> np.ndarray:
    """(G,) float64: each gt box's IoU with the proposal it gets in a greedy one-to-one
    matching (the highest-IoU pair first, both then removed; py-faster-rcnn's
    evaluate_recall); 0 for a gt box left without a proposal."""
    gt_boxes = _boxes(gt_boxes)
    proposals = _boxes(proposals)
    out = np.zeros(len(gt_boxes))
    if not len(gt_boxes) or not len(proposals):
        return out
    iou = bbox_overlaps(proposals, gt_boxes)          # (P, G)
    for _ in range(min(iou.shape)):
        p, g = np.unravel_index(int(np.argmax(iou)), iou.shape)
        if iou[p, g] < 0:
            break
        out[g] = iou[p, g]
        iou[p, :] = -1.0
        iou[:, g] = -1.0
    return out


class ProposalRecallEvaluator:
    """Proposal recall at IoU thresholds for top-N proposals (see the module docstring).

    ``process(record, proposals)`` per image (proposals (P, 4) in original-image pixels,
    best first; None when the backend gave none: the image is counted as skipped),
    ``evaluate()`` the nested dict of ``proposal_recall``.
    """

    def __init__(self, ious: Sequence[float] = DEFAULT_IOUS,
                 top_n: Sequence[int] = DEFAULT_TOP_N, source: str = "rpn"):
        self.ious = tuple(float(t) for t in ious)
        self.top_n = tuple(int(n) for n in top_n)
        if not self.ious or not self.top_n or min(self.top_n) < 1:
            raise ValueError(f"need IoU thresholds and top-N >= 1, got {ious!r}, {top_n!r}")
        self.source = source
        self.reset()

    def reset(self) -> None:
        self._overlaps = {n: [] for n in self.top_n}
        self._produced: list[int] = []
        self._skipped = 0

    def process(self, record: dict, proposals) -> None:
        if proposals is None:
            self._skipped += 1
            return
        proposals = _boxes(proposals)
        boxes, _, difficult = _gt(record)
        gt = boxes[~difficult]
        self._produced.append(len(proposals))
        for n in self.top_n:
            self._overlaps[n].append(matched_overlaps(proposals[:n], gt))

    def evaluate(self) -> dict:
        produced = np.array(self._produced, np.float64)
        num_gt = int(sum(len(o) for o in self._overlaps[self.top_n[0]]))
        recall, used = {}, {}
        for n in self.top_n:
            ov = np.concatenate(self._overlaps[n] + [np.zeros(0)])
            recall[str(n)] = {_key(t): (float(np.mean(ov >= t)) if num_gt else float("nan"))
                              for t in self.ious}
            used[str(n)] = float(np.mean(np.minimum(produced, n))) if len(produced) else 0.0
        return {
            "source": self.source,
            "images": len(self._produced),
            "images_without_proposals": self._skipped,
            "num_gt": num_gt,
            "proposals_per_image": {
                "mean": float(produced.mean()) if len(produced) else 0.0,
                "min": int(produced.min()) if len(produced) else 0,
                "max": int(produced.max()) if len(produced) else 0},
            "recall": recall,
            "proposals_used": used,
            "matching": "one-to-one greedy (py-faster-rcnn's evaluate_recall), IoU >= t, "
                        "difficult gt excluded",
        }


def proposal_recall(proposals: Sequence[np.ndarray], annotations: Sequence[dict],
                    ious: Sequence[float] = DEFAULT_IOUS, top_n: Sequence[int] = DEFAULT_TOP_N,
                    source: str = "rpn") -> dict:
    """Recall of the proposals (per image (P_i, 4), best first) of the records' gt boxes.

    Returns:
        {'recall': {'N': {'t': recall}}, 'proposals_used': {'N': mean min(N, P_i)},
        'proposals_per_image': {'mean', 'min', 'max'}, 'num_gt', 'images', 'source', ...};
        recall is NaN when there is no non-difficult gt box.
    """
    if len(proposals) != len(annotations):
        raise ValueError(f"{len(proposals)} images of proposals but {len(annotations)} records")
    ev = ProposalRecallEvaluator(ious, top_n, source)
    for record, props in zip(annotations, proposals):
        ev.process(record, props)
    return ev.evaluate()


# ----------------------------------------------------------------------------- matching

@dataclass
class GtTable:
    """Every image's gt boxes in one table, image by image in record order (T rows)."""
    image: np.ndarray        # (T,) int64 image index
    boxes: np.ndarray        # (T, 4) float64
    classes: np.ndarray      # (T,) int64
    difficult: np.ndarray    # (T,) bool
    num_images: int

    @classmethod
    def from_records(cls, annotations: Sequence[dict]) -> "GtTable":
        parts = [_gt(a) for a in annotations]
        return cls(np.concatenate([np.full(len(p[0]), i, np.int64) for i, p in enumerate(parts)]
                                  + [np.zeros(0, np.int64)]),
                   np.vstack([p[0] for p in parts] + [np.zeros((0, 4))]),
                   np.concatenate([p[1] for p in parts] + [np.zeros(0, np.int64)]),
                   np.concatenate([p[2] for p in parts] + [np.zeros(0, bool)]),
                   len(parts))

    def rows(self, i: int) -> slice:
        lo, hi = np.searchsorted(self.image, [i, i + 1])
        return slice(int(lo), int(hi))


def _ranked(detections: Sequence[np.ndarray], table: GtTable, c: int) -> RankedDetections:
    """Class c's detections ranked, each with its best same-class gt as a GtTable row."""
    if len(detections) != table.num_images:
        raise ValueError(f"{len(detections)} images of detections but {table.num_images} of gt")
    rows = np.flatnonzero(table.classes == c)          # in image order
    r = rank_detections(detections, table.image[rows], table.boxes[rows])
    has_gt = r.gt >= 0
    r.gt[has_gt] = rows[r.gt[has_gt]]
    return r


def class_ground_truth(annotations: Sequence[dict], c: int) -> list[GroundTruth]:
    """Per image, class c's gt boxes and difficult flags (as ``evaluation.evaluate``)."""
    out = []
    for a in annotations:
        boxes, classes, difficult = _gt(a)
        out.append(GroundTruth(boxes[classes == c], difficult[classes == c]))
    return out


# ----------------------------------------------------------------------------- AP by size

def ap_by_size(all_dets: Sequence[Sequence[np.ndarray]], annotations: Sequence[dict],
               class_names: Sequence[str],
               thresholds: Sequence[float] = DEFAULT_SIZE_THRESHOLDS,
               iou_thresh: float = 0.5, use_07_metric: bool = True) -> dict:
    """AP per class in each size bucket (see the module docstring).

    Returns:
        {'ap': {bucket: {class: AP, 'mAP': mean over classes with gt}}, 'num_gt': {bucket:
        {class: non-difficult gt boxes, 'total'}}, 'metric', 'iou'}; buckets 'all', 'small',
        'medium', 'large'; AP NaN where a class has no gt box in the bucket.
    """
    thresholds = check_size_thresholds(thresholds)
    table = GtTable.from_records(annotations)
    gt_bucket = size_buckets(table.boxes, thresholds)
    names = ("all",) + SIZE_NAMES
    result_ap: dict[str, dict[str, float]] = {b: {} for b in names}
    result_n: dict[str, dict[str, int]] = {b: {} for b in names}
    for c in range(1, len(class_names)):
        m = _ranked(all_dets[c], table, c)
        det_bucket = size_buckets(m.boxes, thresholds)
        for b, bucket in enumerate(names):
            ignored = table.difficult.copy()
            if bucket != "all":
                ignored |= gt_bucket != b - 1
            outcome = voc_outcomes(m, ignored, iou_thresh)
            if bucket != "all":            # false positives outside the bucket: ignored
                outcome[(outcome == 0) & (det_bucket != b - 1)] = -1
            npos = int(np.sum((table.classes == c) & ~ignored))
            result_ap[bucket][class_names[c]] = ap_from_outcomes(outcome, npos, use_07_metric)[0]
            result_n[bucket][class_names[c]] = npos
    for b in names:
        result_ap[b]["mAP"] = _nan_mean(result_ap[b].values())
        result_n[b]["total"] = int(sum(result_n[b].values()))
    return {"metric": "VOC07 11-point" if use_07_metric else "VOC area",
            "iou": iou_thresh, "ap": result_ap, "num_gt": result_n}


# ----------------------------------------------------------------------------- FP kinds

def false_positives(all_dets: Sequence[Sequence[np.ndarray]], annotations: Sequence[dict],
                    class_names: Sequence[str], iou_thresh: float = 0.5,
                    score_thresh: float | None = None,
                    thresholds: Sequence[float] = DEFAULT_SIZE_THRESHOLDS) -> dict:
    """False positives by kind and missed gt boxes by size (see the module docstring).

    Args:
        score_thresh: None: per class the top N detections, N = its non-difficult gt count;
            else the detections scoring >= score_thresh.
    Returns:
        {'selection', 'per_class': {class: {'detections', 'tp', 'localisation', 'confusion',
        'background', 'missed', 'confused_with': {class: n}}}, 'total': {... the same
        counts}, 'fractions': {kind: share of the false positives}, 'missed': {'selection':
        {bucket: n, 'total'}, 'any_detection': {...}}, 'num_gt': {bucket: n, 'total'}}.
    """
    thresholds = check_size_thresholds(thresholds)
    table = GtTable.from_records(annotations)
    gt_bucket = size_buckets(table.boxes, thresholds)
    counts = ("detections", "tp") + KINDS + ("missed",)
    per_class: dict[str, dict] = {}
    missed_sel = np.zeros(3, np.int64)
    missed_any = np.zeros(3, np.int64)
    for c in range(1, len(class_names)):
        m = _ranked(all_dets[c], table, c)
        outcome = voc_outcomes(m, table.difficult, iou_thresh)
        positive = (table.classes == c) & ~table.difficult
        npos = int(positive.sum())
        ranked = np.flatnonzero(outcome >= 0)
        if score_thresh is None:
            selected = ranked[:npos]
        else:
            selected = ranked[m.scores[ranked] >= score_thresh]
        row = {k: 0 for k in counts}
        row["detections"] = int(len(selected))
        confused_with: dict[str, int] = {}
        for k in selected:
            if outcome[k] == 1:
                row["tp"] += 1
            elif m.iou[k] >= LOCALISATION_MIN_IOU:     # near one of its class, or a duplicate
                row["localisation"] += 1
            else:
                rows = table.rows(int(m.image[k]))
                other = np.flatnonzero(table.classes[rows] != c) + rows.start
                iou = bbox_overlaps(m.boxes[k:k + 1], table.boxes[other])[0]
                if len(iou) and iou.max() >= LOCALISATION_MIN_IOU:
                    row["confusion"] += 1
                    name = class_names[int(table.classes[other[int(iou.argmax())]])]
                    confused_with[name] = confused_with.get(name, 0) + 1
                else:
                    row["background"] += 1
        # misses: non-difficult gt of the class without a true positive, by size
        for subset, tally in ((selected, missed_sel), (ranked, missed_any)):
            hit = np.zeros(len(positive), bool)
            hit[m.gt[subset[outcome[subset] == 1]]] = True
            tally += np.bincount(gt_bucket[positive & ~hit], minlength=3)
        row["missed"] = npos - row["tp"]
        row["confused_with"] = dict(sorted(confused_with.items(), key=lambda kv: -kv[1]))
        per_class[class_names[c]] = row
    keep = (table.classes >= 1) & (table.classes < len(class_names)) & ~table.difficult
    num_gt = np.bincount(gt_bucket[keep], minlength=3)
    total = {k: int(sum(r[k] for r in per_class.values())) for k in counts}
    fps = sum(total[k] for k in KINDS)
    fractions = {k: (total[k] / fps if fps else float("nan")) for k in KINDS}

    def by_size(v):
        return {**{n: int(x) for n, x in zip(SIZE_NAMES, v)}, "total": int(v.sum())}

    return {"selection": ("top N detections per class, N = its number of non-difficult gt "
                          "boxes" if score_thresh is None else f"detections with score >= "
                          f"{score_thresh:g}"),
            "iou": iou_thresh, "localisation_iou": [LOCALISATION_MIN_IOU, iou_thresh],
            "per_class": per_class, "total": total, "fractions": fractions,
            "missed": {"selection": by_size(missed_sel), "any_detection": by_size(missed_any)},
            "num_gt": by_size(num_gt)}


def diagnose(all_dets, annotations, class_names,
             size_thresholds: Sequence[float] = DEFAULT_SIZE_THRESHOLDS,
             use_07_metric: bool = True, score_thresh: float | None = None) -> dict:
    """eval.json's 'ap_by_size', 'false_positives' and 'size_thresholds'."""
    return {"size_thresholds": size_thresholds_info(size_thresholds),
            "ap_by_size": ap_by_size(all_dets, annotations, class_names, size_thresholds,
                                     use_07_metric=use_07_metric),
            "false_positives": false_positives(all_dets, annotations, class_names,
                                               score_thresh=score_thresh,
                                               thresholds=size_thresholds)}


# ----------------------------------------------------------------------------- tables

def _f(v, width: int = 7, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return f"{'-':>{width}}"
    return f"{v:{width}.{digits}f}"


def format_proposal_recall(pr: dict) -> str:
    what = ("RPN proposal recall (best objectness first" if pr.get("source") == "rpn"
            else "Recall of the given proposals (--proposals of a Fast R-CNN net, in the "
                 "file's order")
    per = pr["proposals_per_image"]
    ious = list(next(iter(pr["recall"].values())))
    lines = [f"{what}; {per['mean']:.1f} per image, min {per['min']}, max {per['max']}; "
             f"{pr['num_gt']} gt boxes, matched one to one, IoU >= t)",
             f"{'proposals':<10}" + "".join(f"  IoU{t:<4}" for t in ious) + "  used/image"]
    lines.append("-" * len(lines[1]))
    short = False
    for n, row in pr["recall"].items():
        used = pr["proposals_used"][n]
        mark = "*" if used < int(n) else " "
        short |= used < int(n)
        lines.append(f"{n + mark:<10}" + "".join(f"  {_f(row[t])}" for t in ious)
                     + f"  {used:10.1f}")
    if short:
        lines.append("* fewer proposals produced than N: recall at min(N, produced)")
    return "\n".join(lines)


def format_ap_by_size(ap: dict, info: dict) -> str:
    t1, t2 = info["medium"]
    names = [n for n in ap["ap"]["all"] if n != "mAP"]
    width = max([len(n) for n in names] + [5])
    buckets = list(ap["ap"])
    lines = [f"AP by object size ({ap['metric']}, IoU > {ap['iou']:g}; "
             f"{describe_sizes((t1, t2))})",
             f"{'class':<{width}}" + "".join(f"  {b:>7}" for b in buckets)]
    lines.append("-" * len(lines[1]))
    for n in names + ["mAP"]:
        lines.append(f"{n:<{width}}" + "".join(f"  {_f(ap['ap'][b][n])}" for b in buckets))
    lines.append(f"{'gt':<{width}}" + "".join(f"  {ap['num_gt'][b]['total']:7d}"
                                              for b in buckets))
    return "\n".join(lines)


def format_false_positives(fp: dict) -> str:
    names = list(fp["per_class"])
    width = max([len(n) for n in names] + [5])
    cols = ("detections", "tp") + KINDS + ("missed",)
    lines = [f"False positives by kind ({fp['selection']}; localisation: IoU "
             f"{fp['localisation_iou'][0]:g}-{fp['localisation_iou'][1]:g} with its class or a "
             f"duplicate, confusion: IoU >= {fp['localisation_iou'][0]:g} with another class)",
             f"{'class':<{width}}" + "".join(f"  {c:>{max(len(c), 5)}}" for c in cols)]
    lines.append("-" * len(lines[1]))
    for n, row in list(fp["per_class"].items()) + [("total", fp["total"])]:
        lines.append(f"{n:<{width}}" + "".join(f"  {row[c]:>{max(len(c), 5)}d}" for c in cols))
    fr = fp["fractions"]
    lines.append("false positives: " + ", ".join(
        f"{k} {'-' if math.isnan(fr[k]) else f'{100 * fr[k]:.0f}%'}" for k in KINDS))
    n = fp["num_gt"]
    for label, key in (("missed at this cut", "selection"),
                       ("missed by every detection", "any_detection")):
        m = fp["missed"][key]
        lines.append(f"{label}: " + ", ".join(f"{s} {m[s]}/{n[s]}" for s in SIZE_NAMES)
                     + f" (total {m['total']}/{n['total']})")
    return "\n".join(lines)


def format_diagnostics(report: dict) -> str:
    """The printed tables of whichever of 'proposal_recall', 'ap_by_size' and
    'false_positives' the report (eval.json's dict) has."""
    parts = []
    if report.get("proposal_recall", {}).get("images"):
        parts.append(format_proposal_recall(report["proposal_recall"]))
    if "ap_by_size" in report:
        parts.append(format_ap_by_size(report["ap_by_size"],
                                       report.get("size_thresholds", size_thresholds_info())))
    if "false_positives" in report:
        parts.append(format_false_positives(report["false_positives"]))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- summary

def error_summary(report: dict) -> str:
    """A few lines on where the remaining errors are, from eval.json's dict (as run_test
    writes it or json.load reads it back); lines whose keys are missing are left out."""
    lines = []
    pr = report.get("proposal_recall") or {}
    if pr.get("images") and pr.get("recall"):
        n = "100" if "100" in pr["recall"] else max(pr["recall"], key=int)
        row = pr["recall"][n]
        what = "RPN proposals" if pr.get("source") == "rpn" else "given proposals"
        lines.append(f"{what}: recall@{n} " + ", ".join(
            f"IoU{t} {_f(v, 0, 2).strip()}" for t, v in row.items())
            + f" ({pr['proposals_used'][n]:.0f} used per image)")
    aps = report.get("ap_voc07") or {}
    classes = {k: v for k, v in aps.items() if k != "mAP" and not math.isnan(v)}
    if classes:
        weakest = min(classes, key=classes.get)
        lines.append(f"weakest class: {weakest} AP {classes[weakest]:.2f} "
                     f"(VOC07 mAP {aps.get('mAP', float('nan')):.2f})")
    size = report.get("ap_by_size")
    if size:
        lines.append("AP by size: " + ", ".join(
            f"{b} {_f(size['ap'][b]['mAP'], 0, 2).strip()} ({size['num_gt'][b]['total']})"
            for b in SIZE_NAMES))
    fp = report.get("false_positives")
    if fp:
        cut = ("in the top-N" if fp["selection"].startswith("top")
               else fp["selection"].replace("detections with", "at"))
        fr = {k: v for k, v in fp["fractions"].items() if not math.isnan(v)}
        if fr:
            parts = ", ".join(f"{100 * v:.0f}% {k}" for k, v in
                              sorted(fr.items(), key=lambda kv: -kv[1]))
            confused = [(c, o, k) for c, r in fp["per_class"].items()
                        for o, k in r.get("confused_with", {}).items()]
            if confused:
                c, o, k = max(confused, key=lambda t: t[2])
                parts += f"; most confused: {c} detections on {o} objects ({k})"
            lines.append(f"false positives ({fp['total']['detections'] - fp['total']['tp']} "
                         f"{cut}): {parts}")
        else:
            lines.append(f"false positives: none {cut}")
        missed, num = fp["missed"]["any_detection"], fp["num_gt"]
        if missed["total"]:
            most = max(missed[s] for s in SIZE_NAMES)
            worst = " and ".join(s for s in SIZE_NAMES if missed[s] == most)
            lines.append(f"misses: {missed['total']} of {num['total']} objects never detected, "
                         f"mostly {worst} (" + ", ".join(f"{s} {missed[s]}/{num[s]}"
                                                         for s in SIZE_NAMES) + ")")
        else:
            lines.append(f"misses: every one of the {num['total']} objects detected at "
                         f"some score")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- PR curves

def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def write_pr_curves(out: str | Path, all_dets, annotations, class_names,
                    iou_thresh: float = 0.5) -> list[Path]:
    """out/pr_<class>.png per class (background excluded): precision against recall, the
    VOC07 and area APs in the title.  matplotlib's Agg canvas, without pyplot.  Returns the
    paths written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in range(1, len(class_names)):
        gts = class_ground_truth(annotations, c)
        ap07, recall, precision = class_ap(all_dets[c], gts, iou_thresh, use_07_metric=True)
        ap = ap07 if math.isnan(ap07) else voc_ap(recall, precision, use_07_metric=False)
        fig = Figure(figsize=(4.5, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        if math.isnan(ap07):
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center")
        elif not len(recall):
            ax.text(0.5, 0.5, "no detections", ha="center", va="center")
        else:
            ax.plot(recall, precision, color="tab:blue", lw=1.5, label="precision")
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            ax.plot(recall, envelope, color="tab:orange", lw=1.0, ls="--",
                    label="interpolated")
            ax.legend(loc="best", fontsize=8)
        ax.set_xlim(0, 1.0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(True, alpha=0.3)
        title = "-" if math.isnan(ap07) else f"{ap07:.3f}"
        title2 = "-" if math.isnan(ap) else f"{ap:.3f}"
        ax.set_title(f"{class_names[c]}: AP {title} (VOC07), {title2} (area)", fontsize=10)
        fig.tight_layout()
        path = out / f"pr_{_safe_name(class_names[c])}.png"
        fig.savefig(path)
        paths.append(path)
    return paths
