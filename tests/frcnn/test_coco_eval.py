"""COCO metrics (frcnn.coco_eval, pycocotools) of hand-made detections."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from frcnn.coco_eval import (SUMMARY_NAMES, coco_results, coco_summary, evaluate_test_run,
                             format_summary, ground_truth)
from frcnn.data.datasets import Dataset

pytest.importorskip("pycocotools")

CLASSES = ("__background__", "cat", "dog")
CATEGORY_IDS = (3, 7)


def _records():
    """Two images; boxes of 20..40 pixels (small and medium areas, nothing large); a crowd
    box on the second."""
    return [
        {"coco_id": 11, "image": "/x/a.jpg", "width": 100, "height": 80,
         "boxes": np.array([[10, 10, 29, 29], [40, 20, 79, 59]], np.float32),
         "gt_classes": np.array([1, 2], np.int32), "crowd": np.array([False, False]),
         "areas": np.array([400, 1600], np.float32)},
        {"coco_id": 12, "image": "/x/b.jpg", "width": 100, "height": 80,
         "boxes": np.array([[5, 5, 34, 34], [50, 40, 69, 59]], np.float32),
         "gt_classes": np.array([2, 1], np.int32), "crowd": np.array([False, True]),
         "areas": np.array([900, 400], np.float32)},
    ]


def _perfect(records):
    dets = [[np.zeros((0, 5), np.float32) for _ in records] for _ in CLASSES]
    for i, r in enumerate(records):
        for c in (1, 2):
            keep = (r["gt_classes"] == c) & ~r["crowd"]
            dets[c][i] = np.hstack([r["boxes"][keep], np.full((keep.sum(), 1), 0.9)])
    return dets


def test_results_format_uses_original_ids_and_inclusive_widths():
    records = _records()
    results = coco_results(_perfect(records), records, CATEGORY_IDS)
    assert {"image_id": 11, "category_id": 3, "bbox": [10.0, 10.0, 20.0, 20.0],
            "score": 0.9} in results
    assert {r["category_id"] for r in results} == {3, 7}
    gt = ground_truth(records, CLASSES, CATEGORY_IDS)
    assert gt["annotations"][1]["bbox"] == [40.0, 20.0, 40.0, 40.0]
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 0, 0, 1]


def test_perfect_detections_score_one_and_none_score_zero():
    records = _records()
    gt = ground_truth(records, CLASSES, CATEGORY_IDS)
    perfect = coco_summary(coco_results(_perfect(records), records, CATEGORY_IDS), gt)
    assert list(perfect) == list(SUMMARY_NAMES)
    for name in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AR_10", "AR_100"):
        assert perfect[name] == pytest.approx(1.0), name
    # pycocotools' -1 (nothing to measure: no large objects) becomes None
    assert perfect["AP_large"] is None and perfect["AR_large"] is None
    assert re.search(r"^AP_large +-$", format_summary(perfect), re.M)

    empty = [[np.zeros((0, 5), np.float32) for _ in records] for _ in CLASSES]
    assert coco_results(empty, records, CATEGORY_IDS) == []
    nothing = coco_summary([], gt)
    assert nothing["AP"] == 0.0 and nothing["AR_100"] == 0.0
    assert nothing["AP_large"] is None


def test_evaluate_test_run_writes_the_results_file(tmp_path):
    records = _records()
    dataset = Dataset("d", tmp_path, "val", CLASSES, "coco", tmp_path / "d.json",
                      CATEGORY_IDS)
    summary = evaluate_test_run(tmp_path, _perfect(records), records, dataset)
    assert summary["AP"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "coco_results.json").read_text())
    assert len(saved) == 3 and saved[0]["image_id"] in (11, 12)
