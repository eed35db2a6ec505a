"""Dropout with caffe-fast-rcnn's ``scale_train`` (DropoutParameter field 2), in real nets.

scale_train true (the default, BVLC's Dropout): kept units are scaled by 1 / (1 - ratio) at
train time, the test-time output is the input.  scale_train false (ZF's ImageNet model and
every py-faster-rcnn ZF net): kept units pass unscaled at train time and the test-time
output is the input times (1 - ratio).  Gradients follow the forward in both phases.
"""
from __future__ import annotations

import numpy as np
import pytest

RATIO = 0.3
N = 4000

NET = """
force_backward: true
input: "x" input_shape {{ dim: 1 dim: {n} }}
layer {{ name: "drop" type: "Dropout" bottom: "x" top: "y"
  dropout_param {{ dropout_ratio: {ratio} {extra} }} }}
"""


def run(make_net, caffe, phase: str, extra: str):
    net = make_net(NET.format(n=N, ratio=RATIO, extra=extra), phase=phase)
    x = np.linspace(1.0, 2.0, N, dtype=np.float32).reshape(1, N)
    net.blobs["x"].data[...] = x
    net.forward()
    y = net.blobs["y"].data.copy()
    top_diff = np.linspace(-1.0, 3.0, N, dtype=np.float32).reshape(1, N)
    net.blobs["y"].diff[...] = top_diff
    net.backward()
    return x, y, top_diff, net.blobs["x"].diff.copy()


def test_the_field_is_caffe_fast_rcnns(caffe):
    from caffe.proto import caffe_pb2

    field = caffe_pb2.DropoutParameter.DESCRIPTOR.fields_by_name["scale_train"]
    assert field.number == 2 and field.default_value is True
    assert caffe_pb2.DropoutParameter().scale_train is True


@pytest.mark.parametrize("extra", ["", "scale_train: true"])
def test_scale_train_true_is_bvlc_dropout(make_net, caffe, extra):
    x, y, dy, dx = run(make_net, caffe, "TEST", extra)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, dy)
    x, y, dy, dx = run(make_net, caffe, "TRAIN", extra)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - RATIO), rtol=1e-6)
    np.testing.assert_allclose(dx, np.where(kept, dy / (1 - RATIO), 0), rtol=1e-6)
    assert abs(kept.mean() - (1 - RATIO)) < 0.05


def test_scale_train_false_scales_at_test_time(make_net, caffe):
    x, y, dy, dx = run(make_net, caffe, "TEST", "scale_train: false")
    np.testing.assert_allclose(y, x * 0.7, rtol=1e-6)  # (1 - 0.3), by hand
    np.testing.assert_allclose(dx, dy * 0.7, rtol=1e-6)


def test_scale_train_false_passes_kept_units_unscaled_when_training(make_net, caffe):
    x, y, dy, dx = run(make_net, caffe, "TRAIN", "scale_train: false")
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])  # no 1 / (1 - ratio)
    np.testing.assert_array_equal(dx, np.where(kept, dy, 0))
    assert abs(kept.mean() - 0.7) < 0.05 and 0 < kept.sum() < N
