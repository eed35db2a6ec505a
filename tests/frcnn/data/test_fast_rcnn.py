"""Fast R-CNN roidb and minibatches from precomputed proposals (frcnn.data.fast_rcnn)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from frcnn.data.fast_rcnn import (FastRCNNParams, add_proposals, check_fast_rcnn_roidb,
                                  fast_rcnn_roidb, get_fast_rcnn_minibatch, has_training_rois,
                                  normalize_targets, regression_targets, sample_image_rois,
                                  target_statistics)
from frcnn.data.minibatch import BlobSettings

K = 3  # background + 2 classes


def plain_entry(boxes, classes, width=40, height=30, image="im.png"):
    classes = np.asarray(classes, np.int32)
    overlaps = np.zeros((len(classes), K), np.float32)
    overlaps[np.arange(len(classes)), classes] = 1
    return {"image": image, "width": width, "height": height,
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "gt_classes": classes,
            "gt_overlaps": overlaps, "max_classes": classes.copy(),
            "max_overlaps": np.ones(len(classes), np.float32), "flipped": False,
            "difficult": np.zeros(len(classes), bool)}


def test_add_proposals_merges_in_py_faster_rcnn_layout():
    entry = plain_entry([[0, 0, 9, 9]], [2])
    # IoU with the gt box: 1, 50 / 100 = 0.5, 0
    out = add_proposals(entry, [[0, 0, 9, 9], [0, 0, 4, 9], [20, 20, 29, 29]], K)
    assert out["gt_classes"].tolist() == [2, 0, 0, 0]
    np.testing.assert_allclose(out["gt_overlaps"], [[0, 0, 1], [0, 0, 1], [0, 0, 0.5],
                                                    [0, 0, 0]])
    assert out["max_classes"].tolist() == [2, 2, 2, 0]
    np.testing.assert_allclose(out["max_overlaps"], [1, 1, 0.5, 0])
    assert out["boxes"].shape == (4, 4) and out["difficult"].tolist() == [False] * 4
    assert entry["boxes"].shape == (1, 4)  # the input entry is not modified


def test_add_proposals_without_gt_boxes_gives_background_only():
    out = add_proposals(plain_entry(np.zeros((0, 4)), []), [[1, 1, 5, 5]], K)
    assert out["max_classes"].tolist() == [0] and out["max_overlaps"].tolist() == [0]


def test_regression_targets_hand_computed():
    e = add_proposals(plain_entry([[0, 0, 9, 9]], [2]), [[0, 0, 4, 9], [20, 20, 29, 29]], K)
    t = regression_targets(e, bbox_thresh=0.5)
    # [0, 0, 4, 9] -> [0, 0, 9, 9]: w 5 -> 10, centre 2.5 -> 5: dx = 2.5 / 5, dw = log 2
    np.testing.assert_allclose(t, [[2, 0, 0, 0, 0], [2, 0.5, 0, math.log(2), 0],
                                   [0, 0, 0, 0, 0]], atol=1e-6)
    # the threshold is inclusive
    assert regression_targets(e, bbox_thresh=0.51)[1].tolist() == [0, 0, 0, 0, 0]


def test_target_statistics_and_normalisation_per_class():
    e = {"bbox_targets": np.array([[1, 0.5, 0.2, 0.3, 0], [1, -0.5, 0.2, 0.1, 0],
                                   [0, 0, 0, 0, 0]], np.float32)}
    means, stds = target_statistics([e], K)
    np.testing.assert_allclose(means, [[0, 0, 0, 0], [0, 0.2, 0.2, 0], [0, 0, 0, 0]],
                               atol=1e-6)
    # a constant column (std 0) and an unseen class are left unscaled
    np.testing.assert_allclose(stds, [[1, 1, 1, 1], [0.5, 1, 0.1, 1], [1, 1, 1, 1]],
                               atol=1e-6)
    normalize_targets([e], means, stds)
    np.testing.assert_allclose(e["bbox_targets"], [[1, 1, 0, 1, 0], [1, -1, 0, -1, 0],
                                                   [0, 0, 0, 0, 0]], atol=1e-5)


def test_normalisation_with_four_fixed_values():
    e = {"bbox_targets": np.array([[2, 0.1, 0.2, 0.4, -0.2]], np.float32)}
    normalize_targets([e], (0.0, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2))
    np.testing.assert_allclose(e["bbox_targets"], [[2, 1, 2, 2, -1]], atol=1e-5)


def sampled_entry(num_fg, num_bg, num_ignored=0):
    n = num_fg + num_bg + num_ignored
    overlaps = np.array([0.8] * num_fg + [0.2] * num_bg + [0.05] * num_ignored, np.float32)
    classes = np.array([1] * num_fg + [0] * (num_bg + num_ignored), np.int32)
    targets = np.zeros((n, 5), np.float32)
    targets[:num_fg, 0] = 1
    targets[:num_fg, 1:] = [0.1, -0.2, 0.3, -0.4]
    return {"image": "x", "flipped": False, "boxes": np.tile([[0, 0, 9, 9]], (n, 1)),
            "max_overlaps": overlaps, "max_classes": classes, "bbox_targets": targets}


def test_sampling_takes_fg_share_then_fills_with_bg():
    params = FastRCNNParams(bg_thresh_lo=0.1, inside_weights=(1, 2, 3, 4))
    e = sampled_entry(num_fg=10, num_bg=20, num_ignored=5)
    boxes, labels, targets, inside = sample_image_rois(e, 2, 8, K, params,
                                                       np.random.default_rng(0))
    assert labels.tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(targets[:2, 4:8], [[0.1, -0.2, 0.3, -0.4]] * 2)
    assert not targets[:, :4].any() and not targets[:, 8:].any() and not targets[2:].any()
    np.testing.assert_allclose(inside[:2, 4:8], [[1, 2, 3, 4]] * 2)
    assert not inside[2:].any()


def test_sampling_without_enough_fg_and_all_rois_mode():
    params = FastRCNNParams(bg_thresh_lo=0.1)
    e = sampled_entry(num_fg=1, num_bg=3, num_ignored=2)
    _, labels, _, _ = sample_image_rois(e, 2, 8, K, params, np.random.default_rng(0))
    assert labels.tolist() == [1, 0, 0, 0]  # 1 fg, then only 3 bg exist
    _, labels, _, _ = sample_image_rois(e, 0, -1, K, params, np.random.default_rng(0))
    assert labels.tolist() == [1, 0, 0, 0]  # -1: every fg and bg, none below BG_THRESH_LO
    params = FastRCNNParams(bg_thresh_lo=0.0)
    _, labels, _, _ = sample_image_rois(e, 0, -1, K, params, np.random.default_rng(0))
    assert labels.tolist() == [1, 0, 0, 0, 0, 0]


def test_threshold_boundaries_are_py_faster_rcnns():
    e = sampled_entry(0, 0)
    e.update(max_overlaps=np.array([0.5, 0.49999, 0.1, 0.09999], np.float32),
             max_classes=np.array([1, 1, 1, 1], np.int32),
             boxes=np.zeros((4, 4), np.float32), bbox_targets=np.zeros((4, 5), np.float32))
    params = FastRCNNParams(fg_thresh=0.5, bg_thresh_hi=0.5, bg_thresh_lo=0.1)
    _, labels, _, _ = sample_image_rois(e, 0, -1, K, params, np.random.default_rng(0))
    assert labels.tolist() == [1, 0, 0]  # fg >= 0.5; bg in [0.1, 0.5)
    assert has_training_rois(e, params)
    e["max_overlaps"] = np.array([0.05], np.float32)
    assert not has_training_rois(e, params)


def test_params_check():
    FastRCNNParams(batch_size=128, ims_per_batch=2).check()
    FastRCNNParams(batch_size=-1, ims_per_batch=2).check()
    with pytest.raises(ValueError, match="multiple of TRAIN.IMS_PER_BATCH"):
        FastRCNNParams(batch_size=127, ims_per_batch=2).check()
    with pytest.raises(ValueError, match="BG_THRESH_LO"):
        FastRCNNParams(bg_thresh_lo=0.6).check()


def write_image(path, width, height):
    import cv2

    cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))
    return str(path)


def records(tmp_path):
    return [{"id": "a", "image": write_image(tmp_path / "a.png", 40, 30), "width": 40,
             "height": 30, "boxes": np.array([[0, 0, 9, 9]], np.float32),
             "gt_classes": np.array([1], np.int32), "difficult": np.array([False])},
            {"id": "b", "image": write_image(tmp_path / "b.png", 20, 40), "width": 20,
             "height": 40, "boxes": np.array([[2, 2, 11, 11]], np.float32),
             "gt_classes": np.array([2], np.int32), "difficult": np.array([False])}]


def test_roidb_flips_proposals_with_gt_and_normalises(tmp_path):
    recs = records(tmp_path)
    proposals = [np.array([[0, 0, 4, 9], [20, 10, 39, 29]], np.float32),
                 np.array([[2, 2, 11, 6]], np.float32)]
    roidb, means, stds = fast_rcnn_roidb(recs, proposals, K, flip=True,
                                         params=FastRCNNParams(bg_thresh_lo=0.0),
                                         stats=((0, 0, 0, 0), (0.1, 0.1, 0.2, 0.2)), log=None)
    assert len(roidb) == 4 and [e["flipped"] for e in roidb] == [False, False, True, True]
    # W = 40: x1' = W - x2 - 1
    np.testing.assert_allclose(roidb[2]["boxes"], [[30, 0, 39, 9], [35, 0, 39, 9],
                                                   [0, 10, 19, 29]])
    np.testing.assert_allclose(roidb[0]["bbox_targets"][1], [1, 5, 0, math.log(2) / 0.2, 0],
                               rtol=1e-5)
    assert means.shape == stds.shape == (K, 4)
    np.testing.assert_allclose(stds[1], [0.1, 0.1, 0.2, 0.2])
    check_fast_rcnn_roidb(roidb, K)


def test_roidb_needs_a_set_per_image(tmp_path):
    with pytest.raises(ValueError, match="1 proposal sets for 2 images"):
        fast_rcnn_roidb(records(tmp_path), [np.zeros((0, 4))], K, False, FastRCNNParams(),
                        log=None)


def test_check_roidb_names_the_entry():
    with pytest.raises(ValueError, match=r"roidb entry 0 \(x\): missing keys \['bbox_targets'\]"):
        check_fast_rcnn_roidb([{k: v for k, v in sampled_entry(1, 1).items()
                                if k != "bbox_targets"}], K)


def test_minibatch_of_two_images(tmp_path):
    recs = records(tmp_path)
    proposals = [np.array([[0, 0, 4, 9], [20, 10, 39, 29]], np.float32),
                 np.array([[2, 2, 11, 6], [0, 20, 19, 39]], np.float32)]
    # 4 RoIs per image, round(0.25 * 4) = 1 foreground; each image has one background RoI
    params = FastRCNNParams(batch_size=8, ims_per_batch=2, bg_thresh_lo=0.0)
    roidb, _, _ = fast_rcnn_roidb(recs, proposals, K, flip=False, params=params,
                                  stats=((0, 0, 0, 0), (0.1, 0.1, 0.2, 0.2)), log=None)
    settings = BlobSettings(scales=(60,), max_size=100, pixel_means=(0, 0, 0))
    blobs = get_fast_rcnn_minibatch(roidb, settings, K, params, np.random.default_rng(0))
    # image a: 30x40 -> scale 2 (60x80); image b: 40x20 -> scale 3 (120 > 100: 2.5)
    assert blobs["data"].shape == (2, 3, 100, 80)
    rois = blobs["rois"]
    assert rois.shape == (4, 5) and rois[:2, 0].tolist() == [0, 0] and rois[2:, 0].tolist() == [1, 1]
    assert blobs["labels"].tolist() == [1, 0, 2, 0]
    np.testing.assert_allclose(rois[0, [1, 2, 4]], [0, 0, 18])  # the gt box or [0, 0, 4, 9]
    np.testing.assert_allclose(rois[1, 1:], np.array([20, 10, 39, 29]) * 2)
    np.testing.assert_allclose(rois[3, 1:], np.array([0, 20, 19, 39]) * 2.5)
    assert blobs["bbox_targets"].shape == (4, 4 * K)
    np.testing.assert_array_equal(blobs["bbox_outside_weights"],
                                  (blobs["bbox_inside_weights"] > 0).astype(np.float32))
