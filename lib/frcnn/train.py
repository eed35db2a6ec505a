"""Training driver around Caffe's SGDSolver (py-faster-rcnn's SolverWrapper, with more care).

- seeds Caffe and numpy; optionally initialises from a caffemodel (by layer name);
- hands the roidb to the RoIDataLayer when one is given (else the layer reads its param_str);
- prints a progress line every ``display`` iterations: iteration, each loss (mean over the
  window), the learning rate, seconds per iteration and ETA;
- every ``snapshot_iters`` and at the end writes a deployable caffemodel with the bbox target
  normalisation folded into ``bbox_pred`` (plus a ``.json`` sidecar that says so, with the
  file's size and sha256) and, under ``state/``, Caffe's solver state with the train state
  of frcnn.train_state (the data layer's place and every sampler's generator) for an exact
  ``--resume``; every file is written under a temporary name and renamed (Caffe's own
  snapshot goes to ``state/.partial/`` first), so a kill leaves earlier snapshots whole and
  ``--resume auto`` finds the latest complete one;
- reseeds Caffe's generator (Dropout) before every iteration from the seed and the
  iteration, so a resumed run computes the same losses as an uninterrupted one (bit for bit
  on the CPU, where this driver runs Caffe);
- keeps the loss history (frcnn.train_history): ``loss.csv`` and ``loss.png`` in the output
  folder, rewritten at every snapshot and at the end; a resume keeps the rows up to its
  iteration;
- on SIGINT / SIGTERM finishes the iteration, writes a snapshot and raises
  ``TrainingInterrupted`` (the command line exits 130 / 143 saying how to resume);
- checks before training that the output folders can be written, and before each snapshot
  that there is room for it (Caffe aborts the process on a failed write): OSError naming
  the folder;
- stops with ``TrainingDiverged`` when a loss becomes NaN or inf, naming the loss and the
  iteration and pointing at the last good snapshot (the failure the seed hit; the usual cure
  is a lower base_lr).
"""
from __future__ import annotations

import errno
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from frcnn import devices
from frcnn.caffe_files import (read_solver, read_solver_state, write_binary_proto,
                               write_sidecar, write_text_proto)
from frcnn.detection import fold_bbox_normalization
from frcnn.fileio import check_writable, write_atomic
from frcnn.model_files import save_net_atomically
from frcnn.train_history import LossHistory, LRSchedule, learning_rate
from frcnn.train_state import (find_snapshots, global_rng_states, iteration_seed,
                               latest_complete_snapshot, read_train_state,
                               set_global_rng_states, train_state_path, write_train_state)

STAGING = ".partial"  # in the state folder: Caffe's snapshot before it is renamed


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training; a snapshot of ``iteration`` was written first."""

    def __init__(self, signum: int, iteration: int, snapshot: str, solverstate: Path):
        self.signum, self.iteration = int(signum), int(iteration)
        self.snapshot, self.solverstate = snapshot, solverstate
        super().__init__(f"{signal.Signals(self.signum).name}: training stopped at iteration "
                         f"{iteration} after writing the snapshot {snapshot} (and "
                         f"{solverstate})")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended."""
        return 128 + self.signum


