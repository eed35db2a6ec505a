"""frcnn.roi_pool: the compiled RoI pooling kernel against numpy and the Caffe layer."""
from __future__ import annotations

import numpy as np
import pytest

from frcnn.roi_pool import roi_pool, roi_pool_reference


def random_case(seed: int, n_img: int = 2, rois: int = 40):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n_img, 5, 9, 13)).astype(np.float32)
    xy = rng.uniform(-40, 220, size=(rois, 2))
    wh = rng.uniform(-10, 120, size=(rois, 2))  # some empty or inverted
    boxes = np.hstack([xy, xy + wh])
    # coordinates whose scaled value is exactly x.5 (rounding half away from zero)
    boxes[:4] = [[8, 24, 40, 56], [-8, -8, 8, 8], [24, 8, 200, 136], [0, 0, 0, 0]]
    batch = rng.integers(0, n_img, size=(rois, 1))
    return features, np.hstack([batch, boxes]).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_kernel_matches_the_numpy_reference(seed):
    f, r = random_case(seed)
    np.testing.assert_array_equal(roi_pool(f, r, 3, 4, 1 / 16), roi_pool_reference(f, r, 3, 4,
                                                                                 1 / 16))


def test_hand_computed_bins():
    f = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    # the whole 4x4 map, 2x2 bins: the maxima of each quadrant
    out = roi_pool(f, np.array([[0, 0, 0, 3, 3]], np.float32), 2, 2, 1.0)
    assert out.tolist() == [[[[5, 7], [13, 15]]]]
    # a roi wholly outside the map: every bin empty -> 0
    out = roi_pool(f, np.array([[0, 10, 10, 12, 12]], np.float32), 2, 2, 1.0)
    assert not out.any()
    # x1 = 0.5 rounds half away from zero to column 1
    out = roi_pool(f, np.array([[0, 0.5, 0, 0.5, 0]], np.float32), 1, 1, 1.0)
    assert out.tolist() == [[[[1]]]]


def test_bad_input():
    f = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="batch indices"):
        roi_pool(f, np.array([[1, 0, 0, 1, 1]], np.float32), 2, 2, 1.0)
    with pytest.raises(ValueError, match="positive"):
        roi_pool(f, np.zeros((1, 5), np.float32), 0, 2, 1.0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        roi_pool(np.zeros((2, 3, 3), np.float32), np.zeros((1, 5), np.float32), 2, 2, 1.0)


def test_kernel_matches_the_caffe_layer(make_net):
    f, r = random_case(7)
    net = make_net(f"""
        input: "f" input_shape {{ dim: 2 dim: 5 dim: 9 dim: 13 }}
        input: "r" input_shape {{ dim: {len(r)} dim: 5 }}
        layer {{ name: "pool" type: "ROIPooling" bottom: "f" bottom: "r" top: "p"
          roi_pooling_param {{ pooled_h: 3 pooled_w: 4 spatial_scale: 0.0625 }} }}
    """)
    net.blobs["f"].data[...] = f
    net.blobs["r"].data[...] = r
    net.forward()
    np.testing.assert_array_equal(roi_pool(f, r, 3, 4, 0.0625), net.blobs["p"].data)
