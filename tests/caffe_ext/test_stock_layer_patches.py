"""Caffe's own layers that the build speeds up (max pooling's scan, batched 1x1
convolution, im2col/col2im, ReLU's backward, MVN, Scale), in a real caffe.Net against
independent numpy references."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

# ---------------------------------------------------------------------------------------
# Max pooling


def max_pool_reference(x: np.ndarray, kernel: int, stride: int, pad: int):
    """Caffe's MAX pooling (ceil-mode output size, last window starting inside the image
    when padded): (top, argmax flat h * W + w, first maximum in row-major order)."""
    n, c, h, w = x.shape
    ph_n = int(math.ceil((h + 2 * pad - kernel) / stride)) + 1
    pw_n = int(math.ceil((w + 2 * pad - kernel) / stride)) + 1
    if pad:
        ph_n -= (ph_n - 1) * stride >= h + pad
        pw_n -= (pw_n - 1) * stride >= w + pad
    top = np.full((n, c, ph_n, pw_n), -np.finfo(np.float32).max, np.float32)
    arg = -np.ones(top.shape, np.int64)
    for ph in range(ph_n):
        h0 = ph * stride - pad
        h1, h0 = min(h0 + kernel, h), max(h0, 0)
        for pw in range(pw_n):
            w0 = pw * stride - pad
            w1, w0 = min(w0 + kernel, w), max(w0, 0)
            window = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            k = window.argmax(axis=2)
            top[:, :, ph, pw] = np.take_along_axis(window, k[..., None], 2)[..., 0]
            arg[:, :, ph, pw] = (h0 + k // (w1 - w0)) * w + w0 + k % (w1 - w0)
    return top, arg


POOL_NET = """
force_backward: true
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }} }}
layer {{ name: "pool" type: "Pooling" bottom: "x" top: "y" {mask_top}
  pooling_param {{ pool: MAX kernel_size: {k} stride: {s} pad: {p} }} }}
"""


@pytest.mark.parametrize("kernel,stride,pad", [(3, 2, 0), (2, 2, 0), (3, 1, 1), (3, 2, 1),
                                               (5, 3, 2), (1, 1, 0), (4, 3, 0)])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pooling_matches_reference(make_net, kernel, stride, pad, ties):
    rng = np.random.default_rng(kernel * 100 + stride * 10 + pad)
    shape = (2, 3, 13, 18)
    x = (rng.integers(-2, 3, size=shape) if ties else rng.standard_normal(shape))
    x = x.astype(np.float32)
    ref, ref_arg = max_pool_reference(x, kernel, stride, pad)
    for mask_top in ("", 'top: "mask"'):
        net = make_net(POOL_NET.format(n=2, c=3, h=13, w=18, k=kernel, s=stride, p=pad,
                                       mask_top=mask_top))
        net.blobs["x"].data[...] = x
        net.forward()
        assert net.blobs["y"].data.shape == ref.shape
        np.testing.assert_array_equal(net.blobs["y"].data, ref)
        if mask_top:
            np.testing.assert_array_equal(net.blobs["mask"].data, ref_arg)
        # backward sends each top diff to its window's first maximum
        diff = rng.standard_normal(ref.shape).astype(np.float32)
        net.blobs["y"].diff[...] = diff
        net.backward()
        expected = np.zeros(x.shape, np.float64)
        for n, c in itertools.product(range(shape[0]), range(shape[1])):
            np.add.at(expected[n, c].reshape(-1), ref_arg[n, c].reshape(-1),
                      diff[n, c].reshape(-1))
        np.testing.assert_allclose(net.blobs["x"].diff, expected, rtol=1e-6, atol=1e-6)


def test_max_pooling_skips_nan_as_caffe_does(make_net):
    """A NaN never wins ('>' is false); an all-NaN window gives -FLT_MAX and mask -1."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 2:, 2:] = np.nan
    net = make_net(POOL_NET.format(n=1, c=1, h=4, w=4, k=2, s=2, p=0, mask_top='top: "mask"'))
    net.blobs["x"].data[...] = x
    net.forward()
    np.testing.assert_array_equal(net.blobs["y"].data[0, 0],
                                  [[5, 7], [13, -np.finfo(np.float32).max]])
    np.testing.assert_array_equal(net.blobs["mask"].data[0, 0], [[5, 7], [13, -1]])


