"""Benchmark nets: a variant's test or train net as a caffe.Net with random weights.

- ``variant_cfg(variant)``: the global cfg with the variant's ``config.yml`` merged in (the
  Python layers read it at setup and forward), restored on exit.
- ``variant_net_param(variant, "test"|"train")``: the generated net as a NetParameter;
  ``with_input_layers`` replaces a train net's RoIDataLayer by an Input layer, so an
  iteration can be timed on a fixed random image.
- ``load_net`` builds the caffe.Net, ``randomize`` gives it seeded random weights (He
  normal; test nets have no fillers, so their weights would otherwise all be 0).
- ``layout(net)`` splits the layers into stages: ``input``, ``backbone`` (up to the feature
  blob: fire9/concat for SqueezeNet, conv5 for ZF), ``rpn`` (rpn_conv/3x3 up to the proposal
  layer; in train nets also the anchor targets and RPN losses), ``proposal`` (the proposal
  layer) and ``roi_head`` (after it: RoI pooling to cls_prob / bbox_pred; in train nets also
  the RoI targets, the OHEM branch and the losses).
- ``forward_layers`` / ``backward_layers`` run one pass layer by layer, timing each layer.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from frcnn import devices

STAGES = ("backbone", "rpn", "proposal", "roi_head")
RPN_FIRST_LAYER = "rpn_conv/3x3"
PROPOSAL_LAYER = "proposal"
DATA_LAYER_CLASS = "RoIDataLayer"
OHEM_LAYER_CLASS = "OHEMDataLayer"
OHEM_FALLBACK_MODULE = "roi_data_layer.ohem_layer"


def import_caffe() -> Any:
    """pycaffe on the CPU, or the GPU selected with --gpu.  A first import has Caffe's INFO/WARNING log lines off unless
    GLOG_minloglevel says otherwise (glog reads it at import; the variable is not left set,
    so child processes log as usual)."""
    import sys

    if "caffe" not in sys.modules and "GLOG_minloglevel" not in os.environ:
        os.environ["GLOG_minloglevel"] = "2"
        try:
            importlib.import_module("caffe")  # glog reads the variable now
        finally:
            del os.environ["GLOG_minloglevel"]
    import caffe

    devices.apply(caffe)
    return caffe


@contextlib.contextmanager
def variant_cfg(variant: Any, overrides: Mapping | None = None) -> Iterator[Any]:
    """The global cfg with ``variant``'s config.yml merged in, then ``overrides`` (a nested
    mapping such as ``{'TEST': {'RPN_POST_NMS_TOP_N': 20}}``); restored on exit."""
    import yaml

    from frcnn import config
    from frcnn.nets.generate import config_text

    with config.preserved() as cfg:
        config.merge_dict(yaml.safe_load(config_text(variant)) or {})
        if overrides:
            config.merge_dict(overrides)
        yield cfg


def variant_net_param(variant: Any, which: str) -> Any:
    """The variant's generated ``test`` or ``train`` net as a caffe_pb2.NetParameter."""
    from frcnn.caffe_files import parse_text
    from frcnn.nets.generate import render

    import_caffe()
    from caffe.proto import caffe_pb2

    if which not in ("test", "train"):
        raise ValueError(f"which must be 'test' or 'train', got {which!r}")
    param = caffe_pb2.NetParameter()
    return parse_text(render(variant, net_dir="")[f"{which}.prototxt"], param,
                      f"{variant.name} {which}.prototxt", "generated net")


def net_param_from_text(text: str) -> Any:
    """A NetParameter from prototxt text."""
    from frcnn.caffe_files import parse_text

    import_caffe()
    from caffe.proto import caffe_pb2

    return parse_text(text, caffe_pb2.NetParameter())


