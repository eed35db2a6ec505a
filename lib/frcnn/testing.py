"""Run the project's Caffe Python layers on numpy arrays, without building a net.

    from frcnn.testing import NumpyBlob, make_layer
    layer = make_layer(ProposalLayer, "'feat_stride': 16", phase="TEST")
    bottom = [NumpyBlob(probs), NumpyBlob(deltas), NumpyBlob(im_info)]
    top = [NumpyBlob(), NumpyBlob()]
    layer.setup(bottom, top); layer.forward(bottom, top)
    rois = top[0].data

The layer object is created without Caffe's C++ side (its methods only use the blobs), and
gets what Caffe would set: param_str, phase (TRAIN 0 / TEST 1) and layer_name.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class NumpyBlob:
    """The part of caffe.Blob the layers use: .data, .diff, .reshape(*shape), .shape."""

    def __init__(self, data: Any = None):
        self.data = np.zeros((1,), np.float32) if data is None else np.array(data, np.float32)
        self.diff = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def reshape(self, *shape: int) -> None:
        if tuple(shape) != self.data.shape:
            self.data = np.zeros(shape, np.float32)
            self.diff = np.zeros(shape, np.float32)


def make_layer(cls: type, param_str: str = "", phase: int | str = 0, name: str = "") -> Any:
    """An instance of the Python layer class ``cls`` as Caffe would configure it."""
    layer = cls.__new__(cls)
    layer.param_str = param_str
    layer.phase = {"TRAIN": 0, "TEST": 1}.get(phase, phase) if isinstance(phase, str) else phase
    layer.layer_name = name or cls.__name__.lower()
    return layer
