"""py-faster-rcnn's workflows with this package's commands, on nets in its file forms.

End to end with a solver (tools/train_net.py), then the alternating optimisation's pieces:
an RPN's proposals written by ``frcnn proposals`` (rpn_generate), a Fast R-CNN net trained
from them (six-top RoIDataLayer, IMS_PER_BATCH 2), tested with the proposals as its rois;
abhi2610/ohem's Fast R-CNN OHEM layout.  The nets are in tests/frcnn/app/pyfrcnn_nets.py.
"""
from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest

from frcnn import config
from frcnn.app.proposals import ProposalsRequest, run_proposals
from frcnn.app.testing import EvalRequest, run_test
from frcnn.app.training import TrainRequest, run_train
from frcnn.caffe_files import read_sidecar
from tests.frcnn.app import pyfrcnn_nets as nets
from tests.tiny_synth import write_tiny_synth

# an experiments/cfgs-style file (block YAML, py-faster-rcnn's keys)
CFG = """\
EXP_DIR: tiny_end2end
TRAIN:
  HAS_RPN: True
  IMS_PER_BATCH: 1
  BBOX_NORMALIZE_TARGETS_PRECOMPUTED: True
  RPN_POSITIVE_OVERLAP: 0.7
  RPN_BATCHSIZE: 64
  PROPOSAL_METHOD: gt
  BG_THRESH_LO: 0.0
  SCALES: [96]
  MAX_SIZE: 128
  RPN_PRE_NMS_TOP_N: 600
  RPN_POST_NMS_TOP_N: 100
  BATCH_SIZE: 16
  SNAPSHOT_ITERS: 2
TEST:
  HAS_RPN: True
  SCALES: [96]
  MAX_SIZE: 128
  RPN_PRE_NMS_TOP_N: 600
  RPN_POST_NMS_TOP_N: 50
"""
FAST_CFG = """\
EXP_DIR: tiny_alt_opt
TRAIN:
  HAS_RPN: False
  IMS_PER_BATCH: 2
  PROPOSAL_METHOD: rpn
  BG_THRESH_LO: 0.0
  BATCH_SIZE: 16
  SCALES: [96]
  MAX_SIZE: 128
TEST:
  HAS_RPN: False
  SCALES: [96]
  MAX_SIZE: 128
"""