def with_input_layers(param: Any, shapes: Mapping[str, Sequence[int]]) -> Any:
    """A copy of ``param`` whose Python RoIDataLayer is an Input layer of the same name.

    Args:
        param: a train NetParameter whose data layer has tops data, im_info, gt_boxes.
        shapes: the Input shape of every top, e.g. {'data': (1, 3, 600, 1000),
            'im_info': (1, 3), 'gt_boxes': (3, 5)}.
    """
    out = copy.deepcopy(param)
    for layer in out.layer:
        if layer.type == "Python" and layer.python_param.layer == DATA_LAYER_CLASS:
            missing = [top for top in layer.top if top not in shapes]
            if missing:
                raise ValueError(f"no input shape for the data layer's tops {missing}")
            tops = list(layer.top)
            layer.ClearField("python_param")
            layer.type = "Input"
            for top in tops:
                layer.input_param.shape.add().dim.extend(int(d) for d in shapes[top])
            return out
    raise ValueError(f"the net has no Python {DATA_LAYER_CLASS} to replace")


def fix_ohem_module(param: Any) -> list[str]:
    """Point an OHEMDataLayer at ``roi_data_layer.ohem_layer`` when its module (normally
    ``roi_data_layer.layer``) does not expose the class; returns notes on what changed."""
    notes = []
    for layer in param.layer:
        if layer.type != "Python" or layer.python_param.layer != OHEM_LAYER_CLASS:
            continue
        module = layer.python_param.module
        try:
            ok = hasattr(importlib.import_module(module), OHEM_LAYER_CLASS)
        except ImportError:
            ok = False
        if not ok:
            layer.python_param.module = OHEM_FALLBACK_MODULE
            notes.append(f"{layer.name}: {module} lacks {OHEM_LAYER_CLASS}; used "
                         f"{OHEM_FALLBACK_MODULE}")
    return notes


def load_net(param: Any, phase: str) -> Any:
    """A caffe.Net of ``param`` in phase 'TRAIN' or 'TEST' (via a temporary file)."""
    from frcnn.caffe_files import write_text_proto

    caffe = import_caffe()
    with tempfile.TemporaryDirectory(prefix="frcnn-bench-") as tmp:
        path = Path(tmp) / "net.prototxt"
        write_text_proto(path, param)
        return caffe.Net(str(path), getattr(caffe, phase))


def unique_param_blobs(net: Any) -> list[np.ndarray]:
    """The net's parameter arrays, each shared blob once."""
    seen, out = set(), []
    for blobs in net.params.values():
        for blob in blobs:
            ptr = blob.data.__array_interface__["data"][0]
            if ptr not in seen:
                seen.add(ptr)
                out.append(blob.data)
    return out


# Gaussian std of the prediction layers (py-faster-rcnn's fillers); '_readonly' copies in
# OHEM nets share these blobs
HEAD_STD = {"rpn_cls_score": 0.01, "rpn_bbox_pred": 0.01, "cls_score": 0.01,
            "bbox_pred": 0.001}
INPUT_SCALE = 128.0  # |mean-subtracted pixel| up to ~128: the first layer's He std / this


