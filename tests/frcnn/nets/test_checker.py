"""frcnn check: passes the generated nets, flags the seed's mistakes and each other check."""
from __future__ import annotations

import pytest

from frcnn.nets import checker, generate
from frcnn.nets.variants import PRESETS
from tests.conftest import ROOT
from tests.frcnn.nets.conftest import FIXTURES


def errors(report):
    return [str(f) for f in report.errors]


def one_error(report, *words):
    hits = [e for e in errors(report) if all(w in e for w in words)]
    assert hits, f"no error with {words} in:\n{report.format()}"
    return hits[0]


@pytest.fixture(scope="module")
def texts():
    return {name: generate.render(v, f"prototxts/{name}") for name, v in PRESETS.items()}


@pytest.mark.parametrize("which", ["train.prototxt", "test.prototxt"])
def test_generated_nets_pass(which):
    for name in PRESETS:
        path = ROOT / "prototxts" / name / which
        report = checker.check_file(path, imports=False)
        assert report.ok, report.format()
        assert report.findings == [], report.format()
        assert report.phase == ("TRAIN" if which == "train.prototxt" else "TEST")
        assert report.num_params > 0 and not report.uncounted


def test_parameter_counts():
    counts = {name: checker.check_file(ROOT / "prototxts" / name / "test.prototxt",
                                       imports=False).num_params for name in PRESETS}
    # SqueezeNet v1.1 without its classifier (722,496) + RPN (9 anchors) + conv1_last +
    # cls_score/bbox_pred on 1000 x 7 x 7 inputs (K = 4)
    assert counts["squeezenet/faster_rcnn_end2end"] == \
        722_496 + (512 * 9 * 256 + 256) + (256 * 18 + 18) + (256 * 36 + 36) \
        + (512 * 1000 + 1000) + (49_000 * 4 + 4) + (49_000 * 16 + 16)
    assert counts["squeezenet/faster_rcnn_end2end_ohem"] == \
        counts["squeezenet/faster_rcnn_end2end"]
    assert counts["squeezenet/faster_rcnn_end2end_ohem_seed70"] == \
        counts["squeezenet/faster_rcnn_end2end"] + 257 * (140 - 18) + 257 * (280 - 36)
    assert counts["zf/faster_rcnn_end2end"] > 15 * counts["squeezenet/faster_rcnn_end2end"]
    # train and test nets count the same parameters (shared OHEM blobs once)
    for name in PRESETS:
        train = checker.check_file(ROOT / "prototxts" / name / "train.prototxt", imports=False)
        assert train.num_params == counts[name]


def test_seed_plain_snippet_cls_score_5_with_4_classes():
    report = checker.check_file(FIXTURES / "seed_plain_cls_score.prototxt", imports=False)
    assert not report.ok
    one_error(report, "layer 'cls_score' (InnerProduct)", "num_output 5", "num_classes 4")
    one_error(report, "layer 'bbox_pred' (InnerProduct)", "num_output 20", "16")
    one_error(report, "layer 'loss_bbox' (SmoothL1Loss)", "'bbox_pred' (?, 20)",
              "'bbox_targets' (?, 16)")
    assert len(report.errors) == 3, report.format()


def test_seed_ohem_snippet_6x6_read_only_pool_beside_7x7():
    report = checker.check_file(FIXTURES / "seed_ohem_pool_sizes.prototxt", imports=False)
    text = one_error(report, "layer 'cls_score' (InnerProduct)", "'cls_score_w'",
                     "'cls_score_readonly'", "(4, 49000)", "(4, 36000)")
    assert "6x6 by 'roi_pool5_readonly'" in text and "7x7 by 'roi_pool5'" in text
    one_error(report, "layer 'bbox_pred' (InnerProduct)", "'bbox_pred_w'", "(16, 49000)")
    # conv1_last is 1 x 1: its shared weights fit both branches
    assert not [e for e in errors(report) if "conv1_last" in e]
    assert len(report.errors) == 2, report.format()


