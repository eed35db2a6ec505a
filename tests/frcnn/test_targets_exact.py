"""frcnn.targets on hand-built anchors and RoIs whose IoUs are exact ties with the thresholds
(0.7, 0.3, 0.5, the background band), borders, gt boxes that overlap nothing, one-pixel and
unusable gt rows, and hand-computed targets and weights."""
from __future__ import annotations

import math

import numpy as np
import pytest

from frcnn.targets import (AnchorTargetParams, RoISamplingParams, anchor_targets, sample_rois,
                           valid_gt)

IM_H = IM_W = 100

# gt A: 10 x 10 (area 100).  gt B: 4 x 4 at x 80, its best anchors cover it with IoU 0.16.
# gt C: overlaps no anchor at all.
GT = np.array([[0, 0, 9, 9, 1], [80, 0, 83, 3, 2], [40, 80, 45, 85, 1]], np.float32)

ANCHORS = np.array([
    [0, 0, 9, 9],       # 0: IoU 1 with A                          -> 1
    [0, 0, 9, 6],       # 1: 70 / 100 = 0.7 with A, a tie           -> 1
    [0, 0, 9, 2],       # 2: 30 / 100 = 0.3, a tie with the negative threshold -> -1
    [0, 0, 9, 1],       # 3: 0.2                                     -> 0
    [50, 50, 59, 59],   # 4: overlaps nothing                        -> 0
    [0, 0, 9, 4],       # 5: 0.5                                     -> -1
    [80, 0, 89, 9],     # 6: 16 / 100 with B, B's best               -> 1
    [74, 0, 83, 9],     # 7: 16 / 100 with B, tied best              -> 1
    [-1, 0, 8, 9],      # 8: x1 = -1: outside                        -> -1
    [90, 91, 99, 100],  # 9: y2 = 100 = height: outside              -> -1
    [91, 90, 100, 99],  # 10: x2 = 100 = width: outside              -> -1
    [0, -1, 9, 8],      # 11: y1 = -1: outside                       -> -1
    [90, 90, 99, 99],   # 12: inside, touching the far edges         -> 0
], np.float64)
LABELS = [1, 1, -1, 0, 0, -1, 1, 1, -1, -1, -1, -1, 0]
ALL = AnchorTargetParams(batch_size=1000, fg_fraction=1.0)  # no subsampling


def _targets(params=ALL, anchors=ANCHORS, gt=GT, seed=0):
    return anchor_targets(anchors, gt, IM_H, IM_W, params, np.random.default_rng(seed))


def test_defaults_are_py_faster_rcnns_train_settings():
    assert AnchorTargetParams() == AnchorTargetParams(
        positive_overlap=0.7, negative_overlap=0.3, clobber_positives=False, fg_fraction=0.5,
        batch_size=256, positive_weight=-1.0, inside_weights=(1.0, 1.0, 1.0, 1.0),
        allowed_border=0)
    assert RoISamplingParams() == RoISamplingParams(
        batch_size=128, fg_fraction=0.25, fg_thresh=0.5, bg_thresh_hi=0.5, bg_thresh_lo=0.0,
        normalize_means=(0.0, 0.0, 0.0, 0.0), normalize_stds=(0.1, 0.1, 0.2, 0.2),
        normalize=True, inside_weights=(1.0, 1.0, 1.0, 1.0))


# ----------------------------------------------------------------------------- valid_gt

def test_valid_gt_keeps_one_pixel_boxes_and_drops_inverted_and_non_finite_rows():
    gt = np.array([[5, 5, 5, 5, 1],         # one pixel: kept
                   [5, 5, 4, 9, 1],         # x2 < x1
                   [5, 5, 9, 4, 1],         # y2 < y1
                   [0, 0, 9, np.nan, 1],    # NaN corner
                   [0, 0, 9, 9, np.inf],    # infinite class
                   [0, 0, 9, 9, 2]], np.float32)
    out = valid_gt(gt)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[5, 5, 5, 5, 1], [0, 0, 9, 9, 2]])
    assert valid_gt(np.zeros((0, 5))).shape == (0, 5)
    assert valid_gt([1, 2, 3, 4, 1]).tolist() == [[1, 2, 3, 4, 1]]


# ----------------------------------------------------------------------------- RPN labels

def test_labels_at_every_threshold_tie_and_border():
    t = _targets()
    assert t.labels.dtype == np.float32 and t.labels.tolist() == LABELS


