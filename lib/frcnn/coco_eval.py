"""COCO detection metrics of a test run, computed by pycocotools (``COCOeval``, iouType bbox).

``coco_results`` turns per-class detections (``all_dets[c][i]``: (N, 5) x1 y1 x2 y2 score,
0-based inclusive) into COCO's results format: ``{'image_id', 'category_id' (the original
COCO id), 'bbox': [x, y, w, h] with w = x2 - x1 + 1, 'score'}``.  ``coco_summary`` evaluates
them against ground truth built from the records (``frcnn.data.coco.load_coco``'s, so only
the images tested count and bad entries left out by skip_bad are not held against the model):
boxes go back to [x, y, w, h] the same way and ``area`` is the file's (w * h when absent),
the same w * h pycocotools gives the detections; crowd objects keep ``iscrowd``.

The 12 numbers are COCOeval's ``stats`` under ``SUMMARY_NAMES``.  pycocotools writes -1 where
nothing can be measured (no ground truth in an area range, e.g. no large objects); that
becomes None (null in eval.json, '-' in the table), so a mean never mixes in a -1.  With no
detections at all every measurable number is 0.0 (pycocotools' ``loadRes`` refuses an empty
list, so an empty result set is built directly).
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from frcnn.data.coco import coco_box

SUMMARY_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_1", "AR_10",
                 "AR_100", "AR_small", "AR_medium", "AR_large")


def coco_results(all_dets: Sequence[Sequence[np.ndarray]], records: Sequence[dict],
                 category_ids: Sequence[int]) -> list[dict]:
    """Detections in COCO's results format (see the module docstring)."""
    out = []
    for c in range(1, len(all_dets)):
        for r, dets in zip(records, all_dets[c]):
            for det in np.asarray(dets).reshape(-1, 5):
                out.append({"image_id": int(r["coco_id"]),
                            "category_id": int(category_ids[c - 1]),
                            "bbox": [round(v, 2) for v in coco_box(det[:4])],
                            "score": round(float(det[4]), 5)})
    return out


def ground_truth(records: Sequence[dict], classes: Sequence[str],
                 category_ids: Sequence[int]) -> dict:
    """A COCO ground-truth dict of the records."""
    images, annotations = [], []
    for r in records:
        images.append({"id": int(r["coco_id"]), "width": int(r["width"]),
                       "height": int(r["height"]), "file_name": Path(r["image"]).name})
        crowd = np.asarray(r.get("crowd", np.zeros(len(r["boxes"]))), bool)
        areas = r.get("areas")
        for g, (box, label) in enumerate(zip(r["boxes"], r["gt_classes"])):
            bbox = coco_box(box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(r["coco_id"]),
                "category_id": int(category_ids[int(label) - 1]), "bbox": bbox,
                "area": float(areas[g]) if areas is not None else bbox[2] * bbox[3],
                "iscrowd": int(crowd[g])})
    categories = [{"id": int(i), "name": n} for i, n in zip(category_ids, classes[1:])]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_summary(results: list[dict], gt: dict) -> dict[str, float | None]:
    """COCOeval's 12 summary numbers by name (-1 -> None) for results against gt."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"],
                               "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: (None if v < 0 else round(float(v), 4))
            for name, v in zip(SUMMARY_NAMES, ev.stats)}


def format_summary(summary: dict[str, float | None]) -> str:
    """The COCO summary as a two-column table."""
    lines = ["COCO metric        value", "-" * 24]
    for name in SUMMARY_NAMES:
        v = summary.get(name)
        lines.append(f"{name:<16}  {'     -' if v is None else f'{v:6.4f}'}")
    return "\n".join(lines)


def evaluate_test_run(out: Path, all_dets, records: Sequence[dict], dataset) -> dict:
    """Write ``out/coco_results.json`` and return the COCO summary of a test run on a COCO
    dataset (``dataset.category_ids``)."""
    results = coco_results(all_dets, records, dataset.category_ids)
    (Path(out) / "coco_results.json").write_text(json.dumps(results) + "\n")
    return coco_summary(results, ground_truth(records, dataset.classes,
                                              dataset.category_ids))
