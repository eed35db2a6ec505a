"""Caffe layer parameters read as Caffe reads them: the (h, w) geometry of a convolution
or a pooling, and pooling's rounding.

One reader for the static checker (``frcnn.nets.check_shapes``) and the ONNX converter
(``frcnn.deploy.onnx_convert``), so that the two agree with each other and with Caffe.
Each function takes a caffe_pb2 ``ConvolutionParameter`` or ``PoolingParameter`` and
returns plain ints and bools; what to do with a value Caffe would refuse (a kernel of 0, a
3-D kernel) is left to the caller.  No pycaffe import: the message carries its own
descriptor.

The fields, as caffe.proto has them (builds of Caffe differ; the reader asks the message's
descriptor which fields it has):

- ConvolutionParameter: ``kernel_size``, ``stride``, ``pad`` and ``dilation`` are repeated,
  one value for every spatial axis or one value per axis (N-D); ``kernel_h``/``kernel_w``,
  ``stride_h``/``stride_w`` and ``pad_h``/``pad_w`` give a 2-D (h, w) instead.  There is no
  ``dilation_h``/``dilation_w``.
- PoolingParameter: ``kernel_size``, ``stride`` and ``pad`` are scalars, with the same
  ``_h``/``_w`` alternatives; no dilation; ``ceil_mode`` in some builds only.

Spatial axes are (h, w): index 0 is the height, 1 the width, as in an (N, C, H, W) blob.
"""
from __future__ import annotations

from typing import Any


def defines(msg: Any, field: str) -> bool:
    """Whether the protobuf message's type has the field at all (builds of Caffe differ);
    says nothing about whether it is set."""
    return field in msg.DESCRIPTOR.fields_by_name


def spatial_values(p: Any, name: str) -> tuple[int, ...]:
    """The values given for one kind of window geometry, as written in the prototxt.

    Args:
        p: a ConvolutionParameter or PoolingParameter.
        name: 'kernel', 'stride', 'pad' or 'dilation' (the field ``kernel_size`` for
            'kernel', else the field of that name).

    Returns:
        ``(h, w)`` from ``name_h``/``name_w`` when either of them is set (the other reads
        as its proto default); else the repeated field's values (ConvolutionParameter's:
        one for all axes, or one per axis, any number) or the scalar field's value
        (PoolingParameter's), ``(v,)`` when it is set; ``()`` when nothing is given or the
        message has no such field (pooling's dilation).  One exception, as in Caffe's
        PoolingLayer: a set ``kernel_size`` comes before ``kernel_h``/``kernel_w`` (Caffe
        accepts it beside a lone ``kernel_h`` or ``kernel_w``, and reads it alone).
    """
    h, w = f"{name}_h", f"{name}_w"
    field_name = "kernel_size" if name == "kernel" else name
    values = getattr(p, field_name) if defines(p, field_name) else ()
    scalar = not hasattr(values, "__len__")  # PoolingParameter's; repeated in Convolution's
    if scalar and name == "kernel" and p.HasField(field_name):
        return (int(values),)
    if defines(p, h) and (p.HasField(h) or p.HasField(w)):
        return int(getattr(p, h)), int(getattr(p, w))
    if scalar:
        return (int(values),) if p.HasField(field_name) else ()
    return tuple(int(v) for v in values)


def spatial_pair(p: Any, name: str, default: int) -> tuple[int, int]:
    """The (h, w) of a kernel, stride, pad or dilation (arguments as ``spatial_values``).

    ``(default, default)`` when nothing is given; one value serves both axes; of two or
    more values (N-D) the first two are (h, w).  Callers that support 2-D only check
    ``len(spatial_values(p, name)) <= 2`` first.  Caffe's own defaults are 1 for stride and
    dilation, 0 for pad; a convolution's kernel has none (Caffe refuses the layer), so
    each caller picks the default it reports best.
    """
    values = spatial_values(p, name)
    if not values:
        return default, default
    return (values[0], values[1]) if len(values) > 1 else (values[0], values[0])


def pool_ceil_mode(p: Any) -> bool:
    """Whether a Pooling layer rounds its output size up (True) or down (False).

    Output size per axis: ``round((size + 2 * pad - kernel) / stride) + 1`` with ``round``
    ceil or floor (Caffe then drops a last window that would start in the padding).  A
    PoolingParameter without a ``ceil_mode`` field is a Caffe that always rounds up: True.
    Where the field exists its value counts, and unset it reads as its proto default,
    which is what that Caffe does (this build: ``optional bool ceil_mode [default =
    true]``).
    """
    return bool(p.ceil_mode) if defines(p, "ceil_mode") else True
