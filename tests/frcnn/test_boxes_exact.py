"""frcnn.boxes at the boundaries, with hand-computed values: every edge of clip_boxes, boxes
one pixel wide, exact IoU of asymmetric boxes, checks on each argument and dtype."""
from __future__ import annotations

import math

import numpy as np
import pytest

from frcnn.boxes import (BBOX_XFORM_CLIP, bbox_overlaps, bbox_overlaps_reference,
                         bbox_transform, bbox_transform_inv, clip_boxes)

OVERLAPS = (bbox_overlaps, bbox_overlaps_reference)


# ----------------------------------------------------------------------------- overlaps

@pytest.mark.parametrize("overlaps", OVERLAPS)
def test_overlap_of_boxes_offset_in_x_and_y_differently(overlaps):
    # a: x 0..9 (10), y 0..19 (20): area 200.  b: x 4..13 (10), y 10..39 (30): area 300.
    # inter: x 4..9 = 6 (min x2 9, max x1 4), y 10..19 = 10 (min y2 19, max y1 10): 60.
    a = np.array([[0, 0, 9, 19]], np.float64)
    b = np.array([[4, 10, 13, 39]], np.float64)
    assert overlaps(a, b)[0, 0] == 60 / (200 + 300 - 60)
    assert overlaps(b, a)[0, 0] == 60 / (200 + 300 - 60)


@pytest.mark.parametrize("overlaps", OVERLAPS)
def test_overlap_of_nested_boxes_and_of_one_pixel(overlaps):
    # b inside a: inter = area of b (3 x 2 = 6), a is 10 x 8 = 80
    a = np.array([[0, 0, 9, 7]], np.float64)
    b = np.array([[2, 3, 4, 4]], np.float64)
    assert overlaps(a, b)[0, 0] == 6 / 80
    pixel = np.array([[5, 5, 5, 5]], np.float64)  # x2 == x1: one pixel, area 1
    assert overlaps(pixel, pixel)[0, 0] == 1.0
    assert overlaps(a, pixel)[0, 0] == 1 / 80


@pytest.mark.parametrize("overlaps", OVERLAPS)
def test_touching_and_separated_boxes(overlaps):
    a = np.array([[0, 0, 9, 9]], np.float64)
    # sharing the column x = 9: inter 1 x 10 = 10, areas 100 + 100
    assert overlaps(a, np.array([[9, 0, 18, 9]], np.float64))[0, 0] == 10 / 190
    # x1 = x2 + 1: no pixel in common (inter width 0), in x and in y
    assert overlaps(a, np.array([[10, 0, 19, 9]], np.float64))[0, 0] == 0.0
    assert overlaps(a, np.array([[0, 10, 9, 19]], np.float64))[0, 0] == 0.0
    # far apart in x only and in y only: the negative widths do not multiply to > 0
    far = np.array([[50, 50, 60, 60]], np.float64)
    assert overlaps(a, far)[0, 0] == 0.0
    assert overlaps(np.array([[0, 0, 9, 9], [0, 30, 9, 39]], np.float64),
                    np.array([[0, 50, 9, 60], [40, 0, 60, 9]], np.float64)).tolist() == \
        [[0.0, 0.0], [0.0, 0.0]]


def test_reference_equals_the_kernel_on_many_offsets():
    a = np.array([[x, y, x + w, y + h] for x in (0, 3) for y in (1, 4) for w in (0, 5)
                  for h in (2, 7)], np.float64)
    b = a[::-1] + np.array([1, -1, 2, 0])
    np.testing.assert_array_equal(bbox_overlaps_reference(a, b), bbox_overlaps(a, b))


def test_overlaps_refuse_four_k_columns_and_bool_dtype():
    good = np.zeros((1, 4))
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\), got \(1, 8\)"):
        bbox_overlaps(np.zeros((1, 8)), good)
    with pytest.raises(ValueError, match=r"query_boxes must have shape \(N, 4\)"):
        bbox_overlaps_reference(good, np.zeros((1, 8)))
    with pytest.raises(ValueError, match=r"boxes must be float32/float64 \(or integer\), "
                                         r"got dtype bool"):
        bbox_overlaps(np.zeros((1, 4), bool), good)
    with pytest.raises(ValueError, match="boxes contains NaN or infinite"):
        bbox_overlaps_reference(np.array([[0, 0, np.inf, 1]]), good)


# ----------------------------------------------------------------------------- transforms

