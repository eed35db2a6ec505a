// squeezenet-frcnn: ROIPooling (CUDA), same semantics as the CPU version.
#include <cfloat>
#include <vector>

#include "caffe/layers/roi_pooling_layer.hpp"
#include "caffe/util/gpu_util.cuh"

namespace caffe {

template <typename Dtype>
__global__ void ROIPoolForward(const int nthreads, const Dtype* bottom_data,
    const Dtype spatial_scale, const int channels, const int height,
    const int width, const int pooled_height, const int pooled_width,
    const Dtype* bottom_rois, Dtype* top_data, int* argmax_data) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    // (n, c, ph, pw) is an element of the output
    const int pw = index % pooled_width;
    const int ph = (index / pooled_width) % pooled_height;
    const int c = (index / pooled_width / pooled_height) % channels;
    const int n = index / pooled_width / pooled_height / channels;

    const Dtype* roi = bottom_rois + n * 5;
    const int roi_batch_ind = static_cast<int>(roi[0]);
    const int roi_start_w = static_cast<int>(round(roi[1] * spatial_scale));
    const int roi_start_h = static_cast<int>(round(roi[2] * spatial_scale));
    const int roi_end_w = static_cast<int>(round(roi[3] * spatial_scale));
    const int roi_end_h = static_cast<int>(round(roi[4] * spatial_scale));
    const int roi_width = max(roi_end_w - roi_start_w + 1, 1);
    const int roi_height = max(roi_end_h - roi_start_h + 1, 1);
    const Dtype bin_size_h =
        static_cast<Dtype>(roi_height) / static_cast<Dtype>(pooled_height);
    const Dtype bin_size_w =
        static_cast<Dtype>(roi_width) / static_cast<Dtype>(pooled_width);

    int hstart = static_cast<int>(floor(static_cast<Dtype>(ph) * bin_size_h));
    int wstart = static_cast<int>(floor(static_cast<Dtype>(pw) * bin_size_w));
    int hend = static_cast<int>(ceil(static_cast<Dtype>(ph + 1) * bin_size_h));
    int wend = static_cast<int>(ceil(static_cast<Dtype>(pw + 1) * bin_size_w));
    hstart = min(max(hstart + roi_start_h, 0), height);
    hend = min(max(hend + roi_start_h, 0), height);
    wstart = min(max(wstart + roi_start_w, 0), width);
    wend = min(max(wend + roi_start_w, 0), width);
    const bool is_empty = (hend <= hstart) || (wend <= wstart);

    Dtype maxval = is_empty ? Dtype(0) : -FLT_MAX;
    int maxidx = -1;
    const Dtype* map =
        bottom_data + (roi_batch_ind * channels + c) * height * width;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        const int bottom_index = h * width + w;
        if (map[bottom_index] > maxval) {
          maxval = map[bottom_index];
          maxidx = bottom_index;
        }
      }
    }
    top_data[index] = maxval;
    argmax_data[index] = maxidx;
  }
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const int count = top[0]->count();
  if (count == 0) {
    return;
  }
  // Batch indices are checked on the host: a bad one would read out of bounds.
  const Dtype* host_rois = bottom[1]->cpu_data();
  for (int n = 0; n < bottom[1]->shape(0); ++n) {
    const int b = static_cast<int>(host_rois[n * 5]);
    CHECK(b >= 0 && b < bottom[0]->num())
        << "ROIPooling layer '" << this->layer_param_.name() << "': roi " << n
        << " has batch index " << host_rois[n * 5] << ", outside [0, "
        << bottom[0]->num() << ")";
  }
  // NOLINT_NEXT_LINE(whitespace/operators)
  ROIPoolForward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), spatial_scale_, channels_, height_,
      width_, pooled_height_, pooled_width_, bottom[1]->gpu_data(),
      top[0]->mutable_gpu_data(), max_idx_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

// One thread per output element scatters its diff with an atomic add: the
// same sum as the CPU version (up to the order of float additions).
template <typename Dtype>
__global__ void ROIPoolBackward(const int nthreads, const Dtype* top_diff,
    const int* argmax_data, const Dtype* bottom_rois, const int channels,
    const int height, const int width, const int pooled_height,
    const int pooled_width, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, nthreads) {
    const int c = (index / pooled_width / pooled_height) % channels;
    const int n = index / pooled_width / pooled_height / channels;
    const int argmax = argmax_data[index];
    if (argmax >= 0) {
      const int roi_batch_ind = static_cast<int>(bottom_rois[n * 5]);
      caffe_gpu_atomic_add(top_diff[index], bottom_diff +
          (roi_batch_ind * channels + c) * height * width + argmax);
    }
  }
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) {
    return;
  }
  Dtype* bottom_diff = bottom[0]->mutable_gpu_diff();
  caffe_gpu_set(bottom[0]->count(), Dtype(0.), bottom_diff);
  const int count = top[0]->count();
  if (count == 0) {
    return;
  }
  // NOLINT_NEXT_LINE(whitespace/operators)
  ROIPoolBackward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, top[0]->gpu_diff(), max_idx_.gpu_data(), bottom[1]->gpu_data(),
      channels_, height_, width_, pooled_height_, pooled_width_, bottom_diff);
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(ROIPoolingLayer);

}  // namespace caffe
