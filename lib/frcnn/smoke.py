"""A short smoke job through the project's Caffe: ``caffe train`` on a tiny net that uses a
Python data layer, ``ROIPooling`` and ``SmoothL1Loss``.

The data layer draws an image with one bright square and regions of interest around it;
the net regresses, for each region, the offset from the region's centre to the square's
centre (in region widths).  A working build trains it: the loss falls.

This module imports pycaffe at import time: it is only loaded by Caffe (as the Python layer
``frcnn.smoke.SmokeDataLayer``) and by ``frcnn smoke``, which runs ``caffe`` in a subprocess.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

IMAGE_SIZE = 64
NUM_ROIS = 16

NET = """name: "frcnn_smoke"
layer {{ name: "data" type: "Python" top: "data" top: "rois" top: "targets"
  top: "inside_weights" top: "outside_weights"
  python_param {{ module: "frcnn.smoke" layer: "SmokeDataLayer" param_str: "'seed': {seed}" }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 16 kernel_size: 3 pad: 1 stride: 2
    weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "roi_pool" type: "ROIPooling" bottom: "conv1" bottom: "rois" top: "pool"
  roi_pooling_param {{ pooled_h: 4 pooled_w: 4 spatial_scale: 0.5 }} }}
layer {{ name: "pred" type: "InnerProduct" bottom: "pool" top: "pred"
  inner_product_param {{ num_output: 4 weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "loss" type: "SmoothL1Loss" bottom: "pred" bottom: "targets"
  bottom: "inside_weights" bottom: "outside_weights" top: "loss"
  smooth_l1_loss_param {{ sigma: 1.0 }} }}
"""

SOLVER = """net: "{net}"
base_lr: 0.01
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
display: 10
max_iter: {iters}
snapshot: 0
snapshot_after_train: false
solver_mode: CPU
random_seed: {seed}
"""


def make_sample(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One training sample of the smoke task.

    Returns data (1, 3, S, S) float32, rois (R, 5) [0, x1, y1, x2, y2] inclusive pixels,
    targets (R, 4) (dx, dy, 0, 0) = square centre minus roi centre over roi width/height,
    and inside/outside weights (R, 4).
    """
    s = IMAGE_SIZE
    side = int(rng.integers(12, 24))
    x1, y1 = (int(v) for v in rng.integers(0, s - side, size=2))
    image = rng.normal(0.0, 0.1, size=(3, s, s)).astype(np.float32)
    image[:, y1:y1 + side, x1:x1 + side] += 1.0
    cx, cy = x1 + (side - 1) / 2.0, y1 + (side - 1) / 2.0

    jitter = rng.uniform(-0.5, 0.5, size=(NUM_ROIS, 2)) * side
    widths = rng.uniform(0.8, 1.3, size=NUM_ROIS) * side
    rx1 = np.clip(x1 + jitter[:, 0], 0, s - 2)
    ry1 = np.clip(y1 + jitter[:, 1], 0, s - 2)
    rx2 = np.clip(rx1 + widths - 1, rx1 + 1, s - 1)
    ry2 = np.clip(ry1 + widths - 1, ry1 + 1, s - 1)
    w, h = rx2 - rx1 + 1, ry2 - ry1 + 1
    rois = np.stack([np.zeros(NUM_ROIS), rx1, ry1, rx2, ry2], axis=1).astype(np.float32)
    targets = np.zeros((NUM_ROIS, 4), np.float32)
    targets[:, 0] = (cx - (rx1 + 0.5 * (w - 1))) / w
    targets[:, 1] = (cy - (ry1 + 0.5 * (h - 1))) / h
    inside = np.zeros((NUM_ROIS, 4), np.float32)
    inside[:, :2] = 1.0
    outside = inside.copy()
    return {"data": image[None], "rois": rois, "targets": targets,
            "inside_weights": inside, "outside_weights": outside}


try:
    import caffe
except ImportError:  # the sample generator above stays usable without pycaffe
    caffe = None

if caffe is not None:

    class SmokeDataLayer(caffe.Layer):
        """Python data layer of the smoke net; param_str: ``'seed': <int>``."""

        _TOPS = ("data", "rois", "targets", "inside_weights", "outside_weights")

        def setup(self, bottom, top):
            import yaml

            params = yaml.safe_load(self.param_str or "{}") or {}
            unknown = set(params) - {"seed"}
            if unknown:
                raise ValueError(f"SmokeDataLayer: unknown param_str keys {sorted(unknown)}")
            if len(top) != len(self._TOPS):
                raise ValueError(f"SmokeDataLayer: needs {len(self._TOPS)} tops {self._TOPS}")
            self._rng = np.random.default_rng(int(params.get("seed", 0)))
            self._sample = make_sample(self._rng)

        def reshape(self, bottom, top):
            for i, name in enumerate(self._TOPS):
                top[i].reshape(*self._sample[name].shape)

        def forward(self, bottom, top):
            for i, name in enumerate(self._TOPS):
                top[i].data[...] = self._sample[name]
            self._sample = make_sample(self._rng)

        def backward(self, top, propagate_down, bottom):
            pass


_LOSS_LINE = re.compile(r"Iteration (\d+).*?, loss = ([-+0-9.eE]+|nan|inf)")


def run(out_dir: str | os.PathLike, iters: int = 60, seed: int = 3,
        gpu: int | None = None) -> tuple[float, float]:
    """Write the smoke net and solver into ``out_dir`` and train them with ``caffe train``.

    Returns (first loss, last loss).  Raises RuntimeError if caffe fails, a loss is not
    finite, or the loss does not fall.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net_path = out / "smoke_net.prototxt"
    solver_path = out / "smoke_solver.prototxt"
    net_path.write_text(NET.format(seed=seed))
    solver_path.write_text(SOLVER.format(net=net_path, iters=iters, seed=seed))
    caffe_cmd = Path(sys.executable).with_name("caffe")
    cmd = [str(caffe_cmd if caffe_cmd.exists() else "caffe"), "train", f"--solver={solver_path}"]
    if gpu is not None:  # caffe's own -gpu flag (the solver says CPU)
        cmd.append(f"--gpu={gpu}")
    print(f"[smoke] {' '.join(cmd)}", flush=True)
    start = time.time()
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")  # losses are INFO lines
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = proc.stdout + proc.stderr
    (out / "caffe_train.log").write_text(log)
    if proc.returncode != 0:
        raise RuntimeError(f"caffe train failed (exit {proc.returncode}); log in "
                           f"{out / 'caffe_train.log'}:\n" + "\n".join(log.splitlines()[-15:]))
    losses = [(int(m.group(1)), float(m.group(2))) for m in _LOSS_LINE.finditer(log)]
    if len(losses) < 2:
        raise RuntimeError(f"no loss lines in the caffe log {out / 'caffe_train.log'}")
    for it, loss in losses:
        print(f"[smoke] iteration {it:4d}  loss {loss:.4f}", flush=True)
    first, last = losses[0][1], losses[-1][1]
    if not all(np.isfinite(l) for _, l in losses):
        raise RuntimeError("a loss became NaN or inf in the smoke job")
    if not last < first:
        raise RuntimeError(f"the smoke job's loss did not fall ({first:.4f} -> {last:.4f})")
    print(f"[smoke] OK: caffe train through Python, ROIPooling and SmoothL1Loss layers, "
          f"loss {first:.4f} -> {last:.4f} in {iters} iterations, {time.time() - start:.1f}s",
          flush=True)
    return first, last
