# cython: language_level=3, boundscheck=False, wraparound=False
"""Python wrapper of the CUDA NMS kernel in nms_kernel.cu (py-faster-rcnn conventions).

Importing this module never touches the GPU; ``device_count()`` returns 0 where no
device or driver is present.  Input checking, the score sort and the backend choice
live in ``frcnn.nms``.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t

cnp.import_array()


cdef extern from "nms_kernel.h" nogil:
    int frcnn_gpu_nms_f32(const float* boxes_sorted, int64_t n, int64_t stride, float thresh,
                          int64_t max_keep, int device_id, int64_t* keep_out, int64_t* num_out)
    int frcnn_gpu_nms_f64(const double* boxes_sorted, int64_t n, int64_t stride, double thresh,
                          int64_t max_keep, int device_id, int64_t* keep_out, int64_t* num_out)
    int frcnn_gpu_device_count()
    const char* frcnn_gpu_error_string(int code)


def device_count():
    """Number of CUDA devices visible to this process (0 without a device or driver)."""
    return frcnn_gpu_device_count()


def nms_sorted(boxes, double thresh, Py_ssize_t max_keep=-1, int device_id=0):
    """Greedy NMS on the GPU over boxes already in processing order.

    boxes: C-contiguous (N, >=4) float32 or float64 array, rows x1 y1 x2 y2 [...],
        sorted by descending score (ties by lower original index).
    thresh: IoU threshold, cast to the boxes' dtype; suppression where IoU > thresh.
    max_keep: stop once this many boxes are kept; -1 for no limit.
    device_id: CUDA device to run on.

    Returns the kept positions (int64, into the sorted order), in order.  Raises
    RuntimeError with CUDA's message when the device call fails.
    """
    arr = np.ascontiguousarray(boxes)
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise ValueError(f"boxes must have shape (N, >=4), got {arr.shape}")
    cdef int64_t n = arr.shape[0], stride = arr.shape[1], nk = 0
    cdef int64_t mk = n if (max_keep < 0 or max_keep > n) else max_keep
    keep = np.empty(max(n, 1), dtype=np.int64)
    if n == 0 or mk == 0:
        return keep[:0]
    cdef int64_t[::1] keep_view = keep
    cdef float[:, ::1] f32
    cdef double[:, ::1] f64
    cdef int err
    cdef float t32 = <float>thresh
    if arr.dtype == np.float32:
        f32 = arr
        with nogil:
            err = frcnn_gpu_nms_f32(&f32[0, 0], n, stride, t32, mk, device_id, &keep_view[0], &nk)
    elif arr.dtype == np.float64:
        f64 = arr
        with nogil:
            err = frcnn_gpu_nms_f64(&f64[0, 0], n, stride, thresh, mk, device_id, &keep_view[0], &nk)
    else:
        raise ValueError(f"boxes must be float32 or float64, got {arr.dtype}")
    if err != 0:
        msg = frcnn_gpu_error_string(err).decode("utf-8", "replace")
        raise RuntimeError(f"CUDA NMS failed on device {device_id}: {msg} (error {err})")
    return keep[:nk]
