"""Generic Caffe shape inference for the checker (``frcnn.nets.checker``).

``ShapeInference`` is a mixin of the checker's ``_Checker``: it walks the included layers
in order and infers, statically from the prototxt, each top blob's shape (a tuple with None
for an unknown dim; None for an unknown shape), its stride relative to the input image
(None when unknown or not a spatial map) and the shapes of each layer's parameter blobs.
It knows the layer types Faster R-CNN nets use; others get unknown tops (and a warning
when they have parameters).  Shape errors Caffe would refuse (a bottom nobody produces,
channels not divisible by group, an empty output map, bottoms of different shapes where
they must agree, an impossible reshape) are reported through the checker's ``error`` /
``warn``.

State of the checker it reads: ``net`` (the legacy ``input`` / ``input_shape`` /
``input_dim`` fields).  State it writes: ``shapes`` and ``strides`` (blob name -> shape,
stride), ``producer`` (blob name -> index of the layer that last wrote it, -1 for a net
input), ``sources`` (per layer, per bottom: the producing layer's index, or None),
``bottom_shapes`` (Python layers' bottom shapes as read) and ``param_shapes`` (layer index
-> list of parameter blob shapes, None when they cannot be sized).  Python layers are
handed to the ``PythonLayerSetup`` mixin (``frcnn.nets.check_setup``): ``_python_setup``
when the layer is reached, ``_python_shapes`` for its tops.

Window sizes, strides, pads and dilations, and pooling's rounding, are read with
``frcnn.nets.caffe_params`` (the reader the ONNX converter uses too).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from frcnn.nets.caffe_params import pool_ceil_mode, spatial_pair

Shape = Optional[tuple]  # a blob shape; a dim is None when unknown; the shape None when unknown

ELEMENTWISE = {"ReLU", "Dropout", "LRN", "Sigmoid", "TanH", "Power", "AbsVal", "BNLL", "ELU",
               "Exp", "Log", "Softmax", "BatchNorm", "Scale", "Bias", "PReLU", "MVN",
               "Threshold", "Clip", "Swish"}
LOSSES = {"SoftmaxWithLoss", "SmoothL1Loss", "EuclideanLoss", "SigmoidCrossEntropyLoss",
          "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss", "Accuracy"}


def prod(dims: Iterable[Any]) -> Optional[int]:
    """The product of the dims (1 for none); None when one of them is unknown (None)."""
    out = 1
    for d in dims:
        if d is None:
            return None
        out *= int(d)
    return out


def known(shape: Shape) -> bool:
    """Whether the shape and every dim of it are known."""
    return shape is not None and all(d is not None for d in shape)


def compatible(shapes: list[Shape]) -> bool:
    """False when two of the shapes surely differ (rank, or a dim known in both)."""
    given = [s for s in shapes if s is not None]
    for s in given[1:]:
        if len(s) != len(given[0]) or any(a is not None and b is not None and a != b
                                          for a, b in zip(s, given[0])):
            return False
    return True


def fmt_shape(shape: Shape) -> str:
    """(1, 64, ?, ?) for a shape with unknown dims; ? for an unknown shape."""
    if shape is None:
        return "?"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


class ShapeInference:
    """Blob shapes, strides and parameter shapes, layer by layer (see the module
    docstring for the checker state it reads and writes)."""

    def _legacy_inputs(self) -> None:
        """Net inputs declared outside layers (``input`` with ``input_shape`` or 4 dims per
        blob in ``input_dim``): their shapes, stride 1 for 4-D ones, producer -1."""
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
        """Layer idx in the net's order: wire its bottoms to their producers (reporting a
        bottom nobody produced), check propagate_down, hand a Python layer to the setup
        mixin, then record its tops' shapes and strides."""
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

    def _infer(self, idx: int, layer: Any, ins: list[Shape]) -> tuple[list[Shape], list]:
        """The shapes and strides of the layer's tops (one each per top; None when unknown)
        from its bottoms' shapes ``ins``; sizes the layer's parameters in param_shapes."""
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
            if not compatible(ins):
                self.error(layer, "bottoms of different shapes: " +
                           ", ".join(fmt_shape(s) for s in ins))
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
            return [(x[0], prod(x[1:]))], [None]
        if t in LOSSES:
            if t == "SmoothL1Loss":
                if not compatible(ins):
                    self.error(layer, "SmoothL1Loss bottoms (prediction, targets, weights) "
                                      "must have one shape, got " +
                               ", ".join(f"'{b}' {fmt_shape(s)}"
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
        """Convolution / Deconvolution of an (N, C, H, W) input: top (N, num_output, H', W'),
        weight (num_output, C / group, kh, kw) (deconv: (C, num_output / group, kh, kw))
        and bias (num_output,); the top's stride is the input's times the (square)
        stride, divided for a deconvolution."""
        p = layer.convolution_param
        k = spatial_pair(p, "kernel", 1)
        pad = spatial_pair(p, "pad", 0)
        st = spatial_pair(p, "stride", 1)
        dil = spatial_pair(p, "dilation", 1)
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
                self.error(layer, f"output map would be empty for input {fmt_shape(x)}")
                break
        top_stride = None
        if stride is not None and st[0] == st[1]:
            top_stride = stride / st[0] if deconv else stride * st[0]
        return [(x[0], p.num_output, out[0], out[1])], [top_stride]

    def _pool(self, layer: Any, x: Shape, stride: Optional[float]) -> tuple[list[Shape], list]:
        """Pooling of an (N, C, H, W) input: (N, C, H', W') with Caffe's rounding (ceil or
        floor, then a last window starting in the padding dropped); global pooling gives
        (N, C, 1, 1)."""
        p = layer.pooling_param
        ntop = len(layer.top)
        if x is None or len(x) != 4:
            return [None] * ntop, [None] * ntop
        if p.global_pooling:
            return [(x[0], x[1], 1, 1)] * ntop, [None] * ntop
        k = spatial_pair(p, "kernel", 0)
        pad = spatial_pair(p, "pad", 0)
        st = spatial_pair(p, "stride", 1)
        ceil_mode = pool_ceil_mode(p)
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
        """Concat along ``axis`` (or the legacy ``concat_dim``; default 1): the bottoms must
        agree on every other dim; the stride survives when all bottoms share it."""
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
                           ", ".join(fmt_shape(v) for v in ins))
                return [None], [None]
        dims = [s[axis] for s in ins]
        total = sum(dims) if all(d is not None for d in dims) else None
        out = tuple(total if i == axis else ins[0][i] for i in range(rank))
        stride = strides[0] if all(s == strides[0] for s in strides) else None
        return [out], [stride]

    def _inner_product(self, idx: int, layer: Any, x: Shape) -> tuple[list[Shape], list]:
        """InnerProduct: the dims from ``axis`` on are flattened into fan_in; top
        x[:axis] + (num_output,), weight (num_output, fan_in) ((fan_in, num_output) when
        transposed) and bias (num_output,)."""
        p = layer.inner_product_param
        axis = p.axis if p.HasField("axis") else 1
        if x is None:
            self.param_shapes[idx] = None
            return [None], [None]
        axis = axis % len(x)
        fan_in = prod(x[axis:])
        if fan_in is None:
            self.param_shapes[idx] = None
        else:
            w = (fan_in, p.num_output) if p.transpose else (p.num_output, fan_in)
            self.param_shapes[idx] = [w] + ([(p.num_output,)] if p.bias_term else [])
        return [tuple(x[:axis]) + (p.num_output,)], [None]

    def _elementwise_params(self, idx: int, layer: Any, x: Shape) -> None:
        """The parameter shapes of the shape-preserving layers that have parameters, per
        channel C = x[1]: BatchNorm (C,), (C,), (1,); Scale (C,) [+ bias (C,)] and Bias (C,)
        with one bottom; PReLU (C,) or (1,) when channel_shared."""
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
        """Caffe's Reshape of the whole blob (axis 0, num_axes -1; otherwise unknown): a dim 0
        copies the input's, one -1 takes what is left; None dims where unknown."""
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
            total = prod(x)
            rest = prod(d for d in out if d != -1)
            if total is not None and rest:
                if total % rest:
                    self.error(layer, f"cannot reshape {fmt_shape(x)} to {dims}")
                out[out.index(-1)] = total // rest if total % rest == 0 else None
            else:
                out[out.index(-1)] = None
        elif known(x) and known(tuple(out)) and prod(x) != prod(out):
            self.error(layer, f"cannot reshape {fmt_shape(x)} to {dims}")
        return tuple(out)
