# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Greedy non-maximum suppression on the CPU (py-faster-rcnn conventions).

The Python-facing entry point is ``nms_sorted``; input checking, the score sort and
the backend choice live in ``frcnn.nms``.  Boxes arrive already in processing order
(descending score, ties by lower index) as x1 y1 x2 y2 rows of float32 or float64.
All arithmetic is done in that dtype, with exactly the operations of the numpy
reference, so the kept list is bit-for-bit the same:

    w = max(0, min(x2a, x2b) - max(x1a, x1b) + 1)      (same for h)
    iou = (w * h) / (area_a + area_b - w * h),  area = (x2 - x1 + 1) * (y2 - y1 + 1)
    b is suppressed by a kept a when iou > thresh

Each candidate is compared with the boxes kept so far, never with suppressed ones,
and the scan stops at the first suppressor, or when ``max_keep`` boxes are kept.
For larger inputs the kept boxes live in a uniform grid over their (x1, y1) corner:
IoU > t implies |x1a - x1b| < (1 - t) / t * width_b (and the same in y), so only the
grid cells within that radius of a candidate are scanned.  The radius carries a
generous margin; the exact IoU test above still decides, so the grid only skips
pairs that provably cannot overlap enough.
"""
import numpy as np
cimport numpy as cnp
from libc.math cimport floor, fabs
from libc.stdlib cimport malloc, free
from libc.string cimport memset

cnp.import_array()

ctypedef fused real:
    float
    double

# Method codes for nms_sorted.
cdef enum:
    _AUTO = 0
    _BRUTE = 1
    _GRID = 2

# Below this many boxes, or below this threshold, the grid does not pay.
cdef Py_ssize_t _GRID_MIN_BOXES = 192
cdef double _GRID_MIN_THRESH = 0.05
# Scan the kept boxes in chunks of this many: the inner loop has no early exit and
# vectorises; the chunk boundary is where a found suppressor ends the scan.
cdef enum:
    _CHUNK = 32


cdef inline real _max(real a, real b) noexcept nogil:
    return a if a > b else b


cdef inline real _min(real a, real b) noexcept nogil:
    return a if a < b else b


cdef inline bint _suppressed_by(const real* kx1, const real* ky1, const real* kx2,
                                const real* ky2, const real* karea,
                                Py_ssize_t start, Py_ssize_t stop,
                                real x1, real y1, real x2, real y2, real area,
                                real thresh) noexcept nogil:
    """True when some kept box in [start, stop) has IoU > thresh with the candidate."""
    cdef Py_ssize_t s = start, e, j
    cdef real w, h, inter, ovr, hits
    while s < stop:
        e = s + _CHUNK
        if e > stop:
            e = stop
        # The hit count is kept in the boxes' dtype so that the loop vectorises for
        # float64 too (a mixed-width int reduction defeats GCC's vectoriser).
        hits = 0
        for j in range(s, e):
            w = _min(x2, kx2[j]) - _max(x1, kx1[j]) + 1
            h = _min(y2, ky2[j]) - _max(y1, ky1[j]) + 1
            w = _max(<real>0, w)
            h = _max(<real>0, h)
            inter = w * h
            ovr = inter / (area + karea[j] - inter)
            hits = hits + (<real>1 if ovr > thresh else <real>0)
        if hits > 0:
            return True
        s = e
    return False


cdef Py_ssize_t _nms_brute(const real* x1, const real* y1, const real* x2, const real* y2,
                           const real* area, Py_ssize_t n, real thresh, Py_ssize_t max_keep,
                           real* kx1, real* ky1, real* kx2, real* ky2, real* karea,
                           cnp.int64_t* keep) noexcept nogil:
    """Kept-set scan over all kept boxes; returns the number kept (positions in keep)."""
    cdef Py_ssize_t i, nk = 0
    for i in range(n):
        if nk and _suppressed_by(kx1, ky1, kx2, ky2, karea, 0, nk,
                                 x1[i], y1[i], x2[i], y2[i], area[i], thresh):
            continue
        kx1[nk] = x1[i]
        ky1[nk] = y1[i]
        kx2[nk] = x2[i]
        ky2[nk] = y2[i]
        karea[nk] = area[i]
        keep[nk] = i
        nk += 1
        if nk == max_keep:
            break
    return nk


cdef inline Py_ssize_t _cell(double v, double origin, double inv_size, Py_ssize_t ncell) noexcept nogil:
    """Grid cell index of coordinate v, clamped to [0, ncell); monotone in v."""
    cdef double c = floor((v - origin) * inv_size)
    if c < 0:
        return 0
    if c > ncell - 1:
        return ncell - 1
    return <Py_ssize_t>c


cdef Py_ssize_t _nms_grid(const real* x1, const real* y1, const real* x2, const real* y2,
                          const real* area, Py_ssize_t n, real thresh, Py_ssize_t max_keep,
                          real* kx1, real* ky1, real* kx2, real* ky2, real* karea,
                          cnp.int64_t* keep) noexcept nogil:
    """Kept-set scan restricted to nearby grid cells; returns the number kept, or -1
    when out of memory or for huge coordinates (the caller then runs the plain scan)."""
    cdef Py_ssize_t i, nk = 0, nvalid = 0, c, cx, cy, cx0, cx1, cy0, cy1, gx, gy, ncells
    cdef double t = thresh, factor, eps, wsum = 0, hsum = 0, cw, ch
    cdef double xmin = 0, xmax = 0, ymin = 0, ymax = 0, w, h, rx, ry, inv_cw, inv_ch, cap
    cdef bint found, suppressed
    cdef Py_ssize_t* cell_of = NULL
    cdef Py_ssize_t* start = NULL
    cdef Py_ssize_t* fill = NULL

    factor = (1.0 - t) / t
    eps = 1.2e-7 if sizeof(real) == 4 else 2.3e-16

    # Boxes with width or height <= 0 have zero intersection with everything, so
    # they are never suppressed and never suppress: they stay out of the grid.
    found = False
    for i in range(n):
        w = <double>(x2[i] - x1[i] + 1)
        h = <double>(y2[i] - y1[i] + 1)
        if w > 0 and h > 0:
            wsum += w
            hsum += h
            if not found:
                xmin = xmax = x1[i]
                ymin = ymax = y1[i]
                found = True
            else:
                if x1[i] < xmin: xmin = x1[i]
                if x1[i] > xmax: xmax = x1[i]
                if y1[i] < ymin: ymin = y1[i]
                if y1[i] > ymax: ymax = y1[i]
            nvalid += 1

    # Astronomically large coordinates would overflow the cell arithmetic: plain scan.
    if not (xmax - xmin <= 1e30 and ymax - ymin <= 1e30 and wsum <= 1e30 and hsum <= 1e30):
        return -1

    # Cell side about the mean search radius (measured best: smaller cells cost more
    # in per-cell overhead than they save in pairs), with a bounded cell count.
    if nvalid:
        cw = 1.25 * (factor * wsum / nvalid + 1.0)
        ch = 1.25 * (factor * hsum / nvalid + 1.0)
    else:
        cw = ch = 1.0
    cap = 2.0 * nvalid + 16.0
    if cap > 1048576.0:
        cap = 1048576.0
    if (xmax - xmin) / cw > 1023.0:
        cw = (xmax - xmin) / 1023.0
    if (ymax - ymin) / ch > 1023.0:
        ch = (ymax - ymin) / 1023.0
    while ((xmax - xmin) / cw + 1.0) * ((ymax - ymin) / ch + 1.0) > cap:
        cw *= 1.25
        ch *= 1.25
    inv_cw = 1.0 / cw
    inv_ch = 1.0 / ch
    gx = <Py_ssize_t>((xmax - xmin) * inv_cw) + 1
    gy = <Py_ssize_t>((ymax - ymin) * inv_ch) + 1
    ncells = gx * gy

    cell_of = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t))
    start = <Py_ssize_t*>malloc((ncells + 1) * sizeof(Py_ssize_t))
    fill = <Py_ssize_t*>malloc(ncells * sizeof(Py_ssize_t))
    if cell_of == NULL or start == NULL or fill == NULL:
        free(cell_of)
        free(start)
        free(fill)
        return -1
    memset(start, 0, (ncells + 1) * sizeof(Py_ssize_t))
    memset(fill, 0, ncells * sizeof(Py_ssize_t))

    # Capacity of each cell = number of valid boxes whose corner falls in it.
    for i in range(n):
        if (x2[i] - x1[i] + 1) > 0 and (y2[i] - y1[i] + 1) > 0:
            c = _cell(x1[i], xmin, inv_cw, gx) + gx * _cell(y1[i], ymin, inv_ch, gy)
            cell_of[i] = c
            start[c + 1] += 1
        else:
            cell_of[i] = -1
    for c in range(ncells):
        start[c + 1] += start[c]

    for i in range(n):
        c = cell_of[i]
        if c >= 0:
            w = <double>(x2[i] - x1[i] + 1)
            h = <double>(y2[i] - y1[i] + 1)
            # Radius of the window that can hold a suppressor, with a margin far
            # above any rounding in the IoU computed in this dtype.
            rx = (factor * w + 1.0) * 1.01 + 64.0 * eps * (fabs(<double>x1[i]) + fabs(<double>x2[i]))
            ry = (factor * h + 1.0) * 1.01 + 64.0 * eps * (fabs(<double>y1[i]) + fabs(<double>y2[i]))
            cx0 = _cell(x1[i] - rx, xmin, inv_cw, gx)
            cx1 = _cell(x1[i] + rx, xmin, inv_cw, gx)
            cy0 = _cell(y1[i] - ry, ymin, inv_ch, gy)
            cy1 = _cell(y1[i] + ry, ymin, inv_ch, gy)
            suppressed = False
            cy = cy0
            while cy <= cy1 and not suppressed:
                cx = cx0
                while cx <= cx1:
                    if fill[cy * gx + cx] and _suppressed_by(
                            kx1, ky1, kx2, ky2, karea,
                            start[cy * gx + cx], start[cy * gx + cx] + fill[cy * gx + cx],
                            x1[i], y1[i], x2[i], y2[i], area[i], thresh):
                        suppressed = True
                        break
                    cx += 1
                cy += 1
            if suppressed:
                continue
            # Store the kept box in its cell's slot range.
            c = start[c] + fill[c]
            fill[cell_of[i]] += 1
            kx1[c] = x1[i]
            ky1[c] = y1[i]
            kx2[c] = x2[i]
            ky2[c] = y2[i]
            karea[c] = area[i]
        keep[nk] = i
        nk += 1
        if nk == max_keep:
            break

    free(cell_of)
    free(start)
    free(fill)
    return nk


cdef Py_ssize_t _run(real[:, ::1] boxes, real thresh, Py_ssize_t max_keep, int method,
                     cnp.int64_t[::1] keep):
    """Gather boxes into structure-of-arrays form and run the chosen scan."""
    cdef Py_ssize_t n = boxes.shape[0], i, nk
    cdef real* buf = <real*>malloc(10 * max(n, 1) * sizeof(real))
    if buf == NULL:
        raise MemoryError()
    cdef real* x1 = buf
    cdef real* y1 = buf + n
    cdef real* x2 = buf + 2 * n
    cdef real* y2 = buf + 3 * n
    cdef real* area = buf + 4 * n
    cdef real* kx1 = buf + 5 * n
    cdef real* ky1 = buf + 6 * n
    cdef real* kx2 = buf + 7 * n
    cdef real* ky2 = buf + 8 * n
    cdef real* karea = buf + 9 * n
    # Nothing below can raise: the buffer is freed on the only way out.
    with nogil:
        for i in range(n):
            x1[i] = boxes[i, 0]
            y1[i] = boxes[i, 1]
            x2[i] = boxes[i, 2]
            y2[i] = boxes[i, 3]
            area[i] = (x2[i] - x1[i] + 1) * (y2[i] - y1[i] + 1)
        if method == _AUTO:
            method = _GRID if (n >= _GRID_MIN_BOXES and thresh >= _GRID_MIN_THRESH) else _BRUTE
        nk = -1
        if method == _GRID and thresh > 0:
            nk = _nms_grid(x1, y1, x2, y2, area, n, thresh, max_keep,
                           kx1, ky1, kx2, ky2, karea, &keep[0])
        if nk < 0:
            nk = _nms_brute(x1, y1, x2, y2, area, n, thresh, max_keep,
                            kx1, ky1, kx2, ky2, karea, &keep[0])
    free(buf)
    return nk


def nms_sorted(boxes, double thresh, Py_ssize_t max_keep=-1, int method=_AUTO):
    """Greedy NMS over boxes already in processing order.

    boxes: C-contiguous (N, >=4) float32 or float64 array, rows x1 y1 x2 y2 [...],
        sorted by descending score (ties by lower original index).  Finite values only
        (the caller checks).
    thresh: IoU threshold in [0, 1]; it is cast to the boxes' dtype before comparing.
    max_keep: stop once this many boxes are kept; -1 for no limit.
    method: 0 automatic, 1 plain scan of all kept boxes, 2 grid-restricted scan (for
        tests; the result is the same).

    Returns the kept positions (int64, into the sorted order), in order.
    """
    arr = np.ascontiguousarray(boxes)
    if arr.ndim != 2 or arr.shape[1] < 4:
        raise ValueError(f"boxes must have shape (N, >=4), got {arr.shape}")
    cdef Py_ssize_t n = arr.shape[0], nk
    if max_keep < 0 or max_keep > n:
        max_keep = n
    keep = np.empty(max(n, 1), dtype=np.int64)
    if n == 0 or max_keep == 0:
        return keep[:0]
    if arr.dtype == np.float32:
        nk = _run[float](arr, <float>thresh, max_keep, method, keep)
    elif arr.dtype == np.float64:
        nk = _run[double](arr, thresh, max_keep, method, keep)
    else:
        raise ValueError(f"boxes must be float32 or float64, got {arr.dtype}")
    return keep[:nk]
