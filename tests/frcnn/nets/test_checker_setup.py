"""frcnn check runs each Python layer's own setup()/reshape(), as Caffe does when it builds
the net: what Caffe refuses is an error of the checker too."""
from __future__ import annotations

import copy
import threading

import pytest

from frcnn import config
from frcnn.data.synth import SynthOptions, write_synth_dataset
from frcnn.nets import checker, generate
from frcnn.nets.variants import PRESETS
from tests.conftest import ROOT
from tests.frcnn.nets.test_checker import errors, mutate, one_error

TRAIN = "squeezenet/faster_rcnn_end2end"


@pytest.fixture(scope="module")
def texts():
    return {name: generate.render(v, f"prototxts/{name}") for name, v in PRESETS.items()}


@pytest.fixture(autouse=True)
def _cfg_guard(cfg):
    """Every test here also checks that the checker leaves the global cfg as it was."""
    before = copy.deepcopy(dict(cfg))
    yield
    assert dict(config.cfg) == before


def layer_errors(report, name):
    return [e for e in errors(report) if f"layer '{name}' (" in e]


@pytest.mark.parametrize("which", ["train.prototxt", "test.prototxt"])
def test_generated_nets_pass_with_setup(which):
    for name in PRESETS:
        report = checker.check_file(ROOT / "prototxts" / name / which)
        assert report.findings == [], report.format()
        notes = report.format(verbose=True)
        assert "Python layers set up on stand-in blobs: " in notes, notes
        ran = [n for n in report.notes if n.startswith("Python layers set up")][0]
        if which == "train.prototxt":
            # the RoI-set consumers run on the shapes their producers' setup gave
            for layer in ("input-data", "rpn-data", "proposal", "roi-data"):
                assert f"'{layer}'" in ran, ran
        else:
            assert "'proposal'" in ran
        assert "set up on stand-in" not in report.format()  # notes are verbose-only


def test_data_layer_top_count(texts):
    text = mutate(texts, TRAIN, "train.prototxt", '  top: "gt_boxes"\n',
                  '  top: "gt_boxes"\n  top: "extra"\n', layer="input-data")
    report = checker.check_text(text)
    message = one_error(report, "layer 'input-data' (Python)", "setup()", "tops", "got 4")
    assert "(roi_data_layer.layer.RoIDataLayer): " not in message  # the prefix is stripped
    assert len(report.errors) == 1, report.format()
    assert checker.check_text(text, setup=False).ok
    assert checker.check_text(text, imports=False).ok


def test_proposal_target_layer_bottom_count(texts):
    text = mutate(texts, TRAIN, "train.prototxt", '  bottom: "gt_boxes"\n', "",
                  layer="roi-data")
    assert checker.check_text(text, setup=False).ok  # no static check sees it
    report = checker.check_text(text)
    one_error(report, "layer 'roi-data' (Python)", "bottoms", "got 1")
    assert len(report.errors) == 1, report.format()


PROPOSAL_NET = """
name: "proposal"
layer {{ name: "input" type: "Input" top: "probs" top: "deltas" top: "im_info"
  input_param {{ shape {{ dim: 1 dim: 18 dim: 10 dim: 12 }}
                 shape {{ dim: 1 dim: {deltas} dim: {height} dim: 12 }}
                 shape {{ dim: 1 dim: 3 }} }} }}
layer {{ name: "proposal" type: "Python" bottom: "probs" bottom: "deltas" bottom: "im_info"
  top: "rois"
  python_param {{ module: "rpn.proposal_layer" layer: "ProposalLayer"
    param_str: "'feat_stride': 1" }} }}
"""


def test_proposal_layer_blob_shapes():
    assert checker.check_text(PROPOSAL_NET.format(deltas=36, height=10)).ok
    bad = PROPOSAL_NET.format(deltas=36, height=11)  # maps of different sizes
    assert checker.check_text(bad, setup=False).ok
    one_error(checker.check_text(bad), "layer 'proposal' (Python)", "rpn_bbox_pred",
              "(1, 36, 11, 12)")
    one_error(checker.check_text(PROPOSAL_NET.format(deltas=40, height=10)),
              "layer 'proposal' (Python)", "4A=36")


def test_unknown_bottom_shapes_are_not_guessed():
    # 'probs' comes from a layer type the checker does not know, so its shape is unknown and
    # the ProposalLayer is not run (its deltas have 40 channels: run, it would fail)
    text = PROPOSAL_NET.format(deltas=40, height=10).replace(
        'top: "probs"', 'top: "p0"').replace(
        'layer { name: "proposal"',
        'layer { name: "unknown" type: "SomeCustomType" bottom: "p0" top: "probs" }\n'
        'layer { name: "proposal"')
    assert 'bottom: "p0"' in text
    report = checker.check_text(text)
    assert not layer_errors(report, "proposal"), report.format()
    assert any("not set up" in n and "'proposal'" in n for n in report.notes), report.notes


