"""frcnn.deploy.onnx_convert and caffe_files against real caffe.Nets run by onnxruntime.

Every net is built by the project's Caffe from prototxt text with random weights, saved
as a caffemodel and read back with read_caffemodel; the converted ONNX model must give
Caffe's outputs within 1e-4 (relative to the output's magnitude where it is large).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from frcnn import caffe_files
from frcnn.caffe_files import net_inputs, read_caffemodel, read_prototxt
from frcnn.deploy.onnx_convert import UnsupportedLayer, convert

ROOT = Path(__file__).resolve().parents[3]
SQUEEZENET = ROOT / "prototxts/squeezenet/faster_rcnn_end2end/test.prototxt"
ZF = ROOT / "prototxts/zf/faster_rcnn_end2end/test.prototxt"
RPN_OUTPUTS = ("rpn_cls_prob_reshape", "rpn_bbox_pred")


# ---- helpers ------------------------------------------------------------------------------

def _fill(net, rng: np.random.Generator, std: float | None = None) -> None:
    """Random weights: N(0, std) (He-scaled when std is None), valid BatchNorm statistics."""
    for name, blobs in net.params.items():
        kind = net.layer_dict[name].type
        if kind == "BatchNorm":
            c = blobs[0].data.size
            factor = 2.0
            blobs[0].data[...] = rng.standard_normal(c) * factor
            blobs[1].data[...] = rng.uniform(0.5, 2.0, c) * factor
            blobs[2].data[...] = factor
            continue
        if kind == "Scale":
            blobs[0].data[...] = 1 + 0.3 * rng.standard_normal(blobs[0].data.shape)
            for blob in blobs[1:]:
                blob.data[...] = 0.3 * rng.standard_normal(blob.data.shape)
            continue
        w = blobs[0].data
        fan_in = int(np.prod(w.shape[1:])) if w.ndim > 1 else 1
        s = std if std is not None else np.sqrt(2.0 / fan_in)
        w[...] = rng.standard_normal(w.shape, dtype=np.float32) * np.float32(s)
        for blob in blobs[1:]:
            blob.data[...] = 0.1 * rng.standard_normal(blob.data.shape)


def _build(caffe, tmp_path: Path, text: str, rng: np.random.Generator,
           std: float | None = None):
    """(caffe.Net in TEST, weights read back from its saved caffemodel, the caffemodel)."""
    k = len(list(tmp_path.glob("net*.prototxt")))
    proto, model = tmp_path / f"net{k}.prototxt", tmp_path / f"net{k}.caffemodel"
    proto.write_text(textwrap.dedent(text))
    net = caffe.Net(str(proto), caffe.TEST)
    _fill(net, rng, std)
    net.save(str(model))
    return net, read_caffemodel(model), model


def _caffe_forward(net, feeds: dict[str, np.ndarray], outputs) -> dict[str, np.ndarray]:
    for name, value in feeds.items():
        net.blobs[name].reshape(*value.shape)
    net.reshape()
    for name, value in feeds.items():
        net.blobs[name].data[...] = value
    net.forward()
    return {o: net.blobs[o].data.copy() for o in outputs}


def _session(model):
    import onnxruntime

    return onnxruntime.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"])


def _onnx_forward(session, feeds: dict[str, np.ndarray], outputs) -> dict[str, np.ndarray]:
    return dict(zip(outputs, session.run(list(outputs), feeds)))


def _assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != Caffe's {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


def _layers(text: str) -> list:
    net = caffe_pb2.NetParameter()
    text_format.Merge(textwrap.dedent(text), net)
    return caffe_files.test_phase_layers(net)


def _input(name: str, shape) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" ' \
           f'input_param {{ shape {{ {dims} }} }} }}\n'


# ---- one small net per layer family --------------------------------------------------------

CONV = """
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2"
  convolution_param { num_output: 6 kernel_h: 3 kernel_w: 1 stride_h: 1 stride_w: 2
                      pad_h: 1 pad_w: 0 group: 2 bias_term: false } }
layer { name: "c3" type: "Convolution" bottom: "c2" top: "out"
  convolution_param { num_output: 4 kernel_size: 3 kernel_size: 2 pad: 2 pad: 1
                      stride: 1 stride: 2 dilation: 2 } }
