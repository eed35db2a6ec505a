"""The one definition of the network variants and their parameters.

A ``Variant`` holds everything a generated net, solver and cfg file depend on; ``PRESETS``
are the variants committed under ``prototxts/<name>/``.  ``frcnn prototxt`` starts from a
preset and replaces fields (``Variant.replace``), so a user's dataset gets the same nets with
its own classes, anchors, image scale and solver schedule.

Choices, and where they come from:
- num_classes 4 (the synthetic dataset's 3 classes + background); 21 for PASCAL VOC.
- Anchors: py-faster-rcnn's 3 ratios x 3 scales (9).  The ``seed`` anchors are 70, as the
  seed's net has (its OHEM snippet reshapes rpn_cls_prob to 140 = 2 x 70); the seed does not
  list its values, so ours are 7 ratios (0.25, 0.5, 0.8, 1, 1.25, 2, 4: symmetric about 1)
  x 10 scales (1, 2, 3, 4, 6, 8, 12, 16, 24, 32: anchor sides 16 to 512 pixels at ratio 1).
- Image scale: 600 short side, 1000 cap on the long side (py-faster-rcnn's TRAIN/TEST
  defaults); written to the variant's cfg file and used as the test net's input shape.
- Solver: py-faster-rcnn's ZF end-to-end solver (step policy, gamma 0.1, stepsize 50000,
  display 20, average_loss 100, momentum 0.9, weight_decay 0.0005, iter_size 2, snapshots by
  the training driver) with base_lr at 1/10 of its 0.001: the seed's fix for the NaN loss it
  met after ~400 iterations.  max_iter 70000 is py-faster-rcnn's ZF end-to-end run length.
- Trainable layers: every layer, the backbone's conv1 included, as py-faster-rcnn's ZF
  end-to-end net (its train.prototxt gives conv1-conv5 lr_mult 1/2); SqueezeNet's conv1 has
  1.7k weights, so freezing it would save nothing measurable.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from frcnn.nets.layers import FILLERS
from frcnn.nets.squeezenet import NORMS

BACKBONES = ("squeezenet", "zf")
# weight fillers of the trunk's convolutions in train nets: "xavier" (Caffe's, variance
# 1 / fan_in: DeepScale's SqueezeNet and our ZF) or "msra" (He et al., variance 2 / fan_in:
# keeps the signal's scale through ReLUs, for training from scratch)
TRUNK_FILLERS = tuple(FILLERS)
# instance normalisation (MVN + Scale) in the SqueezeNet trunk: none (DeepScale's v1.1),
# after conv1 and each squeeze1x1, or after every convolution
TRUNK_NORMS = NORMS
# Caffe's solvers (SolverParameter.type; frcnn train --solver-type); Adam and RMSProp read
# momentum (beta1) and momentum2 / rms_decay from the solver file
SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")

DEFAULT_RATIOS = (0.5, 1, 2)
DEFAULT_SCALES = (8, 16, 32)
SEED_RATIOS = (0.25, 0.5, 0.8, 1, 1.25, 2, 4)
SEED_SCALES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)

ANCHOR_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "default": (DEFAULT_RATIOS, DEFAULT_SCALES),
    "seed": (SEED_RATIOS, SEED_SCALES),
}

# py-faster-rcnn's ZF end-to-end solver; base_lr is ours (1/10 of its 0.001, see above).
ZF_END2END_BASE_LR = 0.001


@dataclass(frozen=True)
class Variant:
    """A Faster R-CNN net family member: train, test and solver prototxts and a cfg file."""

    name: str
    backbone: str = "squeezenet"
    ohem: bool = False
    num_classes: int = 4
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    scales: tuple[float, ...] = DEFAULT_SCALES
    scale: int = 600
    max_size: int = 1000
    # extra RoIDataLayer param_str keys (e.g. the dataset), written after 'num_classes'
    data_params: tuple[tuple[str, Any], ...] = ()
    # solver
    base_lr: float = ZF_END2END_BASE_LR / 10
    lr_policy: str = "step"
    gamma: float = 0.1
    stepsize: int = 50000
    max_iter: int = 70000
    iter_size: int = 2
    display: int = 20
    average_loss: int = 100
    momentum: float = 0.9
    weight_decay: float = 0.0005
    # dropout on the trunk's output in train nets: None is the backbone's own (SqueezeNet
    # v1.1's drop9, 0.5, as the seed's net; ZF none: its drop6/drop7 sit in the head);
    # 0 leaves the layer out (the demo's recipe: training from scratch underfits with it)
    trunk_dropout: float | None = None
    trunk_filler: str = "xavier"
    trunk_norm: str = "none"
    # OHEM cfg (written to the cfg file of OHEM variants; config.py's defaults)
    ohem_batch_size: int = 128
    ohem_use_nms: bool = True
    ohem_nms_thresh: float = 0.7
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.num_classes < 2:
            problems.append(f"num_classes counts the background: it must be >= 2, got "
                            f"{self.num_classes}")
        for key in ("ratios", "scales"):
            values = getattr(self, key)
            if not values or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                 or v <= 0 for v in values):
                problems.append(f"{key} must be positive numbers, got {values!r}")
        if self.scale < 16 or self.max_size < self.scale:
            problems.append(f"image scale must be >= 16 and max_size >= scale, got scale "
                            f"{self.scale}, max_size {self.max_size}")
        for key in ("stepsize", "max_iter", "iter_size", "display", "average_loss",
                    "ohem_batch_size"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.trunk_dropout is not None and not 0 <= self.trunk_dropout < 1:
            problems.append(f"trunk_dropout must be in [0, 1), got {self.trunk_dropout}")
        if self.trunk_filler not in TRUNK_FILLERS:
            problems.append(f"trunk_filler must be one of {TRUNK_FILLERS}, got "
                            f"{self.trunk_filler!r}")
        if self.trunk_norm not in TRUNK_NORMS:
            problems.append(f"trunk_norm must be one of {TRUNK_NORMS}, got "
                            f"{self.trunk_norm!r}")
        elif self.trunk_norm != "none" and self.backbone != "squeezenet":
            problems.append(f"trunk_norm {self.trunk_norm!r} is for the squeezenet trunk, "
                            f"not {self.backbone}")
        if self.base_lr <= 0:
            problems.append(f"base_lr must be > 0, got {self.base_lr}")
        reserved = {"num_classes"}
        for key, _ in self.data_params:
            if key in reserved:
                problems.append(f"data param {key!r} is set by the variant itself")
        if problems:
            raise ValueError(f"variant {self.name}: " + "; ".join(problems))

    @property
    def num_anchors(self) -> int:
        return len(self.ratios) * len(self.scales)

    @property
    def snapshot_prefix(self) -> str:
        return self.name.replace("/", "_").replace("faster_rcnn_end2end", "faster_rcnn")

    def replace(self, **changes: Any) -> "Variant":
        """A copy with fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> str:
        return (f"{self.name}: {self.backbone}{' + OHEM' if self.ohem else ''}, num_classes "
                f"{self.num_classes}, {len(self.ratios)} ratios {list(self.ratios)} x "
                f"{len(self.scales)} scales {list(self.scales)} = {self.num_anchors} anchors, "
                f"image scale {self.scale} (max {self.max_size})")


PRESETS: dict[str, Variant] = {v.name: v for v in (
    Variant("squeezenet/faster_rcnn_end2end",
            description="SqueezeNet v1.1 Faster R-CNN, end-to-end training"),
    Variant("squeezenet/faster_rcnn_end2end_ohem", ohem=True,
            description="SqueezeNet v1.1 Faster R-CNN with online hard example mining"),
    Variant("squeezenet/faster_rcnn_end2end_ohem_seed70", ohem=True,
            ratios=SEED_RATIOS, scales=SEED_SCALES,
            description="the seed's net: SqueezeNet v1.1 Faster R-CNN, OHEM, 70 anchors"),
    Variant("zf/faster_rcnn_end2end", backbone="zf",
            description="py-faster-rcnn's ZF end-to-end net, the speed and accuracy baseline"),
)}


def preset(name: str) -> Variant:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(PRESETS)}") from None
