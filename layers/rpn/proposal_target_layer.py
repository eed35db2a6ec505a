"""``rpn.proposal_target_layer.ProposalTargetLayer``: samples RoIs and their targets
(py-faster-rcnn's).

Bottoms: rpn_rois (R, 5) = [0, x1, y1, x2, y2], gt_boxes (G, 5) = x1 y1 x2 y2 class.
Tops: rois (B, 5), labels (B,), bbox_targets, bbox_inside_weights, bbox_outside_weights
(B, 4K), K = num_classes.
param_str keys: 'num_classes' (required).  cfg keys: TRAIN.BATCH_SIZE (-1 keeps every RoI,
for OHEM nets), FG_FRACTION, FG_THRESH, BG_THRESH_HI, BG_THRESH_LO, BBOX_NORMALIZE_*,
BBOX_INSIDE_WEIGHTS, RNG_SEED.
"""
from __future__ import annotations

import numpy as np

import caffe
from frcnn.caffe_layer import check_bottoms, check_tops, layer_params, reports_errors
from frcnn.config import cfg
from frcnn.rpn_setup import roi_sampling_params
from frcnn.targets import sample_rois
from frcnn.train_state import rng_state, set_rng_state


class ProposalTargetLayer(caffe.Layer):
    """Adds the gt boxes to the proposals, samples fg/bg RoIs, computes targets."""

    @reports_errors
    def setup(self, bottom, top):
        check_bottoms(self, bottom, (2,), "rpn_rois, gt_boxes")
        check_tops(self, top, (5,), "rois, labels, bbox_targets, bbox_inside_weights, "
                                    "bbox_outside_weights")
        self._num_classes = layer_params(self)["num_classes"]
        if self._num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + one class), got "
                             f"{self._num_classes}")
        self._params = roi_sampling_params(cfg)
        self._rng = np.random.default_rng(cfg.RNG_SEED)
        k4 = 4 * self._num_classes
        top[0].reshape(1, 5)
        top[1].reshape(1)
        for i in (2, 3, 4):
            top[i].reshape(1, k4)

    @reports_errors
    def forward(self, bottom, top):
        s = sample_rois(bottom[0].data, bottom[1].data, self._num_classes, self._params,
                        self._rng)
        for i, values in enumerate((s.rois, s.labels, s.bbox_targets, s.inside_weights,
                                    s.outside_weights)):
            top[i].reshape(*values.shape)
            top[i].data[...] = values

    def get_train_state(self) -> dict:
        """The sampling Generator's state, JSON-able (frcnn.train_state: exact resumes)."""
        return {"rng": rng_state(self._rng)}

    @reports_errors
    def set_train_state(self, state: dict) -> None:
        """Continue sampling from a ``get_train_state``."""
        set_rng_state(self._rng, state["rng"])

    def reshape(self, bottom, top):
        """Tops are shaped in forward."""

    def backward(self, top, propagate_down, bottom):
        """No gradient."""
