/* GPU non-maximum suppression (py-faster-rcnn conventions), C interface.
 *
 * boxes_sorted: host array of n rows x1 y1 x2 y2 (row stride `stride` elements),
 *   already in processing order (descending score, ties by lower index).
 * keep_out: host array with room for n entries; receives kept positions in order.
 * max_keep: stop after this many kept (n or more: no limit).
 * Returns 0 on success and writes the count to *num_out; otherwise a CUDA error code,
 * with a message available from frcnn_gpu_error_string().
 */
#ifndef FRCNN_NMS_KERNEL_H
#define FRCNN_NMS_KERNEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int frcnn_gpu_nms_f32(const float* boxes_sorted, int64_t n, int64_t stride, float thresh,
                      int64_t max_keep, int device_id, int64_t* keep_out, int64_t* num_out);
int frcnn_gpu_nms_f64(const double* boxes_sorted, int64_t n, int64_t stride, double thresh,
                      int64_t max_keep, int device_id, int64_t* keep_out, int64_t* num_out);
int frcnn_gpu_device_count(void);
const char* frcnn_gpu_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif /* FRCNN_NMS_KERNEL_H */
