"""ZF (Zeiler and Fergus) as in py-faster-rcnn's ZF end-to-end net: trunk and RoI head.

Layer names, sizes and the lr_mult 1/2 of every layer are py-faster-rcnn's, so its ZF
ImageNet and detection caffemodels load by name.  Differences, both forced by our Caffe
(BVLC 1.0 with our ROIPooling and SmoothL1Loss):
- fillers: py-faster-rcnn gives the trunk and fc6/fc7 none (they always start from the
  ImageNet model); ours has xavier for the convolutions and gaussian 0.005 for fc6/fc7, so
  the net can also be trained from scratch.  Weights loaded from a caffemodel replace them.
- dropout: caffe-fast-rcnn's ``scale_train: false`` does not exist in BVLC Caffe; our
  Dropout scales at train time (the usual inverted dropout), which is the same function up
  to the factor 1/(1 - 0.5) = 2 on drop6/drop7's outputs.  A py-faster-rcnn ZF detection
  model (trained with scale_train false, which scales by 0.5 at test time instead) needs the
  weights of fc7, cls_score and bbox_pred halved to give the same outputs here; ImageNet
  initialisation is unaffected.
Test nets leave dropout out (it is the identity at test time).
"""
from __future__ import annotations

from typing import Any

from frcnn.nets.layers import FILLERS, NetBuilder, gaussian, lr_params

FEATURE_BLOB = "conv5"
FEATURE_STRIDE = 16
POOLED_SIZE = 6
ROI_POOL = "roi_pool_conv5"
HEAD_CHANNELS = 4096

# (name, num_output, kernel, pad, stride, LRN + pool after)
CONVS = (
    ("conv1", 96, 7, 3, 2, True),
    ("conv2", 256, 5, 2, 2, True),
    ("conv3", 384, 3, 1, 1, False),
    ("conv4", 384, 3, 1, 1, False),
    ("conv5", 256, 3, 1, 1, False),
)


def trunk(b: NetBuilder, data: Any, train: bool, dropout: float | None = None,
          filler: str = "xavier", norm: str = "none") -> Any:
    """conv1 .. conv5 with ReLUs, LRNs and pools; returns conv5 (stride 16).  ``dropout``
    > 0 adds ``drop5`` on conv5 in train nets (py-faster-rcnn's ZF has none there);
    ``filler`` ("xavier" or "msra") initialises the convolutions of train nets."""
    from caffe import params as P

    if norm != "none":
        raise ValueError(f"the ZF trunk has no normalisation option (norm {norm!r}); it has "
                         f"LRN")
    x = data
    for i, (name, num_output, kernel, pad, stride, lrn_pool) in enumerate(CONVS, 1):
        kw: dict[str, Any] = {"num_output": num_output, "kernel_size": kernel, "pad": pad,
                              "stride": stride}
        if train:
            kw["weight_filler"] = FILLERS[filler]
            x = b.add("Convolution", name, [x], param=lr_params(), convolution_param=kw)
        else:
            x = b.add("Convolution", name, [x], convolution_param=kw)
        x = b.add("ReLU", f"relu{i}", [x], in_place=True)
        if lrn_pool:
            x = b.add("LRN", f"norm{i}", [x],
                      lrn_param={"local_size": 3, "alpha": 0.00005, "beta": 0.75,
                                 "norm_region": P.LRN.WITHIN_CHANNEL,
                                 "engine": P.LRN.CAFFE})
            x = b.add("Pooling", f"pool{i}", [x],
                      pooling_param={"kernel_size": 3, "stride": 2, "pad": 1,
                                     "pool": P.Pooling.MAX})
    if train and dropout:
        x = b.add("Dropout", "drop5", [x], in_place=True,
                  dropout_param={"dropout_ratio": dropout})
    return x


def head(b: NetBuilder, pooled: Any, train: bool, suffix: str = "", shared: bool = False,
         readonly: bool = False) -> Any:
    """fc6, fc7 (4096) with ReLU and (trained branch of train nets) dropout 0.5."""
    x = pooled
    for i in (6, 7):
        kw: dict[str, Any] = {"num_output": HEAD_CHANNELS}
        extra: dict[str, Any] = {}
        if train:
            kw["weight_filler"] = gaussian(0.005)
            extra["param"] = lr_params(f"fc{i}" if shared else None)
        if readonly:
            extra["propagate_down"] = [False]
        x = b.add("InnerProduct", f"fc{i}{suffix}", [x], inner_product_param=kw, **extra)
        x = b.add("ReLU", f"relu{i}{suffix}", [x], in_place=True)
        if train and not readonly:
            x = b.add("Dropout", f"drop{i}{suffix}", [x], in_place=True,
                      dropout_param={"dropout_ratio": 0.5})
    return x
