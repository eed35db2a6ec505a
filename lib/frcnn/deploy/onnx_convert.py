"""Convert Caffe layers (LayerParameters + their weights) into one ONNX graph.

``convert`` turns a list of TEST-phase layers into an ONNX model whose outputs equal
Caffe's forward pass.  Each Caffe layer type maps to ONNX operators with the same
semantics; where ONNX cannot express Caffe's semantics the layer raises
``UnsupportedLayer`` with the reason rather than converting to something that differs.

Notes on the mappings that are not one-to-one:

- Pooling: Caffe rounds output sizes up (``ceil_mode``, default true in this Caffe) and,
  with padding, drops a last window that would start in the padding; ONNX ``ceil_mode=1``
  (as onnxruntime implements it) also drops a last window that starts beyond the input,
  padding or not.  The two agree except when ``pad == 0`` and ``stride > kernel``: there
  Caffe keeps, at some input sizes, a last window lying wholly outside the input (MAX
  gives -FLT_MAX), which ONNX drops.  Input sizes are dynamic, so that case is refused.
  AVE pooling divides by the window clipped to the padded input, as AveragePool with
  ``count_include_pad=1`` does.
- LRN WITHIN_CHANNEL: ``x * (1 + alpha * mean_{n x n}(x^2))^-beta`` with the mean over
  the zero-padded window (Caffe ignores ``k`` there), built from Mul/AveragePool/Pow.
- ROIPooling (caffe-fast-rcnn's: rounded roi corners, bins floor/ceil, empty bins 0) is
  ONNX MaxRoiPool, whose onnxruntime kernel has the same arithmetic.
- In-place layers (top == bottom) are renamed internally, since ONNX is SSA; graph
  outputs carry the requested Caffe blob names.  Caffe's Split, Reshape and Flatten tops
  share their bottom's memory, so an in-place layer on one of them changes the others
  too; the converter follows that (a rewrite seen through another shape is reshaped).
- BatchNorm divides the stored mean and variance by the moving-average factor s (uses 0
  when s is 0, as Caffe does); ``use_global_stats: false`` (batch statistics at test) is
  refused.
- MVN divides by ``sqrt(var) + eps``, where ONNX's InstanceNormalization takes
  ``sqrt(var + eps)`` (they part on near-constant channels), so it is built from
  ReduceMean, Sub, Mul, Sqrt, Add and Div.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from frcnn.nets.caffe_params import defines, pool_ceil_mode, spatial_pair, spatial_values

if TYPE_CHECKING:
    from caffe.proto.caffe_pb2 import LayerParameter

MIN_OPSET = 13  # Softmax with Caffe's single-axis semantics

SUPPORTED_TYPES = (
    "BatchNorm", "Concat", "Convolution", "Dropout", "Eltwise", "Flatten", "InnerProduct",
    "Input", "LRN", "MVN", "Pooling", "Power", "ReLU", "ROIPooling", "Reshape", "Scale",
    "Sigmoid", "Silence", "Softmax", "Split", "TanH",
)


class UnsupportedLayer(ValueError):
    """A layer that cannot be converted to ONNX with Caffe's semantics."""

    def __init__(self, name: str, layer_type: str, reason: str = "its type is not supported"):
        self.layer_name = name
        self.layer_type = layer_type
        self.reason = reason
        super().__init__(f"layer '{name}' (type {layer_type}) cannot be converted to ONNX: "
                         f"{reason}; supported types: {', '.join(SUPPORTED_TYPES)}")


def _unsupported(layer, reason: str) -> UnsupportedLayer:
    return UnsupportedLayer(layer.name, layer.type, reason)


def _dims(shape: Sequence[int | None]) -> str:
    """(64, ?, 3, 3) for a shape with unknown dims (None)."""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


