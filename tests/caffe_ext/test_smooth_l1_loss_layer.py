"""SmoothL1Loss (caffe-fast-rcnn form) in a real caffe.Net against numpy."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_python

SHAPE = (6, 8, 3, 2)
BOTTOMS = ("pred", "target", "inside", "outside")


def _net_text(n_bottoms, sigma, shape=SHAPE, other_shape=None):
    dims = " ".join(f"dim: {d}" for d in shape)
    other = " ".join(f"dim: {d}" for d in (other_shape or shape))
    inputs = "".join(
        f'layer {{ name: "in_{b}" type: "Input" top: "{b}" '
        f'input_param {{ shape {{ {other if i == 1 else dims} }} }} }}\n'
        for i, b in enumerate(BOTTOMS[:n_bottoms]))
    bottoms = " ".join(f'bottom: "{b}"' for b in BOTTOMS[:n_bottoms])
    param = "" if sigma is None else f"smooth_l1_loss_param {{ sigma: {sigma} }}"
    return (f"force_backward: true\n{inputs}"
            f'layer {{ name: "my_loss" type: "SmoothL1Loss" {bottoms} top: "loss" '
            f"loss_weight: 1 {param} }}\n")


def smooth_l1_reference(pred, target, inside, outside, sigma):
    """Loss and the gradients w.r.t. pred and target, in float64."""
    s2 = sigma * sigma
    d = inside * (pred - target)
    small = np.abs(d) < 1.0 / s2
    f = np.where(small, 0.5 * s2 * d * d, np.abs(d) - 0.5 / s2)
    num = pred.shape[0]
    loss = np.sum(outside * f) / num
    dfd = np.where(small, s2 * d, np.sign(d))
    grad_pred = outside * inside * dfd / num
    return loss, grad_pred, -grad_pred


def _inputs(rng, sigma):
    """Random inputs whose |d| stays away from the kink at 1 / sigma^2."""
    kink = 1.0 / sigma ** 2
    pred = rng.normal(0, 2 * kink, size=SHAPE)
    target = rng.normal(0, 2 * kink, size=SHAPE)
    inside = rng.choice([0.0, 1.0, 0.5, 2.0], size=SHAPE)
    d = inside * (pred - target)
    near = np.abs(np.abs(d) - kink) < 0.05 * kink
    inside[near] = 0.0
    outside = rng.uniform(0.0, 1.0, size=SHAPE)
    return pred, target, inside, outside


@pytest.mark.parametrize("sigma", [None, 1.0, 3.0])
@pytest.mark.parametrize("n_bottoms", [2, 3, 4])
def test_loss_and_gradients(make_net, sigma, n_bottoms):
    rng = np.random.default_rng(n_bottoms * 10 + int(sigma or 0))
    pred, target, inside, outside = _inputs(rng, sigma or 1.0)
    if n_bottoms < 4:
        outside = np.ones(SHAPE)
    if n_bottoms < 3:
        inside = np.ones(SHAPE)
    net = make_net(_net_text(n_bottoms, sigma), phase="TRAIN")
    for name, value in zip(BOTTOMS, (pred, target, inside, outside)):
        if name in net.blobs:
            net.blobs[name].data[...] = value
    loss = float(net.forward()["loss"])
    diffs = net.backward(diffs=["pred", "target"])

    ref_loss, ref_gp, ref_gt = smooth_l1_reference(
        *(np.float32(v).astype(np.float64) for v in (pred, target, inside, outside)), sigma or 1.0)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(diffs["pred"], ref_gp, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(diffs["target"], ref_gt, rtol=1e-4, atol=1e-7)


def test_gradient_matches_finite_differences(make_net):
    rng = np.random.default_rng(5)
    sigma = 3.0
    pred, target, inside, outside = _inputs(rng, sigma)
    net = make_net(_net_text(4, sigma), phase="TRAIN")
    for name, value in zip(BOTTOMS, (pred, target, inside, outside)):
        net.blobs[name].data[...] = value
    net.forward()
    grad = net.backward(diffs=["pred"])["pred"].copy()
    eps = 1e-3
    for flat in rng.choice(pred.size, size=30, replace=False):
        idx = np.unravel_index(flat, SHAPE)
        losses = []
        for sign in (1, -1):
            net.blobs["pred"].data[...] = pred
            net.blobs["pred"].data[idx] += sign * eps
            losses.append(float(net.forward()["loss"]))
        assert (losses[0] - losses[1]) / (2 * eps) == pytest.approx(grad[idx], abs=2e-3)


def test_known_values(make_net):
    # one row, sigma 1: |d| = 0.5 -> 0.125; |d| = 2 -> 1.5; weights scale them
    net = make_net(_net_text(4, 1.0, shape=(1, 2)), phase="TRAIN")
    net.blobs["pred"].data[...] = [[0.5, 3.0]]
    net.blobs["target"].data[...] = [[0.0, 1.0]]
    net.blobs["inside"].data[...] = [[1.0, 1.0]]
    net.blobs["outside"].data[...] = [[2.0, 1.0]]
    assert float(net.forward()["loss"]) == pytest.approx(2 * 0.125 + 1.5)


def test_loss_divides_by_first_axis(make_net):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(2, 4))
    losses = []
    for rows in (2, 4):
        net = make_net(_net_text(2, 1.0, shape=(rows, 4)), phase="TRAIN")
        net.blobs["pred"].data[...] = np.tile(values, (rows // 2, 1))
        net.blobs["target"].data[...] = 0
        losses.append(float(net.forward()["loss"]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_empty_batch_gives_zero_loss(make_net):
    net = make_net(_net_text(4, 1.0, shape=(1, 4)), phase="TRAIN")
    for name in BOTTOMS:
        net.blobs[name].reshape(0, 4)
    net.reshape()
    assert float(net.forward()["loss"]) == 0.0
    net.backward()


BAD_NET = """
import caffe, tempfile
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write({text!r})
caffe.Net(f.name, caffe.TRAIN)
print("CONSTRUCTED")
"""


@pytest.mark.parametrize("kwargs, message", [
    ({"n_bottoms": 4, "sigma": 0}, "sigma"),
    ({"n_bottoms": 4, "sigma": -2}, "sigma"),
    ({"n_bottoms": 2, "sigma": 1, "other_shape": (6, 8, 3, 1)}, "targets"),
])
def test_invalid_parameters_fail_at_construction_naming_the_layer(kwargs, message):
    proc = run_python(BAD_NET.format(text=_net_text(**kwargs)))
    assert proc.returncode != 0
    assert "CONSTRUCTED" not in proc.stdout
    assert "'my_loss'" in proc.stderr and message in proc.stderr, proc.stderr[-2000:]
