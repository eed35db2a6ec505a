"""frcnn.evaluation with hand-computed IoUs, precision/recall curves and APs: false positives
of every kind (below the threshold, duplicates, images without gt) among true positives,
difficult matches, ties, and the exact table text."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.evaluation import (GroundTruth, class_ap, evaluate, format_table, rank_detections,
                              voc_ap, voc_outcomes)


def _det(*rows):
    return np.array(rows, float).reshape(-1, 5)


def _gt(boxes, difficult=None):
    boxes = np.array(boxes, float).reshape(-1, 4)
    return GroundTruth(boxes, np.zeros(len(boxes), bool) if difficult is None
                       else np.array(difficult, bool))


# ----------------------------------------------------------------------------- matching

def test_rank_detections_finds_each_ones_best_gt_in_its_image():
    # box x 2..11 (10), y 5..24 (20): area 200
    gts = np.array([[6, 15, 15, 44],    # inter with it x 6..11 (6) * y 15..24 (10) = 60; 10 x 30
                    [-3, 7, 5, 10],     # inter x 2..5 (4) * y 7..10 (4) = 16; area 9 * 4 = 36
                    [11, 24, 11, 24],   # its last pixel: 1 / 200
                    [2, 5, 11, 24]],    # image 1: the box itself
                   float)
    dets = [_det([2, 5, 11, 24, 0.5], [-3, 7, 5, 10, 0.9]),    # image 0
            _det([2, 5, 11, 24, 0.5], [30, 30, 40, 40, 0.7])]  # image 1
    r = rank_detections(dets, np.array([0, 0, 0, 1]), gts)
    np.testing.assert_array_equal(r.scores, [0.9, 0.7, 0.5, 0.5])   # ties: the order given
    np.testing.assert_array_equal(r.image, [0, 1, 0, 1])
    np.testing.assert_array_equal(r.gt, [1, 3, 0, 3])
    np.testing.assert_allclose(r.iou, [1.0, 0.0, 60 / (200 + 300 - 60), 1.0], rtol=1e-15)
    np.testing.assert_array_equal(r.boxes[1], [30, 30, 40, 40])


def test_rank_detections_without_gt_in_the_image():
    r = rank_detections([_det([0, 0, 9, 9, 0.3]), _det()], np.array([1]),
                        np.array([[0, 0, 9, 9]], float))
    assert r.gt.tolist() == [-1] and r.iou.tolist() == [0.0]


def test_voc_outcomes_first_takes_the_gt_then_duplicates_and_ignored():
    gts = np.array([[0, 0, 9, 9], [20, 20, 29, 29]], float)
    dets = [_det([0, 0, 9, 9, 0.9], [0, 0, 9, 10, 0.8], [20, 20, 29, 29, 0.7],
                 [50, 50, 59, 59, 0.6], [0, 0, 9, 30, 0.95])]
    r = rank_detections(dets, np.array([0, 0]), gts)
    # 0.95: IoU 10*10 / (10*31) < 0.5 -> fp; 0.9 tp; 0.8 duplicate fp; 0.7 on the ignored
    # gt -> neither; 0.6 on nothing -> fp
    assert voc_outcomes(r, np.array([False, True]), 0.5).tolist() == [0, 1, 0, -1, 0]


# ----------------------------------------------------------------------------- AP

def test_voc_ap_area_under_the_envelope_by_hand():
    recall = np.array([0.25, 0.25, 0.5, 0.75])
    precision = np.array([1.0, 0.5, 2 / 3, 0.75])
    # envelope from the right: 1, 0.75, 0.75, 0.75; steps at 0 -> 0.25 (1), 0.25 -> 0.5
    # (0.75), 0.5 -> 0.75 (0.75); recall 0.75 -> 1 has precision 0
    assert voc_ap(recall, precision) == pytest.approx(0.25 * 1 + 0.25 * 0.75 + 0.25 * 0.75,
                                                      rel=1e-15)
    # the 11 points: t = 0, 0.1, 0.2 -> 1; 0.3 .. 0.7 -> 0.75; 0.8, 0.9, 1.0 -> nothing
    assert voc_ap(recall, precision, True) == pytest.approx((3 * 1 + 5 * 0.75) / 11, rel=1e-15)


def test_voc_ap_recall_exactly_on_a_point_counts():
    # recall 0.5 at t = 0.5 is included (recall >= t); 1.0 at t = 1.0 as well
    assert voc_ap(np.array([0.5]), np.array([0.8]), True) == pytest.approx(6 * 0.8 / 11)
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5]), True) == \
        pytest.approx((6 * 1 + 5 * 0.5) / 11)
    assert voc_ap(np.array([1.0]), np.array([0.5])) == pytest.approx(0.5)
    assert voc_ap(np.array([]), np.array([])) == 0.0
    assert voc_ap(np.array([]), np.array([]), True) == 0.0


def test_voc_ap_starts_at_recall_zero():
    # the first step is from recall 0: 0.6 * 1 + 0.4 * 0.5
    assert voc_ap(np.array([0.6, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.8)
    assert isinstance(voc_ap([0.6], [1.0]), float)
    assert voc_ap([0.5, 1.0], [1.0, 0.5], True) == pytest.approx((6 * 1 + 5 * 0.5) / 11)


# ----------------------------------------------------------------------------- class_ap

GTS = [_gt([[0, 0, 9, 9]]),                                    # image 0
       _gt([]),                                                # image 1: no gt of the class
       _gt([[20, 20, 29, 29], [40, 40, 49, 49]], [True, False])]  # image 2


def test_true_and_false_positives_of_every_kind():
    dets = [_det([0, 0, 9, 9, 0.9],       # TP
                 [0, 0, 9, 9, 0.5]),      # duplicate of the matched box: FP
            _det([0, 0, 9, 9, 0.8]),      # image without gt: FP
            _det([20, 20, 29, 29, 0.7],   # matches the difficult box: neither
                 [40, 40, 49, 44, 0.6],   # IoU 50 / 100 = 0.5, not above 0.5: FP
                 [40, 40, 49, 45, 0.4])]  # IoU 0.6: TP
    ap, recall, precision = class_ap(dets, GTS)
    # ranked 0.9 0.8 0.7 0.6 0.5 0.4: tp 1 0 0 0 0 1, fp 0 1 0 1 1 0; 2 positives
    np.testing.assert_allclose(recall, [0.5, 0.5, 0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1, 0.5, 0.5, 1 / 3, 0.25, 0.4])
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 0.4)  # the envelope after recall 0.5 is 0.4
    ap07, _, _ = class_ap(dets, GTS, use_07_metric=True)
    assert ap07 == pytest.approx((6 * 1 + 5 * 0.4) / 11)


def test_iou_threshold_argument():
    dets = [_det([0, 0, 9, 5, 0.9]), _det(), _det()]  # IoU 0.6 with image 0's box
    assert class_ap(dets, GTS, iou_thresh=0.59)[0] == pytest.approx(0.5)
    assert class_ap(dets, GTS, iou_thresh=0.6)[0] == 0.0


def test_the_best_gt_box_of_the_image_is_the_one_matched():
    gt = [_gt([[0, 0, 9, 9], [0, 0, 9, 19]])]
    # IoU 0.55 with the first, 200 / 200 = 1 with the second: matches the second, so the
    # next detection of the first box is a TP too
    dets = [_det([0, 0, 9, 19, 0.9], [0, 0, 9, 9, 0.8])]
    ap, recall, precision = class_ap(dets, gt)
    np.testing.assert_allclose(recall, [0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 1.0])


def test_a_first_ranked_difficult_match_gives_precision_zero_not_nan():
    gt = [_gt([[0, 0, 9, 9], [50, 50, 59, 59]], [True, False])]
    dets = [_det([0, 0, 9, 9, 0.9], [50, 50, 59, 59, 0.8])]
    ap, recall, precision = class_ap(dets, gt)
    np.testing.assert_array_equal(precision, [0.0, 1.0])
    np.testing.assert_array_equal(recall, [0.0, 1.0])
    assert ap == pytest.approx(1.0)


def test_score_ties_keep_the_given_order():
    gts = [_gt([[0, 0, 9, 9]]), _gt([])]
    first_fp = class_ap([_det(), _det([0, 0, 9, 9, 0.5])], gts)  # no det in image 0
    assert first_fp[2].tolist() == [0.0]
    # a FP (image 1) given before a TP (image 0) of the same score: image 0 comes first
    _, _, precision = class_ap([_det([0, 0, 9, 9, 0.5]), _det([0, 0, 9, 9, 0.5])], gts)
    np.testing.assert_allclose(precision, [1.0, 0.5])
    # within an image too: the FP first, then the TP
    gts = [_gt([[0, 0, 9, 9]])]
    _, _, precision = class_ap([_det([50, 50, 59, 59, 0.5], [0, 0, 9, 9, 0.5])], gts)
    np.testing.assert_allclose(precision, [0.0, 0.5])


def test_ranking_is_by_descending_score():
    gts = [_gt([[0, 0, 9, 9]])]
    _, recall, precision = class_ap([_det([50, 50, 59, 59, 0.2], [0, 0, 9, 9, 0.7])], gts)
    np.testing.assert_allclose(precision, [1.0, 0.5])
    np.testing.assert_allclose(recall, [1.0, 1.0])


def test_no_positive_gives_nan_and_the_curve():
    gts = [_gt([[0, 0, 9, 9]], [True]), _gt([])]
    ap, recall, precision = class_ap([_det([0, 0, 9, 9, 0.9]), _det([0, 0, 9, 9, 0.8])], gts)
    assert np.isnan(ap)
    np.testing.assert_array_equal(recall, [0.0, 0.0])
    np.testing.assert_array_equal(precision, [0.0, 0.0])  # ignored, then a FP
    ap, recall, precision = class_ap([_det(), _det()], gts)
    assert np.isnan(ap) and recall.shape == precision.shape == (0,)


def test_counts_of_images_must_agree():
    with pytest.raises(ValueError, match="2 images of detections but 1 of gt"):
        class_ap([_det(), _det()], [_gt([])])


def test_difficult_flags_as_integers():
    gt = [GroundTruth(np.array([[0, 0, 9, 9], [20, 0, 29, 9]], float), np.array([0, 1]))]
    ap, recall, _ = class_ap([_det([0, 0, 9, 9, 0.9])], gt)
    assert ap == pytest.approx(1.0) and recall.tolist() == [1.0]  # 1 positive only


# ----------------------------------------------------------------------------- evaluate

def test_evaluate_masks_classes_and_defaults_difficult():
    annotations = [
        {"boxes": np.array([[0, 0, 9, 9], [20, 20, 29, 29]]), "gt_classes": np.array([2, 1])},
        {"boxes": np.array([[0, 0, 9, 9]]), "gt_classes": np.array([1]),
         "difficult": np.array([True])},
    ]
    dets = [None,
            [_det([20, 20, 29, 29, 0.9]), _det([0, 0, 9, 9, 0.8])],   # 1: TP, difficult
            [_det([20, 20, 29, 29, 0.9], [0, 0, 9, 9, 0.3]), _det()]]  # 2: FP then TP
    res = evaluate(dets, annotations, ["bg", "a", "b"], use_07_metric=False)
    assert res["a"] == pytest.approx(1.0)
    assert res["b"] == pytest.approx(0.5)   # recall 1 at precision 0.5
    assert res["mAP"] == pytest.approx(0.75)
    assert list(res) == ["a", "b", "mAP"]
    res07 = evaluate(dets, annotations, ["bg", "a", "b"])
    assert res07["b"] == pytest.approx(11 * 0.5 / 11)


def test_evaluate_threshold_and_no_gt_at_all():
    annotations = [{"boxes": np.array([[0, 0, 9, 9]]), "gt_classes": np.array([1])}]
    dets = [None, [_det([0, 0, 9, 5, 0.9])], [_det()]]  # IoU 0.6
    assert evaluate(dets, annotations, ["bg", "a", "b"], iou_thresh=0.7)["a"] == 0.0
    res = evaluate(dets, annotations, ["bg", "a", "b"], iou_thresh=0.5)
    assert res["a"] == pytest.approx(1.0) and np.isnan(res["b"])
    assert res["mAP"] == pytest.approx(1.0)
    # the default is the VOC07 11-point metric: recall 0.5 at precision 1 gives 6 / 11
    two = [{"boxes": np.array([[0, 0, 9, 9], [50, 50, 59, 59]]), "gt_classes": np.array([1, 1])}]
    assert evaluate([None, [_det([0, 0, 9, 9, 0.9])]], two, ["bg", "a"])["a"] == \
        pytest.approx(6 / 11)
    assert evaluate([None, [_det([0, 0, 9, 9, 0.9])]], two, ["bg", "a"],
                    use_07_metric=False)["a"] == pytest.approx(0.5)
    empty = [{"boxes": np.zeros((0, 4)), "gt_classes": np.zeros(0, int)}]
    res = evaluate([None, [_det()]], empty, ["bg", "a"])
    assert np.isnan(res["a"]) and np.isnan(res["mAP"])


def test_format_table_text():
    aps_07 = {"cat": 0.5, "square": float("nan"), "mAP": 0.5}
    aps_area = {"cat": float("nan"), "square": 0.25, "mAP": 0.125}
    assert format_table(aps_07, aps_area) == "\n".join([
        "class   AP(VOC07)  AP(area)",
        "---------------------------",
        "cat        0.5000         -",
        "square          -    0.2500",
        "mAP        0.5000    0.1250",
    ])
    short = format_table({"a": 1.0, "mAP": 1.0}, {"a": 1.0, "mAP": 1.0})
    assert short.splitlines()[0] == "class  AP(VOC07)  AP(area)"
    assert short.splitlines()[1] == "-" * 26
