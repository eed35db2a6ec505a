"""The CUDA build on a CUDA device: our layers' GPU code against their CPU code (which the
other tests check against independent references), the SqueezeNet test net, and a few
training iterations.  Each test skips, with the reason, without a CUDA build of Caffe or a
device (``frcnn info`` says which); ``benchmarks/gpu_check.sh`` runs them on a lent GPU.
"""
from __future__ import annotations

import numpy as np
import pytest

from frcnn import devices
from frcnn.smoke import NET as SMOKE_NET


def _skip_reason() -> str | None:
    build = devices.caffe_build()
    if not build.get("cuda"):
        return "this Caffe is a CPU-only build (FRCNN_CUDA=pip ./install.sh builds for the GPU)"
    gpus, reason = devices.driver_gpus()
    if not gpus:
        return f"no CUDA device: {reason}"
    if not devices.runs_on(gpus[0].capability, build["cuda"]):
        return f"this build has no code for {gpus[0]}"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


@pytest.fixture
def modes(caffe):
    """run(fn) -> (fn's result on the CPU, fn's result on GPU 0); back to the CPU after."""

    def run(fn):
        caffe.set_mode_cpu()
        on_cpu = fn()
        caffe.set_mode_gpu()
        caffe.set_device(0)
        try:
            on_gpu = fn()
        finally:
            caffe.set_mode_cpu()
        return on_cpu, on_gpu

    yield run
    caffe.set_mode_cpu()


ROI_NET = """
force_backward: true
layer { name: "f" type: "Input" top: "features" input_param { shape { dim: 2 dim: 8 dim: 20 dim: 24 } } }
layer { name: "r" type: "Input" top: "rois" input_param { shape { dim: 12 dim: 5 } } }
layer { name: "pool" type: "ROIPooling" bottom: "features" bottom: "rois" top: "pooled"
  roi_pooling_param { pooled_h: 7 pooled_w: 7 spatial_scale: 0.0625 } }
"""


def test_roi_pooling_forward_and_backward_match_the_cpu(make_net, modes):
    rng = np.random.default_rng(0)
    features = rng.permutation(2 * 8 * 20 * 24).reshape(2, 8, 20, 24).astype(np.float32)
    x1 = rng.uniform(0, 300, 12)
    y1 = rng.uniform(0, 250, 12)
    rois = np.stack([rng.integers(0, 2, 12), x1, y1, x1 + rng.uniform(0, 200, 12),
                     y1 + rng.uniform(0, 150, 12)], axis=1).astype(np.float32)
    top_diff = rng.normal(size=(12, 8, 7, 7)).astype(np.float32)
    net = make_net(ROI_NET)

    def run():
        net.blobs["features"].data[...] = features
        net.blobs["rois"].data[...] = rois
        net.forward()
        net.blobs["pooled"].diff[...] = top_diff
        net.backward()
        return net.blobs["pooled"].data.copy(), net.blobs["features"].diff.copy()

    (cpu_top, cpu_grad), (gpu_top, gpu_grad) = modes(run)
    np.testing.assert_array_equal(gpu_top, cpu_top)  # distinct values: the same maxima
    np.testing.assert_allclose(gpu_grad, cpu_grad, rtol=1e-5, atol=1e-5)  # sums in any order


SMOOTH_NET = """
force_backward: true
layer { name: "p" type: "Input" top: "pred" input_param { shape { dim: 64 dim: 84 } } }
layer { name: "t" type: "Input" top: "target" input_param { shape { dim: 64 dim: 84 } } }
layer { name: "i" type: "Input" top: "inside" input_param { shape { dim: 64 dim: 84 } } }
layer { name: "o" type: "Input" top: "outside" input_param { shape { dim: 64 dim: 84 } } }
layer { name: "loss" type: "SmoothL1Loss" bottom: "pred" bottom: "target" bottom: "inside"
  bottom: "outside" top: "loss" loss_weight: 2 smooth_l1_loss_param { sigma: 3 } }
"""


def test_smooth_l1_loss_forward_and_backward_match_the_cpu(make_net, modes):
    rng = np.random.default_rng(1)
    inputs = {"pred": rng.normal(size=(64, 84)), "target": rng.normal(size=(64, 84)),
              "inside": rng.integers(0, 2, size=(64, 84)), "outside": rng.uniform(size=(64, 84))}
    net = make_net(SMOOTH_NET)

    def run():
        for name, value in inputs.items():
            net.blobs[name].data[...] = value
        loss = float(net.forward()["loss"])
        net.backward()
        return loss, net.blobs["pred"].diff.copy()

    (cpu_loss, cpu_grad), (gpu_loss, gpu_grad) = modes(run)
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-5)
    np.testing.assert_allclose(gpu_grad, cpu_grad, rtol=1e-5, atol=1e-7)


