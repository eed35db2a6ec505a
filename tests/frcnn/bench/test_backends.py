"""frcnn bench --backends: the export carries the bench's cfg, and the parity text says
when OpenCV's Proposal layer kept boxes below RPN_MIN_SIZE."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from frcnn.bench import backends
from frcnn.bench import nets as bnets
from frcnn.nets.variants import preset

SQ = preset("squeezenet/faster_rcnn_end2end")


def test_export_has_the_proposal_settings_the_caffe_reference_runs_with(caffe, tmp_path):
    overrides = {"TEST": {"RPN_PRE_NMS_TOP_N": 300, "RPN_POST_NMS_TOP_N": 20,
                          "RPN_MIN_SIZE": 0}}
    with bnets.variant_cfg(SQ, overrides):
        _, _, export = backends._prepare("squeezenet", SQ, tmp_path, seed=0)
    test = json.loads((export / "manifest.json").read_text())["test"]
    assert (test["rpn_pre_nms_top_n"], test["rpn_post_nms_top_n"], test["rpn_min_size"]) == (
        300, 20, 0.0)
    deploy = (export / "deploy.prototxt").read_text()
    assert "pre_nms_topn: 300" in deploy and "post_nms_topn: 20" in deploy


def test_below_min_size_counts_narrow_or_low_proposals():
    det = SimpleNamespace(last_proposals=np.array([[0, 0, 15, 15],     # 16 x 16: kept
                                                   [0, 0, 14, 30],     # 15 wide
                                                   [5, 5, 40, 9],      # 5 high
                                                   [0, 0, 0, 0]], np.float32))
    assert backends._below_min_size(det, 16) == 3
    assert backends._below_min_size(det, 0) == 0
    assert backends._below_min_size(SimpleNamespace(), 16) is None


def test_parity_text_explains_other_counts():
    row = {"vs_caffe": {"max_box_diff": 177.0, "max_score_diff": 0.58, "same_counts": False},
           "proposals_below_min_size": 34}
    assert backends._parity_text(row) == ("boxes 1.8e+02 px, scores 0.58, other counts (34 "
                                          "proposals below RPN_MIN_SIZE kept)")
    row["proposals_below_min_size"] = 0
    assert backends._parity_text(row).endswith("other counts")
    row["vs_caffe"]["same_counts"] = True
    assert backends._parity_text(row) == "boxes 1.8e+02 px, scores 0.58"