def test_transform_of_asymmetric_boxes():
    # ex: x 2..5 (w 4, ctr 4), y 10..17 (h 8, ctr 14)
    # gt: x 3..10 (w 8, ctr 7), y 4..5 (h 2, ctr 5)
    # dx = (7 - 4) / 4, dy = (5 - 14) / 8, dw = log(8 / 4), dh = log(2 / 8)
    ex = np.array([[2, 10, 5, 17]], np.float64)
    gt = np.array([[3, 4, 10, 5]], np.float64)
    t = bbox_transform(ex, gt)
    np.testing.assert_allclose(t, [[0.75, -1.125, math.log(2), math.log(0.25)]], rtol=1e-15)
    back = bbox_transform(gt, ex)  # the other way: dx = (4 - 7) / 8, dy = (14 - 5) / 2
    np.testing.assert_allclose(back, [[-0.375, 4.5, math.log(0.5), math.log(4)]], rtol=1e-15)


def test_transform_of_integer_boxes_is_float64():
    ex = np.array([[0, 0, 9, 9]], np.int32)
    gt = np.array([[0, 0, 19, 9]], np.uint16)
    t = bbox_transform(ex, gt)
    assert t.dtype == np.float64
    np.testing.assert_allclose(t, [[0.5, 0.0, math.log(2), 0.0]], rtol=1e-15)
    assert bbox_transform(ex.astype(np.float32), gt).dtype == np.float64


@pytest.mark.parametrize("which", ["ex_rois", "gt_rois"])
def test_transform_accepts_one_pixel_boxes_and_refuses_zero_width_or_height(which):
    good = np.array([[0, 0, 9, 9]], np.float64)

    def call(box):
        box = np.array([box], np.float64)
        return bbox_transform(box, good) if which == "ex_rois" else bbox_transform(good, box)

    assert np.isfinite(call([4, 4, 4, 4])).all()  # x2 == x1, y2 == y1: 1 x 1
    for box in ([4, 0, 3, 9], [0, 4, 9, 3]):      # width 0, then height 0
        with pytest.raises(ValueError, match=rf"{which} has 1 box\(es\) with width or height"):
            call(box)


def test_transform_names_the_first_five_bad_rows():
    ex = np.array([[0, 0, 9, 9]] + [[5, 0, 3, 9]] * 6, np.float64)
    with pytest.raises(ValueError, match=r"ex_rois has 6 box\(es\).*first rows "
                                         r"\[1, 2, 3, 4, 5\]$"):
        bbox_transform(ex, np.zeros((7, 4)))


def test_transform_inv_of_asymmetric_deltas():
    # box x 10..13 (w 4, ctr 12), y 0..9 (h 10, ctr 5); deltas dx 0.5, dy -0.2,
    # dw log 3, dh log 0.5: ctr (12 + 2, 5 - 2) = (14, 3), size 12 x 5:
    # x1 = 14 - 6 = 8, y1 = 3 - 2.5 = 0.5, x2 = 14 + 6 = 20, y2 = 3 + 2.5 = 5.5
    boxes = np.array([[10, 0, 13, 9]], np.int64)
    deltas = np.array([[0.5, -0.2, math.log(3), math.log(0.5)]], np.float64)
    out = bbox_transform_inv(boxes, deltas)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[8, 0.5, 20, 5.5]], rtol=1e-14)
    np.testing.assert_allclose(bbox_transform_inv(boxes, deltas, exact_inverse=True),
                               [[8, 0.5, 19, 4.5]], rtol=1e-14)


def test_transform_inv_clamps_dw_and_dh_exactly_at_log_62_5():
    assert BBOX_XFORM_CLIP == math.log(62.5)
    boxes = np.array([[0, 0, 1, 3]], np.float64)  # w 2, h 4, ctr (1, 2)
    # dw, dh above the clamp act as log(62.5): w 125, h 250; below it they act as given
    big = bbox_transform_inv(boxes, np.array([[0, 0, 10.0, 5.0]]))
    np.testing.assert_allclose(big, [[1 - 62.5, 2 - 125, 1 + 62.5, 2 + 125]], rtol=1e-12)
    just = bbox_transform_inv(boxes, np.array([[0, 0, math.log(62.5), math.log(2)]]))
    np.testing.assert_allclose(just, [[1 - 62.5, 2 - 4, 1 + 62.5, 2 + 4]], rtol=1e-12)
    small = bbox_transform_inv(boxes, np.array([[0, 0, -10.0, 0.0]]))
    np.testing.assert_allclose(small[0, [0, 2]], [1 - math.exp(-10), 1 + math.exp(-10)])


