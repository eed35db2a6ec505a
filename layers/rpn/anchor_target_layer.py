"""``rpn.anchor_target_layer.AnchorTargetLayer``: RPN training targets (py-faster-rcnn's).

Bottoms: rpn_cls_score (1, 2A, H, W), gt_boxes (G, 5) = x1 y1 x2 y2 class, im_info (1, 3)
= [height, width, scale], and (optionally, as py-faster-rcnn prototxts give it) data.
Tops: rpn_labels (1, 1, A*H, W) in {1, 0, -1}; rpn_bbox_targets, rpn_bbox_inside_weights,
rpn_bbox_outside_weights (1, 4A, H, W).
param_str keys: 'feat_stride' (16), 'scales' ((8, 16, 32)), 'ratios' ((0.5, 1, 2)),
'allowed_border' (0).  cfg keys: TRAIN.RPN_*, RNG_SEED.
"""
from __future__ import annotations

import numpy as np

import caffe
from frcnn.anchors import AnchorGrid
from frcnn.caffe_layer import check_bottoms, check_tops, layer_params, reports_errors
from frcnn.config import cfg
from frcnn.rpn_setup import anchor_target_params
from frcnn.targets import anchor_targets
from frcnn.train_state import rng_state, set_rng_state


class AnchorTargetLayer(caffe.Layer):
    """Assigns anchors to gt boxes and samples the RPN minibatch; no gradient."""

    @reports_errors
    def setup(self, bottom, top):
        check_bottoms(self, bottom, (3, 4), "rpn_cls_score, gt_boxes, im_info[, data]")
        check_tops(self, top, (4,), "rpn_labels, rpn_bbox_targets, rpn_bbox_inside_weights, "
                                    "rpn_bbox_outside_weights")
        params = layer_params(self)
        self._grid = AnchorGrid(params["ratios"], params["scales"], params["feat_stride"])
        self._num_anchors = self._grid.num_anchors
        self._params = anchor_target_params(cfg, params["allowed_border"])
        self._rng = np.random.default_rng(cfg.RNG_SEED)
        self._check_score_blob(bottom[0].data.shape)
        a = self._num_anchors
        height, width = bottom[0].data.shape[-2:]
        top[0].reshape(1, 1, a * height, width)
        for i in (1, 2, 3):
            top[i].reshape(1, 4 * a, height, width)

    def _check_score_blob(self, shape):
        if len(shape) != 4 or shape[0] != 1:
            raise ValueError(f"rpn_cls_score must be (1, 2A, H, W) (single-image batches), "
                             f"got {tuple(shape)}")
        if shape[1] != 2 * self._num_anchors:
            raise ValueError(f"rpn_cls_score has {shape[1]} channels but the param_str's "
                             f"ratios x scales give A = {self._num_anchors} anchors "
                             f"(2A = {2 * self._num_anchors})")

    @reports_errors
    def forward(self, bottom, top):
        self._check_score_blob(bottom[0].data.shape)
        height, width = bottom[0].data.shape[-2:]
        im_info = np.asarray(bottom[2].data).reshape(-1)
        t = anchor_targets(self._grid.anchors(height, width), bottom[1].data, im_info[0],
                           im_info[1], self._params, self._rng)
        a = self._num_anchors
        labels = t.labels.reshape(1, height, width, a).transpose(0, 3, 1, 2)
        top[0].reshape(1, 1, a * height, width)
        top[0].data[...] = labels.reshape(1, 1, a * height, width)
        for i, values in enumerate((t.bbox_targets, t.inside_weights, t.outside_weights), 1):
            top[i].reshape(1, 4 * a, height, width)
            top[i].data[...] = values.reshape(1, height, width, 4 * a).transpose(0, 3, 1, 2)

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
