"""Benchmark: frcnn's NMS and bbox_overlaps against the numpy reference and peers.

Run:  python benchmarks/bench_nms.py [--sizes 2000,6000,12000,20000] [--thresh 0.7]
                                     [--json PATH]

Times, on the same random proposals and in one process: our Cython CPU NMS
(``frcnn.nms.nms_cpu``, the whole call: checks, stable score sort, kernel), our CUDA
NMS when a GPU is present, the numpy reference, and where importable
torchvision.ops.nms (CPU) and OpenCV's cv2.dnn.NMSBoxes.  Each figure is the best of
--repeat runs; "x ours" is that time divided by ours.  Then bbox_overlaps (Cython)
against a vectorised numpy version for 2,000 x 50 boxes.

Peers use exclusive corners, so they get x2 + 1, y2 + 1 (OpenCV gets x, y, w, h with
w = x2 - x1 + 1): the same IoU in exact arithmetic.  "same keep" says whether a peer
kept exactly our list (rounding and tie order may make it differ in rare cases).

Proposals: N boxes in a 1000 x 600 image, x1, y1 uniform, widths and heights uniform
in [16, 300], clipped to the image; scores uniform in [0, 1); float32.

--json PATH writes the figures (seconds): {"backends", "numpy", "thresh", "repeat",
"peers" ({name: {"version"} or {"missing": reason}}), "rows" ([{"n", "kept", "ours",
["gpu",] name: seconds, "same": {name: bool}}]), "overlaps" ({"n", "k", "ours", "numpy",
"same"})}; a peer or size not measured has no entry.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

import numpy as np

from frcnn import boxes as fboxes
from frcnn import nms as fnms

IMAGE_W, IMAGE_H = 1000, 600


def random_proposals(n: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """(n, 5) random proposals x1 y1 x2 y2 score, as described in the module docstring."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, IMAGE_W - 16, n)
    y1 = rng.uniform(0, IMAGE_H - 16, n)
    w = rng.uniform(16, 300, n)
    h = rng.uniform(16, 300, n)
    x2 = np.minimum(x1 + w - 1, IMAGE_W - 1)
    y2 = np.minimum(y1 + h - 1, IMAGE_H - 1)
    return np.stack([x1, y1, x2, y2, rng.random(n)], axis=1).astype(dtype)


