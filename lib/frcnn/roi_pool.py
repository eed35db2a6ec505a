"""Max RoI pooling on numpy arrays, with caffe-fast-rcnn's ROIPooling semantics.

``roi_pool`` runs the compiled channels-last kernel (frcnn._native.roi_pool; its docstring
states the arithmetic); ``roi_pool_reference`` is the plain numpy version it is tested
against.  The onnxruntime backend pools with it between its two graphs because
onnxruntime's MaxRoiPool is several times slower on CPU (see the README's Deploy section).
"""
from __future__ import annotations

import numpy as np


def _check(features: np.ndarray, rois: np.ndarray, pooled_h: int, pooled_w: int,
           spatial_scale: float) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, np.float32)
    r = np.asarray(rois, np.float32).reshape(-1, 5)
    if f.ndim != 4:
        raise ValueError(f"features must be (N, C, H, W), got {f.shape}")
    if pooled_h < 1 or pooled_w < 1 or not spatial_scale > 0:
        raise ValueError(f"pooled size {pooled_h}x{pooled_w} and spatial_scale "
                         f"{spatial_scale} must be positive")
    if len(r) and (not np.isfinite(r).all() or r[:, 0].min() < 0
                   or r[:, 0].max() >= f.shape[0] or np.any(r[:, 0] != np.round(r[:, 0]))):
        raise ValueError(f"rois must be finite with batch indices in 0..{f.shape[0] - 1}")
    return f, r


def roi_pool(features: np.ndarray, rois: np.ndarray, pooled_h: int, pooled_w: int,
             spatial_scale: float) -> np.ndarray:
    """(R, C, pooled_h, pooled_w) float32 from features (N, C, H, W) and rois (R, 5)
    [batch index, x1, y1, x2, y2] in input pixels."""
    from frcnn._native.roi_pool import roi_pool_hwc

    f, r = _check(features, rois, pooled_h, pooled_w, spatial_scale)
    hwc = np.ascontiguousarray(f.transpose(0, 2, 3, 1))
    out = roi_pool_hwc(hwc, np.ascontiguousarray(r), int(pooled_h), int(pooled_w),
                       float(spatial_scale))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def roi_pool_reference(features: np.ndarray, rois: np.ndarray, pooled_h: int, pooled_w: int,
                       spatial_scale: float) -> np.ndarray:
    """The same in plain numpy (slow; for tests)."""
    f, r = _check(features, rois, pooled_h, pooled_w, spatial_scale)
    _, c, height, width = f.shape
    out = np.zeros((len(r), c, pooled_h, pooled_w), np.float32)
    scale = np.float32(spatial_scale)
    for i, roi in enumerate(r):
        b = int(roi[0])
        x1, y1, x2, y2 = (int(v) for v in _round_half_away(roi[1:] * scale))
        roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        bin_h = np.float32(roi_h) / np.float32(pooled_h)
        bin_w = np.float32(roi_w) / np.float32(pooled_w)
        for ph in range(pooled_h):
            hs = min(max(int(np.floor(np.float32(ph) * bin_h)) + y1, 0), height)
            he = min(max(int(np.ceil(np.float32(ph + 1) * bin_h)) + y1, 0), height)
            for pw in range(pooled_w):
                ws = min(max(int(np.floor(np.float32(pw) * bin_w)) + x1, 0), width)
                we = min(max(int(np.ceil(np.float32(pw + 1) * bin_w)) + x1, 0), width)
                if he > hs and we > ws:
                    out[i, :, ph, pw] = f[b, :, hs:he, ws:we].max(axis=(1, 2))
    return out
