"""Greedy non-maximum suppression with py-faster-rcnn's conventions, on three backends.

``nms`` is the one entry point: it checks its input, sorts by score and hands the boxes
to the CUDA kernel (where it was built and a GPU is present), else to the Cython CPU
kernel, else to the numpy reference.  All backends compute the same IoU with the same
floating-point operations in the dtype of ``dets``, so they return identical lists.

Which device: ``nms_device(cfg.USE_GPU_NMS, cfg.GPU_ID)`` turns the cfg into the
``device_id`` to pass.  'auto' (the default) and ``device_id=None`` take the GPU where it is
usable, else the CPU, silently; ``True`` / an int >= 0 ask for the GPU and, without one,
print one line to stderr once per process and use the CPU; ``False`` / a negative int: the CPU.

Conventions (py-faster-rcnn):
  * ``dets`` is (N, 5) float32 or float64: x1 y1 x2 y2 score, inclusive pixel corners,
    so width = x2 - x1 + 1 and area = (x2 - x1 + 1) * (y2 - y1 + 1).
  * IoU = inter / (area_a + area_b - inter), inter widths max(0, min(x2) - max(x1) + 1).
  * Boxes are visited in descending score, ties by lower index (a stable sort on
    -score); a box is dropped when its IoU with an already kept box is > thresh.
  * The result is the kept indices into ``dets`` (int64), in visiting order.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable

import numpy as np

__all__ = [
    "available_backends",
    "gpu_device_count",
    "nms",
    "nms_device",
    "nms_cpu",
    "nms_gpu",
    "nms_reference",
]


try:  # the Cython CPU kernel; always built by ``pip install -e .``
    from frcnn._native import cpu_nms as _cpu_nms
except ImportError as _e:  # running from a checkout that was never built
    _cpu_nms = None
    _CPU_IMPORT_ERROR = str(_e)
else:
    _CPU_IMPORT_ERROR = ""

try:  # the CUDA kernel; optional
    from frcnn._native import gpu_nms as _gpu_nms
except ImportError as _e:
    _gpu_nms = None
    _GPU_IMPORT_ERROR = str(_e)
else:
    _GPU_IMPORT_ERROR = ""

_lock = threading.Lock()
_MAX_TIE_FIXES = 64  # tied neighbours fixed one run at a time; more: a stable sort
_device_count: int | None = None
_warned: set[str] = set()


# ----------------------------------------------------------------------------- checks

def _check_dets(dets: Any) -> np.ndarray:
    """dets as a C-contiguous (N, 5) float32/float64 array of finite values."""
    arr = np.asarray(dets)
    if arr.dtype not in (np.float32, np.float64):
        raise ValueError(f"dets must be float32 or float64, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"dets must have shape (N, 5) (x1, y1, x2, y2, score), got {arr.shape}")
    if arr.size and not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise ValueError(
            f"dets contains NaN or infinite values in {bad.size} row(s), first rows "
            f"{bad[:5].tolist()}; boxes and scores must be finite")
    return np.ascontiguousarray(arr)


def _check_thresh(thresh: Any) -> float:
    try:
        value = float(thresh)
    except (TypeError, ValueError):
        raise ValueError(f"thresh must be a number in [0, 1], got {thresh!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"thresh must be in [0, 1], got {thresh!r}")
    return value


def _check_max_keep(max_keep: Any) -> int:
    """-1 for no limit, else a non-negative int."""
    if max_keep is None:
        return -1
    if isinstance(max_keep, (bool, np.bool_)) or not isinstance(max_keep, (int, np.integer)):
        raise ValueError(f"max_keep must be None or a non-negative int, got {max_keep!r}")
    if max_keep < 0:
        raise ValueError(f"max_keep must be None or a non-negative int, got {max_keep}")
    return int(max_keep)


def _visit_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties by lower index (a stable sort on -score).

    numpy's default sort is several times faster than its stable one on random floats
    and differs from it only inside runs of tied scores; a few such runs (common in
    float32) are put in index order one by one, many mean a stable sort.
    """
    neg = -scores
    order = np.argsort(neg)
    ranked = neg[order]
    tied = np.flatnonzero(ranked[1:] == ranked[:-1])  # ranked[i] == ranked[i + 1]
    if tied.size == 0:
        return order
    if tied.size > _MAX_TIE_FIXES:
        return np.argsort(neg, kind="stable")
    breaks = np.flatnonzero(np.diff(tied) != 1)
    starts = np.concatenate(([tied[0]], tied[breaks + 1]))
    stops = np.concatenate((tied[breaks], [tied[-1]])) + 2
    for start, stop in zip(starts.tolist(), stops.tolist()):
        order[start:stop].sort()
    return order


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


