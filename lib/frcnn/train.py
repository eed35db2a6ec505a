"""Training driver around Caffe's SGDSolver (py-faster-rcnn's SolverWrapper, with more care).

- seeds Caffe and numpy; optionally initialises from a caffemodel (by layer name);
- hands the roidb to the RoIDataLayer when one is given (else the layer reads its param_str);
- prints a progress line every ``display`` iterations: iteration, each loss (mean over the
  window), seconds per iteration and ETA;
- every ``snapshot_iters`` and at the end writes a deployable caffemodel with the bbox target
  normalisation folded into ``bbox_pred`` (plus a ``.json`` sidecar that says so) and a
  solver state for ``--resume``;
- stops with ``TrainingDiverged`` when a loss becomes NaN or inf, naming the loss and the
  iteration and pointing at the last good snapshot (the failure the seed hit; the usual cure
  is a lower base_lr).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from frcnn.detection import fold_bbox_normalization
from frcnn.fileio import write_atomic
from frcnn.model_files import save_net_atomically

SIDECAR_SUFFIX = ".frcnn.json"


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf."""


@dataclass
class TrainOptions:
    solver: str                                  # solver.prototxt
    output_dir: str
    max_iters: int
    weights: str | None = None                   # initial weights (caffemodel)
    resume: str | None = None                    # a .solverstate written by a snapshot
    snapshot_iters: int = 10000
    display: int = 20
    prefix: str = "model"
    seed: int = 3
    fold_bbox: bool = True                       # fold normalisation into bbox_pred
    means: Sequence[float] = (0.0, 0.0, 0.0, 0.0)
    stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2)
    bbox_layer: str = "bbox_pred"
    extra_meta: dict = field(default_factory=dict)


def write_sidecar(model_path: str | os.PathLike, meta: dict) -> None:
    """Write ``<model>.frcnn.json`` (atomically): what the test path must know about the
    model, plus the model file's size."""
    path = Path(str(model_path) + SIDECAR_SUFFIX)
    if Path(model_path).is_file():
        meta = {**meta, "model_bytes": Path(model_path).stat().st_size}
    write_atomic(path, (json.dumps(meta, indent=2) + "\n").encode())


