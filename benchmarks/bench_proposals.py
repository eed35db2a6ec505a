"""Benchmark: the RPN ProposalLayer against the straightforward proposal pipeline.

Run:  python benchmarks/bench_proposals.py [--repeat 21] [--ref-repeat 5] [--net]
                                           [--json PATH]

Times, in one process and on the same input, ms per call (median of the repeats):

* ours: ``rpn.proposal_layer.ProposalLayer`` (the real layer class, made with
  ``frcnn.testing.make_layer`` on ``NumpyBlob`` bottoms and tops) in the TEST phase
  (pre-NMS top 6000 -> NMS 0.7 -> 300) and the TRAIN phase (12000 -> NMS 0.7 -> 2000),
  with the default cfg;
* straightforward: decode and clip every anchor, drop the small ones, stable-sort all
  survivors by score, take the pre-NMS top N, NMS, cut to the post-NMS top N; once with
  the project's Cython NMS (``nms_cpu``, no early stop) and once with the numpy
  reference NMS (``nms_reference``, as in the tests).  "same" says whether the layer's
  rois are exactly the reference's (same boxes, same order).

Input: a 38 x 63 feature map of a 600 x 1000 input blob (scale 1.6), A = 9 anchors
(ratios 0.5, 1, 2 x scales 8, 16, 32, stride 16), "peaked" scores: the softmax of random
logits where most anchors are clearly background and a few clusters (objects) score high;
deltas normal(0, 0.2); float32 blobs, as Caffe gives them.

--net also times the SqueezeNet Faster R-CNN test net
(prototxts/squeezenet/faster_rcnn_end2end/test.prototxt; random weights from its fillers)
at 1 x 3 x 600 x 1000, layer by layer (``net._forward(i, i)``), and prints the Python
layers' share of the forward time.

--json PATH writes {"repeat", "ref_repeat", "layer": [rows: phase, pre_nms_top_n,
post_nms_top_n, rois, ours_ms, straightforward_cython_ms, straightforward_numpy_ms, same],
"net": {forward_ms, layers_ms, python_ms, python_share} or null}.

For scale (issue 10, not measured by this script): py-faster-rcnn's own ProposalLayer with
its Cython NMS took 137 ms (TEST) and 355 ms (TRAIN) on this input on the same machine; the
goals are <= 27 ms and <= 70 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
os.environ.setdefault("GLOG_minloglevel", "2")

from frcnn.anchors import generate_anchors, shifted_anchors  # noqa: E402
from frcnn.boxes import bbox_transform_inv, clip_boxes  # noqa: E402
from frcnn.config import cfg  # noqa: E402
from frcnn.nms import nms_cpu, nms_reference  # noqa: E402
from frcnn.proposals import map_to_anchor_order  # noqa: E402
from frcnn.testing import NumpyBlob, make_layer  # noqa: E402

HEIGHT, WIDTH, NUM_ANCHORS = 38, 63, 9
IM_INFO = (600.0, 1000.0, 1.6)
NET = os.path.join(ROOT, "prototxts", "squeezenet", "faster_rcnn_end2end", "test.prototxt")
GOALS_MS = {"TEST": 27.0, "TRAIN": 70.0}


def peaked_rpn_outputs(seed: int = 0, height: int = HEIGHT, width: int = WIDTH,
                       num_anchors: int = NUM_ANCHORS, clusters: int = 12
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Realistic RPN outputs: (1, 2A, H, W) softmax probabilities and (1, 4A, H, W) deltas.

    Background/foreground logits: fg - bg ~ normal(-4, 1.5) everywhere (most anchors are
    clearly background), plus `clusters` objects, each lifting a few anchor shapes in a
    Gaussian neighbourhood of its centre by up to 10.  The probabilities are the softmax
    over the two classes (channels 0..A-1 background, A..2A-1 foreground, as Caffe's
    rpn_cls_prob_reshape), float32.
    """
    rng = np.random.default_rng(seed)
    margin = rng.normal(-4.0, 1.5, size=(num_anchors, height, width))
    ys, xs = np.mgrid[0:height, 0:width]
    for _ in range(clusters):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(1.0, 4.0)
        bump = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius ** 2))
        shapes = rng.choice(num_anchors, size=rng.integers(1, 4), replace=False)
        margin[shapes] += rng.uniform(6.0, 10.0) * bump
    fg = 1.0 / (1.0 + np.exp(-margin))
    probs = np.concatenate([1.0 - fg, fg])[None].astype(np.float32)
    deltas = rng.normal(0.0, 0.2, size=(1, 4 * num_anchors, height, width)).astype(np.float32)
    return probs, deltas


