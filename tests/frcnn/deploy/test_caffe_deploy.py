"""frcnn.deploy.caffe_deploy and opencv_backend: the committed squeezenet test net, random
weights, real Caffe against real OpenCV DNN 4.x on the deploy files."""
from __future__ import annotations

import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from frcnn.deploy.caffe_deploy import write_caffe_deploy
from frcnn.deploy.opencv_backend import OpenCVRunner, blob_producers, opencv_dnn_available

ROOT = Path(__file__).resolve().parents[3]
NET = ROOT / "prototxts" / "squeezenet" / "faster_rcnn_end2end" / "test.prototxt"
H, W = 224, 320
TEST = dict(pre_nms_topn=600, post_nms_topn=50, nms_thresh=0.7, min_size=0)
CV_REASON = opencv_dnn_available()
needs_cv = pytest.mark.skipif(CV_REASON is not None, reason=f"OpenCV DNN: {CV_REASON}")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(caffe.Net, caffemodel path, blob, im_info, Caffe's outputs) with random weights.

    The ProposalLayer reads cfg.TEST.* at setup: set for the build, restored right after.
    """
    import caffe

    from frcnn import config

    caffe.set_mode_cpu()
    with config.preserved():
        t = config.cfg.TEST
        t.RPN_PRE_NMS_TOP_N, t.RPN_POST_NMS_TOP_N = TEST["pre_nms_topn"], TEST["post_nms_topn"]
        t.RPN_NMS_THRESH, t.RPN_MIN_SIZE = TEST["nms_thresh"], TEST["min_size"]
        config.cfg.USE_GPU_NMS = False
        net = caffe.Net(str(NET), caffe.TEST)
    rng = np.random.default_rng(1234)
    for params in net.params.values():
        for p in params:
            fan_in = max(1, int(np.prod(p.data.shape[1:])))
            std = 0.1 if p.data.ndim == 1 else min(0.1, max(0.01, np.sqrt(2.0 / fan_in)))
            p.data[...] = rng.normal(0.0, std, p.data.shape)
    folder = tmp_path_factory.mktemp("model")
    caffemodel = folder / "random.caffemodel"
    net.save(str(caffemodel))
    blob = rng.normal(0.0, 40.0, (1, 3, H, W)).astype(np.float32)
    im_info = np.array([[H, W, 1.0]], np.float32)
    net.blobs["data"].reshape(*blob.shape)
    net.blobs["data"].data[...] = blob
    net.blobs["im_info"].data[...] = im_info
    with warnings.catch_warnings():  # the CPU NMS fallback notice
        warnings.simplefilter("ignore", RuntimeWarning)
        net.forward()
    out = {k: net.blobs[k].data.copy() for k in
           ("rois", "cls_prob", "bbox_pred", "rpn_cls_prob_reshape", "rpn_bbox_pred")}
    return net, caffemodel, blob, im_info, out


@pytest.fixture(scope="module")
def deploy(model, tmp_path_factory):
    _, caffemodel, *_ = model
    return write_caffe_deploy(NET, caffemodel, tmp_path_factory.mktemp("deploy"), fold=None,
                              **TEST)


def _layers(text: str) -> list[str]:
    return re.findall(r"^layer \{\n.*?^\}\n", text, flags=re.S | re.M)


def _strip_proposal(text: str) -> str:
    return "".join(b for b in re.split(r"(?m)^(?=layer \{)", text)
                   if 'type: "Proposal"' not in b)


# ----------------------------------------------------------------------------- the files

def test_deploy_prototxt_has_a_native_proposal_and_no_python(deploy):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    text = deploy["prototxt"].read_text()
    assert deploy["prototxt"].name == "deploy.prototxt"
    body = "".join(line for line in text.splitlines(True) if not line.startswith("#"))
    assert "Python" not in body and "python_param" not in body and "Loss" not in body
    blocks = [b for b in _layers(text) if 'type: "Proposal"' in b]
    assert len(blocks) == 1
    block = blocks[0]
    assert re.findall(r"bottom: \"(.*?)\"", block) == ["rpn_cls_prob_reshape", "rpn_bbox_pred",
                                                      "im_info"]
    assert re.findall(r"top: \"(.*?)\"", block) == ["rois"]
    assert re.findall(r"ratio: (\S+)", block) == ["0.5", "1", "2"]
    assert re.findall(r"scale: (\S+)", block) == ["8", "16", "32"]
    for key, value in [("feat_stride", "16"), ("base_size", "16"), ("min_size", "0"),
                       ("pre_nms_topn", "600"), ("post_nms_topn", "50"), ("nms_thresh", "0.7")]:
        assert re.findall(rf"\b{key}: (\S+)", block) == [value], key
    # every other layer parses with this package's caffe_pb2; the inputs are kept
    net = text_format.Parse(_strip_proposal(text), caffe_pb2.NetParameter())
    assert [layer.name for layer in net.layer if layer.type == "Input"] == ["data", "im_info"]
    assert "proposal" not in [layer.name for layer in net.layer]
    src = text_format.Parse(NET.read_text(), caffe_pb2.NetParameter())
    assert [layer.name for layer in net.layer] == [layer.name for layer in src.layer
                                                   if layer.type != "Python"]


def test_unfolded_caffemodel_is_a_byte_copy(model, deploy):
    _, caffemodel, *_ = model
    assert deploy["caffemodel"].read_bytes() == caffemodel.read_bytes()
    assert not [p for p in deploy["caffemodel"].parent.iterdir() if p.name.startswith(".")]


def test_folded_caffemodel_bbox_pred(model, tmp_path):
    from caffe.proto import caffe_pb2

    from frcnn.detection import fold_bbox_normalization

    net, caffemodel, *_ = model
    means, stds = (0.0, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2)
    files = write_caffe_deploy(NET, caffemodel, tmp_path, fold=(means, stds), **TEST)
    folded = caffe_pb2.NetParameter.FromString(files["caffemodel"].read_bytes())
    original = caffe_pb2.NetParameter.FromString(caffemodel.read_bytes())
    by_name = {layer.name: layer for layer in folded.layer}
    w, b = net.params["bbox_pred"][0].data, net.params["bbox_pred"][1].data
    want_w, want_b = fold_bbox_normalization(w, b, means, stds)
    got = by_name["bbox_pred"].blobs
    np.testing.assert_array_equal(np.asarray(got[0].data, np.float32).reshape(w.shape), want_w)
    np.testing.assert_array_equal(np.asarray(got[1].data, np.float32), want_b)
    assert list(got[0].shape.dim) == list(w.shape)
    for layer in original.layer:  # everything else untouched
        if layer.name != "bbox_pred":
            assert by_name[layer.name].SerializeToString() == layer.SerializeToString()


def _write_net(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "net.prototxt"
    path.write_text(textwrap.dedent(body))
    return path


TOY = """
name: "toy"
input: "data"
input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
input: "im_info"
input_shape { dim: 1 dim: 3 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "rpn_prob" type: "Convolution" bottom: "conv" top: "rpn_prob"
  convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "rpn_deltas" type: "Convolution" bottom: "conv" top: "rpn_deltas"
  convolution_param { num_output: 4 kernel_size: 1 } }
{proposal}
layer { name: "pool" type: "ROIPooling" bottom: "conv" bottom: "rois" top: "pool"
  roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 0.0625 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc"
  inner_product_param { num_output: 8 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc"
  dropout_param { dropout_ratio: 0.3 scale_train: false } }
layer { name: "drop_bvlc" type: "Dropout" bottom: "fc" top: "fc"
  dropout_param { dropout_ratio: 0.5 } }
layer { name: "cls_prob" type: "InnerProduct" bottom: "fc" top: "cls_prob"
  inner_product_param { num_output: 2 } }
layer { name: "bbox_pred" type: "InnerProduct" bottom: "fc" top: "bbox_pred"
  inner_product_param { num_output: 8 } }
layer { name: "train_only" type: "Python" bottom: "rois" top: "labels"
  python_param { module: "rpn.proposal_target_layer" layer: "ProposalTargetLayer" }
  include { phase: TRAIN } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "cls_prob" bottom: "labels" top: "loss"
  include { phase: TRAIN } }
layer { name: "acc" type: "Accuracy" bottom: "cls_prob" bottom: "cls_prob" top: "acc" }
"""
PROPOSAL = """
layer { name: "proposal" type: "Python" bottom: "rpn_prob" bottom: "rpn_deltas"
  bottom: "im_info" top: "rois"
  python_param { module: "rpn.proposal_layer" layer: "ProposalLayer"
    param_str: "'feat_stride': 16\\n'ratios': [1]\\n'scales': [4, 8.5]" } }
"""


def test_toy_net_dropout_power_and_training_layers(tmp_path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    net_path = _write_net(tmp_path, TOY.replace("{proposal}", PROPOSAL))
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"not parsed without fold")
    files = write_caffe_deploy(net_path, weights, tmp_path / "out", fold=None, **TEST)
    text = files["prototxt"].read_text()
    net = text_format.Parse(_strip_proposal(text), caffe_pb2.NetParameter())
    assert list(net.input) == ["data", "im_info"] and len(net.input_shape) == 2
    layers = {layer.name: layer for layer in net.layer}
    assert "train_only" not in layers and "loss" not in layers and "acc" not in layers
    drop = layers["drop"]
    assert drop.type == "Power" and not drop.HasField("dropout_param")
    assert list(drop.bottom) == ["fc"] and list(drop.top) == ["fc"]
    assert drop.power_param.power == 1 and drop.power_param.shift == 0
    assert drop.power_param.scale == pytest.approx(0.7, abs=1e-7)
    assert layers["drop_bvlc"].type == "Dropout"       # BVLC Dropout: identity at TEST
    assert "include" not in text and "exclude" not in text
    block = [b for b in _layers(text) if 'type: "Proposal"' in b][0]
    assert re.findall(r"ratio: (\S+)", block) == ["1"]
    assert re.findall(r"scale: (\S+)", block) == ["4", "8.5"]


@needs_cv
def test_power_matches_caffes_scale_train_false(caffe, tmp_path):
    """Caffe's Dropout(scale_train: false) at TEST == OpenCV's Power(scale 1 - ratio)."""
    import cv2

    from frcnn.deploy.caffe_deploy import _dropout_as_power, _layer_block
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    src = ('input: "x" input_shape { dim: 1 dim: 64 }\n'
           'layer { name: "drop" type: "Dropout" bottom: "x" top: "y" '
           'dropout_param { dropout_ratio: 0.3 scale_train: false } }\n')
    (tmp_path / "c.prototxt").write_text(src)
    net = caffe.Net(str(tmp_path / "c.prototxt"), caffe.TEST)
    x = np.linspace(-2, 3, 64, dtype=np.float32).reshape(1, 64)
    net.blobs["x"].data[...] = x
    want = net.forward()["y"].copy()
    parsed = text_format.Parse(src, caffe_pb2.NetParameter())
    power = _layer_block(_dropout_as_power(parsed.layer[0]))
    (tmp_path / "o.prototxt").write_text('input: "x" input_shape { dim: 1 dim: 64 }\n' + power)
    cv_net = cv2.dnn.readNetFromCaffe(str(tmp_path / "o.prototxt"))
    cv_net.setInput(x, "x")
    np.testing.assert_allclose(cv_net.forward("drop").reshape(1, 64), want, rtol=1e-6)


@pytest.mark.parametrize("proposal", ["", PROPOSAL + PROPOSAL.replace('"proposal"', '"p2"')])
def test_unsupported_net_is_a_value_error_naming_the_file(tmp_path, proposal):
    net_path = _write_net(tmp_path, TOY.replace("{proposal}", proposal))
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(str(net_path))) as e:
        write_caffe_deploy(net_path, weights, tmp_path / "out", fold=None, **TEST)
    assert "ProposalLayer" in str(e.value) and f"found {proposal.count('ProposalLayer')}" \
        in str(e.value)
    assert not (tmp_path / "out").exists()


def test_bad_settings(tmp_path, model):
    _, caffemodel, *_ = model
    for bad in (dict(TEST, post_nms_topn=0), dict(TEST, min_size=2.5),
                dict(TEST, nms_thresh=0)):
        with pytest.raises(ValueError, match="test.prototxt"):
            write_caffe_deploy(NET, caffemodel, tmp_path, fold=None, **bad)


# ----------------------------------------------------------------------------- OpenCV

def test_opencv_dnn_available_here():
    import cv2

    assert int(cv2.__version__.split(".")[0]) == 4
    assert opencv_dnn_available() is None


def test_blob_producers_maps_tops_to_layers(deploy):
    producers = blob_producers(deploy["prototxt"].read_text())
    assert producers["rois"] == ("proposal", 0)
    assert producers["conv1"] == ("relu_conv1", 0)       # in place: the last writer
    assert producers["cls_prob"] == ("cls_prob", 0)
    assert producers["data"] == ("data", 0)


def _match_rows(a: np.ndarray, b: np.ndarray, tol: float = 1e-3) -> list[tuple[int, int]]:
    """(i, j) pairs of rows of a and b equal within tol (each b row used once)."""
    pairs, used = [], set()
    for i, row in enumerate(a):
        close = np.flatnonzero(np.abs(b - row).max(axis=1) <= tol)
        close = [j for j in close if j not in used]
        if close:
            used.add(close[0])
            pairs.append((i, int(close[0])))
    return pairs


@needs_cv
def test_opencv_parity_with_caffe(model, deploy):
    net, _, blob, im_info, ref = model
    runner = OpenCVRunner(deploy["prototxt"], deploy["caffemodel"])
    # (a) backbone and RPN blobs
    rpn = runner.forward(blob, im_info, ["rpn_cls_prob_reshape", "rpn_bbox_pred"])
    for name, value in rpn.items():
        assert value.shape == ref[name].shape
        np.testing.assert_allclose(value, ref[name], atol=1e-4, rtol=0, err_msg=name)
    # (b) the head on RoIs both proposal layers produce
    rois, cls_prob, bbox_pred = runner.raw(blob, im_info)
    k = ref["cls_prob"].shape[1]
    assert rois.shape[1] == 5 and cls_prob.shape == (len(rois), k)
    assert bbox_pred.shape == (len(rois), 4 * k)
    assert len(rois) == len(ref["rois"]) == TEST["post_nms_topn"]
    pairs = _match_rows(ref["rois"], rois)
    same_order = np.abs(rois - ref["rois"]).max()
    print(f"\n[opencv parity] {len(pairs)} of {len(ref['rois'])} Caffe rois match OpenCV's "
          f"({len(rois)}) within 1e-3; row by row, max |roi diff| {same_order:.2e}")
    assert same_order < 1e-2  # the same boxes in the same order, float32 decode apart
    assert len(pairs) >= 0.9 * len(ref["rois"])
    i, j = np.array(pairs).T
    d_cls = np.abs(cls_prob[j] - ref["cls_prob"][i]).max()
    d_box = np.abs(bbox_pred[j] - ref["bbox_pred"][i]).max()
    print(f"[opencv parity] matched rois: max |cls_prob diff| {d_cls:.2e}, "
          f"|bbox_pred diff| {d_box:.2e}")
    assert d_cls <= 1e-4 and d_box <= 1e-4
    # the head on exactly OpenCV's rois, fed to Caffe's net
    net.blobs["rois"].reshape(*rois.shape)
    net.blobs["rois"].data[...] = rois
    net.forward(start="roi_pool5")
    np.testing.assert_allclose(net.blobs["cls_prob"].data, cls_prob, atol=1e-4, rtol=0)
    np.testing.assert_allclose(net.blobs["bbox_pred"].data, bbox_pred, atol=1e-4, rtol=0)


@needs_cv
def test_opencv_zero_rows_dropped(model, tmp_path):
    """post_nms_topn above the boxes that survive NMS: OpenCV pads with zero rows."""
    _, caffemodel, blob, im_info, _ = model
    files = write_caffe_deploy(NET, caffemodel, tmp_path, fold=None,
                               **dict(TEST, pre_nms_topn=400, post_nms_topn=1000))
    runner = OpenCVRunner(files["prototxt"], files["caffemodel"])
    padded = runner.forward(blob, im_info, ["rois"])["rois"].reshape(-1, 5)
    rois, cls_prob, bbox_pred = runner.raw(blob, im_info)
    assert len(padded) == 1000 and 0 < len(rois) <= 400
    assert not padded[len(rois):].any() and np.any(rois[-1] != 0)
    assert len(cls_prob) == len(bbox_pred) == len(rois)


def test_runner_without_opencv_reason(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    reason = opencv_dnn_available()
    assert reason and "opencv-python-headless<5" in reason and "\n" not in reason
    with pytest.raises(RuntimeError, match="cv2"):
        OpenCVRunner("x.prototxt", "x.caffemodel")
