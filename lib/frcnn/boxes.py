"""Box overlaps and box regression transforms, following py-faster-rcnn's conventions.

Boxes are (N, 4) x1 y1 x2 y2 in inclusive pixel coordinates: width = x2 - x1 + 1,
height = y2 - y1 + 1, area = width * height, centre x = x1 + 0.5 * width.
Regression deltas are (dx, dy, dw, dh) per box, K classes side by side as (N, 4K).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

try:
    from frcnn._native import bbox as _bbox
except ImportError:  # a checkout that was never built: numpy serves
    _bbox = None

__all__ = [
    "BBOX_XFORM_CLIP",
    "bbox_overlaps",
    "bbox_overlaps_reference",
    "bbox_transform",
    "bbox_transform_inv",
    "clip_boxes",
]

#: Largest dw / dh applied by bbox_transform_inv: a box grows at most 1000/16 times.
BBOX_XFORM_CLIP = math.log(1000.0 / 16.0)


# ----------------------------------------------------------------------------- checks

def _as_float_array(x: Any, name: str, float_dtypes: tuple = (np.float32, np.float64),
                    allow_int: bool = True) -> np.ndarray:
    """x as an ndarray of a float dtype (ints cast to float64); finite values only."""
    arr = np.asarray(x)
    if arr.dtype.kind in "iu" and allow_int:
        arr = arr.astype(np.float64)
    elif arr.dtype not in float_dtypes:
        allowed = "/".join(np.dtype(d).name for d in float_dtypes)
        kinds = f"{allowed} (or integer)" if allow_int else allowed
        raise ValueError(f"{name} must be {kinds}, got dtype {arr.dtype}")
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_columns(arr: np.ndarray, name: str, multiple_of_4: bool = False) -> None:
    if arr.ndim != 2 or (arr.shape[1] != 4 if not multiple_of_4
                         else (arr.shape[1] == 0 or arr.shape[1] % 4)):
        want = "(N, 4K) with K >= 1" if multiple_of_4 else "(N, 4)"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")


def _check_boxes(x: Any, name: str, multiple_of_4: bool = False) -> np.ndarray:
    arr = _as_float_array(x, name)
    _check_columns(arr, name, multiple_of_4)
    return arr


def _widths_heights(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return boxes[:, 2] - boxes[:, 0] + 1.0, boxes[:, 3] - boxes[:, 1] + 1.0


# ----------------------------------------------------------------------------- overlaps

def bbox_overlaps(boxes: Any, query_boxes: Any) -> np.ndarray:
    """IoU of every box with every query box, following py-faster-rcnn's conventions.

    Args:
      boxes: (N, 4) x1 y1 x2 y2, inclusive corners; any float or integer dtype.
      query_boxes: (K, 4), same layout.
    Returns:
      (N, K) float64: inter / (area_a + area_b - inter), with inter widths
      min(x2) - max(x1) + 1 and heights alike; 0 where they do not overlap.  N or K
      may be 0.  Computed in float64 by the Cython kernel (numpy when not built).
    Raises:
      ValueError: wrong shape or dtype, or NaN/inf values (naming the argument).
    """
    a = np.ascontiguousarray(_check_boxes(boxes, "boxes"), dtype=np.float64)
    b = np.ascontiguousarray(_check_boxes(query_boxes, "query_boxes"), dtype=np.float64)
    if _bbox is None:
        return bbox_overlaps_reference(a, b)
    return _bbox.bbox_overlaps(a, b)


def bbox_overlaps_reference(boxes: Any, query_boxes: Any) -> np.ndarray:
    """Vectorised numpy bbox_overlaps (py-faster-rcnn conventions): the test reference.

    (N, 4), (K, 4) -> (N, K) float64, the same operations in the same order as the
    Cython kernel, so the results are identical.
    """
    a = _check_boxes(boxes, "boxes").astype(np.float64, copy=False)
    b = _check_boxes(query_boxes, "query_boxes").astype(np.float64, copy=False)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.maximum(0.0, iw) * np.maximum(0.0, ih)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iou = inter / (area_a[:, None] + area_b[None, :] - inter)
    # 0 where the boxes do not overlap (iou is then 0, -0 or NaN); else iou > 0.
    return np.where(iou > 0, iou, 0.0)


# ----------------------------------------------------------------------------- transforms

def bbox_transform(ex_rois: Any, gt_rois: Any) -> np.ndarray:
    """Regression targets taking ex_rois onto gt_rois (py-faster-rcnn conventions).

    Args:
      ex_rois: (N, 4) source boxes x1 y1 x2 y2 (inclusive), width and height > 0.
      gt_rois: (N, 4) target boxes, width and height > 0.
    Returns:
      (N, 4) dx, dy, dw, dh with w = x2 - x1 + 1, ctr = x1 + 0.5 * w:
      dx = (gt_ctr_x - ex_ctr_x) / ex_w, dy likewise, dw = log(gt_w / ex_w), dh
      likewise.  float32 when both inputs are float32, else float64.
    Raises:
      ValueError: shapes differ or are not (N, 4), non-finite values, or a box with
        width or height <= 0 (naming the argument).
    """
    ex = _check_boxes(ex_rois, "ex_rois")
    gt = _check_boxes(gt_rois, "gt_rois")
    if ex.shape[0] != gt.shape[0]:
        raise ValueError(f"ex_rois and gt_rois must have the same length, "
                         f"got {ex.shape[0]} and {gt.shape[0]}")
    dtype = np.result_type(ex.dtype, gt.dtype)
    ex = ex.astype(dtype, copy=False)
    gt = gt.astype(dtype, copy=False)
    ex_w, ex_h = _widths_heights(ex)
    gt_w, gt_h = _widths_heights(gt)
    for name, w, h in (("ex_rois", ex_w, ex_h), ("gt_rois", gt_w, gt_h)):
        bad = np.flatnonzero((w <= 0) | (h <= 0))
        if bad.size:
            raise ValueError(f"{name} has {bad.size} box(es) with width or height <= 0 "
                             f"(x2 - x1 + 1 <= 0), first rows {bad[:5].tolist()}")
    ex_cx = ex[:, 0] + 0.5 * ex_w
    ex_cy = ex[:, 1] + 0.5 * ex_h
    gt_cx = gt[:, 0] + 0.5 * gt_w
    gt_cy = gt[:, 1] + 0.5 * gt_h
    targets = np.empty((ex.shape[0], 4), dtype=dtype)
    targets[:, 0] = (gt_cx - ex_cx) / ex_w
    targets[:, 1] = (gt_cy - ex_cy) / ex_h
    targets[:, 2] = np.log(gt_w / ex_w)
    targets[:, 3] = np.log(gt_h / ex_h)
    return targets


def bbox_transform_inv(boxes: Any, deltas: Any, exact_inverse: bool = False) -> np.ndarray:
    """Apply (N, 4K) regression deltas to (N, 4) boxes: py-faster-rcnn's decode.

    Args:
      boxes: (N, 4) x1 y1 x2 y2 (inclusive); cast to the dtype of deltas.
      deltas: (N, 4K) float32 or float64, (dx, dy, dw, dh) for each of K classes.
      exact_inverse: False (the default) decodes exactly as py-faster-rcnn's
        bbox_transform_inv; True subtracts 1 from x2 and y2, so that
        bbox_transform_inv(a, bbox_transform(a, b), exact_inverse=True) == b.
    Returns:
      (N, 4K) predicted boxes in deltas' dtype, per class:
      w = x2 - x1 + 1, ctr = x1 + 0.5 * w, pred_ctr = dx * w + ctr,
      pred_w = exp(min(dw, BBOX_XFORM_CLIP)) * w, x1 = pred_ctr - 0.5 * pred_w,
      x2 = pred_ctr + 0.5 * pred_w, y alike (py-faster-rcnn's formula, also that of the
      Faster R-CNN Proposal layers of OpenCV, ncnn, TensorRT and OpenVINO).
      In the inclusive convention that is one pixel wider and taller than the exact
      inverse: a zero delta turns [0, 0, 9, 9] into [0, 0, 10, 10], and
      bbox_transform_inv(a, bbox_transform(a, b)) == b + [0, 0, 1, 1].
      dw and dh are clamped at log(1000 / 16) so a wild prediction cannot overflow.
    Raises:
      ValueError: wrong shapes or dtypes, row counts that differ, or NaN/inf values.
    """
    d = _as_float_array(deltas, "deltas", allow_int=False)
    _check_columns(d, "deltas", multiple_of_4=True)
    b = _check_boxes(boxes, "boxes")
    if b.shape[0] != d.shape[0]:
        raise ValueError(f"boxes and deltas must have the same number of rows, "
                         f"got {b.shape[0]} and {d.shape[0]}")
    if b.shape[0] == 0:
        return np.zeros((0, d.shape[1]), dtype=d.dtype)
    b = b.astype(d.dtype, copy=False)
    w, h = _widths_heights(b)
    cx = b[:, 0] + 0.5 * w
    cy = b[:, 1] + 0.5 * h
    clip = d.dtype.type(BBOX_XFORM_CLIP)
    dx, dy = d[:, 0::4], d[:, 1::4]
    dw = np.minimum(d[:, 2::4], clip)
    dh = np.minimum(d[:, 3::4], clip)
    pred_cx = dx * w[:, None] + cx[:, None]
    pred_cy = dy * h[:, None] + cy[:, None]
    pred_w = np.exp(dw) * w[:, None]
    pred_h = np.exp(dh) * h[:, None]
    out = np.empty(d.shape, dtype=d.dtype)
    out[:, 0::4] = pred_cx - 0.5 * pred_w
    out[:, 1::4] = pred_cy - 0.5 * pred_h
    out[:, 2::4] = pred_cx + 0.5 * pred_w
    out[:, 3::4] = pred_cy + 0.5 * pred_h
    if exact_inverse:
        out[:, 2::4] -= 1
        out[:, 3::4] -= 1
    return out


def clip_boxes(boxes: Any, im_shape: Any, copy: bool = True) -> np.ndarray:
    """Clip (N, 4K) boxes to the image (py-faster-rcnn conventions).

    Args:
      boxes: (N, 4K) x1 y1 x2 y2 per class, float32/float64 (or integer).
      im_shape: (height, width[, ...]) of the image, e.g. im_info[:2] or im.shape.
      copy: False clips a float ndarray in place (as py-faster-rcnn does) and returns it.
    Returns:
      (N, 4K) boxes with x in [0, width - 1] and y in [0, height - 1].
    Raises:
      ValueError: boxes not (N, 4K) or with NaN/inf; im_shape without a positive
        height and width.
    """
    b = _check_boxes(boxes, "boxes", multiple_of_4=True)
    try:
        shape = np.asarray(im_shape, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"im_shape must be (height, width[, ...]), got {im_shape!r}") from None
    if shape.size < 2 or not np.isfinite(shape[:2]).all() or (shape[:2] <= 0).any():
        raise ValueError(f"im_shape must start with a positive height and width, got {im_shape!r}")
    height, width = float(shape[0]), float(shape[1])
    out = b.copy() if (copy and b is boxes) else b
    for column, limit in ((0, width - 1), (1, height - 1), (2, width - 1), (3, height - 1)):
        view = out[:, column::4]
        np.minimum(view, limit, out=view)  # min then max, as py-faster-rcnn
        np.maximum(view, 0, out=view)
    return out
