"""Export a trained detector (test prototxt + caffemodel) for runtimes without Caffe.

The test net is cut at its Python ProposalLayer, the one part no runtime executes:

- ``backbone.onnx``: data (1, 3, height, width) -> the RoI-pooled feature blob, the RPN's
  foreground probabilities (rpn_cls_prob_reshape, (1, 2A, h, w)) and deltas
  (rpn_bbox_pred, (1, 4A, h, w));
- the proposals: this package's pure code (frcnn.proposals), with the manifest's anchors
  and TEST settings;
- ``head.onnx``: the feature blob and rois (num_rois, 5) -> cls_prob (R, K) and
  bbox_pred (R, 4K), ROIPooling as ONNX MaxRoiPool (the portable graph);
- ``head_pooled.onnx``: the same head from the pooled blob (R, C, ph, pw) on.  This
  package's onnxruntime backend pools with its own kernel (frcnn.roi_pool, the Caffe
  layer's semantics) and runs this graph, because onnxruntime's MaxRoiPool is about 5x
  slower on CPU.

``caffe-deploy``: the same net as Caffe files with a native ``Proposal`` layer
(frcnn.deploy.caffe_deploy), for OpenCV DNN 4.x and the embedded toolchains that read Caffe.

The bbox normalisation is folded into bbox_pred at export when the model did not fold it,
so every export gives plain deltas.  Everything the runtime needs goes in the manifest
(frcnn.deploy.manifest), with the hash of every file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

PROPOSAL_MODULE = "rpn.proposal_layer"
OUTPUTS = ("cls_prob", "bbox_pred")


class ExportError(ValueError):
    """A net that cannot be exported (names the file and the layer)."""


@dataclass
class SplitPlan:
    """Where a test net is cut: the layers and blobs of each graph."""
    backbone: list = field(default_factory=list)   # LayerParameters, in order
    head: list = field(default_factory=list)
    data: str = "data"
    feature: str = ""                               # the blob ROIPooling reads
    rpn_prob: str = ""
    rpn_deltas: str = ""
    rois: str = "rois"
    param_str: str = ""                             # the ProposalLayer's


def _needed(layers: Sequence[Any], wanted: set[str], available: set[str]) -> list:
    """The layers (in order) that the blobs ``wanted`` depend on, stopping at ``available``."""
    need = set(wanted) - set(available)
    keep = []
    for layer in reversed(list(layers)):
        if need & set(layer.top):
            keep.append(layer)
            need |= set(layer.bottom) - set(available)
    missing = need - {t for layer in keep for t in layer.top} - set(available)
    if missing:
        raise ExportError(f"no layer produces {sorted(missing)}")
    return keep[::-1]


def plan_split(layers: Sequence[Any], inputs: dict[str, Any], path: str = "<net>") -> SplitPlan:
    """Cut the TEST-phase ``layers`` of a Faster R-CNN test net at its ProposalLayer."""
    proposal = [i for i, layer in enumerate(layers) if layer.type == "Python"
                and layer.python_param.module == PROPOSAL_MODULE]
    if len(proposal) != 1:
        raise ExportError(f"{path}: expected one Python ProposalLayer (module "
                          f"'{PROPOSAL_MODULE}'), found {len(proposal)}; a Fast R-CNN test net "
                          f"(rois as an input) has no RPN to export")
    p = layers[proposal[0]]
    if len(p.bottom) != 3:
        raise ExportError(f"{path}: layer '{p.name}' needs the bottoms rpn_cls_prob_reshape, "
                          f"rpn_bbox_pred, im_info")
    rois = p.top[0]
    pools = [layer for layer in layers[proposal[0] + 1:] if layer.type == "ROIPooling"
             and len(layer.bottom) == 2 and layer.bottom[1] == rois]
    if len(pools) != 1:
        raise ExportError(f"{path}: expected one ROIPooling layer reading '{rois}', found "
                          f"{len(pools)}")
    data = "data" if "data" in inputs else next(iter(inputs), "data")
    plan = SplitPlan(data=data, feature=pools[0].bottom[0], rpn_prob=p.bottom[0],
                     rpn_deltas=p.bottom[1], rois=rois, param_str=p.python_param.param_str)
    before, after = layers[:proposal[0]], layers[proposal[0] + 1:]
    try:
        plan.backbone = _needed(before, {plan.feature, plan.rpn_prob, plan.rpn_deltas},
                                set(inputs))
        for layer in plan.backbone:
            if p.bottom[2] in layer.bottom:
                raise ExportError(f"layer '{layer.name}' reads {p.bottom[2]}")
        missing = [o for o in OUTPUTS if not any(o in layer.top for layer in after)]
        if missing:
            raise ExportError(f"the net has no {missing} output after the proposals")
        plan.head = _needed(after, set(OUTPUTS), {plan.feature, rois})
    except ExportError as e:
        raise ExportError(f"{path}: {e}") from None
    for layer in plan.backbone + plan.head:
        if layer.type == "Python":
            raise ExportError(f"{path}: layer '{layer.name}' is a Python layer "
                              f"({layer.python_param.module}.{layer.python_param.layer}); only "
                              f"the ProposalLayer is replaced at export")
    return plan


def fold_into(weights: dict[str, list[np.ndarray]], layer: str, means: Sequence[float],
              stds: Sequence[float]) -> dict[str, list[np.ndarray]]:
    """A copy of ``weights`` with the bbox normalisation folded into ``layer``'s W and b."""
    from frcnn.detection import fold_bbox_normalization

    if layer not in weights or len(weights[layer]) < 2:
        raise ExportError(f"the model has no weights and bias for layer '{layer}' to fold the "
                          f"bbox normalisation into")
    out = dict(weights)
    w, b = weights[layer][0], weights[layer][1]
    out[layer] = list(fold_bbox_normalization(w, b, means, stds)) + list(weights[layer][2:])
    return out


