"""Training time per iteration (one image: forward + backward), Python layers separately.

The train net's RoIDataLayer is replaced by an Input layer (data (1, 3, H, W), im_info
[H, W, 1], three gt boxes), so an iteration is timed on a fixed random image with random
weights, with the variant's cfg (OHEM nets: TRAIN.BATCH_SIZE -1).  Each run clears the
parameter diffs (untimed), then times every layer's forward and backward.  The solver's
weight update is not included; with the solvers' iter_size 2 a solver step is two such
iterations plus one update.

The RoIDataLayer itself (read a JPEG, scale it, build the blobs) is timed on its own by
``bench_data_layer`` on a small synthetic dataset written to a temporary folder, when
``roi_data_layer.layer.RoIDataLayer`` imports; otherwise it is reported as not measured.
"""
from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from frcnn.bench import nets as bnets

STAGES = bnets.STAGES


def _median_ms(values: np.ndarray) -> float:
    return float(np.median(values) * 1e3)


def bench_training(label: str, variant: Any, size: tuple[int, int], repeats: int,
                   warmup: int = 1, seed: int = 0, overrides: Mapping | None = None,
                   log: Callable[[str], None] | None = None) -> dict:
    """Time ``variant``'s train net on an image of ``size`` (height, width).

    Returns a JSON-able dict: net, variant, size, runs, warmup, total_ms (forward +
    backward, median), forward_ms, backward_ms, ms (per stage, forward + backward),
    python_layers_ms ({layer: forward + backward ms}), python_ms, rois (RoIs from the
    proposal target layer: into the RoI head, or into the OHEM read-only branch),
    hard_rois (OHEM: RoIs into the trained head; else None), notes.
    """
    h, w = size
    with bnets.variant_cfg(variant, overrides):
        gt = bnets.example_gt_boxes(h, w, variant.num_classes)
        param = bnets.with_input_layers(bnets.variant_net_param(variant, "train"), {
            "data": (1, 3, h, w), "im_info": (1, 3), "gt_boxes": gt.shape})
        notes = bnets.fix_ohem_module(param)
        net = bnets.load_net(param, "TRAIN")
        bnets.randomize(net, seed)
        lay = bnets.layout(net)
        bnets.set_inputs(net, bnets.random_image(np.random.default_rng(seed), h, w), gt)
        n = len(lay.names)
        fwd, bwd = np.zeros((repeats, n)), np.zeros((repeats, n))
        f, b = np.zeros(n), np.zeros(n)
        for run in range(warmup + repeats):
            net.clear_param_diffs()
            bnets.forward_layers(net, f)
            bnets.backward_layers(net, b)
            if run >= warmup:
                fwd[run - warmup], bwd[run - warmup] = f, b
        rois = int(net.blobs["rois"].data.shape[0])
        hard = int(net.blobs["rois_hard"].data.shape[0]) if "rois_hard" in net.blobs else None
    both = fwd + bwd
    python = {lay.names[i]: _median_ms(both[:, i]) for i in lay.python_layers}
    result = {
        "net": label, "variant": variant.name, "size": [h, w], "runs": repeats,
        "warmup": warmup,
        "total_ms": _median_ms(both.sum(axis=1)),
        "forward_ms": _median_ms(fwd.sum(axis=1)),
        "backward_ms": _median_ms(bwd.sum(axis=1)),
        "ms": {s: _median_ms(both[:, lay.indices(s)].sum(axis=1)) for s in STAGES},
        "python_layers_ms": python,
        "python_ms": _median_ms(both[:, lay.python_layers].sum(axis=1)),
        "rois": rois, "hard_rois": hard, "notes": notes,
    }
    if log:
        log(f"  {label} {h}x{w}: forward + backward {result['total_ms']:.1f} ms (median of "
            f"{repeats}); Python layers " + ", ".join(f"{k} {v:.1f}" for k, v in python.items()))
    return result


def _synth_dataset(folder: Path, size: tuple[int, int], images: int) -> None:
    """A small synthetic VOC folder of half-size images (they scale up to ``size``, or one
    pixel less for an odd side)."""
    from frcnn.data.synth import SynthOptions, write_synth_dataset

    h, w = max(32, size[0] // 2), max(32, size[1] // 2)
    biggest = max(8, min(96, min(h, w) // 2))
    opts = SynthOptions(num_train=images, num_test=0, height=h, width=w,
                        min_object=min(24, biggest), max_object=biggest)
    write_synth_dataset(folder, opts, log=None)


def bench_data_layer(size: tuple[int, int], repeats: int, warmup: int = 1, seed: int = 0,
                     images: int = 4, log: Callable[[str], None] | None = None) -> dict:
    """Time roi_data_layer.layer.RoIDataLayer's forward (one image scaled to ``size``).

    Returns {'measured': True, 'ms' (median), 'runs', 'size'} or {'measured': False,
    'reason'} when the layer does not import or fails to set up.
    """
    h, w = size
    try:
        importlib.import_module("roi_data_layer.layer").RoIDataLayer  # noqa: B018
    except Exception as e:  # not written yet, or broken: report, do not fail the benchmark
        return {"measured": False, "reason": f"roi_data_layer.layer.RoIDataLayer: {e}"}
    import time

    with tempfile.TemporaryDirectory(prefix="frcnn-bench-data-") as tmp:
        folder = Path(tmp) / "synth"
        try:
            _synth_dataset(folder, size, images)
            params = (f"'num_classes': 4\\n'dataset': '{folder}'\\n'flip': False\\n"
                      f"'prefetch': False\\n'aspect_grouping': False\\n'scales': [{h}]\\n"
                      f"'max_size': {w}\\n'seed': {seed}")
            text = ('layer { name: "input-data" type: "Python" top: "data" top: "im_info" '
                    'top: "gt_boxes" python_param { module: "roi_data_layer.layer" '
                    f'layer: "RoIDataLayer" param_str: "{params}" }} }}\n')
            net = bnets.load_net(bnets.net_param_from_text(text), "TRAIN")
            times = []
            for run in range(warmup + repeats):
                t = time.perf_counter()
                net._forward(0, 0)
                if run >= warmup:
                    times.append(time.perf_counter() - t)
            shape = list(net.blobs["data"].data.shape)
        except Exception as e:
            return {"measured": False, "reason": f"RoIDataLayer failed: {e}"}
    result = {"measured": True, "ms": _median_ms(np.array(times)), "runs": repeats,
              "size": [h, w], "blob_shape": shape}
    if log:
        log(f"  RoIDataLayer {h}x{w}: {result['ms']:.1f} ms per image (median of {repeats})")
    return result
