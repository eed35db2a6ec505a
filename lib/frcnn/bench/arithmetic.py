"""Multiply-adds counted from a net's layer shapes, and the machine's GEMM rate to compare.

Only Convolution and InnerProduct layers are counted (everything else is a small fraction
of the arithmetic and is not a multiply-add):

- Convolution, top (N, O, Ho, Wo), weights (O, C / group, kh, kw):
  N * O * Ho * Wo * (C / group) * kh * kw
- InnerProduct, top (M, O), weights (O, K) (or (K, O) transposed): M * O * K

Counts use the blob shapes of the net as last reshaped or run, so the RoI head's count
follows the number of RoIs the proposal layer gave.

The reference rate is a float32 matrix product n x n by n x n (n**3 multiply-adds), best of
a few runs, two ways: numpy's ``matmul`` (numpy's own BLAS) and a Caffe InnerProduct layer
(the OpenBLAS Caffe was linked with, the one the nets use).
"""
from __future__ import annotations

import time
from math import prod
from typing import Any, Sequence

import numpy as np

COUNTED_TYPES = ("Convolution", "InnerProduct")


def conv_macs(top_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """Multiply-adds of a convolution: top (N, O, Ho, Wo), weights (O, C / g, kh, kw)."""
    return int(prod(top_shape)) * int(prod(weight_shape[1:]))


def inner_product_macs(top_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """Multiply-adds of an InnerProduct: top (..., O), weights O * K elements in all."""
    outputs = int(top_shape[-1])
    return int(prod(top_shape)) * (int(prod(weight_shape)) // outputs)


def layer_macs(net: Any) -> dict[str, int]:
    """Multiply-adds of each Convolution and InnerProduct layer of a caffe.Net (by name),
    from its current top and weight shapes."""
    out: dict[str, int] = {}
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type not in COUNTED_TYPES:
            continue
        weight = layer.blobs[0].data.shape
        count = conv_macs if layer.type == "Convolution" else inner_product_macs
        out[name] = sum(count(net.blobs[top].data.shape, weight) for top in net.top_names[name])
    return out


def _best(fn: Any, repeats: int) -> float:
    fn()  # warm-up: threads, caches
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def numpy_gemm_rate(n: int = 2048, repeats: int = 3, seed: int = 0) -> dict:
    """numpy float32 (n, n) @ (n, n): {'n', 'seconds' (best), 'macs_per_s'}."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    seconds = _best(lambda: a @ b, repeats)
    return {"n": n, "seconds": seconds, "macs_per_s": n ** 3 / seconds}


def caffe_gemm_rate(n: int = 2048, repeats: int = 3, seed: int = 0) -> dict:
    """A Caffe InnerProduct (n inputs, n outputs, no bias) on an (n, n) batch, i.e. one
    float32 n x n x n GEMM by Caffe's BLAS: {'n', 'seconds' (best), 'macs_per_s'}."""
    from frcnn.bench.nets import import_caffe, load_net, net_param_from_text

    import_caffe()
    text = (f'layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: {n} '
            f'dim: {n} }} }} }}\n'
            f'layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
            f'inner_product_param {{ num_output: {n} bias_term: false }} }}\n')
    net = load_net(net_param_from_text(text), "TEST")
    rng = np.random.default_rng(seed)
    net.blobs["x"].data[...] = rng.standard_normal((n, n), dtype=np.float32)
    net.params["ip"][0].data[...] = rng.standard_normal((n, n), dtype=np.float32)
    seconds = _best(net.forward, repeats)
    return {"n": n, "seconds": seconds, "macs_per_s": n ** 3 / seconds}
