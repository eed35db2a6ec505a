"""Stand-ins for the detection Python layers, to build and run the generated nets as real
caffe.Net objects whatever state the real layers are in.

Each fake parses its param_str with the real layer's entry of frcnn.layer_params, checks the
shapes of its bottoms against it (2A / 4A channels, K / 4K columns), and gives tops of the
real layer's shapes filled with valid random values (boxes inside the image, labels in
range).  None passes a gradient.  ``SETTINGS`` sizes the image and the RoI sets.
"""
from __future__ import annotations

import numpy as np

import caffe
from frcnn.layer_params import parse_param_str

SETTINGS = {"height": 128, "width": 160, "num_gt": 3, "num_rois": 12, "num_hard": 5,
            "seed": 0}


def random_boxes(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    x1 = rng.uniform(0, width / 2, n)
    y1 = rng.uniform(0, height / 2, n)
    x2 = np.minimum(x1 + rng.uniform(8, width / 2, n), width - 1)
    y2 = np.minimum(y1 + rng.uniform(8, height / 2, n), height - 1)
    return np.stack([x1, y1, x2, y2], axis=1)


class _Fake(caffe.Layer):
    KEY = ""

    def setup(self, bottom, top):
        self.params = parse_param_str(self.param_str, self.KEY, "fake")
        self.rng = np.random.default_rng(SETTINGS["seed"])
        self.check(bottom)
        self.reshape(bottom, top)

    def check(self, bottom):
        pass

    def backward(self, top, propagate_down, bottom):
        pass

    @property
    def anchors(self) -> int:
        return len(self.params["ratios"]) * len(self.params["scales"])


class FakeRoIDataLayer(_Fake):
    KEY = "roi_data_layer.layer.RoIDataLayer"

    def reshape(self, bottom, top):
        top[0].reshape(1, 3, SETTINGS["height"], SETTINGS["width"])
        top[1].reshape(1, 3)
        top[2].reshape(SETTINGS["num_gt"], 5)

    def forward(self, bottom, top):
        h, w, g = SETTINGS["height"], SETTINGS["width"], SETTINGS["num_gt"]
        top[0].data[...] = self.rng.normal(0, 50, top[0].data.shape)
        top[1].data[...] = [[h, w, 1.0]]
        top[2].data[:, :4] = random_boxes(self.rng, g, h, w)
        top[2].data[:, 4] = self.rng.integers(1, self.params["num_classes"], g)


class FakeAnchorTargetLayer(_Fake):
    KEY = "rpn.anchor_target_layer.AnchorTargetLayer"

    def check(self, bottom):
        got = bottom[0].data.shape[1]
        assert got == 2 * self.anchors, f"rpn_cls_score has {got} channels, 2A = {2 * self.anchors}"

    def reshape(self, bottom, top):
        _, _, h, w = bottom[0].data.shape
        a = self.anchors
        top[0].reshape(1, 1, a * h, w)
        for i in (1, 2, 3):
            top[i].reshape(1, 4 * a, h, w)

    def forward(self, bottom, top):
        top[0].data[...] = self.rng.integers(-1, 2, top[0].data.shape)
        top[1].data[...] = self.rng.normal(0, 0.1, top[1].data.shape)
        top[2].data[...] = 1.0
        top[3].data[...] = 1.0 / top[0].data.size


class FakeProposalLayer(_Fake):
    KEY = "rpn.proposal_layer.ProposalLayer"

    def check(self, bottom):
        a = self.anchors
        probs, deltas = bottom[0].data.shape, bottom[1].data.shape
        assert probs[1] == 2 * a, f"rpn_cls_prob_reshape has {probs[1]} channels, 2A = {2 * a}"
        assert tuple(deltas) == (1, 4 * a) + tuple(probs[2:]), (probs, deltas)

    def reshape(self, bottom, top):
        top[0].reshape(SETTINGS["num_rois"], 5)

    def forward(self, bottom, top):
        self.check(bottom)
        h, w = bottom[2].data[0, :2]
        top[0].data[:, 0] = 0
        top[0].data[:, 1:] = random_boxes(self.rng, SETTINGS["num_rois"], h, w)


class FakeProposalTargetLayer(_Fake):
    KEY = "rpn.proposal_target_layer.ProposalTargetLayer"

    def reshape(self, bottom, top):
        r, k = bottom[0].data.shape[0], self.params["num_classes"]
        top[0].reshape(r, 5)
        top[1].reshape(r)
        for i in (2, 3, 4):
            top[i].reshape(r, 4 * k)

    def forward(self, bottom, top):
        k = self.params["num_classes"]
        top[0].data[...] = bottom[0].data
        top[1].data[...] = self.rng.integers(0, k, top[1].data.shape)
        top[2].data[...] = self.rng.normal(0, 0.5, top[2].data.shape)
        top[3].data[...] = 1.0
        top[4].data[...] = 1.0


class FakeOHEMDataLayer(_Fake):
    KEY = "roi_data_layer.layer.OHEMDataLayer"

    def check(self, bottom):
        k = self.params["num_classes"]
        r = bottom[2].data.shape[0]
        assert tuple(bottom[0].data.shape) == (r, k), bottom[0].data.shape
        assert tuple(bottom[1].data.shape) == (r, 4 * k), bottom[1].data.shape

    def reshape(self, bottom, top):
        n = min(SETTINGS["num_hard"], bottom[2].data.shape[0])
        for i in range(5):
            top[i].reshape(n, *bottom[2 + i].data.shape[1:])

    def forward(self, bottom, top):
        self.check(bottom)
        n = top[0].data.shape[0]
        for i in range(5):
            top[i].data[...] = bottom[2 + i].data[:n]


FAKES = {cls.KEY: cls.__name__ for cls in (FakeRoIDataLayer, FakeAnchorTargetLayer,
                                           FakeProposalLayer, FakeProposalTargetLayer,
                                           FakeOHEMDataLayer)}


def with_fakes(net):
    """A copy of the NetParameter ``net`` whose detection Python layers are these fakes."""
    out = type(net)()
    out.CopyFrom(net)
    for layer in out.layer:
        if layer.type != "Python":
            continue
        key = f"{layer.python_param.module}.{layer.python_param.layer}"
        layer.python_param.module = __name__
        layer.python_param.layer = FAKES[key]
    return out
