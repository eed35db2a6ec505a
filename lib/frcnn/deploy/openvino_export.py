"""The whole detector as one OpenVINO model (IR: ``detector.xml`` + ``detector.bin``).

Built from the export's ONNX graphs (``frcnn.deploy.export``): backbone.onnx's RPN outputs
feed OpenVINO's native ``Proposal`` op (opset 4, ``framework`` "" = Caffe's coordinates)
with the model's anchors and TEST settings, its rois feed head.onnx (``MaxRoiPool``, which
OpenVINO reads as its ``ROIPooling``).  Inputs: ``data`` (1, 3, H, W) and ``im_info`` (3,)
= (H, W, scale); outputs: ``rois`` (post_nms_top_n, 5), ``cls_prob`` and ``bbox_pred`` for
every row.  Rows past the kept proposals are padded with zeros: a row whose corners are all
0 (a 1-pixel box, which RPN_MIN_SIZE >= 1 never keeps) is padding (``valid_rows``).

Where it differs from py-faster-rcnn's proposal step (measured in docs/deploy.md): the box
decode and NMS are OpenVINO's arithmetic (float differences, and so a few different
proposals near the NMS threshold); min_size is compared after scaling by im_info's scale, as
py-faster-rcnn's.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

IR_FILE = "detector.xml"
WEIGHTS_FILE = "detector.bin"


def proposal_attrs(anchors: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """OpenVINO ``Proposal`` attributes from an export manifest's anchors and TEST settings
    (types as openvino.opset4.proposal checks them)."""
    u = np.uint64
    return {"base_size": u(anchors.get("base_size", 16)),
            "pre_nms_topn": u(test["rpn_pre_nms_top_n"]),
            "post_nms_topn": u(test["rpn_post_nms_top_n"]),
            "nms_thresh": np.float32(test["rpn_nms_thresh"]),
            "feat_stride": u(anchors["feat_stride"]),
            "min_size": u(max(1, round(float(test["rpn_min_size"])))),
            "ratio": np.asarray(anchors["ratios"], np.float32),
            "scale": np.asarray(anchors["scales"], np.float32),
            "clip_before_nms": np.bool_(True), "clip_after_nms": np.bool_(False),
            "normalize": np.bool_(False), "box_size_scale": np.float32(1.0),
            "box_coordinate_scale": np.float32(1.0), "framework": np.str_("")}


def _sources(model: Any) -> dict[str, Any]:
    """A loaded model's output tensors by name (the Results' inputs, not the Results)."""
    return {r.input_value(0).get_any_name(): r.input_value(0) for r in model.get_results()}


def export_openvino(folder: str | os.PathLike, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write detector.xml/.bin into the export ``folder`` from its ONNX graphs; return the
    manifest's "openvino" section."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino import opset4

    folder = Path(folder)
    onnx = manifest["onnx"]
    core = ov.Core()
    backbone = core.read_model(str(folder / onnx["backbone"]["file"]))
    head = core.read_model(str(folder / onnx["head"]["file"]))
    out = _sources(backbone)
    im_info = ops.parameter([3], ov.Type.f32, name="im_info")
    im_info.output(0).set_names({"im_info"})
    attrs = proposal_attrs(manifest["anchors"], manifest["test"])
    proposal = opset4.proposal(out[onnx["rpn_prob"]], out[onnx["rpn_deltas"]], im_info, attrs)
    for node in head.get_ordered_ops():  # the two graphs share layer names
        node.set_friendly_name("head/" + node.get_friendly_name())
    feature_name, rois_name = onnx["head"]["inputs"]
    for param in head.get_parameters():
        name = param.output(0).get_any_name()
        source = out[feature_name] if name == feature_name else proposal.output(0)
        for target in list(param.output(0).get_target_inputs()):
            target.replace_source_output(source)
    rois = ops.result(proposal.output(0), name="rois")
    rois.output(0).set_names({"rois"})
    results = [rois]
    for name, value in _sources(head).items():
        result = ops.result(value, name=name)
        result.output(0).set_names({name})
        results.append(result)
    model = ov.Model(results, [backbone.get_parameters()[0], im_info], "frcnn_detector")
    model.validate_nodes_and_infer_types()
    ov.save_model(model, str(folder / IR_FILE), compress_to_fp16=False)
    return {"file": IR_FILE, "weights": WEIGHTS_FILE,
            "inputs": [onnx["backbone"]["inputs"][0], "im_info"],
            "outputs": ["rois"] + [n for n in onnx["head"]["outputs"]],
            "proposal": {k: (v.tolist() if hasattr(v, "tolist") else v)
                         for k, v in attrs.items()}}


def valid_rows(rois: np.ndarray) -> np.ndarray:
    """Which rows of the native Proposal's output are proposals, not padding."""
    return np.any(rois[:, 1:5] != 0, axis=1)