def randomize(net: Any, seed: int = 0) -> None:
    """Seeded random weights that keep activations in a trained net's range: He normal
    (std sqrt(2 / fan_in)) for each layer's weights, divided by INPUT_SCALE for layers that
    read ``data``; the prediction layers (HEAD_STD) gaussian with py-faster-rcnn's std, so
    the box deltas stay small and class scores vary; biases 0.  Shared blobs are written
    once."""
    rng = np.random.default_rng(seed)
    seen = set()
    for name, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            ptr = blob.data.__array_interface__["data"][0]
            if ptr in seen:
                continue
            seen.add(ptr)
            data = blob.data
            if i > 0 or not data.size:
                data[...] = 0
                continue
            std = HEAD_STD.get(name.removesuffix("_readonly"))
            if std is None:
                std = np.sqrt(2.0 / max(data.size // data.shape[0], 1))
                if any(_is_blob(b, "data") for b in net.bottom_names.get(name, ())):
                    std /= INPUT_SCALE
            data[...] = rng.standard_normal(data.shape, dtype=np.float32) * np.float32(std)


def _is_blob(name: str, blob: str) -> bool:
    """Whether bottom ``name`` is ``blob`` or one of Caffe's split copies of it
    (``<blob>_<layer>_<i>_split_<j>``)."""
    return name == blob or (name.startswith(blob + "_") and "_split_" in name)


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(1, 3, height, width) float32, uniform in [-128, 128) (a mean-subtracted image)."""
    return rng.uniform(-128, 128, (1, 3, height, width)).astype(np.float32)


def example_gt_boxes(height: int, width: int, num_classes: int = 4) -> np.ndarray:
    """(3, 5) float32 gt boxes x1 y1 x2 y2 class, spread over a height x width image."""
    frac = np.array([[0.05, 0.10, 0.30, 0.45], [0.40, 0.20, 0.75, 0.60],
                     [0.60, 0.55, 0.95, 0.90]])
    boxes = np.floor(frac * [width - 1, height - 1, width - 1, height - 1])
    classes = (np.arange(len(boxes)) % (num_classes - 1)) + 1
    return np.hstack([boxes, classes[:, None]]).astype(np.float32)


def set_inputs(net: Any, image: np.ndarray, gt_boxes: np.ndarray | None = None) -> None:
    """Shape and fill the net's inputs: data = image (1, 3, H, W), im_info = [H, W, 1],
    gt_boxes (G, 5) when given; then reshape the whole net."""
    _, _, h, w = image.shape
    net.blobs["data"].reshape(*image.shape)
    net.blobs["data"].data[...] = image
    net.blobs["im_info"].reshape(1, 3)
    net.blobs["im_info"].data[...] = [[h, w, 1.0]]
    if gt_boxes is not None:
        net.blobs["gt_boxes"].reshape(*gt_boxes.shape)
        net.blobs["gt_boxes"].data[...] = gt_boxes
    net.reshape()


@dataclass(frozen=True)
class NetLayout:
    """Per-layer names, types and stages (see the module docstring) of a caffe.Net."""

    names: tuple[str, ...]
    types: tuple[str, ...]
    stages: tuple[str, ...]
    feature_blob: str

    def indices(self, stage: str) -> list[int]:
        return [i for i, s in enumerate(self.stages) if s == stage]

    @property
    def python_layers(self) -> list[int]:
        return [i for i, t in enumerate(self.types) if t == "Python"]


def layout(net: Any) -> NetLayout:
    """Split ``net``'s layers into stages; raises ValueError when it has no
    rpn_conv/3x3 or proposal layer."""
    names = tuple(net._layer_names)
    types = tuple(layer.type for layer in net.layers)
    for required in (RPN_FIRST_LAYER, PROPOSAL_LAYER):
        if required not in names:
            raise ValueError(f"the net has no {required!r} layer to split its stages at")
    rpn, proposal = names.index(RPN_FIRST_LAYER), names.index(PROPOSAL_LAYER)
    stages = []
    for i, kind in enumerate(types):
        if kind == "Input":
            stages.append("input")
        elif i < rpn:
            stages.append("backbone")
        elif i < proposal:
            stages.append("rpn")
        elif i == proposal:
            stages.append("proposal")
        else:
            stages.append("roi_head")
    last = max(i for i in range(rpn) if types[i] != "Split")  # Caffe's blob copies
    return NetLayout(names, types, tuple(stages), net.top_names[names[last]][0])


def forward_layers(net: Any, seconds: np.ndarray) -> None:
    """One forward pass, layer by layer; seconds[i] = wall time of layer i (shape (L,))."""
    clock = time.perf_counter
    for i in range(len(seconds)):
        t = clock()
        net._forward(i, i)
        seconds[i] = clock() - t


def backward_layers(net: Any, seconds: np.ndarray) -> None:
    """One backward pass, last layer first; seconds[i] = wall time of layer i (shape (L,))."""
    clock = time.perf_counter
    for i in reversed(range(len(seconds))):
        t = clock()
        net._backward(i, i)
        seconds[i] = clock() - t
