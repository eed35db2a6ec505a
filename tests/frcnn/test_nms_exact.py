"""frcnn.nms, its Python part: argument checks and their messages, the visiting order, the
numpy reference on hand-made cases, and the backend choice with a stand-in CUDA module (so
the GPU paths run on any machine)."""
from __future__ import annotations

import numpy as np
import pytest

import frcnn.nms as fnms
from frcnn.nms import nms, nms_cpu, nms_device, nms_gpu, nms_reference


class FakeGPU:
    """Stands in for frcnn._native.gpu_nms: `count` devices; nms_sorted runs the numpy
    reference and records the device it was asked to use."""

    def __init__(self, count: int = 2, fail: bool = False):
        self.count, self.fail = count, fail
        self.count_calls = 0
        self.devices: list[int] = []

    def device_count(self) -> int:
        self.count_calls += 1
        if self.fail:
            raise RuntimeError("driver broken")
        return self.count

    def nms_sorted(self, boxes, thresh, max_keep, device):
        self.devices.append(device)
        return fnms._reference_sorted(boxes, thresh, max_keep)


@pytest.fixture
def gpu(monkeypatch):
    fake = FakeGPU()
    monkeypatch.setattr(fnms, "_gpu_nms", fake)
    monkeypatch.setattr(fnms, "_device_count", None)
    monkeypatch.setattr(fnms, "_warned", set())
    return fake


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(fnms, "_gpu_nms", None)
    monkeypatch.setattr(fnms, "_device_count", None)
    monkeypatch.setattr(fnms, "_warned", set())


# two boxes with IoU 1/3 (50 / 150), a third far away; scores not in index order
DETS = np.array([[0, 0, 9, 9, 0.5], [0, 5, 9, 14, 0.9], [50, 50, 59, 59, 0.7]], np.float64)


# ----------------------------------------------------------------------------- checks

def test_dets_checks_and_messages():
    with pytest.raises(ValueError, match="dets must be float32 or float64, got dtype int32"):
        nms(np.zeros((1, 5), np.int32), 0.5)
    with pytest.raises(ValueError, match=r"dets must have shape \(N, 5\) .*got \(2, 4\)"):
        nms(np.zeros((2, 4)), 0.5)
    with pytest.raises(ValueError, match=r"got \(2, 5, 1\)"):
        nms(np.zeros((2, 5, 1)), 0.5)
    bad = np.zeros((8, 5))
    bad[[1, 3, 4, 5, 6, 7], 2] = np.nan
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite values in 6 row\(s\), first rows "
                                         r"\[1, 3, 4, 5, 6\]; boxes"):
        nms_reference(bad, 0.5)


@pytest.mark.parametrize("thresh", [0, 0.0, 1, 1.0, np.float32(0.25), "0.5"])
def test_thresholds_from_zero_to_one_are_accepted(thresh):
    assert nms_reference(DETS, thresh).dtype == np.int64


def test_threshold_messages():
    with pytest.raises(ValueError, match=r"thresh must be a number in \[0, 1\], got 'x'"):
        nms(DETS, "x")
    with pytest.raises(ValueError, match=r"thresh must be a number in \[0, 1\], got None"):
        nms(DETS, None)
    for bad in (-1e-9, 1.000001, float("nan")):
        with pytest.raises(ValueError, match=r"thresh must be in \[0, 1\], got"):
            nms_reference(DETS, bad)


def test_max_keep_values_and_messages():
    assert nms_reference(DETS, 1.0, max_keep=None).tolist() == [1, 2, 0]
    assert nms_reference(DETS, 1.0, max_keep=np.int64(2)).tolist() == [1, 2]
    assert nms_reference(DETS, 1.0, max_keep=3).tolist() == [1, 2, 0]
    assert nms_reference(DETS, 1.0, max_keep=1).tolist() == [1]
    assert nms_reference(DETS, 1.0, max_keep=0).tolist() == []
    for bad in (True, np.bool_(False), 2.0, "3"):
        with pytest.raises(ValueError, match="max_keep must be None or a non-negative int, got"):
            nms(DETS, 0.5, max_keep=bad)
    with pytest.raises(ValueError, match="non-negative int, got -1$"):
        nms(DETS, 0.5, max_keep=-1)


# ----------------------------------------------------------------------------- order

def test_visit_order_by_hand():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 2.0, 2.0])
    assert fnms._visit_order(scores).tolist() == [1, 2, 4, 3, 5, 6, 0]
    assert fnms._visit_order(np.array([0.5])).tolist() == [0]
    assert fnms._visit_order(np.zeros(0)).tolist() == []
    assert fnms._visit_order(np.array([-1.0, 0.0, -0.0, 2.0])).tolist() == [3, 1, 2, 0]


