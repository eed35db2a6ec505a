"""Fixtures of the network tests: generated nets built as real caffe.Net objects."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from frcnn.nets import layers
from frcnn.nets.variants import PRESETS
from tests.frcnn.nets import fakes

FIXTURES = Path(__file__).with_name("fixtures")
SMALL = {"height": 128, "width": 160}  # the image of the nets that run


def small(variant):
    """The variant with the small image as its test-net input."""
    return variant.replace(scale=SMALL["height"], max_size=SMALL["width"])


@pytest.fixture
def build_net(caffe, tmp_path):
    """build_net(net_param, phase) -> caffe.Net, with the detection Python layers swapped
    for tests.frcnn.nets.fakes."""

    def _build(net_param, phase: str):
        fakes.SETTINGS.update(SMALL)
        path = tmp_path / f"net_{len(list(tmp_path.iterdir()))}.prototxt"
        path.write_text(layers.to_text(fakes.with_fakes(net_param)))
        return caffe.Net(str(path), getattr(caffe, phase))

    return _build


def feed_test_inputs(net, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    data = net.blobs["data"]
    data.data[...] = rng.normal(0, 50, data.data.shape)
    net.blobs["im_info"].data[...] = [[data.data.shape[2], data.data.shape[3], 1.0]]


@pytest.fixture(params=sorted(PRESETS))
def preset(request):
    return PRESETS[request.param]
