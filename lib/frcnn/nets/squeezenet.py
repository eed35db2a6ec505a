"""SqueezeNet v1.1 (DeepScale) as a Faster R-CNN trunk, and the seed's RoI head.

The trunk is DeepScale's v1.1 up to ``fire9/concat`` with its layer names (``conv1``,
``relu_conv1``, ``pool1``, ``fire2/squeeze1x1``, ``fire2/relu_squeeze1x1``,
``fire2/expand1x1``, ``fire2/expand3x3``, ``fire2/concat``, ...), so that
``squeezenet_v1.1.caffemodel`` initialises it by name; its classifier (conv10, pool10) is
left out.  Strides: conv1 2, pool1 2, pool3 2, pool5 2, so ``fire9/concat`` is at 1/16
(a 600 x 1000 image gives a 37 x 62 map: Caffe pools with ceil).
The head is the seed's: RoI pooling 7 x 7 at 1/16 on ``fire9/concat``, ``conv1_last``
(1 x 1, 1000 outputs, gaussian 0.01) and its ReLU in place of ZF's fc6/fc7.
"""
from __future__ import annotations

from typing import Any

from frcnn.nets.layers import FILLERS, NetBuilder, gaussian, lr_params

FEATURE_BLOB = "fire9/concat"
FEATURE_STRIDE = 16
POOLED_SIZE = 7
ROI_POOL = "roi_pool5"
HEAD_CHANNELS = 1000

# (name, squeeze, expand1x1, expand3x3); a max pool (3 x 3, stride 2) follows conv1, fire3
# and fire5.
FIRES = (
    ("fire2", 16, 64, 64),
    ("fire3", 16, 64, 64),
    ("fire4", 32, 128, 128),
    ("fire5", 32, 128, 128),
    ("fire6", 48, 192, 192),
    ("fire7", 48, 192, 192),
    ("fire8", 64, 256, 256),
    ("fire9", 64, 256, 256),
)
POOL_AFTER = {"conv1": "pool1", "fire3": "pool3", "fire5": "pool5"}


# where ``trunk(norm=...)`` puts instance normalisation (MVN + Scale): after no
# convolution, after conv1 and each fire's squeeze1x1 (the inputs of every expand), or
# after every convolution of the trunk
NORMS = ("none", "squeeze", "all")


def _conv(b: NetBuilder, name: str, bottom: Any, num_output: int, kernel: int, train: bool,
          stride: int = 1, pad: int = 0, filler: str = "xavier", norm: bool = False) -> Any:
    kw: dict[str, Any] = {"num_output": num_output, "kernel_size": kernel}
    if stride != 1:
        kw["stride"] = stride
    if pad:
        kw["pad"] = pad
    if train:
        kw["weight_filler"] = FILLERS[filler]
        x = b.add("Convolution", name, [bottom], param=lr_params(), convolution_param=kw)
    else:
        x = b.add("Convolution", name, [bottom], convolution_param=kw)
    return _instance_norm(b, name, x, train) if norm else x


def _instance_norm(b: NetBuilder, name: str, x: Any, train: bool) -> Any:
    """MVN (each image's channels to mean 0, variance 1 over H x W) then Scale with a
    bias (the learnt affine), named ``<name>/mvn`` (its own top: stock Caffe's MVN
    backward is wrong in place) and ``<name>/scale`` (in place on it).

    Instance normalisation, not BatchNorm: with py-faster-rcnn's one image per batch,
    BatchNorm trains on each image's own statistics but tests on their moving averages,
    and that mismatch measured 0.46 VOC07 mAP where the same weights tested with each
    image's statistics scored 0.875 (docs/demo-recipe.md).  MVN is the same in both phases, keeps no
    statistics, and is a stock layer of Caffe, OpenCV's importer and ONNX
    (InstanceNormalization)."""
    x = b.add("MVN", f"{name}/mvn", [x],
              mvn_param={"normalize_variance": True, "across_channels": False, "eps": 1e-5})
    extra = {"param": lr_params(lr=(1.0, 1.0))} if train else {}
    return b.add("Scale", f"{name}/scale", [x], in_place=True,
                 scale_param={"bias_term": True}, **extra)