def test_transform_inv_empty_keeps_the_class_columns_and_dtype():
    out = bbox_transform_inv(np.zeros((0, 4), np.int32), np.zeros((0, 12), np.float64))
    assert out.shape == (0, 12) and out.dtype == np.float64


def test_transform_inv_refuses_integer_deltas_without_suggesting_integers():
    with pytest.raises(ValueError, match=r"deltas must be float32/float64, got dtype int64$"):
        bbox_transform_inv(np.zeros((1, 4)), np.zeros((1, 4), np.int64))
    with pytest.raises(ValueError, match=r"deltas must have shape \(N, 4K\) with K >= 1"):
        bbox_transform_inv(np.zeros((1, 4)), np.zeros(4))


# ----------------------------------------------------------------------------- clipping

def test_clip_each_coordinate_past_each_edge():
    # image 30 high, 50 wide: x in [0, 49], y in [0, 29]
    boxes = np.array([
        [-3, -2, -1, -4],        # everything before the near edges -> 0
        [60, 40, 70, 35],        # everything past the far edges -> 49 / 29
        [0, 0, 49, 29],          # exactly on the edges: unchanged
        [49.5, 29.5, 50, 30],    # half a pixel past: -> the last pixel
        [1.5, 2.5, 48.5, 28.5],  # inside: unchanged
    ], np.float64)
    out = clip_boxes(boxes, (30, 50))
    np.testing.assert_array_equal(out, [[0, 0, 0, 0], [49, 29, 49, 29], [0, 0, 49, 29],
                                        [49, 29, 49, 29], [1.5, 2.5, 48.5, 28.5]])


def test_clip_columns_of_every_class_alike():
    row = [55, -1, -7, 31]   # x1 past the right, y1 above, x2 left of 0, y2 past the bottom
    boxes = np.array([row * 3], np.float32)
    out = clip_boxes(boxes, (30, 50))
    np.testing.assert_array_equal(out, [[49, 0, 0, 29] * 3])
    assert out.dtype == np.float32


def test_clip_integer_boxes_and_the_shape_of_im_shape():
    boxes = np.array([[-1, 5, 200, 300]], np.int32)
    out = clip_boxes(boxes, (100, 150), copy=False)
    assert out.dtype == np.float64 and out is not boxes
    np.testing.assert_array_equal(out, [[0, 5, 149, 99]])
    np.testing.assert_array_equal(boxes, [[-1, 5, 200, 300]])
    # only height and width count: what follows them (a scale, channels) is not looked at
    for extra in ((100, 150, 0), (100, 150, np.nan), (100, 150, -2), [[100, 150]]):
        np.testing.assert_array_equal(clip_boxes(boxes, extra), [[0, 5, 149, 99]])


def test_clip_copies_unless_asked_not_to():
    boxes = np.array([[-1, -1, 5, 5]], np.float64)
    out = clip_boxes(boxes, (3, 3))
    assert out is not boxes and boxes[0, 0] == -1 and out.tolist() == [[0, 0, 2, 2]]
    same = clip_boxes(boxes, (3, 3), copy=False)
    assert same is boxes and boxes.tolist() == [[0, 0, 2, 2]]
    listed = clip_boxes([[-1.0, 0.0, 9.0, 1.0]], (2, 4))
    assert listed.tolist() == [[0, 0, 3, 1]]


def test_clip_refuses_bad_boxes_and_image_sizes():
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4K\) with K >= 1"):
        clip_boxes(np.zeros((1, 0)), (10, 10))
    with pytest.raises(ValueError, match="boxes contains NaN"):
        clip_boxes(np.array([[0, 0, np.nan, 1]]), (10, 10))
    with pytest.raises(ValueError, match=r"im_shape must be \(height, width\[, \.\.\.\]\)"):
        clip_boxes(np.zeros((1, 4)), (10, "x"))
    for bad in ((10,), (np.nan, 10), (10, np.inf), (0, 10), (10, 0), (10, -1)):
        with pytest.raises(ValueError, match="im_shape must start with a positive height "
                                             "and width"):
            clip_boxes(np.zeros((1, 4)), bad)


def test_without_the_compiled_kernel_numpy_serves():
    """A fresh interpreter where frcnn._native.bbox fails to import."""
    from tests.conftest import run_python

    out = run_python("""
        import sys
        sys.modules["frcnn._native.bbox"] = None   # import raises ImportError
        import numpy as np
        import frcnn.boxes as fb
        iou = fb.bbox_overlaps(np.array([[0, 0, 9, 19]]), np.array([[4, 10, 13, 39]]))
        print(fb._bbox, repr(float(iou[0, 0])))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", repr(60 / 440)]