@pytest.mark.parametrize("runs", [1, 3, 40, 200])
def test_visit_order_with_tie_runs_in_large_arrays(runs):
    """More than 16 values (numpy's sort is then not stable by itself) with ``runs`` runs
    of tied scores of several lengths, fixed one by one (few) or by a stable sort (many)."""
    rng = np.random.default_rng(runs)
    n = 600
    scores = rng.permutation(n).astype(np.float64)
    for r in range(runs):
        members = rng.choice(n, size=2 + r % 4, replace=False)
        scores[members] = scores[members[0]]
    order = fnms._visit_order(scores)
    assert sorted(order.tolist()) == list(range(n))
    ranked = scores[order]
    assert (np.diff(ranked) <= 0).all()
    ties = np.flatnonzero(np.diff(ranked) == 0)
    assert (order[ties] < order[ties + 1]).all()  # within a tie: lower index first


def test_visit_order_run_at_the_end_and_the_start():
    scores = np.concatenate([np.full(10, 99.0), np.arange(20, 0, -1.0), np.zeros(12)])
    scores = scores[::-1].copy()  # ties at both ends, reversed so the raw sort scrambles them
    order = fnms._visit_order(scores)
    assert order[:10].tolist() == list(range(32, 42))
    assert order[-12:].tolist() == list(range(12))


# ----------------------------------------------------------------------------- reference

def test_greedy_suppression_by_hand():
    # A (0.9) suppresses B (IoU 81 / 119 > 0.5); B would suppress C, but B is gone, and
    # A and C overlap by 64 / 136 < 0.5: C stays.  D is far away.
    dets = np.array([[0, 0, 9, 9, 0.9],        # A
                     [1, 1, 10, 10, 0.8],      # B
                     [2, 2, 11, 11, 0.7],      # C
                     [40, 40, 45, 49, 0.95]],  # D
                    np.float32)
    for f in (nms, nms_cpu, nms_reference):
        assert f(dets, 0.5).tolist() == [3, 0, 2]
        assert f(dets, 0.47).tolist() == [3, 0]           # 64 / 136 = 0.4706 > 0.47
        assert f(dets, 0.69).tolist() == [3, 0, 1, 2]     # 81 / 119 = 0.6807
        assert f(dets, 0.5, max_keep=2).tolist() == [3, 0]


def test_reference_iou_uses_inclusive_pixels():
    # one-pixel boxes on the same pixel: IoU 1; x2 = x1 - 1: width 0, never suppresses
    dets = np.array([[5, 5, 5, 5, 0.9], [5, 5, 5, 5, 0.8], [7, 7, 6, 6, 0.7],
                     [7, 7, 6, 6, 0.6]], np.float64)
    assert nms_reference(dets, 0.99).tolist() == [0, 2, 3]
    # 10 x 10 and 10 x 6 sharing 10 x 6 pixels: IoU 0.6 exactly; kept at 0.6, not at 0.59
    dets = np.array([[0, 0, 9, 9, 0.9], [0, 4, 9, 9, 0.8]], np.float64)
    assert nms_reference(dets, 0.6).tolist() == [0, 1]
    assert nms_reference(dets, 0.59).tolist() == [0]
    # the same in y: 6 x 10 inside 10 x 10
    dets = np.array([[0, 0, 9, 9, 0.9], [4, 0, 9, 9, 0.8]], np.float64)
    assert nms_reference(dets, 0.6).tolist() == [0, 1]
    assert nms_reference(dets, 0.59).tolist() == [0]


def test_reference_on_a_single_box_and_float32():
    assert nms_reference(np.array([[0, 0, 1, 1, 0.1]], np.float32), 0.0).tolist() == [0]
    assert nms_reference(np.zeros((0, 5), np.float32), 0.5).tolist() == []


# ----------------------------------------------------------------------------- backends

def test_device_count_is_asked_once_and_errors_count_as_none(monkeypatch, gpu):
    assert fnms.gpu_device_count() == 2
    assert fnms.gpu_device_count() == 2
    assert gpu.count_calls == 1
    broken = FakeGPU(fail=True)
    monkeypatch.setattr(fnms, "_gpu_nms", broken)
    monkeypatch.setattr(fnms, "_device_count", None)
    assert fnms.gpu_device_count() == 0


def test_available_backends(monkeypatch, gpu):
    assert fnms.available_backends() == ("gpu", "cpu", "numpy")
    monkeypatch.setattr(fnms, "_device_count", 0)
    assert fnms.available_backends() == ("cpu", "numpy")
    monkeypatch.setattr(fnms, "_cpu_nms", None)
    assert fnms.available_backends() == ("numpy",)
    monkeypatch.setattr(fnms, "_gpu_nms", None)
    assert fnms.gpu_device_count() == 0


def test_nms_device_with_devices(gpu):
    assert nms_device("auto", 0) == 0
    assert nms_device(" Auto ", 1) == 1
    assert nms_device("auto", 2) == -1        # only devices 0 and 1
    assert nms_device("auto", -1) == -1
    assert nms_device(np.bool_(True), 3) == 3
    assert nms_device(np.bool_(False), 3) == -1
    with pytest.raises(ValueError, match=r"USE_GPU_NMS must be True, False or 'auto', got 'on'"):
        nms_device("on")


