"""Generated files: committed copies match the generator; the nets say what the issue says."""
from __future__ import annotations

import pytest
import yaml

from frcnn.config import cfg_from_file, default_config
from frcnn.layer_params import parse_param_str
from frcnn.nets import detection, generate, squeezenet
from frcnn.nets.variants import PRESETS
from tests.conftest import ROOT


def parse_net(text: str):
    from google.protobuf import text_format

    from caffe.proto import caffe_pb2

    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    return net


def layer(net, name):
    found = [lay for lay in net.layer if lay.name == name]
    assert len(found) == 1, name
    return found[0]


def python_params(net, name):
    lay = layer(net, name)
    key = f"{lay.python_param.module}.{lay.python_param.layer}"
    return parse_param_str(lay.python_param.param_str, key, name)


@pytest.fixture(scope="module")
def rendered():
    return {name: generate.render(v, f"prototxts/{name}") for name, v in PRESETS.items()}


def test_committed_prototxts_match_the_generator(rendered):
    committed = {p.relative_to(ROOT / "prototxts").as_posix()
                 for p in (ROOT / "prototxts").rglob("*") if p.is_file()}
    expected = {f"{name}/{f}" for name in PRESETS for f in generate.FILES}
    assert committed == expected, "prototxts/ has other files than the presets' " \
                                  "(regenerate: frcnn prototxt --all)"
    for name, files in rendered.items():
        for fname, text in files.items():
            path = ROOT / "prototxts" / name / fname
            assert path.read_text() == text, f"{path} differs from the generator; run " \
                                             f"`frcnn prototxt --all` from the repository root"


def test_write_presets_reproduces_the_tree(tmp_path):
    generate.write_presets(tmp_path, net_root="prototxts")
    for name in PRESETS:
        for fname in generate.FILES:
            assert (tmp_path / name / fname).read_bytes() == \
                (ROOT / "prototxts" / name / fname).read_bytes()


def test_seed_preset_has_70_anchors(rendered):
    files = rendered["squeezenet/faster_rcnn_end2end_ohem_seed70"]
    for which in ("train.prototxt", "test.prototxt"):
        net = parse_net(files[which])
        assert layer(net, "rpn_cls_score").convolution_param.num_output == 140
        assert layer(net, "rpn_bbox_pred").convolution_param.num_output == 280
        assert list(layer(net, "rpn_cls_prob_reshape").reshape_param.shape.dim) == \
            [0, 140, -1, 0]
        assert list(layer(net, "rpn_cls_score_reshape").reshape_param.shape.dim) == \
            [0, 2, -1, 0]
        p = python_params(net, "proposal")
        assert len(p["ratios"]) * len(p["scales"]) == 70


def test_squeezenet_trunk_has_deepscale_names(rendered):
    net = parse_net(rendered["squeezenet/faster_rcnn_end2end"]["train.prototxt"])
    expected = ["conv1", "relu_conv1", "pool1"]
    for name, *_ in squeezenet.FIRES:
        expected += [f"{name}/{part}" for part in (
            "squeeze1x1", "relu_squeeze1x1", "expand1x1", "relu_expand1x1", "expand3x3",
            "relu_expand3x3", "concat")]
        if name in squeezenet.POOL_AFTER:
            expected.append(squeezenet.POOL_AFTER[name])
    expected.append("drop9")
    names = [lay.name for lay in net.layer]
    start = names.index("conv1")
    assert names[start:start + len(expected)] == expected
    sizes = {lay.name: lay.convolution_param for lay in net.layer if lay.type == "Convolution"}
    assert (sizes["conv1"].num_output, list(sizes["conv1"].kernel_size),
            list(sizes["conv1"].stride)) == (64, [3], [2])
    for name, s, e1, e3 in squeezenet.FIRES:
        assert sizes[f"{name}/squeeze1x1"].num_output == s
        assert sizes[f"{name}/expand1x1"].num_output == e1
        assert sizes[f"{name}/expand3x3"].num_output == e3
        assert list(sizes[f"{name}/expand3x3"].pad) == [1]
    assert layer(net, "drop9").top == ["fire9/concat"]
    assert layer(net, "rpn_conv/3x3").bottom == ["fire9/concat"]
    assert layer(net, "roi_pool5").bottom[0] == "fire9/concat"


