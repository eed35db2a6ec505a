// squeezenet-frcnn: ROIPooling layer with the semantics of caffe-fast-rcnn.
#ifndef CAFFE_ROI_POOLING_LAYER_HPP_
#define CAFFE_ROI_POOLING_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Max-pools each region of interest into a fixed pooled_h x pooled_w
 *        grid (Fast R-CNN, Girshick 2015), as caffe-fast-rcnn's ROIPooling.
 *
 * Bottoms:
 *   - bottom[0]: features (N, C, H, W).
 *   - bottom[1]: rois (R, 5) = [batch_index, x1, y1, x2, y2] in input-image
 *     pixels, inclusive coordinates.
 * Top:
 *   - top[0]: (R, C, pooled_h, pooled_w).
 *
 * A roi maps onto the feature map at round(coord * spatial_scale) (round half
 * away from zero); its size is max(end - start + 1, 1).  Bin (ph, pw) covers
 * rows [floor(ph * h / pooled_h), ceil((ph + 1) * h / pooled_h)) shifted by the
 * roi start and clipped to [0, H] (columns alike).  The output is the maximum
 * over the bin, or 0 for an empty bin.  Backward sends each top diff to the
 * position that won the max in forward, summed over rois; empty bins send
 * nothing; no gradient flows to the rois.
 *
 * Parameters (roi_pooling_param): pooled_h >= 1, pooled_w >= 1,
 * spatial_scale > 0.
 */
template <typename Dtype>
class ROIPoolingLayer : public Layer<Dtype> {
 public:
  explicit ROIPoolingLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "ROIPooling"; }

  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  int channels_;
  int height_;
  int width_;
  int pooled_height_;
  int pooled_width_;
  Dtype spatial_scale_;
  /// Flat index (h * W + w) of the winning input per output; -1 if empty.
  Blob<int> max_idx_;
  /// CPU scratch: the features channels-last (N, H, W, C).
  std::vector<Dtype> features_hwc_;
};

}  // namespace caffe

#endif  // CAFFE_ROI_POOLING_LAYER_HPP_