"""


def _pool(pool: str, k: int, s: int, p: int, extra: str = "") -> str:
    return f"""layer {{ name: "pool" type: "Pooling" bottom: "data" top: "out"
      pooling_param {{ pool: {pool} kernel_size: {k} stride: {s} pad: {p} {extra} }} }}"""


ACTIVATIONS = """
layer { name: "r1" type: "ReLU" bottom: "data" top: "a" relu_param { negative_slope: 0.1 } }
layer { name: "t" type: "TanH" bottom: "a" top: "b" }
layer { name: "sg" type: "Sigmoid" bottom: "data" top: "c" }
layer { name: "pw" type: "Power" bottom: "c" top: "c"
  power_param { power: 1.5 scale: 2 shift: 0.5 } }
layer { name: "r2" type: "ReLU" bottom: "data" top: "d" }
layer { name: "e" type: "Eltwise" bottom: "b" bottom: "c" bottom: "d" top: "e"
  eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 } }
layer { name: "p" type: "Eltwise" bottom: "e" bottom: "data" top: "p"
  eltwise_param { operation: PROD } }
layer { name: "m" type: "Eltwise" bottom: "p" bottom: "b" top: "out"
  eltwise_param { operation: MAX } }
"""

DROPOUT = """
layer { name: "d1" type: "Dropout" bottom: "data" top: "data" dropout_param { dropout_ratio: 0.3 } }
layer { name: "d2" type: "Dropout" bottom: "data" top: "out"
  dropout_param { dropout_ratio: 0.25 scale_train: false } }
"""

RPN_HEAD = """
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
  convolution_param { num_output: 18 kernel_size: 1 } }
layer { name: "score_reshape" type: "Reshape" bottom: "score" top: "score_reshape"
  reshape_param { shape { dim: 0 dim: 2 dim: -1 dim: 0 } } }
layer { name: "prob" type: "Softmax" bottom: "score_reshape" top: "prob" }
layer { name: "prob_reshape" type: "Reshape" bottom: "prob" top: "out"
  reshape_param { shape { dim: 0 dim: 18 dim: -1 dim: 0 } } }
layer { name: "sm2" type: "Softmax" bottom: "score" top: "out2" softmax_param { axis: 3 } }
"""

CONCAT_SPLIT = """
layer { name: "split" type: "Split" bottom: "data" top: "s1" top: "s2" }
layer { name: "r" type: "ReLU" bottom: "s1" top: "s1" }
layer { name: "cat" type: "Concat" bottom: "s1" bottom: "s2" top: "cat" }
layer { name: "cat2" type: "Concat" bottom: "s1" bottom: "s2" top: "cat2"
  concat_param { concat_dim: 2 } }
layer { name: "cat3" type: "Concat" bottom: "cat" bottom: "cat" top: "out"
  concat_param { axis: -1 } }
layer { name: "silence" type: "Silence" bottom: "s2" }
"""

LRN = """
layer { name: "across" type: "LRN" bottom: "data" top: "across"
  lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "within" type: "LRN" bottom: "across" top: "within"
  lrn_param { local_size: 3 alpha: 0.8 beta: 0.75 norm_region: WITHIN_CHANNEL k: 7 } }
layer { name: "zf_norm" type: "LRN" bottom: "within" top: "out"
  lrn_param { local_size: 3 alpha: 5e-05 beta: 0.75 norm_region: WITHIN_CHANNEL engine: CAFFE } }
"""

BATCHNORM = """
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" }
layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }
layer { name: "bn2" type: "BatchNorm" bottom: "data" top: "bn2"
  batch_norm_param { eps: 0.001 use_global_stats: true } }
layer { name: "sc2" type: "Scale" bottom: "bn2" top: "out" }
"""

# the demo trunk's instance norm (MVN with its own top, Scale in place on it), MVN across
# channels, and MVN without the variance; channel 0 of the input is made constant below
MVN = """
layer { name: "mvn" type: "MVN" bottom: "data" top: "mvn" mvn_param { eps: 1e-05 } }
layer { name: "sc" type: "Scale" bottom: "mvn" top: "mvn" scale_param { bias_term: true } }
layer { name: "mvn2" type: "MVN" bottom: "mvn" top: "mvn2"
  mvn_param { across_channels: true eps: 0.001 } }
