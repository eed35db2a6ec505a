"""Small nets written the way py-faster-rcnn's models/ write theirs (for the workflow tests).

They are this project's own files, in each of py-faster-rcnn's forms: ZF-style Dropout with
``scale_train: false``, the ``!!python/tuple`` param_str with a space before the newline
(its COCO nets), a six-top Fast R-CNN RoIDataLayer, and abhi2610/ohem's OHEM layout
(all RoIs scored by a read-only head, the hardest kept by OHEMDataLayer).  Feature stride
16 (four stride-2 convolutions), K = 4 classes, 6 anchors (3 ratios x 2 scales).
"""
from __future__ import annotations

K = 4
ANCHORS = r"'feat_stride': 16 \n'scales': !!python/tuple [2, 4]"


def _conv(name: str, bottom: str, n: int, k: int = 3, s: int = 2, p: int = 1,
          relu: bool = True, prefix_params: str = "") -> str:
    text = f"""
layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" {prefix_params}
  convolution_param {{ num_output: {n} kernel_size: {k} stride: {s} pad: {p}
    weight_filler {{ type: "gaussian" std: 0.05 }} bias_filler {{ type: "constant" }} }} }}"""
    if relu:
        text += f"""
layer {{ name: "relu_{name}" type: "ReLU" bottom: "{name}" top: "{name}" }}"""
    return text


BACKBONE = (_conv("conv1", "data", 8) + _conv("conv2", "conv1", 8) + _conv("conv3", "conv2", 16)
            + _conv("conv4", "conv3", 16))
RPN = _conv("rpn_conv", "conv4", 16, s=1) + _conv("rpn_cls_score", "rpn_conv", 12, k=1, s=1,
                                                  p=0, relu=False) + _conv(
    "rpn_bbox_pred", "rpn_conv", 24, k=1, s=1, p=0, relu=False) + """
layer { name: "rpn_cls_score_reshape" type: "Reshape" bottom: "rpn_cls_score"
  top: "rpn_cls_score_reshape" reshape_param { shape { dim: 0 dim: 2 dim: -1 dim: 0 } } }"""
RPN_PROB = """
layer { name: "rpn_cls_prob" type: "Softmax" bottom: "rpn_cls_score_reshape" top: "rpn_cls_prob" }
layer { name: "rpn_cls_prob_reshape" type: "Reshape" bottom: "rpn_cls_prob"
  top: "rpn_cls_prob_reshape" reshape_param { shape { dim: 0 dim: 12 dim: -1 dim: 0 } } }
layer { name: "proposal" type: "Python" bottom: "rpn_cls_prob_reshape" bottom: "rpn_bbox_pred"
  bottom: "im_info" top: "%s"
  python_param { module: "rpn.proposal_layer" layer: "ProposalLayer"
    param_str: "%s" } }"""


def head(rois: str = "rois", suffix: str = "", dropout: bool = True, readonly: bool = False
         ) -> str:
    """RoI pooling -> fc6 (-> Dropout, scale_train false) -> cls_score, bbox_pred; the
    read-only copy shares the parameters by name and learns nothing."""
    params = ['param { name: "fc6_w" } param { name: "fc6_b" }',
              'param { name: "cls_w" } param { name: "cls_b" }',
              'param { name: "bbox_w" } param { name: "bbox_b" }']
    if readonly:
        params = [p.replace("}", "lr_mult: 0 decay_mult: 0 }") for p in params]
    s = suffix
    text = f"""
layer {{ name: "roi_pool{s}" type: "ROIPooling" bottom: "conv4" bottom: "{rois}"
  top: "pool{s}" roi_pooling_param {{ pooled_w: 3 pooled_h: 3 spatial_scale: 0.0625 }} }}
layer {{ name: "fc6{s}" type: "InnerProduct" bottom: "pool{s}" top: "fc6{s}" {params[0]}
  inner_product_param {{ num_output: 32 weight_filler {{ type: "gaussian" std: 0.05 }} }} }}
layer {{ name: "relu6{s}" type: "ReLU" bottom: "fc6{s}" top: "fc6{s}" }}"""
    if dropout:
        text += f"""
layer {{ name: "drop6{s}" type: "Dropout" bottom: "fc6{s}" top: "fc6{s}"
  dropout_param {{ dropout_ratio: 0.5 scale_train: false }} }}"""
    text += f"""
layer {{ name: "cls_score{s}" type: "InnerProduct" bottom: "fc6{s}" top: "cls_score{s}"
  {params[1]} inner_product_param {{ num_output: {K}
    weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "bbox_pred{s}" type: "InnerProduct" bottom: "fc6{s}" top: "bbox_pred{s}"
  {params[2]} inner_product_param {{ num_output: {4 * K}
    weight_filler {{ type: "gaussian" std: 0.001 }} }} }}"""
    return text


def losses(suffix: str = "") -> str:
    s = suffix
    return f"""
layer {{ name: "loss_cls" type: "SoftmaxWithLoss" bottom: "cls_score" bottom: "labels{s}"
  propagate_down: 1 propagate_down: 0 top: "loss_cls" loss_weight: 1 }}
layer {{ name: "loss_bbox" type: "SmoothL1Loss" bottom: "bbox_pred" bottom: "bbox_targets{s}"
  bottom: "bbox_inside_weights{s}" bottom: "bbox_outside_weights{s}" top: "loss_bbox"
  loss_weight: 1 }}"""


