"""frcnn.config: defaults, merging and type checks."""
from __future__ import annotations

import pytest

from frcnn import config
from frcnn.config import ConfigError, cfg_from_file, cfg_from_list, default_config


def test_py_faster_rcnn_end2end_defaults():
    c = default_config()
    assert c.TRAIN.SCALES == (600,) and c.TRAIN.MAX_SIZE == 1000
    assert c.TRAIN.BATCH_SIZE == 128 and c.TRAIN.FG_FRACTION == 0.25
    assert c.TRAIN.BG_THRESH_LO == 0.0 and c.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED is True
    assert c.TRAIN.BBOX_NORMALIZE_STDS == (0.1, 0.1, 0.2, 0.2)
    assert (c.TRAIN.RPN_PRE_NMS_TOP_N, c.TRAIN.RPN_POST_NMS_TOP_N) == (12000, 2000)
    assert (c.TEST.RPN_PRE_NMS_TOP_N, c.TEST.RPN_POST_NMS_TOP_N) == (6000, 300)
    assert c.TEST.NMS == 0.3 and c.RNG_SEED == 3
    assert c.PIXEL_MEANS == (102.9801, 115.9465, 122.7717)


def test_merge_from_list_converts_literals():
    c = default_config()
    cfg_from_list(["TRAIN.SCALES", "(400, 500)", "TEST.NMS", "0.4", "TRAIN.BATCH_SIZE", "-1",
                   "EXP_DIR", "my_run", "TRAIN.USE_FLIPPED", "False"], c)
    assert c.TRAIN.SCALES == (400, 500) and c.TEST.NMS == 0.4 and c.TRAIN.BATCH_SIZE == -1
    assert c.EXP_DIR == "my_run" and c.TRAIN.USE_FLIPPED is False


def test_int_is_accepted_for_float_but_not_the_reverse():
    c = default_config()
    cfg_from_list(["TEST.NMS", "1"], c)
    assert c.TEST.NMS == 1.0 and isinstance(c.TEST.NMS, float)
    with pytest.raises(ConfigError, match="TRAIN.BATCH_SIZE"):
        cfg_from_list(["TRAIN.BATCH_SIZE", "12.5"], c)


@pytest.mark.parametrize("pairs, message", [
    (["TRAIN.NO_SUCH_KEY", "1"], "unknown config key TRAIN.NO_SUCH_KEY"),
    (["TEST.BATCH_SIZE", "1"], "did you mean TRAIN.BATCH_SIZE"),
    (["TRAIN.USE_FLIPPED", "1"], "TRAIN.USE_FLIPPED"),
    (["PIXEL_MEANS", "(1, 2)"], "PIXEL_MEANS"),
    (["TRAIN.SCALES", "600"], "TRAIN.SCALES"),
    (["TRAIN.SCALES"], "odd number"),
])
def test_bad_overrides_name_the_key(pairs, message):
    with pytest.raises(ConfigError, match=message):
        cfg_from_list(pairs, default_config())


def test_a_failed_merge_changes_nothing():
    c = default_config()
    with pytest.raises(ConfigError):
        cfg_from_list(["TEST.NMS", "0.5", "TRAIN.BAD", "1"], c)
    assert c.TEST.NMS == 0.3


def test_yaml_file(tmp_path):
    path = tmp_path / "ohem.yml"
    path.write_text("TRAIN:\n  BATCH_SIZE: -1\n  OHEM_BATCH_SIZE: 64\n  SCALES: [300]\n")
    c = cfg_from_file(str(path), default_config())
    assert c.TRAIN.BATCH_SIZE == -1 and c.TRAIN.OHEM_BATCH_SIZE == 64 and c.TRAIN.SCALES == (300,)
    path.write_text("TRAIN:\n  BATCH_SIZ: 1\n")
    with pytest.raises(ConfigError, match=f"{path}.*TRAIN.BATCH_SIZ"):
        cfg_from_file(str(path), default_config())
    with pytest.raises(FileNotFoundError, match="missing.yml"):
        cfg_from_file(str(tmp_path / "missing.yml"))


def test_every_key_is_documented():
    text = config.describe()
    for key in config.KEYS:
        assert key.name in text and key.doc


# ---- py-faster-rcnn's keys and experiments/cfgs ----

