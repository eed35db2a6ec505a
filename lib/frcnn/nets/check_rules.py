"""The checker's Faster R-CNN rules: classes, anchors, RoI pooling and shared parameters.

``FasterRCNNRules`` is a mixin of the checker's ``_Checker`` (``frcnn.nets.checker``).  It
runs after the shape inference (``frcnn.nets.check_shapes``) and the Python layers'
param_str parsing (``frcnn.nets.check_setup``) and checks what Caffe would accept but
training would get wrong, or what Caffe refuses only once the weights are shared:

- num_classes (from the data, proposal-target and OHEM layers' param_str) against the
  class-score InnerProducts (K outputs) and box-regression InnerProducts (4K outputs);
  without num_classes (test nets) bbox_pred against 4 x cls_score;
- anchors: rpn_cls_score (2A outputs), rpn_bbox_pred (4A) and the reshapes around the RPN
  softmax (dim 2, then 2A) against the ratios x scales of the anchor-target and proposal
  layers; feat_stride against the stride of the RPN maps;
- ROIPooling spatial_scale against 1 / the stride of its feature map;
- parameters shared by name whose shapes (or lr_mult / decay_mult) differ, with a hint
  when the two branches pool their RoIs at different sizes (OHEM's read-only branch).

State of the checker it reads: ``layers``, ``python`` (layer index -> (param table key,
parsed params)), ``strides`` (blob -> stride relative to the input image) and
``param_shapes`` (layer index -> parameter blob shapes), and the graph through ``source``,
``consumers`` and ``through``.  State it writes: ``facts`` (the lines the report shows,
e.g. the number of classes and anchors).  Findings go through the checker's ``error`` and
``warn``.
"""
from __future__ import annotations

from typing import Any, Optional

from frcnn.nets.check_setup import ANCHOR_TARGET_KEY, OHEM_KEY, PROPOSAL_KEY
from frcnn.nets.check_shapes import fmt_shape, prod


def fmt_scale(scale: float) -> str:
    """A spatial_scale as given, with 1/n where it is the inverse of an integer (0.0625 =
    1/16)."""
    inv = 1.0 / scale if scale else float("inf")
    if abs(inv - round(inv)) < 1e-6:
        return f"{scale:g} = 1/{round(inv)}"
    return f"{scale:g}"


class FasterRCNNRules:
    """The Faster R-CNN checks (see the module docstring for the checker state they read
    and write)."""

    # ----- num_classes -----
    def _check_classes(self) -> None:
        """num_classes K from the Python layers' params (they must agree) against the class
        scores (K outputs) and box deltas (4K); without K, each bbox_pred against 4 x its
        cls_score."""
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
        """The included layer called name."""
        return next(layer for layer in self.layers if layer.name == name)

    def _head_layers(self) -> tuple[list[int], list[int]]:
        """The indices of the class-score and of the box-regression InnerProducts: by name
        (cls_score*, bbox_pred*) or by what reads them (Softmax / SoftmaxWithLoss, SmoothL1Loss,
        the OHEM layer's bottoms 0 and 1)."""
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
        """A = ratios x scales of each anchor-target and proposal layer against the RPN convs
        (2A scores, 4A deltas) and the reshapes around the softmax (dim 2, then 2A);
        feat_stride against the stride of the RPN map; a fact per anchor setting."""
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
        """Report layer idx when it is a Convolution whose num_output is not n."""
        if idx is None or self.layers[idx].type != "Convolution":
            return
        layer = self.layers[idx]
        got = layer.convolution_param.num_output
        if got != n:
            self.error(layer, f"num_output {got}, but {why}")

    def _expect_reshape(self, idx: int, n: int, why: str) -> None:
        """Report the Reshape layer idx when its dim 1 is not n."""
        layer = self.layers[idx]
        dims = list(layer.reshape_param.shape.dim)
        if len(dims) < 2:
            return
        if dims[1] != n:
            self.error(layer, f"reshape dims {dims}: {why}")

    # ----- RoI pooling -----
    def _check_roi_pooling(self) -> None:
        """ROIPooling spatial_scale against 1 / the stride of its feature map (a warning when
        the stride is unknown)."""
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
                self.error(layer, f"spatial_scale {fmt_scale(p.spatial_scale)}, but '{blob}' "
                                  f"is at stride {stride:g}: it needs {1 / stride:g}")
            else:
                self.facts.append(f"RoI pooling: '{layer.name}' {p.pooled_h}x{p.pooled_w} on "
                                  f"'{blob}' (stride {stride:g}, spatial_scale "
                                  f"{p.spatial_scale:g})")

    # ----- shared parameters -----
    def _check_shared(self) -> None:
        """Parameters shared by name: the same shape (the same count under PERMISSIVE) and the
        same lr_mult / decay_mult where both layers set them, each member against the first."""
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
                    differ = (prod(shape) != prod(ref_shape)) if permissive else \
                        (tuple(shape) != tuple(ref_shape))
                    if differ:
                        self.error(layer, f"shares parameter '{name}' with '{ref.name}', but "
                                          f"the blob is {fmt_shape(shape)} here and "
                                          f"{fmt_shape(ref_shape)} there" +
                                   self._pool_hint(idx, ref_idx))
                for attr in ("lr_mult", "decay_mult"):
                    if (spec.HasField(attr) and ref_spec.HasField(attr)
                            and getattr(spec, attr) != getattr(ref_spec, attr)):
                        self.error(layer, f"shares parameter '{name}' with '{ref.name}' but "
                                          f"its {attr} {getattr(spec, attr):g} differs from "
                                          f"{getattr(ref_spec, attr):g} (Caffe aborts)")

    def _pool_hint(self, idx: int, ref_idx: int) -> str:
        """When the two layers' inputs come from ROIPoolings of different sizes, the text that
        says so (appended to the shape mismatch); else ""."""
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
