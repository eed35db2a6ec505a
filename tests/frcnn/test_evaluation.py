"""frcnn.evaluation against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.evaluation import GroundTruth, class_ap, evaluate, format_table, voc_ap

GT1 = GroundTruth(np.array([[10, 10, 50, 50], [100, 100, 150, 150]], float), np.zeros(2, bool))


def _det(*rows):
    return np.array(rows, float).reshape(-1, 5)


def test_perfect_detections_score_one():
    dets = [_det([10, 10, 50, 50, 0.9], [100, 100, 150, 150, 0.8])]
    for metric in (True, False):
        assert class_ap(dets, [GT1], use_07_metric=metric)[0] == pytest.approx(1.0)


def test_no_detections_score_zero():
    assert class_ap([_det()], [GT1])[0] == 0.0
    assert class_ap([_det()], [GT1], use_07_metric=True)[0] == 0.0


def test_duplicates_are_false_positives():
    dets = [_det([10, 10, 50, 50, 0.9], [11, 11, 50, 50, 0.85], [100, 100, 150, 150, 0.8])]
    ap, recall, precision = class_ap(dets, [GT1])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    # area: recall 0 -> 0.5 at precision 1, 0.5 -> 1 at precision 2/3
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    # 11-point: t = 0..0.5 -> 1 (6 points), 0.6..1.0 -> 2/3 (5 points)
    assert class_ap(dets, [GT1], use_07_metric=True)[0] == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_difficult_objects_are_ignored():
    gt = GroundTruth(GT1.boxes, np.array([False, True]))
    dets = [_det([10, 10, 50, 50, 0.9], [100, 100, 150, 150, 0.95])]
    ap, recall, precision = class_ap(dets, [gt])
    assert ap == pytest.approx(1.0)  # the detection of the difficult box counts for nothing
    assert recall[-1] == 1.0


def test_iou_threshold_is_strict_and_inclusive():
    gt = GroundTruth(np.array([[0, 0, 9, 9]], float), np.zeros(1, bool))  # 10 x 10
    # a 10 x 5 box inside: IoU = 50 / 100 = 0.5, not above 0.5 -> false positive
    assert class_ap([_det([0, 0, 9, 4, 1.0])], [gt])[0] == 0.0
    assert class_ap([_det([0, 0, 9, 5, 1.0])], [gt])[0] == pytest.approx(1.0)


def test_voc_ap_metrics_differ():
    recall = np.array([0.2, 0.4, 0.4, 0.8])
    precision = np.array([1.0, 1.0, 0.67, 0.5])
    assert voc_ap(recall, precision) == pytest.approx(0.4 * 1.0 + 0.4 * 0.5)
    assert voc_ap(recall, precision, True) == pytest.approx((5 * 1.0 + 4 * 0.5) / 11)


def test_evaluate_over_classes_and_images():
    annotations = [
        {"boxes": np.array([[10, 10, 50, 50], [60, 60, 90, 90]]), "gt_classes": np.array([1, 2])},
        {"boxes": np.array([[5, 5, 30, 30]]), "gt_classes": np.array([1]),
         "difficult": np.array([False])},
    ]
    dets = [[None, None],
            [_det([10, 10, 50, 50, 0.9]), _det([5, 5, 30, 30, 0.7])],
            [_det(), _det([60, 60, 90, 90, 0.9])],  # class 2 found in the wrong image
            [_det(), _det()]]
    res = evaluate(dets, annotations, ["__background__", "circle", "square", "triangle"])
    assert res["circle"] == pytest.approx(1.0) and res["square"] == 0.0
    assert np.isnan(res["triangle"])  # no gt boxes: excluded from the mean
    assert res["mAP"] == pytest.approx(0.5)
    table = format_table(res, res)
    assert "circle" in table and "mAP" in table
