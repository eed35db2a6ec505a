// squeezenet-frcnn: SmoothL1Loss (CPU), semantics of caffe-fast-rcnn.
// See include/caffe/layers/smooth_L1_loss_layer.hpp for the contract.
#include <cmath>
#include <vector>

#include "caffe/layers/smooth_L1_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  const float sigma = this->layer_param_.smooth_l1_loss_param().sigma();
  CHECK(sigma > 0 && std::isfinite(sigma))
      << "SmoothL1Loss layer '" << this->layer_param_.name()
      << "': smooth_l1_loss_param.sigma must be a finite number > 0, got "
      << sigma;
  sigma2_ = static_cast<Dtype>(sigma) * static_cast<Dtype>(sigma);
  has_inside_ = bottom.size() >= 3;
  has_outside_ = bottom.size() >= 4;
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  static const char* kNames[] = {"predictions", "targets", "inside_weights",
                                 "outside_weights"};
  for (int i = 1; i < bottom.size(); ++i) {
    CHECK(bottom[i]->shape() == bottom[0]->shape())
        << "SmoothL1Loss layer '" << this->layer_param_.name() << "': bottom["
        << i << "] (" << kNames[i] << ") has shape "
        << bottom[i]->shape_string() << " but bottom[0] (predictions) has "
        << bottom[0]->shape_string();
  }
  LossLayer<Dtype>::Reshape(bottom, top);
  diff_.ReshapeLike(*bottom[0]);
  errors_.ReshapeLike(*bottom[0]);
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  const int num = bottom[0]->shape(0);
  if (count == 0 || num == 0) {
    top[0]->mutable_cpu_data()[0] = Dtype(0);
    return;
  }
  Dtype* diff = diff_.mutable_cpu_data();
  Dtype* errors = errors_.mutable_cpu_data();
  caffe_sub(count, bottom[0]->cpu_data(), bottom[1]->cpu_data(), diff);
  if (has_inside_) {
    caffe_mul(count, bottom[2]->cpu_data(), diff, diff);
  }
  const Dtype inv_sigma2 = Dtype(1) / sigma2_;
  for (int i = 0; i < count; ++i) {
    const Dtype d = diff[i];
    const Dtype abs_d = std::fabs(d);
    errors[i] = abs_d < inv_sigma2 ? Dtype(0.5) * d * d * sigma2_
                                   : abs_d - Dtype(0.5) * inv_sigma2;
  }
  if (has_outside_) {
    caffe_mul(count, bottom[3]->cpu_data(), errors, errors);
  }
  Dtype loss = 0;
  for (int i = 0; i < count; ++i) {
    loss += errors[i];
  }
  top[0]->mutable_cpu_data()[0] = loss / num;
}

template <typename Dtype>
void SmoothL1LossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const int count = bottom[0]->count();
  const int num = bottom[0]->shape(0);
  if (!(propagate_down[0] || propagate_down[1])) {
    return;
  }
  if (count == 0 || num == 0) {
    return;
  }
  // errors_ := d f / d pred, element-wise.
  const Dtype* diff = diff_.cpu_data();
  Dtype* grad = errors_.mutable_cpu_data();
  const Dtype inv_sigma2 = Dtype(1) / sigma2_;
  for (int i = 0; i < count; ++i) {
    const Dtype d = diff[i];
    grad[i] = std::fabs(d) < inv_sigma2 ? sigma2_ * d
                                         : Dtype((Dtype(0) < d) - (d < Dtype(0)));
  }
  if (has_inside_) {
    caffe_mul(count, bottom[2]->cpu_data(), grad, grad);
  }
  if (has_outside_) {
    caffe_mul(count, bottom[3]->cpu_data(), grad, grad);
  }
  for (int i = 0; i < 2; ++i) {
    if (propagate_down[i]) {
      const Dtype sign = (i == 0) ? 1 : -1;
      const Dtype alpha = sign * top[0]->cpu_diff()[0] / num;
      caffe_cpu_axpby(count, alpha, grad, Dtype(0),
                      bottom[i]->mutable_cpu_diff());
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(SmoothL1LossLayer);
#endif

INSTANTIATE_CLASS(SmoothL1LossLayer);
REGISTER_LAYER_CLASS(SmoothL1Loss);

}  // namespace caffe