pytestmark = pytest.mark.usefixtures("cfg")  # the global cfg, restored after each test


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A py-faster-rcnn-like tree: data/synth, models/tiny/<kind>/*.prototxt, cfgs/."""
    root = tmp_path_factory.mktemp("pyfrcnn")
    write_tiny_synth(root / "data" / "synth", 8, 4)
    files = {
        "models/tiny/end2end/train.prototxt": nets.end2end_train(),
        "models/tiny/end2end/test.prototxt": nets.end2end_test(),
        "models/tiny/end2end/solver.prototxt": nets.solver(
            "models/tiny/end2end/train.prototxt"),
        "models/tiny/alt_opt/rpn_test.pt": nets.rpn_test(),
        "models/tiny/alt_opt/fast_rcnn_train.pt": nets.fast_rcnn_train(),
        "models/tiny/alt_opt/fast_rcnn_test.pt": nets.fast_rcnn_test(),
        # relative to the solver's own folder (Caffe would look in the current directory)
        "models/tiny/alt_opt/fast_rcnn_solver.pt": nets.solver("fast_rcnn_train.pt",
                                                               "tiny_fast_rcnn"),
        "models/tiny/ohem/train.prototxt": nets.ohem_fast_rcnn_train(),
        "models/tiny/ohem/solver.prototxt": nets.solver("train.prototxt",
                                                        "tiny_ohem"),
        "cfgs/end2end.yml": CFG,
        "cfgs/alt_opt.yml": FAST_CFG,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def train(root: Path, solver: str, out: str, cfg: str, iters: int, **kwargs) -> str:
    return run_train(TrainRequest(net=None, solver=str(root / solver), dataset="synth_train",
                                  root=str(root / "data/synth"), iters=iters,
                                  out=str(root / out), cfg_file=str(root / cfg),
                                  display=1, force=True, **kwargs))


@pytest.fixture(scope="module")
def end2end_model(workspace):
    import os

    cwd = os.getcwd()
    os.chdir(workspace)  # the solver's train_net is relative to the tree, as py-faster-rcnn's
    try:
        with config.preserved():
            return train(workspace, "models/tiny/end2end/solver.prototxt", "out/end2end",
                         "cfgs/end2end.yml", iters=4)
    finally:
        os.chdir(cwd)


def test_solver_training_of_an_end_to_end_net(workspace, end2end_model, capsys):
    out = workspace / "out/end2end"
    assert Path(end2end_model).name == "tiny_zf_iter_4.caffemodel"
    assert (out / "tiny_zf_iter_2.caffemodel").exists()  # TRAIN.SNAPSHOT_ITERS 2
    meta = read_sidecar(end2end_model)
    assert meta["bbox_normalization_folded"] is True and meta["mode"] == "end2end"
    assert meta["test_net"] == str(workspace / "models/tiny/end2end/test.prototxt")
    assert meta["classes"] == ["__background__", "circle", "square", "triangle"]
    solver_text = (out / "net/solver.prototxt").read_text()
    assert f'train_net: "{workspace}/models/tiny/end2end/train.prototxt"' in solver_text
    assert "max_iter: 4" in solver_text
    assert (workspace / "models/tiny/end2end/train.prototxt").read_text() == \
        textwrap.dedent(nets.end2end_train())  # the user's net is used, not rewritten


def test_test_net_of_their_own_evaluates_the_snapshot(workspace, end2end_model):
    aps = run_test(EvalRequest(model=end2end_model,
                               net=str(workspace / "models/tiny/end2end/test.prototxt"),
                               cfg_file=str(workspace / "cfgs/end2end.yml"),
                               dataset="synth_test", root=str(workspace / "data/synth"),
                               out=str(workspace / "out/test_end2end"), force=True))
    assert 0.0 <= aps["mAP"] <= 1.0
    saved = json.loads((workspace / "out/test_end2end/eval.json").read_text())
    assert saved["images"] == 4


@pytest.fixture(scope="module")
def proposal_files(workspace, end2end_model):
    """rpn_generate: the end-to-end model's RPN (its layers share the names) on both splits."""
    files = {}
    with config.preserved():
        for split, name in (("train", "rpn_train.pkl"), ("test", "rpn_test.json")):
            files[split] = run_proposals(ProposalsRequest(
                model=end2end_model, net=str(workspace / "models/tiny/alt_opt/rpn_test.pt"),
                dataset=f"synth_{split}", root=str(workspace / "data/synth"),
                out=str(workspace / "out" / name),
                set_pairs=("TEST.SCALES", "(96,)", "TEST.MAX_SIZE", "128",
                           "TEST.RPN_POST_NMS_TOP_N", "100")))
    return files


def test_proposals_are_written_in_both_forms(proposal_files):
    with open(proposal_files["train"], "rb") as f:
        boxes = pickle.load(f)
    assert isinstance(boxes, list) and len(boxes) == 8  # one (P, 4) array per image
    assert all(b.ndim == 2 and b.shape[1] == 4 and 0 < len(b) <= 100 for b in boxes)
    assert all(b[:, 2].max() <= 127 and b[:, 3].max() <= 95 for b in boxes)  # image pixels
    doc = json.loads(proposal_files["test"].read_text())
    assert doc["format"] == "frcnn-proposals" and len(doc["images"]) == 4
    assert len(doc["images"][0]["scores"]) == len(doc["images"][0]["boxes"])  # scores top


@pytest.fixture(scope="module")
def fast_rcnn_model(workspace, end2end_model, proposal_files):
    with config.preserved():
        return train(workspace, "models/tiny/alt_opt/fast_rcnn_solver.pt", "out/fast_rcnn",
                     "cfgs/alt_opt.yml", iters=3, weights=end2end_model,
                     proposals=str(proposal_files["train"]), snapshot_iters=0)


def test_fast_rcnn_stage_trains_from_the_proposals(fast_rcnn_model):
    meta = read_sidecar(fast_rcnn_model)
    assert meta["mode"] == "fast_rcnn" and meta["bbox_normalization_folded"] is True
    assert "test_net" not in meta  # no test.prototxt beside fast_rcnn_train.pt


def test_fast_rcnn_test_net_takes_the_proposals_as_rois(workspace, fast_rcnn_model,
                                                        proposal_files):
    request = dict(model=fast_rcnn_model,
                   net=str(workspace / "models/tiny/alt_opt/fast_rcnn_test.pt"),
                   cfg_file=str(workspace / "cfgs/alt_opt.yml"), dataset="synth_test",
                   root=str(workspace / "data/synth"), out=str(workspace / "out/test_fast"),
                   force=True)
    aps = run_test(EvalRequest(proposals=str(proposal_files["test"]), **request))
    assert 0.0 <= aps["mAP"] <= 1.0
    recall = json.loads((workspace / "out/test_fast/eval.json").read_text())["proposal_recall"]
    assert recall["source"] == "given" and recall["images"] > 0  # the file's proposals
    with pytest.raises(ValueError, match="give the dataset's proposals with --proposals"):
        run_test(EvalRequest(**request))


def test_ohem_fast_rcnn_net_trains(workspace, proposal_files):
    model = train(workspace, "models/tiny/ohem/solver.prototxt", "out/ohem", "cfgs/alt_opt.yml",
                  iters=2, proposals=str(proposal_files["train"]), snapshot_iters=0,
                  set_pairs=("TRAIN.BATCH_SIZE", "-1", "TRAIN.OHEM_BATCH_SIZE", "8"))
    assert Path(model).exists()


def test_a_fast_rcnn_net_without_proposals_is_refused_before_caffe(workspace):
    with pytest.raises(ValueError, match="has 6 tops: a Fast R-CNN net.*--proposals FILE"):
        train(workspace, "models/tiny/alt_opt/fast_rcnn_solver.pt", "out/refused",
              "cfgs/alt_opt.yml", iters=1)


def test_the_class_count_is_checked_against_the_dataset(workspace):
    (workspace / "models/tiny/k21").mkdir(exist_ok=True)
    (workspace / "models/tiny/k21/train.prototxt").write_text(
        nets.end2end_train().replace("'num_classes': 4", "'num_classes': 21"))
    (workspace / "models/tiny/k21/solver.prototxt").write_text(nets.solver("train.prototxt"))
    with pytest.raises(ValueError, match=r"says num_classes 21 but dataset synth_train has 4"):
        train(workspace, "models/tiny/k21/solver.prototxt", "out/k21", "cfgs/end2end.yml", 1)


def test_six_top_data_layer_under_plain_caffe_from_its_param_str(workspace, proposal_files,
                                                                 caffe, cfg):
    """`caffe train` needs the dataset in the param_str: 'dataset' + 'proposals'."""
    config.cfg_from_file(str(workspace / "cfgs/alt_opt.yml"))
    text = nets.fast_rcnn_train().replace(
        "param_str: \"'num_classes': 4\" } }",
        f"param_str: \"'num_classes': 4\\n'dataset': 'synth_train'\\n'root': "
        f"'{workspace / 'data/synth'}'\\n'proposals': '{proposal_files['train']}'\" }} }}", 1)
    path = workspace / "out/plain_caffe.prototxt"
    path.write_text(text)
    net = caffe.Net(str(path), caffe.TRAIN)
    net.forward()
    rois = net.blobs["rois"].data
    assert net.blobs["data"].data.shape[0] == 2 and set(rois[:, 0]) <= {0, 1}
    assert len(rois) <= 16 and net.blobs["bbox_targets"].data.shape == (len(rois), 16)
    assert np.isfinite(float(net.blobs["loss_cls"].data))


def test_the_command_line_takes_py_faster_rcnns_arguments(workspace, fast_rcnn_model,
                                                          proposal_files, capsys):
    from frcnn import cli

    code = cli.main(["test", "--model", fast_rcnn_model,
                     "--net", str(workspace / "models/tiny/alt_opt/fast_rcnn_test.pt"),
                     "--imdb", "synth_test", "--root", str(workspace / "data/synth"),
                     "--cfg", str(workspace / "cfgs/alt_opt.yml"),
                     "--proposals", str(proposal_files["test"]),
                     "--out", str(workspace / "out/cli_test"), "--force"])
    assert code == 0 and "mAP (VOC07 11-point)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["train", "--solver", "s.prototxt", "--net", "squeezenet/faster_rcnn_end2end",
                  "--out", "x"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(workspace / "out/no_iters")]) == 1
    assert "--iters must be >= 1" in capsys.readouterr().err