def test_a_gt_box_overlapping_no_anchor_makes_no_positive():
    only_c = _targets(gt=GT[2:])
    # every inside anchor has IoU 0 < 0.3 with C: all negative, none positive
    assert only_c.labels.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, 0]


def test_clobbering_turns_low_best_anchors_negative():
    t = _targets(AnchorTargetParams(batch_size=1000, fg_fraction=1.0, clobber_positives=True))
    assert t.labels.tolist() == [1, 1, -1, 0, 0, -1, 0, 0, -1, -1, -1, -1, 0]


def test_other_thresholds():
    t = _targets(AnchorTargetParams(positive_overlap=0.5, negative_overlap=0.2,
                                    batch_size=1000, fg_fraction=1.0))
    # 0.5 is now positive (a tie), 0.3 ignored, 0.2 ignored (tie with 0.2 is not < 0.2)
    assert t.labels.tolist() == [1, 1, -1, -1, 0, 1, 1, 1, -1, -1, -1, -1, 0]


def test_allowed_border_admits_anchors_that_far_out_and_no_farther():
    extra = np.array([[-2, 20, 7, 29],     # x1 = -2: out with border 1
                      [20, -2, 29, 7],     # y1 = -2
                      [92, 30, 101, 39],   # x2 = 101 = width + 1
                      [30, 92, 39, 101]],  # y2 = 101
                     np.float64)
    anchors = np.vstack([ANCHORS, extra])
    t = _targets(AnchorTargetParams(allowed_border=1, batch_size=1000, fg_fraction=1.0),
                 anchors=anchors)
    # 8 and 11 overlap A by 9 x 10 = 90: IoU 90 / 110 > 0.7; 9 and 10 overlap nothing
    assert t.labels.tolist() == LABELS[:8] + [1, 0, 0, 1, 0] + [-1, -1, -1, -1]
    wide = _targets(AnchorTargetParams(allowed_border=2, batch_size=1000, fg_fraction=1.0),
                    anchors=anchors)
    assert wide.labels[13:].tolist() == [0, 0, 0, 0]


