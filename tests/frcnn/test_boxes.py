"""bbox_overlaps (Cython) against a brute-force loop; box transforms and clipping."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import frcnn.boxes as fb
from frcnn.boxes import (BBOX_XFORM_CLIP, bbox_overlaps, bbox_overlaps_reference,
                         bbox_transform, bbox_transform_inv, clip_boxes)


def brute_force_overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One pair at a time, inclusive widths, float64 (py-faster-rcnn's definition)."""
    out = np.zeros((len(a), len(b)))
    for i, (ax1, ay1, ax2, ay2) in enumerate(np.asarray(a, np.float64)):
        for j, (bx1, by1, bx2, by2) in enumerate(np.asarray(b, np.float64)):
            iw = min(ax2, bx2) - max(ax1, bx1) + 1
            ih = min(ay2, by2) - max(ay1, by1) + 1
            if iw > 0 and ih > 0:
                area_a = (ax2 - ax1 + 1) * (ay2 - ay1 + 1)
                area_b = (bx2 - bx1 + 1) * (by2 - by1 + 1)
                out[i, j] = iw * ih / (area_a + area_b - iw * ih)
    return out


def random_boxes(rng: np.random.Generator, n: int, integer: bool = False) -> np.ndarray:
    x1 = rng.uniform(0, 100, n)
    y1 = rng.uniform(0, 100, n)
    w = rng.uniform(1, 60, n)
    h = rng.uniform(1, 60, n)
    boxes = np.stack([x1, y1, x1 + w - 1, y1 + h - 1], axis=1)
    return np.round(boxes / 5) * 5 if integer else boxes


# ------------------------------------------------------------------ overlaps

def test_overlaps_example():
    a = np.array([[0, 0, 9, 9], [0, 0, 9, 4]], np.float32)
    b = np.array([[0, 0, 9, 9], [10, 10, 20, 20], [5, 0, 14, 9]], np.float32)
    expected = np.array([[1.0, 0.0, 50 / 150], [0.5, 0.0, 25 / 125]])
    np.testing.assert_allclose(bbox_overlaps(a, b), expected, rtol=1e-15)
    assert bbox_overlaps(a, b).dtype == np.float64


def test_overlaps_match_brute_force_and_reference():
    rng = np.random.default_rng(0)
    for trial in range(200):
        a = random_boxes(rng, int(rng.integers(0, 30)), integer=trial % 2 == 0)
        b = random_boxes(rng, int(rng.integers(0, 30)), integer=trial % 2 == 0)
        got = bbox_overlaps(a, b)
        assert got.shape == (len(a), len(b))
        np.testing.assert_array_equal(got, brute_force_overlaps(a, b))
        np.testing.assert_array_equal(got, bbox_overlaps_reference(a, b))


def test_overlaps_larger_input_matches_reference():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 2000), random_boxes(rng, 50)
    np.testing.assert_array_equal(bbox_overlaps(a, b), bbox_overlaps_reference(a, b))


@settings(max_examples=200, deadline=None)
@given(a=st.lists(st.tuples(*[st.integers(-5, 20)] * 4), max_size=8),
       b=st.lists(st.tuples(*[st.integers(-5, 20)] * 4), max_size=8))
def test_property_overlaps_brute_force(a, b):
    # Arbitrary corners, including inverted and zero-area boxes.
    a = np.array(a, np.float64).reshape(-1, 4)
    b = np.array(b, np.float64).reshape(-1, 4)
    np.testing.assert_array_equal(bbox_overlaps(a, b), brute_force_overlaps(a, b))


def test_overlaps_empty_and_dtypes():
    a = random_boxes(np.random.default_rng(2), 5)
    assert bbox_overlaps(a, np.zeros((0, 4))).shape == (5, 0)
    assert bbox_overlaps(np.zeros((0, 4)), a).shape == (0, 5)
    assert bbox_overlaps(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 0)
    ints = np.array([[0, 0, 9, 9]], np.uint16)  # roidb boxes are uint16
    np.testing.assert_array_equal(bbox_overlaps(ints, ints), [[1.0]])
    np.testing.assert_array_equal(bbox_overlaps(a.astype(np.float32), a),
                                  bbox_overlaps_reference(a.astype(np.float32), a))