def end2end_train() -> str:
    """ZF-style end-to-end train net: dropout without train-time scaling, tuple anchors."""
    return f"""name: "TinyZF_end2end"
layer {{ name: "input-data" type: "Python" top: "data" top: "im_info" top: "gt_boxes"
  python_param {{ module: "roi_data_layer.layer" layer: "RoIDataLayer"
    param_str: "'num_classes': {K}" }} }}""" + BACKBONE + RPN + f"""
layer {{ name: "rpn-data" type: "Python" bottom: "rpn_cls_score" bottom: "gt_boxes"
  bottom: "im_info" bottom: "data" top: "rpn_labels" top: "rpn_bbox_targets"
  top: "rpn_bbox_inside_weights" top: "rpn_bbox_outside_weights"
  python_param {{ module: "rpn.anchor_target_layer" layer: "AnchorTargetLayer"
    param_str: "{ANCHORS}" }} }}
layer {{ name: "rpn_loss_cls" type: "SoftmaxWithLoss" bottom: "rpn_cls_score_reshape"
  bottom: "rpn_labels" propagate_down: 1 propagate_down: 0 top: "rpn_cls_loss"
  loss_weight: 1 loss_param {{ ignore_label: -1 normalize: true }} }}
layer {{ name: "rpn_loss_bbox" type: "SmoothL1Loss" bottom: "rpn_bbox_pred"
  bottom: "rpn_bbox_targets" bottom: "rpn_bbox_inside_weights"
  bottom: "rpn_bbox_outside_weights" top: "rpn_loss_bbox" loss_weight: 1
  smooth_l1_loss_param {{ sigma: 3.0 }} }}""" + RPN_PROB % ("rpn_rois", ANCHORS) + f"""
layer {{ name: "roi-data" type: "Python" bottom: "rpn_rois" bottom: "gt_boxes" top: "rois"
  top: "labels" top: "bbox_targets" top: "bbox_inside_weights" top: "bbox_outside_weights"
  python_param {{ module: "rpn.proposal_target_layer" layer: "ProposalTargetLayer"
    param_str: "'num_classes': {K}" }} }}""" + head() + losses()


def end2end_test() -> str:
    return """name: "TinyZF_end2end_test"
input: "data" input_shape { dim: 1 dim: 3 dim: 96 dim: 128 }
input: "im_info" input_shape { dim: 1 dim: 3 }""" + BACKBONE + RPN + RPN_PROB % (
        "rois", ANCHORS) + head() + """
layer { name: "cls_prob" type: "Softmax" bottom: "cls_score" top: "cls_prob" }"""


def rpn_test() -> str:
    """py-faster-rcnn's rpn_test.pt form: the RPN only, outputs rois and scores."""
    return """name: "TinyZF_rpn_test"
input: "data" input_shape { dim: 1 dim: 3 dim: 96 dim: 128 }
input: "im_info" input_shape { dim: 1 dim: 3 }""" + BACKBONE + RPN + (
        RPN_PROB % ("rois", ANCHORS)).replace('top: "rois"', 'top: "rois" top: "scores"')


FAST_RCNN_DATA = f"""
layer {{ name: "data" type: "Python" top: "data" top: "rois" top: "labels" top: "bbox_targets"
  top: "bbox_inside_weights" top: "bbox_outside_weights"
  python_param {{ module: "roi_data_layer.layer" layer: "RoIDataLayer"
    param_str: "'num_classes': {K}" }} }}"""


def fast_rcnn_train() -> str:
    """py-faster-rcnn's Fast R-CNN train net form (stage*_fast_rcnn_train.pt)."""
    return 'name: "TinyZF_fast_rcnn"' + FAST_RCNN_DATA + BACKBONE + head() + losses()


def fast_rcnn_test() -> str:
    """Fast R-CNN test net: rois are an input."""
    return """name: "TinyZF_fast_rcnn_test"
input: "data" input_shape { dim: 1 dim: 3 dim: 96 dim: 128 }
input: "rois" input_shape { dim: 1 dim: 5 }""" + BACKBONE + head() + """
layer { name: "cls_prob" type: "Softmax" bottom: "cls_score" top: "cls_prob" }"""


def ohem_fast_rcnn_train() -> str:
    """abhi2610/ohem's layout: every RoI scored read-only, the hardest trained on."""
    return ('name: "TinyZF_fast_rcnn_ohem"' + FAST_RCNN_DATA + BACKBONE
            + head(suffix="_readonly", dropout=False, readonly=True) + """
layer { name: "cls_prob_readonly" type: "Softmax" bottom: "cls_score_readonly"
  top: "cls_prob_readonly" }
layer { name: "hard_roi_mining" type: "Python" bottom: "cls_prob_readonly"
  bottom: "bbox_pred_readonly" bottom: "rois" bottom: "labels" bottom: "bbox_targets"
  bottom: "bbox_inside_weights" bottom: "bbox_outside_weights" top: "rois_hard"
  top: "labels_hard" top: "bbox_targets_hard" top: "bbox_inside_weights_hard"
  top: "bbox_outside_weights_hard"
  python_param { module: "roi_data_layer.layer" layer: "OHEMDataLayer"
    param_str: "'num_classes': %d" } }""" % K + head(rois="rois_hard") + losses("_hard"))


def solver(train_net: str, prefix: str = "tiny_zf", base_lr: float = 0.001) -> str:
    """py-faster-rcnn's solver form (train_net relative to the solver's folder here)."""
    return f"""train_net: "{train_net}"
base_lr: {base_lr}
lr_policy: "step"
gamma: 0.1
stepsize: 50000
display: 20
average_loss: 100
momentum: 0.9
weight_decay: 0.0005
snapshot: 0
snapshot_prefix: "{prefix}"
iter_size: 1
"""
