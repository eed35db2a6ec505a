"""frcnn.ohem with hand-computed losses (asymmetric predictions and targets, both branches of
smooth L1, weights that differ per coordinate) and every input check."""
from __future__ import annotations

import math

import numpy as np
import pytest

from frcnn.ohem import EPS, OHEMParams, integer_labels, roi_losses, select_hard_rois


# ----------------------------------------------------------------------------- labels

def test_defaults():
    assert OHEMParams() == OHEMParams(batch_size=128, use_nms=True, nms_thresh=0.7)


def test_integer_labels_round_floats_within_a_thousandth():
    out = integer_labels(np.array([[0.0], [2.0005], [0.9995], [0.001]], np.float64), 3)
    assert out.dtype == np.int64 and out.tolist() == [0, 2, 1, 0]
    assert integer_labels(np.zeros(0), 3).shape == (0,)


@pytest.mark.parametrize("labels", [[0, 1, 1.002], [0, 1.0015], [2, -1], [-1, 0, 1], [0, 3],
                                    [3, 0, 1], [0.5]])
def test_integer_labels_refuse_any_bad_element(labels):
    with pytest.raises(ValueError, match=r"labels must be integers in 0\.\.2"):
        integer_labels(np.array(labels, np.float64), 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_integer_labels_refuse_non_finite(bad):
    with pytest.raises(ValueError, match="labels contain NaN or inf"):
        integer_labels(np.array([0.0, bad]), 3)


# ----------------------------------------------------------------------------- losses

def _one_roi():
    """K = 2, label 1: probability 0.75, and class 1's box columns 4..7."""
    prob = np.array([[0.25, 0.75]])
    pred = np.zeros((1, 8))
    pred[0, :4] = [3.0, -2.0, 1.0, 5.0]        # background columns: weight 0, no loss
    pred[0, 4:] = [0.5, -1.0, 2.0, 0.0]
    targets = np.zeros((1, 8))
    targets[0, 4:] = [0.0, 0.5, -1.0, 0.25]
    inside = np.zeros((1, 8))
    inside[0, 4:] = [1.0, 1.0, 0.5, 2.0]
    outside = np.zeros((1, 8))
    outside[0, 4:] = [1.0, 0.5, 1.0, 2.0]
    return prob, pred, np.array([1]), targets, inside, outside


def test_loss_by_hand_with_both_smooth_l1_branches_and_signs():
    prob, pred, labels, targets, inside, outside = _one_roi()
    # d = inside * (pred - target) = [0.5, -1.5, 1.5, -0.5]
    # smooth L1: 0.125, 1.0, 1.0, 0.125; times outside [1, 0.5, 1, 2]: 0.125 + 0.5 + 1 + 0.25
    losses = roi_losses(prob, pred, labels, targets, inside, outside)
    assert losses.dtype == np.float64 and losses.shape == (1,)
    assert losses[0] == pytest.approx(-math.log(0.75) + 1.875, rel=1e-12)


def test_loss_of_a_prediction_on_the_other_side_of_the_target():
    prob, pred, labels, targets, inside, outside = _one_roi()
    # pred and targets exchanged: d flips sign, the loss is the same (smooth L1 is even)
    same = roi_losses(prob, targets, labels, pred, inside, outside)
    assert same[0] == pytest.approx(-math.log(0.75) + 1.875, rel=1e-12)
    # pred 0.8 against target 2.0, weight 1: d = -1.2 -> 0.7; against -0.4: d = 1.2 -> 0.7;
    # against 0.4: d = 0.4 -> 0.08
    pred = np.array([[0, 0, 0, 0, 0.8, 0.8, 0.8, 0]])
    targets = np.array([[0, 0, 0, 0, 2.0, -0.4, 0.4, 0]])
    weights = np.array([[0, 0, 0, 0, 1.0, 1.0, 1.0, 0]])
    got = roi_losses(np.array([[0.0, 1.0]]), pred, labels, targets, weights, weights)
    assert got[0] == pytest.approx(0.7 + 0.7 + 0.08, rel=1e-12)


def test_loss_at_the_smooth_l1_knee_and_of_background_rois():
    w = np.array([[1.0, 1, 1, 1]])
    # |d| = 1 exactly: 0.5 either way; |d| = 3: 2.5
    got = roi_losses(np.array([[1.0]]), np.array([[1.0, -1.0, 3.0, 0.0]]), np.array([0]),
                     np.zeros((1, 4)), w, w)
    assert got[0] == pytest.approx(0.5 + 0.5 + 2.5)
    # background label 0 picks column 0 of the probabilities
    got = roi_losses(np.array([[0.2, 0.8], [0.6, 0.4]]), np.zeros((2, 8)), np.array([0, 1]),
                     np.zeros((2, 8)), np.zeros((2, 8)), np.zeros((2, 8)))
    np.testing.assert_allclose(got, [-math.log(0.2), -math.log(0.4)], rtol=1e-12)


def test_a_zero_probability_costs_minus_log_eps():
    assert EPS == 1e-14
    got = roi_losses(np.array([[1.0, 0.0]]), np.zeros((1, 8)), np.array([1]),
                     np.zeros((1, 8)), np.zeros((1, 8)), np.zeros((1, 8)))
    assert got[0] == pytest.approx(-math.log(1e-14), rel=1e-12)
    tiny = roi_losses(np.array([[1.0, 1e-20]]), np.zeros((1, 8)), np.array([1]),
                      np.zeros((1, 8)), np.zeros((1, 8)), np.zeros((1, 8)))
    assert tiny[0] == pytest.approx(-math.log(1e-14), rel=1e-12)
    above = roi_losses(np.array([[1.0, 1e-10]]), np.zeros((1, 8)), np.array([1]),
                       np.zeros((1, 8)), np.zeros((1, 8)), np.zeros((1, 8)))
    assert above[0] == pytest.approx(-math.log(1e-10), rel=1e-12)


def test_losses_of_lists():
    prob, pred, labels, targets, inside, outside = _one_roi()
    got = roi_losses(prob.tolist(), pred.tolist(), labels.tolist(), targets.tolist(),
                     inside.tolist(), outside.tolist())
    assert got[0] == pytest.approx(-math.log(0.75) + 1.875, rel=1e-12)


def test_losses_of_float32_blobs_and_of_no_roi():
    prob, pred, labels, targets, inside, outside = (a.astype(np.float32) if a.dtype.kind == "f"
                                                    else a for a in _one_roi())
    assert roi_losses(prob, pred, labels, targets, inside, outside)[0] == \
        pytest.approx(-math.log(0.75) + 1.875, rel=1e-6)
    empty = roi_losses(np.zeros((0, 2)), np.zeros((0, 8)), np.zeros(0, int), np.zeros((0, 8)),
                       np.zeros((0, 8)), np.zeros((0, 8)))
    assert empty.shape == (0,)


def test_loss_input_checks():
    prob, pred, labels, targets, inside, outside = _one_roi()
    with pytest.raises(ValueError, match="cls_prob has 2 rows but labels has 1"):
        roi_losses(np.vstack([prob, prob]), pred, labels, targets, inside, outside)
    for bad in (np.nan, np.inf):
        p = prob.copy()
        p[0, 0] = bad
        with pytest.raises(ValueError, match="cls_prob contains NaN or inf"):
            roi_losses(p, pred, labels, targets, inside, outside)
        q = pred.copy()
        q[0, 7] = bad
        with pytest.raises(ValueError, match="bbox_pred contains NaN or inf"):
            roi_losses(prob, q, labels, targets, inside, outside)


# ----------------------------------------------------------------------------- selection

def test_selection_per_image_in_batch_index_order():
    # image 1's RoIs come first in the blob; image 0's are still selected first
    rois = np.array([[1, 0, 0, 10, 10], [1, 50, 50, 60, 60], [0, 0, 0, 10, 10],
                     [0, 50, 50, 60, 60], [0, 100, 100, 110, 110]], float)
    losses = np.array([1.0, 3.0, 0.5, 2.0, 4.0])
    keep = select_hard_rois(rois, losses, OHEMParams(batch_size=2))
    assert keep.dtype == np.int64 and keep.tolist() == [4, 3, 1, 0]
    keep = select_hard_rois(rois, losses, OHEMParams(batch_size=2, use_nms=False))
    assert keep.tolist() == [4, 3, 1, 0]
    assert select_hard_rois(rois, losses, OHEMParams(batch_size=0)).tolist() == []


def test_nms_threshold_is_used_and_strict():
    # two 10 x 10 boxes sharing 10 x 5 pixels: IoU 50 / 150 = 1/3
    rois = np.array([[0, 0, 0, 9, 9], [0, 0, 5, 9, 14]], float)
    losses = np.array([2.0, 1.0])
    assert select_hard_rois(rois, losses, OHEMParams(nms_thresh=0.3)).tolist() == [0]
    assert select_hard_rois(rois, losses, OHEMParams(nms_thresh=0.34)).tolist() == [0, 1]
    assert select_hard_rois(rois, losses, OHEMParams(nms_thresh=0.3, use_nms=False)).tolist() \
        == [0, 1]


def test_losses_as_a_list_or_a_column_blob():
    rois = np.array([[0, 0, 0, 9, 9], [0, 50, 50, 59, 59], [0, 100, 0, 109, 9]], float)
    for losses in ([1.0, 3.0, 2.0], np.array([[1.0], [3.0], [2.0]], np.float32)):
        assert select_hard_rois(rois, losses, OHEMParams(batch_size=2)).tolist() == [1, 2]
        assert select_hard_rois(rois.tolist(), losses,
                                OHEMParams(batch_size=2, use_nms=False)).tolist() == [1, 2]


def test_selection_without_nms_breaks_ties_by_index():
    rois = np.array([[0, 0, 0, 9, 9]] * 4, float)
    losses = np.array([1.0, 2.0, 1.0, 2.0])
    keep = select_hard_rois(rois, losses, OHEMParams(batch_size=3, use_nms=False))
    assert keep.tolist() == [1, 3, 0]
    assert select_hard_rois(rois, losses, OHEMParams(batch_size=3)).tolist() == [1]
    empty = select_hard_rois(np.zeros((0, 5)), np.zeros(0), OHEMParams(use_nms=False))
    assert empty.dtype == np.int64 and empty.shape == (0,)