def export_onnx(net_path: str | Path, weights: dict[str, list[np.ndarray]], out_dir: Path,
                opset: int = 17) -> tuple[dict[str, Any], SplitPlan]:
    """Write backbone.onnx and head.onnx; return the manifest's "onnx" section and the plan."""
    import onnx

    from frcnn.caffe_files import net_inputs, read_prototxt, test_phase_layers
    from frcnn.fileio import write_atomic
    from frcnn.deploy.onnx_convert import convert

    net = read_prototxt(net_path)
    layers = test_phase_layers(net)
    inputs = net_inputs(net)
    plan = plan_split(layers, inputs, str(net_path))
    backbone_outputs = [plan.feature, plan.rpn_prob, plan.rpn_deltas]
    backbone = convert(plan.backbone, weights, {plan.data: (1, 3, "height", "width")},
                       backbone_outputs, "backbone", opset=opset)
    channels = _channels(backbone, plan.feature)
    head_inputs = {plan.feature: (1, channels, "feature_height", "feature_width"),
                   plan.rois: ("num_rois", 5)}
    head = convert(plan.head, weights, head_inputs, list(OUTPUTS), "head", opset=opset)
    pool = next(layer for layer in plan.head if layer.type == "ROIPooling")
    rp = pool.roi_pooling_param
    pooled = {pool.top[0]: ("num_rois", channels, int(rp.pooled_h), int(rp.pooled_w))}
    head_pooled = convert([layer for layer in plan.head if layer is not pool], weights, pooled,
                          list(OUTPUTS), "head_pooled", opset=opset)
    out_dir.mkdir(parents=True, exist_ok=True)
    for file, model in (("backbone.onnx", backbone), ("head.onnx", head),
                        ("head_pooled.onnx", head_pooled)):
        write_atomic(out_dir / file, model.SerializeToString())
        onnx.checker.check_model(str(out_dir / file))
    section = {"backbone": {"file": "backbone.onnx", "inputs": [plan.data],
                            "outputs": backbone_outputs},
               "head": {"file": "head.onnx", "inputs": [plan.feature, plan.rois],
                        "outputs": list(OUTPUTS)},
               "head_pooled": {"file": "head_pooled.onnx", "inputs": [pool.top[0]],
                               "outputs": list(OUTPUTS)},
               "roi_pooling": {"pooled_h": int(rp.pooled_h), "pooled_w": int(rp.pooled_w),
                               "spatial_scale": float(rp.spatial_scale)},
               "feature": plan.feature, "rpn_prob": plan.rpn_prob,
               "rpn_deltas": plan.rpn_deltas, "opset": opset}
    return section, plan


def _channels(model: Any, blob: str) -> int | str:
    """The channel count of a graph output, from ONNX shape inference ('channels' if unknown)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    for value in list(inferred.graph.output) + list(inferred.graph.value_info):
        if value.name == blob:
            dims = value.type.tensor_type.shape.dim
            if len(dims) == 4 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    return "channels"