DATA_NET = """
name: "data"
layer {{ name: "input-data" type: "Python" top: "data" top: "im_info" top: "gt_boxes"
  python_param {{ module: "roi_data_layer.layer" layer: "RoIDataLayer"
    param_str: "{param_str}" }} }}
"""


def data_net(param_str):
    return DATA_NET.format(param_str=param_str)


def test_missing_dataset():
    report = checker.check_text(data_net("'num_classes': 4, 'dataset': '/nonexistent/folder'"))
    one_error(report, "layer 'input-data' (Python)", "FileNotFoundError",
              "/nonexistent/folder")


def test_param_str_errors_are_reported_once():
    report = checker.check_text(data_net("'dataset': 'synth_train'"))
    assert len(layer_errors(report, "input-data")) == 1, report.format()
    one_error(report, "layer 'input-data' (Python)", "needs 'num_classes'")


def test_cfg_key_does_not_leak_into_the_global_cfg(tmp_path, capsys):
    yaml_file = tmp_path / "cfg.yml"
    yaml_file.write_text("TRAIN:\n  SCALES: [321]\n")
    before = copy.deepcopy(dict(config.cfg))
    report = checker.check_text(data_net(f"'num_classes': 4, 'cfg': '{yaml_file}'"))
    assert report.ok, report.format()
    assert dict(config.cfg) == before and tuple(config.cfg.TRAIN.SCALES) != (321,)
    # a cfg that makes setup fail: reported, and the cfg restored all the same
    yaml_file.write_text("TRAIN:\n  IMS_PER_BATCH: 2\n")
    report = checker.check_text(data_net(f"'num_classes': 4, 'cfg': '{yaml_file}'"))
    one_error(report, "layer 'input-data' (Python)", "IMS_PER_BATCH is 2")
    assert dict(config.cfg) == before
    assert capsys.readouterr().err == ""  # reports_errors' stderr line is captured


def test_cfg_merged_by_the_data_layer_reaches_later_layers(tmp_path):
    # one Caffe process builds the whole net: the data layer's cfg is what later layers read
    yaml_file = tmp_path / "cfg.yml"
    yaml_file.write_text("TRAIN:\n  OHEM_BATCH_SIZE: 0\n")
    text = data_net(f"'num_classes': 4, 'cfg': '{yaml_file}'") + """
    layer { name: "input" type: "Input" top: "a" top: "b" top: "c" top: "d"
      input_param { shape { dim: 8 dim: 4 } shape { dim: 8 dim: 16 } shape { dim: 8 dim: 5 }
                    shape { dim: 8 } } }
    layer { name: "ohem" type: "Python" bottom: "a" bottom: "b" bottom: "c" bottom: "d"
      bottom: "b" bottom: "b" bottom: "b"
      top: "r" top: "l" top: "t" top: "i" top: "o"
      python_param { module: "roi_data_layer.layer" layer: "OHEMDataLayer" } }
    """
    one_error(checker.check_text(text, phase="TRAIN"), "layer 'ohem' (Python)",
              "OHEM_BATCH_SIZE must be >= 1")
    yaml_file.write_text("TRAIN:\n  OHEM_BATCH_SIZE: 64\n")
    assert checker.check_text(text, phase="TRAIN").ok


def test_prefetch_thread_is_closed(tmp_path):
    out = tmp_path / "synth"
    write_synth_dataset(out, SynthOptions(num_train=3, num_test=0, height=48, width=64,
                                          min_object=16, max_object=32, seed=5), log=None)
    report = checker.check_text(data_net(f"'num_classes': 4, 'dataset': '{out}', "
                                         f"'prefetch': True"))
    assert report.ok, report.format()
    assert not [t for t in threading.enumerate()
                if t.name.startswith("prefetch-input-data") and t.is_alive()]


def test_fast_rcnn_data_layer_shapes():
    from google.protobuf import text_format

    from caffe.proto import caffe_pb2

    text = """
    layer { name: "data" type: "Python" top: "data" top: "rois" top: "labels"
      top: "bbox_targets" top: "bbox_inside_weights" top: "bbox_outside_weights"
      python_param { module: "roi_data_layer.layer" layer: "RoIDataLayer"
        param_str: "'num_classes': 21" } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
      convolution_param { num_output: 8 kernel_size: 3 stride: 16 } }
    """
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    shapes = checker.infer_shapes(net, phase="TRAIN")
    assert shapes["data"] == (None, 3, 600, 1000)
    assert shapes["rois"] == (None, 5) and shapes["labels"] == (None,)
    for top in ("bbox_targets", "bbox_inside_weights", "bbox_outside_weights"):
        assert shapes[top] == (None, 84)
    assert shapes["conv"][1] == 8
    # and the layer's own setup accepts the six tops
    report = checker.check_text(text, phase="TRAIN")
    assert report.ok, report.format()
    assert any("set up" in n and "'data'" in n for n in report.notes), report.notes
