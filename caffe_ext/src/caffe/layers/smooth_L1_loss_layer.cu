// squeezenet-frcnn: SmoothL1Loss (CUDA), same semantics as the CPU version.
#include <vector>

#include "caffe/layers/smooth_L1_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
__global__ void SmoothL1Forward(const int n, const Dtype* in, Dtype* out,
    const Dtype sigma2) {
  CUDA_KERNEL_LOOP(index, n) {
    const Dtype d = in[index];
    const Dtype abs_d = abs(d);
    out[index] = abs_d < Dtype(1) / sigma2 ? Dtype(0.5) * d * d * sigma2
                                           : abs_d - Dtype(0.5) / sigma2;
  }
}

template <typename Dtype>
__global__ void SmoothL1Backward(const int n, const Dtype* in, Dtype* out,
    const Dtype sigma2) {
  CUDA_KERNEL_LOOP(index, n) {
    const Dtype d = in[index];
    out[index] = abs(d) < Dtype(1) / sigma2
                     ? sigma2 * d
                     : Dtype((Dtype(0) < d) - (d < Dtype(0)));
  }
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  const int num = bottom[0]->shape(0);
  if (count == 0 || num == 0) {
    top[0]->mutable_cpu_data()[0] = Dtype(0);
    return;
  }
  Dtype* diff = diff_.mutable_gpu_data();
  Dtype* errors = errors_.mutable_gpu_data();
  caffe_gpu_sub(count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), diff);
  if (has_inside_) {
    caffe_gpu_mul(count, bottom[2]->gpu_data(), diff, diff);
  }
  // NOLINT_NEXT_LINE(whitespace/operators)
  SmoothL1Forward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, diff, errors, sigma2_);
  CUDA_POST_KERNEL_CHECK;
  if (has_outside_) {
    caffe_gpu_mul(count, bottom[3]->gpu_data(), errors, errors);
  }
  // errors are >= 0 wherever outside weights are, so a dot with ones is the
  // plain sum (asum would turn negative outside weights positive).
  Dtype* ones = diff_.mutable_gpu_diff();
  caffe_gpu_set(count, Dtype(1), ones);
  Dtype loss;
  caffe_gpu_dot(count, errors, ones, &loss);
  top[0]->mutable_cpu_data()[0] = loss / num;
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int count = bottom[0]->count();
  const int num = bottom[0]->shape(0);
  if (!(propagate_down[0] || propagate_down[1]) || count == 0 || num == 0) {
    return;
  }
  Dtype* grad = errors_.mutable_gpu_data();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SmoothL1Backward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, diff_.gpu_data(), grad, sigma2_);
  CUDA_POST_KERNEL_CHECK;
  if (has_inside_) {
    caffe_gpu_mul(count, bottom[2]->gpu_data(), grad, grad);
  }
  if (has_outside_) {
    caffe_gpu_mul(count, bottom[3]->gpu_data(), grad, grad);
  }
  for (int i = 0; i < 2; ++i) {
    if (propagate_down[i]) {
      const Dtype sign = (i == 0) ? 1 : -1;
      const Dtype alpha = sign * top[0]->cpu_diff()[0] / num;
      caffe_gpu_axpby(count, alpha, grad, Dtype(0),
                      bottom[i]->mutable_gpu_diff());
    }
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(SmoothL1LossLayer);

}  // namespace caffe
