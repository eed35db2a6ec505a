"""frcnn.data.fast_rcnn: its defaults, the cfg mapping, the roidb checks at each bound, and
targets and statistics at their edges (no gt box, a std of exactly 1e-8)."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn import config
from frcnn.data.fast_rcnn import (FastRCNNParams, check_fast_rcnn_roidb, fast_rcnn_params,
                                  fast_rcnn_roidb, has_training_rois, regression_targets,
                                  target_statistics)


def test_defaults_are_py_faster_rcnns():
    assert FastRCNNParams() == FastRCNNParams(
        batch_size=128, fg_fraction=0.25, fg_thresh=0.5, bg_thresh_hi=0.5, bg_thresh_lo=0.1,
        bbox_thresh=0.5, inside_weights=(1.0, 1.0, 1.0, 1.0), ims_per_batch=1)


def test_params_from_the_cfg():
    with config.preserved() as cfg:
        t = cfg.TRAIN
        t.BATCH_SIZE, t.FG_FRACTION, t.FG_THRESH = 64, 0.3, 0.6
        t.BG_THRESH_HI, t.BG_THRESH_LO, t.BBOX_THRESH = 0.45, 0.05, 0.55
        t.BBOX_INSIDE_WEIGHTS, t.IMS_PER_BATCH = [1.0, 0.5, 0.25, 2.0], 2
        p = fast_rcnn_params(cfg)
    assert p == FastRCNNParams(batch_size=64, fg_fraction=0.3, fg_thresh=0.6,
                               bg_thresh_hi=0.45, bg_thresh_lo=0.05, bbox_thresh=0.55,
                               inside_weights=(1.0, 0.5, 0.25, 2.0), ims_per_batch=2)
    assert isinstance(p.inside_weights, tuple)


def test_params_check_bounds():
    FastRCNNParams(batch_size=1).check()
    FastRCNNParams(bg_thresh_lo=0.0, bg_thresh_hi=0.0).check()
    FastRCNNParams(bg_thresh_lo=0.5, bg_thresh_hi=0.5).check()
    with pytest.raises(ValueError, match="TRAIN.IMS_PER_BATCH must be >= 1, got 0"):
        FastRCNNParams(ims_per_batch=0).check()
    for size in (0, -2):
        with pytest.raises(ValueError, match=rf"TRAIN.BATCH_SIZE \({size}\) must be -1 or a "
                                             r"positive multiple"):
            FastRCNNParams(batch_size=size).check()
    with pytest.raises(ValueError, match=r"TRAIN.BG_THRESH_LO \(-0.1\) must be in \[0, "
                                         r"BG_THRESH_HI \(0.5\)\]"):
        FastRCNNParams(bg_thresh_lo=-0.1).check()


def _entry(classes, n=None):
    n = len(classes) if n is None else n
    return {"image": "x.jpg", "flipped": False, "boxes": np.zeros((n, 4), np.float32),
            "max_overlaps": np.zeros(n, np.float32), "max_classes": np.array(classes),
            "bbox_targets": np.zeros((n, 5), np.float32)}


def test_roidb_checks_at_each_bound():
    check_fast_rcnn_roidb([_entry([0, 2, 1])], 3)
    check_fast_rcnn_roidb([_entry([])], 3)
    for classes in ([0, 3], [3, 0], [-1, 2], [2, -1]):
        with pytest.raises(ValueError, match=r"roidb entry 0 \(x.jpg\): max_classes outside "
                                             r"0..2"):
            check_fast_rcnn_roidb([_entry(classes)], 3)
    with pytest.raises(ValueError, match="the roidb is empty"):
        check_fast_rcnn_roidb([], 3)
    bad = _entry([0, 1])
    for key, value in (("bbox_targets", np.zeros((2, 4))), ("bbox_targets", np.zeros((3, 5))),
                       ("max_overlaps", np.zeros(3))):
        with pytest.raises(ValueError, match=r"roidb entry 1 \(x.jpg\): boxes \(2\), "
                                             r"max_overlaps and bbox_targets"):
            check_fast_rcnn_roidb([_entry([0]), {**bad, key: value}], 3)


# ----------------------------------------------------------------------------- targets

def test_no_gt_box_means_no_target_even_at_threshold_zero():
    e = {"boxes": np.array([[0, 0, 9, 9], [5, 5, 20, 20]], np.float32),
         "gt_classes": np.zeros(2, np.int32), "max_overlaps": np.zeros(2, np.float32),
         "max_classes": np.zeros(2, np.int32)}
    np.testing.assert_array_equal(regression_targets(e, 0.0), np.zeros((2, 5)))


def test_a_std_of_exactly_1e_8_is_kept_and_below_it_is_replaced():
    # class 1, dx column: values 1e-8 and -1e-8: mean 0, std exactly 1e-8
    e = {"bbox_targets": np.array([[1, 1e-8, 0.5, 0, 0], [1, -1e-8, 0.5, 0, 0]])}
    means, stds = target_statistics([e], 2)
    assert stds.dtype == np.float32
    assert stds[1, 0] == np.float32(1e-8) and stds[1, 1] == 1.0  # constant: unscaled
    np.testing.assert_array_equal(means[1], [0, 0.5, 0, 0])
    np.testing.assert_array_equal(stds[0], [1, 1, 1, 1])


def test_fg_or_bg_rois_make_an_image_usable():
    p = FastRCNNParams(fg_thresh=0.5, bg_thresh_hi=0.5, bg_thresh_lo=0.1)
    for overlaps, usable in (([0.8, 0.05], True),    # a foreground, the rest ignored
                             ([0.3, 0.05], True),    # a background
                             ([0.5], True), ([0.1], True),
                             ([0.05, 0.0], False), ([], False)):
        assert has_training_rois({"max_overlaps": np.array(overlaps)}, p) is usable


def test_statistics_computed_from_the_data_when_not_given(tmp_path):
    import cv2

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((30, 40, 3), np.uint8))
    rec = {"id": "a", "image": str(path), "width": 40, "height": 30,
           "boxes": np.array([[0, 0, 9, 9]], np.float32), "gt_classes": np.array([1]),
           "difficult": np.array([False])}
    # proposals [0, 0, 4, 9] (IoU 0.5 with the gt box: dx 0.5, dw log 2) and far away
    props = [np.array([[0, 0, 4, 9], [20, 20, 29, 29]], np.float32)]
    roidb, means, stds = fast_rcnn_roidb([rec], props, 3, flip=False,
                                         params=FastRCNNParams(bg_thresh_lo=0.0),
                                         normalize=False, log=None)
    # class 1 has two targets: the gt box itself (0, 0, 0, 0) and (0.5, 0, log 2, 0)
    np.testing.assert_allclose(means[1], [0.25, 0, np.log(2) / 2, 0], rtol=1e-6)
    np.testing.assert_allclose(stds[1], [0.25, 1, np.log(2) / 2, 1], rtol=1e-6)
    np.testing.assert_array_equal(means[2], [0, 0, 0, 0])
    np.testing.assert_array_equal(stds[2], [1, 1, 1, 1])
    np.testing.assert_allclose(roidb[0]["bbox_targets"][1], [1, 0.5, 0, np.log(2), 0],
                               rtol=1e-6)
