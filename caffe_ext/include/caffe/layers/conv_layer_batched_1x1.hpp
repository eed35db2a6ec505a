// squeezenet-frcnn: ConvolutionLayer's CPU path for a 1x1 convolution over a
// batch of small maps, such as SqueezeNet Faster R-CNN's conv1_last on 300
// RoIs x 7 x 7 (or 2000 in OHEM's read-only branch).
//
// Caffe runs one GEMM per batch item: (num_output x channels) times (channels
// x H*W), with H*W = 49 here, a shape OpenBLAS runs at a third of its peak.
// This path gathers a chunk of items into one (channels x items*H*W) matrix,
// runs one GEMM per chunk and scatters the result back; each output is the
// same dot product (the bias added after it, as Caffe does), the weight and
// bias gradients accumulate over the chunks, and the bottom gradient is
// overwritten, as in Caffe's path.  Included from conv_layer.cpp (the build
// patches the hooks in); used only where batched_1x1() says so.
#ifndef CAFFE_CONV_LAYER_BATCHED_1X1_HPP_
#define CAFFE_CONV_LAYER_BATCHED_1X1_HPP_

#include <algorithm>
#include <cstring>
#include <vector>

#include "caffe/layers/conv_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace batched_1x1 {

// Columns per GEMM: wide enough for OpenBLAS to reach its peak, small enough
// to keep the scratch matrices in tens of megabytes.
const int kColumns = 4096;

// dst (rows, count * spatial) = items [first, first + count) of src (num, rows, spatial).
template <typename Dtype>
void gather(const Dtype* src, int first, int count, int rows, int spatial, Dtype* dst) {
  for (int n = 0; n < count; ++n) {
    const Dtype* item = src + static_cast<size_t>(first + n) * rows * spatial;
    for (int r = 0; r < rows; ++r) {
      std::memcpy(dst + (static_cast<size_t>(r) * count + n) * spatial,
                  item + static_cast<size_t>(r) * spatial, spatial * sizeof(Dtype));
    }
  }
}

// Items [first, first + count) of dst (num, rows, spatial) = src (rows, count * spatial),
// plus bias[r] on row r where a bias (rows) is given.
template <typename Dtype>
void scatter(const Dtype* src, int first, int count, int rows, int spatial, Dtype* dst,
             const Dtype* bias = NULL) {
  for (int n = 0; n < count; ++n) {
    Dtype* item = dst + static_cast<size_t>(first + n) * rows * spatial;
    for (int r = 0; r < rows; ++r) {
      const Dtype* from = src + (static_cast<size_t>(r) * count + n) * spatial;
      Dtype* to = item + static_cast<size_t>(r) * spatial;
      if (bias) {
        const Dtype b = bias[r];
        for (int s = 0; s < spatial; ++s) {
          to[s] = from[s] + b;
        }
      } else {
        std::memcpy(to, from, spatial * sizeof(Dtype));
      }
    }
  }
}

// The shapes of one layer's chunked GEMMs; prepare() sizes the two scratch matrices.
struct Layout {
  int chunk;     // items per GEMM
  int channels;  // input channels
  int outputs;   // num_output
  int spatial;   // H * W of each item (the same in and out for a 1x1 convolution)
};

template <typename Dtype>
Layout prepare(int chunk, int channels, int outputs, int bottom_dim, Blob<Dtype>* in,
               Blob<Dtype>* out) {
  const Layout l = {chunk, channels, outputs, bottom_dim / channels};
  in->Reshape(1, 1, channels, chunk * l.spatial);
  out->Reshape(1, 1, outputs, chunk * l.spatial);
  return l;
}

}  // namespace batched_1x1

template <typename Dtype>
int ConvolutionLayer<Dtype>::batched_1x1_chunk() const {
  if (!this->is_1x1_ || this->group_ != 1 || this->num_ < 2 || this->channels_ < 1) {
    return 0;
  }
  const int spatial = this->bottom_dim_ / this->channels_;
  const int chunk = std::min(this->num_, batched_1x1::kColumns / std::max(spatial, 1));
  return chunk >= 2 ? chunk : 0;
}

