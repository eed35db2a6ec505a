"""Reading the cfg into the explicit parameters of the RPN and RoI-target cores.

These are the edges: Caffe layers call them at setup, once.
"""
from __future__ import annotations

from easydict import EasyDict

from frcnn.proposals import ProposalParams
from frcnn.targets import AnchorTargetParams, RoISamplingParams


def anchor_target_params(cfg: EasyDict, allowed_border: int) -> AnchorTargetParams:
    t = cfg.TRAIN
    return AnchorTargetParams(
        positive_overlap=t.RPN_POSITIVE_OVERLAP, negative_overlap=t.RPN_NEGATIVE_OVERLAP,
        clobber_positives=t.RPN_CLOBBER_POSITIVES, fg_fraction=t.RPN_FG_FRACTION,
        batch_size=t.RPN_BATCHSIZE, positive_weight=t.RPN_POSITIVE_WEIGHT,
        inside_weights=tuple(t.RPN_BBOX_INSIDE_WEIGHTS), allowed_border=allowed_border)


def proposal_params(cfg: EasyDict, phase: str) -> ProposalParams:
    """phase: 'TRAIN' or 'TEST'."""
    c = cfg[phase]
    return ProposalParams(pre_nms_top_n=c.RPN_PRE_NMS_TOP_N, post_nms_top_n=c.RPN_POST_NMS_TOP_N,
                          nms_thresh=c.RPN_NMS_THRESH, min_size=c.RPN_MIN_SIZE)


def roi_sampling_params(cfg: EasyDict) -> RoISamplingParams:
    t = cfg.TRAIN
    if not t.BBOX_NORMALIZE_TARGETS_PRECOMPUTED:
        raise ValueError("end-to-end training needs TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED "
                         "True (targets are normalised with the fixed MEANS and STDS)")
    return RoISamplingParams(
        batch_size=t.BATCH_SIZE, fg_fraction=t.FG_FRACTION, fg_thresh=t.FG_THRESH,
        bg_thresh_hi=t.BG_THRESH_HI, bg_thresh_lo=t.BG_THRESH_LO,
        normalize_means=tuple(t.BBOX_NORMALIZE_MEANS), normalize_stds=tuple(t.BBOX_NORMALIZE_STDS),
        normalize=bool(t.BBOX_NORMALIZE_TARGETS), inside_weights=tuple(t.BBOX_INSIDE_WEIGHTS))