def straightforward(fg_scores: np.ndarray, bbox_deltas: np.ndarray, anchors: np.ndarray,
                    im_info: tuple[float, float, float], pre_nms_top_n: int,
                    post_nms_top_n: int, nms_thresh: float, min_size: float,
                    nms_fn: Callable = nms_cpu) -> tuple[np.ndarray, np.ndarray]:
    """The plain proposal pipeline: every anchor decoded, one full stable sort, full NMS.

    fg_scores (1, A, H, W), bbox_deltas (1, 4A, H, W), anchors (H * W * A, 4) in anchor
    order -> boxes (R, 4) float32, scores (R,) float32 by descending score.
    """
    scores = map_to_anchor_order(fg_scores, 1)[:, 0]
    deltas = map_to_anchor_order(bbox_deltas, 4)
    boxes = clip_boxes(bbox_transform_inv(anchors, deltas), im_info[:2])
    widths = boxes[:, 2] - boxes[:, 0] + 1
    heights = boxes[:, 3] - boxes[:, 1] + 1
    keep = (widths >= min_size * im_info[2]) & (heights >= min_size * im_info[2])
    boxes, scores = boxes[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")[:pre_nms_top_n]
    boxes, scores = boxes[order], scores[order]
    dets = np.hstack([boxes, scores[:, None]]).astype(np.float32)
    keep = nms_fn(dets, nms_thresh)[:post_nms_top_n]
    return boxes[keep].astype(np.float32), scores[keep]


def median_ms(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median wall time of `repeat` calls in ms (after one untimed warm-up call) and the
    last result."""
    out = fn()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3, out


def bench_layer(repeat: int, ref_repeat: int, seed: int, out=sys.stdout) -> list[dict]:
    """Time the ProposalLayer (TEST, TRAIN) and the references; print and return rows."""
    from rpn.proposal_layer import ProposalLayer

    probs, deltas = peaked_rpn_outputs(seed)
    im_info = np.array([IM_INFO], np.float32)
    anchors = shifted_anchors(generate_anchors(), HEIGHT, WIDTH, 16)
    fg = probs[:, NUM_ANCHORS:]
    print(f"ProposalLayer, {HEIGHT} x {WIDTH} map, A = {NUM_ANCHORS} "
          f"({len(anchors)} anchors), input {IM_INFO[0]:.0f} x {IM_INFO[1]:.0f}, "
          f"peaked scores; ms per call, median of {repeat} (references: {ref_repeat})",
          file=out)
    print(f"{'phase':<6} {'top-N':>12} {'rois':>5} {'ours ms':>8} {'goal':>5} "
          f"{'straightf. cython-NMS ms':>25} {'x':>6} {'same':>5} "
          f"{'straightf. numpy-NMS ms':>24} {'x':>6} {'same':>5}", file=out)
    rows = []
    for phase in ("TEST", "TRAIN"):
        c = cfg[phase]
        layer = make_layer(ProposalLayer, "'feat_stride': 16", phase=phase)
        bottom = [NumpyBlob(probs), NumpyBlob(deltas), NumpyBlob(im_info)]
        top = [NumpyBlob(), NumpyBlob()]
        layer.setup(bottom, top)

        def ours():
            layer.forward(bottom, top)
            return top[0].data[:, 1:].copy()

        t_ours, rois = median_ms(ours, repeat)
        args = (fg, deltas, anchors, IM_INFO, c.RPN_PRE_NMS_TOP_N, c.RPN_POST_NMS_TOP_N,
                c.RPN_NMS_THRESH, c.RPN_MIN_SIZE)
        t_cy, (ref_cy, _) = median_ms(lambda: straightforward(*args, nms_fn=nms_cpu), repeat)
        t_np, (ref_np, _) = median_ms(lambda: straightforward(*args, nms_fn=nms_reference),
                                      ref_repeat)
        same_cy, same_np = np.array_equal(rois, ref_cy), np.array_equal(rois, ref_np)
        topn = f"{c.RPN_PRE_NMS_TOP_N}->{c.RPN_POST_NMS_TOP_N}"
        print(f"{phase:<6} {topn:>12} {len(rois):>5} {t_ours:>8.2f} {GOALS_MS[phase]:>5.0f} "
              f"{t_cy:>25.2f} {t_cy / t_ours:>6.1f} {'yes' if same_cy else 'NO':>5} "
              f"{t_np:>24.2f} {t_np / t_ours:>6.1f} {'yes' if same_np else 'NO':>5}",
              file=out, flush=True)
        rows.append({"phase": phase, "pre_nms_top_n": int(c.RPN_PRE_NMS_TOP_N),
                     "post_nms_top_n": int(c.RPN_POST_NMS_TOP_N), "rois": len(rois),
                     "ours_ms": t_ours,
                     "straightforward_cython_ms": t_cy, "straightforward_numpy_ms": t_np,
                     "same": same_cy and same_np})
    return rows


def bench_net(repeat: int, seed: int, out=sys.stdout) -> dict:
    """Per-layer forward times of the SqueezeNet test net at 600 x 1000; Python share."""
    import caffe

    caffe.set_mode_cpu()
    net = caffe.Net(NET, caffe.TEST)
    rng = np.random.default_rng(seed)
    net.blobs["data"].data[...] = rng.normal(0, 50, net.blobs["data"].data.shape)
    net.blobs["im_info"].data[...] = np.array([IM_INFO], np.float32)
    names = list(net._layer_names)
    types = [layer.type for layer in net.layers]
    net.forward()  # warm-up
    whole, per_layer = [], np.zeros((max(1, repeat), len(names)))
    for r in range(max(1, repeat)):
        t0 = time.perf_counter()
        net.forward()
        whole.append(time.perf_counter() - t0)
        for i in range(len(names)):
            t0 = time.perf_counter()
            net._forward(i, i)
            per_layer[r, i] = time.perf_counter() - t0
    per_layer_ms = np.median(per_layer, axis=0) * 1e3
    total_ms = float(np.median(whole)) * 1e3
    layers_ms = float(per_layer_ms.sum())
    python = [i for i, t in enumerate(types) if t == "Python"]
    python_ms = float(per_layer_ms[python].sum())
    probs = net.blobs["rpn_cls_prob_reshape"].data.shape
    print(f"\nSqueezeNet test net, data 1 x 3 x 600 x 1000 (RPN map {probs[2]} x {probs[3]}), "
          f"random filler weights, median of {repeat}:", file=out)
    print(f"  net.forward(): {total_ms:.1f} ms; sum of per-layer medians: {layers_ms:.1f} ms",
          file=out)
    for i in python:
        print(f"  Python layer {names[i]!r}: {per_layer_ms[i]:.2f} ms "
              f"({net.blobs[net.top_names[names[i]][0]].data.shape[0]} rois)", file=out)
    print(f"  Python layers together: {python_ms:.2f} ms = "
          f"{100 * python_ms / layers_ms:.2f}% of the layers' time (goal < 5%)", file=out)
    slowest = np.argsort(-per_layer_ms)[:5]
    print("  slowest layers: " + ", ".join(f"{names[i]} {per_layer_ms[i]:.1f}" for i in slowest),
          file=out, flush=True)
    return {"forward_ms": total_ms, "layers_ms": layers_ms, "python_ms": python_ms,
            "python_share": python_ms / layers_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_proposals", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=21, help="timed calls per figure")
    parser.add_argument("--ref-repeat", type=int, default=5,
                        help="timed calls of the (slow) numpy-NMS reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--net", action="store_true",
                        help="also time the SqueezeNet test net and the Python layers' share")
    parser.add_argument("--net-repeat", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    print(f"numpy {np.__version__}")
    rows = bench_layer(args.repeat, args.ref_repeat, args.seed)
    net = bench_net(args.net_repeat, args.seed) if args.net else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"repeat": args.repeat, "ref_repeat": args.ref_repeat,
                       "net_repeat": args.net_repeat if args.net else None, "layer": rows,
                       "net": net}, f, indent=2)
            f.write("\n")
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