@dataclass
class TrainOptions:
    solver: str                                  # solver.prototxt
    output_dir: str
    max_iters: int
    weights: str | None = None                   # initial weights (caffemodel)
    resume: str | None = None                    # a .solverstate, or "auto": the latest
    snapshot_iters: int = 10000
    display: int = 20
    prefix: str = "model"
    seed: int = 3
    fold_bbox: bool = True                       # fold normalisation into bbox_pred
    means: Sequence[float] = (0.0, 0.0, 0.0, 0.0)
    stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2)
    bbox_layer: str = "bbox_pred"
    extra_meta: dict = field(default_factory=dict)
    history: bool = True                         # loss.csv in output_dir
    plot: bool = True                            # and loss.png (when matplotlib imports)


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Trainer:
    """Runs a solver; see the module docstring."""

    def __init__(self, options: TrainOptions, roidb: list[dict] | None = None):
        import caffe

        self._caffe = caffe
        self.options = options
        self.out = check_writable(options.output_dir)
        self.solver_param = read_solver(options.solver)
        prefix = self.solver_param.snapshot_prefix or str(self.out / "state" / options.prefix)
        if prefix.endswith(("/", os.sep)):  # Caffe's "a folder, no name"
            self.state_dir, self.state_prefix = Path(prefix).absolute(), ""
        else:  # Caffe's prefix is relative to the current folder, as Path.absolute's
            self.state_dir, self.state_prefix = Path(prefix).absolute().parent, Path(prefix).name
        check_writable(self.state_dir, "snapshot folder")
        self._staging = self.state_dir / STAGING
        self._clear_staging()
        self.schedule = LRSchedule.from_solver(self.solver_param)
        try:
            self.schedule.check()
        except ValueError as e:
            print(f"[train] warning: {options.solver}: {e}; loss.csv records no learning "
                  f"rate", flush=True)
            self.schedule = None
        devices.apply(caffe)  # the CPU, or the GPU selected with --gpu / use_gpu
        caffe.set_random_seed(options.seed)
        np.random.seed(options.seed)
        self.solver = self._make_solver()
        self.net = self.solver.net
        self.resumed_from = self._resume_point(options.resume)
        if self.resumed_from:
            self._restore_solver(self.resumed_from)
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
        self.history = LossHistory(self.loss_names)
        self.csv_path, self.png_path = self.out / "loss.csv", self.out / "loss.png"
        if self.resumed_from:
            self._restore_train_state(self.resumed_from)
            if options.history:
                self.history.load(self.csv_path, up_to=self.solver.iter)
        self.last_snapshot: str | None = None
        self._signal: int | None = None
        self._handlers: dict[int, Any] = {}
        self._plot_notice = False

    # ------------------------------------------------------------------ solver and resume
    def _make_solver(self) -> Any:
        """The solver, from a copy of the solver file whose snapshot_prefix points into the
        staging folder (Caffe writes in place; ``snapshot`` renames into ``state/``)."""
        param = type(self.solver_param)()
        param.CopyFrom(self.solver_param)
        param.snapshot_prefix = f"{self._staging}{os.sep}{self.state_prefix}"
        param.snapshot_format = param.BINARYPROTO
        param.snapshot = 0  # the driver snapshots
        self._staging.mkdir(parents=True, exist_ok=True)
        copy = self._staging / "solver.prototxt"
        write_text_proto(copy, param)
        try:
            return self._caffe.get_solver(str(copy))  # honours the solver's type
        finally:
            copy.unlink(missing_ok=True)

    def _clear_staging(self) -> None:
        """Remove what a snapshot killed half-way left in the staging folder."""
        if self._staging.is_dir():
            for entry in self._staging.iterdir():
                if entry.is_file():
                    entry.unlink(missing_ok=True)

    def _resume_point(self, resume: str | None) -> Path | None:
        """The solver state to resume from: the given one, or for 'auto' the latest
        complete snapshot of this run (None when there is none yet: a fresh start)."""
        if not resume:
            return None
        if resume == "auto":
            found = latest_complete_snapshot(self.state_dir, self.state_prefix)
            if found is None:
                print(f"[train] --resume auto: no complete snapshot in {self.state_dir} yet; "
                      f"starting at iteration 0", flush=True)
                return None
            skipped = [s.solverstate.name for s in find_snapshots(self.state_dir,
                                                                  self.state_prefix)
                       if s.iteration > found.iteration and not s.complete]
            if skipped:
                print(f"[train] --resume auto: skipping incomplete {', '.join(skipped)}",
                      flush=True)
            return found.solverstate
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"solver state not found: {resume}")
        return path

    def _restore_solver(self, path: Path) -> None:
        """``solver.restore`` after checking in Python what Caffe would abort on: the file
        parses, the weights it names exist (else the file of that name beside it: a run
        folder that was moved) and fit the net."""
        from frcnn.model_files import check_weights_fit

        state = read_solver_state(path)
        target = path
        if state.learned_net:
            if not isinstance(state.learned_net, str):  # protobuf hands non-UTF-8 back as bytes
                raise ValueError(f"{path}: its learned_net is not a UTF-8 path "
                                 f"({state.learned_net!r}): a damaged file?")
            weights = Path(state.learned_net)
            if not weights.is_file():
                beside = path.with_name(weights.name)
                if not beside.is_file():
                    raise FileNotFoundError(f"{path} names its weights {weights}, which do "
                                            f"not exist (nor {beside})")
                state.learned_net = str(beside.absolute())
                target = self._staging / path.name
                write_binary_proto(target, state)
                weights = beside
            check_weights_fit(self.net, weights)
        # Caffe aborts unless the history has one (SGD, Nesterov, AdaGrad, RMSProp) or two
        # (Adam, AdaDelta) blobs per learnable blob; shared weights share their memory
        learnable = len({b.data.__array_interface__["data"][0]
                         for blobs in self.net.params.values() for b in blobs})
        if learnable and len(state.history) not in (learnable, 2 * learnable):
            raise ValueError(f"{path} holds the history of {len(state.history)} parameter "
                             f"blobs but the net learns {learnable}: a state of another net?")
        self.solver.restore(str(target))
        if target != path:
            target.unlink(missing_ok=True)
        print(f"[train] resumed from {path} at iteration {self.solver.iter}", flush=True)

    def _restore_train_state(self, solverstate: Path) -> None:
        """The data layer's and the samplers' states from the snapshot's train state; a
        solver state without one (plain Caffe's, or an older run) resumes with the data
        order and sampling started afresh, with a warning."""
        path = train_state_path(solverstate)
        if not path.is_file():
            print(f"[train] warning: {solverstate} has no train state ({path.name}): the data "
                  f"order and sampling start afresh, so the losses will not match an "
                  f"uninterrupted run", flush=True)
            return
        state = read_train_state(path)
        if state["iteration"] != self.solver.iter:
            raise ValueError(f"{path} is of iteration {state['iteration']} but {solverstate} "
                             f"of {self.solver.iter}")
        layers = dict(zip(self.net._layer_names, self.net.layers))
        for name, entry in state["layers"].items():
            layer = layers.get(name)
            if layer is None or not hasattr(layer, "set_train_state"):
                raise ValueError(f"{path}: layer '{name}' ({entry.get('type')}) is not a "
                                 f"layer of this net that keeps a train state: a snapshot of "
                                 f"another net?")
            layer.set_train_state(entry["state"])
        missing = [n for n, layer in layers.items()
                   if hasattr(layer, "get_train_state") and n not in state["layers"]]
        if missing:
            print(f"[train] warning: {path} has no state for layer(s) {missing}: they start "
                  f"afresh", flush=True)
        set_global_rng_states(state)

    def train_state(self) -> dict:
        """What ``write_train_state`` saves now (see frcnn.train_state)."""
        layers = {}
        for name, layer in zip(self.net._layer_names, self.net.layers):
            if hasattr(layer, "get_train_state"):
                layers[name] = {"type": type(layer).__name__, "state": layer.get_train_state()}
        return {"iteration": int(self.solver.iter), "seed": int(self.options.seed),
                "layers": layers, **global_rng_states()}

    # ------------------------------------------------------------------ snapshots
    def _check_space(self) -> None:
        """OSError when the snapshot folders lack room for a snapshot (Caffe aborts the
        process on a failed write; this asks first).  Estimate: 3x the weights + 1 MiB."""
        need = 3 * sum(b.data.nbytes for blobs in self.net.params.values() for b in blobs)
        need += 1 << 20
        for folder in {self.out, self.state_dir}:
            free = shutil.disk_usage(folder).free
            if free < need:
                raise OSError(errno.ENOSPC, f"{free} bytes free, a snapshot needs about "
                                            f"{need}", str(folder))

    def snapshot(self) -> str:
        """Write a deployable caffemodel (normalisation folded) with its sidecar, and the
        solver state with the train state for resumes, each atomically; then the loss
        history.  OSError naming what could not be written (earlier snapshots intact)."""
        it = self.solver.iter
        path = self.out / f"{self.options.prefix}_iter_{it}.caffemodel"
        try:
            self._check_space()
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
                                 "means": list(self.options.means),
                                 "stds": list(self.options.stds),
                                 "iteration": int(it), **self.options.extra_meta})
            self._snapshot_state(it)
        except OSError as e:
            self._clear_staging()
            last = (f"the last complete one is {self.last_snapshot}" if self.last_snapshot
                    else "nothing of this session was written")
            error = OSError(f"cannot write the snapshot of iteration {it} ({path}): "
                            f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}; "
                            f"earlier snapshots are intact ({last})")
            error.errno = e.errno
            raise error from e
        self.last_snapshot = str(path)
        print(f"[train] snapshot {path}", flush=True)
        return str(path)

    def _snapshot_state(self, it: int) -> Path:
        """Caffe's solver state and raw weights, written into the staging folder, renamed
        into ``state/`` (the solver state pointing at the renamed weights); then loss.csv,
        then the train state, which marks the snapshot complete; then loss.png."""
        name = f"{self.state_prefix}_iter_{it}"
        staged_weights = self._staging / f"{name}.caffemodel"
        staged_state = self._staging / f"{name}.solverstate"
        self.solver.snapshot()
        for staged in (staged_weights, staged_state):
            if not staged.is_file():
                raise OSError(errno.EIO, "Caffe's solver.snapshot() did not write it",
                              str(staged))
        weights = self.state_dir / staged_weights.name
        solverstate = self.state_dir / staged_state.name
        with open(staged_weights, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(staged_weights, weights)
        state = read_solver_state(staged_state)
        state.learned_net = str(weights)
        write_binary_proto(solverstate, state)
        staged_state.unlink()
        if self.options.history:
            write_atomic(self.csv_path, self.history.csv_bytes())
        write_train_state(train_state_path(solverstate), self.train_state())
        self._plot()
        return solverstate

    def _plot(self) -> None:
        """loss.png (when asked for and matplotlib imports; one notice when it does not)."""
        if not (self.options.history and self.options.plot and self.history.rows):
            return
        try:
            written = self.history.plot(self.png_path)
            why = "matplotlib is not importable"
        except Exception as e:  # a picture is not worth stopping a run for
            written, why = None, f"the plot failed ({type(e).__name__}: {e})"
        if written is None and not self._plot_notice:
            self._plot_notice = True
            print(f"[train] warning: {why}: no {self.png_path} (loss.csv has the numbers)",
                  flush=True)

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        """SIGINT / SIGTERM: stop after this iteration (a second one acts as usual)."""
        if self._signal is None:
            self._signal = signum
            previous = self._handlers.get(signum)
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers are the main thread's
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._handlers = {}

    # ------------------------------------------------------------------ training
    def _losses(self) -> dict[str, float]:
        return {name: float(np.asarray(self.net.blobs[name].data).ravel()[0])
                for name in self.loss_names}

    def _save_history(self) -> None:
        """loss.csv and loss.png now (best effort: a failure here only warns)."""
        if not self.options.history:
            return
        try:
            self.history.write(self.csv_path)
            self._plot()
        except OSError as e:
            print(f"[train] warning: cannot write the loss history: {e}", flush=True)

    def train(self) -> str:
        """Train to max_iters; return the final snapshot's path.  TrainingInterrupted after
        SIGINT / SIGTERM (a snapshot written at the end of the iteration it came in)."""
        self._signal = None
        self._install_handlers()
        try:
            return self._train()
        finally:
            self._restore_handlers()

    def _train(self) -> str:
        opts = self.options
        window: dict[str, list[float]] = {n: [] for n in self.loss_names}
        start_iter = self.solver.iter
        t0, seconds0 = time.time(), self.history.seconds
        if start_iter >= opts.max_iters:
            return self.snapshot()
        while self.solver.iter < opts.max_iters:
            where = (f"the last good snapshot is {self.last_snapshot}"
                     if self.last_snapshot else "no snapshot was written yet")
            before = self.solver.iter
            # Caffe's generator (Dropout) from (seed, iteration): a resume draws the same
            self._caffe.set_random_seed(iteration_seed(opts.seed, before))
            try:
                self.solver.step(1)
            except ValueError as e:  # a layer refused NaN/inf blobs (the loss is diverging)
                self._save_history()
                raise TrainingDiverged(f"training stopped at iteration {before + 1}: "
                                       f"{e}; {where}") from e
            it = self.solver.iter
            losses = self._losses()
            lr = learning_rate(self.schedule, before) if self.schedule else math.nan
            self.history.add(it, losses, lr, seconds0 + time.time() - t0)
            bad = {n: v for n, v in losses.items() if not math.isfinite(v)}
            if bad:
                self._save_history()
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
                      f"lr {lr:.3g}  {per_iter:.3f}s/iter  ETA {_format_seconds(eta)}",
                      flush=True)
                window = {n: [] for n in self.loss_names}
            snapped = None
            if opts.snapshot_iters > 0 and it % opts.snapshot_iters == 0 and it < opts.max_iters:
                snapped = self.snapshot()
            if self._signal is not None and it < opts.max_iters:
                if snapped is None:
                    print(f"[train] {signal.Signals(self._signal).name}: writing a snapshot "
                          f"at iteration {it}", flush=True)
                    snapped = self.snapshot()
                raise TrainingInterrupted(self._signal, it, snapped, self.state_dir /
                                          f"{self.state_prefix}_iter_{it}.solverstate")
        return self.snapshot()
