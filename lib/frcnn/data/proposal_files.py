"""Files of precomputed proposals, per image of a dataset (for Fast R-CNN training and tests).

Two forms, chosen by the file's extension:

``.pkl`` / ``.pickle``: py-faster-rcnn's (what its ``tools/rpn_generate.py`` writes): a
    pickled list with one float array (P, 4) = x1 y1 x2 y2 per image, in dataset order
    (original-image pixels, 0-based inclusive).  A fifth column (a score) is accepted and
    dropped.  Python 2 pickles load.  Only numpy arrays, lists, tuples and dicts are
    unpickled (a restricted unpickler): a pickle naming any other Python object is refused
    rather than run.  A dict {image id: array} is accepted too.
``.json``: the plain form, matched by image id (so its order does not matter)::

    {"format": "frcnn-proposals", "version": 1, "dataset": "voc_2007_trainval",
     "images": [{"id": "000005", "boxes": [[x1, y1, x2, y2], ...],
                 "scores": [0.99, ...]}, ...]}

    ("scores" is optional.)

``load_proposals`` checks the file against the dataset: one set per image (by count for a
list, by id otherwise), finite numbers; boxes are clipped to their image and those left
with x2 < x1 or y2 < y1 are dropped, with a one-line report.  Errors name the file and the
image.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from frcnn.data.problems import path_is
from frcnn.fileio import write_atomic

FORMAT = "frcnn-proposals"
PICKLE_SUFFIXES = (".pkl", ".pickle")


class ProposalFileError(ValueError):
    """A proposals file that cannot be used with the dataset."""


# What a pickle of numpy arrays names (numpy 1 and numpy 2 module names).  None of it is
# numpy's own code: each builds a stand-in (below), checked, and the arrays are made from
# the stand-ins' bytes after loading, so the file's values never reach numpy's unpickling
# (which trusts them: an object array whose state lies about its shape crashes it).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "object"), ("__builtin__", "object"),
    # protocol 2 pickles of Python 3 write bytes through these
    ("_codecs", "encode"), ("builtins", "bytes"), ("__builtin__", "bytes"),
}

#: array kinds a proposals pickle may hold: bool, ints, floats
_KINDS = "biuf"


def _refuse(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"refusing to unpickle {what}: a proposals file holds only "
                                  f"numpy arrays of numbers")


def _bad(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"malformed numpy data: {what}")


class _Dtype:
    """``numpy.dtype(spec, align, copy)`` of a pickle: a plain number type only."""

    def __init__(self, spec: Any = None, align: Any = False, copy: Any = True):
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str) or len(spec) > 8:
            raise _refuse(f"numpy.dtype({spec!r})")
        try:
            self.dtype = np.dtype(spec)
        except TypeError:
            raise _bad(f"dtype {spec!r}") from None
        if self.dtype.kind not in _KINDS or self.dtype.fields or self.dtype.subdtype:
            raise _refuse(f"numpy.dtype({spec!r})")

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|",
                                                                              "="):
            raise _bad(f"dtype state {state!r:.80}")
        if state[1] in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])


def _array(raw: Any, dtype: Any, shape: Any, order: str = "C") -> np.ndarray:
    """An array of ``shape`` from the bytes of a pickle, sizes checked first."""
    if isinstance(raw, str):  # Python 2's str, read as latin1
        try:
            raw = raw.encode("latin1")
        except UnicodeEncodeError:
            raise _bad("array data is text") from None
    if isinstance(raw, pickle.PickleBuffer):
        raw = raw.raw()
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise _refuse(f"array data of type {type(raw).__name__}")
    if not isinstance(dtype, _Dtype) or not hasattr(dtype, "dtype"):
        raise _bad(f"dtype {dtype!r:.80}")
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and not isinstance(d, bool)
                                             and d >= 0 for d in shape)):
        raise _bad(f"shape {shape!r:.80}")
    if math.prod(shape) * dtype.dtype.itemsize != len(raw):
        raise _bad(f"{len(raw)} bytes for an array of shape {shape} of {dtype.dtype}")
    return np.frombuffer(bytes(raw), dtype.dtype).reshape(shape, order=order).copy()


class _ArrayStub:
    """What ``_reconstruct(ndarray, (0,), b'b')`` returns; its state makes the array."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5:  # (version, shape, dtype, F, data)
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise _bad(f"array state {state!r:.80}")
        shape, dtype, fortran, raw = state
        self.array = _array(raw, dtype, shape, "F" if fortran else "C")


