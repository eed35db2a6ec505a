"""frcnn.detection with hand-computed boxes, thresholds at ties, the per-image cap with more
than twice as many detections, empty inputs and exact folding arithmetic."""
from __future__ import annotations

import math

import numpy as np
import pytest

from frcnn.detection import (decode_boxes, fold_bbox_normalization, per_output,
                             select_detections, unfold_bbox_normalization)


# ----------------------------------------------------------------------------- decoding

def test_decode_divides_by_the_scale_and_unnormalises_per_coordinate():
    # roi [0, 4, 22, 18, 62] / 2 = [2, 11, 9, 31]: w 8, h 21, ctr (6, 21.5)
    rois = np.array([[0, 4, 22, 18, 62]], float)
    raw = np.array([[0, 0, 0, 0, 2.0, -1.0, 0.5, 1.0]])
    means = (0.1, 0.2, 0.0, -0.1)
    stds = (0.5, 0.25, 2 * math.log(2), 0.1)
    # deltas = raw * stds + means = [1.1, -0.05, log 2, 0]; class 0: means only,
    # [0.1, 0.2, 0, -0.1]
    boxes = decode_boxes(rois, raw, 2.0, (100, 100), means=means, stds=stds)
    assert boxes.dtype == np.float32 and boxes.shape == (1, 8)
    # class 1: ctr x 1.1 * 8 + 6 = 14.8, w 16; ctr y -0.05 * 21 + 21.5 = 20.45, h 21
    np.testing.assert_allclose(boxes[0, 4:], [14.8 - 8, 20.45 - 10.5, 14.8 + 8, 20.45 + 10.5],
                               rtol=1e-6)
    # class 0: ctr x 0.8 + 6 = 6.8, w 8; ctr y 4.2 + 21.5 = 25.7, h 21 * exp(-0.1)
    h = 21 * math.exp(-0.1)
    np.testing.assert_allclose(boxes[0, :4], [2.8, 25.7 - h / 2, 10.8, 25.7 + h / 2], rtol=1e-6)


def test_decode_with_stds_and_no_means_and_per_class_values():
    rois = np.array([[0, 0, 0, 9, 9]], float)  # w = h = 10, ctr (5, 5)
    raw = np.array([[0, 0, 0, 0, 1.0, 0, 0, 0]])
    boxes = decode_boxes(rois, raw, 1.0, (100, 100), stds=(0.2, 0.1, 0.1, 0.1))
    np.testing.assert_allclose(boxes[0], [0, 0, 10, 10, 2, 0, 12, 10], rtol=1e-6)
    per_class = decode_boxes(rois, raw, 1.0, (100, 100), means=(0,) * 8,
                             stds=(1, 1, 1, 1, 0.3, 1, 1, 1))
    np.testing.assert_allclose(per_class[0, 4:], [3, 0, 13, 10], rtol=1e-6)


def test_decode_clips_to_the_original_image():
    rois = np.array([[0, 0, 0, 39, 19]], float)  # / 2: [0, 0, 19.5, 9.5]
    boxes = decode_boxes(rois, np.zeros((1, 4)), 2.0, (8, 15))
    np.testing.assert_array_equal(boxes, [[0, 0, 14, 7]])


def test_decode_of_a_4d_blob_as_a_1_by_1_convolution_gives_it():
    rois = np.array([[0, 0, 0, 9, 9], [0, 10, 10, 29, 19]], float)
    deltas = np.array([[0.1, 0, 0, 0, 0.2, -0.1, 0.3, 0.0],
                       [0, 0.1, 0, 0.2, -0.2, 0, 0, 0.1]])
    flat = decode_boxes(rois, deltas, 1.0, (50, 50))
    np.testing.assert_array_equal(decode_boxes(rois, deltas[:, :, None, None], 1.0, (50, 50)),
                                  flat)
    np.testing.assert_allclose(flat[0, :4], [1, 0, 11, 10], rtol=1e-6)


