"""Every generated net builds as a real caffe.Net and runs: test nets forward on a small
image, train nets forward and backward.  The detection Python layers are the stand-ins of
tests.frcnn.nets.fakes (checked against the real layers' param_str table and shapes), so
these tests do not depend on the state of the real layers."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.nets import checker, detection
from frcnn.nets.variants import PRESETS
from tests.frcnn.nets import fakes
from tests.frcnn.nets.conftest import SMALL, feed_test_inputs, small


def unique_param_count(net) -> int:
    sizes = {}
    for blobs in net.params.values():
        for blob in blobs:
            sizes[blob.data.__array_interface__["data"][0]] = blob.data.size
    return sum(sizes.values())


def assert_static_shapes_match(net, net_param):
    static = checker.infer_shapes(net_param, input_size=(SMALL["height"], SMALL["width"]))
    compared = 0
    for name, blob in net.blobs.items():
        shape = static.get(name)
        if shape is None:
            continue
        assert len(shape) == blob.data.ndim or (shape == () and blob.data.size == 1), name
        for s, d in zip(shape, blob.data.shape):
            assert s is None or s == d, (name, shape, blob.data.shape)
        compared += 1
    assert compared > 20


def test_test_net_runs(preset, build_net):
    variant = small(preset)
    net_param = detection.build_test(variant)
    net = build_net(net_param, "TEST")
    feed_test_inputs(net)
    out = net.forward()
    r, k = fakes.SETTINGS["num_rois"], variant.num_classes
    assert set(out) == {"cls_prob", "bbox_pred"}
    assert out["cls_prob"].shape == (r, k) and out["bbox_pred"].shape == (r, 4 * k)
    assert net.blobs["rois"].data.shape == (r, 5)
    np.testing.assert_allclose(out["cls_prob"].sum(axis=1), 1, rtol=1e-5)
    assert np.isfinite(out["bbox_pred"]).all()
    assert_static_shapes_match(net, net_param)
    assert unique_param_count(net) == checker.check_net(net_param, imports=False).num_params


def test_train_net_runs_forward_and_backward(preset, build_net):
    variant = small(preset)
    net_param = detection.build_train(variant)
    net = build_net(net_param, "TRAIN")
    out = net.forward()
    assert set(out) == {"rpn_cls_loss", "rpn_loss_bbox", "cls_loss", "bbox_loss"}
    assert all(np.isfinite(v) and v > 0 for v in (float(np.asarray(x)) for x in out.values()))
    net.backward()
    for name in ("conv1", "rpn_conv/3x3", "rpn_cls_score", "cls_score", "bbox_pred"):
        assert np.abs(net.params[name][0].diff).sum() > 0, name
        assert np.isfinite(net.params[name][0].diff).all(), name
    assert_static_shapes_match(net, net_param)
    assert unique_param_count(net) == checker.check_net(net_param, imports=False).num_params


def test_ohem_read_only_branch_shares_weights_and_passes_no_gradient(build_net):
    net = build_net(detection.build_train(small(PRESETS["squeezenet/faster_rcnn_end2end_ohem"])),
                    "TRAIN")
    for name in ("conv1_last", "cls_score", "bbox_pred"):
        for i in (0, 1):
            trained, read_only = net.params[name][i], net.params[f"{name}_readonly"][i]
            assert trained.data.shape == read_only.data.shape
            before = read_only.data.flat[0]
            trained.data.flat[0] = before + 1.0
            assert read_only.data.flat[0] == before + 1.0, f"{name} blob {i} is not shared"
            trained.data.flat[0] = before
    net.forward()
    assert net.blobs["rois_hard"].data.shape[0] == fakes.SETTINGS["num_hard"]
    assert net.blobs["roi_pool5_readonly"].data.shape[0] == fakes.SETTINGS["num_rois"]
    net.backward()
    for blob in ("roi_pool5_readonly", "conv1_last_readonly", "cls_score_readonly",
                 "bbox_pred_readonly", "cls_prob_readonly"):
        assert not net.blobs[blob].diff.any(), f"{blob} received a gradient"
    assert np.abs(net.blobs["roi_pool5"].diff).sum() > 0
    assert np.abs(net.params["cls_score"][0].diff).sum() > 0


def test_seed70_preset_blobs(build_net):
    variant = small(PRESETS["squeezenet/faster_rcnn_end2end_ohem_seed70"])
    net = build_net(detection.build_test(variant), "TEST")
    assert net.blobs["rpn_cls_score"].data.shape[1] == 140
    assert net.blobs["rpn_bbox_pred"].data.shape[1] == 280
    assert net.blobs["rpn_cls_prob_reshape"].data.shape[1] == 140


@pytest.mark.parametrize("name, feature, shape", [
    ("squeezenet/faster_rcnn_end2end", "fire9/concat", (1, 512, 37, 62)),
    ("zf/faster_rcnn_end2end", "conv5", (1, 256, 39, 64)),
])
def test_feature_stride_is_16_at_600x1000(name, feature, shape, build_net):
    # 600 / 16 = 37.5 and 1000 / 16 = 62.5: Caffe's ceil-mode pooling and the convs' padding
    # give these sizes; the checker infers the same statically
    net_param = detection.build_test(PRESETS[name])
    net = build_net(net_param, "TEST")
    assert net.blobs["data"].data.shape == (1, 3, 600, 1000)
    assert net.blobs[feature].data.shape == shape
    assert checker.infer_shapes(net_param)[feature] == shape


@pytest.mark.filterwarnings("ignore:frcnn.nms")  # no GPU NMS here
def test_nets_run_with_the_real_rpn_layers(caffe, tmp_path):
    """The generated nets with the project's own rpn.* layers (only the data and OHEM layers,
    which arrive with other issues, are stand-ins)."""
    from frcnn.nets import layers

    fakes.SETTINGS.update(SMALL)
    variant = small(PRESETS["squeezenet/faster_rcnn_end2end_ohem_seed70"])
    train = detection.build_train(variant)
    for lay in train.layer:
        key = f"{lay.python_param.module}.{lay.python_param.layer}"
        if key in ("roi_data_layer.layer.RoIDataLayer", "roi_data_layer.layer.OHEMDataLayer"):
            lay.python_param.module, lay.python_param.layer = fakes.__name__, fakes.FAKES[key]
    (tmp_path / "train.prototxt").write_text(layers.to_text(train))
    (tmp_path / "test.prototxt").write_text(layers.to_text(detection.build_test(variant)))
    net = caffe.Net(str(tmp_path / "train.prototxt"), caffe.TRAIN)
    out = net.forward()
    net.backward()
    assert all(np.isfinite(float(np.asarray(v))) for v in out.values())
    assert net.blobs["rois"].data.shape[0] >= net.blobs["rois_hard"].data.shape[0] > 0
    net = caffe.Net(str(tmp_path / "test.prototxt"), caffe.TEST)
    feed_test_inputs(net)
    out = net.forward()
    r = net.blobs["rois"].data.shape[0]
    assert r > 0 and out["cls_prob"].shape == (r, 4) and out["bbox_pred"].shape == (r, 16)
