"""frcnn.layer_params: py-faster-rcnn param_str forms, validation naming the layer."""
from __future__ import annotations

import pytest
import yaml

from frcnn.layer_params import LAYER_PARAMS, ParamError, _literal_mapping, parse_param_str

PROPOSAL = "rpn.proposal_layer.ProposalLayer"


@pytest.mark.parametrize("text, expected", [
    ("'feat_stride': 16", {"feat_stride": 16, "scales": (8, 16, 32), "ratios": (0.5, 1, 2)}),
    ("'feat_stride': 8\n'scales': [4, 8]", {"feat_stride": 8, "scales": (4, 8)}),
    ("'feat_stride': 16, 'scales': (8, 16, 32), 'ratios': (1,)", {"ratios": (1,)}),
    ("{'scales': !!python/tuple [2, 4]}", {"scales": (2, 4)}),  # the one python tag read
    ("{'scales': !!python/list [2, 4]}", None),  # other python tags: rejected
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


# ---- every param_str form of py-faster-rcnn's models/ gives the plain form's dict ----

PLAIN = "'feat_stride': 8\n'scales': (4, 8, 16, 32)\n'ratios': (0.5, 1, 2)"
EXPECTED = {"feat_stride": 8, "scales": (4, 8, 16, 32), "ratios": (0.5, 1, 2)}


@pytest.mark.parametrize("text", [
    PLAIN,
    # COCO nets: the prototxt's escaped \n leaves a space before the newline
    "'feat_stride': 8 \n'scales': !!python/tuple [4, 8, 16, 32]",
    "'feat_stride': 8\n'scales': !!python/tuple [4, 8, 16, 32]\n'ratios': !!python/tuple "
    "[0.5, 1, 2]",
    "'feat_stride': 8\n'scales': [4, 8, 16, 32]",                        # YAML flow list
    "'feat_stride': 8\n'scales':\n  - 4\n  - 8\n  - 16\n  - 32",          # YAML block list
    "'feat_stride': 8\n'scales':\n- 4\n- 8\n- 16\n- 32\n",               # unindented block
    "'feat_stride': 8 \t\n'scales': (4, 8, 16, 32)\t \n",                # whitespace, newline
    "'feat_stride': 8\r\n'scales': [4, 8, 16, 32]\r\n",                   # CRLF
    "'feat_stride': 8, 'scales': (4, 8, 16, 32)",                        # one line, commas
    "'feat_stride': 8, 'scales': (4, 8, 16, 32), 'ratios': (0.5, 1, 2)",
    "{'feat_stride': 8, 'scales': (4, 8, 16, 32)}",                      # wrapped dict
    "{'feat_stride': 8, 'scales': [4, 8, 16, 32]}",
    "{'feat_stride': 8,\n 'scales': (4, 8, 16, 32)}\n",
    "feat_stride: 8\nscales: [4, 8, 16, 32]",                            # bare keys
    "feat_stride: 8\nscales: (4, 8, 16, 32)",
    "feat_stride: 8, scales: (4, 8, 16, 32)",
    "{feat_stride: 8, scales: (4, 8, 16, 32)}",
    "{feat_stride: 8, scales: !!python/tuple [4, 8, 16, 32]}",
    '"feat_stride": 8\n"scales": [4, 8, 16, 32]',                        # double quotes
])
def test_every_form_gives_the_plain_dict(text):
    assert parse_param_str(text, PROPOSAL, "proposal") == EXPECTED


def test_python_tuple_is_a_tuple():
    assert _literal_mapping("'feat_stride': 16 \n'scales': !!python/tuple [4, 8, 16, 32]") == {
        "feat_stride": 16, "scales": (4, 8, 16, 32)}
    assert parse_param_str("'num_classes': 81", "rpn.proposal_target_layer.ProposalTargetLayer",
                           "roi-data") == {"num_classes": 81}


def test_safe_loader_is_not_changed_globally():
    parse_param_str("'scales': !!python/tuple [4, 8]", PROPOSAL, "proposal")
    assert "tag:yaml.org,2002:python/tuple" not in yaml.SafeLoader.yaml_constructors
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load("'scales': !!python/tuple [4, 8]")


@pytest.mark.parametrize("template", [
    "'scales': !!python/object/apply:os.system [\"touch {path}\"]",
    "'feat_stride': 16 \n'scales': !!python/object/apply:os.system [\"touch {path}\"]",
    "{{'scales': !!python/object/apply:os.system [\"touch {path}\"]}}",
    "'scales': !!python/object/new:os.system [\"touch {path}\"]",
    "'scales': !!python/name:os.system",
    "'scales': !!python/module:os",
    "'scales': !custom [1, 2]",
])
def test_unsafe_tags_raise_and_do_not_run(tmp_path, template):
    target = tmp_path / "x"
    text = template.format(path=target)
    with pytest.raises(ParamError, match="layer 'my_proposal'.*rejected: could not determine a constructor.*"
                                 "only plain YAML"):
        parse_param_str(text, PROPOSAL, "my_proposal")
    assert not target.exists()


@pytest.mark.parametrize("text", [
    "'scales': !!python/tuple [0, 8]",
    "'scales': !!python/tuple [8, -16]",
    "'scales': !!python/tuple []",
    "'scales': [8, 0]",
    "'scales':\n  - 8\n  - -16",
    "{'ratios': (0.5, 0)}",
    "ratios: (1, -2)",
])
def test_non_positive_numbers_are_rejected_in_every_form(text):
    with pytest.raises(ParamError, match="positive numbers"):
        parse_param_str(text, PROPOSAL, "my_proposal")


def test_python_tuple_needs_a_sequence():
    with pytest.raises(ParamError, match="needs a sequence"):
        parse_param_str("'scales': !!python/tuple {a: 1}", PROPOSAL, "my_proposal")


def test_data_layer_takes_proposals():
    layer = "roi_data_layer.layer.RoIDataLayer"
    out = parse_param_str("'num_classes': 21\n'dataset': 'voc_2007_trainval'\n"
                          "'proposals': 'data/selective_search.pkl'", layer, "data")
    assert out["proposals"] == "data/selective_search.pkl"
    assert out["dataset"] == "voc_2007_trainval"
    assert parse_param_str("'num_classes': 21", layer, "data")["proposals"] == ""
    assert LAYER_PARAMS[layer]["proposals"].doc.endswith("needs 'dataset'")
