"""frcnn.proposals: decode -> clip -> min size -> top-N -> NMS -> top-N."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.anchors import generate_anchors, shifted_anchors
from frcnn.boxes import bbox_overlaps, bbox_transform_inv, clip_boxes
from frcnn.nms import nms_reference
from frcnn.proposals import ProposalParams, map_to_anchor_order, proposals_from_rpn

A = 9


def _rpn_outputs(rng, height=12, width=16):
    scores = rng.uniform(size=(1, A, height, width)).astype(np.float32)
    deltas = rng.normal(0, 0.2, size=(1, 4 * A, height, width)).astype(np.float32)
    anchors = shifted_anchors(generate_anchors(), height, width, 16)
    return scores, deltas, anchors


def _straightforward(scores, deltas, anchors, im_info, p):
    s = map_to_anchor_order(scores, 1)[:, 0]
    d = map_to_anchor_order(deltas, 4)
    boxes = clip_boxes(bbox_transform_inv(anchors, d), im_info[:2])
    ws, hs = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    keep = (ws >= p.min_size * im_info[2]) & (hs >= p.min_size * im_info[2])
    boxes, s = boxes[keep], s[keep]
    order = np.argsort(-s, kind="stable")[:p.pre_nms_top_n]
    boxes, s = boxes[order], s[order]
    keep = nms_reference(np.hstack([boxes, s[:, None]]).astype(np.float32), p.nms_thresh)
    keep = keep[:p.post_nms_top_n]
    return boxes[keep].astype(np.float32), s[keep]


def test_anchor_order_of_channel_blobs():
    blob = np.arange(2 * 4 * 3 * 5).reshape(1, 4 * 2, 3, 5)  # A = 2
    rows = map_to_anchor_order(blob, 4)
    assert rows.shape == (3 * 5 * 2, 4)
    # row (h=1, w=2, a=1) reads channels 4..7 at (1, 2)
    np.testing.assert_array_equal(rows[(1 * 5 + 2) * 2 + 1], blob[0, 4:8, 1, 2])


@pytest.mark.parametrize("seed", range(5))
def test_equals_the_straightforward_pipeline(seed):
    rng = np.random.default_rng(seed)
    scores, deltas, anchors = _rpn_outputs(rng)
    im_info = np.array([190.0, 250.0, 1.2])
    p = ProposalParams(pre_nms_top_n=500, post_nms_top_n=100, nms_thresh=0.7, min_size=16)
    boxes, s = proposals_from_rpn(scores, deltas, anchors, im_info, p)
    ref_boxes, ref_s = _straightforward(scores, deltas, anchors, im_info, p)
    np.testing.assert_array_equal(boxes, ref_boxes)
    np.testing.assert_array_equal(s, ref_s)


def test_hand_computed_proposals_use_py_faster_rcnns_decode():
    """Three anchors of a 1 x 1 map, decoded as py-faster-rcnn does (x2 = ctr + w / 2)."""
    anchors = np.array([[0, 0, 15, 15], [100, 100, 131, 131], [184, 184, 199, 199]], float)
    scores = np.array([0.6, 0.9, 0.3], np.float32).reshape(1, 3, 1, 1)
    deltas = np.zeros((1, 12, 1, 1), np.float32)
    # anchor 1: w = h = 32, ctr (116, 116); dx 0.25 -> ctr_x 124, dw log 2 -> w 64:
    # x1 = 92, x2 = 156; dy -0.25 -> ctr_y 108, h 32: y1 = 92, y2 = 124
    deltas[0, 4:8, 0, 0] = [0.25, -0.25, np.log(2.0), 0.0]
    # anchor 0, zero deltas: [0, 0, 16, 16]; anchor 2: [184, 184, 200, 200], clipped to 199
    p = ProposalParams(pre_nms_top_n=10, post_nms_top_n=10, nms_thresh=0.7, min_size=1)
    boxes, s = proposals_from_rpn(scores, deltas, anchors, np.array([200.0, 200.0, 1.0]), p)
    np.testing.assert_allclose(boxes, [[92, 92, 156, 124], [0, 0, 16, 16],
                                       [184, 184, 199, 199]], rtol=1e-6)
    np.testing.assert_array_equal(s, np.float32([0.9, 0.6, 0.3]))


def test_sorted_clipped_nmsed_and_within_top_n():
    rng = np.random.default_rng(1)
    scores, deltas, anchors = _rpn_outputs(rng)
    im_info = np.array([190.0, 250.0, 1.0])
    p = ProposalParams(pre_nms_top_n=600, post_nms_top_n=50, nms_thresh=0.5, min_size=8)
    boxes, s = proposals_from_rpn(scores, deltas, anchors, im_info, p)
    assert 0 < len(boxes) <= 50
    assert np.all(np.diff(s) <= 0)
    assert boxes[:, [0, 2]].min() >= 0 and boxes[:, [0, 2]].max() <= 249
    assert boxes[:, [1, 3]].min() >= 0 and boxes[:, [1, 3]].max() <= 189
    assert np.all(boxes[:, 2] - boxes[:, 0] + 1 >= 8) and np.all(boxes[:, 3] - boxes[:, 1] + 1 >= 8)
    iou = bbox_overlaps(boxes.astype(np.float64), boxes.astype(np.float64))
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.5


def test_nothing_survives_gives_empty():
    rng = np.random.default_rng(2)
    scores, deltas, anchors = _rpn_outputs(rng)
    p = ProposalParams(min_size=1000)
    boxes, s = proposals_from_rpn(scores, deltas, anchors, np.array([190.0, 250.0, 1.0]), p)
    assert boxes.shape == (0, 4) and s.shape == (0,)


def test_nan_is_an_error():
    rng = np.random.default_rng(3)
    scores, deltas, anchors = _rpn_outputs(rng)
    deltas[0, 5, 2, 3] = np.nan
    with pytest.raises(ValueError, match="rpn_bbox_pred contains NaN"):
        proposals_from_rpn(scores, deltas, anchors, np.array([190.0, 250.0, 1.0]), ProposalParams())
    with pytest.raises(ValueError, match="do not match the anchors"):
        proposals_from_rpn(scores, deltas[:, :8], anchors, np.array([190.0, 250.0, 1.0]),
                           ProposalParams())