PY_FASTER_RCNN_KEYS = {
    "TRAIN": "SCALES MAX_SIZE IMS_PER_BATCH BATCH_SIZE FG_FRACTION FG_THRESH BG_THRESH_HI "
             "BG_THRESH_LO USE_FLIPPED BBOX_REG BBOX_THRESH SNAPSHOT_ITERS SNAPSHOT_INFIX "
             "USE_PREFETCH BBOX_NORMALIZE_TARGETS BBOX_INSIDE_WEIGHTS "
             "BBOX_NORMALIZE_TARGETS_PRECOMPUTED BBOX_NORMALIZE_MEANS BBOX_NORMALIZE_STDS "
             "PROPOSAL_METHOD ASPECT_GROUPING HAS_RPN RPN_POSITIVE_OVERLAP "
             "RPN_NEGATIVE_OVERLAP RPN_CLOBBER_POSITIVES RPN_FG_FRACTION RPN_BATCHSIZE "
             "RPN_NMS_THRESH RPN_PRE_NMS_TOP_N RPN_POST_NMS_TOP_N RPN_MIN_SIZE "
             "RPN_BBOX_INSIDE_WEIGHTS RPN_POSITIVE_WEIGHT",
    "TEST": "SCALES MAX_SIZE NMS SVM BBOX_REG HAS_RPN PROPOSAL_METHOD RPN_NMS_THRESH "
            "RPN_PRE_NMS_TOP_N RPN_POST_NMS_TOP_N RPN_MIN_SIZE",
    "": "DEDUP_BOXES PIXEL_MEANS RNG_SEED EPS ROOT_DIR DATA_DIR MODELS_DIR MATLAB EXP_DIR "
        "USE_GPU_NMS GPU_ID",
}
ALL_PY_FASTER_RCNN = [f"{group}.{key}" if group else key
                      for group, keys in PY_FASTER_RCNN_KEYS.items() for key in keys.split()]
NOT_USED = {"TRAIN.PROPOSAL_METHOD": "selective_search", "TEST.PROPOSAL_METHOD":
            "selective_search", "TEST.SVM": False, "ROOT_DIR": "", "DATA_DIR": "",
            "MODELS_DIR": "", "MATLAB": "matlab"}

END2END_YML = """\
EXP_DIR: faster_rcnn_end2end
TRAIN:
  HAS_RPN: True
  IMS_PER_BATCH: 1
  BBOX_NORMALIZE_TARGETS_PRECOMPUTED: True
  RPN_POSITIVE_OVERLAP: 0.7
  RPN_BATCHSIZE: 256
  PROPOSAL_METHOD: gt
  BG_THRESH_LO: 0.0
TEST:
  HAS_RPN: True
"""

ALT_OPT_YML = """\
EXP_DIR: faster_rcnn_alt_opt
TRAIN:
  BG_THRESH_LO: 0.0
TEST:
  HAS_RPN: True
"""


def notes(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("[config] note: ")]


def test_every_py_faster_rcnn_key_is_accepted():
    assert len(ALL_PY_FASTER_RCNN) == 33 + 11 + 11
    names = {k.name for k in config.KEYS}
    assert [k for k in ALL_PY_FASTER_RCNN if k not in names] == []
    c = default_config()
    for name in ALL_PY_FASTER_RCNN:  # each one merges (its own default back in)
        default = next(k.default for k in config.KEYS if k.name == name)
        group, _, leaf = name.rpartition(".")
        config.merge_dict({group: {leaf: default}} if group else {leaf: default}, c)


def test_not_used_keys_have_py_faster_rcnn_defaults_and_a_reason():
    c = default_config()
    assert c.TRAIN.PROPOSAL_METHOD == "selective_search" == c.TEST.PROPOSAL_METHOD
    assert c.TEST.SVM is False and c.MATLAB == "matlab"
    assert (c.ROOT_DIR, c.DATA_DIR, c.MODELS_DIR) == ("", "", "")
    not_used = {k.name for k in config.KEYS if not k.applies}
    assert not_used == set(NOT_USED)
    text = config.describe()
    for key in config.KEYS:
        line = next(line for line in text.splitlines() if line.startswith(key.name + " "))
        assert ("(not used: " in line) == (key.name in NOT_USED)
        if key.name in NOT_USED:
            assert key.not_used and key.not_used in line


def test_end2end_cfg_file(tmp_path, capsys):
    path = tmp_path / "faster_rcnn_end2end.yml"
    path.write_text(END2END_YML)
    c = cfg_from_file(str(path), default_config())
    assert c.EXP_DIR == "faster_rcnn_end2end"
    assert c.TRAIN.HAS_RPN is True and c.TRAIN.IMS_PER_BATCH == 1
    assert c.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED is True
    assert c.TRAIN.RPN_POSITIVE_OVERLAP == 0.7 and c.TRAIN.RPN_BATCHSIZE == 256
    assert c.TRAIN.PROPOSAL_METHOD == "gt" and c.TRAIN.BG_THRESH_LO == 0.0
    assert c.TEST.HAS_RPN is True
    lines = notes(capsys.readouterr().out)
    assert len(lines) == 1
    assert lines[0].startswith("[config] note: TRAIN.PROPOSAL_METHOD = 'gt' is accepted")
    assert "--proposals FILE" in lines[0]