def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time over `repeat` calls (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _peers(dets: np.ndarray, thresh: float, info: dict | None = None
           ) -> dict[str, Callable[[], np.ndarray]]:
    """Peer NMS callables over pre-converted inputs (conversion is not timed).  ``info``,
    when given, gets {name: {"version": ...}} or {name: {"missing": why}} per peer."""
    peers: dict[str, Callable[[], np.ndarray]] = {}
    info = {} if info is None else info
    try:
        import torch
        import torchvision

        info["torchvision"] = {"version": f"torch {torch.__version__}, torchvision "
                                          f"{torchvision.__version__}"}

        tb = torch.from_numpy(np.ascontiguousarray(dets[:, :4] + np.array([0, 0, 1, 1], dets.dtype)))
        ts = torch.from_numpy(np.ascontiguousarray(dets[:, 4]))
        peers["torchvision"] = lambda: torchvision.ops.nms(tb, ts, thresh).numpy()
    except Exception as e:  # not installed or broken install: skip the peer
        info["torchvision"] = {"missing": f"{type(e).__name__}: {e}"}
    try:
        import cv2

        info["opencv"] = {"version": f"opencv {cv2.__version__}"}

        rects = np.ascontiguousarray(np.stack(
            [dets[:, 0], dets[:, 1], dets[:, 2] - dets[:, 0] + 1, dets[:, 3] - dets[:, 1] + 1],
            axis=1).astype(np.float64))
        scores = np.ascontiguousarray(dets[:, 4].astype(np.float32))
        peers["opencv"] = lambda: np.asarray(
            cv2.dnn.NMSBoxes(rects, scores, 0.0, thresh), dtype=np.int64).reshape(-1)
    except Exception as e:
        info["opencv"] = {"missing": f"{type(e).__name__}: {e}"}
    return peers


def bench_nms(sizes: list[int], thresh: float, repeat: int, seed: int,
              reference_max: int, out=sys.stdout, peers: dict | None = None) -> list[dict]:
    """Time every available NMS on each size; print and return the rows (``peers``, when
    given, gets what ``_peers`` says about each peer)."""
    rows = []
    gpu = "gpu" in fnms.available_backends()
    header = f"{'N':>7} {'kept':>6} {'ours cpu ms':>12}"
    if gpu:
        header += f" {'ours gpu ms':>12} {'x ours':>7}"
    names = ["numpy ref", "torchvision", "opencv"]
    for name in names:
        header += f" {name + ' ms':>15} {'x ours':>7} {'same keep':>9}"
    print(f"NMS at IoU {thresh}, random proposals (float32), best of {repeat}", file=out)
    print(header, file=out)
    for n in sizes:
        dets = random_proposals(n, seed)
        t_ours, keep = best_time(lambda: fnms.nms_cpu(dets, thresh), repeat)
        row = {"n": n, "kept": len(keep), "ours": t_ours, "same": {}}
        line = f"{n:>7} {len(keep):>6} {t_ours * 1e3:>12.2f}"
        if gpu:
            fnms.nms_gpu(dets, thresh)  # warm-up: CUDA context
            t_gpu, kg = best_time(lambda: fnms.nms_gpu(dets, thresh), repeat)
            row["gpu"] = t_gpu
            line += f" {t_gpu * 1e3:>12.2f} {t_gpu / t_ours:>7.2f}"
        impls = {}
        if n <= reference_max:
            impls["numpy ref"] = lambda: fnms.nms_reference(dets, thresh)
        impls.update(_peers(dets, thresh, peers))
        for name in names:
            if name not in impls:
                line += f" {'-':>15} {'-':>7} {'-':>9}"
                continue
            reps = 1 if name == "numpy ref" else repeat
            t, k = best_time(impls[name], reps)
            same = np.array_equal(np.asarray(k, dtype=np.int64), keep)
            row[name] = t
            row["same"][name] = bool(same)
            line += f" {t * 1e3:>15.2f} {t / t_ours:>7.2f} {'yes' if same else 'no':>9}"
        print(line, file=out, flush=True)
        rows.append(row)
    return rows


def bench_overlaps(n: int, k: int, repeat: int, seed: int, out=sys.stdout) -> dict:
    """bbox_overlaps (Cython) against the vectorised numpy reference, n x k boxes."""
    a = random_proposals(n, seed, np.float64)[:, :4]
    b = random_proposals(k, seed + 1, np.float64)[:, :4]
    t_ours, o1 = best_time(lambda: fboxes.bbox_overlaps(a, b), repeat)
    t_np, o2 = best_time(lambda: fboxes.bbox_overlaps_reference(a, b), repeat)
    same = np.array_equal(o1, o2)
    print(f"bbox_overlaps {n} x {k}: ours {t_ours * 1e3:.3f} ms, numpy {t_np * 1e3:.3f} ms "
          f"({t_np / t_ours:.1f}x ours), identical: {'yes' if same else 'no'}", file=out)
    return {"n": n, "k": k, "ours": t_ours, "numpy": t_np, "same": bool(same)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_nms", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,6000,12000,20000",
                        help="comma-separated box counts (default 2000,6000,12000,20000)")
    parser.add_argument("--thresh", type=float, default=0.7, help="IoU threshold (default 0.7)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure, best taken")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-max", type=int, default=20000,
                        help="skip the (slow) numpy reference above this N")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"backends: {', '.join(fnms.available_backends())}; numpy {np.__version__}")
    peers: dict = {}
    rows = bench_nms(sizes, args.thresh, args.repeat, args.seed, args.reference_max,
                     peers=peers)
    overlaps = bench_overlaps(2000, 50, max(args.repeat, 20), args.seed)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backends": list(fnms.available_backends()), "numpy": np.__version__,
                       "thresh": args.thresh, "repeat": args.repeat, "seed": args.seed,
                       "peers": peers, "rows": rows, "overlaps": overlaps}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