def _max_pool(b: NetBuilder, name: str, bottom: Any) -> Any:
    from caffe import params as P

    return b.add("Pooling", name, [bottom],
                 pooling_param={"pool": P.Pooling.MAX, "kernel_size": 3, "stride": 2})


def fire(b: NetBuilder, name: str, bottom: Any, squeeze: int, expand1: int, expand3: int,
         train: bool, filler: str = "xavier", norm: str = "none") -> Any:
    """A fire module: squeeze 1 x 1, then expand 1 x 1 and 3 x 3 (pad 1), concatenated."""
    s = _conv(b, f"{name}/squeeze1x1", bottom, squeeze, 1, train, filler=filler,
              norm=norm != "none")
    s = b.add("ReLU", f"{name}/relu_squeeze1x1", [s], in_place=True)
    e1 = _conv(b, f"{name}/expand1x1", s, expand1, 1, train, filler=filler, norm=norm == "all")
    e1 = b.add("ReLU", f"{name}/relu_expand1x1", [e1], in_place=True)
    e3 = _conv(b, f"{name}/expand3x3", s, expand3, 3, train, pad=1, filler=filler,
               norm=norm == "all")
    e3 = b.add("ReLU", f"{name}/relu_expand3x3", [e3], in_place=True)
    return b.add("Concat", f"{name}/concat", [e1, e3])


TRUNK_DROPOUT = 0.5  # drop9, SqueezeNet v1.1's (and the seed's net's)


def trunk(b: NetBuilder, data: Any, train: bool, dropout: float | None = None,
          filler: str = "xavier", norm: str = "none") -> Any:
    """conv1 .. fire9/concat (+ drop9 in train nets, ratio ``dropout``, default
    TRUNK_DROPOUT; 0 leaves it out); returns the feature Top (stride 16).  ``filler``
    ("xavier" or "msra") initialises the convolutions of train nets; ``norm`` (NORMS)
    adds instance normalisation (MVN + Scale) after some of them, in train and test nets
    alike."""
    if norm not in NORMS:
        raise ValueError(f"trunk norm must be one of {NORMS}, got {norm!r}")
    x = _conv(b, "conv1", data, 64, 3, train, stride=2, filler=filler, norm=norm != "none")
    x = b.add("ReLU", "relu_conv1", [x], in_place=True)
    x = _max_pool(b, "pool1", x)
    for name, squeeze, expand1, expand3 in FIRES:
        x = fire(b, name, x, squeeze, expand1, expand3, train, filler=filler, norm=norm)
        if name in POOL_AFTER:
            x = _max_pool(b, POOL_AFTER[name], x)
    ratio = TRUNK_DROPOUT if dropout is None else dropout
    if train and ratio > 0:
        x = b.add("Dropout", "drop9", [x], in_place=True,
                  dropout_param={"dropout_ratio": ratio})
    return x


def head(b: NetBuilder, pooled: Any, train: bool, suffix: str = "", shared: bool = False,
         readonly: bool = False) -> Any:
    """conv1_last (1 x 1, 1000) + ReLU on the pooled RoIs; returns the head's Top.

    suffix names a second branch ('_readonly'); shared names the parameters
    (conv1_last_w / conv1_last_b) so both branches use the same blobs; readonly sets
    propagate_down false (the OHEM read-only branch)."""
    kw: dict[str, Any] = {"num_output": HEAD_CHANNELS, "kernel_size": 1}
    extra: dict[str, Any] = {}
    if train:
        kw["weight_filler"] = gaussian(0.01)
        extra["param"] = lr_params("conv1_last" if shared else None)
    if readonly:
        extra["propagate_down"] = [False]
    x = b.add("Convolution", f"conv1_last{suffix}", [pooled], convolution_param=kw, **extra)
    return b.add("ReLU", f"relu_conv1_last{suffix}", [x], in_place=True)
