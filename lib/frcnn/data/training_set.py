"""The training set of a run, prepared one way for every way of training: ``frcnn train
--net`` (a generated net), ``frcnn train --solver`` (a solver's own net) and RoIDataLayer's
param_str (plain ``caffe train``).

- ``is_fast_rcnn``: py-faster-rcnn's rule for which kind of data layer a net has;
- ``check_mode``: what each kind needs (one image per minibatch end to end; proposals for
  Fast R-CNN, and only there);
- ``build_roidb``: the dataset's records -> the roidb, end to end (``training_roidb``) or
  from precomputed proposals (``fast_rcnn_roidb``), with the bbox-target statistics a
  snapshot folds into ``bbox_pred``.

Explicit arguments only; the cfg is read by the callers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: the tops of the two kinds of RoIDataLayer
END_TO_END_TOPS = ("data", "im_info", "gt_boxes")
FAST_RCNN_TOPS = ("data", "rois", "labels", "bbox_targets", "bbox_inside_weights",
                  "bbox_outside_weights")


def is_fast_rcnn(data_tops: int, has_rpn: bool) -> bool:
    """Whether a RoIDataLayer with ``data_tops`` tops feeds a Fast R-CNN net (RoIs from
    precomputed proposals): six tops, or three with cfg TRAIN.HAS_RPN False (Fast R-CNN's
    data, rois, labels, without box regression), as py-faster-rcnn decides."""
    return data_tops == 6 or not has_rpn


def check_mode(fast: bool, ims_per_batch: int, has_proposals: bool, where: str,
               tops: int) -> None:
    """ValueError naming ``where`` (the data layer, with ``tops`` tops) when the run does
    not fit its kind: end to end takes one image per minibatch and no proposals (its RPN
    makes the RoIs); a Fast R-CNN net needs the dataset's proposals."""
    if fast:
        if not has_proposals:
            raise ValueError(f"{where} has {tops} tops: a Fast R-CNN net, trained from "
                             f"precomputed proposals; give them with --proposals FILE (see "
                             f"`frcnn proposals`), or param_str 'proposals' under plain "
                             f"`caffe train`")
        return
    if ims_per_batch != 1:
        raise ValueError(f"end-to-end training takes one image per minibatch; cfg "
                         f"TRAIN.IMS_PER_BATCH is {ims_per_batch}")
    if has_proposals:
        raise ValueError(f"proposals given, but {where} is end to end (three tops: an RPN "
                         f"makes the RoIs)")


@dataclass
class TrainingSet:
    """``roidb``: the entries RoIDataLayer draws from; ``means`` / ``stds``: for Fast R-CNN
    the (K, 4) bbox-target normalisation its targets were made with (the given one tiled,
    or the data's); None end to end (the cfg's applies)."""

    roidb: list[dict]
    means: np.ndarray | None = None
    stds: np.ndarray | None = None


def build_roidb(records: list[dict], num_classes: int, fast: bool, flip: bool, *,
                keep_empty: bool = False, use_difficult: bool = False,
                proposals: str | Path | None = None, fast_params: Any = None,
                normalize: bool = True, means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
                stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                precomputed: bool = True) -> TrainingSet:
    """The training roidb of a dataset's ``records``.

    End to end: ``frcnn.data.roidb.training_roidb`` (difficult objects dropped unless
    ``use_difficult``, images without objects kept as negatives with ``keep_empty``).
    Fast R-CNN: the ``proposals`` file (``frcnn.data.proposal_files``) matched to the
    records, RoIs sampled per ``fast_params`` (``frcnn.data.fast_rcnn.FastRCNNParams``),
    targets normalised (``normalize``) with ``means`` / ``stds`` when ``precomputed``, else
    with the data's per-class statistics, which the result carries for the snapshot.
    """
    from frcnn.data.roidb import training_roidb

    if not fast:
        return TrainingSet(training_roidb(records, num_classes, flip=flip,
                                          use_difficult=use_difficult, keep_empty=keep_empty))
    from frcnn.data.fast_rcnn import fast_rcnn_roidb
    from frcnn.data.proposal_files import load_proposals

    boxes = load_proposals(Path(proposals).expanduser().absolute(), [r["id"] for r in records],
                           [(r["width"], r["height"]) for r in records])
    roidb, k_means, k_stds = fast_rcnn_roidb(
        records, boxes, num_classes, flip, fast_params, use_difficult=use_difficult,
        normalize=normalize, stats=(tuple(means), tuple(stds)) if precomputed else None)
    return TrainingSet(roidb, k_means, k_stds)
