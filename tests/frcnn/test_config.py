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