class _Checks:
    """Shape checks that need the data's shapes, run after ONNX shape inference."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, tuple[int, ...], str,
                               Callable[[list[int | None]], tuple[int | None, ...] | None]]] = []

    def add(self, layer: str, what: str, model_shape: tuple[int, ...], value: str,
            needed: Callable[[list[int | None]], tuple[int | None, ...] | None]) -> None:
        """Check ``model_shape`` against ``needed(dims of value)`` once shapes are known."""
        self.items.append((layer, what, model_shape, value, needed))

    def run(self, types: dict[str, onnx.TypeProto]) -> None:
        """Raise ValueError for the first check that the inferred ``types`` fail."""
        shapes: dict[str, list[int | None]] = {}
        for name, t in types.items():
            if t.tensor_type.HasField("shape"):
                shapes[name] = [d.dim_value if d.HasField("dim_value") else None
                                for d in t.tensor_type.shape.dim]
        for layer, what, model_shape, value, needed in self.items:
            if value not in shapes:
                continue
            try:
                need = needed(shapes[value])
            except ValueError as e:
                raise ValueError(f"layer '{layer}': {e}") from None
            if need is None:
                continue
            if len(need) != len(model_shape) or any(
                    n is not None and n != m for n, m in zip(need, model_shape)):
                raise ValueError(f"layer '{layer}': the model's {what} is "
                                 f"{_dims(model_shape)} but the net needs {_dims(need)}")


class _Shared:
    """Caffe blobs sharing one memory (Split tops, Reshape and Flatten tops and bottoms):
    an in-place layer writing one of them changes them all."""

    def __init__(self, blob: str) -> None:
        self.members: set[str] = {blob}
        self.reshaped = False  # some members see the memory with another shape


class _Builder:
    """The ONNX graph under construction: nodes, initializers and the blob -> value map.

    ``blobs`` maps a Caffe blob name to the ONNX value holding its current contents
    (in-place layers make new values); ``rank`` maps ONNX values to their rank.
    ``shared`` groups blobs that share memory in Caffe; ``pending`` holds, for a blob whose
    shared memory an in-place layer rewrote under another shape, (new value, a value of the
    blob's own shape), reshaped when the blob is next read.
    """

    def __init__(self, weights: dict[str, list[np.ndarray]], reserved: set[str],
                 opset: int = 17) -> None:
        self.weights = weights
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.model = onnx.ModelProto()  # initializers go straight into its graph (no copies)
        self.used: set[str] = set(reserved)
        self.node_names: set[str] = set()
        self.blobs: dict[str, str] = {}
        self.rank: dict[str, int] = {}
        self.shared: dict[str, _Shared] = {}
        self.pending: dict[str, tuple[str, str]] = {}
        self.checks = _Checks()

    def unique(self, base: str) -> str:
        """A value name not used yet: ``base``, else ``base_1``, ``base_2``, ..."""
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def const(self, base: str, value: np.ndarray) -> str:
        """An initializer (float32, or int64 for integer arrays) named after ``base``."""
        value = np.asarray(value)
        value = value.astype(np.dtype("<i8") if value.dtype.kind in "iu" else np.dtype("<f4"),
                             copy=False)
        name = self.unique(base)
        tensor = self.model.graph.initializer.add()
        tensor.name = name
        tensor.data_type = TensorProto.INT64 if value.dtype.kind == "i" else TensorProto.FLOAT
        tensor.dims.extend(value.shape)
        tensor.raw_data = np.ascontiguousarray(value).tobytes()
        return name

    def scalar(self, base: str, value: float) -> str:
        """A float32 scalar initializer."""
        return self.const(base, np.array(value, dtype=np.float32))

    def node(self, op: str, inputs: Sequence[str], name: str, out: str | None = None,
             rank: int | None = None, **attrs) -> str:
        """Append one node with one output (named after ``out`` or ``name``); its name."""
        output = self.unique(out or name)
        node_name, k = name, 0
        while node_name in self.node_names:
            k += 1
            node_name = f"{name}_{k}"
        self.node_names.add(node_name)
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=node_name,
                                           **attrs))
        if rank is not None:
            self.rank[output] = rank
        return output

    def read(self, layer, index: int = 0) -> str:
        """The ONNX value of bottom ``index`` of ``layer``."""
        blob = layer.bottom[index]
        if blob not in self.blobs:
            raise ValueError(f"layer '{layer.name}' reads blob '{blob}', which neither an "
                             f"input nor an earlier layer produces")
        return self.current(blob)

    def current(self, blob: str) -> str:
        """The ONNX value of Caffe blob ``blob`` now (a pending rewrite reshaped in)."""
        if blob in self.pending:
            value, like = self.pending.pop(blob)
            shape = self.node("Shape", [like], f"{blob}/shared_shape", rank=1)
            self.blobs[blob] = self.node("Reshape", [value, shape], f"{blob}/shared",
                                         rank=self.rank.get(like))
        return self.blobs[blob]

    def write(self, blob: str, value: str) -> None:
        """Make ``value`` the current contents of Caffe blob ``blob``; when ``blob``
        exists (an in-place layer), also of the blobs sharing its memory."""
        group = self.shared.get(blob)
        if blob in self.blobs and group is not None:
            for other in group.members - {blob}:
                if group.reshaped:
                    like = self.pending[other][1] if other in self.pending else self.blobs[other]
                    self.pending[other] = (value, like)
                else:
                    self.blobs[other] = value
        self.pending.pop(blob, None)
        self.blobs[blob] = value

    def share(self, top: str, bottom: str, reshaped: bool) -> None:
        """Record that Caffe's ``top`` shares ``bottom``'s memory (``reshaped``: as a view
        of another shape)."""
        group = self.shared.setdefault(bottom, _Shared(bottom))
        old = self.shared.get(top)
        if old is not None and old is not group:
            old.members.discard(top)
        group.members.add(top)
        group.reshaped |= reshaped
        self.shared[top] = group

    def rank_of(self, layer, value: str) -> int:
        if value not in self.rank:
            raise _unsupported(layer, f"the rank of its input '{value}' is unknown")
        return self.rank[value]

    def blobs_of(self, layer, count: int, what: str) -> list[np.ndarray]:
        """The layer's ``count`` weight blobs; ValueError when missing or miscounted."""
        blobs = self.weights.get(layer.name)
        if blobs is None:
            raise ValueError(f"the model has no weights for layer '{layer.name}' "
                             f"({layer.type})")
        if len(blobs) != count:
            raise ValueError(f"layer '{layer.name}': the model has {len(blobs)} blob(s) but "
                             f"the net needs {count} ({what})")
        return [np.asarray(b, dtype=np.float32) for b in blobs]


def _fit(layer, what: str, blob: np.ndarray, needed: Sequence[int | None]) -> np.ndarray:
    """``blob`` checked against ``needed`` (None: any size), legacy 4-D shapes squeezed.

    Old caffemodels store (N, K) as (1, 1, N, K) and (N,) as (1, 1, 1, N).
    """
    shape = blob.shape
    extra = len(shape) - len(needed)
    if extra > 0 and all(d == 1 for d in shape[:extra]):
        blob = blob.reshape(shape[extra:])
    if blob.ndim != len(needed) or any(
            n is not None and n != d for n, d in zip(needed, blob.shape)):
        raise ValueError(f"layer '{layer.name}': the model's {what} is {_dims(shape)} but "
                         f"the net needs {_dims(needed)}")
    return blob


def _arity(layer, bottoms: int | None, tops: int | None) -> None:
    """UnsupportedLayer unless the layer has ``bottoms`` bottoms and ``tops`` tops."""
    if bottoms is not None and len(layer.bottom) != bottoms:
        raise _unsupported(layer, f"it has {len(layer.bottom)} bottoms, expected {bottoms}")
    if tops is not None and len(layer.top) != tops:
        raise _unsupported(layer, f"it has {len(layer.top)} tops, expected {tops}")


def _pair(layer, p, name: str, default: int) -> tuple[int, int]:
    """Caffe's (h, w) of the kernel/stride/pad/dilation ``name`` of a ConvolutionParameter
    or PoolingParameter ``p``, as ``frcnn.nets.caffe_params.spatial_pair`` reads it
    (``default`` when unset); UnsupportedLayer when more than 2 values are given (N-D)."""
    n = len(spatial_values(p, name))
    if n > 2:
        raise _unsupported(layer, f"{n}-D {name} (only 2-D is supported)")
    return spatial_pair(p, name, default)


def _require_rank(b: _Builder, layer, value: str, rank: int) -> None:
    if b.rank_of(layer, value) != rank:
        raise _unsupported(layer, f"its input '{layer.bottom[0]}' has rank "
                                  f"{b.rank[value]}; only {rank}-D inputs are supported")


# ---- layers ---------------------------------------------------------------------------

def _convolution(b: _Builder, layer) -> None:
    """(N, C, H, W) -> (N, num_output, H', W'); weight (num_output, C/group, kh, kw)."""
    if len(layer.bottom) != len(layer.top) or not layer.bottom:
        raise _unsupported(layer, "it needs as many tops as bottoms")
    p = layer.convolution_param
    if p.axis != 1:
        raise _unsupported(layer, f"axis {p.axis} (only 1 is supported)")
    kernel = _pair(layer, p, "kernel", 0)
    stride = _pair(layer, p, "stride", 1)
    pad = _pair(layer, p, "pad", 0)
    dilation = _pair(layer, p, "dilation", 1)
    if min(kernel) <= 0 or min(stride) <= 0:
        raise _unsupported(layer, f"kernel {kernel} and stride {stride} must be positive")
    group = int(p.group)
    if group <= 0 or p.num_output % group:
        raise _unsupported(layer, f"num_output {p.num_output} is not a multiple of group "
                                  f"{group}")
    blobs = b.blobs_of(layer, 2 if p.bias_term else 1,
                       "weight and bias" if p.bias_term else "weight")
    weight = _fit(layer, "weight", blobs[0], (p.num_output, None) + kernel)
    inputs = [b.const(f"{layer.name}/weight", weight)]
    if p.bias_term:
        inputs.append(b.const(f"{layer.name}/bias",
                              _fit(layer, "bias", blobs[1], (p.num_output,))))
    for i, top in enumerate(layer.top):
        x = b.read(layer, i)
        _require_rank(b, layer, x, 4)
        b.checks.add(layer.name, "weight", weight.shape, x, _conv_needed(weight.shape, group))
        y = b.node("Conv", [x] + inputs, layer.name, out=top, rank=4,
                   kernel_shape=list(kernel), strides=list(stride),
                   pads=[pad[0], pad[1], pad[0], pad[1]], dilations=list(dilation),
                   group=group)
        b.write(top, y)


def _conv_needed(weight: tuple[int, ...], group: int
                 ) -> Callable[[list[int | None]], tuple[int | None, ...] | None]:
    """The weight shape a Conv needs given its input's dims: (O, C / group, kh, kw)."""
    def needed(d: list[int | None]) -> tuple[int | None, ...] | None:
        if len(d) != 4 or d[1] is None:
            return None
        if d[1] % group:
            raise ValueError(f"the input has {d[1]} channels, not a multiple of group {group}")
        return (weight[0], d[1] // group) + tuple(weight[2:])
    return needed


def _pooling(b: _Builder, layer) -> None:
    """(N, C, H, W) -> (N, C, H', W'), Caffe's rounding (see the module notes)."""
    _arity(layer, 1, 1)
    p = layer.pooling_param
    x = b.read(layer)
    _require_rank(b, layer, x, 4)
    if p.pool == p.STOCHASTIC:
        raise _unsupported(layer, "STOCHASTIC pooling has no ONNX equivalent")
    if p.global_pooling:
        op = "GlobalMaxPool" if p.pool == p.MAX else "GlobalAveragePool"
        b.write(layer.top[0], b.node(op, [x], layer.name, out=layer.top[0], rank=4))
        return
    kernel = _pair(layer, p, "kernel", 0)
    pad = _pair(layer, p, "pad", 0)
    stride = _pair(layer, p, "stride", 1)
    if min(kernel) <= 0 or min(stride) <= 0:
        raise _unsupported(layer, f"kernel {kernel} and stride {stride} must be positive")
    if any(pd >= k for pd, k in zip(pad, kernel)):
        raise _unsupported(layer, f"pad {pad} must be smaller than the kernel {kernel} "
                                  f"(Caffe checks this)")
    ceil = pool_ceil_mode(p)
    if ceil and any(pd == 0 and s > k for pd, s, k in zip(pad, stride, kernel)):
        raise _unsupported(layer, f"pad 0 with stride {stride} > kernel {kernel}: Caffe's "
                                  f"ceil rounding then keeps, at some input sizes, a last "
                                  f"window wholly outside the input, which ONNX drops")
    attrs = dict(kernel_shape=list(kernel), strides=list(stride),
                 pads=[pad[0], pad[1], pad[0], pad[1]], ceil_mode=int(ceil))
    if p.pool == p.MAX:
        y = b.node("MaxPool", [x], layer.name, out=layer.top[0], rank=4, **attrs)
    else:
        y = b.node("AveragePool", [x], layer.name, out=layer.top[0], rank=4,
                   count_include_pad=1, **attrs)
    b.write(layer.top[0], y)


def _unary(op: str) -> Callable[[_Builder, object], None]:
    """The converter of a layer that is the elementwise ONNX ``op``."""
    def convert_unary(b: _Builder, layer) -> None:
        """Elementwise: any shape -> the same shape."""
        _arity(layer, 1, 1)
        x = b.read(layer)
        b.write(layer.top[0], b.node(op, [x], layer.name, out=layer.top[0],
                                     rank=b.rank.get(x)))
    return convert_unary


def _relu(b: _Builder, layer) -> None:
    """ReLU, LeakyRelu when negative_slope != 0; any shape."""
    _arity(layer, 1, 1)
    x = b.read(layer)
    slope = float(layer.relu_param.negative_slope)
    attrs = {"alpha": slope} if slope else {}
    y = b.node("LeakyRelu" if slope else "Relu", [x], layer.name, out=layer.top[0],
               rank=b.rank.get(x), **attrs)
    b.write(layer.top[0], y)


def _power(b: _Builder, layer) -> None:
    """(shift + scale * x) ** power, elementwise."""
    _arity(layer, 1, 1)
    p = layer.power_param
    x = b.read(layer)
    r = b.rank.get(x)
    y = x
    if p.scale != 1:
        y = b.node("Mul", [y, b.scalar(f"{layer.name}/scale", p.scale)], f"{layer.name}/scale",
                   rank=r)
    if p.shift != 0:
        y = b.node("Add", [y, b.scalar(f"{layer.name}/shift", p.shift)], f"{layer.name}/shift",
                   rank=r)
    if p.power != 1:
        y = b.node("Pow", [y, b.scalar(f"{layer.name}/power", p.power)], f"{layer.name}/power",
                   rank=r)
    b.write(layer.top[0], y)  # y is x for the identity power


def _dropout(b: _Builder, layer) -> None:
    """TEST phase: identity, or x * (1 - ratio) when scale_train is false."""
    _arity(layer, 1, 1)
    p = layer.dropout_param
    x = b.read(layer)
    scale_train = bool(p.scale_train) if defines(p, "scale_train") else True
    if scale_train:
        b.write(layer.top[0], x)
        return
    keep = b.scalar(f"{layer.name}/keep", 1.0 - float(p.dropout_ratio))
    b.write(layer.top[0], b.node("Mul", [x, keep], layer.name, out=layer.top[0],
                                 rank=b.rank.get(x)))


def _softmax(b: _Builder, layer) -> None:
    """Softmax over ``axis`` (default 1), any shape."""
    _arity(layer, 1, 1)
    x = b.read(layer)
    b.write(layer.top[0], b.node("Softmax", [x], layer.name, out=layer.top[0],
                                 rank=b.rank.get(x), axis=int(layer.softmax_param.axis)))


def _concat(b: _Builder, layer) -> None:
    """Concatenation along ``axis`` (or the legacy ``concat_dim``), default 1."""
    _arity(layer, None, 1)
    if not layer.bottom:
        raise _unsupported(layer, "it has no bottoms")
    p = layer.concat_param
    axis = int(p.concat_dim) if p.HasField("concat_dim") else int(p.axis)
    xs = [b.read(layer, i) for i in range(len(layer.bottom))]
    b.write(layer.top[0], b.node("Concat", xs, layer.name, out=layer.top[0],
                                 rank=b.rank.get(xs[0]), axis=axis))


def _eltwise(b: _Builder, layer) -> None:
    """SUM (with coefficients), PROD or MAX of same-shaped bottoms."""
    _arity(layer, None, 1)
    if len(layer.bottom) < 2:
        raise _unsupported(layer, "it needs at least two bottoms")
    p = layer.eltwise_param
    xs = [b.read(layer, i) for i in range(len(layer.bottom))]
    r = b.rank.get(xs[0])
    coeffs = [float(c) for c in p.coeff]
    if coeffs and p.operation != p.SUM:
        raise _unsupported(layer, "coefficients are only allowed for SUM")
    if coeffs and len(coeffs) != len(xs):
        raise _unsupported(layer, f"{len(coeffs)} coefficients for {len(xs)} bottoms")
    if p.operation == p.SUM:
        if coeffs and any(c != 1 for c in coeffs):
            xs = [x if c == 1 else b.node("Mul", [x, b.scalar(f"{layer.name}/coeff{i}", c)],
                                          f"{layer.name}/coeff{i}", rank=r)
                  for i, (x, c) in enumerate(zip(xs, coeffs))]
        op = "Sum"
    elif p.operation == p.PROD:
        op = "Mul"
    else:
        op = "Max"
    if op == "Mul":
        y = xs[0]
        for i, x in enumerate(xs[1:]):
            last = i == len(xs) - 2
            y = b.node("Mul", [y, x], layer.name if last else f"{layer.name}/mul{i}",
                       out=layer.top[0] if last else None, rank=r)
    else:
        y = b.node(op, xs, layer.name, out=layer.top[0], rank=r)
    b.write(layer.top[0], y)


def _shape_slice(b: _Builder, layer, x: str, start: int, end: int | None, tag: str) -> str:
    """Shape(x)[start:end] as an int64 1-D value."""
    shape = b.node("Shape", [x], f"{layer.name}/shape_{tag}", rank=1)
    starts = b.const(f"{layer.name}/{tag}_start", np.array([start], dtype=np.int64))
    ends = b.const(f"{layer.name}/{tag}_end",
                   np.array([np.iinfo(np.int64).max if end is None else end], dtype=np.int64))
    return b.node("Slice", [shape, starts, ends], f"{layer.name}/{tag}", rank=1)


def _flatten(b: _Builder, layer) -> None:
    """Merge axes axis..end_axis: (d0, .., d_axis, .., d_end, ..) -> (d0, .., prod, ..)."""
    _arity(layer, 1, 1)
    if layer.top[0] == layer.bottom[0]:
        raise _unsupported(layer, "Caffe does not allow it in place")
    p = layer.flatten_param
    x = b.read(layer)
    r = b.rank_of(layer, x)
    axis = p.axis + r if p.axis < 0 else p.axis
    end = p.end_axis + r if p.end_axis < 0 else p.end_axis
    if not 0 <= axis <= end < r:
        raise _unsupported(layer, f"axis {p.axis}, end_axis {p.end_axis} for a {r}-D input")
    out_rank = axis + 1 + (r - 1 - end)
    if axis == 1 and end == r - 1:
        y = b.node("Flatten", [x], layer.name, out=layer.top[0], rank=2, axis=1)
    else:
        parts = [b.const(f"{layer.name}/keep", np.zeros(axis, dtype=np.int64))] if axis else []
        parts.append(b.const(f"{layer.name}/merged", np.array([-1], dtype=np.int64)))
        if end < r - 1:
            parts.append(_shape_slice(b, layer, x, end + 1, None, "tail"))
        shape = parts[0] if len(parts) == 1 else b.node("Concat", parts,
                                                        f"{layer.name}/target", axis=0)
        y = b.node("Reshape", [x, shape], layer.name, out=layer.top[0], rank=out_rank)
    b.write(layer.top[0], y)
    b.share(layer.top[0], layer.bottom[0], reshaped=True)


def _reshape(b: _Builder, layer) -> None:
    """Caffe Reshape at axis 0, num_axes -1: dims 0 copy the input's, one -1 is inferred."""
    _arity(layer, 1, 1)
    if layer.top[0] == layer.bottom[0]:
        raise _unsupported(layer, "Caffe does not allow it in place")
    p = layer.reshape_param
    if p.axis != 0 or p.num_axes != -1:
        raise _unsupported(layer, f"reshape_param axis {p.axis}, num_axes {p.num_axes} "
                                  f"(only the defaults 0 and -1 are supported)")
    dims = [int(d) for d in p.shape.dim]
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise _unsupported(layer, f"shape {dims}: at most one -1 and no other negative dim")
    x = b.read(layer)
    shape = b.const(f"{layer.name}/shape", np.array(dims, dtype=np.int64))
    b.write(layer.top[0], b.node("Reshape", [x, shape], layer.name, out=layer.top[0],
                                 rank=len(dims)))
    b.share(layer.top[0], layer.bottom[0], reshaped=True)


def _inner_product(b: _Builder, layer) -> None:
    """(d0, .., d_{axis-1}, K...) -> (d0, .., d_{axis-1}, N); weight (N, K), (K, N) if
    ``transpose``; K is the product of the input's dims from ``axis`` on."""
    _arity(layer, 1, 1)
    p = layer.inner_product_param
    x = b.read(layer)
    r = b.rank_of(layer, x)
    axis = p.axis + r if p.axis < 0 else p.axis
    if not 0 <= axis < r:
        raise _unsupported(layer, f"axis {p.axis} for a {r}-D input")
    n = int(p.num_output)
    blobs = b.blobs_of(layer, 2 if p.bias_term else 1,
                       "weight and bias" if p.bias_term else "weight")
    weight = _fit(layer, "weight", blobs[0], (None, n) if p.transpose else (n, None))
    k = weight.shape[0] if p.transpose else weight.shape[1]

    def needed(d: list[int | None], a: int = axis) -> tuple[int | None, ...] | None:
        tail = d[a:]
        if any(v is None for v in tail):
            return None
        size = int(np.prod(tail, dtype=np.int64))
        return (size, n) if p.transpose else (n, size)

    b.checks.add(layer.name, "weight", weight.shape, x, needed)
    bias = (b.const(f"{layer.name}/bias", _fit(layer, "bias", blobs[1], (n,)))
            if p.bias_term else None)
    if axis == 1:
        flat = x if r == 2 else b.node("Flatten", [x], f"{layer.name}/flatten", rank=2, axis=1)
        w = b.const(f"{layer.name}/weight", weight)
        y = b.node("Gemm", [flat, w] + ([bias] if bias else []), layer.name,
                   out=layer.top[0], rank=2, transB=0 if p.transpose else 1)
    else:
        target = b.const(f"{layer.name}/target", np.array([0] * axis + [k], dtype=np.int64))
        flat = b.node("Reshape", [x, target], f"{layer.name}/flatten", rank=axis + 1)
        w = b.const(f"{layer.name}/weight", weight if p.transpose else weight.T)
        y = b.node("MatMul", [flat, w], layer.name if bias is None else f"{layer.name}/matmul",
                   out=layer.top[0] if bias is None else None, rank=axis + 1)
        if bias is not None:
            y = b.node("Add", [y, bias], layer.name, out=layer.top[0], rank=axis + 1)
    b.write(layer.top[0], y)


def _lrn(b: _Builder, layer) -> None:
    """(N, C, H, W) -> same; ACROSS_CHANNELS is ONNX LRN, WITHIN_CHANNEL is composed."""
    _arity(layer, 1, 1)
    p = layer.lrn_param
    x = b.read(layer)
    _require_rank(b, layer, x, 4)
    n = int(p.local_size)
    if n % 2 != 1:
        raise _unsupported(layer, f"local_size {n} must be odd (Caffe checks this)")
    if p.norm_region == p.ACROSS_CHANNELS:
        y = b.node("LRN", [x], layer.name, out=layer.top[0], rank=4, size=n,
                   alpha=float(p.alpha), beta=float(p.beta), bias=float(p.k))
    else:
        pad = (n - 1) // 2
        sq = b.node("Mul", [x, x], f"{layer.name}/square", rank=4)
        mean = b.node("AveragePool", [sq], f"{layer.name}/mean", rank=4, kernel_shape=[n, n],
                      strides=[1, 1], pads=[pad] * 4, count_include_pad=1)
        scaled = b.node("Mul", [mean, b.scalar(f"{layer.name}/alpha", p.alpha)],
                        f"{layer.name}/alpha", rank=4)
        base = b.node("Add", [scaled, b.scalar(f"{layer.name}/one", 1.0)],
                      f"{layer.name}/base", rank=4)
        factor = b.node("Pow", [base, b.scalar(f"{layer.name}/beta", -p.beta)],
                        f"{layer.name}/factor", rank=4)
        y = b.node("Mul", [x, factor], layer.name, out=layer.top[0], rank=4)
    b.write(layer.top[0], y)


def _batch_norm(b: _Builder, layer) -> None:
    """(N, C, ...) -> same, with the stored statistics: (x - mean/s) / sqrt(var/s + eps)."""
    _arity(layer, 1, 1)
    p = layer.batch_norm_param
    if p.HasField("use_global_stats") and not p.use_global_stats:
        raise _unsupported(layer, "use_global_stats false: Caffe normalises with the batch's "
                                  "statistics at test time")
    x = b.read(layer)
    if b.rank_of(layer, x) < 2:
        raise _unsupported(layer, "it needs an input of rank 2 or more")
    mean, var, factor = b.blobs_of(layer, 3, "mean, variance and moving-average factor")
    mean = mean.reshape(-1)
    var = _fit(layer, "variance", var.reshape(-1), mean.shape)
    factor = _fit(layer, "moving-average factor", factor.reshape(-1), (1,))
    s = 0.0 if factor[0] == 0 else 1.0 / float(factor[0])
    mean, var = (mean * np.float32(s)).astype(np.float32), (var * np.float32(s)).astype(np.float32)
    c = mean.shape[0]
    b.checks.add(layer.name, "mean", (c,), x, lambda d: None if d[1] is None else (d[1],))
    names = [b.const(f"{layer.name}/{what}", v) for what, v in
             (("gamma", np.ones(c, np.float32)), ("beta", np.zeros(c, np.float32)),
              ("mean", mean), ("var", var))]
    b.write(layer.top[0], b.node("BatchNormalization", [x] + names, layer.name,
                                 out=layer.top[0], rank=b.rank[x], epsilon=float(p.eps)))


def _mvn(b: _Builder, layer) -> None:
    """(N, C, ...) -> same: x - E(x), divided by sqrt(E((x - E(x))^2)) + eps when
    normalize_variance, the expectations over each (n, c)'s spatial axes, or over each n's
    C x ... when across_channels."""
    _arity(layer, 1, 1)
    p = layer.mvn_param
    x = b.read(layer)
    r = b.rank_of(layer, x)
    first = 1 if p.across_channels else 2
    if r <= first:
        raise _unsupported(layer, f"a {r}-D input has no axes to normalise over")
    axes = list(range(first, r))
    # opset 18 made ReduceMean's axes an input (one initializer for both means)
    axes_input = [b.const(f"{layer.name}/axes", np.array(axes))] if b.opset >= 18 else []
    axes_attr = {} if axes_input else {"axes": axes}

    def mean(v: str, tag: str) -> str:
        return b.node("ReduceMean", [v] + axes_input, f"{layer.name}/{tag}", rank=r,
                      keepdims=1, **axes_attr)

    last = not p.normalize_variance
    t = b.node("Sub", [x, mean(x, "mean")], layer.name if last else f"{layer.name}/centred",
               out=layer.top[0] if last else None, rank=r)
    if not last:
        var = mean(b.node("Mul", [t, t], f"{layer.name}/square", rank=r), "variance")
        sigma = b.node("Add", [b.node("Sqrt", [var], f"{layer.name}/sd", rank=r),
                               b.scalar(f"{layer.name}/eps", p.eps)], f"{layer.name}/sigma",
                       rank=r)
        t = b.node("Div", [t, sigma], layer.name, out=layer.top[0], rank=r)
    b.write(layer.top[0], t)


def _scale(b: _Builder, layer) -> None:
    """x * gamma (+ beta), gamma of shape x.shape[axis:axis + num_axes] broadcast; gamma is
    the second bottom when there are two."""
    _arity(layer, None, 1)
    if len(layer.bottom) not in (1, 2):
        raise _unsupported(layer, f"it has {len(layer.bottom)} bottoms, expected 1 or 2")
    p = layer.scale_param
    x = b.read(layer)
    r = b.rank_of(layer, x)
    axis = p.axis + r if p.axis < 0 else p.axis
    nb = (1 if p.bias_term else 0) + (1 if len(layer.bottom) == 1 else 0)
    blobs = b.blobs_of(layer, nb, "scale and bias") if nb else []
    if len(layer.bottom) == 2:
        g = b.read(layer, 1)
        span = b.rank_of(layer, g)
    else:
        span = r - axis if p.num_axes == -1 else int(p.num_axes)
    if not 0 <= axis <= r - span:
        raise _unsupported(layer, f"axis {p.axis}, {span} scale axes for a {r}-D input")
    trailing = r - axis - span
    if len(layer.bottom) == 2:
        if trailing:
            axes = b.const(f"{layer.name}/axes", np.arange(span, span + trailing))
            g = b.node("Unsqueeze", [g, axes], f"{layer.name}/unsqueeze", rank=span + trailing)
        scale_shape: tuple[int | None, ...] = (None,) * span
    else:
        gamma = _fit(layer, "scale", blobs.pop(0), (None,) * span)
        scale_shape = gamma.shape
        g = b.const(f"{layer.name}/gamma", gamma.reshape(gamma.shape + (1,) * trailing))
        b.checks.add(layer.name, "scale", gamma.shape, x,
                     lambda d: None if any(v is None for v in d[axis:axis + span])
                     else tuple(d[axis:axis + span]))
    last = not blobs
    y = b.node("Mul", [x, g], layer.name if last else f"{layer.name}/mul",
               out=layer.top[0] if last else None, rank=r)
    if blobs:
        beta = _fit(layer, "bias", blobs[0], scale_shape)
        beta = b.const(f"{layer.name}/beta", beta.reshape(beta.shape + (1,) * trailing))
        y = b.node("Add", [y, beta], layer.name, out=layer.top[0], rank=r)
    b.write(layer.top[0], y)


def _silence(b: _Builder, layer) -> None:
    """No output."""
    for i in range(len(layer.bottom)):
        b.read(layer, i)


def _split(b: _Builder, layer) -> None:
    """Every top aliases the bottom."""
    _arity(layer, 1, None)
    x = b.read(layer)
    for top in layer.top:
        if top != layer.bottom[0]:
            b.write(top, x)
            b.share(top, layer.bottom[0], reshaped=False)


def _roi_pooling(b: _Builder, layer) -> None:
    """features (N, C, H, W), rois (R, 5) [batch, x1, y1, x2, y2] -> (R, C, ph, pw)."""
    _arity(layer, 2, 1)
    p = layer.roi_pooling_param
    if p.pooled_h <= 0 or p.pooled_w <= 0:
        raise _unsupported(layer, f"pooled size {p.pooled_h} x {p.pooled_w} must be positive")
    x, rois = b.read(layer, 0), b.read(layer, 1)
    _require_rank(b, layer, x, 4)
    if b.rank.get(rois) != 2:
        shape = b.const(f"{layer.name}/rois_shape", np.array([-1, 5], dtype=np.int64))
        rois = b.node("Reshape", [rois, shape], f"{layer.name}/rois", rank=2)
    y = b.node("MaxRoiPool", [x, rois], layer.name, out=layer.top[0], rank=4,
               pooled_shape=[int(p.pooled_h), int(p.pooled_w)],
               spatial_scale=float(p.spatial_scale))
    b.write(layer.top[0], y)


_CONVERTERS: dict[str, Callable[[_Builder, object], None]] = {
    "BatchNorm": _batch_norm,
    "Concat": _concat,
    "Convolution": _convolution,
    "Dropout": _dropout,
    "Eltwise": _eltwise,
    "Flatten": _flatten,
    "InnerProduct": _inner_product,
    "LRN": _lrn,
    "MVN": _mvn,
    "Pooling": _pooling,
    "Power": _power,
    "ReLU": _relu,
    "ROIPooling": _roi_pooling,
    "Reshape": _reshape,
    "Scale": _scale,
    "Sigmoid": _unary("Sigmoid"),
    "Silence": _silence,
    "Softmax": _softmax,
    "Split": _split,
    "TanH": _unary("Tanh"),
}


# ---- the graph --------------------------------------------------------------------------

def _name_outputs(b: _Builder, outputs: Sequence[str]) -> None:
    """Give the graph outputs their Caffe names: rename the producing value, else Identity."""
    for name in outputs:
        if name not in b.blobs:
            raise ValueError(f"no layer produces the requested output '{name}'")
        b.current(name)
    produced = {o for node in b.nodes for o in node.output}
    taken: set[str] = set()
    for name in outputs:
        value = b.blobs[name]
        if value == name:
            continue
        if value in produced and value not in taken:
            for node in b.nodes:
                for field in (node.input, node.output):
                    for i, v in enumerate(field):
                        if v == value:
                            field[i] = name
            for blob, v in b.blobs.items():
                if v == value:
                    b.blobs[blob] = name
            b.checks.items = [(lay, what, shape, name if v == value else v, need)
                              for lay, what, shape, v, need in b.checks.items]
            produced.add(name)
        else:
            b.nodes.append(helper.make_node("Identity", [value], [name],
                                            name=f"{name}/output"))
        taken.add(name)


def _value_info(name: str, shape: Sequence[int | str] | None) -> onnx.ValueInfoProto:
    dims = None if shape is None else [d if isinstance(d, str) else int(d) for d in shape]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def convert(layers: Sequence[LayerParameter], weights: dict[str, list[np.ndarray]],
            inputs: dict[str, Sequence[int | str]], outputs: Sequence[str], name: str,
            opset: int = 17) -> onnx.ModelProto:
    """The ONNX model (float32) of Caffe ``layers`` run in order.

    ``weights``: layer name -> blobs (``read_caffemodel``); ``inputs``: input blob ->
    shape, a str dim being symbolic, e.g. {"data": (1, 3, "height", "width")};
    ``outputs``: the Caffe blobs to return, by those names.  Raises UnsupportedLayer for a
    layer without an equivalent, ValueError for missing or misshapen weights, unknown
    blobs or an unsupported opset.
    """
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset}: supported are {MIN_OPSET} to "
                         f"{onnx.defs.onnx_opset_version()}")
    if not outputs:
        raise ValueError("no outputs requested")
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"outputs {list(outputs)} name a blob twice")
    b = _Builder(weights, set(inputs) | set(outputs), opset=opset)
    for blob, shape in inputs.items():
        b.blobs[blob] = blob
        b.rank[blob] = len(shape)
    for layer in layers:
        if layer.type == "Input":
            missing = [t for t in layer.top if t not in inputs]
            if missing:
                raise _unsupported(layer, f"its tops {missing} must be given as inputs")
            continue
        converter = _CONVERTERS.get(layer.type)
        if converter is None:
            raise _unsupported(layer, "its type is not supported")
        converter(b, layer)
    _name_outputs(b, outputs)
    model = b.model
    model.graph.name = name
    model.graph.node.extend(b.nodes)
    model.graph.input.extend([_value_info(n, s) for n, s in inputs.items()])
    model.graph.output.extend([_value_info(n, None) for n in outputs])
    model.opset_import.add(domain="", version=opset)
    model.producer_name = "frcnn.deploy"
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    types = _infer_types(model)
    b.checks.run(types)
    for out in model.graph.output:
        if out.name in types and types[out.name].tensor_type.HasField("shape"):
            out.type.CopyFrom(types[out.name])
    onnx.checker.check_model(model)
    return model


def _infer_types(model: onnx.ModelProto, small: int = 4096) -> dict[str, onnx.TypeProto]:
    """Value name -> inferred type, by ONNX shape inference on the graph with its large
    initializers declared as inputs (so the weights are not copied); {} if it fails."""
    graph = model.graph
    kept = [t for t in graph.initializer if int(np.prod(t.dims, dtype=np.int64)) <= small]
    declared = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                for t in graph.initializer if int(np.prod(t.dims, dtype=np.int64)) > small]
    skeleton = helper.make_graph(list(graph.node), graph.name, list(graph.input) + declared,
                                 list(graph.output), kept)
    skeleton_model = helper.make_model(skeleton, opset_imports=list(model.opset_import))
    skeleton_model.ir_version = model.ir_version
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton_model)
    except Exception:  # shape inference is best effort: only checks and output shapes use it
        return {}
    return {v.name: v.type for v in list(inferred.graph.input) +
            list(inferred.graph.value_info) + list(inferred.graph.output)}
