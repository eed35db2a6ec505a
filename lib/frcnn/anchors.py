"""Reference anchors and their shifts over a feature map, as in py-faster-rcnn.

Anchors are x1 y1 x2 y2 in inclusive pixel coordinates (width = x2 - x1 + 1), centred
on the base box [0, 0, base_size - 1, base_size - 1].  For each aspect ratio
(height / width) the base box is reshaped to that ratio at about the same area, with
widths and heights rounded to whole pixels (numpy's round-half-to-even); each of those
is then scaled by every scale.  The order is ratio-major, scale-minor.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["generate_anchors", "shifted_anchors"]


def _positive_vector(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1) if np.ndim(values) <= 1 else None
    if arr is None:
        raise ValueError(f"{name} must be a number or a 1-D sequence, got shape {np.shape(values)}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.isfinite(arr).all() or (arr <= 0).any():
        raise ValueError(f"{name} must be finite and > 0, got {arr.tolist()}")
    return arr


def _centred(ws: np.ndarray, hs: np.ndarray, x_ctr: np.ndarray, y_ctr: np.ndarray) -> np.ndarray:
    """Boxes of widths ws and heights hs around (x_ctr, y_ctr), as (len, 4)."""
    return np.stack([x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1),
                     x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)], axis=-1)


def _size_and_centre(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Widths, heights and centres of (M, 4) boxes: w = x2 - x1 + 1, ctr = x1 + (w - 1) / 2."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return w, h, boxes[:, 0] + 0.5 * (w - 1), boxes[:, 1] + 0.5 * (h - 1)


def generate_anchors(base_size: float = 16, ratios: Sequence[float] = (0.5, 1, 2),
                     scales: Sequence[float] = (8, 16, 32)) -> np.ndarray:
    """Reference anchors, identical to py-faster-rcnn's generate_anchors.

    Args:
      base_size: side of the base box [0, 0, base_size - 1, base_size - 1] (the
        feature stride), > 0.
      ratios: aspect ratios (height / width), each > 0.  Any number of them.
      scales: multipliers of the ratio boxes' sides, each > 0.  Any number of them.
    Returns:
      (len(ratios) * len(scales), 4) float64 anchors x1 y1 x2 y2 (inclusive),
      ratio-major then scale-minor.  The defaults give py-faster-rcnn's 9 anchors,
      the first being [-84, -40, 99, 55].
    Raises:
      ValueError: a non-positive or non-finite argument, or a ratio so extreme that a
        rounded side becomes 0.
    """
    base = _positive_vector(base_size, "base_size")
    if base.size != 1:
        raise ValueError(f"base_size must be a single number, got {base_size!r}")
    ratios_arr = _positive_vector(ratios, "ratios")
    scales_arr = _positive_vector(scales, "scales")

    base_box = np.array([[0.0, 0.0, base[0] - 1, base[0] - 1]])
    w, h, x_ctr, y_ctr = _size_and_centre(base_box)
    # Same area, given ratio: w' = round(sqrt(w * h / ratio)), h' = round(w' * ratio).
    ws = np.round(np.sqrt((w * h) / ratios_arr))
    hs = np.round(ws * ratios_arr)
    if (ws <= 0).any() or (hs <= 0).any():
        raise ValueError(f"ratios {ratios_arr.tolist()} give a zero-sized anchor at "
                         f"base_size {base[0]}")
    ratio_boxes = _centred(ws, hs, x_ctr, y_ctr)

    # Scale each ratio box about its own centre (recomputed from it, as py-faster-rcnn).
    rw, rh, rx, ry = _size_and_centre(ratio_boxes)
    ws = (rw[:, None] * scales_arr[None, :]).reshape(-1)
    hs = (rh[:, None] * scales_arr[None, :]).reshape(-1)
    n_scales = scales_arr.size
    return _centred(ws, hs, np.repeat(rx, n_scales), np.repeat(ry, n_scales))


def shifted_anchors(anchors: Any, height: int, width: int, feat_stride: float = 16,
                    dtype: Any = np.float64) -> np.ndarray:
    """All anchors over a height x width feature map (py-faster-rcnn's order).

    Args:
      anchors: (A, 4) reference anchors, e.g. from generate_anchors.
      height, width: feature map size H, W (>= 0).
      feat_stride: pixels between neighbouring feature positions (> 0).
      dtype: float dtype of the result.
    Returns:
      (H * W * A, 4) anchors: row h, column w, anchor a is at index
      (h * W + w) * A + a and equals anchors[a] + [w, h, w, h] * feat_stride.
    Raises:
      ValueError: anchors not (A, 4) finite, or a negative size or bad stride.
    """
    arr = np.asarray(anchors)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"anchors must be a numeric (A, 4) array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"anchors must have shape (A, 4), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("anchors contains NaN or infinite values")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    stride = float(feat_stride)
    if not np.isfinite(stride) or stride <= 0:
        raise ValueError(f"feat_stride must be > 0, got {feat_stride!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a float dtype, got {dtype}")

    shift_x = np.arange(width, dtype=np.float64) * stride
    shift_y = np.arange(height, dtype=np.float64) * stride
    shifts = np.empty((int(height), int(width), 4), dtype=np.float64)
    shifts[:, :, 0] = shift_x[None, :]
    shifts[:, :, 1] = shift_y[:, None]
    shifts[:, :, 2] = shift_x[None, :]
    shifts[:, :, 3] = shift_y[:, None]
    out = shifts.reshape(-1, 1, 4) + arr.astype(np.float64, copy=False)[None, :, :]
    return out.reshape(-1, 4).astype(dtype, copy=False)


class AnchorGrid:
    """The anchors of one RPN: A reference anchors (ratios x scales) and, per feature-map size,
    their (H * W * A, 4) shifted copies (computed once per size, then cached).

    What AnchorTargetLayer and ProposalLayer share, so both enumerate anchors identically.
    """

    def __init__(self, ratios: Sequence[float], scales: Sequence[float], feat_stride: float = 16):
        self.base = generate_anchors(ratios=ratios, scales=scales)
        self.feat_stride = feat_stride
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    @property
    def num_anchors(self) -> int:
        """A."""
        return len(self.base)

    def anchors(self, height: int, width: int) -> np.ndarray:
        """(height * width * A, 4) anchors of a height x width map, in anchor order."""
        key = (int(height), int(width))
        if key not in self._cache:
            self._cache[key] = shifted_anchors(self.base, key[0], key[1], self.feat_stride)
        return self._cache[key]
