// squeezenet-frcnn: SmoothL1Loss with the semantics of caffe-fast-rcnn.
#ifndef CAFFE_SMOOTH_L1_LOSS_LAYER_HPP_
#define CAFFE_SMOOTH_L1_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/loss_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Smooth L1 loss of Fast R-CNN (Girshick 2015), in caffe-fast-rcnn's
 *        form with sigma and inside/outside weights.
 *
 * Bottoms (all the same shape, first axis = num):
 *   - bottom[0]: predictions.
 *   - bottom[1]: targets.
 *   - bottom[2] (optional): inside weights w_in.
 *   - bottom[3] (optional): outside weights w_out.
 * Three bottoms mean inside weights only (the SSD form, which MultiBoxLoss
 * relies on); four is the Fast R-CNN form.
 *
 *   d = w_in * (pred - target)
 *   f(d) = 0.5 * sigma^2 * d^2   if |d| < 1 / sigma^2
 *        = |d| - 0.5 / sigma^2   otherwise
 *   loss = sum(w_out * f(d)) / num       (0 when num is 0)
 *
 * Gradients go to predictions and, where asked, to targets (negated).
 * Parameter (smooth_l1_loss_param): sigma > 0, default 1.
 */
template <typename Dtype>
class SmoothL1LossLayer : public LossLayer<Dtype> {
 public:
  explicit SmoothL1LossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param), diff_(), errors_() {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SmoothL1Loss"; }

  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int MinBottomBlobs() const { return 2; }
  virtual inline int MaxBottomBlobs() const { return 4; }

  /// Gradients may flow to both predictions and targets.
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index < 2;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// w_in * (pred - target)
  Blob<Dtype> diff_;
  /// per-element loss, later reused for the per-element gradient
  Blob<Dtype> errors_;
  Dtype sigma2_;
  bool has_inside_;
  bool has_outside_;
};

}  // namespace caffe

#endif  // CAFFE_SMOOTH_L1_LOSS_LAYER_HPP_
