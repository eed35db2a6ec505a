"""The Faster R-CNN train and test nets of a variant (py-faster-rcnn's end-to-end layout).

Train net:
  input-data (roi_data_layer.layer.RoIDataLayer) -> data, im_info, gt_boxes
  trunk -> features (stride 16)
  RPN: rpn_conv/3x3 (256, pad 1) -> rpn/output, ReLU; rpn_cls_score (2A) and rpn_bbox_pred
       (4A) 1 x 1 convs; rpn_cls_score_reshape (0, 2, -1, 0); rpn-data
       (rpn.anchor_target_layer.AnchorTargetLayer); rpn_loss_cls (SoftmaxWithLoss,
       ignore_label -1) and rpn_loss_bbox (SmoothL1Loss, sigma 3)
  proposals: rpn_cls_prob (Softmax), rpn_cls_prob_reshape (0, 2A, -1, 0), proposal
       (rpn.proposal_layer.ProposalLayer) -> rpn_rois, roi-data
       (rpn.proposal_target_layer.ProposalTargetLayer) -> rois, labels, bbox_targets,
       bbox_inside_weights, bbox_outside_weights
  [OHEM: a read-only copy of the RoI head on all the RoIs (``*_readonly`` layers, weights
       shared by name, propagate_down false) -> cls_prob_readonly, bbox_pred_readonly;
       hard_roi_mining (roi_data_layer.layer.OHEMDataLayer) -> rois_hard, labels_hard,
       bbox_targets_hard, bbox_inside_weights_hard, bbox_outside_weights_hard, which the
       trained head and the losses use instead]
  RoI head: ROIPooling at 1/16 -> the trunk's head -> cls_score (K), bbox_pred (4K);
       loss_cls (SoftmaxWithLoss) and loss_bbox (SmoothL1Loss, sigma 1)
Test net: Input data (1, 3, scale, max_size) and im_info (1, 3); trunk; RPN convs; proposal
  (TEST phase: the layer reads cfg.TEST) -> rois; RoI head; cls_prob (Softmax); outputs rois,
  cls_prob, bbox_pred.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

from frcnn.nets import squeezenet, zf
from frcnn.nets.layers import NetBuilder, constant, gaussian, lr_params, param_str
from frcnn.nets.variants import Variant

BACKBONE_MODULES: dict[str, ModuleType] = {"squeezenet": squeezenet, "zf": zf}

# module.Class of the Python layers
DATA_LAYER = ("roi_data_layer.layer", "RoIDataLayer")
ANCHOR_TARGET_LAYER = ("rpn.anchor_target_layer", "AnchorTargetLayer")
PROPOSAL_LAYER = ("rpn.proposal_layer", "ProposalLayer")
PROPOSAL_TARGET_LAYER = ("rpn.proposal_target_layer", "ProposalTargetLayer")
OHEM_LAYER = ("roi_data_layer.layer", "OHEMDataLayer")

ROI_BLOBS = ("rois", "labels", "bbox_targets", "bbox_inside_weights", "bbox_outside_weights")


def backbone(variant: Variant) -> ModuleType:
    return BACKBONE_MODULES[variant.backbone]


def net_name(variant: Variant) -> str:
    return variant.name.replace("/", "_")


def anchor_param_str(variant: Variant) -> str:
    return param_str([("feat_stride", backbone(variant).FEATURE_STRIDE),
                      ("ratios", list(variant.ratios)), ("scales", list(variant.scales))])


def data_param_str(variant: Variant) -> str:
    return param_str([("num_classes", variant.num_classes), *variant.data_params])


def _python(module_layer: tuple[str, str], text: str) -> dict:
    module, layer = module_layer
    return {"module": module, "layer": layer, "param_str": text}


def _rpn(b: NetBuilder, features: Any, variant: Variant, train: bool) -> tuple[Any, Any, Any]:
    """RPN convs and the score reshape; returns rpn_cls_score, rpn_bbox_pred and
    rpn_cls_score_reshape."""
    a = variant.num_anchors

    def conv(name, bottom, num_output, kernel, pad, top=None):
        kw = {"num_output": num_output, "kernel_size": kernel, "pad": pad, "stride": 1,
              "weight_filler": gaussian(0.01), "bias_filler": constant(0)}
        extra = {"param": lr_params()} if train else {}
        return b.add("Convolution", name, [bottom], tops=[top] if top else None,
                     convolution_param=kw, **extra)

    x = conv("rpn_conv/3x3", features, 256, 3, 1, top="rpn/output")
    x = b.add("ReLU", "rpn_relu/3x3", [x], in_place=True)
    score = conv("rpn_cls_score", x, 2 * a, 1, 0)
    deltas = conv("rpn_bbox_pred", x, 4 * a, 1, 0)
    score_reshape = b.add("Reshape", "rpn_cls_score_reshape", [score],
                          reshape_param={"shape": {"dim": [0, 2, -1, 0]}})
    return score, deltas, score_reshape


def _proposals(b: NetBuilder, variant: Variant, deltas: Any, score_reshape: Any,
               im_info: Any, top: str) -> Any:
    prob = b.add("Softmax", "rpn_cls_prob", [score_reshape])
    prob = b.add("Reshape", "rpn_cls_prob_reshape", [prob],
                 reshape_param={"shape": {"dim": [0, 2 * variant.num_anchors, -1, 0]}})
    return b.add("Python", "proposal", [prob, deltas, im_info], tops=[top],
                 python_param=_python(PROPOSAL_LAYER, anchor_param_str(variant)))


def _roi_head(b: NetBuilder, variant: Variant, features: Any, rois: Any, train: bool,
              suffix: str = "", shared: bool = False, readonly: bool = False) -> tuple[Any, Any]:
    """ROIPooling -> the trunk's head -> cls_score (K), bbox_pred (4K)."""
    bb = backbone(variant)
    k = variant.num_classes
    extra: dict[str, Any] = {"propagate_down": [False, False]} if readonly else {}
    pooled = b.add("ROIPooling", f"{bb.ROI_POOL}{suffix}", [features, rois],
                   roi_pooling_param={"pooled_w": bb.POOLED_SIZE, "pooled_h": bb.POOLED_SIZE,
                                      "spatial_scale": 1.0 / bb.FEATURE_STRIDE}, **extra)
    x = bb.head(b, pooled, train, suffix=suffix, shared=shared, readonly=readonly)
    outs = []
    for name, num_output, std in (("cls_score", k, 0.01), ("bbox_pred", 4 * k, 0.001)):
        kw: dict[str, Any] = {"num_output": num_output}
        extra = {}
        if train:
            kw["weight_filler"] = gaussian(std)
            kw["bias_filler"] = constant(0)
            extra["param"] = lr_params(name if shared else None)
        if readonly:
            extra["propagate_down"] = [False]
        outs.append(b.add("InnerProduct", f"{name}{suffix}", [x], inner_product_param=kw,
                          **extra))
    return outs[0], outs[1]


