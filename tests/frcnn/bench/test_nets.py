"""Benchmark nets: the data layer swap, the stage split, random weights, the cfg."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.bench import nets as bnets
from frcnn.nets.variants import preset

SQ = preset("squeezenet/faster_rcnn_end2end")
SQ_OHEM = preset("squeezenet/faster_rcnn_end2end_ohem")
ZF = preset("zf/faster_rcnn_end2end")
SHAPES = {"data": (1, 3, 96, 160), "im_info": (1, 3), "gt_boxes": (3, 5)}


def test_data_layer_becomes_an_input_layer(caffe):
    param = bnets.with_input_layers(bnets.variant_net_param(SQ, "train"), SHAPES)
    first = param.layer[0]
    assert first.type == "Input" and list(first.top) == ["data", "im_info", "gt_boxes"]
    assert [list(s.dim) for s in first.input_param.shape] == [[1, 3, 96, 160], [1, 3], [3, 5]]
    assert not any(layer.python_param.layer == "RoIDataLayer" for layer in param.layer)


def test_data_layer_swap_errors(caffe):
    with pytest.raises(ValueError, match="gt_boxes"):
        bnets.with_input_layers(bnets.variant_net_param(SQ, "train"),
                                {"data": (1, 3, 8, 8), "im_info": (1, 3)})
    with pytest.raises(ValueError, match="no Python RoIDataLayer"):
        bnets.with_input_layers(bnets.variant_net_param(SQ, "test"), SHAPES)


def test_ohem_module_fallback(caffe):
    param = bnets.variant_net_param(SQ_OHEM, "train")
    mining = next(layer for layer in param.layer if layer.name == "hard_roi_mining")
    mining.python_param.module = "rpn.proposal_layer"  # a module without the class
    notes = bnets.fix_ohem_module(param)
    assert mining.python_param.module == bnets.OHEM_FALLBACK_MODULE
    assert len(notes) == 1 and "hard_roi_mining" in notes[0]
    assert bnets.fix_ohem_module(param) == []  # the fallback module has it


@pytest.mark.parametrize("variant, feature, roi_first", [
    (SQ, "fire9/concat", "roi_pool5"), (ZF, "conv5", "roi_pool_conv5")])
def test_stage_split_of_test_nets(caffe, cfg, variant, feature, roi_first):
    net = bnets.load_net(bnets.variant_net_param(variant, "test"), "TEST")
    lay = bnets.layout(net)
    assert lay.feature_blob == feature
    assert [lay.names[i] for i in lay.indices("input")] == ["data", "im_info"]
    assert lay.names[lay.indices("backbone")[0]] == "conv1"
    assert lay.names[lay.indices("rpn")[0]] == "rpn_conv/3x3"
    assert [lay.names[i] for i in lay.indices("proposal")] == ["proposal"]
    head = [lay.names[i] for i in lay.indices("roi_head")]
    assert head[0] == roi_first and {"cls_score", "bbox_pred", "cls_prob"} <= set(head)
    assert [lay.names[i] for i in lay.python_layers] == ["proposal"]


def test_layout_needs_the_rpn(caffe):
    from tests.frcnn.bench.test_arithmetic import SMALL_NET

    net = bnets.load_net(bnets.net_param_from_text(SMALL_NET), "TEST")
    with pytest.raises(ValueError, match="rpn_conv"):
        bnets.layout(net)


def test_variant_cfg_is_restored(cfg):
    before = cfg.TRAIN.BATCH_SIZE
    with bnets.variant_cfg(SQ_OHEM, {"TEST": {"RPN_POST_NMS_TOP_N": 7}}) as c:
        assert c.TRAIN.BATCH_SIZE == -1 and c.TEST.RPN_POST_NMS_TOP_N == 7
    assert cfg.TRAIN.BATCH_SIZE == before and cfg.TEST.RPN_POST_NMS_TOP_N == 300
    with pytest.raises(RuntimeError):
        with bnets.variant_cfg(SQ_OHEM):
            raise RuntimeError("boom")
    assert cfg.TRAIN.BATCH_SIZE == before


def test_random_weights_are_seeded_and_scaled(caffe, cfg):
    from tests.frcnn.bench.test_arithmetic import SMALL_NET

    a = bnets.load_net(bnets.net_param_from_text(SMALL_NET), "TEST")
    b = bnets.load_net(bnets.net_param_from_text(SMALL_NET), "TEST")
    bnets.randomize(a, seed=1)
    bnets.randomize(b, seed=1)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name][0].data, b.params[name][0].data)
        assert np.all(a.params[name][1].data == 0)
    # He normal: std sqrt(2 / fan_in), fan_in of 'fc' = 6 * 4 * 4
    assert a.params["fc"][0].data.std() == pytest.approx(np.sqrt(2 / 96), rel=0.3)
    # the layer reading the image is scaled down by INPUT_SCALE ('x' is not 'data' here)
    with bnets.variant_cfg(SQ):
        net = bnets.load_net(bnets.variant_net_param(SQ, "test"), "TEST")
    bnets.randomize(net, seed=0)
    conv1 = net.params["conv1"][0].data
    assert conv1.std() == pytest.approx(np.sqrt(2 / conv1[0].size) / bnets.INPUT_SCALE, rel=0.2)
    assert net.params["bbox_pred"][0].data.std() == pytest.approx(0.001, rel=0.2)


def test_shared_blobs_counted_once(caffe, cfg):
    with bnets.variant_cfg(SQ_OHEM):
        param = bnets.with_input_layers(bnets.variant_net_param(SQ_OHEM, "train"), SHAPES)
        net = bnets.load_net(param, "TRAIN")
    bnets.randomize(net, seed=0)
    np.testing.assert_array_equal(net.params["cls_score"][0].data,
                                  net.params["cls_score_readonly"][0].data)
    total = sum(b.size for b in bnets.unique_param_blobs(net))
    with bnets.variant_cfg(SQ_OHEM):
        test_net = bnets.load_net(bnets.variant_net_param(SQ_OHEM, "test"), "TEST")
    assert total == sum(b.size for b in bnets.unique_param_blobs(test_net)) == 3_409_298


def test_example_gt_boxes_fit_the_image():
    gt = bnets.example_gt_boxes(96, 160, num_classes=4)
    assert gt.shape == (3, 5)
    assert np.all(gt[:, 2] > gt[:, 0]) and np.all(gt[:, 3] > gt[:, 1])
    assert gt[:, 2].max() <= 159 and gt[:, 3].max() <= 95
    assert set(gt[:, 4]) <= {1, 2, 3}
