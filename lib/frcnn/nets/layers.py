"""Small helpers over caffe.NetSpec for the network builders.

NetSpec names every layer after its first top.  Caffe and py-faster-rcnn nets often name a
layer differently from its top (``rpn_conv/3x3`` -> ``rpn/output``, ``loss_cls`` ->
``cls_loss``, the three-top ``input-data``), so ``NetBuilder`` records such names and
applies them when it turns the spec into a NetParameter.  In-place layers (ReLU, Dropout)
are named by their own name and write to their bottom.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence


def gaussian(std: float) -> dict:
    return {"type": "gaussian", "std": std}


def constant(value: float = 0.0) -> dict:
    return {"type": "constant", "value": value}


XAVIER = {"type": "xavier"}
MSRA = {"type": "msra"}
FILLERS = {"xavier": XAVIER, "msra": MSRA}


def lr_params(shared: str | None = None, lr: tuple[float, float] = (1.0, 2.0)) -> list[dict]:
    """Weight and bias ParamSpecs: lr_mult 1 and 2 (py-faster-rcnn's convention), named
    ``<shared>_w`` / ``<shared>_b`` when the blobs are shared with another layer."""
    specs = [{"lr_mult": lr[0]}, {"lr_mult": lr[1]}]
    if shared:
        specs[0]["name"] = f"{shared}_w"
        specs[1]["name"] = f"{shared}_b"
    return specs


def format_value(value: Any) -> str:
    """A param_str value as py-faster-rcnn writes it (numbers bare, lists in brackets,
    strings single-quoted)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        if "'" in value or "\\" in value or "\n" in value:
            raise ValueError(f"param_str value {value!r}: quotes, backslashes and newlines "
                             f"are not supported")
        return f"'{value}'"
    return repr(value)


def param_str(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> str:
    """``'key': value`` lines, one key per line, in the given order."""
    pairs = items.items() if isinstance(items, Mapping) else items
    return "\n".join(f"'{key}': {format_value(value)}" for key, value in pairs)


class NetBuilder:
    """A caffe.NetSpec whose layers may be named apart from their tops."""

    def __init__(self, name: str):
        import caffe
        from caffe import layers as L

        self.name = name
        self._spec = caffe.NetSpec()
        self._L = L
        self._renames: dict[str, str] = {}
        self._tops: dict[str, Any] = {}

    def __getitem__(self, blob: str) -> Any:
        return self._tops[blob]

    def _assign(self, key: str, top: Any) -> None:
        if key in self._spec.tops:
            raise ValueError(f"net {self.name}: '{key}' is defined twice")
        self._spec[key] = top

    def add(self, type_name: str, name: str, bottoms: Sequence[Any] = (),
            tops: Sequence[str] | None = None, in_place: bool = False, **params: Any) -> Any:
        """Add a layer and return its top (or tuple of tops).

        Args:
            type_name: the Caffe layer type.
            name: the layer's name.
            bottoms: Tops (from this builder) or blob names.
            tops: top blob names (default: [name]); ignored for in-place layers.
            in_place: write to the first bottom (the layer is then named ``name``).
            params: NetSpec keyword parameters (``convolution_param`` fields may be given
                directly, e.g. num_output=..., as NetSpec allows).
        """
        inputs = [self._tops[b] if isinstance(b, str) else b for b in bottoms]
        if in_place:
            top = getattr(self._L, type_name)(*inputs, in_place=True, **params)
            self._assign(name, top)
            blob = self._blob_name(bottoms[0])
            self._tops[blob] = top
            return top
        tops = list(tops or [name])
        result = getattr(self._L, type_name)(*inputs, ntop=len(tops), **params)
        outs = result if len(tops) > 1 else (result,)
        for blob, top in zip(tops, outs):
            self._assign(blob, top)
            self._tops[blob] = top
        if tops[0] != name:
            self._renames[tops[0]] = name
        return result

    def _blob_name(self, bottom: Any) -> str:
        if isinstance(bottom, str):
            return bottom
        for blob, top in self._tops.items():
            if top is bottom:
                return blob
        raise ValueError(f"net {self.name}: bottom {bottom!r} is not a blob of this net")

    def to_proto(self) -> Any:
        net = self._spec.to_proto()
        net.name = self.name
        for layer in net.layer:
            if layer.name in self._renames:
                layer.name = self._renames[layer.name]
        names = [layer.name for layer in net.layer]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"net {self.name}: duplicate layer names {duplicates}")
        return net


_ESCAPED_QUOTE = re.compile(r"(?<!\\)\\'")


def to_text(message: Any, header: str = "") -> str:
    """A protobuf message as prototxt text, with a comment header.

    protobuf escapes single quotes inside strings (``\\'``); py-faster-rcnn's param_str is
    full of them, so they are written plainly (still valid text format).  The result is
    parsed back and compared with the message.
    """
    from frcnn.caffe_files import parse_text, proto_text

    text = _ESCAPED_QUOTE.sub("'", proto_text(message))
    again = parse_text(text, type(message)(), "<generated>", "generated prototxt")
    if again != message:
        raise AssertionError("prototxt text does not parse back to the same message")
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    return "\n".join(lines + [text.rstrip("\n")]) + "\n"