def _losses(b: NetBuilder, cls_score: Any, bbox_pred: Any, labels: Any, targets: Any,
            inside: Any, outside: Any) -> None:
    b.add("SoftmaxWithLoss", "loss_cls", [cls_score, labels], tops=["cls_loss"],
          propagate_down=[True, False], loss_weight=1,
          loss_param={"ignore_label": -1, "normalize": True})
    b.add("SmoothL1Loss", "loss_bbox", [bbox_pred, targets, inside, outside], tops=["bbox_loss"],
          loss_weight=1, smooth_l1_loss_param={"sigma": 1.0})


def build_train(variant: Variant) -> Any:
    """The train NetParameter of ``variant``."""
    b = NetBuilder(net_name(variant))
    data, im_info, gt_boxes = b.add(
        "Python", "input-data", tops=["data", "im_info", "gt_boxes"],
        python_param=_python(DATA_LAYER, data_param_str(variant)))
    features = backbone(variant).trunk(b, data, train=True, dropout=variant.trunk_dropout,
                                       filler=variant.trunk_filler, norm=variant.trunk_norm)
    score, deltas, score_reshape = _rpn(b, features, variant, train=True)
    labels, targets, inside, outside = b.add(
        "Python", "rpn-data", [score, gt_boxes, im_info, data],
        tops=["rpn_labels", "rpn_bbox_targets", "rpn_bbox_inside_weights",
              "rpn_bbox_outside_weights"],
        python_param=_python(ANCHOR_TARGET_LAYER, anchor_param_str(variant)))
    b.add("SoftmaxWithLoss", "rpn_loss_cls", [score_reshape, labels], tops=["rpn_cls_loss"],
          propagate_down=[True, False], loss_weight=1,
          loss_param={"ignore_label": -1, "normalize": True})
    b.add("SmoothL1Loss", "rpn_loss_bbox", [deltas, targets, inside, outside],
          tops=["rpn_loss_bbox"], loss_weight=1, smooth_l1_loss_param={"sigma": 3.0})
    rpn_rois = _proposals(b, variant, deltas, score_reshape, im_info, top="rpn_rois")
    roi_blobs = b.add("Python", "roi-data", [rpn_rois, gt_boxes], tops=list(ROI_BLOBS),
                      python_param=_python(PROPOSAL_TARGET_LAYER,
                                           param_str({"num_classes": variant.num_classes})))
    if variant.ohem:
        cls_ro, bbox_ro = _roi_head(b, variant, features, roi_blobs[0], train=True,
                                    suffix="_readonly", shared=True, readonly=True)
        prob_ro = b.add("Softmax", "cls_prob_readonly", [cls_ro], propagate_down=[False])
        roi_blobs = b.add("Python", "hard_roi_mining", [prob_ro, bbox_ro, *roi_blobs],
                          tops=[f"{name}_hard" for name in ROI_BLOBS],
                          propagate_down=[False] * (2 + len(ROI_BLOBS)),
                          python_param=_python(OHEM_LAYER,
                                               param_str({"num_classes": variant.num_classes})))
    rois, labels, targets, inside, outside = roi_blobs
    cls_score, bbox_pred = _roi_head(b, variant, features, rois, train=True,
                                     shared=variant.ohem)
    _losses(b, cls_score, bbox_pred, labels, targets, inside, outside)
    return b.to_proto()


def build_test(variant: Variant) -> Any:
    """The test (deploy) NetParameter of ``variant``: inputs data and im_info; outputs rois,
    cls_prob and bbox_pred.  OHEM variants share their plain variant's test net."""
    b = NetBuilder(net_name(variant))
    data = b.add("Input", "data", input_param={"shape": {"dim": [1, 3, variant.scale,
                                                                 variant.max_size]}})
    im_info = b.add("Input", "im_info", input_param={"shape": {"dim": [1, 3]}})
    features = backbone(variant).trunk(b, data, train=False, norm=variant.trunk_norm)
    _, deltas, score_reshape = _rpn(b, features, variant, train=False)
    rois = _proposals(b, variant, deltas, score_reshape, im_info, top="rois")
    cls_score, _ = _roi_head(b, variant, features, rois, train=False)
    b.add("Softmax", "cls_prob", [cls_score])
    return b.to_proto()
