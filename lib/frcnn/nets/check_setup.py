"""The checker's Python layers: param_str, import, top shapes and the layers' own setup.

``PythonLayerSetup`` is a mixin of the checker's ``_Checker`` (``frcnn.nets.checker``).
For each Python layer it parses ``param_str`` against the table the layers themselves use
(``frcnn.layer_params``), imports the module and finds the class (when ``imports``), and
gives the top shapes of the Faster R-CNN layers it knows (data, anchor target, proposal,
proposal target, OHEM) for the static shape inference.  After the static checks,
``_run_setups`` calls each imported layer's ``setup(bottom, top)`` and
``reshape(bottom, top)`` as Caffe calls them, on numpy stand-in blobs (``frcnn.testing``)
of the inferred bottom shapes (or those the Python layer producing the blob gave at its
own setup), in the net's phase; an exception is an error of that layer.  A layer runs only
when every bottom shape is known; the global cfg is restored afterwards.

State of the checker it reads: ``layers``, ``phase``, ``imports``, ``input_size``
((height, width) of the image a Python data layer produces), ``bottom_shapes`` (written by
``ShapeInference``) and ``sources`` (through ``source``).  State it writes: ``python``
(layer index -> (param table key or module.Class, parsed params or None)), ``classes``
(layer index -> imported class), ``param_failed`` (indices whose param_str failed),
``_module_cache`` (module name -> module or its import exception) and ``notes``.  Findings
go through the checker's ``error``.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import re
from typing import Any, Optional

from frcnn.nets.check_shapes import Shape, known

# The param_str tables (frcnn.layer_params) of the Faster R-CNN Python layers.
DATA_KEY = "roi_data_layer.layer.RoIDataLayer"
ANCHOR_TARGET_KEY = "rpn.anchor_target_layer.AnchorTargetLayer"
PROPOSAL_KEY = "rpn.proposal_layer.ProposalLayer"
PROPOSAL_TARGET_KEY = "rpn.proposal_target_layer.ProposalTargetLayer"
OHEM_KEY = "roi_data_layer.layer.OHEMDataLayer"


class PythonLayerSetup:
    """Python layers: param_str, import, known top shapes and setup on stand-in blobs (see
    the module docstring for the checker state it reads and writes)."""

    def _python_setup(self, idx: int, layer: Any) -> None:
        """Record the Python layer idx in ``python`` as (table key, params): import its class
        (when ``imports``), find its param_str table (module.Class, or the class's
        ``PARAMS`` alias) and parse param_str with it; errors are findings."""
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
        """The layer class ``module.cls_name``, or None after reporting why not (each module
        is imported once per check; an import exception is remembered)."""
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
        """The top shapes (and strides) of the Faster R-CNN Python layers, from their params
        and bottoms: the data layer's image (1, 3, H, W) at stride 1, im_info (1, 3), gt
        boxes (?, 5) (or the 6-top Fast R-CNN layout), the anchor targets
        (1, 1, A x H, W) and (1, 4A, H, W) x 3, the proposals (?, 5), the proposal targets
        (?, 5), (?,), (?, 4K) x 3, and OHEM's selected rows; unknown for other layers."""
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
            if not known(shape):
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
