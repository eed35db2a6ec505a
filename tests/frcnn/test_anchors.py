"""Anchors equal py-faster-rcnn's, for its defaults and for any ratios and scales."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frcnn.anchors import generate_anchors, shifted_anchors

# py-faster-rcnn's generate_anchors() output (base 16, ratios 0.5 1 2, scales 8 16 32).
PY_FASTER_RCNN_DEFAULT = np.array([
    [-84., -40., 99., 55.],
    [-176., -88., 191., 103.],
    [-360., -184., 375., 199.],
    [-56., -56., 71., 71.],
    [-120., -120., 135., 135.],
    [-248., -248., 263., 263.],
    [-36., -80., 51., 95.],
    [-80., -168., 95., 183.],
    [-168., -344., 183., 359.],
])


def one_at_a_time(base_size, ratios, scales):
    """py-faster-rcnn's algorithm written out anchor by anchor (scalar numpy float64)."""
    def size_centre(box):
        w = box[2] - box[0] + 1
        h = box[3] - box[1] + 1
        return w, h, box[0] + 0.5 * (w - 1), box[1] + 0.5 * (h - 1)

    def around(w, h, cx, cy):
        return [cx - 0.5 * (w - 1), cy - 0.5 * (h - 1), cx + 0.5 * (w - 1), cy + 0.5 * (h - 1)]

    w, h, cx, cy = size_centre(np.array([0.0, 0.0, base_size - 1.0, base_size - 1.0]))
    rows = []
    for r in np.asarray(ratios, np.float64):
        rw = np.round(np.sqrt((w * h) / r))
        rh = np.round(rw * r)
        rbox = np.array(around(rw, rh, cx, cy))
        bw, bh, bx, by = size_centre(rbox)
        for s in np.asarray(scales, np.float64):
            rows.append(around(bw * s, bh * s, bx, by))
    return np.array(rows)


def test_defaults_equal_py_faster_rcnn():
    anchors = generate_anchors()
    assert anchors.shape == (9, 4) and anchors.dtype == np.float64
    np.testing.assert_array_equal(anchors, PY_FASTER_RCNN_DEFAULT)
    np.testing.assert_array_equal(anchors[0], [-84, -40, 99, 55])
    np.testing.assert_array_equal(
        generate_anchors(16, np.array([0.5, 1, 2]), 2 ** np.arange(3, 6)), PY_FASTER_RCNN_DEFAULT)


@pytest.mark.parametrize("n_ratios,n_scales", [(5, 14), (7, 10), (1, 1), (3, 1)])
def test_seventy_anchors_and_order(n_ratios, n_scales):
    ratios = np.linspace(0.25, 4, n_ratios)
    scales = np.arange(1, n_scales + 1) * 2.0
    anchors = generate_anchors(16, ratios, scales)
    assert anchors.shape == (n_ratios * n_scales, 4)
    np.testing.assert_array_equal(anchors, one_at_a_time(16, ratios, scales))
    # Ratio-major, scale-minor: within a ratio the widths grow with the scale.
    widths = (anchors[:, 2] - anchors[:, 0] + 1).reshape(n_ratios, n_scales)
    assert (np.diff(widths, axis=1) > 0).all()


@settings(max_examples=200, deadline=None)
@given(base=st.sampled_from([4, 8, 16, 32, 7, 12.5]),
       ratios=st.lists(st.floats(0.1, 10), min_size=1, max_size=6),
       scales=st.lists(st.floats(0.25, 64), min_size=1, max_size=6))
def test_property_matches_algorithm(base, ratios, scales):
    np.testing.assert_array_equal(generate_anchors(base, ratios, scales),
                                  one_at_a_time(base, ratios, scales))


def test_generate_anchors_errors():
    with pytest.raises(ValueError, match="ratios"):
        generate_anchors(ratios=())
    with pytest.raises(ValueError, match="ratios"):
        generate_anchors(ratios=(0.5, -1))
    with pytest.raises(ValueError, match="scales"):
        generate_anchors(scales=(8, np.nan))
    with pytest.raises(ValueError, match="base_size"):
        generate_anchors(base_size=0)
    with pytest.raises(ValueError, match="zero-sized"):
        generate_anchors(ratios=(1e6,))


def test_shifted_anchors_order_and_values():
    anchors = generate_anchors()
    H, W, stride = 3, 5, 16
    out = shifted_anchors(anchors, H, W, stride)
    assert out.shape == (H * W * 9, 4) and out.dtype == np.float64
    for h in range(H):
        for w in range(W):
            for a in range(9):
                np.testing.assert_array_equal(
                    out[(h * W + w) * 9 + a], anchors[a] + np.array([w, h, w, h]) * stride)


def test_shifted_anchors_matches_meshgrid_construction():
    anchors = generate_anchors(ratios=(0.5, 1, 2, 3, 4), scales=range(1, 15))
    H, W = 38, 63
    sx, sy = np.meshgrid(np.arange(W) * 16, np.arange(H) * 16)
    shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], axis=1)
    expected = (anchors[None, :, :] + shifts[:, None, :]).reshape(-1, 4)
    np.testing.assert_array_equal(shifted_anchors(anchors, H, W, 16), expected)
    assert shifted_anchors(anchors, H, W, 16, dtype=np.float32).dtype == np.float32


def test_shifted_anchors_edges_and_errors():
    anchors = generate_anchors()
    assert shifted_anchors(anchors, 0, 10).shape == (0, 4)
    with pytest.raises(ValueError, match="anchors must have shape"):
        shifted_anchors(np.zeros((9, 5)), 2, 2)
    with pytest.raises(ValueError, match="height"):
        shifted_anchors(anchors, -1, 2)
    with pytest.raises(ValueError, match="width"):
        shifted_anchors(anchors, 2, 2.5)
    with pytest.raises(ValueError, match="feat_stride"):
        shifted_anchors(anchors, 2, 2, 0)
    with pytest.raises(ValueError, match="dtype"):
        shifted_anchors(anchors, 2, 2, 16, dtype=np.int32)
