// GPU greedy non-maximum suppression with py-faster-rcnn's conventions.
//
// The boxes arrive sorted (descending score, ties by lower index).  One CUDA block
// compares 64 "row" boxes with 64 "column" boxes and writes, for each row box, a
// 64-bit mask of the later column boxes it overlaps with IoU > thresh.  The host then
// walks the boxes in order, keeping a box unless a kept box's mask has its bit set.
//
// The IoU uses the same operations, in the same order and dtype, as the CPU kernel
// and the numpy reference (inclusive widths, x2 - x1 + 1), and this file is compiled
// with -fmad=false so no multiply-add is fused: every backend keeps the same boxes.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "nms_kernel.h"

namespace {

constexpr int kBlock = 64;  // boxes per block side; one bit each in a uint64 mask

template <typename T>
__device__ __forceinline__ T dmax(T a, T b) { return a > b ? a : b; }

template <typename T>
__device__ __forceinline__ T dmin(T a, T b) { return a < b ? a : b; }

template <typename T>
__device__ __forceinline__ bool iou_above(const T* a, const T* b, T thresh) {
  T w = dmin(a[2], b[2]) - dmax(a[0], b[0]) + T(1);
  T h = dmin(a[3], b[3]) - dmax(a[1], b[1]) + T(1);
  w = dmax(T(0), w);
  h = dmax(T(0), h);
  const T inter = w * h;
  const T area_a = (a[2] - a[0] + T(1)) * (a[3] - a[1] + T(1));
  const T area_b = (b[2] - b[0] + T(1)) * (b[3] - b[1] + T(1));
  const T ovr = inter / (area_a + area_b - inter);
  return ovr > thresh;
}

template <typename T>
__global__ void overlap_mask_kernel(const T* __restrict__ boxes, int64_t n, T thresh,
                                    int64_t col_blocks, uint64_t* __restrict__ mask) {
  const int64_t row_block = blockIdx.y;
  const int64_t col_block = blockIdx.x;
  if (col_block < row_block) return;  // the host only reads blocks at or after the row's
  const int64_t rows_left = n - row_block * kBlock, cols_left = n - col_block * kBlock;
  const int row_size = rows_left < kBlock ? (int)rows_left : kBlock;
  const int col_size = cols_left < kBlock ? (int)cols_left : kBlock;

  __shared__ T cols[kBlock * 4];
  if (threadIdx.x < col_size) {
    const int64_t src = (col_block * kBlock + threadIdx.x) * 4;
    for (int d = 0; d < 4; ++d) cols[threadIdx.x * 4 + d] = boxes[src + d];
  }
  __syncthreads();

  if (threadIdx.x < row_size) {
    const int64_t row = row_block * kBlock + threadIdx.x;
    T me[4];
    for (int d = 0; d < 4; ++d) me[d] = boxes[row * 4 + d];
    uint64_t bits = 0;
    const int first = (row_block == col_block) ? (int)threadIdx.x + 1 : 0;
    for (int j = first; j < col_size; ++j) {
      if (iou_above(me, cols + j * 4, thresh)) bits |= (uint64_t)1 << j;
    }
    mask[row * col_blocks + col_block] = bits;
  }
}

struct DeviceBuffer {
  void* ptr = nullptr;
  ~DeviceBuffer() { if (ptr) cudaFree(ptr); }
};

// Restores the calling thread's current device on scope exit.
struct DeviceRestore {
  int previous = -1;
  DeviceRestore() { if (cudaGetDevice(&previous) != cudaSuccess) previous = -1; }
  ~DeviceRestore() { if (previous >= 0) cudaSetDevice(previous); }
};

template <typename T>
int run_nms(const T* host_boxes, int64_t n, int64_t stride, T thresh, int64_t max_keep,
            int device_id, int64_t* keep_out, int64_t* num_out) {
  *num_out = 0;
  if (n <= 0) return 0;
  if (max_keep <= 0 || max_keep > n) max_keep = n;
  DeviceRestore restore;
  cudaError_t err;
  if (device_id >= 0 && device_id != restore.previous) {
    err = cudaSetDevice(device_id);
    if (err != cudaSuccess) return (int)err;
  }

  // Pack x1 y1 x2 y2 densely on the host.
  std::vector<T> packed((size_t)n * 4);
  for (int64_t i = 0; i < n; ++i)
    for (int d = 0; d < 4; ++d) packed[(size_t)i * 4 + d] = host_boxes[i * stride + d];

  const int64_t col_blocks = (n + kBlock - 1) / kBlock;
  if (col_blocks > 65535) return (int)cudaErrorInvalidValue;  // grid y limit: n <= 4,194,240
  DeviceBuffer d_boxes, d_mask;
  err = cudaMalloc(&d_boxes.ptr, packed.size() * sizeof(T));
  if (err != cudaSuccess) return (int)err;
  err = cudaMalloc(&d_mask.ptr, (size_t)n * col_blocks * sizeof(uint64_t));
  if (err != cudaSuccess) return (int)err;
  err = cudaMemcpy(d_boxes.ptr, packed.data(), packed.size() * sizeof(T), cudaMemcpyHostToDevice);
  if (err != cudaSuccess) return (int)err;

  const dim3 blocks((unsigned)col_blocks, (unsigned)col_blocks);
  overlap_mask_kernel<T><<<blocks, kBlock>>>(static_cast<const T*>(d_boxes.ptr), n, thresh,
                                             col_blocks, static_cast<uint64_t*>(d_mask.ptr));
  err = cudaGetLastError();
  if (err != cudaSuccess) return (int)err;

  std::vector<uint64_t> mask((size_t)n * col_blocks);
  err = cudaMemcpy(mask.data(), d_mask.ptr, mask.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost);
  if (err != cudaSuccess) return (int)err;

  std::vector<uint64_t> removed((size_t)col_blocks, 0);
  int64_t kept = 0;
  for (int64_t i = 0; i < n && kept < max_keep; ++i) {
    const int64_t block = i / kBlock;
    if (removed[block] & ((uint64_t)1 << (i % kBlock))) continue;
    keep_out[kept++] = i;
    const uint64_t* row = mask.data() + (size_t)i * col_blocks;
    for (int64_t j = block; j < col_blocks; ++j) removed[j] |= row[j];
  }
  *num_out = kept;
  return 0;
}

}  // namespace

extern "C" int frcnn_gpu_nms_f32(const float* boxes_sorted, int64_t n, int64_t stride,
                                 float thresh, int64_t max_keep, int device_id,
                                 int64_t* keep_out, int64_t* num_out) {
  return run_nms<float>(boxes_sorted, n, stride, thresh, max_keep, device_id, keep_out, num_out);
}

extern "C" int frcnn_gpu_nms_f64(const double* boxes_sorted, int64_t n, int64_t stride,
                                 double thresh, int64_t max_keep, int device_id,
                                 int64_t* keep_out, int64_t* num_out) {
  return run_nms<double>(boxes_sorted, n, stride, thresh, max_keep, device_id, keep_out, num_out);
}

extern "C" int frcnn_gpu_device_count(void) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  return count;
}

extern "C" const char* frcnn_gpu_error_string(int code) {
  return cudaGetErrorString((cudaError_t)code);
}