def test_trunk_dropout_follows_the_variant():
    def dropouts(variant):
        net = parse_net(generate.render(variant, "x")["train.prototxt"])
        return {lay.name: round(lay.dropout_param.dropout_ratio, 6)
                for lay in net.layer if lay.type == "Dropout"}

    sq = PRESETS["squeezenet/faster_rcnn_end2end"]
    assert dropouts(sq) == {"drop9": 0.5}
    assert dropouts(sq.replace(trunk_dropout=0.25)) == {"drop9": 0.25}
    assert dropouts(sq.replace(trunk_dropout=0.0)) == {}
    zf = PRESETS["zf/faster_rcnn_end2end"]
    assert dropouts(zf) == {"drop6": 0.5, "drop7": 0.5}
    assert dropouts(zf.replace(trunk_dropout=0.2)) == {"drop5": 0.2, "drop6": 0.5, "drop7": 0.5}
    with pytest.raises(ValueError, match=r"trunk_dropout must be in \[0, 1\), got 1.0"):
        sq.replace(trunk_dropout=1.0)


def test_trunk_filler_follows_the_variant():
    """msra replaces xavier on every trunk convolution of the train net; the RPN and head
    keep their gaussians and the test net's trunk has no fillers."""
    def fillers(variant, net_file="train.prototxt"):
        net = parse_net(generate.render(variant, "x")[net_file])
        return {lay.name: lay.convolution_param.weight_filler.type
                for lay in net.layer if lay.type == "Convolution"
                and lay.convolution_param.HasField("weight_filler")}

    sq = PRESETS["squeezenet/faster_rcnn_end2end"]
    xavier, msra = fillers(sq), fillers(sq.replace(trunk_filler="msra"))
    trunk = {name for name in xavier if name == "conv1" or name.startswith("fire")}
    assert len(trunk) == 1 + 3 * len(squeezenet.FIRES)
    assert {xavier[name] for name in trunk} == {"xavier"}
    assert {msra[name] for name in trunk} == {"msra"}
    assert {n: f for n, f in msra.items() if n not in trunk} == {
        n: f for n, f in xavier.items() if n not in trunk} != {}
    test_net = fillers(sq.replace(trunk_filler="msra"), "test.prototxt")
    assert not trunk & set(test_net) and set(test_net.values()) == {"gaussian"}
    zf = fillers(PRESETS["zf/faster_rcnn_end2end"].replace(trunk_filler="msra"))
    assert [zf[f"conv{i}"] for i in range(1, 6)] == ["msra"] * 5
    with pytest.raises(ValueError, match="trunk_filler must be one of"):
        sq.replace(trunk_filler="kaiming")


@pytest.mark.parametrize("norm,normed", [
    ("squeeze", lambda conv: conv == "conv1" or conv.endswith("/squeeze1x1")),
    ("all", lambda conv: True)])
def test_trunk_norm_puts_mvn_and_scale_after_the_chosen_convolutions(norm, normed):
    """MVN (per image and channel, variance too) then Scale with a bias, in place on the
    convolution's top, the same in the train and the test net (no phase-dependent
    statistics)."""
    sq = PRESETS["squeezenet/faster_rcnn_end2end"].replace(trunk_norm=norm)
    for net_file in ("train.prototxt", "test.prototxt"):
        net = parse_net(generate.render(sq, "x")[net_file])
        names = [lay.name for lay in net.layer]
        trunk = [n for n in names if (n == "conv1" or n.startswith("fire"))
                 and layer(net, n).type == "Convolution"]
        assert len(trunk) == 1 + 3 * len(squeezenet.FIRES)
        for conv in trunk:
            if not normed(conv):
                assert f"{conv}/mvn" not in names
                continue
            i = names.index(conv)
            mvn, scale = layer(net, f"{conv}/mvn"), layer(net, f"{conv}/scale")
            assert names[i + 1:i + 3] == [mvn.name, scale.name]
            assert list(mvn.bottom) == [conv]      # MVN has its own top (not in place)
            assert list(mvn.top) == list(scale.bottom) == list(scale.top) == [mvn.name]
            assert mvn.mvn_param.normalize_variance and not mvn.mvn_param.across_channels
            assert scale.scale_param.bias_term
    plain = parse_net(generate.render(PRESETS["squeezenet/faster_rcnn_end2end"], "x")[
        "train.prototxt"])
    assert not [lay for lay in plain.layer if lay.type in ("MVN", "Scale")]
    with pytest.raises(ValueError, match="trunk_norm must be one of"):
        sq.replace(trunk_norm="group")
    with pytest.raises(ValueError, match="for the squeezenet trunk, not zf"):
        PRESETS["zf/faster_rcnn_end2end"].replace(trunk_norm="all")


