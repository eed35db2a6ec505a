// squeezenet-frcnn: ROIPooling (CPU), semantics of caffe-fast-rcnn.
// See include/caffe/layers/roi_pooling_layer.hpp for the contract.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "caffe/layers/roi_pooling_layer.hpp"

namespace caffe {

template <typename Dtype>
void ROIPoolingLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const ROIPoolingParameter& p = this->layer_param_.roi_pooling_param();
  const string& name = this->layer_param_.name();
  CHECK_GE(static_cast<int>(p.pooled_h()), 1)
      << "ROIPooling layer '" << name << "': roi_pooling_param.pooled_h must"
      << " be >= 1, got " << p.pooled_h();
  CHECK_GE(static_cast<int>(p.pooled_w()), 1)
      << "ROIPooling layer '" << name << "': roi_pooling_param.pooled_w must"
      << " be >= 1, got " << p.pooled_w();
  CHECK(p.spatial_scale() > 0 && std::isfinite(p.spatial_scale()))
      << "ROIPooling layer '" << name << "': roi_pooling_param.spatial_scale"
      << " must be a finite number > 0, got " << p.spatial_scale();
  pooled_height_ = p.pooled_h();
  pooled_width_ = p.pooled_w();
  spatial_scale_ = p.spatial_scale();
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4)
      << "ROIPooling layer '" << name << "': bottom[0] (features) must be"
      << " (N, C, H, W), got " << bottom[0]->shape_string();
  // rois may come as (R, 5) or as legacy (R, 5, 1, 1).
  CHECK(bottom[1]->num_axes() >= 2 && bottom[1]->count(1) == 5)
      << "ROIPooling layer '" << name << "': bottom[1] (rois) must be"
      << " (R, 5) = [batch_index, x1, y1, x2, y2], got "
      << bottom[1]->shape_string();
  channels_ = bottom[0]->channels();
  height_ = bottom[0]->height();
  width_ = bottom[0]->width();
  const int num_rois = bottom[1]->shape(0);
  top[0]->Reshape(num_rois, channels_, pooled_height_, pooled_width_);
  max_idx_.Reshape(num_rois, channels_, pooled_height_, pooled_width_);
}

namespace {

#ifndef FRCNN_PARALLEL_MIN
#error "FRCNN_PARALLEL_MIN comes from caffe_ext/build_caffe.py (parallel_cpu.PARALLEL_MIN)"
#endif
const long kParallelMin = FRCNN_PARALLEL_MIN;  // elements; smaller loops stay serial

// dst (cols, rows) = src (rows, cols), in cache-sized tiles (row tiles on all cores
// when ``parallel`` and the matrix is large).
template <typename T>
void transpose(const T* src, int rows, int cols, T* dst, bool parallel) {
  const int kTile = 32;
  #pragma omp parallel for schedule(static) \
      if (parallel && static_cast<long>(rows) * cols >= kParallelMin)
  for (int r0 = 0; r0 < rows; r0 += kTile) {
    const int r1 = std::min(r0 + kTile, rows);
    for (int c0 = 0; c0 < cols; c0 += kTile) {
      const int c1 = std::min(c0 + kTile, cols);
      for (int r = r0; r < r1; ++r) {
        const T* from = src + static_cast<size_t>(r) * cols;
        for (int c = c0; c < c1; ++c) {
          dst[static_cast<size_t>(c) * rows + r] = from[c];
        }
      }
    }
  }
}

// For every channel at once: the maximum of a channels-last map over rows
// [hstart, hend) x columns [wstart, wend), and the flat index (h * W + w) of the
// first position (row-major) holding it; -FLT_MAX and -1 where no value beats
// -FLT_MAX (e.g. all NaN), as the per-channel scan of caffe-fast-rcnn.  The
// comparison is branch-free so the loop over channels vectorises (omp simd).
template <typename Dtype>
void max_over_bin(const Dtype* __restrict__ image, int channels, int width,
                  int hstart, int hend, int wstart, int wend,
                  Dtype* __restrict__ best, int* __restrict__ best_index) {
  for (int c = 0; c < channels; ++c) {
    best[c] = -FLT_MAX;
    best_index[c] = -1;
  }
  for (int h = hstart; h < hend; ++h) {
    for (int w = wstart; w < wend; ++w) {
      const int index = h * width + w;
      const Dtype* __restrict__ v = image + static_cast<size_t>(index) * channels;
      #pragma omp simd
      for (int c = 0; c < channels; ++c) {
        const bool take = v[c] > best[c];
        best[c] = take ? v[c] : best[c];
        best_index[c] = take ? index : best_index[c];
      }
    }
  }
}

}  // namespace

