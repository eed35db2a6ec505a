"""A Caffe test net without Python layers: the ProposalLayer as a native ``Proposal`` layer.

Runtimes that read Caffe files (OpenCV DNN 4.x, ncnn's caffe2ncnn, OpenVINO's Caffe front
end, ...) have no Python layers but a built-in ``Proposal`` layer with the parameters of
py-faster-rcnn's ProposalLayer.  ``write_caffe_deploy`` writes:

- ``deploy.prototxt``: the TEST-phase layers of the test net, with

  * the ``rpn.proposal_layer.ProposalLayer`` Python layer replaced by ``type: "Proposal"``
    and a ``proposal_param`` block, field names as OpenCV's ``opencv-caffe.proto`` declares
    them (``ProposalParameter``: ``feat_stride`` (uint32), ``base_size`` (uint32, 16 as
    py-faster-rcnn's anchors), ``min_size`` (uint32), repeated float ``ratio`` and
    ``scale`` (from the param_str), ``pre_nms_topn``, ``post_nms_topn`` (uint32) and
    ``nms_thresh`` (float)), the same bottoms and tops;
  * training-only layers removed (losses, accuracy, silence, data layers, the training
    Python layers, layers outside the TEST phase); the net's inputs (``input:`` fields or
    ``Input`` layers) kept;
  * a Dropout with caffe-fast-rcnn's ``scale_train: false`` (its TEST output is the input
    times 1 - ratio) replaced by ``Power`` with ``scale: 1 - ratio``: runtimes that only
    know BVLC's Dropout treat it as the identity;
  * include/exclude rules dropped (every layer left is a TEST layer).

  The Proposal layer's text is written by hand (caffe.proto builds differ on whether, and
  with which field number, they declare ProposalParameter); every other layer is written
  with ``google.protobuf.text_format`` from this package's caffe_pb2, and the file is checked
  to parse with it, the Proposal block left out.
- ``deploy.caffemodel``: the weights, the bbox normalisation folded into ``bbox_pred``'s
  InnerProduct when ``fold`` = (means, stds) is given (the model was trained on normalised
  targets and not folded), else a byte copy of the caffemodel.

Both files are written atomically (a temporary name in ``out_dir``, then ``os.replace``).
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from frcnn.fileio import write_atomic

PROPOSAL_MODULE = "rpn.proposal_layer"
PROPOSAL_CLASS = "ProposalLayer"
PROPOSAL_KEY = f"{PROPOSAL_MODULE}.{PROPOSAL_CLASS}"
BASE_SIZE = 16                       # py-faster-rcnn's generate_anchors(base_size=16)
BBOX_PRED = "bbox_pred"
PROTOTXT = "deploy.prototxt"
CAFFEMODEL = "deploy.caffemodel"

# Python layers that exist only to train (data, anchor and RoI targets, OHEM).
TRAINING_PYTHON_MODULES = frozenset({
    "roi_data_layer.layer", "roi_data_layer.ohem_layer", "rpn.anchor_target_layer",
    "rpn.proposal_target_layer",
})
# Layer types that have no place in a deploy net.
TRAINING_TYPES = frozenset({
    "Accuracy", "Silence", "Data", "ImageData", "HDF5Data", "HDF5Output", "WindowData",
    "MemoryData", "DummyData", "AnnotatedData",
})
_UINT32_MAX = 2 ** 32 - 1


def _caffe_pb2():
    from caffe.proto import caffe_pb2

    return caffe_pb2


# --------------------------------------------------------------------------- the prototxt

def _is_training_only(layer: Any) -> bool:
    if layer.type.endswith("Loss") or layer.type in TRAINING_TYPES:
        return True
    if any(w != 0 for w in layer.loss_weight):
        return True
    return layer.type == "Python" and layer.python_param.module in TRAINING_PYTHON_MODULES


def _is_proposal(layer: Any) -> bool:
    return (layer.type == "Python" and layer.python_param.module == PROPOSAL_MODULE
            and layer.python_param.layer == PROPOSAL_CLASS)


def _net_inputs(net: Any) -> list[str]:
    return list(net.input) + [t for layer in net.layer if layer.type == "Input"
                              for t in layer.top]


def _uint32(name: str, value: Any, path: Path, positive: bool = True) -> int:
    """An integral setting for a uint32 ProposalParameter field."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = math.nan
    low = 1 if positive else 0
    if not math.isfinite(f) or f != int(f) or not low <= int(f) <= _UINT32_MAX:
        need = "a positive integer" if positive else "a non-negative integer"
        raise ValueError(f"{path}: proposal_param {name} must be {need} (a uint32 field of "
                         f"ProposalParameter), got {value!r}")
    return int(f)


