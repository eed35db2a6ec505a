"""frcnn.targets: RPN anchor labelling and RoI sampling (py-faster-rcnn semantics)."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.anchors import generate_anchors, shifted_anchors
from frcnn.boxes import bbox_overlaps, bbox_transform_inv
from frcnn.targets import (AnchorTargetParams, RoISamplingParams, anchor_targets, sample_rois,
                           valid_gt)

H, W, STRIDE = 20, 30, 16          # a 320 x 480 input blob
IM_H, IM_W = H * STRIDE, W * STRIDE
ANCHORS = shifted_anchors(generate_anchors(), H, W, STRIDE)
GT = np.array([[50, 60, 170, 200, 1], [300, 100, 420, 180, 2], [200, 250, 215, 262, 3]],
              np.float32)


def _targets(gt=GT, params=AnchorTargetParams(), seed=0):
    return anchor_targets(ANCHORS, gt, IM_H, IM_W, params, np.random.default_rng(seed))


def test_label_counts_and_fractions():
    t = _targets()
    fg, bg = np.sum(t.labels == 1), np.sum(t.labels == 0)
    assert 0 < fg <= 128 and fg + bg == 256
    assert set(np.unique(t.labels)) <= {-1.0, 0.0, 1.0}
    assert t.labels.shape == (len(ANCHORS),) and t.bbox_targets.shape == (len(ANCHORS), 4)


def test_positives_are_high_iou_or_some_gts_best_anchor():
    params = AnchorTargetParams(batch_size=100000, fg_fraction=1.0)  # no subsampling
    t = _targets(params=params)
    inside = ((ANCHORS[:, 0] >= 0) & (ANCHORS[:, 1] >= 0) & (ANCHORS[:, 2] < IM_W)
              & (ANCHORS[:, 3] < IM_H))
    overlaps = bbox_overlaps(ANCHORS.astype(np.float64), GT[:, :4].astype(np.float64))
    best_for_gt = overlaps[inside].max(axis=0)
    pos = np.flatnonzero(t.labels == 1)
    for i in pos:
        assert inside[i]
        assert overlaps[i].max() >= 0.7 or np.any(overlaps[i] == best_for_gt)
    # every gt box has at least one positive anchor (the small third one included)
    assert np.all(overlaps[pos].max(axis=0) == best_for_gt)
    neg = np.flatnonzero(t.labels == 0)
    assert np.all(overlaps[neg].max(axis=1) < 0.3) and np.all(inside[neg])
    assert np.all(t.labels[~inside] == -1)


def test_targets_decode_back_to_the_assigned_gt():
    t = _targets()
    pos = np.flatnonzero(t.labels == 1)
    decoded = bbox_transform_inv(ANCHORS[pos].astype(np.float64),  # targets: exact inverse
                                 t.bbox_targets[pos].astype(np.float64), exact_inverse=True)
    overlaps = bbox_overlaps(ANCHORS[pos].astype(np.float64), GT[:, :4].astype(np.float64))
    gt = GT[overlaps.argmax(axis=1), :4]
    np.testing.assert_allclose(decoded, gt, atol=1e-3)


def test_weights():
    t = _targets()
    sampled = t.labels >= 0
    np.testing.assert_allclose(t.outside_weights[sampled], 1.0 / 256)
    assert np.all(t.outside_weights[~sampled] == 0)
    assert np.all(t.inside_weights[t.labels == 1] == 1) and np.all(t.inside_weights[t.labels != 1] == 0)
    w = _targets(params=AnchorTargetParams(positive_weight=0.25))
    n_fg, n_bg = np.sum(w.labels == 1), np.sum(w.labels == 0)
    np.testing.assert_allclose(w.outside_weights[w.labels == 1], 0.25 / n_fg)
    np.testing.assert_allclose(w.outside_weights[w.labels == 0], 0.75 / n_bg)


def test_sampling_is_reproducible_for_a_seed():
    a, b, c = _targets(seed=5), _targets(seed=5), _targets(seed=6)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_no_gt_boxes_gives_background_only_and_no_nan():
    t = _targets(gt=np.zeros((0, 5), np.float32))
    assert np.sum(t.labels == 1) == 0 and np.sum(t.labels == 0) == 256
    for values in (t.bbox_targets, t.inside_weights, t.outside_weights):
        assert np.isfinite(values).all()


def test_degenerate_and_outside_gt_boxes():
    gt = np.vstack([GT, [[100, 100, 90, 120, 1]],          # x2 < x1: ignored
                    [[400, 250, 600, 400, 2]]]).astype(np.float32)  # partly outside
    assert len(valid_gt(gt)) == 4
    t = _targets(gt=gt)
    assert np.isfinite(t.bbox_targets).all() and np.sum(t.labels == 1) > 0


# ---------------------------------------------------------------------------- RoI sampling

def _rois(rng, n=300):
    x1 = rng.uniform(0, IM_W - 40, n)
    y1 = rng.uniform(0, IM_H - 40, n)
    w, h = rng.uniform(16, 200, n), rng.uniform(16, 200, n)
    boxes = np.stack([x1, y1, np.minimum(x1 + w, IM_W - 1), np.minimum(y1 + h, IM_H - 1)], 1)
    # plus jittered copies of the gt boxes, so there are foreground RoIs
    jitter = np.repeat(GT[:, :4], 10, axis=0) + rng.normal(0, 4, (30, 4))
    return np.hstack([np.zeros((n + 30, 1)), np.vstack([boxes, jitter])]).astype(np.float32)


def test_roi_sample_fractions_thresholds_and_targets():
    rng = np.random.default_rng(0)
    rois = _rois(rng)
    params = RoISamplingParams()
    s = sample_rois(rois, GT, 4, params, np.random.default_rng(1))
    assert s.rois.shape == (128, 5) and s.labels.shape == (128,)
    assert s.bbox_targets.shape == s.inside_weights.shape == s.outside_weights.shape == (128, 16)
    fg = s.labels > 0
    assert 0 < fg.sum() <= 32 and np.all(fg[:fg.sum()])  # foreground first
    overlaps = bbox_overlaps(s.rois[:, 1:].astype(np.float64), GT[:, :4].astype(np.float64))
    assert np.all(overlaps[fg].max(axis=1) >= 0.5) and np.all(overlaps[~fg].max(axis=1) < 0.5)
    np.testing.assert_array_equal(s.labels[fg], GT[overlaps[fg].argmax(axis=1), 4])
    # targets sit in the class's columns, normalised; they decode to the gt box
    for i in np.flatnonzero(fg):
        c = int(s.labels[i])
        cols = slice(4 * c, 4 * c + 4)
        assert np.count_nonzero(s.inside_weights[i]) == 4 and np.all(s.inside_weights[i, cols] == 1)
        deltas = s.bbox_targets[i, cols] * np.array(params.normalize_stds)
        box = bbox_transform_inv(s.rois[i:i + 1, 1:].astype(np.float64), deltas[None],
                                 exact_inverse=True)[0]
        gt = GT[overlaps[i].argmax(), :4]
        np.testing.assert_allclose(box, gt, atol=1e-2)
    np.testing.assert_array_equal(s.outside_weights, (s.inside_weights > 0).astype(np.float32))
    assert np.all(s.bbox_targets[~fg] == 0)


def test_batch_size_minus_one_keeps_every_labelled_roi():
    rois = _rois(np.random.default_rng(2))
    s = sample_rois(rois, GT, 4, RoISamplingParams(batch_size=-1), np.random.default_rng(0))
    assert len(s.rois) == len(rois) + len(GT)  # every RoI plus the gt boxes (BG_THRESH_LO 0)


def test_no_gt_and_all_background():
    rois = _rois(np.random.default_rng(3))[:50]
    s = sample_rois(rois, np.zeros((0, 5)), 4, RoISamplingParams(), np.random.default_rng(0))
    assert len(s.rois) == 50 and np.all(s.labels == 0) and np.all(s.bbox_targets == 0)
    far = np.array([[0, 0, 0, 10, 10]], np.float32)
    s = sample_rois(far, GT[:1], 4, RoISamplingParams(), np.random.default_rng(0))
    assert list(s.labels) == [1, 0]  # the gt box itself, then the background RoI


def test_bad_classes_and_batch_index():
    with pytest.raises(ValueError, match="classes must be integers in 1..3"):
        sample_rois(_rois(np.random.default_rng(0)), GT * [1, 1, 1, 1, 2], 4, RoISamplingParams(),
                    np.random.default_rng(0))
    rois = _rois(np.random.default_rng(0))
    rois[0, 0] = 1
    with pytest.raises(ValueError, match="batch index 0"):
        sample_rois(rois, GT, 4, RoISamplingParams(), np.random.default_rng(0))