# ----------------------------------------------------------------------------- backends

def gpu_device_count() -> int:
    """Number of CUDA devices usable by the GPU kernel (0 when it was not built)."""
    global _device_count
    if _gpu_nms is None:
        return 0
    with _lock:
        if _device_count is None:
            try:
                _device_count = int(_gpu_nms.device_count())
            except Exception:  # a broken driver must not break the CPU path
                _device_count = 0
        return _device_count


def available_backends() -> tuple[str, ...]:
    """Backends usable in this process, fastest first: a subset of ('gpu', 'cpu', 'numpy').

    'gpu' needs the CUDA extension built and a device present; 'cpu' needs the Cython
    extension built; 'numpy' (the reference) is always there.
    """
    names = []
    if gpu_device_count() > 0:
        names.append("gpu")
    if _cpu_nms is not None:
        names.append("cpu")
    names.append("numpy")
    return tuple(names)


def nms_device(use_gpu_nms: Any = "auto", gpu_id: int = 0) -> int:
    """The ``device_id`` for ``nms`` from cfg.USE_GPU_NMS and cfg.GPU_ID.

    'auto': ``gpu_id`` where the CUDA kernel is built and that device is present, else -1
    (the CPU), without a message.  True: ``gpu_id`` (the user asked for the GPU; ``nms``
    says once per process when it is not usable and runs on the CPU).  False: -1.
    """
    if isinstance(use_gpu_nms, str) and use_gpu_nms.strip().lower() == "auto":
        gpu = int(gpu_id)
        return gpu if gpu >= 0 and _gpu_unavailable_reason(gpu) is None else -1
    if isinstance(use_gpu_nms, (bool, np.bool_)):
        return int(gpu_id) if use_gpu_nms else -1
    raise ValueError(f"USE_GPU_NMS must be True, False or 'auto', got {use_gpu_nms!r}")


def _warn_once(key: str, message: str) -> None:
    """``message`` on stderr, once per process per key (one line, no source line)."""
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    print(message, file=sys.stderr, flush=True)


def _gpu_unavailable_reason(device_id: int) -> str | None:
    if _gpu_nms is None:
        return f"the CUDA extension is not built ({_GPU_IMPORT_ERROR})"
    count = gpu_device_count()
    if count == 0:
        return "no CUDA device is present"
    if device_id >= count:
        return f"CUDA device {device_id} does not exist ({count} present)"
    return None


def _cpu_or_numpy() -> Callable[[np.ndarray, float, int], np.ndarray]:
    if _cpu_nms is not None:
        return _cpu_nms.nms_sorted
    _warn_once("cpu", "frcnn.nms: the Cython NMS extension is not built "
                      f"({_CPU_IMPORT_ERROR}); using the numpy reference (slow). "
                      "Run `pip install -e .` to build it.")
    return _reference_sorted


def _choose_backend(device_id: int | None) -> Callable[[np.ndarray, float, int], np.ndarray]:
    """The sorted-box kernel to run: the GPU where asked for (or automatic) and usable."""
    if device_id is not None and device_id < 0:
        return _cpu_or_numpy()
    gpu = 0 if device_id is None else int(device_id)
    reason = _gpu_unavailable_reason(gpu)
    if reason is None:
        return lambda boxes, thresh, max_keep: _gpu_nms.nms_sorted(boxes, thresh, max_keep, gpu)
    if device_id is not None:  # asked for explicitly (USE_GPU_NMS True): say so, once
        _warn_once("gpu", f"frcnn.nms: USE_GPU_NMS is True (GPU {gpu}) but {reason}; "
                          f"using the CPU")
    return _cpu_or_numpy()