def test_max_pooling_backward_skips_a_window_without_winner(make_net):
    """An all-NaN window keeps argmax -1; its diff goes nowhere (stock Caffe wrote it one
    element before the plane: into the previous channel's last element)."""
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    x[0, 1, :2, :2] = np.nan                         # channel 1's first window
    net = make_net(POOL_NET.format(n=1, c=2, h=4, w=4, k=2, s=2, p=0, mask_top=""))
    net.blobs["x"].data[...] = x
    net.forward()
    net.blobs["y"].diff[...] = 1.0
    net.backward()
    expected = np.zeros(x.shape, np.float32)
    expected[0, 0].flat[[5, 7, 13, 15]] = 1.0
    expected[0, 1].flat[[7, 13, 15]] = 1.0
    np.testing.assert_array_equal(net.blobs["x"].diff, expected)


# ---------------------------------------------------------------------------------------
# 1x1 convolution over a batch

CONV_NET = """
force_backward: true
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "x" top: "y"
  convolution_param {{ num_output: {m} kernel_size: 1 group: {g} bias_term: {bias}
    weight_filler {{ type: "gaussian" std: 0.1 }} bias_filler {{ type: "gaussian" std: 1 }} }} }}
"""


def conv1x1_reference(x, weight, bias, groups):
    """Forward of a grouped 1x1 convolution in float64: x (N, C, H, W), weight (M, C/g, 1, 1)."""
    n, c, h, w = x.shape
    m = weight.shape[0]
    xs = x.reshape(n, groups, c // groups, h * w).astype(np.float64)
    ws = weight.reshape(groups, m // groups, c // groups).astype(np.float64)
    y = np.einsum("gmc,ngcs->ngms", ws, xs).reshape(n, m, h, w)
    if bias is not None:
        y += bias.reshape(1, m, 1, 1)
    return y


@pytest.mark.parametrize("n,c,hw,m,groups,bias", [
    (300, 16, 7, 24, 1, True),   # many small maps: chunks of 83 items, the last one short
    (5, 8, 3, 6, 1, False),
    (1, 8, 7, 6, 1, True),       # a single item: Caffe's own path
    (3, 4, 70, 5, 1, True),      # maps too large to chunk: Caffe's own path
    (6, 8, 7, 6, 2, True),       # grouped: Caffe's own path
])
def test_conv1x1_forward_and_backward_match_reference(make_net, n, c, hw, m, groups, bias):
    rng = np.random.default_rng(n + c + hw)
    net = make_net(CONV_NET.format(n=n, c=c, h=hw, w=hw, m=m, g=groups,
                                   bias="true" if bias else "false"))
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    net.blobs["x"].data[...] = x
    weight = net.params["conv"][0].data.copy()
    b = net.params["conv"][1].data.copy() if bias else None
    net.forward()
    np.testing.assert_allclose(net.blobs["y"].data, conv1x1_reference(x, weight, b, groups),
                               rtol=1e-4, atol=1e-4)

    dy = rng.standard_normal(net.blobs["y"].data.shape).astype(np.float32)
    net.blobs["y"].diff[...] = dy
    for p in net.params["conv"]:
        p.diff[...] = 1.0  # parameter diffs accumulate; the bottom diff is overwritten
    net.blobs["x"].diff[...] = 7.0
    net.backward()
    k = c // groups
    xs = x.reshape(n, groups, k, -1).astype(np.float64)
    dys = dy.reshape(n, groups, m // groups, -1).astype(np.float64)
    dw = np.einsum("ngms,ngcs->gmc", dys, xs).reshape(weight.shape)
    np.testing.assert_allclose(net.params["conv"][0].diff, 1.0 + dw, rtol=1e-4, atol=1e-3)
    if bias:
        np.testing.assert_allclose(net.params["conv"][1].diff, 1.0 + dy.sum(axis=(0, 2, 3)),
                                   rtol=1e-4, atol=1e-3)
    ws = weight.reshape(groups, m // groups, k).astype(np.float64)
    dx = np.einsum("gmc,ngms->ngcs", ws, dys).reshape(x.shape)
    np.testing.assert_allclose(net.blobs["x"].diff, dx, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------
# ReLU's backward (a select instead of bool-to-float arithmetic)

RELU_NET = """
force_backward: true
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 1 dim: 1 dim: {n} }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "x" top: "y" relu_param {{ negative_slope: {slope} }} }}
"""


@pytest.mark.parametrize("slope", [0.0, 0.25])
def test_relu_backward_is_bvlc_caffes_factor_bit_for_bit(make_net, slope):
    """d_bottom = d_top * ((x > 0) + slope * (x <= 0)), NaN, -0, inf and a length that is
    not a multiple of the vector width included (the vectorised loop's tail)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=1003).astype(np.float32)
    x[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-40]
    top_diff = rng.normal(size=x.size).astype(np.float32)
    top_diff[6:9] = [np.inf, np.nan, -0.0]
    net = make_net(RELU_NET.format(n=x.size, slope=slope))
    net.blobs["x"].data[...] = x
    net.forward()
    net.blobs["y"].diff[...] = top_diff
    net.backward()
    s32 = np.float32(slope)
    with np.errstate(invalid="ignore"):
        factor = (x > 0).astype(np.float32) + s32 * (x <= 0).astype(np.float32)
        expected = top_diff * factor
    got = net.blobs["x"].diff.ravel()
    assert got.tobytes() == expected.astype(np.float32).tobytes()


# ---------------------------------------------------------------------------------------
# MVN (direct row loops instead of GEMV/GEMM broadcasts)

MVN_NET = """
force_backward: true
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 dim: 5 dim: 7 }} }} }}
layer {{ name: "mvn" type: "MVN" bottom: "x" top: "{top}"
  mvn_param {{ normalize_variance: {var} across_channels: {across} eps: 1e-5 }} }}