def test_overlaps_without_the_extension(monkeypatch):
    a = random_boxes(np.random.default_rng(3), 20)
    expected = bbox_overlaps(a, a)
    monkeypatch.setattr(fb, "_bbox", None)
    np.testing.assert_array_equal(bbox_overlaps(a, a), expected)


def test_overlaps_bad_input():
    good = np.zeros((2, 4))
    with pytest.raises(ValueError, match="boxes must have shape"):
        bbox_overlaps(np.zeros((2, 5)), good)
    with pytest.raises(ValueError, match="query_boxes must have shape"):
        bbox_overlaps(good, np.zeros(4))
    with pytest.raises(ValueError, match="query_boxes must be"):
        bbox_overlaps(good, np.zeros((2, 4), bool))
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="query_boxes contains NaN"):
        bbox_overlaps(good, bad)
    with pytest.raises(ValueError, match="boxes contains NaN"):
        bbox_overlaps(bad, good)


# ------------------------------------------------------------------ transforms

def test_transform_example():
    ex = np.array([[0, 0, 9, 19]], np.float64)    # w 10, h 20, centre (5, 10)
    gt = np.array([[5, 0, 24, 9]], np.float64)    # w 20, h 10, centre (15, 5)
    np.testing.assert_allclose(bbox_transform(ex, gt),
                               [[1.0, -0.25, math.log(2.0), math.log(0.5)]], rtol=1e-15)


def test_transform_dtype_and_empty():
    ex = random_boxes(np.random.default_rng(4), 6).astype(np.float32)
    assert bbox_transform(ex, ex).dtype == np.float32
    assert bbox_transform(ex, ex.astype(np.float64)).dtype == np.float64
    np.testing.assert_array_equal(bbox_transform(ex, ex), np.zeros((6, 4), np.float32))
    assert bbox_transform(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)


