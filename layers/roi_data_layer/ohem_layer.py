"""``roi_data_layer.layer.OHEMDataLayer``: online hard example mining (defined here, exposed
by ``roi_data_layer.layer`` under the name the seed's prototxts use).

Bottoms: cls_prob_readonly (R, K), bbox_pred_readonly (R, 4K), rois (R, 5), labels (R,),
bbox_targets, bbox_inside_weights, bbox_outside_weights (R, 4K) -- the read-only branch's
outputs and ProposalTargetLayer's tops (with TRAIN.BATCH_SIZE -1, so every RoI is scored).
Tops: rois_hard, labels_hard, bbox_targets_hard, bbox_inside_weights_hard,
bbox_outside_weights_hard: the same layouts, for the hard RoIs only (at most
TRAIN.OHEM_BATCH_SIZE per image; none when R is 0).
param_str keys: 'num_classes' (optional; checked against the blobs when given).
cfg keys: TRAIN.OHEM_BATCH_SIZE, OHEM_USE_NMS, OHEM_NMS_THRESH, USE_GPU_NMS, GPU_ID.
No gradient flows through it.
"""
from __future__ import annotations

import numpy as np

import caffe
from frcnn.caffe_layer import check_bottoms, check_tops, layer_params, reports_errors
from frcnn.config import cfg
from frcnn.nms import nms_device
from frcnn.ohem import OHEMParams, integer_labels, roi_losses, select_hard_rois

_BOTTOMS = ("cls_prob_readonly", "bbox_pred_readonly", "rois", "labels", "bbox_targets",
            "bbox_inside_weights", "bbox_outside_weights")


class OHEMDataLayer(caffe.Layer):
    """Keeps the RoIs with the highest loss under the current weights."""

    PARAMS = "roi_data_layer.layer.OHEMDataLayer"

    @reports_errors
    def setup(self, bottom, top):
        check_bottoms(self, bottom, (7,), ", ".join(_BOTTOMS))
        check_tops(self, top, (5,), "rois_hard, labels_hard, bbox_targets_hard, "
                                    "bbox_inside_weights_hard, bbox_outside_weights_hard")
        self._num_classes = layer_params(self)["num_classes"]
        t = cfg.TRAIN
        self._params = OHEMParams(batch_size=t.OHEM_BATCH_SIZE, use_nms=t.OHEM_USE_NMS,
                                  nms_thresh=t.OHEM_NMS_THRESH)
        if self._params.batch_size < 1:
            raise ValueError(f"TRAIN.OHEM_BATCH_SIZE must be >= 1, got {self._params.batch_size}")
        self._device_id = nms_device(cfg.USE_GPU_NMS, cfg.GPU_ID)
        k = self._classes(bottom)
        top[0].reshape(1, 5)
        top[1].reshape(1)
        for i in (2, 3, 4):
            top[i].reshape(1, 4 * k)

    def _classes(self, bottom) -> int:
        """K from cls_prob_readonly, checked against the other blobs and the param_str."""
        r = bottom[0].data.shape[0]
        k = int(np.prod(bottom[0].data.shape[1:]))
        if self._num_classes and k != self._num_classes:
            raise ValueError(f"cls_prob_readonly has {k} classes but param_str num_classes is "
                             f"{self._num_classes}")
        expected = {1: 4 * k, 4: 4 * k, 5: 4 * k, 6: 4 * k, 2: 5}
        for i, width in expected.items():
            shape = bottom[i].data.shape
            if shape[0] != r or int(np.prod(shape[1:])) != width:
                raise ValueError(f"{_BOTTOMS[i]} must be ({r}, {width}) to match "
                                 f"cls_prob_readonly {tuple(bottom[0].data.shape)}, got "
                                 f"{tuple(shape)}")
        if bottom[3].data.size != r:
            raise ValueError(f"labels must have {r} entries, got shape {bottom[3].data.shape}")
        return k

    @reports_errors
    def forward(self, bottom, top):
        k = self._classes(bottom)
        r = bottom[0].data.shape[0]
        labels = integer_labels(bottom[3].data, k)
        wide = [np.asarray(bottom[i].data).reshape(r, 4 * k) for i in (1, 4, 5, 6)]
        losses = roi_losses(np.asarray(bottom[0].data).reshape(r, k), wide[0], labels, *wide[1:])
        rois = np.asarray(bottom[2].data).reshape(r, 5)
        keep = select_hard_rois(rois, losses, self._params, device_id=self._device_id)
        outputs = (rois[keep], labels[keep].astype(np.float32), wide[1][keep], wide[2][keep],
                   wide[3][keep])
        for i, values in enumerate(outputs):
            top[i].reshape(*values.shape)
            top[i].data[...] = values

    def reshape(self, bottom, top):
        """Tops are shaped in forward."""

    def backward(self, top, propagate_down, bottom):
        """No gradient flows to the read-only branch or the targets."""