def test_seed_70_anchors_without_anchor_param_str():
    report = checker.check_file(FIXTURES / "seed_anchors70.prototxt", imports=False)
    one_error(report, "layer 'rpn_cls_score' (Convolution)", "num_output 140", "9 anchors")
    one_error(report, "layer 'rpn_bbox_pred' (Convolution)", "num_output 280", "4A = 36")
    one_error(report, "layer 'rpn_cls_prob_reshape' (Reshape)", "[0, 140, -1, 0]", "2A = 18")


def mutate(texts, name, which, old, new, count=1, layer=None):
    """The generated text with old replaced by new (in the given layer's block only)."""
    text = texts[name][which]
    start = text.index(f'  name: "{layer}"\n') if layer else 0
    end = text.find("\nlayer {", start) if layer else len(text)
    block = text[start:end]
    assert block.count(old) >= count, old
    return text[:start] + block.replace(old, new, count) + text[end:]


def check(text, **kwargs):
    kwargs.setdefault("imports", False)
    return checker.check_text(text, **kwargs)


def test_spatial_scale_against_the_feature_stride(texts):
    text = mutate(texts, "squeezenet/faster_rcnn_end2end", "train.prototxt",
                  "spatial_scale: 0.0625", "spatial_scale: 0.125", layer="roi_pool5")
    one_error(check(text), "layer 'roi_pool5' (ROIPooling)", "0.125 = 1/8", "stride 16",
              "0.0625")


def test_feat_stride_against_the_rpn_map(texts):
    text = mutate(texts, "zf/faster_rcnn_end2end", "test.prototxt", "'feat_stride': 16",
                  "'feat_stride': 8")
    one_error(check(text), "layer 'proposal' (Python)", "'feat_stride': 8", "stride 16")


def test_unknown_param_str_key(texts):
    text = mutate(texts, "squeezenet/faster_rcnn_end2end", "train.prototxt",
                  "'feat_stride': 16\\n", "'feat_stride': 16\\n'nms_thresh': 0.7\\n")
    one_error(check(text), "layer 'rpn-data' (Python)", "unknown param_str key", "nms_thresh")


def test_missing_required_key_and_bad_value(texts):
    text = mutate(texts, "squeezenet/faster_rcnn_end2end", "train.prototxt",
                  "param_str: \"'num_classes': 4\"", "param_str: \"\"", count=2)
    one_error(check(text), "layer 'roi-data' (Python)", "needs 'num_classes'")
    text = mutate(texts, "squeezenet/faster_rcnn_end2end", "test.prototxt",
                  "'scales': [8, 16, 32]", "'scales': 'big'")
    one_error(check(text), "layer 'proposal' (Python)", "'scales'")


def test_num_classes_disagreement_between_layers(texts):
    text = mutate(texts, "squeezenet/faster_rcnn_end2end_ohem", "train.prototxt",
                  "layer: \"OHEMDataLayer\"\n    param_str: \"'num_classes': 4\"",
                  "layer: \"OHEMDataLayer\"\n    param_str: \"'num_classes': 21\"")
    one_error(check(text), "layer 'hard_roi_mining' (Python)", "num_classes 21",
              "4 (input-data, roi-data)")


def test_test_net_bbox_pred_against_cls_score(texts):
    text = mutate(texts, "squeezenet/faster_rcnn_end2end", "test.prototxt",
                  "num_output: 16", "num_output: 20", layer="bbox_pred")
    one_error(check(text), "layer 'bbox_pred' (InnerProduct)", "num_output 20",
              "'cls_score' scores 4 classes")


def test_softmax_reshape_must_be_two(texts):
    text = mutate(texts, "squeezenet/faster_rcnn_end2end", "test.prototxt",
                  "dim: 2\n", "dim: 3\n", layer="rpn_cls_score_reshape")
    one_error(check(text), "layer 'rpn_cls_score_reshape' (Reshape)", "dim 1 must be 2")