def test_decode_of_no_roi():
    out = decode_boxes(np.zeros((0, 5)), np.zeros((0, 12)), 1.5, (10, 10))
    assert out.shape == (0, 12) and out.dtype == np.float32
    out = decode_boxes(np.zeros((0, 5)), np.zeros((0, 12, 1, 1)), 1.5, (10, 10))
    assert out.shape == (0, 12)
    out = decode_boxes(np.zeros((0, 5)), np.zeros((0, 8)), 1.0, (10, 10), stds=(1, 1, 1, 1))
    assert out.shape == (0, 8) and out.dtype == np.float32


def test_per_output_tiles_four_values_or_takes_four_k():
    np.testing.assert_array_equal(per_output([1, 2, 3, 4], 12), [1, 2, 3, 4] * 3)
    np.testing.assert_array_equal(per_output(range(8), 8), range(8))
    assert per_output([1, 2, 3, 4], 4).dtype == np.float64
    with pytest.raises(ValueError, match=r"bbox normalisation stds must have 4 or 12 \(4 per "
                                         r"class\) values, got 8"):
        per_output(range(8), 12, "stds")


# ----------------------------------------------------------------------------- selection

def _boxes(n, k=2):
    """n far-apart 10 x 10 boxes, the same for each of k classes: (n, 4k)."""
    b = np.array([[100 * i, 0, 100 * i + 9, 9] for i in range(n)], float)
    return np.tile(b, (1, k))


def test_score_threshold_is_strict():
    scores = np.array([[0.0, 0.05], [0.0, 0.0501], [0.0, 0.3]])
    dets = select_detections(scores, _boxes(3), score_thresh=0.05)
    np.testing.assert_allclose(dets[1][:, 4], [0.3, 0.0501], rtol=1e-6)
    np.testing.assert_array_equal(dets[1][:, :4], [[200, 0, 209, 9], [100, 0, 109, 9]])
    assert dets[1].dtype == np.float32


def test_scores_are_compared_in_float32():
    # 0.05 + 1e-10 is float32 0.05: not above the threshold (Caffe's blobs are float32)
    scores = np.array([[0.0, 0.05 + 1e-10], [0.0, 0.05 + 1e-8]], np.float64)
    dets = select_detections(scores, _boxes(2), score_thresh=0.05)
    np.testing.assert_array_equal(dets[1][:, :4], [[100, 0, 109, 9]])


def test_defaults_threshold_005_nms_03_and_100_per_image():
    # 110 far-apart boxes of class 1 with distinct scores 0.06 .. 0.169, one 0.05, and a
    # box overlapping the best one by IoU 1/3 (suppressed at 0.3)
    n = 110
    scores = np.zeros((n + 2, 2))
    scores[:n, 1] = 0.06 + np.arange(n) / 1000
    scores[n, 1] = 0.05
    scores[n + 1, 1] = 0.1685
    boxes = np.vstack([_boxes(n), [[0, 0, 0, 0, 100 * (n - 1), 5, 100 * (n - 1) + 9, 14]],
                       [[0, 0, 0, 0, 100 * (n - 1), 5, 100 * (n - 1) + 9, 14]]])
    dets = select_detections(scores, boxes)
    assert len(dets[1]) == 100
    np.testing.assert_allclose(dets[1][:, 4], 0.06 + np.arange(n - 1, n - 101, -1) / 1000,
                               rtol=1e-6)
    strict = select_detections(scores, boxes, nms_thresh=0.34, max_per_image=0)
    assert len(strict[1]) == n + 1


def test_nms_threshold_is_passed_on():
    # two boxes with IoU 50 / 150 = 1/3
    boxes = np.tile(np.array([[0, 0, 9, 9], [0, 5, 9, 14]], float), (1, 2))
    scores = np.array([[0, 0.9], [0, 0.8]])
    assert len(select_detections(scores, boxes, nms_thresh=0.3)[1]) == 1
    assert len(select_detections(scores, boxes, nms_thresh=0.34)[1]) == 2