// The features are copied channels-last once per forward, so each bin's maximum
// is a vectorised scan over contiguous channels; outputs and argmax are those of
// the per-channel scan (same order, strict '>'), only faster.  RoIs run on all
// cores (OpenMP), each thread with its own bins.
template <typename Dtype>
void ROIPoolingLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const Dtype* bottom_data = bottom[0]->cpu_data();
  const Dtype* bottom_rois = bottom[1]->cpu_data();
  const int num_rois = bottom[1]->shape(0);
  const int batch_size = bottom[0]->num();
  const int map_size = height_ * width_;
  const int out_size = pooled_height_ * pooled_width_;
  Dtype* top_data = top[0]->mutable_cpu_data();
  int* argmax_data = max_idx_.mutable_cpu_data();
  if (num_rois == 0) {
    return;
  }

  for (int n = 0; n < num_rois; ++n) {
    const Dtype batch_ind = bottom_rois[n * 5];
    CHECK(batch_ind >= 0 && static_cast<int>(batch_ind) < batch_size)
        << "ROIPooling layer '" << this->layer_param_.name() << "': roi " << n
        << " has batch index " << batch_ind << ", outside [0, " << batch_size
        << ")";
  }
  features_hwc_.resize(static_cast<size_t>(batch_size) * channels_ * map_size);
  for (int b = 0; b < batch_size; ++b) {
    transpose(bottom_data + static_cast<size_t>(b) * channels_ * map_size, channels_, map_size,
              features_hwc_.data() + static_cast<size_t>(b) * channels_ * map_size, true);
  }

  #pragma omp parallel if (static_cast<long>(num_rois) * channels_ * out_size >= kParallelMin)
  {
  // One roi's bins channels-last (out_size, C), transposed into the top at the end.
  std::vector<Dtype> bin_max(static_cast<size_t>(out_size) * channels_);
  std::vector<int> bin_argmax(static_cast<size_t>(out_size) * channels_);
  #pragma omp for schedule(static)
  for (int n = 0; n < num_rois; ++n) {
    const Dtype* roi = bottom_rois + n * 5;
    const int roi_batch_ind = static_cast<int>(roi[0]);
    const int roi_start_w = static_cast<int>(round(roi[1] * spatial_scale_));
    const int roi_start_h = static_cast<int>(round(roi[2] * spatial_scale_));
    const int roi_end_w = static_cast<int>(round(roi[3] * spatial_scale_));
    const int roi_end_h = static_cast<int>(round(roi[4] * spatial_scale_));
    const int roi_height = std::max(roi_end_h - roi_start_h + 1, 1);
    const int roi_width = std::max(roi_end_w - roi_start_w + 1, 1);
    const Dtype bin_size_h =
        static_cast<Dtype>(roi_height) / static_cast<Dtype>(pooled_height_);
    const Dtype bin_size_w =
        static_cast<Dtype>(roi_width) / static_cast<Dtype>(pooled_width_);

    const Dtype* image = features_hwc_.data()
        + static_cast<size_t>(roi_batch_ind) * channels_ * map_size;
    for (int ph = 0; ph < pooled_height_; ++ph) {
      int hstart = static_cast<int>(floor(ph * bin_size_h));
      int hend = static_cast<int>(ceil((ph + 1) * bin_size_h));
      hstart = std::min(std::max(hstart + roi_start_h, 0), height_);
      hend = std::min(std::max(hend + roi_start_h, 0), height_);
      for (int pw = 0; pw < pooled_width_; ++pw) {
        int wstart = static_cast<int>(floor(pw * bin_size_w));
        int wend = static_cast<int>(ceil((pw + 1) * bin_size_w));
        wstart = std::min(std::max(wstart + roi_start_w, 0), width_);
        wend = std::min(std::max(wend + roi_start_w, 0), width_);
        const size_t bin = static_cast<size_t>(ph * pooled_width_ + pw) * channels_;
        Dtype* best = bin_max.data() + bin;
        int* best_index = bin_argmax.data() + bin;
        if ((hend <= hstart) || (wend <= wstart)) {  // empty bin: 0, no winner
          std::fill(best, best + channels_, Dtype(0));
          std::fill(best_index, best_index + channels_, -1);
        } else {
          max_over_bin(image, channels_, width_, hstart, hend, wstart, wend,
                       best, best_index);
        }
      }
    }
    transpose(bin_max.data(), out_size, channels_,
              top_data + static_cast<size_t>(n) * channels_ * out_size, false);
    transpose(bin_argmax.data(), out_size, channels_,
              argmax_data + static_cast<size_t>(n) * channels_ * out_size, false);
  }
  }  // omp parallel
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  // rois receive no gradient (as in caffe-fast-rcnn), whatever is asked.
  if (!propagate_down[0]) {
    return;
  }
  const Dtype* bottom_rois = bottom[1]->cpu_data();
  const Dtype* top_diff = top[0]->cpu_diff();
  const int* argmax_data = max_idx_.cpu_data();
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), bottom_diff);
  const int num_rois = bottom[1]->shape(0);
  const int map_size = height_ * width_;
  const int out_size = pooled_height_ * pooled_width_;
  // Channels on all cores: each adds into its own planes, RoIs in order (as one core).
  #pragma omp parallel for schedule(static) \
      if (static_cast<long>(num_rois) * channels_ * out_size >= kParallelMin)
  for (int c = 0; c < channels_; ++c) {
    for (int n = 0; n < num_rois; ++n) {
      const int roi_batch_ind = static_cast<int>(bottom_rois[n * 5]);
      Dtype* plane_diff = bottom_diff + (static_cast<size_t>(roi_batch_ind) * channels_ + c)
          * map_size;
      const size_t offset = (static_cast<size_t>(n) * channels_ + c) * out_size;
      for (int i = 0; i < out_size; ++i) {
        const int index = argmax_data[offset + i];
        if (index >= 0) {
          plane_diff[index] += top_diff[offset + i];
        }
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(ROIPoolingLayer);
#endif

INSTANTIATE_CLASS(ROIPoolingLayer);
REGISTER_LAYER_CLASS(ROIPooling);

}  // namespace caffe
