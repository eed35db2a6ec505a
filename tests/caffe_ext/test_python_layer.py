"""A Python layer inside a real caffe.Net: param_str and phase in, data and diffs out."""
from __future__ import annotations

import numpy as np

import caffe


class ScaleLayer(caffe.Layer):
    """top = factor * bottom; param_str: "'factor': <float>"."""

    def setup(self, bottom, top):
        import yaml

        self.factor = float(yaml.safe_load(self.param_str)["factor"])
        self.seen_phase = self.phase

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.factor * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = self.factor * top[0].diff


NET = f"""
force_backward: true
layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
layer {{ name: "scale" type: "Python" bottom: "x" top: "y"
  python_param {{ module: "{__name__}" layer: "ScaleLayer" param_str: "'factor': 2.5" }} }}
"""


def test_python_layer_round_trip(make_net, caffe):
    net = make_net(NET, phase="TRAIN")
    layer = net.layers[list(net._layer_names).index("scale")]
    assert layer.seen_phase == caffe.TRAIN == 0
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net.blobs["x"].data[...] = x
    np.testing.assert_array_equal(net.forward()["y"], 2.5 * x)
    diffs = net.backward(y=np.ones((2, 3), np.float32), diffs=["x"])
    np.testing.assert_array_equal(diffs["x"], np.full((2, 3), 2.5, np.float32))


def test_phase_is_an_int(make_net, caffe):
    net = make_net(NET, phase="TEST")
    layer = net.layers[list(net._layer_names).index("scale")]
    assert layer.seen_phase == caffe.TEST == 1