layer { name: "mvn3" type: "MVN" bottom: "data" top: "out" mvn_param { normalize_variance: false } }
"""

FLATTEN_IP = """
layer { name: "f" type: "Flatten" bottom: "data" top: "f" }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 7 } }
layer { name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 5 transpose: true bias_term: false } }
layer { name: "f2" type: "Flatten" bottom: "data" top: "f2" flatten_param { axis: 2 } }
layer { name: "ip3" type: "InnerProduct" bottom: "f2" top: "ip3"
  inner_product_param { num_output: 3 axis: 2 } }
layer { name: "f3" type: "Flatten" bottom: "data" top: "out" flatten_param { axis: 1 end_axis: 2 } }
layer { name: "sc" type: "Scale" bottom: "ip3" top: "ip3s" scale_param { axis: 1 num_axes: 2 } }
"""

# Caffe's Split, Reshape and Flatten tops share their bottom's memory: an in-place layer
# on one changes the others (after the Split below, s2 and data are relu'd too).
SHARED_MEMORY = """
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 6 kernel_size: 1 } }
layer { name: "rs" type: "Reshape" bottom: "c" top: "r"
  reshape_param { shape { dim: 0 dim: 3 dim: -1 dim: 0 } } }
layer { name: "before" type: "Sigmoid" bottom: "c" top: "before" }
layer { name: "relu_r" type: "ReLU" bottom: "r" top: "r" }
layer { name: "after" type: "TanH" bottom: "c" top: "after" }
layer { name: "fl" type: "Flatten" bottom: "after" top: "f" }
layer { name: "neg" type: "Power" bottom: "f" top: "f" power_param { scale: -1 } }
layer { name: "split" type: "Split" bottom: "r" top: "r1" top: "r2" }
layer { name: "sig_r1" type: "Sigmoid" bottom: "r1" top: "r1" }
"""

# (id, body, channels, sizes (H, W), outputs)
FAMILIES = [
    ("conv", CONV, 4, [(13, 17), (14, 14)], ["out"]),
    ("pool_max_k3s2p0_squeezenet", _pool("MAX", 3, 2, 0), 3, [(13, 17), (14, 14), (15, 20)],
     ["out"]),
    ("pool_max_k3s2p1_zf", _pool("MAX", 3, 2, 1), 3, [(13, 17), (14, 14), (15, 20)], ["out"]),
    ("pool_max_k2s2p0", _pool("MAX", 2, 2, 0), 3, [(13, 17), (14, 14), (15, 20)], ["out"]),
    ("pool_max_k3s3p2", _pool("MAX", 3, 3, 2), 3, [(13, 17), (14, 14), (15, 20)], ["out"]),
    ("pool_ave_k3s2p1", _pool("AVE", 3, 2, 1), 3, [(13, 17), (14, 14), (15, 20)], ["out"]),
    ("pool_ave_k3s2p0", _pool("AVE", 3, 2, 0), 3, [(13, 17), (14, 14), (15, 20)], ["out"]),
    ("pool_ave_k5s3p2", _pool("AVE", 5, 3, 2), 3, [(13, 17), (14, 14), (15, 20)], ["out"]),
    ("pool_max_floor", _pool("MAX", 3, 2, 1, "ceil_mode: false"), 3, [(13, 17), (14, 14)],
     ["out"]),
    ("pool_global", """
layer { name: "g1" type: "Pooling" bottom: "data" top: "out"
  pooling_param { pool: AVE global_pooling: true } }