_NDARRAY = object()  # numpy.ndarray as named by a pickle: only _reconstruct's first argument


def _reconstruct(cls: Any, shape: Any = (0,), typecode: Any = b"b") -> _ArrayStub:
    if cls is not _NDARRAY:
        raise _refuse(f"_reconstruct({cls!r:.40})")
    return _ArrayStub()


def _scalar(dtype: Any, raw: Any = b"") -> Any:
    return _array(raw, dtype, ())[()]


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    return _array(buf, dtype, shape, "F" if order == "F" else "C")


def _encode(obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise _refuse(f"_codecs.encode(..., {encoding!r:.20})")
    return obj.encode("latin1")


def _bytes(*args: Any) -> bytes:
    if len(args) > 1 or (args and not isinstance(args[0], (bytes, bytearray))):
        raise _refuse("bytes() of anything but bytes")  # bytes(10 ** 12): gigabytes
    return bytes(*args)


_STAND_INS = {"_reconstruct": _reconstruct, "scalar": _scalar, "_frombuffer": _frombuffer,
              "ndarray": _NDARRAY, "dtype": _Dtype, "object": object, "encode": _encode,
              "bytes": _bytes}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: a proposals "
                                         f"file holds only numpy arrays")
        return _STAND_INS[name]


def _arrays(value: Any, depth: int = 0) -> Any:
    """The loaded value with its array stand-ins replaced by the arrays."""
    if depth > 50:
        raise _bad("nested too deeply")
    if isinstance(value, _ArrayStub):
        if value.array is None:
            raise _bad("an array without its data")
        return value.array
    if isinstance(value, (_Dtype, pickle.PickleBuffer)) or value is _NDARRAY:
        raise _bad(f"a bare {type(value).__name__}")
    if isinstance(value, list):
        return [_arrays(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_arrays(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: _arrays(v, depth + 1) for k, v in value.items()}
    return value


def _read_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        data = f.read()
    errors = []
    for encoding in ("ASCII", "latin1"):  # latin1 reads Python 2's numpy pickles
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return _arrays(_ArrayUnpickler(io.BytesIO(data), encoding=encoding).load())
        except pickle.UnpicklingError as e:
            if "refusing" in str(e):
                raise ProposalFileError(f"{path}: {e}") from None
            errors.append(str(e))
        except (UnicodeDecodeError, EOFError, ValueError, TypeError, AttributeError,
                ImportError, IndexError, KeyError, LookupError, OverflowError, MemoryError,
                RecursionError) as e:
            errors.append(f"{type(e).__name__}: {str(e)[:200]}")
    raise ProposalFileError(f"{path}: not a readable pickle of proposals ({errors[-1]})")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: JSON, UTF-8, 5000 digits
        raise ProposalFileError(f"{path}: not valid JSON ({str(e)[:200]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(
            doc.get("images"), list):
        raise ProposalFileError(f"{path}: expected a JSON object with \"format\": "
                                f"\"{FORMAT}\" and an \"images\" list")
    out: dict[str, Any] = {}
    for i, item in enumerate(doc["images"]):
        if not isinstance(item, dict) or "id" not in item or "boxes" not in item:
            raise ProposalFileError(f"{path}: images[{i}] needs \"id\" and \"boxes\"")
        key = str(item["id"])
        if key in out:
            raise ProposalFileError(f"{path}: image id {key!r} appears twice")
        out[key] = item["boxes"]
    return out


def _as_boxes(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ProposalFileError(f"{where}: boxes are not numbers") from None
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise ProposalFileError(f"{where}: boxes must be (P, 4) x1 y1 x2 y2 (or (P, 5) with "
                                f"a score), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ProposalFileError(f"{where}: box {row} is not finite: {arr[row].tolist()}")
    return arr[:, :4].astype(np.float32)


def _clip(boxes: np.ndarray, width: int | None, height: int | None) -> tuple[np.ndarray, int]:
    if width is not None and height is not None and len(boxes):
        boxes = boxes.copy()
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width - 1)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height - 1)
    ok = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    return boxes[ok], int((~ok).sum())


def load_proposals(path: str | os.PathLike, image_ids: Sequence[str],
                   sizes: Sequence[tuple[int, int]] | None = None,
                   log: Callable[[str], None] | None = print) -> list[np.ndarray]:
    """One float32 (P, 4) array per image id, in the order of ``image_ids``.

    Args:
        path: a .pkl/.pickle or .json file (see the module docstring).
        image_ids: the dataset's image ids in its order.
        sizes: (width, height) per image, to clip the boxes; None leaves them.
    Raises:
        FileNotFoundError, or ProposalFileError naming the file and the image.
    """
    path = Path(path)
    if not path_is(path):
        raise FileNotFoundError(f"proposals file not found: {path}")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        data = _read_pickle(path)
    elif path.suffix.lower() == ".json":
        data = _read_json(path)
    else:
        raise ProposalFileError(f"{path}: unknown proposals format (use .pkl, py-faster-rcnn's "
                                f"pickle, or .json)")
    if isinstance(data, dict) and "boxes" in data and not any(k in data for k in image_ids):
        data = data["boxes"]  # {'boxes': [...], ...} as some forks write it
    if isinstance(data, (list, tuple)):
        if len(data) != len(image_ids):
            raise ProposalFileError(f"{path}: {len(data)} proposal sets but the dataset has "
                                    f"{len(image_ids)} images (a pickle lists every image in "
                                    f"dataset order)")
        raw = list(data)
    elif isinstance(data, dict):
        missing = [i for i in image_ids if str(i) not in data]
        if missing:
            raise ProposalFileError(f"{path}: no proposals for {len(missing)} of the dataset's "
                                    f"{len(image_ids)} images (e.g. {', '.join(missing[:3])})")
        raw = [data[str(i)] for i in image_ids]
    else:
        raise ProposalFileError(f"{path}: expected a list of per-image boxes, got "
                                f"{type(data).__name__}")
    out, dropped = [], 0
    for k, (image_id, value) in enumerate(zip(image_ids, raw)):
        boxes = _as_boxes(value, f"{path}: image {image_id}")
        w, h = sizes[k] if sizes is not None else (None, None)
        boxes, bad = _clip(boxes, w, h)
        dropped += bad
        out.append(boxes)
    if log is not None:
        note = f"; dropped {dropped} empty after clipping" if dropped else ""
        log(f"[proposals] {path.name}: {sum(len(b) for b in out)} boxes for {len(out)} "
            f"images{note}")
    return out


def save_proposals(path: str | os.PathLike, image_ids: Sequence[str],
                   boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray] | None = None,
                   dataset: str = "") -> Path:
    """Write proposals atomically (a temporary file renamed into place).

    ``.pkl``: py-faster-rcnn's list of float32 (P, 4) arrays in the order of ``image_ids``
    (pickle protocol 2, which Python 2 reads); ``.json``: the plain form, with scores when
    given.
    """
    path = Path(path)
    if len(boxes) != len(image_ids) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError("save_proposals: one boxes array (and scores array) per image id")
    arrays = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes]
    if path.suffix.lower() in PICKLE_SUFFIXES:
        payload = pickle.dumps(arrays, protocol=2)
    elif path.suffix.lower() == ".json":
        images = []
        for k, (image_id, b) in enumerate(zip(image_ids, arrays)):
            item: dict[str, Any] = {"id": str(image_id),
                                    "boxes": [[round(float(v), 2) for v in row] for row in b]}
            if scores is not None:
                item["scores"] = [round(float(v), 5) for v in np.asarray(scores[k]).ravel()]
            images.append(item)
        payload = (json.dumps({"format": FORMAT, "version": 1, "dataset": dataset,
                               "images": images}) + "\n").encode()
    else:
        raise ValueError(f"{path}: use a .pkl (py-faster-rcnn's) or .json proposals file")
    return write_atomic(path, payload)
