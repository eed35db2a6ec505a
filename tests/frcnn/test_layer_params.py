"""frcnn.layer_params: py-faster-rcnn param_str forms, validation naming the layer."""
from __future__ import annotations

import pytest

from frcnn.layer_params import LAYER_PARAMS, ParamError, parse_param_str

PROPOSAL = "rpn.proposal_layer.ProposalLayer"


@pytest.mark.parametrize("text, expected", [
    ("'feat_stride': 16", {"feat_stride": 16, "scales": (8, 16, 32), "ratios": (0.5, 1, 2)}),
    ("'feat_stride': 8\n'scales': [4, 8]", {"feat_stride": 8, "scales": (4, 8)}),
    ("'feat_stride': 16, 'scales': (8, 16, 32), 'ratios': (1,)", {"ratios": (1,)}),
    ("{'scales': !!python/tuple [2, 4]}", None),  # YAML tags other than safe ones: rejected
    ("", {"feat_stride": 16}),
])
def test_forms(text, expected):
    if expected is None:
        with pytest.raises(ParamError):
            parse_param_str(text, PROPOSAL, "proposal")
        return
    out = parse_param_str(text, PROPOSAL, "proposal")
    for key, value in expected.items():
        assert out[key] == value


@pytest.mark.parametrize("text, message", [
    ("'feat_strid': 16", "unknown param_str key"),
    ("'feat_stride': 'sixteen'", "'feat_stride' must be int"),
    ("'scales': (8, -16)", "positive numbers"),
    ("'scales': []", "positive numbers"),
    ("just words", "not a list of"),
])
def test_errors_name_the_layer(text, message):
    with pytest.raises(ParamError, match=message) as info:
        parse_param_str(text, PROPOSAL, "my_proposal")
    assert "layer 'my_proposal'" in str(info.value)


def test_required_key():
    with pytest.raises(ParamError, match="needs 'num_classes'"):
        parse_param_str("", "rpn.proposal_target_layer.ProposalTargetLayer", "roi-data")
    assert parse_param_str("'num_classes': 21", "rpn.proposal_target_layer.ProposalTargetLayer",
                           "roi-data") == {"num_classes": 21}


def test_table_lists_the_py_faster_rcnn_layers():
    for name in ("rpn.anchor_target_layer.AnchorTargetLayer", PROPOSAL,
                 "rpn.proposal_target_layer.ProposalTargetLayer",
                 "roi_data_layer.layer.RoIDataLayer"):
        assert name in LAYER_PARAMS