layer { name: "g2" type: "Pooling" bottom: "data" top: "out2"
  pooling_param { pool: MAX global_pooling: true } }""", 3, [(13, 17), (7, 9)],
     ["out", "out2"]),
    ("activations_eltwise", ACTIVATIONS, 3, [(5, 6)], ["out", "a", "c"]),
    ("dropout", DROPOUT, 3, [(5, 6)], ["out"]),
    ("reshape_softmax", RPN_HEAD, 5, [(6, 7), (9, 4)], ["out", "out2"]),
    ("concat_split", CONCAT_SPLIT, 3, [(5, 6)], ["out", "cat2", "s1", "s2"]),
    ("lrn", LRN, 6, [(9, 11), (8, 8)], ["out"]),
    ("batchnorm_scale", BATCHNORM, 5, [(6, 7)], ["out"]),
    ("mvn_scale", MVN, 5, [(6, 7), (3, 2)], ["mvn", "mvn2", "out"]),
    ("flatten_innerproduct", FLATTEN_IP, 4, [(3, 5)], ["out", "f", "ip2", "ip3s"]),
    ("shared_memory", SHARED_MEMORY, 4, [(5, 6), (3, 4)],
     ["before", "after", "f", "c", "r", "r1", "r2"]),
]


@pytest.mark.parametrize("body,channels,sizes,outputs",
                         [f[1:] for f in FAMILIES], ids=[f[0] for f in FAMILIES])
def test_layer_family_matches_caffe(caffe, tmp_path, body, channels, sizes, outputs):
    rng = np.random.default_rng(0)
    h, w = sizes[0]
    text = _input("data", (1, channels, h, w)) + body
    net, weights, _ = _build(caffe, tmp_path, text, rng)
    model = convert(_layers(text), weights, {"data": (1, channels, "height", "width")},
                    outputs, "family")
    session = _session(model)
    assert [o.name for o in model.graph.output] == outputs
    for h, w in sizes:
        x = rng.standard_normal((1, channels, h, w)).astype(np.float32)
        x[:, 0] = 0.25          # a constant channel (MVN: sigma is eps alone)
        want = _caffe_forward(net, {"data": x}, outputs)
        got = _onnx_forward(session, {"data": x}, outputs)
        for o in outputs:
            _assert_close(got[o], want[o], f"{o} at {h}x{w}")


def test_scale_with_two_bottoms(caffe, tmp_path):
    text = _input("data", (2, 3, 4, 5)) + _input("g", (2, 3)) + """
layer { name: "sc" type: "Scale" bottom: "data" bottom: "g" top: "out"
  scale_param { axis: 0 bias_term: true } }"""
    rng = np.random.default_rng(1)
    net, weights, _ = _build(caffe, tmp_path, text, rng)
    model = convert(_layers(text), weights, {"data": (2, 3, "h", "w"), "g": (2, 3)}, ["out"],
                    "scale2")
    feeds = {"data": rng.standard_normal((2, 3, 4, 5)).astype(np.float32),
             "g": rng.standard_normal((2, 3)).astype(np.float32)}
    _assert_close(_onnx_forward(_session(model), feeds, ["out"])["out"],
                  _caffe_forward(net, feeds, ["out"])["out"], "out")


def _random_rois(rng: np.random.Generator, n: int, height: int, width: int,
                 batch: int = 1) -> np.ndarray:
    """(n, 5) rois in image coordinates, some partly or wholly outside the image, some at
    half-pixel feature positions."""
    xs = rng.uniform(-0.3 * width, 1.3 * width, (n, 2))
    ys = rng.uniform(-0.3 * height, 1.3 * height, (n, 2))
    xs[: n // 4] = np.round(xs[: n // 4] / 8) * 8
    rois = np.stack([rng.integers(0, batch, n), xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1)
    rois[0] = [0, 3, 5, 3, 5]                          # one-pixel roi
    rois[1] = [0, width + 50, 10, width + 90, 40]      # wholly outside
    return rois.astype(np.float32)


def test_roi_pooling_matches_caffe(caffe, tmp_path):
    text = _input("feat", (2, 4, 9, 11)) + _input("rois", (30, 5)) + """