def py_faster_rcnn_decode(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """py-faster-rcnn's bbox_transform_inv, transcribed (float64, no dw clamp): the oracle."""
    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    out = np.zeros(deltas.shape)
    for k in range(deltas.shape[1] // 4):
        dx, dy, dw, dh = (deltas[:, 4 * k + j] for j in range(4))
        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        pred_w = np.exp(dw) * widths
        pred_h = np.exp(dh) * heights
        out[:, 4 * k + 0] = pred_ctr_x - 0.5 * pred_w
        out[:, 4 * k + 1] = pred_ctr_y - 0.5 * pred_h
        out[:, 4 * k + 2] = pred_ctr_x + 0.5 * pred_w
        out[:, 4 * k + 3] = pred_ctr_y + 0.5 * pred_h
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_inv_is_py_faster_rcnns_decode(dtype):
    boxes = np.array([[0, 0, 9, 9], [10, 20, 29, 59]], dtype)
    deltas = np.zeros((2, 12), dtype)
    # class 1, box 0: w = h = 10, ctr (5, 5); dx = 0.1 -> ctr_x 0.1 * 10 + 5 = 6;
    # dw = log 2 -> w 20: x1 = 6 - 10 = -4, x2 = 6 + 10 = 16; y: y1 = 5 - 5 = 0, y2 = 5 + 5 = 10
    deltas[0, 4:8] = [0.1, 0.0, math.log(2.0), 0.0]
    # class 2, box 1: w 20, h 40, ctr (20, 40); dx = -0.25 -> ctr_x -5 + 20 = 15, w 20:
    # x1 = 5, x2 = 25; dy = 0.1 -> ctr_y 4 + 40 = 44, dh = log 0.5 -> h 20: y1 = 34, y2 = 54
    deltas[1, 8:12] = [-0.25, 0.1, 0.0, math.log(0.5)]
    out = bbox_transform_inv(boxes, deltas)
    assert out.shape == (2, 12) and out.dtype == dtype
    # zero deltas: centre and size kept, x2 = ctr + w / 2 = x1 + w, one past the inclusive x2
    np.testing.assert_allclose(out[:, 0:4], [[0, 0, 10, 10], [10, 20, 30, 60]], rtol=1e-6)
    np.testing.assert_allclose(out[0, 4:8], [-4, 0, 16, 10], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out[1, 8:12], [5, 34, 25, 54], rtol=1e-6)
    np.testing.assert_allclose(out[0, 8:12], [0, 0, 10, 10], rtol=1e-6)  # zero deltas
    np.testing.assert_allclose(out[1, 4:8], [10, 20, 30, 60], rtol=1e-6)

    exact = bbox_transform_inv(boxes, deltas, exact_inverse=True)
    assert exact.dtype == dtype
    np.testing.assert_allclose(exact[:, 0:4], boxes, rtol=1e-6)
    np.testing.assert_allclose(exact[0, 4:8], [-4, 0, 15, 9], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(exact[1, 8:12], [5, 34, 24, 53], rtol=1e-6)


def test_transform_inv_matches_py_faster_rcnn_on_random_input():
    rng = np.random.default_rng(6)
    boxes = random_boxes(rng, 300)
    deltas = rng.normal(0, 0.5, (300, 8))  # well inside the dw clamp
    np.testing.assert_allclose(bbox_transform_inv(boxes, deltas),
                               py_faster_rcnn_decode(boxes, deltas), rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(bbox_transform_inv(boxes, deltas, exact_inverse=True),
                                  bbox_transform_inv(boxes, deltas) - np.tile([0, 0, 1, 1], 2))


def test_round_trip():
    """inv(transform(a, b)) == b + [0, 0, 1, 1]; with exact_inverse, == b."""
    rng = np.random.default_rng(5)
    a, b = random_boxes(rng, 500), random_boxes(rng, 500)
    t = bbox_transform(a, b)
    np.testing.assert_allclose(bbox_transform_inv(a, t), b + [0, 0, 1, 1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(bbox_transform_inv(a, t, exact_inverse=True), b,
                               rtol=0, atol=1e-9)


# Sides within a factor 62.5 of each other: larger scale changes hit the dw clamp.
sized_boxes = st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3),
                                 st.floats(8, 480), st.floats(8, 480)), min_size=1, max_size=10)


@settings(max_examples=200, deadline=None)
@given(sized_boxes, sized_boxes)
def test_property_round_trip(a, b):
    n = min(len(a), len(b))
    a = np.array([[x, y, x + w - 1, y + h - 1] for x, y, w, h in a[:n]])
    b = np.array([[x, y, x + w - 1, y + h - 1] for x, y, w, h in b[:n]])
    t = bbox_transform(a, b)
    np.testing.assert_allclose(bbox_transform_inv(a, t), b + [0, 0, 1, 1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(bbox_transform_inv(a, t, exact_inverse=True), b,
                               rtol=0, atol=1e-9)


def test_transform_rejects_degenerate_and_mismatched():
    good = np.array([[0, 0, 9, 9]], np.float64)
    with pytest.raises(ValueError, match="ex_rois.*width or height <= 0"):
        bbox_transform(np.array([[5, 0, 4, 9]], np.float64), good)  # width 0
    with pytest.raises(ValueError, match="ex_rois.*width or height <= 0"):
        bbox_transform(np.array([[0, 5, 9, 2]], np.float64), good)  # height < 0
    with pytest.raises(ValueError, match="gt_rois.*width or height <= 0"):
        bbox_transform(good, np.array([[5, 0, 3, 9]], np.float64))
    with pytest.raises(ValueError, match="same length"):
        bbox_transform(good, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="gt_rois must have shape"):
        bbox_transform(good, np.zeros((1, 5)))
    with pytest.raises(ValueError, match="ex_rois contains NaN"):
        bbox_transform(np.array([[0, 0, np.nan, 9]]), good)


def test_transform_inv_multiclass_and_clamp():
    boxes = np.array([[0, 0, 15, 15], [10, 20, 29, 59]], np.float32)
    deltas = np.zeros((2, 12), np.float32)
    deltas[:, 4:8] = [0.5, -0.5, 0.0, 0.0]             # class 1: shift by half a box
    deltas[:, 8:12] = [0.0, 0.0, 1e4, -1e4]             # class 2: wild scale
    out = bbox_transform_inv(boxes, deltas)
    assert out.shape == (2, 12) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0:4], boxes + np.float32([0, 0, 1, 1]))
    # box 0: w = h = 16, ctr (8, 8); ctr moves to (8 + 8, 8 - 8) = (16, 0), size 16:
    # x1 = 16 - 8 = 8, y1 = 0 - 8 = -8, x2 = 16 + 8 = 24, y2 = 0 + 8 = 8
    np.testing.assert_allclose(out[0, 4:8], [8, -8, 24, 8])
    assert np.isfinite(out).all()
    w = 16 * (1000 / 16)  # dw clamped at log(1000 / 16): pred_w 1000 = x2 - x1
    np.testing.assert_allclose(out[0, 8] - out[0, 10], -w, rtol=1e-5)
    np.testing.assert_allclose(out[0, 11] - out[0, 9], 0, atol=1e-3)  # exp(-1e4) * h = 0
    exact = bbox_transform_inv(boxes, deltas, exact_inverse=True)
    np.testing.assert_allclose(exact[0, 4:8], [8, -8, 23, 7])
    np.testing.assert_allclose(exact[0, 8] - exact[0, 10], -(w - 1), rtol=1e-5)
    assert BBOX_XFORM_CLIP == pytest.approx(math.log(62.5))


def test_transform_inv_shapes_and_errors():
    assert bbox_transform_inv(np.zeros((0, 4)), np.zeros((0, 8), np.float32)).shape == (0, 8)
    assert bbox_transform_inv(np.zeros((0, 4)), np.zeros((0, 8), np.float32)).dtype == np.float32
    empty = bbox_transform_inv(np.zeros((0, 4)), np.zeros((0, 8), np.float32), exact_inverse=True)
    assert empty.shape == (0, 8) and empty.dtype == np.float32
    boxes = np.array([[0, 0, 9, 9]], np.float64)
    with pytest.raises(ValueError, match="deltas must have shape"):
        bbox_transform_inv(boxes, np.zeros((1, 6)))
    with pytest.raises(ValueError, match="deltas must have shape"):
        bbox_transform_inv(boxes, np.zeros((1, 0)))
    with pytest.raises(ValueError, match="same number of rows"):
        bbox_transform_inv(boxes, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="deltas must be float32/float64"):
        bbox_transform_inv(boxes, np.zeros((1, 4), np.int32))
    with pytest.raises(ValueError, match="deltas contains NaN"):
        bbox_transform_inv(boxes, np.array([[0, np.nan, 0, 0]]))


# ------------------------------------------------------------------ clipping

def test_clip_boxes():
    boxes = np.array([[-5, -5, 120, 50, 10, 10, 20, 300]], np.float32)
    out = clip_boxes(boxes, (100, 110))
    np.testing.assert_array_equal(out, [[0, 0, 109, 50, 10, 10, 20, 99]])
    assert out.dtype == np.float32
    assert boxes[0, 0] == -5  # not modified by default
    np.testing.assert_array_equal(clip_boxes(boxes, np.array([100, 110, 1.6])), out)
    np.testing.assert_array_equal(clip_boxes(boxes, (100, 110, 3)), out)  # im.shape
    same = clip_boxes(boxes, (100, 110), copy=False)
    assert same is boxes and boxes[0, 0] == 0
    assert clip_boxes(np.zeros((0, 4)), (10, 10)).shape == (0, 4)


def test_clip_boxes_errors():
    with pytest.raises(ValueError, match="boxes must have shape"):
        clip_boxes(np.zeros((1, 5)), (10, 10))
    with pytest.raises(ValueError, match="im_shape"):
        clip_boxes(np.zeros((1, 4)), (10,))
    with pytest.raises(ValueError, match="im_shape"):
        clip_boxes(np.zeros((1, 4)), (0, 10))
    with pytest.raises(ValueError, match="im_shape"):
        clip_boxes(np.zeros((1, 4)), "abc")
