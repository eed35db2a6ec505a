"""``frcnn check NET.prototxt``: what would fail when the net is built or trained.

The prototxt is parsed with caffe_pb2 and protobuf's text format; no caffe.Net is built.
Blob shapes, feature strides and parameter shapes are inferred statically, layer by layer,
for the layer types Faster R-CNN nets use (others are reported and skipped).  Then each
Python layer's own validation runs: its ``setup(bottom, top)`` and ``reshape(bottom, top)``
are called as Caffe calls them, on numpy stand-in blobs (``frcnn.testing``) -- zeros of the
inferred bottom shapes, as many tops as the prototxt declares, the net's phase -- and any
exception is an error of that layer.  So what Caffe refuses when it builds the net (a data
layer's top count, a bottom count, anchors against the score blob, a missing dataset) is
reported too.  A layer runs only when every bottom shape is known (statically, or from the
setup of the Python layer that produces the blob), never on guessed shapes; the global cfg
(which the layers read, and a RoIDataLayer 'cfg' key merges into) is restored afterwards.
The checks, each reported with the layer's name:

- a bottom that no earlier layer produces;
- Python layers: the module does not import or lacks the class; param_str keys unknown to
  the layer, values of the wrong type, required keys missing (``frcnn.layer_params``, the
  table the layers themselves parse with; modules not in the table get the import check);
- num_classes (from the data, proposal-target and OHEM layers' param_str) against the
  class-score InnerProducts (K outputs) and box-regression InnerProducts (4K outputs);
  without num_classes (test nets) bbox_pred against 4 x cls_score;
- anchors: rpn_cls_score (2A outputs), rpn_bbox_pred (4A) and the reshape of
  rpn_cls_prob (dim 2A) against the ratios x scales of the anchor-target and proposal
  layers' param_str; the score reshape before the softmax (dim 2); feat_stride against the
  stride of the RPN maps;
- parameters shared by name whose shapes (or lr_mult / decay_mult) differ, e.g. the OHEM
  read-only branch pooled 6 x 6 beside a 7 x 7 trained branch: their InnerProduct weights
  cannot be the same blob;
- ROIPooling spatial_scale against 1 / the stride of its feature map; blobs that must have
  equal shapes (SmoothL1Loss, Eltwise) or concatenate (Concat).

- Python layers' setup()/reshape() on stand-in blobs (above; ``imports`` and ``setup``
  switch it off).

It also counts the parameters (shared blobs once) and the model size as float32.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

Shape = Optional[tuple]  # a blob shape; a dim is None when unknown; the shape None when unknown

ELEMENTWISE = {"ReLU", "Dropout", "LRN", "Sigmoid", "TanH", "Power", "AbsVal", "BNLL", "ELU",
               "Exp", "Log", "Softmax", "BatchNorm", "Scale", "Bias", "PReLU", "MVN",
               "Threshold", "Clip", "Swish"}
LOSSES = {"SoftmaxWithLoss", "SmoothL1Loss", "EuclideanLoss", "SigmoidCrossEntropyLoss",
          "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss", "Accuracy"}

DATA_KEY = "roi_data_layer.layer.RoIDataLayer"
ANCHOR_TARGET_KEY = "rpn.anchor_target_layer.AnchorTargetLayer"
PROPOSAL_KEY = "rpn.proposal_layer.ProposalLayer"
PROPOSAL_TARGET_KEY = "rpn.proposal_target_layer.ProposalTargetLayer"
OHEM_KEY = "roi_data_layer.layer.OHEMDataLayer"


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    layer: str     # "layer 'name' (Type)", or "" for the whole net
    message: str

    def __str__(self) -> str:
        where = f"{self.layer}: " if self.layer else ""
        return f"{self.severity.upper()} {where}{self.message}"


@dataclass
class Report:
    path: str
    net_name: str
    phase: str
    num_layers: int
    findings: list[Finding] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    num_params: int = 0
    uncounted: list[str] = field(default_factory=list)   # layers whose params were not sized
    param_table: list[tuple[str, list[tuple], int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)       # shown with verbose only

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def size_bytes(self) -> int:
        return 4 * self.num_params

    def params_line(self) -> str:
        size = self.size_bytes
        text = (f"parameters: {self.num_params:,} ({size / 2**20:.2f} MiB = {size / 1e6:.2f} MB "
                f"as float32)")
        if self.uncounted:
            text += f"; not counted: {', '.join(self.uncounted)}"
        return text

    def format(self, verbose: bool = False) -> str:
        lines = [f"{self.path}: net '{self.net_name}', phase {self.phase}, "
                 f"{self.num_layers} layers"]
        lines += [f"  {fact}" for fact in self.facts]
        lines.append(f"  {self.params_line()}")
        if verbose:
            for name, shapes, count in self.param_table:
                size = f"{count:,}" if count or not shapes else "shared, counted above"
                lines.append(f"    {name}: {' '.join(str(list(s)) for s in shapes)} = {size}")
            lines += [f"  {note}" for note in self.notes]
        lines += [f"  {finding}" for finding in self.findings]
        n = len(self.errors)
        lines.append("  OK: no problems found" if n == 0 else
                     f"  {n} problem{'s' if n > 1 else ''} found")
        return "\n".join(lines)


def check_file(path: str | Path, phase: str = "auto", imports: bool = True,
               input_size: tuple[int, int] = (600, 1000), setup: bool = True) -> Report:
    """Check a prototxt file (see the module docstring).

    Args:
        phase: 'TRAIN' or 'TEST': the layers whose include/exclude rules select it; 'auto':
            TRAIN when some layer has a loss, else TEST.
        imports: try importing the Python layers' modules (False: param_str checks only,
            and no setup runs).
        input_size: (height, width) of the image blob a Python data layer produces, for
            the shapes that depend on it (Input layers give their own).
        setup: run each imported Python layer's setup() and reshape() on stand-in blobs
            (False: static checks only; faster, and loads no dataset).
    """
    text = Path(path).read_text()
    return check_text(text, str(path), phase=phase, imports=imports, input_size=input_size,
                      setup=setup)


def check_text(text: str, path: str = "<text>", **kwargs: Any) -> Report:
    from caffe.proto import caffe_pb2

    from frcnn.caffe_files import parse_text

    net = caffe_pb2.NetParameter()
    try:
        parse_text(text, net, path, "prototxt")
    except ValueError as e:
        report = Report(path, "?", "-", 0)
        report.findings.append(Finding("error", "", f"not a valid NetParameter prototxt: {e}"))
        return report
    return check_net(net, path, **kwargs)


def check_net(net: Any, path: str = "<net>", phase: str = "auto", imports: bool = True,
              input_size: tuple[int, int] = (600, 1000), setup: bool = True) -> Report:
    """Check a caffe_pb2.NetParameter (arguments as check_file)."""
    return _Checker(net, path, _phase(net, phase), imports, tuple(input_size),
                    setup=setup).run()


def infer_shapes(net: Any, phase: str = "auto",
                 input_size: tuple[int, int] = (600, 1000)) -> dict[str, Shape]:
    """The statically inferred shape of every blob of a NetParameter (as its last writer
    leaves it); unknown dims are None."""
    checker = _Checker(net, "<net>", _phase(net, phase), False, tuple(input_size))
    checker.run()
    return dict(checker.shapes)


def _phase(net: Any, phase: str) -> str:
    phase = phase.upper()
    if phase == "AUTO":
        has_loss = any(layer.type.endswith("Loss") or len(layer.loss_weight)
                       for layer in net.layer)
        phase = "TRAIN" if has_loss else "TEST"
    if phase not in ("TRAIN", "TEST"):
        raise ValueError(f"phase must be TRAIN, TEST or auto, got {phase!r}")
    return phase


# ---------------------------------------------------------------------------------------


def _label(layer: Any) -> str:
    return f"layer '{layer.name}' ({layer.type})"


def _prod(dims: Iterable[Any]) -> Optional[int]:
    out = 1
    for d in dims:
        if d is None:
            return None
        out *= int(d)
    return out


def _known(shape: Shape) -> bool:
    return shape is not None and all(d is not None for d in shape)


def _compatible(shapes: list[Shape]) -> bool:
    """False when two of the shapes surely differ (rank, or a dim known in both)."""
    known = [s for s in shapes if s is not None]
    for s in known[1:]:
        if len(s) != len(known[0]) or any(a is not None and b is not None and a != b
                                          for a, b in zip(s, known[0])):
            return False
    return True


def _fmt_shape(shape: Shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _spatial(p: Any, name: str, default: int, i: int) -> int:
    """kernel/pad/stride/dilation of spatial axis i (0 = h, 1 = w) of a conv or pool param
    (``name_h``/``name_w`` where given, else the scalar or repeated field)."""
    fields = p.DESCRIPTOR.fields_by_name
    h, w = f"{name}_h", f"{name}_w"
    if h in fields and (p.HasField(h) or p.HasField(w)):
        return int(getattr(p, h if i == 0 else w))
    field_name = "kernel_size" if name == "kernel" else name
    if field_name not in fields:
        return default
    values = getattr(p, field_name)
    if hasattr(values, "__len__"):  # repeated (ConvolutionParameter)
        values = list(values)
        if not values:
            return default
        return int(values[i] if len(values) > i else values[0])
    return int(values) if p.HasField(field_name) else default


def _fmt_scale(scale: float) -> str:
    inv = 1.0 / scale if scale else float("inf")
    if abs(inv - round(inv)) < 1e-6:
        return f"{scale:g} = 1/{round(inv)}"
    return f"{scale:g}"


class _Checker:
    def __init__(self, net: Any, path: str, phase: str, imports: bool,
                 input_size: tuple[int, int], setup: bool = False):
        self.net = net
        self.path = path
        self.phase = phase
        self.imports = imports
        self.run_setup = imports and setup
        self.input_size = input_size
        self.findings: list[Finding] = []
        self.facts: list[str] = []
        self.layers = [layer for layer in net.layer if self._included(layer)]
        self.shapes: dict[str, Shape] = {}
        self.strides: dict[str, Optional[float]] = {}
        self.producer: dict[str, int] = {}
        self.sources: list[list[Optional[int]]] = []
        self.python: dict[int, tuple[str, Optional[dict]]] = {}  # idx -> (key, params)
        self.classes: dict[int, type] = {}          # idx -> the imported Python layer class
        self.param_failed: set[int] = set()         # Python layers whose param_str failed
        self.bottom_shapes: dict[int, list[Shape]] = {}  # Python layers' bottoms, as read
        self.notes: list[str] = []
        self.param_shapes: dict[int, Optional[list[tuple]]] = {}
        self._module_cache: dict[str, Any] = {}

    # ----- helpers -----
    def error(self, layer: Any, message: str) -> None:
        self._add("error", layer, message)

    def warn(self, layer: Any, message: str) -> None:
        self._add("warning", layer, message)

    def _add(self, severity: str, layer: Any, message: str) -> None:
        finding = Finding(severity, _label(layer) if layer is not None else "", message)
        if finding not in self.findings:
            self.findings.append(finding)

    def _included(self, layer: Any) -> bool:
        from caffe.proto import caffe_pb2

        phase = caffe_pb2.Phase.Value(self.phase)

        def matches(rule: Any) -> bool:
            return not rule.HasField("phase") or rule.phase == phase

        if layer.HasField("phase") and layer.phase != phase:
            return False
        if layer.include:
            return any(matches(r) for r in layer.include)
        return not any(matches(r) for r in layer.exclude)

    def source(self, idx: int, pos: int) -> Optional[int]:
        srcs = self.sources[idx]
        return srcs[pos] if pos < len(srcs) else None

    def consumers(self, idx: int) -> list[tuple[int, int]]:
        """(layer, bottom position) pairs that read a top of layer idx."""
        return [(j, p) for j in range(idx + 1, len(self.layers))
                for p, s in enumerate(self.sources[j]) if s == idx]

    def through(self, idx: Optional[int], types: set[str]) -> Optional[int]:
        """Follow bottom[0] upstream while the layer's type is in types."""
        while idx is not None and self.layers[idx].type in types:
            idx = self.source(idx, 0)
        return idx

    # ----- the run -----
    def run(self) -> Report:
        net = self.net
        if len(net.layers) and not len(net.layer):
            self.error(None, "V1 'layers' format; upgrade it with Caffe's "
                             "upgrade_net_proto_text first")
        self._legacy_inputs()
        for idx, layer in enumerate(self.layers):
            self._layer(idx, layer)
        self._check_classes()
        self._check_anchors()
        self._check_roi_pooling()
        report = Report(self.path, net.name or "?", self.phase, len(self.layers))
        self._count_params(report)
        self._check_shared()
        if self.run_setup:
            self._run_setups()
        report.findings = self.findings
        report.facts = self.facts
        report.notes = self.notes
        return report

    def _legacy_inputs(self) -> None:
        net = self.net
        shapes = [tuple(s.dim) for s in net.input_shape]
        dims = list(net.input_dim)
        if not shapes and dims:
            shapes = [tuple(dims[i:i + 4]) for i in range(0, len(dims), 4)]
        for i, name in enumerate(net.input):
            shape = shapes[i] if i < len(shapes) else None
            self.shapes[name] = shape
            self.strides[name] = 1.0 if shape is not None and len(shape) == 4 else None
            self.producer[name] = -1

    def _layer(self, idx: int, layer: Any) -> None:
        srcs, shapes = [], []
        for b in layer.bottom:
            if b not in self.producer:
                self.error(layer, f"bottom '{b}' is not produced by any earlier layer")
            src = self.producer.get(b)
            srcs.append(src if src is not None and src >= 0 else None)
            shapes.append(self.shapes.get(b))
        self.sources.append(srcs)
        if layer.propagate_down and len(layer.propagate_down) != len(layer.bottom):
            self.error(layer, f"propagate_down is given {len(layer.propagate_down)} times for "
                              f"{len(layer.bottom)} bottoms (Caffe needs 0 or one per bottom)")
        if layer.type == "Python":
            self.bottom_shapes[idx] = list(shapes)
            self._python_setup(idx, layer)
        tops, strides = self._infer(idx, layer, shapes)
        for i, t in enumerate(layer.top):
            self.shapes[t] = tops[i] if i < len(tops) else None
            self.strides[t] = strides[i] if i < len(strides) else None
            self.producer[t] = idx

    # ----- shape inference -----
    def _infer(self, idx: int, layer: Any, ins: list[Shape]) -> tuple[list[Shape], list]:
        t = layer.type
        ntop = len(layer.top)
        bstride = [self.strides.get(b) for b in layer.bottom]
        x = ins[0] if ins else None
        s0 = bstride[0] if bstride else None
        if t == "Input":
            shapes = [tuple(s.dim) for s in layer.input_param.shape]
            out = [shapes[i] if i < len(shapes) else (shapes[0] if len(shapes) == 1 else None)
                   for i in range(ntop)]
            return out, [1.0 if s is not None and len(s) == 4 else None for s in out]
        if t == "Python":
            return self._python_shapes(idx, layer, ins)
        if t in ("Convolution", "Deconvolution"):
            return self._conv(idx, layer, x, s0, deconv=(t == "Deconvolution"))
        if t == "Pooling":
            return self._pool(layer, x, s0)
        if t in ELEMENTWISE:
            self._elementwise_params(idx, layer, x)
            return [x] * ntop, [s0] * ntop
        if t in ("Split",):
            return [x] * ntop, [s0] * ntop
        if t == "Eltwise":
            if not _compatible(ins):
                self.error(layer, "bottoms of different shapes: " +
                           ", ".join(_fmt_shape(s) for s in ins))
            return [x], [s0]
        if t == "Concat":
            return self._concat(layer, ins, bstride)
        if t == "ROIPooling":
            p = layer.roi_pooling_param
            if p.pooled_h < 1 or p.pooled_w < 1:
                self.error(layer, f"pooled size {p.pooled_h} x {p.pooled_w} must be >= 1")
            if p.spatial_scale <= 0:
                self.error(layer, f"spatial_scale {p.spatial_scale} must be > 0")
            rois = ins[1] if len(ins) > 1 else None
            n = rois[0] if rois is not None else None
            c = x[1] if x is not None and len(x) > 1 else None
            return [(n, c, p.pooled_h, p.pooled_w)], [None]
        if t == "InnerProduct":
            return self._inner_product(idx, layer, x)
        if t == "Reshape":
            return [self._reshape(layer, x)], [None]
        if t == "Flatten":
            if x is None:
                return [None], [None]
            return [(x[0], _prod(x[1:]))], [None]
        if t in LOSSES:
            if t == "SmoothL1Loss":
                if not _compatible(ins):
                    self.error(layer, "SmoothL1Loss bottoms (prediction, targets, weights) "
                                      "must have one shape, got " +
                               ", ".join(f"'{b}' {_fmt_shape(s)}"
                                         for b, s in zip(layer.bottom, ins)))
            return [()] * ntop, [None] * ntop
        if t == "Silence":
            return [], []
        if layer.param:
            self.warn(layer, f"layer type {t} is not known to the checker: its parameters "
                             f"are not counted and its tops' shapes are unknown")
            self.param_shapes[idx] = None
        return [None] * ntop, [None] * ntop

    def _conv(self, idx: int, layer: Any, x: Shape, stride: Optional[float],
              deconv: bool) -> tuple[list[Shape], list]:
        p = layer.convolution_param
        k = [_spatial(p, "kernel", 1, i) for i in (0, 1)]
        pad = [_spatial(p, "pad", 0, i) for i in (0, 1)]
        st = [_spatial(p, "stride", 1, i) for i in (0, 1)]
        dil = [_spatial(p, "dilation", 1, i) for i in (0, 1)]
        group = p.group or 1
        c_in = x[1] if x is not None and len(x) == 4 else None
        if c_in is not None and c_in % group:
            self.error(layer, f"{c_in} input channels are not divisible by group {group}")
        if c_in is None:
            params = None
        elif deconv:
            params = [(c_in, p.num_output // group, k[0], k[1])]
        else:
            params = [(p.num_output, c_in // group, k[0], k[1])]
        if params is not None and p.bias_term:
            params.append((p.num_output,))
        self.param_shapes[idx] = params
        if x is None or len(x) != 4:
            return [None], [None]
        out = []
        for i in (0, 1):
            size = x[2 + i]
            if size is None:
                out.append(None)
            elif deconv:
                out.append(st[i] * (size - 1) + dil[i] * (k[i] - 1) + 1 - 2 * pad[i])
            else:
                out.append((size + 2 * pad[i] - (dil[i] * (k[i] - 1) + 1)) // st[i] + 1)
        for v in out:
            if v is not None and v < 1:
                self.error(layer, f"output map would be empty for input {_fmt_shape(x)}")
                break
        top_stride = None
        if stride is not None and st[0] == st[1]:
            top_stride = stride / st[0] if deconv else stride * st[0]
        return [(x[0], p.num_output, out[0], out[1])], [top_stride]

    def _pool(self, layer: Any, x: Shape, stride: Optional[float]) -> tuple[list[Shape], list]:
        p = layer.pooling_param
        ntop = len(layer.top)
        if x is None or len(x) != 4:
            return [None] * ntop, [None] * ntop
        if p.global_pooling:
            return [(x[0], x[1], 1, 1)] * ntop, [None] * ntop
        k = [_spatial(p, "kernel", 0, i) for i in (0, 1)]
        pad = [_spatial(p, "pad", 0, i) for i in (0, 1)]
        st = [_spatial(p, "stride", 1, i) for i in (0, 1)]
        ceil_mode = getattr(p, "ceil_mode", True)
        out = []
        for i in (0, 1):
            size = x[2 + i]
            if size is None:
                out.append(None)
                continue
            r = (size + 2 * pad[i] - k[i]) / st[i]
            n = (math.ceil(r) if ceil_mode else math.floor(r)) + 1
            if pad[i] and (n - 1) * st[i] >= size + pad[i]:
                n -= 1
            out.append(n)
        top_stride = stride * st[0] if stride is not None and st[0] == st[1] else None
        return [(x[0], x[1], out[0], out[1])] * ntop, [top_stride] * ntop

    def _concat(self, layer: Any, ins: list[Shape], strides: list) -> tuple[list[Shape], list]:
        p = layer.concat_param
        axis = p.axis if p.HasField("axis") else (p.concat_dim if p.HasField("concat_dim")
                                                  else 1)
        if any(s is None for s in ins) or not ins:
            return [None], [None]
        rank = len(ins[0])
        axis = axis % rank if rank else 0
        for s in ins[1:]:
            if len(s) != rank or any(a is not None and b is not None and a != b
                                     for i, (a, b) in enumerate(zip(s, ins[0])) if i != axis):
                self.error(layer, "bottoms differ outside the concatenation axis: " +
                           ", ".join(_fmt_shape(v) for v in ins))
                return [None], [None]
        dims = [s[axis] for s in ins]
        total = sum(dims) if all(d is not None for d in dims) else None
        out = tuple(total if i == axis else ins[0][i] for i in range(rank))
        stride = strides[0] if all(s == strides[0] for s in strides) else None
        return [out], [stride]

    def _inner_product(self, idx: int, layer: Any, x: Shape) -> tuple[list[Shape], list]:
        p = layer.inner_product_param
        axis = p.axis if p.HasField("axis") else 1
        if x is None:
            self.param_shapes[idx] = None
            return [None], [None]
        axis = axis % len(x)
        fan_in = _prod(x[axis:])
        if fan_in is None:
            self.param_shapes[idx] = None
        else:
            w = (fan_in, p.num_output) if p.transpose else (p.num_output, fan_in)
            self.param_shapes[idx] = [w] + ([(p.num_output,)] if p.bias_term else [])
        return [tuple(x[:axis]) + (p.num_output,)], [None]

    def _elementwise_params(self, idx: int, layer: Any, x: Shape) -> None:
        t = layer.type
        c = x[1] if x is not None and len(x) > 1 else None
        if t == "BatchNorm":
            self.param_shapes[idx] = None if c is None else [(c,), (c,), (1,)]
        elif t == "Scale":
            if len(layer.bottom) == 1:
                bias = layer.scale_param.bias_term
                self.param_shapes[idx] = None if c is None else [(c,)] + ([(c,)] if bias else [])
        elif t == "Bias":
            if len(layer.bottom) == 1:
                self.param_shapes[idx] = None if c is None else [(c,)]
        elif t == "PReLU":
            shared = layer.prelu_param.channel_shared
            self.param_shapes[idx] = [(1,)] if shared else (None if c is None else [(c,)])

    def _reshape(self, layer: Any, x: Shape) -> Shape:
        p = layer.reshape_param
        dims = list(p.shape.dim)
        if x is None or p.axis != 0 or p.num_axes != -1:
            return None
        out: list[Any] = []
        for i, d in enumerate(dims):
            if d == 0:
                out.append(x[i] if i < len(x) else None)
            else:
                out.append(d)
        if -1 in out:
            total = _prod(x)
            rest = _prod(d for d in out if d != -1)
            if total is not None and rest:
                if total % rest:
                    self.error(layer, f"cannot reshape {_fmt_shape(x)} to {dims}")
                out[out.index(-1)] = total // rest if total % rest == 0 else None
            else:
                out[out.index(-1)] = None
        elif _known(x) and _known(tuple(out)) and _prod(x) != _prod(out):
            self.error(layer, f"cannot reshape {_fmt_shape(x)} to {dims}")
        return tuple(out)

    # ----- Python layers -----
    def _python_setup(self, idx: int, layer: Any) -> None:
        from frcnn.layer_params import LAYER_PARAMS, ParamError, parse_param_str

        pp = layer.python_param
        key = f"{pp.module}.{pp.layer}"
        cls = None
        if self.imports:
            cls = self._import(layer, pp.module, pp.layer)
            if cls is not None:
                self.classes[idx] = cls
        table_key = key if key in LAYER_PARAMS else None
        if table_key is None and cls is not None:
            alias = getattr(cls, "PARAMS", None)
            if isinstance(alias, str) and alias in LAYER_PARAMS:
                table_key = alias
        params = None
        if table_key is not None:
            try:
                params = parse_param_str(pp.param_str, table_key, layer.name)
            except ParamError as e:
                self.param_failed.add(idx)
                message = str(e)
                prefix = f"layer '{layer.name}' ({table_key}): "
                self.error(layer, message[len(prefix):] if message.startswith(prefix)
                           else message)
        self.python[idx] = (table_key or key, params)

    def _import(self, layer: Any, module: str, cls_name: str) -> Any:
        if module not in self._module_cache:
            try:
                self._module_cache[module] = importlib.import_module(module)
            except Exception as e:  # the import error itself is the finding
                self._module_cache[module] = e
        mod = self._module_cache[module]
        if isinstance(mod, Exception):
            self.error(layer, f"Python module '{module}' does not import: "
                              f"{type(mod).__name__}: {mod}")
            return None
        cls = getattr(mod, cls_name, None)
        if cls is None:
            self.error(layer, f"Python module '{module}' ({getattr(mod, '__file__', '?')}) "
                              f"has no layer class '{cls_name}'")
        return cls

    def _python_shapes(self, idx: int, layer: Any, ins: list[Shape]) -> tuple[list[Shape], list]:
        key, params = self.python[idx]
        ntop = len(layer.top)
        unknown: tuple[list[Shape], list] = ([None] * ntop, [None] * ntop)
        if key == DATA_KEY:
            h, w = self.input_size
            if ntop == 6:  # Fast R-CNN layout: images and precomputed RoIs with targets
                k = params["num_classes"] if params is not None else None
                k4 = None if k is None else 4 * k
                shapes = [(None, 3, h, w), (None, 5), (None,), (None, k4), (None, k4),
                          (None, k4)]
                return shapes, [1.0] + [None] * 5
            shapes = [(1, 3, h, w), (1, 3), (None, 5)]
            return shapes[:ntop] + [None] * (ntop - 3), [1.0] + [None] * (ntop - 1)
        if params is None:
            return unknown
        if key == ANCHOR_TARGET_KEY:
            a = len(params["ratios"]) * len(params["scales"])
            score = ins[0] if ins else None
            if score is None or len(score) != 4:
                return unknown
            _, _, h, w = score
            shapes = [(1, 1, None if h is None else a * h, w)] + [(1, 4 * a, h, w)] * 3
            return shapes[:ntop], [None] * ntop
        if key == PROPOSAL_KEY:
            return [(None, 5), (None, 1)][:ntop], [None] * ntop
        if key == PROPOSAL_TARGET_KEY:
            k = params["num_classes"]
            return [(None, 5), (None,), (None, 4 * k), (None, 4 * k), (None, 4 * k)][:ntop], \
                [None] * ntop
        if key == OHEM_KEY:
            outs = [None if s is None else (None,) + tuple(s[1:]) for s in ins[2:]]
            return (outs + [None] * ntop)[:ntop], [None] * ntop
        return unknown

    # ----- Python layers' own setup -----
    def _run_setups(self) -> None:
        """Call each imported Python layer's setup() and reshape() as Caffe would, on
        numpy stand-in blobs; an exception is an error of that layer.  The global cfg is
        restored afterwards (layers read it, RoIDataLayer's 'cfg' key merges into it);
        within the run it carries over from layer to layer, as in one Caffe process."""
        from frcnn import config

        ran: list[str] = []
        skipped: list[str] = []
        actual: dict[int, dict[str, tuple]] = {}  # idx -> top name -> shape after setup
        noise = io.StringIO()
        with config.preserved(), contextlib.redirect_stderr(noise), \
                contextlib.redirect_stdout(noise):
            for idx in sorted(self.classes):
                if idx in self.param_failed:
                    continue
                layer = self.layers[idx]
                shapes = self._setup_bottoms(idx, actual)
                if shapes is None:
                    skipped.append(layer.name)
                    continue
                ran.append(layer.name)
                tops = self._setup_one(idx, layer, shapes)
                if tops is not None:
                    actual[idx] = dict(zip(layer.top, tops))
        if ran:
            self.notes.append(f"Python layers set up on stand-in blobs: "
                              f"{', '.join(repr(n) for n in ran)}")
        if skipped:
            self.notes.append(f"Python layers not set up (bottom shapes not known "
                              f"statically): {', '.join(repr(n) for n in skipped)}")

    def _setup_bottoms(self, idx: int, actual: dict[int, dict[str, tuple]]
                       ) -> Optional[list[tuple]]:
        """The bottom shapes Caffe would hand the layer at setup: the inferred ones, or
        those the Python layer producing the blob gave it at its setup; None if one is
        unknown."""
        layer = self.layers[idx]
        out = []
        for pos, (name, shape) in enumerate(zip(layer.bottom, self.bottom_shapes[idx])):
            if not _known(shape):
                src = self.source(idx, pos)
                shape = actual.get(src, {}).get(name) if src is not None else None
                if shape is None:
                    return None
            out.append(tuple(int(d) for d in shape))
        return out

    def _setup_one(self, idx: int, layer: Any, shapes: list[tuple]) -> Optional[list[tuple]]:
        """Run setup() then reshape(); the top shapes, or None after an error (reported)."""
        import numpy as np

        from frcnn.testing import NumpyBlob, make_layer

        pp = layer.python_param
        instance = None
        step = "setup"
        try:
            instance = make_layer(self.classes[idx], pp.param_str, self.phase, layer.name)
            bottom = [NumpyBlob(np.zeros(s, np.float32)) for s in shapes]
            top = [NumpyBlob() for _ in layer.top]
            instance.setup(bottom, top)
            step = "reshape"
            instance.reshape(bottom, top)
            return [tuple(t.data.shape) for t in top]
        except Exception as e:  # the layer's own verdict is the finding
            self.error(layer, f"{step}() fails as Caffe builds the net: {type(e).__name__}: "
                              f"{self._strip_label(str(e), instance)}")
            return None
        finally:
            close = getattr(instance, "close", None) if instance is not None else None
            if callable(close):
                try:
                    close()
                except Exception:
                    pass

    @staticmethod
    def _strip_label(message: str, instance: Any) -> str:
        """The message without the "layer 'name' (module.Class): " prefix the layers'
        reports_errors adds (the finding names the layer already)."""
        if instance is not None:
            try:
                from frcnn.caffe_layer import layer_label

                prefix = f"{layer_label(instance)}: "
                if message.startswith(prefix):
                    return message[len(prefix):]
            except Exception:
                pass
        return re.sub(r"^layer '[^']*' \([\w.]+\): ", "", message, count=1)

    # ----- num_classes -----
    def _check_classes(self) -> None:
        sources: dict[int, list[str]] = {}
        for idx, (key, params) in self.python.items():
            if params and params.get("num_classes"):
                sources.setdefault(params["num_classes"], []).append(self.layers[idx].name)
        k = None
        if len(sources) > 1:
            for value, names in sources.items():
                for name in names:
                    self.error(self._by_name(name),
                               f"num_classes {value}, but other layers say " +
                               ", ".join(f"{v} ({', '.join(n)})" for v, n in sources.items()
                                         if v != value))
        elif sources:
            k, names = next(iter(sources.items()))
            self.facts.append(f"num_classes: {k} (from {', '.join(repr(n) for n in names)})")
        cls_layers, bbox_layers = self._head_layers()
        where = ""
        if k is not None:
            where = f"num_classes {k} (from {', '.join(repr(n) for n in sources[k])})"
            for idx in cls_layers:
                n = self.layers[idx].inner_product_param.num_output
                if n != k:
                    self.error(self.layers[idx], f"num_output {n}, but {where} needs one "
                                                 f"score per class: {k}")
            for idx in bbox_layers:
                n = self.layers[idx].inner_product_param.num_output
                if n != 4 * k:
                    self.error(self.layers[idx], f"num_output {n}, but {where} needs 4 box "
                                                 f"deltas per class: {4 * k}")
            return
        # no num_classes in the net (a test net): bbox_pred must be 4 x cls_score
        by_suffix = {self.layers[i].name.replace("cls_score", "", 1): i for i in cls_layers}
        for idx in bbox_layers:
            name = self.layers[idx].name
            partner = by_suffix.get(name.replace("bbox_pred", "", 1))
            if partner is None and len(cls_layers) == 1:
                partner = cls_layers[0]
            if partner is None:
                continue
            kc = self.layers[partner].inner_product_param.num_output
            n = self.layers[idx].inner_product_param.num_output
            if n != 4 * kc:
                self.error(self.layers[idx],
                           f"num_output {n}, but '{self.layers[partner].name}' scores {kc} "
                           f"classes: 4 box deltas per class need {4 * kc}")
            elif partner == cls_layers[0]:
                self.facts.append(f"num_classes: {kc} (from '{self.layers[partner].name}'; no "
                                  f"layer of this net declares it)")

    def _by_name(self, name: str) -> Any:
        return next(layer for layer in self.layers if layer.name == name)

    def _head_layers(self) -> tuple[list[int], list[int]]:
        cls_layers, bbox_layers = [], []
        for idx, layer in enumerate(self.layers):
            if layer.type != "InnerProduct":
                continue
            is_cls = layer.name.startswith("cls_score")
            is_bbox = layer.name.startswith("bbox_pred")
            for j, pos in self.consumers(idx):
                consumer = self.layers[j]
                key = self.python.get(j, ("", None))[0]
                if consumer.type in ("Softmax", "SoftmaxWithLoss") and pos == 0:
                    is_cls = True
                if consumer.type == "SmoothL1Loss" and pos == 0:
                    is_bbox = True
                if key == OHEM_KEY:
                    is_cls |= pos == 0
                    is_bbox |= pos == 1
            if is_cls and not is_bbox:
                cls_layers.append(idx)
            elif is_bbox and not is_cls:
                bbox_layers.append(idx)
        return cls_layers, bbox_layers

    # ----- anchors -----
    def _check_anchors(self) -> None:
        summary: dict[tuple, list[str]] = {}
        for idx, (key, params) in self.python.items():
            if key not in (ANCHOR_TARGET_KEY, PROPOSAL_KEY) or not params:
                continue
            layer = self.layers[idx]
            nr, ns = len(params["ratios"]), len(params["scales"])
            a = nr * ns
            summary.setdefault((a, nr, ns, params["feat_stride"]), []).append(layer.name)
            why = (f"'{layer.name}' ({key}) has {nr} ratios x {ns} scales = {a} anchors")
            if key == ANCHOR_TARGET_KEY:
                score = self.through(self.source(idx, 0), {"Split"})
                self._expect_conv(score, 2 * a, f"{why}: 2A = {2 * a} scores")
                map_blob = layer.bottom[0] if layer.bottom else None
            else:
                src = self.source(idx, 0)
                if src is not None and self.layers[src].type == "Reshape":
                    self._expect_reshape(src, 2 * a, f"{why}: dim 1 must be 2A = {2 * a}")
                    soft = self.source(src, 0)
                    if soft is not None and self.layers[soft].type == "Softmax":
                        inner = self.source(soft, 0)
                        if inner is not None and self.layers[inner].type == "Reshape":
                            self._expect_reshape(inner, 2, "the softmax runs over bg/fg: dim 1 "
                                                           "must be 2")
                            src = self.source(inner, 0)
                        else:
                            src = inner
                    else:
                        src = soft
                self._expect_conv(src, 2 * a, f"{why}: 2A = {2 * a} scores")
                deltas = self.source(idx, 1)
                self._expect_conv(deltas, 4 * a, f"{why}: 4A = {4 * a} box deltas")
                map_blob = layer.bottom[1] if len(layer.bottom) > 1 else None
            stride = self.strides.get(map_blob) if map_blob else None
            if stride is not None and abs(stride - params["feat_stride"]) > 1e-6:
                self.error(layer, f"'feat_stride': {params['feat_stride']}, but '{map_blob}' "
                                  f"is at stride {stride:g} of the input image")
        if len(summary) > 1:
            for (a, nr, ns, fs), names in summary.items():
                for name in names:
                    self.warn(self._by_name(name), "RPN layers disagree on anchors: " +
                              "; ".join(f"{', '.join(n)}: {x[0]} anchors, feat_stride {x[3]}"
                                        for x, n in summary.items()))
        for (a, nr, ns, fs), names in summary.items():
            self.facts.append(f"anchors: {a} = {nr} ratios x {ns} scales, feat_stride {fs} "
                              f"({', '.join(repr(n) for n in names)})")

    def _expect_conv(self, idx: Optional[int], n: int, why: str) -> None:
        if idx is None or self.layers[idx].type != "Convolution":
            return
        layer = self.layers[idx]
        got = layer.convolution_param.num_output
        if got != n:
            self.error(layer, f"num_output {got}, but {why}")

    def _expect_reshape(self, idx: int, n: int, why: str) -> None:
        layer = self.layers[idx]
        dims = list(layer.reshape_param.shape.dim)
        if len(dims) < 2:
            return
        if dims[1] != n:
            self.error(layer, f"reshape dims {dims}: {why}")

    # ----- RoI pooling -----
    def _check_roi_pooling(self) -> None:
        for idx, layer in enumerate(self.layers):
            if layer.type != "ROIPooling" or not layer.bottom:
                continue
            p = layer.roi_pooling_param
            blob = layer.bottom[0]
            stride = self.strides.get(blob)
            if stride is None:
                self.warn(layer, f"the stride of '{blob}' is unknown: spatial_scale "
                                 f"{p.spatial_scale:g} not checked")
                continue
            if p.spatial_scale > 0 and abs(p.spatial_scale * stride - 1) > 1e-5:
                self.error(layer, f"spatial_scale {_fmt_scale(p.spatial_scale)}, but '{blob}' "
                                  f"is at stride {stride:g}: it needs {1 / stride:g}")
            else:
                self.facts.append(f"RoI pooling: '{layer.name}' {p.pooled_h}x{p.pooled_w} on "
                                  f"'{blob}' (stride {stride:g}, spatial_scale "
                                  f"{p.spatial_scale:g})")

    # ----- parameters -----
    def _count_params(self, report: Report) -> None:
        seen: set[str] = set()
        total = 0
        for idx, layer in enumerate(self.layers):
            if idx not in self.param_shapes:
                continue
            shapes = self.param_shapes[idx]
            if shapes is None:
                report.uncounted.append(layer.name)
                continue
            count = 0
            for i, shape in enumerate(shapes):
                name = layer.param[i].name if i < len(layer.param) else ""
                if name:
                    if name in seen:
                        continue
                    seen.add(name)
                count += _prod(shape) or 0
            total += count
            report.param_table.append((layer.name, list(shapes), count))
        report.num_params = total

    def _check_shared(self) -> None:
        groups: dict[str, list[tuple[int, int, Optional[tuple], Any]]] = {}
        for idx, layer in enumerate(self.layers):
            shapes = self.param_shapes.get(idx)
            for i, spec in enumerate(layer.param):
                if not spec.name:
                    continue
                shape = shapes[i] if shapes is not None and i < len(shapes) else None
                groups.setdefault(spec.name, []).append((idx, i, shape, spec))
        for name, members in groups.items():
            ref_idx, _, ref_shape, ref_spec = members[0]
            ref = self.layers[ref_idx]
            for idx, i, shape, spec in members[1:]:
                layer = self.layers[idx]
                if ref_shape is not None and shape is not None:
                    from caffe.proto import caffe_pb2

                    permissive = spec.share_mode == caffe_pb2.ParamSpec.PERMISSIVE
                    differ = (_prod(shape) != _prod(ref_shape)) if permissive else \
                        (tuple(shape) != tuple(ref_shape))
                    if differ:
                        self.error(layer, f"shares parameter '{name}' with '{ref.name}', but "
                                          f"the blob is {_fmt_shape(shape)} here and "
                                          f"{_fmt_shape(ref_shape)} there" +
                                   self._pool_hint(idx, ref_idx))
                for attr in ("lr_mult", "decay_mult"):
                    if (spec.HasField(attr) and ref_spec.HasField(attr)
                            and getattr(spec, attr) != getattr(ref_spec, attr)):
                        self.error(layer, f"shares parameter '{name}' with '{ref.name}' but "
                                          f"its {attr} {getattr(spec, attr):g} differs from "
                                          f"{getattr(ref_spec, attr):g} (Caffe aborts)")

    def _pool_hint(self, idx: int, ref_idx: int) -> str:
        def pooled(i: Optional[int]) -> Optional[Any]:
            steps = 0
            while i is not None and steps < 50:
                if self.layers[i].type == "ROIPooling":
                    return self.layers[i]
                i = self.source(i, 0)
                steps += 1
            return None

        a, b = pooled(idx), pooled(ref_idx)
        if a is None or b is None:
            return ""
        pa, pb = a.roi_pooling_param, b.roi_pooling_param
        if (pa.pooled_h, pa.pooled_w) == (pb.pooled_h, pb.pooled_w):
            return ""
        return (f": its RoIs are pooled {pa.pooled_h}x{pa.pooled_w} by '{a.name}', those of "
                f"'{self.layers[ref_idx].name}' {pb.pooled_h}x{pb.pooled_w} by '{b.name}'; "
                f"pool both at the same size")