def test_shared_lr_mult_mismatch(texts):
    text = mutate(texts, "squeezenet/faster_rcnn_end2end_ohem", "train.prototxt",
                  "lr_mult: 2.0", "lr_mult: 1.0", layer="cls_score")
    one_error(check(text), "layer 'cls_score' (InnerProduct)", "'cls_score_b'",
              "lr_mult 1 differs from 2")


def test_undefined_bottom(texts):
    text = mutate(texts, "squeezenet/faster_rcnn_end2end", "test.prototxt",
                  "bottom: \"rois\"", "bottom: \"rpn_rois\"", layer="roi_pool5")
    one_error(check(text), "layer 'roi_pool5' (ROIPooling)", "'rpn_rois' is not produced")


PY_NET = """
name: "imports"
layer {{ name: "data" type: "Python" top: "data" top: "rois" top: "targets"
  top: "inside_weights" top: "outside_weights"
  python_param {{ module: "{module}" layer: "{layer}" }} }}
"""


def test_python_layer_imports():
    ok = check(PY_NET.format(module="frcnn.smoke", layer="SmokeDataLayer"), imports=True)
    assert ok.ok, ok.format()
    report = check(PY_NET.format(module="frcnn.smoke", layer="NoSuchLayer"), imports=True)
    one_error(report, "layer 'data' (Python)", "has no layer class 'NoSuchLayer'")
    report = check(PY_NET.format(module="no_such_module_xyz", layer="L"), imports=True)
    one_error(report, "layer 'data' (Python)", "'no_such_module_xyz' does not import",
              "ModuleNotFoundError")
    assert check(PY_NET.format(module="no_such_module_xyz", layer="L")).ok  # imports off
    # the layer's own setup runs: one top where SmokeDataLayer makes five fails as in Caffe
    one_top = PY_NET.format(module="frcnn.smoke", layer="SmokeDataLayer").replace(
        ' top: "rois" top: "targets"\n  top: "inside_weights" top: "outside_weights"', "")
    one_error(check(one_top, imports=True), "layer 'data' (Python)", "needs 5 tops")
    assert check(one_top, imports=True, setup=False).ok


def test_report_format_and_invalid_text():
    report = checker.check_file(FIXTURES / "seed_plain_cls_score.prototxt", imports=False)
    text = report.format(verbose=True)
    assert "parameters: 3,325,535" in text and "MB as float32" in text
    assert "cls_score: [5, 49000] [5] = 245,005" in text
    assert text.rstrip().endswith("3 problems found")
    bad = check("layer { name: 'x' type: 'ReLU' nonsense: 1 }")
    assert not bad.ok and "not a valid NetParameter" in str(bad.errors[0])


def test_include_rules_follow_the_phase():
    text = """
    layer { name: "data" type: "Input" top: "data"
      input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
    layer { name: "a" type: "Convolution" bottom: "data" top: "x" include { phase: TRAIN }
      convolution_param { num_output: 2 kernel_size: 1 } }
    layer { name: "b" type: "Convolution" bottom: "data" top: "x" include { phase: TEST }
      convolution_param { num_output: 5 kernel_size: 1 } }
    """
    assert check(text, phase="TRAIN").num_params == 2 * 3 + 2
    assert check(text, phase="TEST").num_params == 5 * 3 + 5


def test_legacy_inputs_of_py_faster_rcnn_test_nets():
    text = """
    name: "legacy"
    input: "data"
    input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }
    input: "im_info"
    input_shape { dim: 1 dim: 3 }
    layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
      convolution_param { num_output: 8 kernel_size: 7 pad: 3 stride: 2 } }
    layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
      pooling_param { kernel_size: 3 stride: 2 pad: 1 pool: MAX } }
    """
    report = check(text)
    assert report.ok and report.phase == "TEST"
    assert report.num_params == 8 * 3 * 49 + 8
    from google.protobuf import text_format

    from caffe.proto import caffe_pb2

    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    assert checker.infer_shapes(net)["pool1"] == (1, 8, 57, 57)
