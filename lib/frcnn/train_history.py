"""The loss history of a training run: Caffe's learning rate, ``loss.csv`` and ``loss.png``.

``learning_rate(schedule, iteration)`` is Caffe's ``SGDSolver::GetLearningRate`` as a pure
function (pycaffe does not expose the rate): the rate of the update made at ``iteration``
(0-based; the update that takes ``solver.iter`` from ``iteration`` to ``iteration + 1``).
Policies: fixed, step, exp, inv, multistep, poly, sigmoid.  BVLC Caffe's solver has no
warm-up field, so there is none here.

``LossHistory`` keeps one row per iteration (``iteration`` counts the updates done, as
``solver.iter`` after the step)::

    iteration, <each loss>, total, lr, seconds

``total`` is the sum of the losses, ``lr`` the rate that iteration's update used, ``seconds``
the wall-clock seconds of training up to the end of that iteration, summed over resumed runs.
Floats are written with ``repr`` (they read back exactly).  ``write`` writes the CSV and,
when matplotlib is importable, the plot (each loss and the total smoothed, the learning rate
in a panel of its own; drawn by matplotlib's Agg canvas, without pyplot), both atomically.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from frcnn.fileio import write_atomic

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


@dataclass(frozen=True)
class LRSchedule:
    """The solver fields the learning rate depends on (SolverParameter's names)."""
    lr_policy: str = "fixed"
    base_lr: float = 0.01
    gamma: float = 0.0
    power: float = 0.0
    stepsize: int = 0
    stepvalue: tuple[int, ...] = ()
    max_iter: int = 0

    @classmethod
    def from_solver(cls, solver: Any) -> "LRSchedule":
        """From a caffe_pb2.SolverParameter (or anything with those attributes)."""
        return cls(lr_policy=str(solver.lr_policy), base_lr=float(solver.base_lr),
                   gamma=float(solver.gamma), power=float(solver.power),
                   stepsize=int(solver.stepsize), stepvalue=tuple(int(v) for v in
                                                                  solver.stepvalue),
                   max_iter=int(solver.max_iter))

    def check(self) -> None:
        """ValueError for what Caffe would abort on at the first update."""
        if self.lr_policy not in POLICIES:
            raise ValueError(f"unknown lr_policy {self.lr_policy!r} (Caffe knows "
                             f"{', '.join(POLICIES)})")
        if self.lr_policy == "step" and self.stepsize <= 0:
            raise ValueError(f"lr_policy 'step' needs a positive stepsize, got {self.stepsize}")
        if self.lr_policy == "poly" and self.max_iter <= 0:
            raise ValueError(f"lr_policy 'poly' needs a positive max_iter, got {self.max_iter}")


def multistep_index(stepvalue: Sequence[int], iteration: int) -> int:
    """Caffe's ``current_step_`` for 'multistep' at ``iteration``: it moves on by at most one
    step an update, at the first update at or after each step value (so for increasing step
    values, the number of step values <= iteration)."""
    step, next_free = 0, 0
    for value in stepvalue:
        at = max(int(value), next_free)
        if at > iteration:
            break
        step, next_free = step + 1, at + 1
    return step


def learning_rate(schedule: LRSchedule, iteration: int) -> float:
    """The learning rate of the update at ``iteration`` (see the module docstring).

    ValueError for an unknown policy or one missing its parameter.
    """
    s, it = schedule, int(iteration)
    s.check()
    if s.lr_policy == "fixed":
        return s.base_lr
    if s.lr_policy == "step":
        return s.base_lr * s.gamma ** (it // s.stepsize)
    if s.lr_policy == "exp":
        return s.base_lr * s.gamma ** it
    if s.lr_policy == "inv":
        return s.base_lr * (1.0 + s.gamma * it) ** (-s.power)
    if s.lr_policy == "multistep":
        return s.base_lr * s.gamma ** multistep_index(s.stepvalue, it)
    if s.lr_policy == "poly":
        return s.base_lr * (1.0 - it / s.max_iter) ** s.power
    return s.base_lr / (1.0 + math.exp(-s.gamma * (it - s.stepsize)))  # sigmoid


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over ``window`` values (fewer at the start); NaN-free input."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


class LossHistory:
    """Rows of (iteration, losses..., total, lr, seconds); see the module docstring."""

    def __init__(self, loss_names: Sequence[str]):
        self.loss_names = list(loss_names)
        self.columns = ["iteration", *self.loss_names, "total", "lr", "seconds"]
        self.rows: list[list[float]] = []

    @property
    def seconds(self) -> float:
        """The seconds column of the last row (0 when empty)."""
        return float(self.rows[-1][-1]) if self.rows else 0.0

    def add(self, iteration: int, losses: dict[str, float], lr: float, seconds: float) -> None:
        values = [float(losses[n]) for n in self.loss_names]
        self.rows.append([int(iteration), *values, sum(values), float(lr), float(seconds)])

    def load(self, path: str | Path, up_to: int) -> int:
        """Keep the rows of an earlier ``loss.csv`` up to iteration ``up_to`` (a resume: the
        later ones are redone); return how many.  A missing file keeps none; a file of other
        columns raises ValueError naming it."""
        path = Path(path)
        if not path.is_file():
            return 0
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != self.columns:
                raise ValueError(f"{path}: its columns {header} are not this net's "
                                 f"{self.columns}; move it away to start a new history")
            rows = []
            for line, row in enumerate(reader, 2):
                try:
                    values = [int(row[0]), *(float(v) for v in row[1:])]
                except (ValueError, IndexError):
                    raise ValueError(f"{path}, line {line}: not a row of numbers: {row}") from None
                if len(values) != len(self.columns):
                    raise ValueError(f"{path}, line {line}: {len(values)} values, expected "
                                     f"{len(self.columns)}")
                if values[0] <= up_to:
                    rows.append(values)
        self.rows = rows
        return len(rows)

    def csv_bytes(self) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([row[0], *(repr(float(v)) for v in row[1:])])
        return buf.getvalue().encode()

    def write(self, csv_path: str | Path, png_path: str | Path | None = None) -> list[Path]:
        """Write the CSV and (when matplotlib imports and there are rows) the plot,
        atomically; return what was written."""
        written = [write_atomic(csv_path, self.csv_bytes())]
        if png_path is not None and self.rows:
            png = self.plot(png_path)
            if png is not None:
                written.append(png)
        return written

    def plot(self, path: str | Path) -> Path | None:
        """``loss.png``: each loss and the total, smoothed over a trailing window (the raw
        total faint behind), and the learning rate below; None without matplotlib."""
        try:
            from matplotlib.figure import Figure  # no pyplot: saved by the Agg canvas
        except ImportError:
            return None
        its = [r[0] for r in self.rows]
        window = max(1, min(100, len(its) // 20))
        fig = Figure(figsize=(8, 6), dpi=100)
        ax, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        total = [r[len(self.loss_names) + 1] for r in self.rows]
        ax.plot(its, total, color="0.8", linewidth=0.8, label="total (raw)")
        ax.plot(its, smooth(total, window), color="black", linewidth=1.5, label="total")
        for i, name in enumerate(self.loss_names, 1):
            ax.plot(its, smooth([r[i] for r in self.rows], window), linewidth=1.0, label=name)
        ax.set_ylabel(f"loss (mean of {window})" if window > 1 else "loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper right")
        ax_lr.plot(its, [r[-2] for r in self.rows], color="tab:red", linewidth=1.0)
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("iteration")
        ax_lr.grid(True, alpha=0.3)
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        fig.tight_layout()
        return write_atomic(path, lambda f: fig.savefig(f, format="png"))