def _float_text(value: float) -> str:
    """A float for a proto text field: shortest repr of the float32 it becomes."""
    v = np.float32(value)
    if not np.isfinite(v):
        raise ValueError(f"not a finite float: {value!r}")
    return np.format_float_positional(v, unique=True, trim="-")


def _proposal_block(layer: Any, anchors: dict[str, Any], settings: dict[str, Any]) -> str:
    """The hand-written text of the native Proposal layer (same name, bottoms, tops)."""
    from frcnn.caffe_files import proto_text as q  # for correctly escaped strings
    caffe_pb2 = _caffe_pb2()

    def string(value: str) -> str:
        return q(caffe_pb2.LayerParameter(name=value)).strip()[len("name: "):]

    lines = ["layer {", f"  name: {string(layer.name)}", '  type: "Proposal"']
    lines += [f"  bottom: {string(b)}" for b in layer.bottom]
    lines += [f"  top: {string(t)}" for t in layer.top]
    lines.append("  proposal_param {")
    lines.append(f"    feat_stride: {settings['feat_stride']}")
    lines.append(f"    base_size: {BASE_SIZE}")
    lines.append(f"    min_size: {settings['min_size']}")
    lines += [f"    ratio: {_float_text(r)}" for r in anchors["ratios"]]
    lines += [f"    scale: {_float_text(s)}" for s in anchors["scales"]]
    lines.append(f"    pre_nms_topn: {settings['pre_nms_topn']}")
    lines.append(f"    post_nms_topn: {settings['post_nms_topn']}")
    lines.append(f"    nms_thresh: {_float_text(settings['nms_thresh'])}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _layer_block(layer: Any) -> str:
    from frcnn.caffe_files import proto_text

    body = proto_text(layer, indent=2)
    return "layer {\n" + body + "}\n"


def _dropout_as_power(layer: Any) -> Any:
    """Dropout(scale_train: false) at TEST = x * (1 - ratio): the same as a Power layer."""
    caffe_pb2 = _caffe_pb2()
    power = caffe_pb2.LayerParameter(name=layer.name, type="Power")
    power.bottom.extend(layer.bottom)
    power.top.extend(layer.top)
    power.power_param.power = 1.0
    power.power_param.scale = 1.0 - layer.dropout_param.dropout_ratio
    power.power_param.shift = 0.0
    return power


def _deploy_text(test_prototxt: Path, settings: dict[str, Any]
                 ) -> tuple[str, str, dict, dict]:
    """(deploy text, the text without the Proposal block, anchor parameters, settings).

    The settings returned are ``settings`` with the param_str's feat_stride added.
    """
    from frcnn.caffe_files import proto_text, read_prototxt, test_phase_layers
    from frcnn.layer_params import ParamError, parse_param_str

    net = read_prototxt(test_prototxt)
    state = net.state if net.HasField("state") else None
    try:
        layers = test_phase_layers(net, state.level if state else 0,
                                   state.stage if state else ())
    except ValueError as e:
        raise ValueError(f"{test_prototxt}: {e}") from None
    proposals = [layer for layer in layers if _is_proposal(layer)]
    if len(proposals) != 1:
        raise ValueError(f"{test_prototxt}: expected exactly one Python ProposalLayer (module "
                         f"'{PROPOSAL_MODULE}', layer '{PROPOSAL_CLASS}') in the TEST phase, "
                         f"found {len(proposals)}; only Faster R-CNN end-to-end test nets "
                         f"(RPN proposals) can be deployed with a native Proposal layer")
    prop = proposals[0]
    if len(prop.bottom) != 3 or len(prop.top) not in (1, 2):
        raise ValueError(f"{test_prototxt}: layer '{prop.name}' must have the bottoms "
                         f"rpn_cls_prob_reshape, rpn_bbox_pred, im_info and the tops "
                         f"rois[, scores]; it has {list(prop.bottom)} -> {list(prop.top)}")
    try:
        anchors = parse_param_str(prop.python_param.param_str, PROPOSAL_KEY, prop.name)
    except ParamError as e:
        raise ValueError(f"{test_prototxt}: {e}") from None
    full = dict(settings, feat_stride=_uint32("feat_stride", anchors["feat_stride"],
                                              test_prototxt))

    kept = []
    available = set(net.input)
    for layer in layers:
        if _is_training_only(layer):
            continue
        if layer.type == "Python" and layer is not prop:
            p = layer.python_param
            raise ValueError(f"{test_prototxt}: layer '{layer.name}' is a Python layer "
                             f"({p.module}.{p.layer}) that no runtime executes; only the "
                             f"ProposalLayer is replaced by a native layer")
        missing = [b for b in layer.bottom if b not in available]
        if missing:
            raise ValueError(f"{test_prototxt}: layer '{layer.name}' reads {missing}, which no "
                             f"TEST-phase layer left in the deploy net produces (is this a "
                             f"test net?)")
        available.update(layer.top)
        kept.append(layer)

    inputs = _net_inputs(net)
    if not {"data", "im_info"} <= set(inputs):
        raise ValueError(f"{test_prototxt}: the test net must declare the inputs 'data' and "
                         f"'im_info' (input: fields or Input layers), it has {inputs}")

    header = net.__class__()
    header.CopyFrom(net)
    del header.layer[:]
    header.ClearField("state")
    comment = (f"# Deploy net of {test_prototxt.name}, written by frcnn.deploy.caffe_deploy: the "
               f"Python ProposalLayer\n# is a native Proposal layer (OpenCV DNN 4.x, ncnn, "
               f"...), training-only layers removed.\n")
    blocks = [comment + proto_text(header)]
    proposal_index = -1
    for layer in kept:
        if layer is prop:
            proposal_index = len(blocks)
            blocks.append(_proposal_block(prop, anchors, full))
            continue
        out = layer.__class__()
        out.CopyFrom(layer)
        out.ClearField("include")
        out.ClearField("exclude")
        if out.type == "Dropout" and out.HasField("dropout_param") \
                and out.dropout_param.HasField("scale_train") \
                and not out.dropout_param.scale_train:
            out = _dropout_as_power(out)
        blocks.append(_layer_block(out))
    text = "".join(blocks)
    without = "".join(b for i, b in enumerate(blocks) if i != proposal_index)
    return text, without, anchors, full


def _check_deploy_text(text: str, without_proposal: str, where: Path, anchors: dict,
                       settings: dict) -> None:
    """Our caffe_pb2 parses every layer; if it declares proposal_param, the whole file too."""
    from frcnn.caffe_files import parse_text

    caffe_pb2 = _caffe_pb2()
    try:
        parse_text(without_proposal, caffe_pb2.NetParameter(), str(where), "deploy net")
    except ValueError as e:  # a bug here, not in the user's net
        raise RuntimeError(str(e)) from None
    if "proposal_param" not in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name:
        return
    net = parse_text(text, caffe_pb2.NetParameter(), str(where), "deploy net")
    (p,) = [layer.proposal_param for layer in net.layer if layer.type == "Proposal"]
    expect = (settings["feat_stride"], BASE_SIZE, settings["min_size"],
              [float(np.float32(r)) for r in anchors["ratios"]],
              [float(np.float32(s)) for s in anchors["scales"]],
              settings["pre_nms_topn"], settings["post_nms_topn"],
              float(np.float32(settings["nms_thresh"])))
    got = (p.feat_stride, p.base_size, p.min_size, list(p.ratio), list(p.scale),
           p.pre_nms_topn, p.post_nms_topn, p.nms_thresh)
    if got != expect:
        raise RuntimeError(f"{where}: the Proposal layer reads back as {got}, not {expect}")


# --------------------------------------------------------------------------- the weights

def _blob_values(blob: Any) -> tuple[np.ndarray, str]:
    if len(blob.double_data):
        return np.asarray(blob.double_data, np.float64), "double_data"
    return np.asarray(blob.data, np.float32), "data"


def _set_blob_values(blob: Any, field: str, values: np.ndarray) -> None:
    repeated = getattr(blob, field)
    del repeated[:]
    repeated.extend(values.ravel().tolist())


def fold_caffemodel(data: bytes, means: Sequence[float], stds: Sequence[float],
                    layer_name: str = BBOX_PRED, where: str = "<caffemodel>") -> bytes:
    """Serialised NetParameter weights with the normalisation folded into ``layer_name``."""
    from frcnn.caffe_files import parse_caffemodel
    from frcnn.detection import fold_bbox_normalization

    net = parse_caffemodel(data, where)
    found = [layer for layer in list(net.layer) + list(net.layers) if layer.name == layer_name]
    if len(found) != 1 or len(found[0].blobs) < 2:
        raise ValueError(f"{where}: expected one layer '{layer_name}' with weights and bias to "
                         f"fold the bbox normalisation into, found {len(found)}"
                         + (f" with {len(found[0].blobs)} blob(s)" if found else ""))
    w_blob, b_blob = found[0].blobs[0], found[0].blobs[1]
    w, w_field = _blob_values(w_blob)
    b, b_field = _blob_values(b_blob)
    if b.size == 0 or w.size % b.size:
        raise ValueError(f"{where}: layer '{layer_name}' has {w.size} weights and {b.size} "
                         f"biases; not an InnerProduct of 4K outputs")
    w2, b2 = fold_bbox_normalization(w.reshape(b.size, -1), b, means, stds)
    _set_blob_values(w_blob, w_field, w2)
    _set_blob_values(b_blob, b_field, b2)
    return net.SerializeToString()


# --------------------------------------------------------------------------- writing

def write_caffe_deploy(test_prototxt: str | os.PathLike, caffemodel: str | os.PathLike,
                       out_dir: str | os.PathLike, *, pre_nms_topn: int, post_nms_topn: int,
                       nms_thresh: float, min_size: float,
                       fold: tuple[Sequence[float], Sequence[float]] | None) -> dict[str, Path]:
    """Write ``out_dir/deploy.prototxt`` and ``out_dir/deploy.caffemodel``.

    Args:
        test_prototxt: a Faster R-CNN end-to-end test net with one Python ProposalLayer.
        caffemodel: its trained weights.
        out_dir: created if missing.
        pre_nms_topn, post_nms_topn, nms_thresh, min_size: the proposal settings (cfg
            TEST.RPN_PRE_NMS_TOP_N, RPN_POST_NMS_TOP_N, RPN_NMS_THRESH, RPN_MIN_SIZE); the
            top-N counts must be positive (the native layer has no "keep all"), min_size a
            non-negative integer (OpenCV ignores it, other runtimes filter with it).
        fold: (means, stds) when the model's bbox_pred still predicts normalised deltas:
            they are folded into bbox_pred's weights; None: the weights are copied as is.
    Returns:
        {"prototxt": path, "caffemodel": path}.
    Raises:
        ValueError: an unsupported test net (no ProposalLayer or more than one, other Python
            layers, missing inputs), bad settings, or a caffemodel without bbox_pred to
            fold into; the message names the file.
    """
    test_prototxt, caffemodel, out_dir = Path(test_prototxt), Path(caffemodel), Path(out_dir)
    settings = {
        "pre_nms_topn": _uint32("pre_nms_topn", pre_nms_topn, test_prototxt),
        "post_nms_topn": _uint32("post_nms_topn", post_nms_topn, test_prototxt),
        "min_size": _uint32("min_size", min_size, test_prototxt, positive=False),
    }
    thresh = float(nms_thresh)
    if not 0 < thresh <= 1:
        raise ValueError(f"{test_prototxt}: nms_thresh must be in (0, 1], got {nms_thresh!r}")
    settings["nms_thresh"] = thresh
    text, without, anchors, settings = _deploy_text(test_prototxt, settings)
    prototxt_out = out_dir / PROTOTXT
    _check_deploy_text(text, without, prototxt_out, anchors, settings)
    if not caffemodel.is_file():
        raise ValueError(f"{caffemodel}: no such caffemodel")
    weights = None
    if fold is not None:
        means, stds = fold
        weights = fold_caffemodel(caffemodel.read_bytes(), means, stds, BBOX_PRED,
                                  str(caffemodel))

    out_dir.mkdir(parents=True, exist_ok=True)
    model_out = out_dir / CAFFEMODEL
    write_atomic(prototxt_out, text.encode())
    if weights is not None:
        write_atomic(model_out, weights)
    else:
        def copy(f):
            with caffemodel.open("rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        write_atomic(model_out, copy)
    return {"prototxt": prototxt_out, "caffemodel": model_out}
