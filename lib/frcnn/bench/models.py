"""Model size: parameter count and caffemodel size of a variant's test net.

The test net holds every learned parameter (an OHEM train net's read-only branch shares
its weights by name), so its caffemodel is the deployable model.  The size is that of
``net.save`` (binary protobuf, float32) written to a temporary folder; it does not depend
on the weights' values.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from frcnn.bench import nets as bnets

SEED_MODEL_MB = 17.0  # the seed design's SqueezeNet Faster R-CNN model, as it reports it
MB = 1e6


def model_size(label: str, variant: Any, log: Callable[[str], None] | None = None) -> dict:
    """{'net', 'variant', 'num_classes', 'anchors', 'params', 'bytes', 'mb', 'vs_seed'}."""
    with bnets.variant_cfg(variant):
        net = bnets.load_net(bnets.variant_net_param(variant, "test"), "TEST")
        params = int(sum(blob.size for blob in bnets.unique_param_blobs(net)))
        with tempfile.TemporaryDirectory(prefix="frcnn-bench-model-") as tmp:
            path = Path(tmp) / "model.caffemodel"
            net.save(str(path))
            size = path.stat().st_size
    result = {"net": label, "variant": variant.name, "num_classes": variant.num_classes,
              "anchors": variant.num_anchors, "params": params, "bytes": int(size),
              "mb": size / MB, "vs_seed": size / MB / SEED_MODEL_MB}
    if log:
        log(f"  {label} K={variant.num_classes}: {params:,} parameters, {size / MB:.1f} MB")
    return result
