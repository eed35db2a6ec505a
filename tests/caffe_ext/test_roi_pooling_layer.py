"""ROIPooling in a real caffe.Net against an independent numpy reference."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_python


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def roi_pool_reference(features, rois, pooled_h, pooled_w, scale):
    """caffe-fast-rcnn ROIPooling in float32 arithmetic; returns (top, argmax)."""
    n_img, channels, height, width = features.shape
    top = np.zeros((len(rois), channels, pooled_h, pooled_w), np.float32)
    argmax = -np.ones(top.shape, np.int64)
    scale = np.float32(scale)
    for r, roi in enumerate(rois.astype(np.float32)):
        b = int(roi[0])
        x1, y1, x2, y2 = (int(_round_half_away(v * scale)) for v in roi[1:])
        roi_h, roi_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bin_h = np.float32(roi_h) / np.float32(pooled_h)
        bin_w = np.float32(roi_w) / np.float32(pooled_w)
        for ph in range(pooled_h):
            h0 = min(max(int(np.floor(np.float32(ph) * bin_h)) + y1, 0), height)
            h1 = min(max(int(np.ceil(np.float32(ph + 1) * bin_h)) + y1, 0), height)
            for pw in range(pooled_w):
                w0 = min(max(int(np.floor(np.float32(pw) * bin_w)) + x1, 0), width)
                w1 = min(max(int(np.ceil(np.float32(pw + 1) * bin_w)) + x1, 0), width)
                if h1 <= h0 or w1 <= w0:
                    continue
                window = features[b, :, h0:h1, w0:w1].reshape(channels, -1)
                k = window.argmax(axis=1)
                top[r, :, ph, pw] = window[np.arange(channels), k]
                argmax[r, :, ph, pw] = (h0 + k // (w1 - w0)) * width + w0 + k % (w1 - w0)
    return top, argmax


NET = """
force_backward: true
layer {{ name: "f" type: "Input" top: "features" input_param {{ shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }} }}
layer {{ name: "r" type: "Input" top: "rois" input_param {{ shape {{ dim: {r} dim: 5 }} }} }}
layer {{ name: "pool" type: "ROIPooling" bottom: "features" bottom: "rois" top: "pooled"
  roi_pooling_param {{ pooled_h: {ph} pooled_w: {pw} spatial_scale: {scale} }} }}