def test_zf_has_py_faster_rcnn_names(rendered):
    net = parse_net(rendered["zf/faster_rcnn_end2end"]["train.prototxt"])
    names = [lay.name for lay in net.layer]
    for name in ("conv1", "relu1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3",
                 "conv4", "conv5", "relu5", "rpn_conv/3x3", "rpn_relu/3x3", "rpn_cls_score",
                 "rpn_bbox_pred", "roi_pool_conv5", "fc6", "drop6", "fc7", "drop7",
                 "cls_score", "bbox_pred", "loss_cls", "loss_bbox"):
        assert name in names
    assert layer(net, "roi_pool_conv5").roi_pooling_param.pooled_h == 6
    assert layer(net, "fc6").inner_product_param.num_output == 4096
    assert [p.lr_mult for p in layer(net, "conv1").param] == [1.0, 2.0]


def test_rpn_and_head_follow_py_faster_rcnn(rendered):
    net = parse_net(rendered["squeezenet/faster_rcnn_end2end"]["train.prototxt"])
    rpn = layer(net, "rpn_conv/3x3")
    assert rpn.top == ["rpn/output"]
    assert (rpn.convolution_param.num_output, list(rpn.convolution_param.pad),
            rpn.convolution_param.weight_filler.std) == (256, [1], pytest.approx(0.01))
    assert [p.lr_mult for p in rpn.param] == [1.0, 2.0]
    loss = layer(net, "rpn_loss_cls")
    assert (loss.loss_param.ignore_label, list(loss.propagate_down)) == (-1, [True, False])
    assert layer(net, "rpn_loss_bbox").smooth_l1_loss_param.sigma == 3.0
    assert layer(net, "loss_bbox").smooth_l1_loss_param.sigma == 1.0
    assert layer(net, "rpn-data").bottom == ["rpn_cls_score", "gt_boxes", "im_info", "data"]
    assert layer(net, "input-data").top == ["data", "im_info", "gt_boxes"]
    pool = layer(net, "roi_pool5").roi_pooling_param
    assert (pool.pooled_h, pool.pooled_w, pool.spatial_scale) == (7, 7, 0.0625)
    head = layer(net, "conv1_last").convolution_param
    assert (head.num_output, list(head.kernel_size)) == (1000, [1])
    assert layer(net, "cls_score").inner_product_param.num_output == 4
    assert layer(net, "bbox_pred").inner_product_param.num_output == 16
    assert layer(net, "cls_score").inner_product_param.weight_filler.std == pytest.approx(0.01)
    assert layer(net, "bbox_pred").inner_product_param.weight_filler.std == \
        pytest.approx(0.001)
    assert python_params(net, "roi-data") == {"num_classes": 4}
    assert python_params(net, "rpn-data")["feat_stride"] == 16


def test_ohem_branches_share_weights_and_pool_alike(rendered):
    net = parse_net(rendered["squeezenet/faster_rcnn_end2end_ohem"]["train.prototxt"])
    ro, tr = layer(net, "roi_pool5_readonly"), layer(net, "roi_pool5")
    assert ro.roi_pooling_param == tr.roi_pooling_param
    assert ro.bottom == ["fire9/concat", "rois"] and tr.bottom == ["fire9/concat", "rois_hard"]
    for name in ("conv1_last", "cls_score", "bbox_pred"):
        names = [p.name for p in layer(net, name).param]
        assert names == [f"{name}_w", f"{name}_b"]
        assert [p.name for p in layer(net, f"{name}_readonly").param] == names
        assert list(layer(net, f"{name}_readonly").propagate_down) == [False]
    assert list(ro.propagate_down) == [False, False]
    mining = layer(net, "hard_roi_mining")
    assert (mining.python_param.module, mining.python_param.layer) == \
        ("roi_data_layer.layer", "OHEMDataLayer")
    assert list(mining.bottom) == ["cls_prob_readonly", "bbox_pred_readonly", "rois", "labels",
                                   "bbox_targets", "bbox_inside_weights",
                                   "bbox_outside_weights"]
    assert list(mining.top) == ["rois_hard", "labels_hard", "bbox_targets_hard",
                                "bbox_inside_weights_hard", "bbox_outside_weights_hard"]
    assert list(mining.propagate_down) == [False] * 7
    assert layer(net, "loss_cls").bottom == ["cls_score", "labels_hard"]
    assert layer(net, "loss_bbox").bottom[1:] == ["bbox_targets_hard",
                                                  "bbox_inside_weights_hard",
                                                  "bbox_outside_weights_hard"]


