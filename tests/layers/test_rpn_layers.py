"""The RPN and RoI-target Python layers: numpy blobs without a net, and inside real nets."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.testing import NumpyBlob, make_layer
from rpn.anchor_target_layer import AnchorTargetLayer
from rpn.proposal_layer import ProposalLayer
from rpn.proposal_target_layer import ProposalTargetLayer
from tests.conftest import run_python

GT = np.array([[20, 30, 90, 100, 1], [100, 40, 150, 120, 3]], np.float32)
IM_INFO = np.array([[128, 160, 1.0]], np.float32)



# ----------------------------------------------------------------- numpy blobs, no net

def _run(layer, bottoms, n_top):
    bottom = [NumpyBlob(b) for b in bottoms]
    top = [NumpyBlob() for _ in range(n_top)]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    return [t.data for t in top]


def test_anchor_target_layer_blob_shapes_and_counts():
    # anchors of 32, 64 and 128 pixels, so that many lie inside the 128 x 160 image
    layer = make_layer(AnchorTargetLayer, "'feat_stride': 16\n'scales': [2, 4, 8]", phase="TRAIN")
    score = np.zeros((1, 18, 8, 10), np.float32)
    labels, targets, inside, outside = _run(layer, [score, GT, IM_INFO, np.zeros((1, 3, 128, 160))], 4)
    assert labels.shape == (1, 1, 9 * 8, 10)
    assert targets.shape == inside.shape == outside.shape == (1, 36, 8, 10)
    assert np.sum(labels == 1) > 0 and np.sum(labels >= 0) <= 256
    # labels are (A, H, W) ordered along axis 2: anchor a of cell (h, w) is at [a * H + h, w]
    pos_a, pos_h, pos_w = np.unravel_index(np.flatnonzero(labels.reshape(9, 8, 10) == 1), (9, 8, 10))
    assert np.all(inside[0, 4 * pos_a, pos_h, pos_w] == 1)


def test_seventy_anchors_are_a_param_str_away():
    params = "'feat_stride': 16\n'ratios': [0.5, 0.75, 1, 1.5, 2]\n'scales': [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20]"
    layer = make_layer(AnchorTargetLayer, params, phase="TRAIN")
    labels, targets, _, _ = _run(layer, [np.zeros((1, 140, 8, 10)), GT, IM_INFO], 4)
    assert labels.shape == (1, 1, 70 * 8, 10) and targets.shape == (1, 280, 8, 10)
    prop = make_layer(ProposalLayer, params, phase="TEST")
    rng = np.random.default_rng(0)
    rois, = _run(prop, [rng.uniform(size=(1, 140, 8, 10)), rng.normal(0, .1, (1, 280, 8, 10)),
                        IM_INFO], 1)
    assert rois.shape[1] == 5 and len(rois) > 0


def test_blob_sizes_that_disagree_with_the_anchors_name_the_layer():
    layer = make_layer(AnchorTargetLayer, "'feat_stride': 16", phase="TRAIN", name="rpn-data")
    with pytest.raises(ValueError, match="layer 'rpn-data'.*20 channels.*A = 9"):
        _run(layer, [np.zeros((1, 20, 8, 10)), GT, IM_INFO], 4)
    layer = make_layer(ProposalLayer, "'feat_stride': 16", phase="TEST", name="proposal")
    with pytest.raises(ValueError, match="layer 'proposal'.*rpn_bbox_pred must be"):
        _run(layer, [np.zeros((1, 18, 8, 10)), np.zeros((1, 32, 8, 10)), IM_INFO], 1)


def test_unknown_param_str_key_names_the_layer():
    layer = make_layer(ProposalLayer, "'feat_stride': 16\n'scale': [8]", phase="TEST", name="prop")
    with pytest.raises(ValueError, match="layer 'prop'.*unknown param_str key.*'scale'"):
        _run(layer, [np.zeros((1, 18, 8, 10)), np.zeros((1, 36, 8, 10)), IM_INFO], 1)


def test_nan_in_rpn_bbox_pred_names_the_layer():
    layer = make_layer(ProposalLayer, "'feat_stride': 16", phase="TEST", name="proposal")
    deltas = np.zeros((1, 36, 8, 10), np.float32)
    deltas[0, 3, 2, 2] = np.nan
    with pytest.raises(ValueError, match="layer 'proposal'.*NaN"):
        _run(layer, [np.ones((1, 18, 8, 10)), deltas, IM_INFO], 1)


def test_train_and_test_phases_take_their_own_settings(cfg):
    cfg.TRAIN.RPN_POST_NMS_TOP_N = 40
    cfg.TEST.RPN_POST_NMS_TOP_N = 7
    cfg.TRAIN.RPN_NMS_THRESH = cfg.TEST.RPN_NMS_THRESH = 0.9
    rng = np.random.default_rng(0)
    bottoms = [rng.uniform(size=(1, 18, 8, 10)), rng.normal(0, 0.1, (1, 36, 8, 10)), IM_INFO]
    counts = {}
    for phase in ("TRAIN", "TEST"):
        rois, scores = _run(make_layer(ProposalLayer, "'feat_stride': 16", phase=phase), bottoms, 2)
        assert np.all(rois[:, 0] == 0) and scores.shape == (len(rois), 1)
        assert np.all(np.diff(scores[:, 0]) <= 0)
        counts[phase] = len(rois)
    assert counts == {"TRAIN": 40, "TEST": 7}


def test_proposal_target_layer_shapes(cfg):
    cfg.TRAIN.BATCH_SIZE = 16
    layer = make_layer(ProposalTargetLayer, "'num_classes': 4", phase="TRAIN")
    rois = np.array([[0, 22, 28, 88, 97], [0, 0, 0, 50, 50], [0, 101, 45, 149, 118]], np.float32)
    out = _run(layer, [rois, GT], 5)
    assert out[0].shape == (5, 5) and out[1].shape == (5,)  # 3 rois + 2 gt, all kept
    assert all(o.shape == (5, 16) for o in out[2:])
    assert sorted(out[1].tolist()) == [0, 1, 1, 3, 3]


def test_proposal_target_layer_needs_num_classes():
    layer = make_layer(ProposalTargetLayer, "", phase="TRAIN", name="roi-data")
    with pytest.raises(ValueError, match="layer 'roi-data'.*needs 'num_classes'"):
        _run(layer, [np.zeros((1, 5)), GT], 5)


# ------------------------------------------------------------------------- in real nets

INPUTS = """
layer { name: "in_data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 128 dim: 160 } } }
layer { name: "in_info" type: "Input" top: "im_info" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "in_gt" type: "Input" top: "gt_boxes" input_param { shape { dim: 2 dim: 5 } } }
"""

E2E_FRAGMENT = INPUTS + """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1 stride: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 16 kernel_size: 3 pad: 1 stride: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "conv5" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "rpn_conv/3x3" type: "Convolution" bottom: "conv5" top: "rpn/output"
  convolution_param { num_output: 32 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "rpn_relu/3x3" type: "ReLU" bottom: "rpn/output" top: "rpn/output" }
layer { name: "rpn_cls_score" type: "Convolution" bottom: "rpn/output" top: "rpn_cls_score"
  convolution_param { num_output: 18 kernel_size: 1 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "rpn_bbox_pred" type: "Convolution" bottom: "rpn/output" top: "rpn_bbox_pred"
  convolution_param { num_output: 36 kernel_size: 1 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "rpn_cls_score_reshape" type: "Reshape" bottom: "rpn_cls_score" top: "rpn_cls_score_reshape"
  reshape_param { shape { dim: 0 dim: 2 dim: -1 dim: 0 } } }
layer { name: "rpn-data" type: "Python" bottom: "rpn_cls_score" bottom: "gt_boxes" bottom: "im_info" bottom: "data"
  top: "rpn_labels" top: "rpn_bbox_targets" top: "rpn_bbox_inside_weights" top: "rpn_bbox_outside_weights"
  python_param { module: "rpn.anchor_target_layer" layer: "AnchorTargetLayer" param_str: "'feat_stride': 16, 'scales': (2, 4, 8)" } }
layer { name: "rpn_loss_cls" type: "SoftmaxWithLoss" bottom: "rpn_cls_score_reshape" bottom: "rpn_labels"
  propagate_down: 1 propagate_down: 0 top: "rpn_cls_loss" loss_weight: 1
  loss_param { ignore_label: -1 normalize: true } }
layer { name: "rpn_loss_bbox" type: "SmoothL1Loss" bottom: "rpn_bbox_pred" bottom: "rpn_bbox_targets"
  bottom: "rpn_bbox_inside_weights" bottom: "rpn_bbox_outside_weights" top: "rpn_loss_bbox" loss_weight: 1
  smooth_l1_loss_param { sigma: 3.0 } }
layer { name: "rpn_cls_prob" type: "Softmax" bottom: "rpn_cls_score_reshape" top: "rpn_cls_prob" }
layer { name: "rpn_cls_prob_reshape" type: "Reshape" bottom: "rpn_cls_prob" top: "rpn_cls_prob_reshape"
  reshape_param { shape { dim: 0 dim: 18 dim: -1 dim: 0 } } }
layer { name: "proposal" type: "Python" bottom: "rpn_cls_prob_reshape" bottom: "rpn_bbox_pred" bottom: "im_info"
  top: "rpn_rois" python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "'feat_stride': 16, 'scales': (2, 4, 8)" } }
layer { name: "roi-data" type: "Python" bottom: "rpn_rois" bottom: "gt_boxes" top: "rois" top: "labels"
  top: "bbox_targets" top: "bbox_inside_weights" top: "bbox_outside_weights"
  python_param { module: "rpn.proposal_target_layer" layer: "ProposalTargetLayer" param_str: "'num_classes': 4" } }
layer { name: "roi_pool5" type: "ROIPooling" bottom: "conv5" bottom: "rois" top: "pool5"
  roi_pooling_param { pooled_w: 3 pooled_h: 3 spatial_scale: 0.0625 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6"
  inner_product_param { num_output: 32 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "cls_score" type: "InnerProduct" bottom: "fc6" top: "cls_score"
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "bbox_pred" type: "InnerProduct" bottom: "fc6" top: "bbox_pred"
  inner_product_param { num_output: 16 weight_filler { type: "gaussian" std: 0.001 } } }
layer { name: "loss_cls" type: "SoftmaxWithLoss" bottom: "cls_score" bottom: "labels" propagate_down: 1 propagate_down: 0
  top: "loss_cls" loss_weight: 1 }
layer { name: "loss_bbox" type: "SmoothL1Loss" bottom: "bbox_pred" bottom: "bbox_targets"
  bottom: "bbox_inside_weights" bottom: "bbox_outside_weights" top: "loss_bbox" loss_weight: 1 }
"""


def _feed(net, gt=GT):
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.normal(size=net.blobs["data"].data.shape)
    net.blobs["im_info"].data[...] = IM_INFO
    net.blobs["gt_boxes"].reshape(*gt.shape)
    net.blobs["gt_boxes"].data[...] = gt


def test_end_to_end_fragment_runs_forward_and_backward(make_net):
    net = make_net("name: 'e2e'\n" + E2E_FRAGMENT, phase="TRAIN")
    _feed(net)
    out = net.forward()
    for name in ("rpn_cls_loss", "rpn_loss_bbox", "loss_cls", "loss_bbox"):
        assert np.isfinite(out[name]) and out[name] >= 0
    labels = net.blobs["labels"].data
    assert 2 <= len(labels) <= 128 and np.sum(labels > 0) >= 2  # at least the gt boxes
    assert np.sum(net.blobs["rpn_labels"].data == 1) > 0
    net.backward()
    for name in ("conv1", "rpn_cls_score", "cls_score", "bbox_pred"):
        assert np.abs(net.params[name][0].diff).sum() > 0, name
    # an image with no gt boxes (a negative, cfg TRAIN.USE_EMPTY_IMAGES) still runs, no
    # loss is NaN, every sampled anchor and RoI is background and no box is regressed
    _feed(net, np.zeros((0, 5), np.float32))
    out = net.forward()
    assert all(np.isfinite(v) for v in out.values())
    rpn_labels = net.blobs["rpn_labels"].data
    assert np.sum(rpn_labels == 0) > 0 and not np.any(rpn_labels == 1)
    assert len(net.blobs["labels"].data) > 0 and np.all(net.blobs["labels"].data == 0)
    # (the RPN's outside weights normalise over every sampled anchor, as py-faster-rcnn's do;
    # the inside weights select the regressed ones: none)
    for name in ("rpn_bbox_inside_weights", "bbox_inside_weights", "bbox_outside_weights"):
        assert not np.any(net.blobs[name].data), name
    assert out["rpn_loss_bbox"] == 0 and out["loss_bbox"] == 0 and out["loss_cls"] > 0
    net.backward()
    assert np.abs(net.params["cls_score"][0].diff).sum() > 0  # the negatives teach the head


def test_proposal_layer_in_a_test_net(make_net, caffe):
    text = """
layer { name: "p" type: "Input" top: "probs" input_param { shape { dim: 1 dim: 18 dim: 8 dim: 10 } } }
layer { name: "d" type: "Input" top: "deltas" input_param { shape { dim: 1 dim: 36 dim: 8 dim: 10 } } }
layer { name: "i" type: "Input" top: "im_info" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "proposal" type: "Python" bottom: "probs" bottom: "deltas" bottom: "im_info"
  top: "rois" top: "scores"
  python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "'feat_stride': 16" } }
"""
    net = make_net(text, phase="TEST")
    rng = np.random.default_rng(0)
    net.blobs["probs"].data[...] = rng.uniform(size=(1, 18, 8, 10))
    net.blobs["deltas"].data[...] = rng.normal(0, 0.1, size=(1, 36, 8, 10))
    net.blobs["im_info"].data[...] = IM_INFO
    net.forward()
    rois, scores = net.blobs["rois"].data, net.blobs["scores"].data
    assert 0 < len(rois) <= 300 and rois.shape[1] == 5 and np.all(np.diff(scores[:, 0]) <= 0)


def test_bad_param_str_in_a_net_names_the_layer():
    code = f"""
import caffe, tempfile
text = {INPUTS!r} + '''
layer {{ name: "s" type: "Input" top: "score" input_param {{ shape {{ dim: 1 dim: 18 dim: 8 dim: 10 }} }} }}
layer {{ name: "my-anchors" type: "Python" bottom: "score" bottom: "gt_boxes" bottom: "im_info"
  top: "a" top: "b" top: "c" top: "d"
  python_param {{ module: "rpn.anchor_target_layer" layer: "AnchorTargetLayer" param_str: "'feat_stride': 16, 'ratio': [1]" }} }}
'''
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(text)
try:
    caffe.Net(f.name, caffe.TRAIN)
except Exception as e:
    print("RAISED", type(e).__name__, e)
"""
    proc = run_python(code)
    assert "layer 'my-anchors'" in proc.stdout + proc.stderr
    assert "unknown param_str key" in proc.stdout + proc.stderr