DROPOUT_NET = """
force_backward: true
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ dim: 4 dim: 1000 }} }} }}
layer {{ name: "drop" type: "Dropout" bottom: "x" top: "y"
  dropout_param {{ dropout_ratio: 0.25 scale_train: {scale_train} }} }}
"""


@pytest.mark.parametrize("scale_train", ["true", "false"])
def test_dropout_scale_train_on_the_gpu(make_net, modes, scale_train):
    x = np.random.default_rng(2).uniform(1, 2, size=(4, 1000)).astype(np.float32)
    test_factor = 1.0 if scale_train == "true" else 0.75
    train_factor = 1 / 0.75 if scale_train == "true" else 1.0

    def run_test():
        net = make_net(DROPOUT_NET.format(scale_train=scale_train), "TEST")
        net.blobs["x"].data[...] = x
        net.forward()
        return net.blobs["y"].data.copy()

    cpu, gpu = modes(run_test)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-6)
    np.testing.assert_allclose(gpu, x * test_factor, rtol=1e-6)

    def run_train():
        net = make_net(DROPOUT_NET.format(scale_train=scale_train), "TRAIN")
        net.blobs["x"].data[...] = x
        net.forward()
        net.blobs["y"].diff[...] = 1.0
        net.backward()
        return net.blobs["y"].data.copy(), net.blobs["x"].diff.copy()

    _, (y, grad) = modes(run_train)
    kept = y != 0
    assert 0.6 < kept.mean() < 0.9  # about 1 - ratio kept
    np.testing.assert_allclose(y[kept], x[kept] * train_factor, rtol=1e-6)
    np.testing.assert_allclose(grad[kept], train_factor, rtol=1e-6)
    assert not grad[~kept].any()


def test_squeezenet_test_net_matches_the_cpu(caffe, modes, tmp_path):
    """The generated SqueezeNet test net, random weights, one 320 x 427 image: every blob
    before the proposal step agrees to float32 GEMM rounding."""
    from tests.conftest import ROOT

    test_net = ROOT / "prototxts" / "squeezenet" / "faster_rcnn_end2end" / "test.prototxt"
    net = caffe.Net(str(test_net), caffe.TEST)
    rng = np.random.default_rng(3)
    for params in net.params.values():
        for blob in params:
            blob.data[...] = rng.normal(0, 0.05, blob.data.shape)
    image = rng.normal(0, 50, size=(1, 3, 320, 427)).astype(np.float32)

    def run():
        net.blobs["data"].reshape(*image.shape)
        net.blobs["data"].data[...] = image
        net.blobs["im_info"].data[...] = [[320, 427, 1.0]]
        net.forward()
        return {name: net.blobs[name].data.copy()
                for name in ("fire9/concat", "rpn_cls_prob_reshape", "rpn_bbox_pred")}

    cpu, gpu = modes(run)
    for name in cpu:
        scale = float(np.abs(cpu[name]).max()) or 1.0
        np.testing.assert_allclose(gpu[name], cpu[name], rtol=1e-3, atol=1e-4 * scale,
                                   err_msg=name)


SOLVER = """net: "{net}"
base_lr: 0.01
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
random_seed: 5
"""


def test_training_iterations_match_the_cpu(caffe, modes, tmp_path):
    """Five iterations of the smoke net (Python data layer, convolution, ROIPooling,
    InnerProduct, SmoothL1Loss): the same losses on the GPU as on the CPU within 1e-3
    relative (float32 reductions in another order, compounded over five updates)."""
    net = tmp_path / "net.prototxt"
    net.write_text(SMOKE_NET.format(seed=5))
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(SOLVER.format(net=net))

    def run():
        caffe.set_random_seed(5)
        solver = caffe.SGDSolver(str(solver_path))
        losses = []
        for _ in range(5):
            solver.step(1)
            losses.append(float(solver.net.blobs["loss"].data))
        return losses

    cpu, gpu = modes(run)
    assert np.all(np.isfinite(gpu))
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3)