def test_test_nets_take_data_and_im_info(rendered):
    for name, files in rendered.items():
        net = parse_net(files["test.prototxt"])
        v = PRESETS[name]
        assert list(layer(net, "data").input_param.shape[0].dim) == [1, 3, v.scale, v.max_size]
        assert list(layer(net, "im_info").input_param.shape[0].dim) == [1, 3]
        assert layer(net, "proposal").top == ["rois"]
        assert layer(net, "cls_prob").bottom == ["cls_score"]
        types = {lay.type for lay in net.layer}
        assert not types & {"Dropout", "SoftmaxWithLoss", "SmoothL1Loss"}
        assert not any(p.name for lay in net.layer for p in lay.param)


def test_solver_and_config(rendered, tmp_path):
    from google.protobuf import text_format

    from caffe.proto import caffe_pb2

    files = rendered["squeezenet/faster_rcnn_end2end_ohem"]
    solver = caffe_pb2.SolverParameter()
    text_format.Merge(files["solver.prototxt"], solver)
    assert solver.train_net == "prototxts/squeezenet/faster_rcnn_end2end_ohem/train.prototxt"
    assert (solver.base_lr, solver.lr_policy, solver.gamma, solver.stepsize, solver.display,
            solver.average_loss, solver.momentum, solver.weight_decay, solver.snapshot) == \
        (pytest.approx(0.0001), "step", pytest.approx(0.1), 50000, 20, 100,
         pytest.approx(0.9), pytest.approx(0.0005), 0)
    for name, rendered_files in rendered.items():
        path = tmp_path / f"{name.replace('/', '_')}.yml"
        path.write_text(rendered_files["config.yml"])
        cfg = cfg_from_file(str(path), default_config())
        assert cfg.TRAIN.SCALES == (600,) and cfg.TEST.MAX_SIZE == 1000
        if PRESETS[name].ohem:
            assert cfg.TRAIN.BATCH_SIZE == -1
            assert (cfg.TRAIN.OHEM_BATCH_SIZE, cfg.TRAIN.OHEM_USE_NMS,
                    cfg.TRAIN.OHEM_NMS_THRESH) == (128, True, 0.7)
        else:
            assert cfg.TRAIN.BATCH_SIZE == 128


def test_parameters_reach_the_files(tmp_path):
    v = PRESETS["squeezenet/faster_rcnn_end2end"].replace(
        num_classes=21, ratios=(1,), scales=(4, 8), scale=300, max_size=500, max_iter=200,
        stepsize=150, base_lr=0.001, iter_size=1,
        data_params=(("dataset", "synthetic"), ("root", "data/synthetic"), ("flip", True)))
    paths = generate.write(v, tmp_path / "out", net_dir="runs/x")
    assert [p.name for p in paths] == list(generate.FILES)
    files = {p.name: p.read_text() for p in paths}
    train = parse_net(files["train.prototxt"])
    assert layer(train, "rpn_cls_score").convolution_param.num_output == 4
    assert layer(train, "bbox_pred").inner_product_param.num_output == 84
    data = layer(train, "input-data").python_param.param_str
    assert data == "'num_classes': 21\n'dataset': 'synthetic'\n'root': 'data/synthetic'\n" \
                   "'flip': True"
    assert yaml.safe_load(data) == {"num_classes": 21, "dataset": "synthetic",
                                    "root": "data/synthetic", "flip": True}
    anchors = python_params(train, "proposal")
    assert (anchors["ratios"], anchors["scales"]) == ((1,), (4, 8))
    test = parse_net(files["test.prototxt"])
    assert list(layer(test, "data").input_param.shape[0].dim) == [1, 3, 300, 500]
    solver = files["solver.prototxt"]
    for line in ('train_net: "runs/x/train.prototxt"', "base_lr: 0.001", "stepsize: 150",
                 "max_iter: 200", "iter_size: 1"):
        assert line in solver.splitlines()
    assert "SCALES: [300]" in files["config.yml"]


def test_param_str_is_written_plainly(rendered):
    text = rendered["squeezenet/faster_rcnn_end2end"]["train.prototxt"]
    assert "param_str: \"'feat_stride': 16\\n'ratios': [0.5, 1, 2]\\n'scales': [8, 16, 32]\"" \
        in text
    assert "\\'" not in text


def test_generated_text_starts_with_a_header(rendered):
    for files in rendered.values():
        for fname in ("train.prototxt", "test.prototxt", "solver.prototxt", "config.yml"):
            assert files[fname].startswith("# ")
            assert "change the generator, not this file" in files[fname]


def test_detection_module_names_match_the_layer_table():
    from frcnn.layer_params import LAYER_PARAMS

    for module, cls in (detection.DATA_LAYER, detection.ANCHOR_TARGET_LAYER,
                        detection.PROPOSAL_LAYER, detection.PROPOSAL_TARGET_LAYER,
                        detection.OHEM_LAYER):
        assert f"{module}.{cls}" in LAYER_PARAMS

