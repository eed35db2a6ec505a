"""What of the GPU path fits the lent GPU machine, checked there: the CUDA NMS against the
CPU NMS and the numpy reference (identical keep lists, and their speed), then, where a CUDA
build of Caffe is importable, the GPU layer tests (tests/caffe_ext/test_gpu_layers.py).

Run by benchmarks/gpu_check.sh after it has built the kernels for the machine's Python;
numpy and pytest are all it needs (the lent machine has no hypothesis, no registry).
Prints one line per check and exits 1 if any failed.

    PYTHONPATH=lib:layers python benchmarks/gpu_check.py
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def random_dets(rng: np.random.Generator, n: int, dtype, kind: str) -> np.ndarray:
    """n boxes x1 y1 x2 y2 score: spread out, clustered (many overlaps), or tied scores."""
    centre = rng.uniform(0, 600, (n, 2)) if kind != "cluster" else rng.normal(300, 20, (n, 2))
    size = rng.uniform(4, 200, (n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    scores = rng.random(n) if kind != "ties" else rng.integers(0, 4, n) / 4.0
    return np.concatenate([boxes, scores[:, None]], axis=1).astype(dtype)


def check_nms() -> bool:
    from frcnn import nms as fnms

    count = fnms.gpu_device_count()
    print(f"[gpu_check] CUDA NMS: {count} device(s) seen by the extension")
    if count == 0:
        print("[gpu_check] FAIL: the CUDA NMS sees no device")
        return False
    rng = np.random.default_rng(7)
    bad = 0
    trials = 0
    for kind in ("spread", "cluster", "ties"):
        for dtype in (np.float32, np.float64):
            for n in (0, 1, 17, 300, 3000, 12000):
                for thresh in (0.0, 0.3, 0.5, 0.7, 1.0):
                    dets = random_dets(rng, n, dtype, kind)
                    ref = fnms.nms_cpu(dets, thresh)
                    gpu = fnms.nms_gpu(dets, thresh, device_id=0)
                    trials += 1
                    if not np.array_equal(ref, gpu) or (n <= 3000 and not np.array_equal(
                            fnms.nms_reference(dets, thresh), ref)):
                        bad += 1
                        print(f"[gpu_check] differs: {kind} {dtype.__name__} n={n} thresh={thresh}")
    print(f"[gpu_check] CUDA NMS == CPU NMS on {trials - bad} of {trials} cases")
    dets = random_dets(rng, 12000, np.float32, "cluster")
    for name, fn in (("cpu", lambda: fnms.nms_cpu(dets, 0.7)),
                     ("gpu", lambda: fnms.nms_gpu(dets, 0.7, device_id=0))):
        fn()
        start = time.perf_counter()
        for _ in range(10):
            fn()
        print(f"[gpu_check] NMS of 12000 clustered boxes at 0.7 ({name}): "
              f"{(time.perf_counter() - start) / 10 * 1e3:.2f} ms")
    return bad == 0


def check_caffe_layers() -> bool | None:
    try:
        from frcnn import devices
    except ImportError as e:
        print(f"[gpu_check] frcnn not importable ({e})")
        return False
    build = devices.caffe_build()
    if not build.get("cuda"):
        print("[gpu_check] Caffe GPU layers: skipped (no CUDA build of Caffe importable here: "
              + ("a CPU build" if build else "no caffe package") + ")")
        return None
    print("[gpu_check] " + "\n[gpu_check] ".join(devices.report()))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "caffe_ext" / "test_gpu_layers.py")], cwd=ROOT)
    return proc.returncode == 0


def main() -> int:
    results = {"nms": check_nms(), "caffe layers": check_caffe_layers()}
    for name, ok in results.items():
        print(f"[gpu_check] {name}: {'skipped' if ok is None else 'ok' if ok else 'FAILED'}")
    return 1 if any(ok is False for ok in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