def test_targets_go_to_the_best_gt_of_every_inside_anchor():
    t = _targets()
    assert t.bbox_targets.dtype == np.float32 and t.bbox_targets.shape == (13, 4)
    # anchor 1 [0, 0, 9, 6] (w 10, h 7, ctr (5, 3.5)) -> A (ctr (5, 5), 10 x 10)
    np.testing.assert_allclose(t.bbox_targets[1], [0, 1.5 / 7, 0, math.log(10 / 7)], rtol=1e-6)
    # anchor 6 [80, 0, 89, 9] (ctr (85, 5)) -> B [80, 0, 83, 3] (4 x 4, ctr (82, 2))
    np.testing.assert_allclose(t.bbox_targets[6], [-0.3, -0.3, math.log(0.4), math.log(0.4)],
                               rtol=1e-6)
    # anchor 4 overlaps nothing: the first gt (A) by argmax; (5 - 55) / 10 = -5
    np.testing.assert_allclose(t.bbox_targets[4], [-5, -5, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(t.bbox_targets[0], [0, 0, 0, 0])
    np.testing.assert_array_equal(t.bbox_targets[8:12], np.zeros((4, 4)))  # outside


def test_uniform_weights_by_hand():
    params = AnchorTargetParams(batch_size=1000, fg_fraction=1.0,
                                inside_weights=(1.0, 0.5, 0.25, 2.0))
    t = _targets(params)
    labels = np.array(LABELS)
    assert t.inside_weights.dtype == t.outside_weights.dtype == np.float32
    np.testing.assert_array_equal(t.inside_weights[labels == 1], [[1, 0.5, 0.25, 2]] * 4)
    np.testing.assert_array_equal(t.inside_weights[labels != 1], np.zeros((9, 4)))
    # 7 anchors labelled 0 or 1 share the weight
    np.testing.assert_allclose(t.outside_weights[labels >= 0], np.full((7, 4), 1 / 7),
                               rtol=1e-6)
    np.testing.assert_array_equal(t.outside_weights[labels < 0], np.zeros((6, 4)))


def test_positive_weight_splits_between_positives_and_negatives():
    t = _targets(AnchorTargetParams(batch_size=1000, fg_fraction=1.0, positive_weight=0.25))
    labels = np.array(LABELS)
    np.testing.assert_allclose(t.outside_weights[labels == 1], np.full((4, 4), 0.25 / 4),
                               rtol=1e-6)
    np.testing.assert_allclose(t.outside_weights[labels == 0], np.full((3, 4), 0.75 / 3),
                               rtol=1e-6)
    np.testing.assert_array_equal(t.outside_weights[labels < 0], np.zeros((6, 4)))


def test_positive_weight_without_positives_or_negatives():
    # only anchor 0 (a positive): no negatives, so no division by zero
    t = _targets(AnchorTargetParams(batch_size=1000, fg_fraction=1.0, positive_weight=0.5),
                 anchors=ANCHORS[:1])
    np.testing.assert_allclose(t.outside_weights, [[0.5] * 4])
    # only anchor 4 (a negative)
    t = _targets(AnchorTargetParams(batch_size=1000, fg_fraction=1.0, positive_weight=0.5),
                 anchors=ANCHORS[4:5])
    np.testing.assert_allclose(t.outside_weights, [[0.5] * 4])


@pytest.mark.parametrize("weight", [0.0, 1.0, 1.5])
def test_positive_weight_outside_the_open_interval_is_refused(weight):
    with pytest.raises(ValueError, match=r"RPN_POSITIVE_WEIGHT must be -1 or in \(0, 1\)"):
        _targets(AnchorTargetParams(positive_weight=weight))


def test_subsampling_keeps_exact_counts():
    # 10 copies of the perfect anchor and 9 of the empty one
    anchors = np.vstack([np.repeat(ANCHORS[:1], 10, 0), np.repeat(ANCHORS[4:5], 9, 0)])
    t = _targets(AnchorTargetParams(batch_size=7, fg_fraction=0.5), anchors=anchors,
                 gt=GT[:1])
    # int(0.5 * 7) = 3 positives, then 7 - 3 = 4 negatives
    assert np.sum(t.labels[:10] == 1) == 3 and np.sum(t.labels[:10] == -1) == 7
    assert np.sum(t.labels[10:] == 0) == 4 and np.sum(t.labels[10:] == -1) == 5
    np.testing.assert_allclose(t.outside_weights[t.labels >= 0], np.full((7, 4), 1 / 7),
                               rtol=1e-6)
    # fewer positives than their share: negatives fill the batch
    few = _targets(AnchorTargetParams(batch_size=8, fg_fraction=0.5),
                   anchors=np.vstack([ANCHORS[:1], anchors[10:]]), gt=GT[:1])
    assert few.labels.tolist().count(1) == 1 and few.labels.tolist().count(0) == 7
    # exactly as many as the batch: nothing dropped
    exact = _targets(AnchorTargetParams(batch_size=10, fg_fraction=0.1),
                     anchors=np.vstack([ANCHORS[:1], anchors[10:]]), gt=GT[:1])
    assert exact.labels.tolist() == [1] + [0] * 9


@pytest.mark.parametrize("gt", [np.zeros((0, 5), np.float32),
                                np.array([[5, 5, 4, 4, 1], [0, 0, np.nan, 9, 1]], np.float32)])
def test_without_usable_gt_every_inside_anchor_is_negative(gt):
    t = _targets(gt=gt)
    assert t.labels.tolist() == [0 if lab != -1 or i in (2, 5) else -1
                                 for i, lab in enumerate(LABELS)]
    np.testing.assert_array_equal(t.bbox_targets, np.zeros((13, 4)))
    np.testing.assert_array_equal(t.inside_weights, np.zeros((13, 4)))
    np.testing.assert_allclose(t.outside_weights[t.labels == 0], np.full((9, 4), 1 / 9),
                               rtol=1e-6)


def test_no_anchor_inside():
    t = _targets(anchors=ANCHORS[8:12])
    assert t.labels.tolist() == [-1] * 4
    for values in (t.bbox_targets, t.inside_weights, t.outside_weights):
        np.testing.assert_array_equal(values, np.zeros((4, 4)))


# ----------------------------------------------------------------------------- RoI sampling

# G1: 10 x 10, class 2; G2: 20 x 10, class 1.  num_classes 3.
ROI_GT = np.array([[0, 0, 9, 9, 2], [50, 50, 69, 59, 1]], np.float32)
ROIS = np.array([
    [0, 0, 0, 9, 4],          # 0: 0.5 with G1: foreground (a tie)
    [0, 0, 0, 9, 3],          # 1: 0.4: background
    [0, 0, 0, 9, 0],          # 2: 0.1: background when BG_THRESH_LO is 0.1 (a tie)
    [0, 0, 0, 4, 0],          # 3: 0.05: below BG_THRESH_LO 0.1
    [0, 50, 50, 69, 56],      # 4: 140 / 200 = 0.7 with G2: foreground
    [0, 100, 100, 109, 109],  # 5: 0
], np.float32)
MEANS, STDS = (0.1, -0.1, 0.05, 0.0), (0.1, 0.1, 0.2, 0.2)
KEEP_ALL = RoISamplingParams(batch_size=-1, bg_thresh_lo=0.1, normalize_means=MEANS,
                             normalize_stds=STDS, inside_weights=(1.0, 0.5, 0.25, 2.0))


def _sample(params=KEEP_ALL, rois=ROIS, gt=ROI_GT, seed=0):
    return sample_rois(rois, gt, 3, params, np.random.default_rng(seed))


def test_every_labelled_roi_in_order_at_the_threshold_ties():
    s = _sample()
    # foreground: RoIs 0 and 4, then the gt boxes; background: RoIs 1 and 2
    np.testing.assert_array_equal(s.rois, [ROIS[0], ROIS[4], [0, 0, 0, 9, 9],
                                           [0, 50, 50, 69, 59], ROIS[1], ROIS[2]])
    assert s.rois.dtype == s.labels.dtype == np.float32
    assert s.labels.tolist() == [2, 1, 2, 1, 0, 0]


def test_normalised_targets_and_weights_by_hand():
    s = _sample()
    assert s.bbox_targets.shape == (6, 12) and s.bbox_targets.dtype == np.float32
    # RoI 0 (w 10, h 5, ctr (5, 2.5)) -> G1: raw (0, 0.5, 0, log 2); minus MEANS over STDS
    expected = np.zeros((6, 12))
    expected[0, 8:12] = [(0 - 0.1) / 0.1, (0.5 + 0.1) / 0.1, (0 - 0.05) / 0.2, math.log(2) / 0.2]
    # RoI 4 (w 20, h 7, ctr (60, 53.5)) -> G2 (ctr (60, 55), h 10): raw (0, 1.5 / 7, 0, log 10/7)
    expected[1, 4:8] = [-1, (1.5 / 7 + 0.1) / 0.1, -0.25, math.log(10 / 7) / 0.2]
    expected[2, 8:12] = [-1, 1, -0.25, 0]  # the gt boxes themselves: raw 0
    expected[3, 4:8] = [-1, 1, -0.25, 0]
    np.testing.assert_allclose(s.bbox_targets, expected, rtol=1e-6, atol=1e-6)
    inside = np.zeros((6, 12))
    inside[0, 8:12] = inside[2, 8:12] = inside[1, 4:8] = inside[3, 4:8] = [1, 0.5, 0.25, 2]
    np.testing.assert_array_equal(s.inside_weights, inside)
    np.testing.assert_array_equal(s.outside_weights, (inside > 0).astype(np.float32))


def test_targets_without_normalisation():
    s = _sample(RoISamplingParams(batch_size=-1, bg_thresh_lo=0.1, normalize=False,
                                  normalize_means=MEANS, normalize_stds=STDS))
    np.testing.assert_allclose(s.bbox_targets[0, 8:12], [0, 0.5, 0, math.log(2)], rtol=1e-6)
    np.testing.assert_allclose(s.bbox_targets[1, 4:8], [0, 1.5 / 7, 0, math.log(10 / 7)],
                               rtol=1e-6)
    np.testing.assert_array_equal(s.inside_weights[0], [0] * 8 + [1] * 4)


def test_other_thresholds_and_the_background_band():
    # FG_THRESH 0.6: RoI 0 (0.5) is no longer foreground; BG_THRESH_HI 0.5 is exclusive, so
    # it is no background either; BG_THRESH_LO 0: RoIs 3 and 5 join the background
    s = _sample(RoISamplingParams(batch_size=-1, fg_thresh=0.6, bg_thresh_hi=0.5,
                                  bg_thresh_lo=0.0))
    np.testing.assert_array_equal(s.rois[:, 1:], [ROIS[4, 1:], [0, 0, 9, 9], [50, 50, 69, 59],
                                                  ROIS[1, 1:], ROIS[2, 1:], ROIS[3, 1:],
                                                  ROIS[5, 1:]])
    assert s.labels.tolist() == [1, 2, 1, 0, 0, 0, 0]
    # a band [0.1, 0.45): 0.4 and 0.1 in, 0.5 out (fg_thresh 0.75 makes it no foreground)
    s = _sample(RoISamplingParams(batch_size=-1, fg_thresh=0.75, bg_thresh_hi=0.45,
                                  bg_thresh_lo=0.1))
    np.testing.assert_array_equal(s.rois, [[0, 0, 0, 9, 9], [0, 50, 50, 69, 59], ROIS[1],
                                           ROIS[2]])


def test_sampling_counts():
    # 4 foreground candidates (RoIs 0, 4, the 2 gt boxes), 2 background (1, 2)
    s = _sample(RoISamplingParams(batch_size=4, fg_fraction=0.5, bg_thresh_lo=0.1))
    assert len(s.rois) == 4 and s.labels[:2].tolist().count(0) == 0
    assert s.labels[2:].tolist() == [0, 0]
    fg_rows = {tuple(r) for r in s.rois[:2].tolist()}
    assert fg_rows <= {tuple(ROIS[0]), tuple(ROIS[4]), (0, 0, 0, 9, 9), (0, 50, 50, 69, 59)}
    assert {tuple(r) for r in s.rois[2:].tolist()} == {tuple(ROIS[1]), tuple(ROIS[2])}
    # round(0.25 * 14) = round(3.5) = 4 foreground, then 10 more wanted, only 2 background
    s = _sample(RoISamplingParams(batch_size=14, fg_fraction=0.25, bg_thresh_lo=0.1))
    assert s.labels.tolist().count(0) == 2 and len(s.rois) == 6
    # more background than wanted: 1 of 2 drawn
    s = _sample(RoISamplingParams(batch_size=5, fg_fraction=0.8, bg_thresh_lo=0.1))
    assert len(s.rois) == 5 and s.labels.tolist().count(0) == 1
    # no foreground wanted at all
    s = _sample(RoISamplingParams(batch_size=2, fg_fraction=0.0, bg_thresh_lo=0.1))
    assert s.labels.tolist() == [0, 0]
    np.testing.assert_array_equal(s.bbox_targets, np.zeros((2, 12)))


def test_a_batch_size_not_above_zero_keeps_every_labelled_roi():
    every = _sample()
    for size in (0, -2):
        s = _sample(RoISamplingParams(batch_size=size, bg_thresh_lo=0.1, normalize_means=MEANS,
                                      normalize_stds=STDS, inside_weights=(1.0, 0.5, 0.25, 2.0)))
        np.testing.assert_array_equal(s.rois, every.rois)
        np.testing.assert_array_equal(s.bbox_targets, every.bbox_targets)


def test_without_gt_every_roi_is_background_or_nothing():
    s = sample_rois(ROIS, np.zeros((0, 5)), 3, RoISamplingParams(batch_size=-1),
                    np.random.default_rng(0))
    np.testing.assert_array_equal(s.rois, ROIS)
    assert s.labels.tolist() == [0] * 6
    # with BG_THRESH_LO above 0 no RoI qualifies
    s = sample_rois(ROIS, np.zeros((0, 5)), 3, RoISamplingParams(batch_size=-1,
                                                                 bg_thresh_lo=0.1),
                    np.random.default_rng(0))
    assert s.rois.shape == (0, 5) and s.bbox_targets.shape == (0, 12)
    # FG_THRESH 0: everything counts as foreground of class 0, still without targets
    s = sample_rois(ROIS, np.zeros((0, 5)), 3,
                    RoISamplingParams(batch_size=-1, fg_thresh=0.0, bg_thresh_hi=0.0),
                    np.random.default_rng(0))
    assert s.labels.tolist() == [0] * 6
    np.testing.assert_array_equal(s.bbox_targets, np.zeros((6, 12)))
    np.testing.assert_array_equal(s.outside_weights, np.zeros((6, 12)))


def test_no_rois_only_the_gt_boxes():
    s = _sample(rois=np.zeros((0, 5), np.float32))
    np.testing.assert_array_equal(s.rois, [[0, 0, 0, 9, 9], [0, 50, 50, 69, 59]])
    assert s.labels.tolist() == [2, 1]


@pytest.mark.parametrize("classes", [[0, 1], [1, 3], [1.5, 1]])
def test_gt_classes_outside_one_to_k_minus_one_are_refused(classes):
    gt = ROI_GT.copy()
    gt[:, 4] = classes
    with pytest.raises(ValueError, match=r"classes must be integers in 1\.\.2"):
        _sample(gt=gt)


def test_highest_class_and_unusable_gt_rows():
    gt = np.vstack([ROI_GT, [[5, 5, 4, 4, 7]]]).astype(np.float32)  # inverted: ignored
    gt[1, 4] = 2
    s = _sample(gt=gt)
    assert s.labels.tolist() == [2, 2, 2, 2, 0, 0]
    rois = ROIS.copy()
    rois[3, 0] = 1
    with pytest.raises(ValueError, match="batch index 0"):
        _sample(rois=rois)
