"""Whole-detector inference time per image, split into stages.

One image per forward (data (1, 3, H, W), im_info [H, W, 1]), random weights and a random
image; each run times every layer of the test net (``nets.forward_layers``) and then the
post-processing of py-faster-rcnn's test path on the net's outputs: ``decode_boxes`` (rois
and per-class deltas to clipped boxes) and ``select_detections`` (per-class score
threshold TEST.SCORE_THRESH, NMS at TEST.NMS, at most TEST.MAX_PER_IMAGE).  After
``warmup`` untimed runs, ``repeats`` timed runs give the medians.

Stages: backbone, rpn (RPN convolutions and softmax), proposal (the Python proposal
layer), roi_head (RoI pooling to cls_prob / bbox_pred), post (post-processing); the total
is the median of the per-run sums (so stage medians need not add up to it exactly).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from frcnn.bench import nets as bnets
from frcnn.bench.arithmetic import layer_macs

STAGES = ("backbone", "rpn", "proposal", "roi_head", "post")


def postprocess(net: Any, im_shape: tuple[int, int], score_thresh: float, nms_thresh: float,
                max_per_image: int) -> list[np.ndarray]:
    """Detections from a test net's outputs (rois (R, 5), cls_prob (R, K), bbox_pred
    (R, 4K)); im_info scale 1, so boxes are in input pixels.  K arrays (D_k, 5)."""
    from frcnn.detection import decode_boxes, select_detections

    rois = net.blobs["rois"].data.copy()
    scores = net.blobs["cls_prob"].data.copy().reshape(len(rois), -1)
    deltas = net.blobs["bbox_pred"].data.copy().reshape(len(rois), -1)
    boxes = decode_boxes(rois, deltas, 1.0, im_shape)
    return select_detections(scores, boxes, score_thresh=score_thresh, nms_thresh=nms_thresh,
                             max_per_image=max_per_image, device_id=-1)


def _median_ms(values: np.ndarray) -> float:
    return float(np.median(values) * 1e3)


def bench_inference(label: str, variant: Any, size: tuple[int, int], repeats: int,
                    warmup: int = 1, seed: int = 0, overrides: Mapping | None = None,
                    log: Callable[[str], None] | None = None) -> dict:
    """Time ``variant``'s test net on an image of ``size`` (height, width).

    Returns a JSON-able dict: net, variant, size, runs, warmup, ms (median per stage),
    rpn_proposal_ms, total_ms, total_runs_ms, python_ms, python_layers_ms, macs (per
    stage), total_macs, rois, detections, feature_blob, top_layers ([name, ms], slowest
    first).
    """
    h, w = size
    with bnets.variant_cfg(variant, overrides) as cfg:
        net = bnets.load_net(bnets.variant_net_param(variant, "test"), "TEST")
        bnets.randomize(net, seed)
        lay = bnets.layout(net)
        bnets.set_inputs(net, bnets.random_image(np.random.default_rng(seed), h, w))
        net._forward(0, lay.names.index(bnets.PROPOSAL_LAYER))
        if net.blobs["rois"].data.shape[0] == 0:  # Caffe would divide by zero further on
            raise RuntimeError(f"{label} {h}x{w}: the proposal layer kept no RoI")
        settings = (float(cfg.TEST.SCORE_THRESH), float(cfg.TEST.NMS),
                    int(cfg.TEST.MAX_PER_IMAGE))
        layer_s = np.zeros((repeats, len(lay.names)))
        post_s = np.zeros(repeats)
        scratch = np.zeros(len(lay.names))
        for run in range(warmup + repeats):
            bnets.forward_layers(net, scratch)
            t = time.perf_counter()
            dets = postprocess(net, (h, w), *settings)
            post = time.perf_counter() - t
            if run >= warmup:
                layer_s[run - warmup] = scratch
                post_s[run - warmup] = post
        macs = layer_macs(net)
        rois = int(net.blobs["rois"].data.shape[0])
    stage_runs = {s: layer_s[:, lay.indices(s)].sum(axis=1) for s in STAGES if s != "post"}
    stage_runs["post"] = post_s
    totals = layer_s.sum(axis=1) + post_s
    python_runs = layer_s[:, lay.python_layers].sum(axis=1)
    layer_ms = np.median(layer_s, axis=0) * 1e3
    slowest = np.argsort(-layer_ms)[:5]
    stage_macs = {s: int(sum(macs.get(lay.names[i], 0) for i in lay.indices(s)))
                  for s in STAGES if s != "post"}
    result = {
        "net": label, "variant": variant.name, "size": [h, w], "runs": repeats,
        "warmup": warmup,
        "ms": {s: _median_ms(v) for s, v in stage_runs.items()},
        "rpn_proposal_ms": _median_ms(stage_runs["rpn"] + stage_runs["proposal"]),
        "total_ms": _median_ms(totals),
        "total_runs_ms": [float(v * 1e3) for v in totals],
        "python_ms": _median_ms(python_runs),
        "python_layers_ms": {lay.names[i]: float(layer_ms[i]) for i in lay.python_layers},
        "macs": stage_macs, "total_macs": int(sum(stage_macs.values())),
        "rois": rois, "detections": int(sum(len(d) for d in dets)),
        "feature_blob": lay.feature_blob,
        "top_layers": [[lay.names[i], float(layer_ms[i])] for i in slowest],
    }
    if log:
        log(f"  {label} {h}x{w}: total {result['total_ms']:.1f} ms (median of {repeats}; "
            + ", ".join(f"{s} {result['ms'][s]:.1f}" for s in STAGES) + ")")
    return result