layer { name: "roi" type: "ROIPooling" bottom: "feat" bottom: "rois" top: "out"
  roi_pooling_param { pooled_h: 6 pooled_w: 7 spatial_scale: 0.0625 } }"""
    rng = np.random.default_rng(2)
    net, weights, _ = _build(caffe, tmp_path, text, rng)
    model = convert(_layers(text), weights,
                    {"feat": (2, 4, "h", "w"), "rois": ("num_rois", 5)}, ["out"], "roi")
    session = _session(model)
    for n, (h, w) in [(30, (9, 11)), (7, (14, 6))]:
        feeds = {"feat": rng.standard_normal((2, 4, h, w)).astype(np.float32),
                 "rois": _random_rois(rng, n, 16 * h, 16 * w, batch=2)}
        want = _caffe_forward(net, feeds, ["out"])["out"]
        assert (want == 0).any(), "the rois should give empty bins"
        _assert_close(_onnx_forward(session, feeds, ["out"])["out"], want, f"{n} rois")


# ---- the project's nets --------------------------------------------------------------------

def _split_at_proposal(path: Path) -> tuple[list, list]:
    """The TEST layers before and after the Python layer 'proposal' (Input layers dropped)."""
    layers = caffe_files.test_phase_layers(read_prototxt(path))
    names = [layer.name for layer in layers]
    cut = names.index("proposal")
    assert layers[cut].type == "Python"
    before = [layer for layer in layers[:cut] if layer.type != "Input"]
    return before, layers[cut + 1:]


def _net_text(inputs: dict[str, tuple[int, ...]], layers) -> str:
    net = caffe_pb2.NetParameter(name="cut")
    net.layer.extend(layers)
    return "".join(_input(n, s) for n, s in inputs.items()) + text_format.MessageToString(net)


NETS = [("squeezenet", SQUEEZENET, "fire9/concat", 512), ("zf", ZF, "conv5", 256)]


@pytest.mark.parametrize("path,feature,channels", [n[1:] for n in NETS],
                         ids=[n[0] for n in NETS])
def test_backbone_matches_caffe(caffe, tmp_path, path, feature, channels):
    backbone, head = _split_at_proposal(path)
    assert head[0].type == "ROIPooling" and head[0].bottom[0] == feature
    tops = {t for layer in backbone for t in layer.top}
    assert set(RPN_OUTPUTS) | {feature} <= tops
    rng = np.random.default_rng(3)
    text = _net_text({"data": (1, 3, 224, 320)}, backbone)
    net, weights, _ = _build(caffe, tmp_path, text, rng)
    outputs = [feature, *RPN_OUTPUTS]
    model = convert(backbone, weights, {"data": (1, 3, "height", "width")}, outputs,
                    "backbone")
    out = {o.name: o for o in model.graph.output}
    dims = out[feature].type.tensor_type.shape.dim
    assert dims[1].dim_value == channels
    x = rng.standard_normal((1, 3, 224, 320)).astype(np.float32)
    want = _caffe_forward(net, {"data": x}, outputs)
    got = _onnx_forward(_session(model), {"data": x}, outputs)
    for o in outputs:
        assert np.std(want[o]) > 1e-3, f"{o} is trivial"
        _assert_close(got[o], want[o], o)


@pytest.mark.parametrize("path,channels", [(n[1], n[3]) for n in NETS],
                         ids=[n[0] for n in NETS])
def test_head_matches_caffe(caffe, tmp_path, path, channels):
    _, head = _split_at_proposal(path)
    feature, rois = head[0].bottom
    rng = np.random.default_rng(4)
    h, w = 14, 20
    text = _net_text({feature: (1, channels, h, w), rois: (5, 5)}, head)
    net, weights, _ = _build(caffe, tmp_path, text, rng)
    outputs = ["cls_prob", "bbox_pred"]
    model = convert(head, weights, {feature: (1, channels, "feature_height", "feature_width"),
                                    rois: ("num_rois", 5)}, outputs, "head")
    session = _session(model)
    x = np.abs(rng.standard_normal((1, channels, h, w))).astype(np.float32)
    for n in (5, 17):
        feeds = {feature: x, rois: _random_rois(rng, n, 16 * h, 16 * w)}
        want = _caffe_forward(net, feeds, outputs)
        got = _onnx_forward(session, feeds, outputs)
        for o in outputs:
            assert got[o].shape[0] == n
            _assert_close(got[o], want[o], f"{o} with {n} rois")


# ---- errors --------------------------------------------------------------------------------

def test_unsupported_layer_type_names_the_layer():
    layers = _layers("""
layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"
  convolution_param { num_output: 2 kernel_size: 2 } }""")
    with pytest.raises(UnsupportedLayer, match=r"layer 'up' \(type Deconvolution\).*"
                                               r"supported types: .*Convolution"):
        convert(layers, {"up": [np.zeros((3, 2, 2, 2), np.float32)]},
                {"data": (1, 3, 4, 4)}, ["up"], "bad")


def test_python_layer_is_unsupported():
    layers = caffe_files.test_phase_layers(read_prototxt(ZF))
    proposal = [layer for layer in layers if layer.name == "proposal"]
    with pytest.raises(UnsupportedLayer, match="'proposal' \\(type Python\\)"):
        convert(proposal, {}, {"rpn_cls_prob_reshape": (1, 18, "h", "w"),
                               "rpn_bbox_pred": (1, 36, "h", "w"), "im_info": (1, 3)},
                ["rois"], "proposal")


def test_missing_weights_name_the_layer():
    layers = _layers('layer { name: "conv1" type: "Convolution" bottom: "data" top: "c" '
                     'convolution_param { num_output: 4 kernel_size: 3 } }')
    with pytest.raises(ValueError, match="the model has no weights for layer 'conv1'"):
        convert(layers, {}, {"data": (1, 3, 8, 8)}, ["c"], "x")
    with pytest.raises(ValueError, match=r"layer 'conv1': the model has 1 blob\(s\) but the "
                                         r"net needs 2"):
        convert(layers, {"conv1": [np.zeros((4, 3, 3, 3), np.float32)]},
                {"data": (1, 3, 8, 8)}, ["c"], "x")


def test_weight_shape_mismatches_are_reported():
    layers = _layers('layer { name: "conv1" type: "Convolution" bottom: "data" top: "c" '
                     'convolution_param { num_output: 4 kernel_size: 3 } }')
    bias = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"layer 'conv1': the model's weight is \(4, 3, 5, 5\) "
                                         r"but the net needs \(4, \?, 3, 3\)"):
        convert(layers, {"conv1": [np.zeros((4, 3, 5, 5), np.float32), bias]},
                {"data": (1, 3, 8, 8)}, ["c"], "x")
    with pytest.raises(ValueError, match=r"layer 'conv1': the model's weight is \(4, 2, 3, 3\) "
                                         r"but the net needs \(4, 3, 3, 3\)"):
        convert(layers, {"conv1": [np.zeros((4, 2, 3, 3), np.float32), bias]},
                {"data": (1, 3, "h", "w")}, ["c"], "x")
    # the channels of a blob that an in-place layer rewrote and that is a graph output
    chain = _layers("""
layer { name: "conv1" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "c" top: "c" }
layer { name: "conv2" type: "Convolution" bottom: "c" top: "d"
  convolution_param { num_output: 2 kernel_size: 1 bias_term: false } }""")
    with pytest.raises(ValueError, match=r"layer 'conv2': the model's weight is \(2, 3, 1, 1\) "
                                         r"but the net needs \(2, 4, 1, 1\)"):
        convert(chain, {"conv1": [np.zeros((4, 3, 3, 3), np.float32), bias],
                        "conv2": [np.zeros((2, 3, 1, 1), np.float32)]},
                {"data": (1, 3, "h", "w")}, ["c", "d"], "x")
    ip = _layers('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                 'inner_product_param { num_output: 6 } }')
    with pytest.raises(ValueError, match=r"layer 'fc': the model's weight is \(5, 48\) but "
                                         r"the net needs \(6, \?\)"):
        convert(ip, {"fc": [np.zeros((5, 48), np.float32), np.zeros(6, np.float32)]},
                {"data": (2, 3, 4, 4)}, ["fc"], "x")
    with pytest.raises(ValueError, match=r"layer 'fc': the model's weight is \(6, 40\) but "
                                         r"the net needs \(6, 48\)"):
        convert(ip, {"fc": [np.zeros((6, 40), np.float32), np.zeros(6, np.float32)]},
                {"data": (2, 3, 4, 4)}, ["fc"], "x")


def test_reshape_with_an_axis_is_unsupported():
    layers = _layers('layer { name: "rs" type: "Reshape" bottom: "data" top: "r" '
                     'reshape_param { axis: 1 shape { dim: -1 } } }')
    with pytest.raises(UnsupportedLayer, match="layer 'rs' \\(type Reshape\\).*axis 1"):
        convert(layers, {}, {"data": (1, 3, 4, 4)}, ["r"], "x")


def test_pooling_that_onnx_rounds_differently_is_refused():
    layers = _layers(_pool("MAX", 1, 2, 0))
    with pytest.raises(UnsupportedLayer, match="layer 'pool'.*wholly outside the input"):
        convert(layers, {}, {"data": (1, 3, "h", "w")}, ["out"], "x")


def test_unknown_blobs_and_outputs_are_errors():
    layers = _layers('layer { name: "r" type: "ReLU" bottom: "nothing" top: "r" }')
    with pytest.raises(ValueError, match="layer 'r' reads blob 'nothing'"):
        convert(layers, {}, {"data": (1, 3)}, ["r"], "x")
    with pytest.raises(ValueError, match="no layer produces the requested output 'zzz'"):
        convert([], {}, {"data": (1, 3)}, ["zzz"], "x")


def test_truncated_empty_and_foreign_caffemodels(caffe, tmp_path):
    text = _input("data", (1, 3, 8, 8)) + CONV
    _, weights, model = _build(caffe, tmp_path, text, np.random.default_rng(5))
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(model.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"truncated\.caffemodel: not a caffemodel \(truncated"):
        read_caffemodel(truncated)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.caffemodel: not a caffemodel"):
        read_caffemodel(empty)
    foreign = tmp_path / "net.prototxt.caffemodel"
    foreign.write_text(text)
    with pytest.raises(ValueError, match="net.prototxt.caffemodel: not a caffemodel"):
        read_caffemodel(foreign)
    with pytest.raises(FileNotFoundError):
        read_caffemodel(tmp_path / "missing.caffemodel")


# ---- caffe_files ---------------------------------------------------------------------------

def test_read_caffemodel_shapes_legacy_and_v1(caffe, tmp_path):
    text = _input("data", (1, 4, 8, 8)) + CONV
    net, weights, _ = _build(caffe, tmp_path, text, np.random.default_rng(6))
    assert set(weights) == {"c1", "c2", "c3"}
    assert [w.shape for w in weights["c1"]] == [(8, 4, 3, 3), (8,)]
    assert len(weights["c2"]) == 1 and weights["c2"][0].dtype == np.float32
    np.testing.assert_array_equal(weights["c3"][0], net.params["c3"][0].data)

    legacy = caffe_pb2.NetParameter()
    v1 = legacy.layers.add(name="fc", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    w = v1.blobs.add(num=1, channels=1, height=2, width=3)
    w.data.extend([1, 2, 3, 4, 5, 6])
    b = v1.blobs.add()
    b.double_data.extend([0.5, 1.5])
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(legacy.SerializeToString())
    got = read_caffemodel(path)
    assert got["fc"][0].shape == (1, 1, 2, 3) and got["fc"][1].tolist() == [0.5, 1.5]
    # the converter squeezes the legacy (1, 1, N, K) weight of an InnerProduct
    ip = _layers('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "y" '
                 'inner_product_param { num_output: 2 } }')
    model = convert(ip, got, {"data": ("n", 3)}, ["y"], "legacy")
    y = _session(model).run(None, {"data": np.ones((1, 3), np.float32)})[0]
    np.testing.assert_allclose(y, [[6.5, 16.5]])


def test_read_prototxt_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.prototxt"):
        read_prototxt(tmp_path / "nope.prototxt")
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nlayer {\n  name: "a"\n  typo: "ReLU"\n}\n')
    with pytest.raises(ValueError, match=r"bad\.prototxt: .*4:"):
        read_prototxt(bad)
    assert read_prototxt(ZF).name == "zf_faster_rcnn_end2end"


def test_test_phase_layers_apply_the_rules():
    net = caffe_pb2.NetParameter()
    text_format.Merge("""
