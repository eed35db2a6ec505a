"""frcnn.anchors with hand-computed anchors and every argument check (weakened checks must
fail: mixed good and bad values, single bad values, several-element sizes)."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.anchors import AnchorGrid, generate_anchors, shifted_anchors


def test_one_ratio_one_scale_by_hand():
    # base 10: box [0, 0, 9, 9], w = h = 10, centre (4.5, 4.5).  ratio 2 (h / w):
    # w' = round(sqrt(100 / 2)) = round(7.07) = 7, h' = round(7 * 2) = 14;
    # box [4.5 - 3, 4.5 - 6.5, 4.5 + 3, 4.5 + 6.5] = [1.5, -2, 7.5, 11].
    # scale 3: w 21, h 42 about the same centre: [4.5 - 10, 4.5 - 20.5, 4.5 + 10, 4.5 + 20.5]
    np.testing.assert_array_equal(generate_anchors(10, [2], [3]), [[-5.5, -16, 14.5, 25]])
    # ratio 0.5: w' = round(sqrt(200)) = 14, h' = 7: [-2, 1.5, 11, 7.5]; scale 1 keeps it
    np.testing.assert_array_equal(generate_anchors(10, [0.5], [1]), [[-2, 1.5, 11, 7.5]])


def test_ratio_major_scale_minor_by_hand():
    # base 4: [0, 0, 3, 3], centre (1.5, 1.5).  ratio 1: 4 x 4; ratio 4: w round(sqrt(4)) = 2,
    # h 8.  Scales 1 and 2 of each, ratio-major.
    expected = [[0, 0, 3, 3], [-2, -2, 5, 5],          # ratio 1: 4 x 4, 8 x 8
                [1, -2, 2, 5], [0, -6, 3, 9]]          # ratio 4: 2 x 8, 4 x 16
    np.testing.assert_array_equal(generate_anchors(4, [1, 4], [1, 2]), expected)


def test_scalar_and_array_arguments():
    np.testing.assert_array_equal(generate_anchors(np.float64(4), 1, 2), [[-2, -2, 5, 5]])
    np.testing.assert_array_equal(generate_anchors([4], np.array([1.0]), (2,)),
                                  [[-2, -2, 5, 5]])


@pytest.mark.parametrize("name,kwargs", [
    ("ratios", {"ratios": [[0.5, 1], [2, 3]]}),
    ("scales", {"scales": np.ones((1, 1))}),
    ("base_size", {"base_size": [[16]]}),
])
def test_more_than_one_dimension_is_refused(name, kwargs):
    with pytest.raises(ValueError, match=rf"{name} must be a number or a 1-D sequence, got "
                                         rf"shape"):
        generate_anchors(**kwargs)


@pytest.mark.parametrize("name,value", [
    ("ratios", [0]), ("ratios", [1, 0]), ("ratios", [-1]), ("ratios", [1, -2, 3]),
    ("ratios", [np.inf]), ("ratios", [1, np.nan]), ("scales", [0]), ("scales", [8, 0]),
    ("scales", [-8]), ("scales", [np.inf, 8]), ("base_size", -16), ("base_size", np.nan),
])
def test_zero_negative_and_non_finite_values_are_refused(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be finite and > 0"):
        generate_anchors(**{name: value})


def test_empty_and_several_base_sizes_are_refused():
    with pytest.raises(ValueError, match="scales must not be empty"):
        generate_anchors(scales=[])
    with pytest.raises(ValueError, match="base_size must be a single number"):
        generate_anchors(base_size=[16, 16])


@pytest.mark.parametrize("ratio", [1e6, 1e-6])
def test_a_side_rounded_to_zero_is_refused(ratio):
    # 1e6: w' = round(sqrt(256 / 1e6)) = 0; 1e-6: w' = 16000, h' = round(0.016) = 0
    with pytest.raises(ValueError, match="give a zero-sized anchor at base_size 16"):
        generate_anchors(16, [1, ratio], [1])


def test_shifted_by_hand_with_a_non_square_map_and_stride():
    anchors = np.array([[0, 0, 3, 1], [-1, -2, 1, 2]], np.float64)
    out = shifted_anchors(anchors, 2, 3, feat_stride=5)
    expected = []
    for h in range(2):
        for w in range(3):
            for a in anchors:
                expected.append(a + [5 * w, 5 * h, 5 * w, 5 * h])
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[(0 * 3 + 1) * 2 + 1], [4, -2, 6, 2])  # h 0, w 1, a 1
    np.testing.assert_array_equal(out[(1 * 3 + 2) * 2], [10, 5, 13, 6])  # h 1, w 2, a 0


def test_shifted_accepts_integer_anchors_numpy_sizes_and_a_float_stride():
    anchors = np.array([[0, 0, 1, 1]], np.int32)
    out = shifted_anchors(anchors, np.int64(1), np.int32(2), 2.5)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[0, 0, 1, 1], [2.5, 0, 3.5, 1]])
    assert shifted_anchors(anchors, 0, 0).shape == (0, 4)
    assert shifted_anchors(anchors, 3, 0).shape == (0, 4)
    assert shifted_anchors(anchors, 1, 1, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("anchors,match", [
    (np.zeros((2, 4), bool), "numeric"),
    (np.array([["a"] * 4]), "numeric"),
    (np.zeros(4), "shape"),
    (np.zeros((2, 3)), "shape"),
    (np.array([[0, 0, 1, 1], [0, 0, np.nan, 1]]), "NaN or infinite"),
])
def test_shifted_refuses_bad_anchors(anchors, match):
    with pytest.raises(ValueError, match=f"anchors.*{match}"):
        shifted_anchors(anchors, 1, 1)


@pytest.mark.parametrize("height,width,bad", [
    (True, 1, "height"), (1, False, "width"), (1.0, 1, "height"), (1, -1, "width"),
    (-1, 1, "height"), (1, "2", "width"),
])
def test_shifted_refuses_bad_sizes(height, width, bad):
    with pytest.raises(ValueError, match=f"{bad} must be a non-negative int"):
        shifted_anchors(np.zeros((1, 4)), height, width)


def test_strides_of_one_pixel_and_less_are_fine():
    anchors = np.array([[0, 0, 1, 1]], np.float64)
    np.testing.assert_array_equal(shifted_anchors(anchors, 1, 2, 1), [[0, 0, 1, 1], [1, 0, 2, 1]])
    np.testing.assert_array_equal(shifted_anchors(anchors, 2, 1, 0.5),
                                  [[0, 0, 1, 1], [0, 0.5, 1, 1.5]])


@pytest.mark.parametrize("stride", [0, -16, np.nan, np.inf])
def test_shifted_refuses_bad_strides(stride):
    with pytest.raises(ValueError, match="feat_stride must be > 0"):
        shifted_anchors(np.zeros((1, 4)), 1, 1, stride)


def test_anchor_grid_caches_one_array_per_map_size():
    grid = AnchorGrid(ratios=(1,), scales=(1, 2), feat_stride=8)
    assert grid.num_anchors == 2 and grid.feat_stride == 8
    np.testing.assert_array_equal(grid.base, [[0, 0, 15, 15], [-8, -8, 23, 23]])
    a = grid.anchors(1, 2)
    np.testing.assert_array_equal(a, [[0, 0, 15, 15], [-8, -8, 23, 23],
                                      [8, 0, 23, 15], [0, -8, 31, 23]])
    assert grid.anchors(1.0, 2) is a and grid.anchors(1, 2) is a
    b = grid.anchors(2, 1)
    assert b is not a and b.shape == (4, 4)
    np.testing.assert_array_equal(b[2], [0, 8, 15, 23])