def test_nms_device_without_devices(no_gpu):
    assert nms_device("auto", 0) == -1
    assert nms_device(True, 0) == 0


def test_automatic_and_chosen_devices_run_on_the_gpu(gpu, capsys):
    assert nms(DETS, 0.3).tolist() == [1, 2]   # IoU 1/3 > 0.3: box 0 suppressed
    assert nms(DETS, 0.3, device_id=1).tolist() == [1, 2]
    assert nms(DETS, 0.5, device_id=0, max_keep=1).tolist() == [1]
    assert gpu.devices == [0, 1, 0]
    assert nms(DETS, 0.3, device_id=-1).tolist() == [1, 2]  # the CPU: not the GPU
    assert gpu.devices == [0, 1, 0]
    assert capsys.readouterr().err == ""


def test_a_missing_device_asked_for_falls_back_once_with_a_reason(gpu, capsys):
    assert nms(DETS, 0.3, device_id=5).tolist() == [1, 2]
    assert nms(DETS, 0.3, device_id=5).tolist() == [1, 2]
    assert gpu.devices == []
    assert capsys.readouterr().err == ("frcnn.nms: USE_GPU_NMS is True (GPU 5) but CUDA device "
                                       "5 does not exist (2 present); using the CPU\n")


def test_no_device_reasons(monkeypatch, gpu, capsys):
    monkeypatch.setattr(fnms, "_device_count", 0)
    assert fnms._gpu_unavailable_reason(0) == "no CUDA device is present"
    assert nms(DETS, 0.3, device_id=0).tolist() == [1, 2]
    assert nms(DETS, 0.3).tolist() == [1, 2]  # automatic: silent
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(GPU 0) but no CUDA device is present" in err
    monkeypatch.setattr(fnms, "_gpu_nms", None)
    assert fnms._gpu_unavailable_reason(0).startswith("the CUDA extension is not built (")
    monkeypatch.setattr(fnms, "_device_count", 2)
    monkeypatch.setattr(fnms, "_gpu_nms", gpu)
    assert fnms._gpu_unavailable_reason(1) is None
    assert fnms._gpu_unavailable_reason(2) == "CUDA device 2 does not exist (2 present)"


def test_nms_gpu_uses_the_device_or_refuses(gpu):
    assert nms_gpu(DETS, 0.3, device_id=1).tolist() == [1, 2]
    assert nms_gpu(DETS, 1.0, max_keep=2).tolist() == [1, 2]
    assert gpu.devices == [1, 0]
    with pytest.raises(RuntimeError, match="GPU NMS unavailable: device_id < 0"):
        nms_gpu(DETS, 0.3, device_id=-1)
    with pytest.raises(RuntimeError, match="GPU NMS unavailable: CUDA device 2 does not exist"):
        nms_gpu(DETS, 0.3, device_id=2)


def test_warn_once_per_key(monkeypatch, capsys):
    monkeypatch.setattr(fnms, "_warned", set())
    fnms._warn_once("a", "first")
    fnms._warn_once("a", "again")
    fnms._warn_once("b", "second")
    assert capsys.readouterr().err == "first\nsecond\n"


def test_numpy_reference_when_nothing_is_built(monkeypatch, no_gpu, capsys):
    monkeypatch.setattr(fnms, "_cpu_nms", None)
    assert nms(DETS, 0.3).tolist() == [1, 2]
    assert nms(DETS, 0.3, device_id=-1).tolist() == [1, 2]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Cython NMS extension is not built" in err
    with pytest.raises(RuntimeError, match="the Cython NMS extension is not built"):
        nms_cpu(DETS, 0.3)


def test_kernels_that_fail_to_import_are_reported_with_the_reason():
    """A fresh interpreter where both compiled kernels fail to import (as in a checkout that
    was never built): NMS still works, on the numpy reference, and says why."""
    from tests.conftest import run_python

    out = run_python("""
        import sys
        sys.modules["frcnn._native.cpu_nms"] = None   # import raises ImportError
        sys.modules["frcnn._native.gpu_nms"] = None
        import numpy as np
        import frcnn.nms as fnms
        dets = np.array([[0, 0, 9, 9, 0.9], [1, 1, 10, 10, 0.8]], np.float32)
        print(fnms.nms(dets, 0.5).tolist(), fnms.available_backends())
        print(fnms._gpu_unavailable_reason(0))
        print(fnms.nms_device("auto", 0), fnms.gpu_device_count())
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "[0] ('numpy',)"
    assert lines[1].startswith("the CUDA extension is not built (") and "gpu_nms" in lines[1]
    assert lines[2] == "-1 0"
    assert "the Cython NMS extension is not built (" in out.stderr
    assert "cpu_nms" in out.stderr.split("not built (", 1)[1]