"""


def mvn_reference(x: np.ndarray, dy: np.ndarray, variance: bool, across: bool):
    """BVLC Caffe's MVN in float64: y = (x - mean) / (sqrt(E((x - mean)^2)) + eps) and its
    gradient, per (n, c) row over H x W, or per n across C x H x W."""
    shape = x.shape
    rows = shape[0] if across else shape[0] * shape[1]
    x, dy = x.reshape(rows, -1).astype(np.float64), dy.reshape(rows, -1).astype(np.float64)
    t = x - x.mean(axis=1, keepdims=True)
    if not variance:
        return t.reshape(shape), (dy - dy.mean(axis=1, keepdims=True)).reshape(shape)
    sigma = np.sqrt((t ** 2).mean(axis=1, keepdims=True)) + 1e-5
    y = t / sigma
    dim = x.shape[1]
    dx = (dy - (dy.sum(axis=1, keepdims=True) + y * (y * dy).sum(axis=1, keepdims=True)) / dim
          ) / sigma
    return y.reshape(shape), dx.reshape(shape)


@pytest.mark.parametrize("variance,across", [(True, False), (True, True), (False, False)])
@pytest.mark.parametrize("in_place", [False, True])
def test_mvn_matches_caffes_arithmetic_in_place_too(make_net, variance, across, in_place):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(2, 3, 5, 7)) * 4 + 3).astype(np.float32)
    x[1, 2] = 0.5                                   # a constant row: sigma is eps
    dy = rng.normal(size=x.shape).astype(np.float32)
    net = make_net(MVN_NET.format(top="x" if in_place else "y", var=str(variance).lower(),
                                  across=str(across).lower()))
    top = "x" if in_place else "y"
    net.blobs["x"].data[...] = x
    net.forward()
    y_ref, dx_ref = mvn_reference(x, dy, variance, across)
    np.testing.assert_allclose(net.blobs[top].data, y_ref, rtol=1e-5, atol=1e-5)
    net.blobs[top].diff[...] = dy
    net.backward()
    np.testing.assert_allclose(net.blobs["x"].diff, dx_ref, rtol=1e-4, atol=1e-4)


def test_mvn_gradient_matches_finite_differences(make_net):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 5, 7)).astype(np.float32)
    w = rng.normal(size=x.shape)
    net = make_net(MVN_NET.format(top="y", var="true", across="false"))

    def loss(v):
        net.blobs["x"].data[...] = v
        net.forward()
        return float((net.blobs["y"].data * w).sum())

    loss(x)
    net.blobs["y"].diff[...] = w
    net.backward()
    grad = net.blobs["x"].diff.copy()
    for idx in [(0, 0, 0, 0), (1, 2, 4, 6), (0, 1, 2, 3), (1, 0, 3, 1)]:
        h = 1e-2
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        assert grad[idx] == pytest.approx((loss(up) - loss(down)) / (2 * h), rel=2e-2, abs=2e-3)


# ---------------------------------------------------------------------------------------
# 3x3 convolution (im2col / col2im, one channel block at a time)

CONV3_NET = """
force_backward: true
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 dim: 9 dim: 11 }} }} }}
layer {{ name: "conv" type: "Convolution" bottom: "x" top: "y"
  convolution_param {{ num_output: 4 kernel_size: 3 stride: {stride} pad: {pad} dilation: {dil}
    weight_filler {{ type: "gaussian" std: 0.3 }} bias_filler {{ type: "gaussian" std: 1 }} }} }}
