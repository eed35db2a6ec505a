"""What a training snapshot needs besides Caffe's solver state, for exact resumes.

Caffe's ``.solverstate`` holds the iteration, the learning-rate step and the momentum
history; the raw weights sit in the ``.caffemodel`` it names.  Everything else that decides
the next iterations lives in Python and is written beside it, as JSON, by the training
driver (``frcnn.train.Trainer``)::

    state/<prefix>_iter_<N>.caffemodel          raw weights (Caffe's)
    state/<prefix>_iter_<N>.solverstate         Caffe's solver state, naming the weights
    state/<prefix>_iter_<N>.frcnn-state.json    this module's: the train state

The train state (``format`` 1)::

    {"format": 1, "iteration": N, "seed": S,
     "layers": {layer name: {"type": class name, "state": the layer's get_train_state()}},
     "numpy_global": numpy's legacy global RandomState, "python_random": random.getstate()}

A layer takes part by defining ``get_train_state() -> dict`` (JSON-able) and
``set_train_state(dict)``: RoIDataLayer (its place in the epoch's permutation and its numpy
Generator, which also draws the scales and, in Fast R-CNN mode, samples the RoIs),
AnchorTargetLayer and ProposalTargetLayer (their sampling Generators).  OHEM selection and
flips (flipped entries are in the roidb) draw nothing.  Caffe's own generator (Dropout) is
not readable from Python; the driver reseeds it before every iteration from the run's seed and
the iteration (``iteration_seed``), in every run, so it needs no saving.

The three files are written in that order, each atomically, so the train state is the mark of
a complete snapshot: ``latest_complete_snapshot`` skips a solver state without one (a run
killed while snapshotting).  Numpy bit-generator states are JSON (Python ints are exact);
arrays are written as ``{"__ndarray__": list, "dtype": name}``.  Nothing is unpickled.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frcnn.fileio import write_atomic

STATE_SUFFIX = ".frcnn-state.json"
FORMAT = 1


# ------------------------------------------------------------------ JSON of RNG states
def to_jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars (at any depth) made JSON-able, losslessly."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def from_jsonable(value: Any) -> Any:
    """The inverse of ``to_jsonable`` (tuples come back as lists)."""
    if isinstance(value, dict):
        if set(value) == {"__ndarray__", "dtype"}:
            return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


def rng_state(rng: np.random.Generator) -> dict:
    """A Generator's bit-generator state, JSON-able (``set_rng_state`` reads it back)."""
    return to_jsonable(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    """Put ``rng`` (a Generator) back into a state ``rng_state`` returned.  ValueError when
    the state is of another bit generator."""
    state = from_jsonable(state)
    want = type(rng.bit_generator).__name__
    if not isinstance(state, dict) or state.get("bit_generator") != want:
        got = state.get("bit_generator") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"a random generator state of {got}, but the generator is {want}")
    rng.bit_generator.state = state


def global_rng_states() -> dict:
    """numpy's global RandomState and Python's ``random``, JSON-able (a user's layer may
    draw from them, as py-faster-rcnn's own layers do)."""
    return {"numpy_global": to_jsonable(np.random.get_state()),
            "python_random": to_jsonable(random.getstate())}


def set_global_rng_states(state: dict) -> None:
    """Restore what ``global_rng_states`` returned (keys that are missing are left alone)."""
    if "numpy_global" in state:
        name, keys, pos, has_gauss, cached = from_jsonable(state["numpy_global"])
        np.random.set_state((name, np.asarray(keys, np.uint32), int(pos), int(has_gauss),
                             float(cached)))
    if "python_random" in state:
        version, internal, gauss = state["python_random"]
        random.setstate((version, tuple(internal), gauss))


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed of Caffe's generator for the iteration after ``iteration`` iterations:
    a 32-bit value mixed from the run's seed and the iteration (numpy's SeedSequence), so
    every iteration's Dropout masks follow from (seed, iteration) alone."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(iteration)])
               .generate_state(1)[0])


# ------------------------------------------------------------------ files
@dataclass(frozen=True)
class Snapshot:
    """One snapshot's files in a run's state folder."""
    iteration: int
    solverstate: Path
    train_state: Path            # may not exist (an incomplete snapshot, or plain Caffe's)

    @property
    def complete(self) -> bool:
        return self.solverstate.is_file() and self.train_state.is_file()


def train_state_path(solverstate: str | Path) -> Path:
    """``X_iter_N.solverstate`` -> ``X_iter_N.frcnn-state.json`` (beside it)."""
    path = Path(solverstate)
    stem = path.name[:-len(".solverstate")] if path.name.endswith(".solverstate") else path.name
    return path.with_name(stem + STATE_SUFFIX)


_ITER = re.compile(r"^(?P<prefix>.*)_iter_(?P<iter>\d+)\.solverstate$")


def find_snapshots(state_dir: str | Path, prefix: str | None = None) -> list[Snapshot]:
    """The solver states in ``state_dir`` (of ``prefix`` when given), oldest first."""
    folder = Path(state_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        m = _ITER.match(path.name)
        if m and (prefix is None or m["prefix"] == prefix) and path.is_file():
            found.append(Snapshot(int(m["iter"]), path, train_state_path(path)))
    return sorted(found, key=lambda s: (s.iteration, s.solverstate.name))


def latest_complete_snapshot(state_dir: str | Path, prefix: str | None = None
                             ) -> Snapshot | None:
    """The latest snapshot with both its solver state and its train state, or None."""
    complete = [s for s in find_snapshots(state_dir, prefix) if s.complete]
    return complete[-1] if complete else None


def write_train_state(path: str | Path, state: dict) -> Path:
    """Write a train state (see the module docstring) atomically."""
    body = {"format": FORMAT, **state}
    return write_atomic(path, (json.dumps(to_jsonable(body)) + "\n").encode())


def read_train_state(path: str | Path) -> dict:
    """Read a train state; ValueError naming the file when it is not one."""
    path = Path(path)
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"{path}: not a train state (JSON): {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a train state of format {FORMAT} (got "
                         f"{state.get('format') if isinstance(state, dict) else state!r})")
    for key, kind in (("iteration", int), ("layers", dict)):
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise ValueError(f"{path}: train state without a valid '{key}'")
    return state
