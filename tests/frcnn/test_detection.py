"""frcnn.detection: decoding, per-class selection and bbox-normalisation folding."""
from __future__ import annotations

import numpy as np

from frcnn.detection import (decode_boxes, fold_bbox_normalization, select_detections,
                             unfold_bbox_normalization)

MEANS, STDS = (0.0, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2)


def test_folded_model_decodes_like_unfolded_with_unnormalisation():
    rng = np.random.default_rng(0)
    k, d, r = 4, 32, 20
    w = rng.normal(0, 0.1, (4 * k, d)).astype(np.float32)
    b = rng.normal(0, 0.1, 4 * k).astype(np.float32)
    feats = rng.normal(size=(r, d)).astype(np.float32)
    rois = np.hstack([np.zeros((r, 1)), rng.uniform(0, 100, (r, 2)), rng.uniform(120, 200, (r, 2))])
    raw = feats @ w.T + b
    fw, fb = fold_bbox_normalization(w, b, (0.01, -0.02, 0.0, 0.05), STDS)
    folded = feats @ fw.T + fb
    a = decode_boxes(rois, raw, 2.0, (150, 160), means=(0.01, -0.02, 0.0, 0.05), stds=STDS)
    c = decode_boxes(rois, folded, 2.0, (150, 160))
    np.testing.assert_allclose(a, c, atol=1e-3)
    uw, ub = unfold_bbox_normalization(fw, fb, (0.01, -0.02, 0.0, 0.05), STDS)
    np.testing.assert_allclose(uw, w, rtol=1e-5)
    np.testing.assert_allclose(ub, b, rtol=1e-5, atol=1e-6)


def test_zero_deltas_give_the_rois_in_image_pixels_widened_by_one():
    # py-faster-rcnn's decode: roi / 2 = [10, 20, 59.5, 39.5], w = 50.5, h = 20.5;
    # x2 = x1 + w = 60.5, y2 = y1 + h = 40.5
    rois = np.array([[0, 20, 40, 119, 79]], float)
    boxes = decode_boxes(rois, np.zeros((1, 8)), 2.0, (100, 100))
    np.testing.assert_allclose(boxes[0, 4:], [10, 20, 60.5, 40.5])


def test_decode_is_py_faster_rcnns_with_normalised_deltas():
    # roi [0, 0, 9, 9] at scale 1: w = h = 10, ctr (5, 5).  Unnormalised deltas
    # (0.1, 0, log 2, 0) = raw * stds: ctr_x 0.1 * 10 + 5 = 6, w 20 -> x1 -4, x2 16;
    # y1 = 5 - 5 = 0, y2 = 5 + 5 = 10; clipped to the 100 x 100 image: [0, 0, 16, 10].
    rois = np.array([[0, 0, 0, 9, 9]], float)
    raw = np.zeros((1, 8))
    raw[0, 4:] = [0.1 / 0.1, 0.0, np.log(2.0) / 0.2, 0.0]
    boxes = decode_boxes(rois, raw, 1.0, (100, 100), means=MEANS, stds=STDS)
    assert boxes.dtype == np.float32
    np.testing.assert_allclose(boxes[0], [0, 0, 10, 10, 0, 0, 16, 10], rtol=1e-6)


def test_select_thresholds_nms_and_caps():
    scores = np.array([[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.5, 0.04, 0.46], [0.0, 0.5, 0.5]])
    boxes = np.tile(np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60],
                              [80, 80, 90, 90]], float), (1, 3))
    dets = select_detections(scores, boxes, 0.05, 0.3, 100)
    assert len(dets) == 3 and dets[0].shape == (0, 5)
    np.testing.assert_allclose(dets[1][:, 4], [0.9, 0.5])  # 0.8 suppressed, 0.04 below thresh
    np.testing.assert_allclose(dets[2][:, 4], [0.5, 0.46])
    capped = select_detections(scores, boxes, 0.05, 0.3, 2)
    assert sum(len(d) for d in capped) == 3  # 0.9 and the tie at 0.5 are kept
    empty = select_detections(np.zeros((0, 3)), np.zeros((0, 12)))
    assert [d.shape for d in empty] == [(0, 5)] * 3
