"""OHEMDataLayer on numpy blobs."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.nms import nms_reference
from frcnn.ohem import roi_losses
from frcnn.testing import NumpyBlob, make_layer
from roi_data_layer.ohem_layer import OHEMDataLayer

K = 4


def _bottoms(r, seed=0):
    rng = np.random.default_rng(seed)
    prob = rng.dirichlet(np.ones(K), size=r)
    pred = rng.normal(0, 0.5, (r, 4 * K))
    x = rng.uniform(0, 500, r)
    rois = np.stack([np.zeros(r), x, x, x + rng.uniform(20, 80, r), x + 40], 1)
    labels = rng.integers(0, K, r).astype(np.float32)
    targets = np.zeros((r, 4 * K))
    inside = np.zeros((r, 4 * K))
    for i, c in enumerate(labels.astype(int)):
        if c:
            targets[i, 4 * c:4 * c + 4] = rng.normal(0, 1, 4)
            inside[i, 4 * c:4 * c + 4] = 1
    return [prob, pred, rois, labels, targets, inside, inside.copy()]


def _forward(bottoms, param_str="'num_classes': 4"):
    layer = make_layer(OHEMDataLayer, param_str, phase="TRAIN", name="hard_roi_mining")
    bottom = [NumpyBlob(b) for b in bottoms]
    top = [NumpyBlob() for _ in range(5)]
    layer.setup(bottom, top)
    layer.forward(bottom, top)
    return [t.data for t in top]


def test_keeps_the_highest_loss_rois_with_their_targets():
    bottoms = _bottoms(300)
    rois, labels, targets, inside, outside = _forward(bottoms)
    assert len(rois) == 128 and labels.shape == (128,) and targets.shape == (128, 16)
    f32 = [np.asarray(b, np.float32) for b in bottoms]
    losses = roi_losses(f32[0], f32[1], f32[3].astype(int), f32[4], f32[5], f32[6])
    # every kept RoI's row is copied consistently from the same input RoI
    index = [int(np.flatnonzero((f32[2] == row).all(axis=1))[0]) for row in rois]
    np.testing.assert_array_equal(labels, f32[3][index])
    np.testing.assert_array_equal(targets, f32[4][index])
    assert np.all(np.diff(losses[index]) <= 1e-6)
    # exactly the first 128 survivors of NMS at 0.7 with the loss as score
    expected = nms_reference(np.hstack([f32[2][:, 1:], losses[:, None]]), 0.7, max_keep=128)
    assert index == expected.tolist()


def test_fewer_rois_than_the_batch_and_no_rois():
    rois, labels, *_ = _forward(_bottoms(10))
    assert len(rois) == len(labels) <= 10 and len(rois) > 0
    empty = [np.zeros((0, K)), np.zeros((0, 4 * K)), np.zeros((0, 5)), np.zeros((0,)),
             np.zeros((0, 4 * K)), np.zeros((0, 4 * K)), np.zeros((0, 4 * K))]
    out = _forward(empty)
    assert [o.shape for o in out] == [(0, 5), (0,), (0, 16), (0, 16), (0, 16)]


def test_class_count_mismatch_names_the_layer():
    with pytest.raises(ValueError, match="layer 'hard_roi_mining'.*num_classes is 5"):
        _forward(_bottoms(10), "'num_classes': 5")
    bad = _bottoms(10)
    bad[1] = bad[1][:, :12]
    with pytest.raises(ValueError, match="bbox_pred_readonly must be"):
        _forward(bad)
