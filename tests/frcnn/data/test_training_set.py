"""frcnn.data.training_set: the one training-set path of --net, --solver and the data
layer's param_str mode."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.data.datasets import get_dataset
from frcnn.data.roidb import training_roidb
from frcnn.data.training_set import build_roidb, check_mode, is_fast_rcnn


@pytest.mark.parametrize("tops, has_rpn, fast", [(3, True, False), (6, True, True),
                                                 (3, False, True), (6, False, True)])
def test_py_faster_rcnns_rule(tops, has_rpn, fast):
    assert is_fast_rcnn(tops, has_rpn) is fast


def test_each_kind_gets_what_it_needs():
    check_mode(False, 1, False, "layer 'data'", 3)
    check_mode(True, 2, True, "layer 'data'", 6)
    with pytest.raises(ValueError, match=r"layer 'data' has 6 tops: a Fast R-CNN net.*"
                                         r"--proposals FILE"):
        check_mode(True, 2, False, "layer 'data'", 6)
    with pytest.raises(ValueError, match="one image per minibatch; cfg TRAIN.IMS_PER_BATCH "
                                         "is 2"):
        check_mode(False, 2, False, "layer 'data'", 3)
    with pytest.raises(ValueError, match="proposals given, but layer 'data' is end to end"):
        check_mode(False, 1, True, "layer 'data'", 3)


def test_end_to_end_is_training_roidb(synth_dir):
    records = get_dataset("synth_train", root=str(synth_dir)).load(log=None)
    built = build_roidb(records, 4, False, flip=True, keep_empty=True)
    expected = training_roidb(records, 4, flip=True, keep_empty=True, log=None)
    assert built.means is None and built.stds is None
    assert len(built.roidb) == len(expected)
    for a, b in zip(built.roidb, expected):
        assert a["image"] == b["image"] and a["flipped"] == b["flipped"]
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