def test_the_cap_keeps_the_highest_scores_over_all_classes():
    # 5 detections over 2 classes, capped to 2: scores 0.9 (class 2) and 0.8 (class 1)
    scores = np.array([[0, 0.8, 0.01], [0, 0.3, 0.9], [0, 0.2, 0.4]])
    dets = select_detections(scores, _boxes(3, 3), max_per_image=2)
    np.testing.assert_allclose(dets[1][:, 4], [0.8])
    np.testing.assert_allclose(dets[2][:, 4], [0.9])
    np.testing.assert_array_equal(dets[1][:, :4], [[0, 0, 9, 9]])
    np.testing.assert_array_equal(dets[2][:, :4], [[100, 0, 109, 9]])
    three = select_detections(scores, _boxes(3, 3), max_per_image=3)
    # the third highest is 0.4 (class 2)
    np.testing.assert_allclose(three[1][:, 4], [0.8])
    np.testing.assert_allclose(three[2][:, 4], [0.9, 0.4])
    one = select_detections(scores, _boxes(3, 3), max_per_image=1)
    assert [d[:, 4].tolist() for d in one] == [[], [], [pytest.approx(0.9)]]
    # no cap with 0, nor when there are exactly as many as the cap
    assert sum(len(d) for d in select_detections(scores, _boxes(3, 3), max_per_image=0)) == 5
    assert sum(len(d) for d in select_detections(scores, _boxes(3, 3), max_per_image=5)) == 5


def test_no_detection_above_the_threshold():
    dets = select_detections(np.array([[1.0, 0.01, 0.02]]), _boxes(1, 3))
    assert [d.shape for d in dets] == [(0, 5)] * 3
    assert all(d.dtype == np.float32 for d in dets)


# ----------------------------------------------------------------------------- folding

STDS = (0.1, 0.2, 0.3, 0.4)
MEANS = (0.5, -0.5, 1.0, 0.0)


def test_fold_by_hand():
    w = np.arange(8, dtype=np.float32).reshape(4, 2)   # rows [0 1] [2 3] [4 5] [6 7]
    b = np.array([1, 2, 3, 4], np.float32)
    fw, fb = fold_bbox_normalization(w, b, MEANS, STDS)
    assert fw.dtype == fb.dtype == np.float32
    np.testing.assert_allclose(fw, [[0, 0.1], [0.4, 0.6], [1.2, 1.5], [2.4, 2.8]], rtol=1e-6)
    np.testing.assert_allclose(fb, [0.1 + 0.5, 0.4 - 0.5, 0.9 + 1.0, 1.6], rtol=1e-6)
    uw, ub = unfold_bbox_normalization(fw, fb, MEANS, STDS)
    np.testing.assert_allclose(uw, w, rtol=1e-6)
    np.testing.assert_allclose(ub, b, rtol=1e-6)


def test_unfold_by_hand_with_conv_weights_and_per_class_stds():
    w = np.ones((8, 1, 1, 1), np.float64)   # a 1 x 1 convolution's weights, K = 2
    b = np.full(8, 2.0)
    stds = (1, 1, 1, 1, 0.5, 0.25, 2, 4)
    uw, ub = unfold_bbox_normalization(w, b, (0,) * 4, stds)
    assert uw.shape == (8, 1, 1, 1)
    np.testing.assert_allclose(uw.ravel(), [1, 1, 1, 1, 2, 4, 0.5, 0.25])
    np.testing.assert_allclose(ub, [2, 2, 2, 2, 4, 8, 1, 0.5])
    uw, ub = unfold_bbox_normalization(w[:4], b[:4], MEANS, STDS)
    np.testing.assert_allclose(ub, [(2 - 0.5) / 0.1, (2 + 0.5) / 0.2, (2 - 1) / 0.3, 2 / 0.4])
    fw, fb = fold_bbox_normalization(w, b, (0,) * 8, stds)
    np.testing.assert_allclose(fw.ravel(), stds)