"""


def _patches(xp: np.ndarray, k: int, stride: int, dil: int, oh: int, ow: int) -> np.ndarray:
    """(N, C, k, k, oh, ow) views of a padded input."""
    return np.stack([np.stack([
        xp[:, :, i * dil:i * dil + stride * (oh - 1) + 1:stride,
           j * dil:j * dil + stride * (ow - 1) + 1:stride] for j in range(k)], 2)
        for i in range(k)], 2)


@pytest.mark.parametrize("stride,pad,dil", [(1, 1, 1), (2, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_conv3x3_forward_and_backward_match_reference(make_net, stride, pad, dil):
    rng = np.random.default_rng(stride * 10 + pad + dil)
    net = make_net(CONV3_NET.format(stride=stride, pad=pad, dil=dil))
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    w = net.params["conv"][0].data.astype(np.float64)
    b = net.params["conv"][1].data.astype(np.float64)
    net.blobs["x"].data[...] = x
    net.forward()
    oh, ow = net.blobs["y"].data.shape[2:]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = _patches(xp, 3, stride, dil, oh, ow)             # N, C, 3, 3, oh, ow
    y = np.einsum("mcij,ncijhw->nmhw", w, cols) + b[None, :, None, None]
    np.testing.assert_allclose(net.blobs["y"].data, y, rtol=1e-4, atol=1e-4)

    dy = rng.standard_normal(y.shape).astype(np.float32)
    net.blobs["y"].diff[...] = dy
    net.backward()
    dw = np.einsum("nmhw,ncijhw->mcij", dy.astype(np.float64), cols)
    np.testing.assert_allclose(net.params["conv"][0].diff, dw, rtol=1e-4, atol=1e-3)
    dxp = np.zeros_like(xp)
    dcols = np.einsum("mcij,nmhw->ncijhw", w, dy.astype(np.float64))
    for i in range(3):
        for j in range(3):
            dxp[:, :, i * dil:i * dil + stride * (oh - 1) + 1:stride,
                j * dil:j * dil + stride * (ow - 1) + 1:stride] += dcols[:, :, i, j]
    dx = dxp[:, :, pad:pad + 9, pad:pad + 11]
    np.testing.assert_allclose(net.blobs["x"].diff, dx, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------
# Scale with a learned scale (one pass forward, one per channel backward)

SCALE_NET = """
force_backward: true
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 5 dim: 3 dim: 4 }} }} }}
layer {{ name: "scale" type: "Scale" bottom: "x" top: "{top}"
  scale_param {{ axis: {axis} num_axes: {num_axes} bias_term: {bias}
    filler {{ type: "gaussian" std: 1 }} bias_filler {{ type: "gaussian" std: 1 }} }} }}
"""


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("axis,num_axes", [(1, 1), (1, 2), (0, 1), (2, 1)])
def test_scale_matches_reference_and_accumulates_param_diffs(make_net, in_place, bias,
                                                            axis, num_axes):
    rng = np.random.default_rng(axis * 10 + num_axes)
    top = "x" if in_place else "y"
    net = make_net(SCALE_NET.format(top=top, axis=axis, num_axes=num_axes,
                                    bias=str(bias).lower()))
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    params = net.params["scale"]
    shape = params[0].data.shape
    assert shape == x.shape[axis:axis + num_axes]
    bshape = (1,) * axis + shape + (1,) * (4 - axis - num_axes)
    s = params[0].data.astype(np.float64).reshape(bshape)
    b = params[1].data.astype(np.float64).reshape(bshape) if bias else 0.0
    net.blobs["x"].data[...] = x
    net.forward()
    np.testing.assert_allclose(net.blobs[top].data, x * s + b, rtol=1e-6, atol=1e-6)

    dy = rng.standard_normal(x.shape).astype(np.float32)
    for p in params:
        p.diff[...] = 1.0  # parameter diffs accumulate
    net.blobs[top].diff[...] = dy
    net.backward()
    reduce = tuple(i for i in range(4) if not axis <= i < axis + num_axes)
    np.testing.assert_allclose(params[0].diff, 1.0 + (dy * x).sum(axis=reduce).reshape(shape),
                               rtol=1e-5, atol=1e-5)
    if bias:
        np.testing.assert_allclose(params[1].diff, 1.0 + dy.sum(axis=reduce).reshape(shape),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.blobs["x"].diff, dy * s, rtol=1e-6, atol=1e-6)


def test_scale_by_a_second_bottom_keeps_caffes_code(make_net):
    net = make_net("""
force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 4 } } }
layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "scale" type: "Scale" bottom: "x" bottom: "s" top: "y" scale_param { axis: 0 } }
""")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    s = rng.standard_normal((2, 3)).astype(np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["s"].data[...] = s
    net.forward()
    np.testing.assert_allclose(net.blobs["y"].data, x * s[..., None], rtol=1e-6)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    net.blobs["y"].diff[...] = dy
    net.backward()
    np.testing.assert_allclose(net.blobs["s"].diff, (dy * x).sum(axis=2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.blobs["x"].diff, dy * s[..., None], rtol=1e-6)