def _reference_sorted(boxes: np.ndarray, thresh: float, max_keep: int) -> np.ndarray:
    """numpy greedy NMS over boxes already in visiting order; kept positions."""
    n = boxes.shape[0]
    limit = n if max_keep < 0 else min(max_keep, n)
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, k]) for k in range(4))
    t = boxes.dtype.type(thresh)
    keep: list[int] = []
    rest = np.arange(n)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        areas = (x2 - x1 + 1) * (y2 - y1 + 1)
        while rest.size and len(keep) < limit:
            i = rest[0]
            keep.append(int(i))
            rest = rest[1:]
            w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
            h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
            inter = w * h
            iou = inter / (areas[i] + areas[rest] - inter)
            rest = rest[~(iou > t)]
    return np.asarray(keep, dtype=np.int64)


def _run(dets: Any, thresh: Any, max_keep: Any,
         kernel: Callable[[np.ndarray, float, int], np.ndarray] | None,
         device_id: int | None = None) -> np.ndarray:
    arr = _check_dets(dets)
    t = _check_thresh(thresh)
    limit = _check_max_keep(max_keep)
    if arr.shape[0] == 0 or limit == 0:
        return _empty()
    if kernel is None:
        kernel = _choose_backend(device_id)
    order = _visit_order(arr[:, 4])
    boxes = np.take(arr, order, axis=0)
    return order[kernel(boxes, t, limit)]


# ----------------------------------------------------------------------------- public API

def nms(dets: Any, thresh: float, device_id: int | None = None,
        max_keep: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression, following py-faster-rcnn's conventions.

    Args:
      dets: (N, 5) float32 or float64 array of x1, y1, x2, y2, score; corners are
        inclusive pixels (width = x2 - x1 + 1).  All values must be finite.
      thresh: IoU threshold in [0, 1]; a box is suppressed by a kept box when their
        IoU is strictly greater than thresh (compared in the dtype of ``dets``).
      device_id: None picks the GPU (device 0) when the CUDA kernel is built and a
        device is present, else the CPU, silently; an int >= 0 asks for that GPU (when
        it is unusable, one line on stderr per process, then the CPU); a negative int
        forces the CPU.  ``nms_device(cfg.USE_GPU_NMS, cfg.GPU_ID)`` gives it from
        the cfg.
      max_keep: stop after this many boxes are kept (None: no limit).  The result is
        then exactly the first max_keep entries of the unlimited result.

    Returns:
      int64 array of kept indices into ``dets``, by descending score (ties: lower
      index first).  Every backend returns the same array.

    Raises:
      ValueError: dets not (N, 5) float32/float64, containing NaN/inf, thresh outside
        [0, 1], or max_keep negative.
      RuntimeError: the CUDA call failed on the chosen device.
    """
    return _run(dets, thresh, max_keep, None, device_id)


def nms_cpu(dets: Any, thresh: float, max_keep: int | None = None) -> np.ndarray:
    """``nms`` on the Cython CPU kernel (py-faster-rcnn conventions; see ``nms``).

    dets (N, 5) float32/float64 -> int64 kept indices.  Raises RuntimeError when the
    extension was not built.
    """
    if _cpu_nms is None:
        raise RuntimeError(f"the Cython NMS extension is not built ({_CPU_IMPORT_ERROR})")
    return _run(dets, thresh, max_keep, _cpu_nms.nms_sorted)


def nms_gpu(dets: Any, thresh: float, device_id: int = 0,
            max_keep: int | None = None) -> np.ndarray:
    """``nms`` on the CUDA kernel, without fallback (py-faster-rcnn conventions).

    dets (N, 5) float32/float64 -> int64 kept indices.  Raises RuntimeError when the
    extension was not built or the device is missing.
    """
    device_id = int(device_id)
    reason = _gpu_unavailable_reason(device_id) if device_id >= 0 else "device_id < 0"
    if reason is not None:
        raise RuntimeError(f"GPU NMS unavailable: {reason}")
    return _run(dets, thresh, max_keep,
                lambda boxes, t, k: _gpu_nms.nms_sorted(boxes, t, k, device_id))


def nms_reference(dets: Any, thresh: float, max_keep: int | None = None) -> np.ndarray:
    """Plain numpy greedy NMS: the reference the kernels are tested against.

    Same conventions, checks and result as ``nms`` (py-faster-rcnn conventions):
    dets (N, 5) float32/float64 -> int64 kept indices by descending score.  O(N * kept)
    numpy work: fine for tests, slow for large N.
    """
    return _run(dets, thresh, max_keep, _reference_sorted)
