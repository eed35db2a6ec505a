"""Multiply-add counting against hand-computed small nets, and the GEMM reference."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.bench import arithmetic, nets as bnets

SMALL_NET = """
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "c"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu" type: "ReLU" bottom: "c" top: "c" }
layer { name: "strided" type: "Convolution" bottom: "c" top: "s"
        convolution_param { num_output: 6 kernel_size: 3 stride: 2 } }
layer { name: "grouped" type: "Convolution" bottom: "c" top: "g"
        convolution_param { num_output: 6 kernel_size: 1 group: 2 } }
layer { name: "pool" type: "Pooling" bottom: "g" top: "p"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "p" top: "f"
        inner_product_param { num_output: 5 } }
layer { name: "fc_t" type: "InnerProduct" bottom: "f" top: "ft"
        inner_product_param { num_output: 7 transpose: true } }
"""


def test_formulas_by_hand():
    # 2 images, 4 x 8 x 8 outputs, each 3 x 3 x 3 multiply-adds
    assert arithmetic.conv_macs((2, 4, 8, 8), (4, 3, 3, 3)) == 2 * 4 * 8 * 8 * 3 * 3 * 3
    # group 2: each output sees C / 2 = 2 channels
    assert arithmetic.conv_macs((1, 6, 5, 5), (6, 2, 1, 1)) == 6 * 5 * 5 * 2
    # 300 rows, 4096 outputs, 9216 inputs
    assert arithmetic.inner_product_macs((300, 4096), (4096, 9216)) == 300 * 4096 * 9216


def test_layer_macs_of_a_small_net(caffe):
    net = bnets.load_net(bnets.net_param_from_text(SMALL_NET), "TEST")
    macs = arithmetic.layer_macs(net)
    assert set(macs) == {"conv", "strided", "grouped", "fc", "fc_t"}  # ReLU, Pooling: no
    assert macs["conv"] == 2 * 4 * 8 * 8 * (3 * 3 * 3)
    assert macs["strided"] == 2 * 6 * 3 * 3 * (4 * 3 * 3)  # (8 - 3) / 2 + 1 = 3
    assert macs["grouped"] == 2 * 6 * 8 * 8 * (4 // 2)
    assert macs["fc"] == 2 * 5 * (6 * 4 * 4)
    assert macs["fc_t"] == 2 * 7 * 5


def test_zf_test_net_counts(caffe, cfg):
    from frcnn.nets.variants import preset

    variant = preset("zf/faster_rcnn_end2end")
    with bnets.variant_cfg(variant):
        net = bnets.load_net(bnets.variant_net_param(variant, "test"), "TEST")
        net.reshape()
    macs = arithmetic.layer_macs(net)
    # conv1: 96 filters 7x7 stride 2 pad 3 on 3 x 600 x 1000 -> 96 x 300 x 500
    assert macs["conv1"] == 96 * 300 * 500 * 3 * 7 * 7
    rois = net.blobs["rois"].data.shape[0]
    assert macs["fc6"] == rois * 4096 * 256 * 6 * 6
    assert macs["fc7"] == rois * 4096 * 4096
    assert "roi_pool_conv5" not in macs and "proposal" not in macs


@pytest.mark.parametrize("fn", [arithmetic.numpy_gemm_rate, arithmetic.caffe_gemm_rate])
def test_gemm_reference_reports_its_size(caffe, fn):
    r = fn(64, repeats=1)
    assert r["n"] == 64 and r["seconds"] > 0
    assert np.isclose(r["macs_per_s"], 64 ** 3 / r["seconds"])