"""


def _pool_net(make_net, features, rois, ph, pw, scale):
    n, c, h, w = features.shape
    net = make_net(NET.format(n=n, c=c, h=h, w=w, r=len(rois), ph=ph, pw=pw, scale=scale))
    net.blobs["features"].data[...] = features
    net.blobs["rois"].data[...] = rois
    net.forward()
    return net


def _distinct_features(rng, shape):
    """Values that are all distinct and 0.1 apart, so the max is never tied."""
    values = rng.permutation(int(np.prod(shape))).astype(np.float32) * 0.1
    return (values - values.mean()).reshape(shape)


def _random_rois(rng, count, n_img, img_h, img_w):
    x = rng.uniform(-0.3 * img_w, 1.3 * img_w, size=(count, 2))
    y = rng.uniform(-0.3 * img_h, 1.3 * img_h, size=(count, 2))
    b = rng.integers(0, n_img, size=count)
    return np.stack([b, x.min(1), y.min(1), x.max(1), y.max(1)], axis=1).astype(np.float32)


SPECIAL_ROIS = np.array([
    [0, 0, 0, 127, 95],          # the whole image
    [0, -40, -40, 10, 10],       # partly outside, top-left
    [1, 120, 90, 200, 150],      # partly outside, bottom-right
    [1, 300, 300, 400, 400],     # fully outside: every bin empty
    [0, 33, 21, 33, 21],         # a single pixel, smaller than one cell
    [1, 5, 5, 7, 6],             # smaller than one cell
    [0, -500, -500, 900, 900],   # larger than the map
    [1, 17.5, 8.5, 40.49, 30.5],  # coordinates that round half away from zero
    [0, 60, 20, 50, 40],         # x2 < x1: size clamps to one cell
], np.float32)


@pytest.mark.parametrize("pooled", [(7, 7), (3, 5), (1, 1)])
def test_forward_matches_reference(make_net, pooled):
    rng = np.random.default_rng(sum(pooled))
    features = rng.normal(size=(2, 3, 6, 8)).astype(np.float32) - 0.5  # many negatives
    rois = np.concatenate([SPECIAL_ROIS, _random_rois(rng, 40, 2, 96, 128)])
    net = _pool_net(make_net, features, rois, *pooled, 1.0 / 16)
    expected, _ = roi_pool_reference(features, rois, *pooled, 1.0 / 16)
    assert net.blobs["pooled"].data.shape == (len(rois), 3) + pooled
    np.testing.assert_array_equal(net.blobs["pooled"].data, expected)
    # the fully outside roi gives zeros, not -FLT_MAX
    assert np.all(net.blobs["pooled"].data[3] == 0)


def test_forward_at_scale_one_with_several_images(make_net):
    rng = np.random.default_rng(7)
    features = _distinct_features(rng, (3, 2, 20, 30))
    rois = _random_rois(rng, 60, 3, 20, 30)
    net = _pool_net(make_net, features, rois, 4, 6, 1.0)
    expected, _ = roi_pool_reference(features, rois, 4, 6, 1.0)
    np.testing.assert_array_equal(net.blobs["pooled"].data, expected)
    # each roi reads only its own image
    net2 = _pool_net(make_net, features + (np.arange(3) * 1000.0)[:, None, None, None]
                     .astype(np.float32), rois, 4, 6, 1.0)
    nonempty = expected != 0
    shift = net2.blobs["pooled"].data - net.blobs["pooled"].data
    np.testing.assert_allclose(shift[nonempty],
                               np.broadcast_to(rois[:, 0, None, None, None] * 1000.0,
                                               expected.shape)[nonempty], atol=1e-2)


def test_ties_go_to_the_first_maximum_in_row_major_order(make_net):
    """Few distinct values and an odd channel count: forward values and the positions that
    receive the gradient are those of the per-channel row-major scan."""
    rng = np.random.default_rng(5)
    features = rng.integers(-1, 2, size=(2, 37, 9, 11)).astype(np.float32)
    rois = np.concatenate([SPECIAL_ROIS, _random_rois(rng, 30, 2, 144, 176)])
    net = make_net(NET.format(n=2, c=37, h=9, w=11, r=len(rois), ph=3, pw=4, scale=1.0 / 16))
    net.blobs["features"].data[...] = features
    net.blobs["rois"].data[...] = rois
    net.forward()
    expected, argmax = roi_pool_reference(features, rois, 3, 4, 1.0 / 16)
    np.testing.assert_array_equal(net.blobs["pooled"].data, expected)
    diff = rng.standard_normal(expected.shape).astype(np.float32)
    net.blobs["pooled"].diff[...] = diff
    net.backward()
    want = np.zeros(features.shape, np.float64)
    for r, c, i in zip(*np.nonzero(argmax.reshape(len(rois), 37, -1) >= 0)):
        want[int(rois[r, 0]), c].reshape(-1)[argmax[r, c].reshape(-1)[i]] += \
            diff[r, c].reshape(-1)[i]
    np.testing.assert_allclose(net.blobs["features"].diff, want, rtol=1e-5, atol=1e-5)


def test_zero_rois(make_net):
    features = np.ones((1, 2, 4, 4), np.float32)
    net = make_net(NET.format(n=1, c=2, h=4, w=4, r=1, ph=2, pw=2, scale=1.0))
    net.blobs["rois"].reshape(0, 5)
    net.blobs["features"].data[...] = features
    net.forward()
    assert net.blobs["pooled"].data.shape == (0, 2, 2, 2)


def test_backward_routes_to_argmax_and_matches_numeric_gradient(make_net):
    rng = np.random.default_rng(11)
    features = _distinct_features(rng, (2, 2, 6, 8))
    rois = np.concatenate([SPECIAL_ROIS, _random_rois(rng, 12, 2, 96, 128)])
    pooled, scale = (3, 3), 1.0 / 16
    net = _pool_net(make_net, features, rois, *pooled, scale)
    top_diff = rng.normal(size=net.blobs["pooled"].data.shape).astype(np.float32)
    diffs = net.backward(pooled=top_diff, diffs=["features"])
    grad = diffs["features"].copy()

    _, argmax = roi_pool_reference(features, rois, *pooled, scale)
    expected = np.zeros_like(features)
    for r, c, i, j in zip(*np.nonzero(argmax >= 0)):
        b = int(rois[r, 0])
        expected[b, c].flat[argmax[r, c, i, j]] += top_diff[r, c, i, j]
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-5)

    # numeric check of d(sum(top_diff * top)) / d(features) on a sample of positions
    eps = np.float32(0.02)
    for flat in rng.choice(features.size, size=40, replace=False):
        idx = np.unravel_index(flat, features.shape)
        values = []
        for sign in (1, -1):
            f = features.copy()
            f[idx] += sign * eps
            net.blobs["features"].data[...] = f
            net.forward()
            values.append(float(np.sum(top_diff * net.blobs["pooled"].data, dtype=np.float64)))
        numeric = (values[0] - values[1]) / (2 * eps)
        assert numeric == pytest.approx(grad[idx], abs=1e-3)


def test_no_gradient_for_empty_bins(make_net):
    features = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    rois = np.array([[0, 100, 100, 200, 200]], np.float32)  # entirely outside
    net = _pool_net(make_net, features, rois, 2, 2, 1.0)
    diffs = net.backward(pooled=np.ones((1, 1, 2, 2), np.float32), diffs=["features"])
    assert np.all(diffs["features"] == 0)


BAD_PARAM_NET = """
import caffe, tempfile
text = '''
layer {{ name: "f" type: "Input" top: "features" input_param {{ shape {{ dim: 1 dim: 1 dim: 4 dim: 4 }} }} }}
layer {{ name: "r" type: "Input" top: "rois" input_param {{ shape {{ {rois_shape} }} }} }}
layer {{ name: "my_roi_pool" type: "ROIPooling" bottom: "features" bottom: "rois" top: "p"
  roi_pooling_param {{ {params} }} }}
'''
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(text)
caffe.Net(f.name, caffe.TEST)
print("CONSTRUCTED")
"""


@pytest.mark.parametrize("params, rois_shape, message", [
    ("pooled_h: 0 pooled_w: 7 spatial_scale: 0.0625", "dim: 1 dim: 5", "pooled_h"),
    ("pooled_w: 7", "dim: 1 dim: 5", "pooled_h"),
    ("pooled_h: 7 pooled_w: 0 spatial_scale: 0.0625", "dim: 1 dim: 5", "pooled_w"),
    ("pooled_h: 7 pooled_w: 7 spatial_scale: 0", "dim: 1 dim: 5", "spatial_scale"),
    ("pooled_h: 7 pooled_w: 7 spatial_scale: -1", "dim: 1 dim: 5", "spatial_scale"),
    ("pooled_h: 7 pooled_w: 7 spatial_scale: 1", "dim: 1 dim: 4", "rois"),
])
def test_invalid_parameters_fail_at_construction_naming_the_layer(params, rois_shape, message):
    proc = run_python(BAD_PARAM_NET.format(params=params, rois_shape=rois_shape))
    assert proc.returncode != 0
    assert "CONSTRUCTED" not in proc.stdout
    assert "'my_roi_pool'" in proc.stderr and message in proc.stderr, proc.stderr[-2000:]
