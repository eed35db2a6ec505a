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

The checker is one class, ``_Checker``, made of this module's core (the layers the phase
includes, the findings, the graph walk, the run, the parameter count) and three mixins,
one module each: ``check_shapes`` (generic Caffe shape inference), ``check_setup`` (Python
layers: param_str, import, their own setup on stand-in blobs) and ``check_rules`` (the
Faster R-CNN rules).  Each mixin's docstring says which state of the checker it reads and
writes.  Kernel, stride, pad and pooling rounding are read by ``frcnn.nets.caffe_params``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from frcnn.nets.check_rules import FasterRCNNRules
from frcnn.nets.check_setup import PythonLayerSetup
from frcnn.nets.check_shapes import Shape, ShapeInference, prod


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
    """How a finding names a layer: "layer 'name' (Type)"."""
    return f"layer '{layer.name}' ({layer.type})"


class _Checker(ShapeInference, PythonLayerSetup, FasterRCNNRules):
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
        """Whether the layer is in the net at this phase (its phase field, include and
        exclude rules; only the phase is looked at, not levels or stages)."""
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
        """The index of the layer producing bottom pos of layer idx (None for a net input or
        an unknown blob)."""
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
        """Infer the shapes layer by layer, run the Faster R-CNN rules, count the parameters,
        then (when asked) the Python layers' setup; the report, findings in that order."""
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

    # ----- parameters -----
    def _count_params(self, report: Report) -> None:
        """Fill the report's parameter count and table: each sized layer's blobs, a blob
        shared by name counted once (at its first layer); layers that could not be sized
        are listed as uncounted."""
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
                count += prod(shape) or 0
            total += count
            report.param_table.append((layer.name, list(shapes), count))
        report.num_params = total