def read_sidecar(model_path: str | os.PathLike) -> dict | None:
    """The sidecar of a model, or None (e.g. a model from plain ``caffe train``)."""
    path = Path(str(model_path) + SIDECAR_SUFFIX)
    return json.loads(path.read_text()) if path.exists() else None


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Trainer:
    """Runs a solver; see the module docstring."""

    def __init__(self, options: TrainOptions, roidb: list[dict] | None = None):
        import caffe

        self.options = options
        self.out = Path(options.output_dir)
        (self.out / "state").mkdir(parents=True, exist_ok=True)
        caffe.set_mode_cpu()
        caffe.set_random_seed(options.seed)
        np.random.seed(options.seed)
        self.solver = caffe.get_solver(options.solver)  # honours the solver's type
        self.net = self.solver.net
        if options.resume:
            if not Path(options.resume).exists():
                raise FileNotFoundError(f"solver state not found: {options.resume}")
            self.solver.restore(options.resume)
        elif options.weights:
            if not Path(options.weights).exists():
                raise FileNotFoundError(f"initial weights not found: {options.weights}")
            from frcnn.model_files import load_weights

            load_weights(self.net, options.weights)  # checked first: Caffe would abort
        if roidb is not None:
            data_layer = self.net.layers[0]
            if not hasattr(data_layer, "set_roidb"):
                raise ValueError("the train net's first layer is not a RoIDataLayer; cannot "
                                 "hand it the roidb")
            data_layer.set_roidb(roidb)
        self.loss_names = [name for name in self.net.outputs]
        self.last_snapshot: str | None = None

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> str:
        """Write a deployable caffemodel (normalisation folded) and a solver state."""
        it = self.solver.iter
        path = self.out / f"{self.options.prefix}_iter_{it}.caffemodel"
        params = self.net.params.get(self.options.bbox_layer)
        folded = self.options.fold_bbox and params is not None
        if folded:
            w, b = params[0].data.copy(), params[1].data.copy()
            params[0].data[...], params[1].data[...] = fold_bbox_normalization(
                w, b, self.options.means, self.options.stds)
        try:
            save_net_atomically(self.net, path)
        finally:
            if folded:
                params[0].data[...], params[1].data[...] = w, b
        write_sidecar(path, {"bbox_normalization_folded": bool(folded),
                             "means": list(self.options.means), "stds": list(self.options.stds),
                             "iteration": int(it), **self.options.extra_meta})
        self.solver.snapshot()  # solver state (+ raw weights) under the solver's prefix
        self.last_snapshot = str(path)
        print(f"[train] snapshot {path}", flush=True)
        return str(path)

    # ------------------------------------------------------------------ training
    def _losses(self) -> dict[str, float]:
        return {name: float(np.asarray(self.net.blobs[name].data).ravel()[0])
                for name in self.loss_names}

    def train(self) -> str:
        """Train to max_iters; return the final snapshot's path."""
        opts = self.options
        window: dict[str, list[float]] = {n: [] for n in self.loss_names}
        start_iter = self.solver.iter
        t0 = time.time()
        if start_iter >= opts.max_iters:
            return self.snapshot()
        while self.solver.iter < opts.max_iters:
            where = (f"the last good snapshot is {self.last_snapshot}"
                     if self.last_snapshot else "no snapshot was written yet")
            try:
                self.solver.step(1)
            except ValueError as e:  # a layer refused NaN/inf blobs (the loss is diverging)
                raise TrainingDiverged(f"training stopped at iteration {self.solver.iter + 1}: "
                                       f"{e}; {where}") from e
            it = self.solver.iter
            losses = self._losses()
            bad = {n: v for n, v in losses.items() if not math.isfinite(v)}
            if bad:
                raise TrainingDiverged(
                    f"loss {', '.join(f'{n} = {v}' for n, v in bad.items())} at iteration "
                    f"{it}: training stopped; {where}. Lower base_lr in the solver (the seed "
                    f"needed 1/10 of the ZF learning rate) or check the data.")
            for n, v in losses.items():
                window[n].append(v)
            if it % opts.display == 0 or it == opts.max_iters:
                elapsed = time.time() - t0
                per_iter = elapsed / max(it - start_iter, 1)
                eta = per_iter * (opts.max_iters - it)
                parts = "  ".join(f"{n} {np.mean(v):.4f}" for n, v in window.items())
                total = sum(np.mean(v) for v in window.values())
                print(f"[train] iter {it}/{opts.max_iters}  loss {total:.4f}  {parts}  "
                      f"{per_iter:.3f}s/iter  ETA {_format_seconds(eta)}", flush=True)
                window = {n: [] for n in self.loss_names}
            if opts.snapshot_iters > 0 and it % opts.snapshot_iters == 0 and it < opts.max_iters:
                self.snapshot()
        return self.snapshot()


def write_solver(template: str, dest: str | os.PathLike, overrides: dict[str, Any]) -> str:
    """Copy a solver prototxt, replacing or adding top-level fields (paths quoted)."""
    from google.protobuf import text_format

    from caffe.proto import caffe_pb2

    solver = caffe_pb2.SolverParameter()
    with open(template) as f:
        text_format.Merge(f.read(), solver)
    for key, value in overrides.items():
        field_desc = solver.DESCRIPTOR.fields_by_name[key]
        repeated = getattr(field_desc, "is_repeated", None)
        if repeated is None:  # older protobuf
            repeated = field_desc.label == field_desc.LABEL_REPEATED
        if repeated:
            getattr(solver, key)[:] = value if isinstance(value, (list, tuple)) else [value]
        else:
            setattr(solver, key, value)
    Path(dest).write_text(text_format.MessageToString(solver))
    return str(dest)
