"""frcnn.ohem: per-RoI loss and hard RoI selection."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.ohem import OHEMParams, integer_labels, roi_losses, select_hard_rois

K = 3


def _blobs(r, rng):
    prob = rng.dirichlet(np.ones(K), size=r)
    pred = rng.normal(0, 1, (r, 4 * K))
    labels = rng.integers(0, K, r)
    targets = np.zeros((r, 4 * K))
    inside = np.zeros((r, 4 * K))
    for i, c in enumerate(labels):
        if c > 0:
            targets[i, 4 * c:4 * c + 4] = rng.normal(0, 1, 4)
            inside[i, 4 * c:4 * c + 4] = 1
    return prob, pred, labels, targets, inside, inside.copy()


def test_loss_is_cross_entropy_plus_smooth_l1():
    prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    pred = np.zeros((2, 12))
    targets = np.zeros((2, 12))
    targets[1, 8:12] = [0.5, -2.0, 0.0, 1.0]
    inside = np.zeros((2, 12))
    inside[1, 8:12] = 1
    losses = roi_losses(prob, pred, np.array([0, 2]), targets, inside, inside)
    assert losses[0] == pytest.approx(-np.log(0.7))
    assert losses[1] == pytest.approx(-np.log(0.8) + 0.125 + 1.5 + 0 + 0.5)


def test_zero_probability_is_finite():
    losses = roi_losses(np.array([[1.0, 0.0, 0.0]]), np.zeros((1, 12)), np.array([1]),
                        np.zeros((1, 12)), np.zeros((1, 12)), np.zeros((1, 12)))
    assert np.isfinite(losses).all() and losses[0] > 30


def test_hardest_are_chosen_in_descending_loss_order():
    rng = np.random.default_rng(0)
    r = 50
    # far-apart boxes: NMS removes nothing
    x = np.arange(r) * 100.0
    rois = np.stack([np.zeros(r), x, x, x + 50, x + 50], 1)
    losses = rng.uniform(size=r)
    keep = select_hard_rois(rois, losses, OHEMParams(batch_size=10))
    np.testing.assert_array_equal(keep, np.argsort(-losses)[:10])


def test_nms_removes_near_duplicate_hard_rois():
    rois = np.array([[0, 0, 0, 100, 100], [0, 1, 1, 101, 101], [0, 300, 300, 400, 400]], float)
    losses = np.array([5.0, 4.9, 1.0])
    assert select_hard_rois(rois, losses, OHEMParams(batch_size=2)).tolist() == [0, 2]
    no_nms = OHEMParams(batch_size=2, use_nms=False)
    assert select_hard_rois(rois, losses, no_nms).tolist() == [0, 1]


def test_ties_fewer_rois_than_batch_and_empty():
    rois = np.array([[0, 0, 0, 10, 10], [0, 50, 50, 60, 60], [0, 100, 100, 110, 110]], float)
    assert select_hard_rois(rois, np.ones(3), OHEMParams(batch_size=128)).tolist() == [0, 1, 2]
    assert select_hard_rois(np.zeros((0, 5)), np.zeros(0), OHEMParams()).shape == (0,)


def test_batch_size_is_per_image():
    rois = np.array([[0, 0, 0, 10, 10], [0, 50, 50, 60, 60], [1, 0, 0, 10, 10],
                     [1, 50, 50, 60, 60]], float)
    keep = select_hard_rois(rois, np.array([1.0, 2.0, 3.0, 0.5]), OHEMParams(batch_size=1))
    assert keep.tolist() == [1, 2]


def test_labels_as_floats():
    assert integer_labels(np.array([0.0, 2.0, 1.0000001], np.float32), 3).tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="0..2"):
        integer_labels(np.array([3.0]), 3)
    with pytest.raises(ValueError, match="0..2"):
        integer_labels(np.array([1.5]), 3)


def test_nan_is_an_error():
    prob, pred, labels, targets, inside, outside = _blobs(4, np.random.default_rng(1))
    pred[2, 3] = np.nan
    with pytest.raises(ValueError, match="bbox_pred contains NaN"):
        roi_losses(prob, pred, labels, targets, inside, outside)
