# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Max RoI pooling, caffe-fast-rcnn's ROIPooling forward (this project's Caffe layer).

Per roi [batch, x1, y1, x2, y2] (input-image pixels), in float32 as the Caffe layer:

    start = round(x1 * scale), end = round(x2 * scale)  (half away from zero; y likewise)
    roi_w = max(end_w - start_w + 1, 1), bin_w = roi_w / pooled_w
    bin (ph, pw): rows [floor(ph * bin_h), ceil((ph + 1) * bin_h)) + start_h, clipped to
    [0, H], columns likewise; the maximum over it, 0 for an empty bin.

The features are scanned channels-last, the channel loop innermost (vectorised).  Input
checks live in ``frcnn.roi_pool.roi_pool``.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport ceilf, floorf, roundf

cnp.import_array()


cdef inline int _clip(int v, int hi) noexcept nogil:
    return 0 if v < 0 else (hi if v > hi else v)


def roi_pool_hwc(const float[:, :, :, ::1] features, const float[:, ::1] rois,
                 int pooled_h, int pooled_w, float spatial_scale):
    """features (N, H, W, C) channels-last, rois (R, 5) -> (R, pooled_h, pooled_w, C)."""
    cdef Py_ssize_t n_img = features.shape[0], height = features.shape[1]
    cdef Py_ssize_t width = features.shape[2], channels = features.shape[3]
    cdef Py_ssize_t num = rois.shape[0], r, c, h, w
    out_arr = np.zeros((num, pooled_h, pooled_w, channels), np.float32)
    cdef float[:, :, :, ::1] out = out_arr
    cdef int b, start_w, start_h, end_w, end_h, roi_w, roi_h, ph, pw
    cdef int hstart, hend, wstart, wend
    cdef float bin_h, bin_w, v
    cdef float* best
    cdef const float* src
    with nogil:
        for r in range(num):
            b = <int>rois[r, 0]
            start_w = <int>roundf(rois[r, 1] * spatial_scale)
            start_h = <int>roundf(rois[r, 2] * spatial_scale)
            end_w = <int>roundf(rois[r, 3] * spatial_scale)
            end_h = <int>roundf(rois[r, 4] * spatial_scale)
            roi_w = end_w - start_w + 1
            roi_h = end_h - start_h + 1
            if roi_w < 1:
                roi_w = 1
            if roi_h < 1:
                roi_h = 1
            bin_h = <float>roi_h / <float>pooled_h
            bin_w = <float>roi_w / <float>pooled_w
            for ph in range(pooled_h):
                hstart = _clip(<int>floorf(ph * bin_h) + start_h, <int>height)
                hend = _clip(<int>ceilf((ph + 1) * bin_h) + start_h, <int>height)
                for pw in range(pooled_w):
                    wstart = _clip(<int>floorf(pw * bin_w) + start_w, <int>width)
                    wend = _clip(<int>ceilf((pw + 1) * bin_w) + start_w, <int>width)
                    if hend <= hstart or wend <= wstart:
                        continue  # empty bin: stays 0
                    best = &out[r, ph, pw, 0]
                    src = &features[b, hstart, wstart, 0]
                    for c in range(channels):
                        best[c] = src[c]
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            src = &features[b, h, w, 0]
                            for c in range(channels):
                                v = src[c]
                                best[c] = v if v > best[c] else best[c]
    return out_arr
