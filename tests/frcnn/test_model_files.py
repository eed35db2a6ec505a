"""Model files checked before Caffe reads them (frcnn.model_files): no process abort."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from frcnn.model_files import check_weights_fit, load_weights, save_net_atomically

NET = """
input: "x" input_shape {{ dim: 1 dim: 3 dim: 8 dim: 8 }}
layer {{ name: "conv" type: "Convolution" bottom: "x" top: "y"
  convolution_param {{ num_output: {n} kernel_size: 3 {bias} }} }}
"""


def saved(make_net, tmp_path, n=4, bias="", name="m.caffemodel"):
    net = make_net(NET.format(n=n, bias=bias))
    net.params["conv"][0].data[...] = np.arange(net.params["conv"][0].data.size).reshape(
        net.params["conv"][0].data.shape)
    return net, save_net_atomically(net, tmp_path / name)


def test_weights_load_after_the_check(make_net, tmp_path):
    net, path = saved(make_net, tmp_path)
    other = make_net(NET.format(n=4, bias=""))
    load_weights(other, path)
    np.testing.assert_array_equal(other.params["conv"][0].data, net.params["conv"][0].data)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary name is gone


def test_a_truncated_model_is_a_value_error(make_net, tmp_path):
    _, path = saved(make_net, tmp_path)
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"cut.caffemodel.*(truncated|needs)"):
        check_weights_fit(make_net(NET.format(n=4, bias="")), cut)


def test_shape_and_count_mismatches_name_the_layer(make_net, tmp_path):
    _, path = saved(make_net, tmp_path)
    with pytest.raises(ValueError, match=r"layer 'conv' blob 0 is \(4, 3, 3, 3\) but the net "
                                         r"needs \(5, 3, 3, 3\)"):
        check_weights_fit(make_net(NET.format(n=5, bias="")), path)
    _, no_bias = saved(make_net, tmp_path, bias="bias_term: false", name="nb.caffemodel")
    with pytest.raises(ValueError, match=r"layer 'conv' has 1 weight blob\(s\) but the net's "
                                         r"layer has 2"):
        check_weights_fit(make_net(NET.format(n=4, bias="")), no_bias)