def test_alt_opt_cfg_file_prints_no_notes(tmp_path, capsys):
    path = tmp_path / "faster_rcnn_alt_opt.yml"
    path.write_text(ALT_OPT_YML)
    c = cfg_from_file(str(path), default_config())
    assert c.EXP_DIR == "faster_rcnn_alt_opt" and c.TRAIN.BG_THRESH_LO == 0.0
    assert c.TEST.HAS_RPN is True
    assert notes(capsys.readouterr().out) == []


def test_one_note_per_not_used_key(tmp_path, capsys):
    path = tmp_path / "everything.yml"
    path.write_text("""\
EXP_DIR: all_keys
ROOT_DIR: /home/me/py-faster-rcnn
DATA_DIR: /home/me/py-faster-rcnn/data
MODELS_DIR: /home/me/py-faster-rcnn/models/pascal_voc
MATLAB: /usr/local/bin/matlab
DEDUP_BOXES: 0.125
RNG_SEED: 7
TRAIN:
  PROPOSAL_METHOD: rpn
  SCALES: [400, 500]
TEST:
  PROPOSAL_METHOD: selective_search
  SVM: True
  NMS: 0.4
""")
    c = cfg_from_file(str(path), default_config())
    assert c.MATLAB == "/usr/local/bin/matlab" and c.TEST.SVM is True
    assert c.DEDUP_BOXES == 0.125 and c.RNG_SEED == 7 and c.TRAIN.SCALES == (400, 500)
    lines = notes(capsys.readouterr().out)
    named = [line.split()[2] for line in lines]
    assert sorted(named) == sorted(NOT_USED)  # each once, none for the keys that apply
    svm = next(line for line in lines if "TEST.SVM" in line)
    assert "softmax scores are used" in svm
    matlab = next(line for line in lines if "MATLAB" in line)
    assert "evaluation is in Python" in matlab
    root = next(line for line in lines if "ROOT_DIR" in line)
    assert "--dataset, --root, --net" in root


def test_set_list_notes_not_used_keys(capsys):
    c = default_config()
    cfg_from_list(["TEST.SVM", "True", "TEST.NMS", "0.5", "EXP_DIR", "x"], c)
    lines = notes(capsys.readouterr().out)
    assert len(lines) == 1 and lines[0].startswith("[config] note: TEST.SVM = True")
    with pytest.raises(ConfigError):  # a failed merge prints nothing
        cfg_from_list(["MATLAB", "'m'", "TRAIN.BAD", "1"], c)
    assert notes(capsys.readouterr().out) == [] and c.MATLAB == "matlab"


def test_not_used_keys_keep_their_types():
    with pytest.raises(ConfigError, match="TEST.SVM"):
        cfg_from_list(["TEST.SVM", "1"], default_config())
    with pytest.raises(ConfigError, match="ROOT_DIR"):
        config.merge_dict({"ROOT_DIR": 3}, default_config())


def test_dedup_boxes():
    c = default_config()
    assert c.DEDUP_BOXES == 1.0 / 16
    assert next(k for k in config.KEYS if k.name == "DEDUP_BOXES").applies
    cfg_from_list(["DEDUP_BOXES", "0.125"], c)
    assert c.DEDUP_BOXES == 0.125
    cfg_from_list(["DEDUP_BOXES", "0"], c)
    assert c.DEDUP_BOXES == 0.0 and isinstance(c.DEDUP_BOXES, float)
    with pytest.raises(ConfigError, match="DEDUP_BOXES"):
        cfg_from_list(["DEDUP_BOXES", "-1"], c)
    with pytest.raises(ConfigError, match="DEDUP_BOXES"):
        cfg_from_list(["DEDUP_BOXES", "'sixteenth'"], c)


@pytest.mark.parametrize("text", [
    "PIXEL_MEANS: [[[102.9801, 115.9465, 122.7717]]]\n",
    "PIXEL_MEANS: [[102.9801, 115.9465, 122.7717]]\n",
    "PIXEL_MEANS: [102.9801, 115.9465, 122.7717]\n",
    "PIXEL_MEANS:\n- - - 102.9801\n    - 115.9465\n    - 122.7717\n",
])
def test_pixel_means_nested_form(tmp_path, text):
    path = tmp_path / "means.yml"
    path.write_text(text)
    c = cfg_from_file(str(path), default_config())
    assert c.PIXEL_MEANS == (102.9801, 115.9465, 122.7717)


