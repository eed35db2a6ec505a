"""``rpn.proposal_layer.ProposalLayer``: RPN outputs -> region proposals (py-faster-rcnn's).

Bottoms: rpn_cls_prob_reshape (1, 2A, H, W; foreground scores in channels A..2A-1),
rpn_bbox_pred (1, 4A, H, W), im_info (1, 3) = [height, width, scale].
Tops: rois (R, 5) = [0, x1, y1, x2, y2] in input-blob pixels, and optionally scores (R, 1).
param_str keys: 'feat_stride' (16), 'scales' ((8, 16, 32)), 'ratios' ((0.5, 1, 2)).
cfg keys, by the layer's phase: TRAIN.RPN_* or TEST.RPN_* (PRE_NMS_TOP_N, POST_NMS_TOP_N,
NMS_THRESH, MIN_SIZE), USE_GPU_NMS, GPU_ID.
"""
from __future__ import annotations

import numpy as np

import caffe
from frcnn.anchors import AnchorGrid
from frcnn.caffe_layer import check_bottoms, check_tops, layer_params, phase_key, reports_errors
from frcnn.config import cfg
from frcnn.nms import nms_device
from frcnn.proposals import proposals_from_rpn
from frcnn.rpn_setup import proposal_params


class ProposalLayer(caffe.Layer):
    """Decodes anchors with the predicted deltas, filters and NMS-es them; no gradient."""

    @reports_errors
    def setup(self, bottom, top):
        check_bottoms(self, bottom, (3,), "rpn_cls_prob_reshape, rpn_bbox_pred, im_info")
        check_tops(self, top, (1, 2), "rois[, scores]")
        params = layer_params(self)
        self._grid = AnchorGrid(params["ratios"], params["scales"], params["feat_stride"])
        self._num_anchors = self._grid.num_anchors
        self._phase = phase_key(self)
        self._params = proposal_params(cfg, self._phase)
        self._device_id = nms_device(cfg.USE_GPU_NMS, cfg.GPU_ID)
        self._check_blobs(bottom)
        top[0].reshape(1, 5)
        if len(top) > 1:
            top[1].reshape(1, 1)

    def _check_blobs(self, bottom):
        a = self._num_anchors
        probs, deltas = bottom[0].data.shape, bottom[1].data.shape
        if len(probs) != 4 or probs[0] != 1:
            raise ValueError(f"rpn_cls_prob_reshape must be (1, 2A, H, W) (single-image "
                             f"batches), got {tuple(probs)}")
        if probs[1] != 2 * a:
            raise ValueError(f"rpn_cls_prob_reshape has {probs[1]} channels but the "
                             f"param_str's ratios x scales give A = {a} anchors (2A = {2 * a})")
        if tuple(deltas) != (1, 4 * a) + tuple(probs[2:]):
            raise ValueError(f"rpn_bbox_pred must be (1, 4A={4 * a}, H, W) matching the scores "
                             f"{tuple(probs)}, got {tuple(deltas)}")

    @reports_errors
    def forward(self, bottom, top):
        self._check_blobs(bottom)
        a = self._num_anchors
        probs = bottom[0].data
        height, width = probs.shape[-2:]
        boxes, scores = proposals_from_rpn(probs[:, a:, :, :], bottom[1].data,
                                           self._grid.anchors(height, width),
                                           np.asarray(bottom[2].data).reshape(-1), self._params,
                                           device_id=self._device_id)
        top[0].reshape(len(boxes), 5)
        top[0].data[:, 0] = 0
        top[0].data[:, 1:] = boxes
        if len(top) > 1:
            top[1].reshape(len(scores), 1)
            top[1].data[:, 0] = scores

    def reshape(self, bottom, top):
        """Tops are shaped in forward."""

    def backward(self, top, propagate_down, bottom):
        """No gradient."""