layer { name: "train_only" type: "ReLU" include { phase: TRAIN } }
layer { name: "test_only" type: "ReLU" include { phase: TEST } }
layer { name: "both" type: "ReLU" }
layer { name: "not_test" type: "ReLU" exclude { phase: TEST } }
layer { name: "not_train" type: "ReLU" exclude { phase: TRAIN } }
layer { name: "either" type: "ReLU" include { phase: TRAIN } include { phase: TEST } }
layer { name: "staged" type: "ReLU" include { phase: TEST stage: "deploy" } }
""", net)
    assert [layer.name for layer in caffe_files.test_phase_layers(net)] == \
        ["test_only", "both", "not_train", "either"]
    staged = caffe_files.test_phase_layers(net, stages=["deploy"])
    assert "staged" in [layer.name for layer in staged]


def test_net_inputs_all_declarations():
    net = caffe_pb2.NetParameter()
    text_format.Merge("""
input: "a" input_shape { dim: 1 dim: 3 dim: 5 dim: 6 }
input: "b" input_shape { dim: 7 dim: 5 }
layer { name: "c" type: "Input" top: "c" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "tr" type: "Input" top: "t" include { phase: TRAIN }
        input_param { shape { dim: 2 } } }
""", net)
    assert net_inputs(net) == {"a": (1, 3, 5, 6), "b": (7, 5), "c": (1, 3)}
    legacy = caffe_pb2.NetParameter()
    text_format.Merge('input: "data" input_dim: 1 input_dim: 3 input_dim: 224 input_dim: 224',
                      legacy)
    assert net_inputs(legacy) == {"data": (1, 3, 224, 224)}
    assert net_inputs(read_prototxt(SQUEEZENET)) == {"data": (1, 3, 600, 1000),
                                                     "im_info": (1, 3)}