def test_pixel_means_nested_via_set_and_numpy():
    import numpy as np

    c = default_config()
    cfg_from_list(["PIXEL_MEANS", "[[[1, 2, 3]]]"], c)
    assert c.PIXEL_MEANS == (1.0, 2.0, 3.0)
    config.merge_dict({"PIXEL_MEANS": np.array([[[4.0, 5.0, 6.0]]])}, c)
    assert c.PIXEL_MEANS == (4.0, 5.0, 6.0)


@pytest.mark.parametrize("value", [
    "[[[1, 2]]]", "[[1, 2, 3], [4, 5, 6]]", "[[1], [2], [3]]", "[[[1, 2, 3]], [[4, 5, 6]]]",
    "[[]]", "[]",
])
def test_pixel_means_other_shapes_are_rejected(value):
    with pytest.raises(ConfigError, match="PIXEL_MEANS"):
        cfg_from_list(["PIXEL_MEANS", value], default_config())


def test_nesting_is_only_for_pixel_means():
    with pytest.raises(ConfigError, match="TRAIN.BBOX_NORMALIZE_STDS"):
        cfg_from_list(["TRAIN.BBOX_NORMALIZE_STDS", "[[0.1, 0.1, 0.2, 0.2]]"], default_config())


def test_unknown_key_in_a_py_faster_rcnn_file_still_raises(tmp_path):
    path = tmp_path / "typo.yml"
    path.write_text(END2END_YML.replace("RPN_BATCHSIZE", "RPN_BATCH_SIZE"))
    with pytest.raises(ConfigError, match="unknown config key TRAIN.RPN_BATCH_SIZE"):
        cfg_from_file(str(path), default_config())
    path.write_text("TEST:\n  PROPOSAL_METHOD: gt\n  RPN_BATCHSIZE: 256\n")
    with pytest.raises(ConfigError, match=r"did you mean TRAIN.RPN_BATCHSIZE\?"):
        cfg_from_file(str(path), default_config())


def test_has_rpn_docs_say_the_net_decides():
    docs = {k.name: k.doc for k in config.KEYS}
    assert "3 tops" in docs["TRAIN.HAS_RPN"] and "6 tops" in docs["TRAIN.HAS_RPN"]
    assert "'rois' input" in docs["TEST.HAS_RPN"]
    assert "informational" in docs["TRAIN.HAS_RPN"] and "informational" in docs["TEST.HAS_RPN"]


def test_saved_cfg_reads_back_without_notes(tmp_path, capsys):
    c = default_config()
    cfg_from_list(["TRAIN.PROPOSAL_METHOD", "gt", "TEST.NMS", "0.4"], c)
    capsys.readouterr()
    path = tmp_path / "cfg.yml"
    config.write_cfg(str(path), c)
    again = cfg_from_file(str(path), default_config())
    assert again == c
    lines = notes(capsys.readouterr().out)
    assert [line.split()[2] for line in lines] == ["TRAIN.PROPOSAL_METHOD"]


def test_use_gpu_nms_is_auto_true_or_false(tmp_path):
    assert default_config().USE_GPU_NMS == "auto"
    for text, value in (("True", True), ("False", False), ("auto", "auto"), ("'auto'", "auto"),
                        ("AUTO", "auto")):
        c = cfg_from_list(["USE_GPU_NMS", text], default_config())
        assert c.USE_GPU_NMS == value and type(c.USE_GPU_NMS) is type(value)
    path = tmp_path / "nms.yml"
    for text, value in (("true", True), ("false", False), ("auto", "auto")):
        path.write_text(f"USE_GPU_NMS: {text}\n")
        assert cfg_from_file(str(path), default_config()).USE_GPU_NMS == value
    saved = tmp_path / "saved.yml"
    import yaml
    saved.write_text(yaml.safe_dump(config.cfg_to_dict(default_config())))
    assert cfg_from_file(str(saved), default_config()).USE_GPU_NMS == "auto"


@pytest.mark.parametrize("text", ["1", "0", "gpu", "None", "(True,)", "'yes'"])
def test_use_gpu_nms_rejects_other_values(text, tmp_path):
    with pytest.raises(ConfigError, match=r"USE_GPU_NMS: expected true, false or 'auto'"):
        cfg_from_list(["USE_GPU_NMS", text], default_config())
    path = tmp_path / "bad.yml"
    path.write_text("USE_GPU_NMS: gpu\n")
    with pytest.raises(ConfigError, match="USE_GPU_NMS"):
        cfg_from_file(str(path), default_config())
