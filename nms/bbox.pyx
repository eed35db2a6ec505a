# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Pairwise IoU of two box sets (py-faster-rcnn conventions).

Boxes are x1 y1 x2 y2 in inclusive pixel coordinates, computed in float64:

    iw = min(x2a, x2b) - max(x1a, x1b) + 1,  ih likewise
    iou = iw * ih / (area_a + area_b - iw * ih)   when iw > 0 and ih > 0, else 0
    area = (x2 - x1 + 1) * (y2 - y1 + 1)

Input checking and dtype conversion live in ``frcnn.boxes.bbox_overlaps``.
"""
import numpy as np
cimport numpy as cnp
from libc.stdlib cimport malloc, free

cnp.import_array()


cdef inline double _max(double a, double b) noexcept nogil:
    return a if a > b else b


cdef inline double _min(double a, double b) noexcept nogil:
    return a if a < b else b


cdef void _overlaps(const double[:, ::1] boxes, const double[:, ::1] query,
                    double[:, ::1] out, double* buf) noexcept nogil:
    cdef Py_ssize_t n = boxes.shape[0], k = query.shape[0], i, j
    cdef double* qx1 = buf
    cdef double* qy1 = buf + k
    cdef double* qx2 = buf + 2 * k
    cdef double* qy2 = buf + 3 * k
    cdef double* qarea = buf + 4 * k
    cdef double bx1, by1, bx2, by2, barea, iw, ih, inter, ov
    cdef double* row
    for j in range(k):
        qx1[j] = query[j, 0]
        qy1[j] = query[j, 1]
        qx2[j] = query[j, 2]
        qy2[j] = query[j, 3]
        qarea[j] = (qx2[j] - qx1[j] + 1) * (qy2[j] - qy1[j] + 1)
    for i in range(n):
        bx1 = boxes[i, 0]
        by1 = boxes[i, 1]
        bx2 = boxes[i, 2]
        by2 = boxes[i, 3]
        barea = (bx2 - bx1 + 1) * (by2 - by1 + 1)
        row = &out[i, 0]
        for j in range(k):
            iw = _min(bx2, qx2[j]) - _max(bx1, qx1[j]) + 1
            ih = _min(by2, qy2[j]) - _max(by1, qy1[j]) + 1
            # Branch-free, so that it vectorises: with iw or ih <= 0, inter is +0 and
            # ov is 0, -0 or NaN (0/0), all mapped to 0; with both > 0 the areas are
            # positive, ov > 0 (or 0 on underflow) and is kept as it is.
            inter = _max(0.0, iw) * _max(0.0, ih)
            ov = inter / (barea + qarea[j] - inter)
            row[j] = ov if ov > 0 else 0.0


def bbox_overlaps(boxes, query_boxes):
    """IoU matrix of boxes (N, 4) against query_boxes (K, 4), both C-contiguous float64.

    Returns an (N, K) float64 array.  N or K may be 0.
    """
    cdef const double[:, ::1] b = boxes
    cdef const double[:, ::1] q = query_boxes
    if b.shape[1] != 4 or q.shape[1] != 4:
        raise ValueError("boxes and query_boxes must have shape (N, 4) and (K, 4)")
    out = np.empty((b.shape[0], q.shape[0]), dtype=np.float64)  # every entry is written
    if b.shape[0] == 0 or q.shape[0] == 0:
        return out
    cdef double[:, ::1] o = out
    cdef double* buf = <double*>malloc(5 * q.shape[0] * sizeof(double))
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            _overlaps(b, q, o, buf)
    finally:
        free(buf)
    return out