template <typename Dtype>
void ConvolutionLayer<Dtype>::Forward_cpu_batched_1x1(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  const batched_1x1::Layout l = batched_1x1::prepare(batched_1x1_chunk(), this->channels_,
      this->num_output_, this->bottom_dim_, &batch_in_, &batch_out_);
  const Dtype* weight = this->blobs_[0]->cpu_data();
  Dtype* in = batch_in_.mutable_cpu_data();
  Dtype* out = batch_out_.mutable_cpu_data();
  for (int i = 0; i < bottom.size(); ++i) {
    const Dtype* bottom_data = bottom[i]->cpu_data();
    Dtype* top_data = top[i]->mutable_cpu_data();
    const Dtype* bias = this->bias_term_ ? this->blobs_[1]->cpu_data() : NULL;
    for (int first = 0; first < this->num_; first += l.chunk) {
      const int count = std::min(l.chunk, this->num_ - first);
      batched_1x1::gather(bottom_data, first, count, l.channels, l.spatial, in);
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, l.outputs, count * l.spatial, l.channels,
          Dtype(1), weight, in, Dtype(0), out);
      batched_1x1::scatter(out, first, count, l.outputs, l.spatial, top_data, bias);
    }
  }
}

template <typename Dtype>
void ConvolutionLayer<Dtype>::Backward_cpu_batched_1x1(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const batched_1x1::Layout l = batched_1x1::prepare(batched_1x1_chunk(), this->channels_,
      this->num_output_, this->bottom_dim_, &batch_in_, &batch_out_);
  const Dtype* weight = this->blobs_[0]->cpu_data();
  Dtype* weight_diff = this->blobs_[0]->mutable_cpu_diff();
  Dtype* in = batch_in_.mutable_cpu_data();
  Dtype* out = batch_out_.mutable_cpu_data();
  for (int i = 0; i < top.size(); ++i) {
    const Dtype* top_diff = top[i]->cpu_diff();
    if (this->bias_term_ && this->param_propagate_down_[1]) {
      Dtype* bias_diff = this->blobs_[1]->mutable_cpu_diff();
      for (int n = 0; n < this->num_; ++n) {
        for (int m = 0; m < l.outputs; ++m) {
          const Dtype* row = top_diff + (static_cast<size_t>(n) * l.outputs + m) * l.spatial;
          Dtype sum = 0;
          for (int s = 0; s < l.spatial; ++s) {
            sum += row[s];
          }
          bias_diff[m] += sum;
        }
      }
    }
    if (!this->param_propagate_down_[0] && !propagate_down[i]) {
      continue;
    }
    const Dtype* bottom_data = bottom[i]->cpu_data();
    Dtype* bottom_diff = propagate_down[i] ? bottom[i]->mutable_cpu_diff() : NULL;
    for (int first = 0; first < this->num_; first += l.chunk) {
      const int count = std::min(l.chunk, this->num_ - first);
      batched_1x1::gather(top_diff, first, count, l.outputs, l.spatial, out);
      if (this->param_propagate_down_[0]) {  // weight_diff += top_diff * bottom^T
        batched_1x1::gather(bottom_data, first, count, l.channels, l.spatial, in);
        caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, l.outputs, l.channels, count * l.spatial,
            Dtype(1), out, in, Dtype(1), weight_diff);
      }
      if (propagate_down[i]) {  // bottom_diff = weight^T * top_diff
        caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, l.channels, count * l.spatial, l.outputs,
            Dtype(1), weight, out, Dtype(0), in);
        batched_1x1::scatter(in, first, count, l.channels, l.spatial, bottom_diff);
      }
    }
  }
}

}  // namespace caffe

#endif  // CAFFE_CONV_LAYER_BATCHED_1X1_HPP_
